"""process.py: the server process around its loop, at the function level:
the pid file written at start and removed at the end (even when the loop
fails), and what each signal's handler asks of the loop. No real server:
main() runs with a stand-in loop, and the handlers are called as Python
functions, never sent as signals. The signal handlers, the root logger and
the server logger's level are put back after each test.
"""

import errno
import logging
import os
import signal
import socket
import stat
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import logs  # noqa: E402
import process  # noqa: E402

SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGHUP)
REAL_LISTEN = process.listen  # any_port stands in for it; the -s tests need it


@pytest.fixture(autouse=True)
def any_port(monkeypatch):
    """main() listens on a port the kernel picks (the command line refuses 0)."""
    monkeypatch.setattr(process, "listen", lambda args: [socket.create_server(("127.0.0.1", 0))])


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
    """What main() needs of a loop: built as loop(server, listeners, tls),
    with run(), stop() and call_soon(work). run() runs `during` (a test's
    look at the process while it serves), then closes what the reactor would."""

    during = None

    def __init__(self, server, listeners, tls_context):
        self.server, self.listeners, self.tls_context = server, listeners, tls_context
        self.stopped = []
        self.calls = []

    def run(self):
        try:
            if self.during is not None:
                self.during(self)
        finally:
            for sock in self.listeners:  # -p 0: none
                sock.close()
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


def test_a_pid_file_that_cannot_be_written_is_logged_and_the_server_serves_as_memcached(tmp_path):
    ran = []
    pidfile = tmp_path / "no such dir" / "pid"
    assert process.main(argv_of(tmp_path, "-P", str(pidfile)), serving(ran.append)) == 0
    assert len(ran) == 1
    assert f"Could not open the pid file {pidfile}.tmp for writing: No such file or directory" in (
        tmp_path / "log"
    ).read_text()


def test_a_pid_file_naming_a_running_process_is_warned_of_and_replaced(tmp_path, caplog):
    pidfile = tmp_path / "pid"
    pidfile.write_text("1\n")  # init: running
    with caplog.at_level(logging.WARNING, logger="memcached-lite"):
        process.write_pidfile(str(pidfile))
    assert "The pid file contained the following (running) pid: 1" in caplog.text
    assert pidfile.read_text() == f"{os.getpid()}\n"
    assert not (tmp_path / "pid.tmp").exists()


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


# == -s: the unix socket ============================================================


