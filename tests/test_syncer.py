"""store/syncer.py's helper when the server may not execute its interpreter
(-u nobody, Python under /root): the server forked, running the helper's loop.
The exec'd helper's barrier, watchdog and restarts are test_durability's."""

import logging
import os
import signal
import sys

import pytest

from store import syncer


@pytest.fixture
def no_interpreter(monkeypatch):
    """An interpreter the exec cannot find: the helper must be forked."""
    monkeypatch.setattr(sys, "executable", "/nonexistent/python")


@pytest.fixture
def forked(no_interpreter, tmp_path):
    helper = syncer.BackgroundSyncer(str(tmp_path))
    yield helper
    if helper._proc.returncode is None:
        helper.kill()


def test_a_helper_that_cannot_be_executed_is_the_server_forked_and_says_why(no_interpreter, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="memcached-lite"):
        helper = syncer.BackgroundSyncer(str(tmp_path))
    try:
        assert isinstance(helper._proc, syncer.Forked)
        assert "the sync helper is the server forked: it may not run /nonexistent/python" in caplog.text
    finally:
        helper.close()


def test_the_forked_helper_makes_barriers(forked):
    for _ in range(2):
        forked.start()
        assert forked.poll(wait=10) == 0


def test_the_forked_helper_keeps_none_of_the_servers_descriptors(forked, tmp_path):
    with open(tmp_path / "a-store-file", "w"):
        forked.start()
        assert forked.poll(wait=10) == 0  # it is in its loop
        kept = sorted(int(fd) for fd in os.listdir(f"/proc/{forked.pid}/fd"))
    assert kept == [0, 1, 2, 3]  # its pipes, stderr, the data dir


def test_the_forked_helper_runs_at_nice_19_in_its_own_session(forked):
    forked.start()
    assert forked.poll(wait=10) == 0
    assert os.getsid(forked.pid) == forked.pid
    with open(f"/proc/{forked.pid}/stat") as f:
        assert int(f.read().rsplit(")", 1)[1].split()[16]) == 19


def test_the_forked_helper_exits_0_when_its_stdin_closes(forked):
    proc = forked._proc
    forked.close()
    assert proc.wait(10) == 0


def test_kill_ends_a_stopped_forked_helper(forked):
    os.kill(forked.pid, signal.SIGSTOP)
    forked.kill()
    assert forked._proc.returncode == -signal.SIGKILL


def test_a_dead_forked_helper_is_helper_gone(forked):
    os.kill(forked.pid, signal.SIGKILL)
    forked._proc.wait(10)
    with pytest.raises(syncer.HelperGone):
        forked.start()
