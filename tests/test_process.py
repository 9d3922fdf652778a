"""process.py: the server process around its loop, at the function level:
the pid file written at start and removed at the end (even when the loop
fails), and what each signal's handler asks of the loop. No real server:
main() runs with a stand-in loop, and the handlers are called as Python
functions, never sent as signals. The signal handlers, the root logger and
the server logger's level are put back after each test.
"""

import logging
import os
import signal
import socket
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import logs  # noqa: E402
import process  # noqa: E402

SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGHUP)


@pytest.fixture(autouse=True)
def any_port(monkeypatch):
    """main() listens on a port the kernel picks (the command line refuses 0)."""
    monkeypatch.setattr(process, "listen", lambda args: socket.create_server(("127.0.0.1", 0)))


@pytest.fixture(autouse=True)
def restored():
    """What main() and install_signals change in the test process, put back."""
    root = logging.getLogger()
    server_log = logging.getLogger("memcached-lite")
    handlers, level = list(root.handlers), server_log.level
    saved = {s: signal.getsignal(s) for s in SIGNALS}
    yield
    for s, h in saved.items():
        signal.signal(s, h)
    for h in list(root.handlers):
        if h not in handlers:
            root.removeHandler(h)
            h.close()
    for h in handlers:
        if h not in root.handlers:
            root.addHandler(h)
    server_log.setLevel(level)


class Server:
    def reload_auth(self):
        pass


class StandInLoop:
    """What main() needs of a loop: built as loop(server, listener, tls),
    with run(), stop() and call_soon(work). run() runs `during` (a test's
    look at the process while it serves), then closes what the reactor would."""

    during = None

    def __init__(self, server, listener, tls_context):
        self.server, self.listener, self.tls_context = server, listener, tls_context
        self.stopped = []
        self.calls = []

    def run(self):
        try:
            if self.during is not None:
                self.during(self)
        finally:
            self.listener.close()
            self.server.close()

    def stop(self, graceful=True):
        self.stopped.append(graceful)

    def call_soon(self, work):
        self.calls.append(work)


def argv_of(tmp_path, *more):
    return ["--data-dir", str(tmp_path / "data"), "--log-file", str(tmp_path / "log"), *more]


def serving(during):
    return type("Loop", (StandInLoop,), {"during": staticmethod(during)})


# == the pid file ================================================================


def test_the_pid_file_holds_the_pid_while_serving_and_is_removed_at_the_end(tmp_path):
    pidfile = tmp_path / "pid"
    seen = []
    status = process.main(argv_of(tmp_path, "-P", str(pidfile)), serving(lambda loop: seen.append(pidfile.read_text())))
    assert status == 0
    assert seen == [f"{os.getpid()}\n"]
    assert not pidfile.exists()


def test_the_pid_file_is_removed_when_the_loop_fails(tmp_path):
    pidfile = tmp_path / "pid"

    def fail(loop):
        raise RuntimeError("the loop broke")

    with pytest.raises(RuntimeError):
        process.main(argv_of(tmp_path, "-P", str(pidfile)), serving(fail))
    assert not pidfile.exists()


def test_a_pid_file_that_cannot_be_written_stops_the_start_with_status_1(tmp_path):
    ran = []
    pidfile = tmp_path / "no such dir" / "pid"
    assert process.main(argv_of(tmp_path, "-P", str(pidfile)), serving(ran.append)) == 1
    assert ran == []
    assert "cannot write the pid file" in (tmp_path / "log").read_text()


def test_write_pidfile_writes_the_pid_and_a_newline(tmp_path):
    process.write_pidfile(tmp_path / "pid")
    assert (tmp_path / "pid").read_text() == f"{os.getpid()}\n"


def test_removing_a_pid_file_already_gone_is_a_warning_not_an_error(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="memcached-lite"):
        process.remove_pidfile(tmp_path / "pid")
    assert "cannot remove the pid file" in caplog.text


# == the signals =================================================================


@pytest.fixture
def loop():
    """A stand-in loop with the signal handlers installed for it."""
    running = StandInLoop(Server(), None, None)
    process.install_signals(running, logging.NullHandler())
    return running


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGUSR1], ids=lambda s: s.name)
def test_a_stop_signal_asks_the_loop_for_a_graceful_stop_and_logs_it(loop, caplog, signum):
    with caplog.at_level(logging.INFO, logger="memcached-lite"):
        signal.getsignal(signum)(signum, None)
    assert loop.stopped == [True]
    assert f"{signum.name}: shutting down" in caplog.text


def test_sighup_asks_the_loop_to_reopen_the_log_and_reload_the_auth_file(loop, monkeypatch):
    reopened = []
    monkeypatch.setattr(logs, "reopen_log", reopened.append)
    signal.getsignal(signal.SIGHUP)(signal.SIGHUP, None)
    assert loop.stopped == []
    assert len(loop.calls) == 2  # asked, not done inside the handler
    assert reopened == []
    for work in loop.calls:
        work()
    assert len(reopened) == 1
    assert loop.calls[1] == loop.server.reload_auth


def test_main_installs_the_signal_handlers_for_its_loop(tmp_path):
    def stop_by_sigterm(loop):
        signal.getsignal(signal.SIGTERM)(signal.SIGTERM, None)
        assert loop.stopped == [True]

    assert process.main(argv_of(tmp_path), serving(stop_by_sigterm)) == 0