def unix_socket(path, listening=True):
    """A socket bound at path: a live server's (listening) or, closed
    unlistened, the file a crashed one leaves behind."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    if listening:
        sock.listen(1)
        return sock
    sock.close()
    return None


def test_the_socket_file_gets_the_mode_a_gives(unix_path):
    with process.listen_unix(str(unix_path), 0o770, 16):
        assert stat.S_IMODE(os.lstat(unix_path).st_mode) == 0o770


def test_a_s_bits_beyond_the_permissions_are_dropped_as_memcached_drops_them(unix_path):
    with process.listen_unix(str(unix_path), 0o1777, 16):
        assert stat.S_IMODE(os.lstat(unix_path).st_mode) == 0o777


def test_the_process_umask_is_put_back_after_the_bind(unix_path):
    before = os.umask(0o022)
    try:
        with process.listen_unix(str(unix_path), 0o700, 16):
            assert os.umask(0o022) == 0o022
    finally:
        os.umask(before)


def test_a_stale_socket_file_is_removed_and_its_path_bound(unix_path, caplog):
    unix_socket(unix_path, listening=False)
    with caplog.at_level(logging.INFO, logger="memcached-lite"):
        with process.listen_unix(str(unix_path), 0o700, 16) as sock:
            client = socket.socket(socket.AF_UNIX)
            client.connect(str(unix_path))  # the new listener answers there
            client.close()
            assert sock.family == socket.AF_UNIX
    assert "removed the stale unix socket" in caplog.text


def test_a_socket_a_live_server_listens_on_is_refused_and_left_to_it(unix_path):
    with unix_socket(unix_path) as live:
        with pytest.raises(process.SocketInUse) as e:
            process.claim_socket_path(str(unix_path))
        assert e.value.errno == errno.EADDRINUSE
        assert "another server is listening on it" in e.value.strerror
        client = socket.socket(socket.AF_UNIX)
        client.connect(str(unix_path))  # still the live server's
        client.close()
        live.accept()[0].close()


def test_a_file_that_is_no_socket_is_left_alone_and_the_bind_fails(unix_path):
    unix_path.write_text("not a socket")
    with pytest.raises(OSError) as e:
        process.listen_unix(str(unix_path), 0o700, 16)
    assert e.value.errno == errno.EADDRINUSE
    assert unix_path.read_text() == "not a socket"


def test_removing_the_socket_file_spares_one_another_server_bound_since(unix_path):
    with process.listen_unix(str(unix_path), 0o700, 16):
        ours = process.file_identity(str(unix_path))
    os.unlink(unix_path)
    with unix_socket(unix_path):
        process.remove_socket_file(str(unix_path), ours)
        assert stat.S_ISSOCK(os.lstat(unix_path).st_mode)


def unix_argv(tmp_path, path, *more):
    return argv_of(tmp_path, "-s", str(path), *more)


def test_with_s_main_serves_only_on_the_unix_socket_and_removes_its_file_at_the_end(tmp_path, unix_path, monkeypatch):
    monkeypatch.setattr(process, "listen", REAL_LISTEN)
    seen = []

    def look(loop):
        [listener] = loop.listeners
        seen.append((listener.family, listener.getsockname(), stat.S_ISSOCK(os.lstat(unix_path).st_mode)))

    assert process.main(unix_argv(tmp_path, unix_path, "-a", "0770"), serving(look)) == 0
    assert seen == [(socket.AF_UNIX, str(unix_path), True)]
    assert not os.path.lexists(unix_path)
    assert f"listening on unix socket {unix_path} (mode 0770)" in (tmp_path / "log").read_text()


def test_the_socket_file_is_removed_when_the_loop_fails(tmp_path, unix_path, monkeypatch):
    monkeypatch.setattr(process, "listen", REAL_LISTEN)

    def fail(loop):
        raise RuntimeError("the loop broke")

    with pytest.raises(RuntimeError):
        process.main(unix_argv(tmp_path, unix_path), serving(fail))
    assert not os.path.lexists(unix_path)


def test_a_live_server_s_socket_stops_the_start_with_memcached_s_status_71(tmp_path, unix_path, monkeypatch):
    monkeypatch.setattr(process, "listen", REAL_LISTEN)
    ran = []
    with unix_socket(unix_path):
        assert process.main(unix_argv(tmp_path, unix_path), serving(ran.append)) == process.EX_OSERR == 71
        assert stat.S_ISSOCK(os.lstat(unix_path).st_mode)
    assert ran == []
    assert f"failed to listen on UNIX socket: {unix_path}: another server is listening on it" in (
        tmp_path / "log"
    ).read_text()


def test_a_missing_directory_stops_the_start_with_status_71_and_the_reason(tmp_path, unix_path, monkeypatch):
    monkeypatch.setattr(process, "listen", REAL_LISTEN)
    path = unix_path.parent / "no such dir" / "mc.sock"
    assert process.main(unix_argv(tmp_path, path), serving(list)) == 71
    assert f"failed to listen on UNIX socket: {path}: No such file or directory" in (tmp_path / "log").read_text()


def test_Z_with_s_serves_the_unix_socket_in_clear_and_says_so(tmp_path, unix_path, monkeypatch, certs):
    monkeypatch.setattr(process, "listen", REAL_LISTEN)
    cert, key = certs
    contexts = []
    argv = unix_argv(tmp_path, unix_path, "-Z", "--tls-cert", str(cert), "--tls-key", str(key))
    assert process.main(argv, serving(lambda loop: contexts.append(loop.tls_context))) == 0
    assert contexts == [None]
    assert "-Z: TLS is not used on the unix socket" in (tmp_path / "log").read_text()


def test_a_chmod_of_the_socket_file_does_not_stop_its_removal(unix_path):
    with process.listen_unix(str(unix_path), 0o700, 16):
        ours = process.file_identity(str(unix_path))
        os.chmod(unix_path, 0o777)
        process.remove_socket_file(str(unix_path), ours)
    assert not os.path.lexists(unix_path)


# == the TCP port: -p 0, -p -1, MEMCACHED_PORT_FILENAME ===========================


def test_p_0_serves_with_no_listener_as_memcached_opens_no_port(tmp_path, monkeypatch):
    monkeypatch.setattr(process, "listen", REAL_LISTEN)
    seen = []
    assert process.main(argv_of(tmp_path, "-p", "0"), serving(lambda loop: seen.append(loop.listeners))) == 0
    assert seen == [[]]
    assert "listening on no port (-p 0" in (tmp_path / "log").read_text()


def test_p_minus_1_listens_on_a_port_the_kernel_picks_and_logs_it(tmp_path, monkeypatch):
    monkeypatch.setattr(process, "listen", REAL_LISTEN)
    monkeypatch.setenv("MEMCACHED_PORT_FILENAME", str(tmp_path / "port"))
    ports = []
    look = serving(lambda loop: ports.append(loop.listeners[0].getsockname()[1]))
    assert process.main(argv_of(tmp_path, "-p", "-1"), look) == 0
    assert ports[0] != 0
    assert f"listening on 127.0.0.1:{ports[0]}," in (tmp_path / "log").read_text()
    assert (tmp_path / "port").read_text() == f"TCP INET: {ports[0]}\n"
    assert not (tmp_path / "port.lck").exists()


def test_the_port_file_of_p_0_is_empty_as_memcached_s(tmp_path, monkeypatch):
    monkeypatch.setattr(process, "listen", REAL_LISTEN)
    monkeypatch.setenv("MEMCACHED_PORT_FILENAME", str(tmp_path / "port"))
    assert process.main(argv_of(tmp_path, "-p", "0"), StandInLoop) == 0
    assert (tmp_path / "port").read_text() == ""


def test_a_port_below_minus_1_fails_as_memcached_s_getaddrinfo_with_71(tmp_path, monkeypatch):
    monkeypatch.setattr(process, "listen", REAL_LISTEN)
    assert process.main(argv_of(tmp_path, "-p", "-5"), StandInLoop) == process.EX_OSERR
    assert "failed to listen on TCP port -5: getaddrinfo(): Servname not supported" in (tmp_path / "log").read_text()


# == -u as root, -Z's verify mode =================================================


root_only = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


@root_only
def test_root_without_u_is_one_warning_line_that_says_how_to_silence_it(caplog):
    with caplog.at_level(logging.WARNING, logger="memcached-lite"):
        assert process.drop_privileges(None) is None
    [record] = caplog.records
    assert "\n" not in record.getMessage()
    assert "-u root" in record.getMessage()


@root_only
def test_u_root_runs_as_root_without_a_word_as_memcached(caplog):
    with caplog.at_level(logging.DEBUG, logger="memcached-lite"):
        assert process.drop_privileges("root") is None
    assert caplog.records == []
    assert os.geteuid() == 0


def test_ssl_verify_mode_without_a_ca_starts_with_a_warning(tmp_path, certs):
    cert, key = certs
    argv = argv_of(tmp_path, "-Z", "--tls-cert", str(cert), "--tls-key", str(key), "-o", "ssl_verify_mode=1")
    assert process.main(argv, StandInLoop) == 0
    assert "ssl_verify_mode=1 without -o ssl_ca_cert (--tls-ca): no client certificate" in (
        tmp_path / "log"
    ).read_text()


# == -l: memcached's list of interfaces ==========================================


@pytest.mark.parametrize("interfaces, addresses", [
    ("127.0.0.1", [("127.0.0.1", 11211)]),
    ("127.0.0.1,127.0.0.2;127.0.0.3", [("127.0.0.1", 11211), ("127.0.0.2", 11211), ("127.0.0.3", 11211)]),
    ("127.0.0.2:11311", [("127.0.0.2", 11311)]),
    ("127.0.0.2:-1", [("127.0.0.2", -1)]),
    ("::1", [("::1", 11211)]),
    ("[::1]", [("::1", 11211)]),
    ("[::1]:11311", [("::1", 11311)]),
    ("*:11311", [(None, 11311)]),
    ("tag[ab]:127.0.0.2", [("127.0.0.2", 11211)]),
    (",,127.0.0.1,", [("127.0.0.1", 11211)]),
])
def test_l_reads_memcached_s_list_of_interfaces(interfaces, addresses):
    assert list(process.listen_addresses(interfaces, 11211)) == addresses


@pytest.mark.parametrize("interfaces, message", [
    ("127.0.0.2:abc", 'Invalid port number: "abc"'),
    ("[::1", 'Invalid IPV6 address: "[::1"'),
    ("tag[toolongtag]:127.0.0.2", 'Listener tags must be between 1 and 8 characters: "toolongtag"'),
    ("tag[ab:127.0.0.2", 'Invalid tag in socket config: "[ab:127.0.0.2"'),
    ("notls:127.0.0.2", "'notls' option is valid only when SSL is enabled"),
])
def test_l_refuses_what_memcached_refuses_with_its_words(interfaces, message):
    with pytest.raises(ValueError) as e:
        list(process.listen_addresses(interfaces, 11211))
    assert str(e.value) == message


def test_l_s_per_listener_protocol_is_refused_as_not_here():
    with pytest.raises(ValueError, match="not supported here"):
        list(process.listen_addresses("proto[ascii]:127.0.0.2", 11211))


def test_each_interface_of_l_gets_a_listener(tmp_path, monkeypatch):
    monkeypatch.setattr(process, "listen", REAL_LISTEN)
    seen = []
    argv = argv_of(tmp_path, "-p", "-1", "-l", "127.0.0.1,127.0.0.2")
    assert process.main(argv, serving(lambda loop: seen.append([s.getsockname()[0] for s in loop.listeners]))) == 0
    assert seen == [["127.0.0.1", "127.0.0.2"]]


def test_an_interface_of_l_that_cannot_bind_fails_with_memcached_s_words_and_71(tmp_path, monkeypatch):
    monkeypatch.setattr(process, "listen", REAL_LISTEN)
    argv = argv_of(tmp_path, "-p", "-1", "-l", "127.0.0.1,127.0.0.2:abc")
    assert process.main(argv, StandInLoop) == process.EX_OSERR
    assert 'failed to listen on one of interface(s) 127.0.0.1,127.0.0.2:abc: Invalid port number: "abc"' in (
        tmp_path / "log"
    ).read_text()


# == -c and the open-files limit ================================================


def test_a_c_above_a_hard_limit_that_cannot_be_raised_fails_as_memcached_s_with_71(tmp_path, monkeypatch):
    monkeypatch.setattr(process.resource, "getrlimit", lambda which: (1024, 4096))

    def refuse(which, limits):
        raise ValueError("not allowed to raise maximum limit")

    monkeypatch.setattr(process.resource, "setrlimit", refuse)
    assert process.main(argv_of(tmp_path, "-c", "5000"), StandInLoop) == process.EX_OSERR
    assert "failed to set rlimit for open files. Try starting as root or requesting smaller maxconns value." in (
        tmp_path / "log"
    ).read_text()


def test_a_c_above_the_hard_limit_raises_it_where_allowed(monkeypatch):
    monkeypatch.setattr(process.resource, "getrlimit", lambda which: (1024, 4096))
    set_to = []
    monkeypatch.setattr(process.resource, "setrlimit", lambda which, limits: set_to.append(limits))
    assert process.ensure_descriptors(5000) is None
    assert set_to == [(5000 + process.DESCRIPTOR_RESERVE,) * 2]


def test_a_c_within_the_hard_limit_raises_the_soft_one(monkeypatch):
    monkeypatch.setattr(process.resource, "getrlimit", lambda which: (1024, 4096))
    set_to = []
    monkeypatch.setattr(process.resource, "setrlimit", lambda which, limits: set_to.append(limits))
    assert process.ensure_descriptors(2000) is None
    assert set_to == [(2000 + process.DESCRIPTOR_RESERVE, 4096)]


# == -r ============================================================================


def test_r_raises_the_core_limit_to_infinity_where_allowed(monkeypatch):
    limits = {"core": (0, 0)}
    monkeypatch.setattr(process.resource, "getrlimit", lambda which: limits["core"])
    monkeypatch.setattr(process.resource, "setrlimit", lambda which, new: limits.update(core=new))
    assert process.allow_core_dumps() is None
    assert limits["core"] == (process.resource.RLIM_INFINITY,) * 2


def test_r_with_a_core_limit_that_stays_0_fails_as_memcached_s_with_71(tmp_path, monkeypatch):
    real = process.resource.getrlimit
    monkeypatch.setattr(
        process.resource, "getrlimit", lambda which: (0, 0) if which == process.resource.RLIMIT_CORE else real(which)
    )

    def refuse(which, limits):
        if limits[0] != 0:
            raise ValueError("not allowed to raise maximum limit")

    monkeypatch.setattr(process.resource, "setrlimit", refuse)
    assert process.main(argv_of(tmp_path, "-r"), StandInLoop) == process.EX_OSERR
    assert "failed to ensure corefile creation" in (tmp_path / "log").read_text()


def test_u_goes_on_when_dropping_the_groups_is_eperm_as_memcached(monkeypatch, caplog):
    became = []
    monkeypatch.setattr(process.os, "getuid", lambda: 0)
    monkeypatch.setattr(process.pwd, "getpwnam", lambda name: type("pw", (), {"pw_uid": 65534, "pw_gid": 65534}))

    def eperm(groups):
        raise PermissionError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(process.os, "setgroups", eperm)
    monkeypatch.setattr(process.os, "setgid", lambda gid: became.append(("gid", gid)))
    monkeypatch.setattr(process.os, "setuid", lambda uid: became.append(("uid", uid)))
    with caplog.at_level(logging.WARNING, logger="memcached-lite"):
        assert process.drop_privileges("nobody") is None
    assert became == [("gid", 65534), ("uid", 65534)]
    assert "failed to drop supplementary groups: Operation not permitted" in caplog.text


def test_the_store_keeps_descriptors_in_what_the_hard_limit_leaves_beside_c(monkeypatch):
    limits = {"nofile": (1088, 4096)}
    monkeypatch.setattr(process.resource, "getrlimit", lambda which: limits["nofile"])
    monkeypatch.setattr(process.resource, "setrlimit", lambda which, new: limits.update(nofile=new))
    assert process.kept_files(1024) == 4096 - 1024 - process.DESCRIPTOR_RESERVE
    assert limits["nofile"] == (4096, 4096)


def test_no_descriptor_is_kept_when_c_takes_the_whole_limit(monkeypatch):
    monkeypatch.setattr(process.resource, "getrlimit", lambda which: (1088, 1088))
    monkeypatch.setattr(process.resource, "setrlimit", lambda which, new: None)
    assert process.kept_files(1024) == 0
