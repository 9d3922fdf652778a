"""The wall clock stepped under a running server, end to end (store/clock.py).

The server runs under Debian's libfaketime (LD_PRELOAD) with its offset in a
file, read again at every clock call (FAKETIME_NO_CACHE), and with the
monotonic clock left alone (FAKETIME_DONT_FAKE_MONOTONIC): writing "+1h" to
the file steps the server's wall clock by an hour at once, deterministically,
as an NTP step or `date -s` would, with no sleep and no root. Every test
passes against memcached too (MCLITE_TARGET=memcached), except the restart,
which is ours.

Skipped when libfaketime is not installed (apt-get install faketime; .ci/run
installs it).

A bug of libfaketime 0.9.10, not of the server (wolfcw/libfaketime#426):
with the monotonic clock unfaked, its clock_nanosleep(CLOCK_MONOTONIC,
TIMER_ABSTIME) passes the kernel a negative time and fails with EINVAL, and
Python 3.11's time.sleep uses that call. The server sleeps only in
subprocess's wait for the everysec helper at exit, so under libfaketime a
SIGTERM ends it with that traceback and status 1: the restart here is after
a kill -9 (no exit path at all), and the teardown's stop ignores the status.
"""

from __future__ import annotations

import glob
import os
import subprocess
import sys

import pytest

LIBFAKETIME = next(
    iter(
        sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))
        + sorted(glob.glob("/usr/lib/faketime/libfaketime.so.1"))
        + sorted(glob.glob("/usr/local/lib/faketime/libfaketime.so.1"))
    ),
    None,
)
HOUR = 3600

pytestmark = pytest.mark.skipif(LIBFAKETIME is None, reason="libfaketime is not installed (apt-get install faketime)")


class WallClock:
    """The faked wall clock of the processes started with `env`."""

    def __init__(self, path):
        self.path = path
        self.set(0)
        self.env = {
            "LD_PRELOAD": LIBFAKETIME,
            "FAKETIME_TIMESTAMP_FILE": str(path),
            "FAKETIME_NO_CACHE": "1",
            "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        }

    def set(self, offset):
        """Step the wall clock to real time + offset seconds (by a rename: a
        process never reads a half-written file)."""
        part = self.path.with_suffix(".part")
        part.write_text("%+ds\n" % offset)
        os.replace(part, self.path)


@pytest.fixture
def wall(tmp_path):
    clock = WallClock(tmp_path / "faketime")
    # libfaketime must really step a process here (else the tests prove nothing)
    probe = [sys.executable, "-c", "import time; print(int(time.time()))"]
    clock.set(0)
    before = int(subprocess.run(probe, env=clock.env, capture_output=True, text=True, check=True).stdout)
    clock.set(10 * HOUR)
    after = int(subprocess.run(probe, env=clock.env, capture_output=True, text=True, check=True).stdout)
    clock.set(0)
    if not 9 * HOUR < after - before < 11 * HOUR:
        pytest.skip("libfaketime does not step the wall clock of a process here")
    return clock


def stat(conn, name: bytes) -> int:
    return int(conn.stat(name))


@pytest.mark.parametrize("step", [HOUR, -HOUR], ids=["forward", "back"])
def test_an_item_with_a_relative_exptime_outlives_a_wall_clock_step(start_mclite, connect, wall, step):
    conn = connect(start_mclite(env=wall.env))
    assert conn.exchange(b"set k 0 600 1\r\nv\r\n") == b"STORED\r\n"
    wall.set(step)
    assert conn.exchange(b"get k\r\n", until=b"END\r\n") == b"VALUE k 0 1\r\nv\r\nEND\r\n"


def test_an_item_with_an_absolute_exptime_outlives_a_forward_wall_clock_step(start_mclite, connect, wall):
    conn = connect(start_mclite(env=wall.env))
    now = stat(conn, b"time")
    assert conn.exchange(b"set k 0 %d 1\r\nv\r\n" % (now + 600)) == b"STORED\r\n"
    wall.set(HOUR)
    assert conn.exchange(b"get k\r\n", until=b"END\r\n") == b"VALUE k 0 1\r\nv\r\nEND\r\n"


def test_a_delayed_flush_does_not_fire_at_a_forward_wall_clock_step(start_mclite, connect, wall):
    conn = connect(start_mclite(env=wall.env))
    assert conn.exchange(b"set k 0 0 1\r\nv\r\n") == b"STORED\r\n"
    assert conn.exchange(b"flush_all 600\r\n") == b"OK\r\n"
    wall.set(HOUR)
    assert conn.exchange(b"get k\r\n", until=b"END\r\n") == b"VALUE k 0 1\r\nv\r\nEND\r\n"


@pytest.mark.parametrize("step", [HOUR, -HOUR], ids=["forward", "back"])
def test_stats_time_does_not_follow_a_wall_clock_step(start_mclite, connect, wall, step):
    conn = connect(start_mclite(env=wall.env))
    before = stat(conn, b"time")
    wall.set(step)
    # a step would move it by an hour; a slow machine by seconds
    assert abs(stat(conn, b"time") - before) < HOUR // 2


def test_cas_values_keep_increasing_across_wall_clock_steps(start_mclite, connect, wall):
    conn = connect(start_mclite(env=wall.env))
    seen = []
    for offset in (0, HOUR, -HOUR, 0):
        wall.set(offset)
        assert conn.exchange(b"set k 0 0 1\r\nv\r\n") == b"STORED\r\n"
        line = conn.exchange(b"gets k\r\n", until=b"END\r\n").split(b"\r\n")[0]
        seen.append(int(line.split()[4]))
    assert seen == sorted(seen) and len(set(seen)) == len(seen)


def test_a_restart_after_a_forward_wall_clock_step_expires_what_is_due_by_then(
    start_mclite, connect, wall, target
):
    if target != "mclite":
        pytest.skip("persistence is ours: memcached forgets everything on restart")
    server = start_mclite(env=wall.env)
    conn = connect(server)
    assert conn.exchange(b"set due 0 600 1\r\nv\r\nset kept 0 0 1\r\nv\r\n", count=2) == b"STORED\r\n" * 2
    wall.set(HOUR)
    assert conn.exchange(b"get due\r\n", until=b"END\r\n") == b"VALUE due 0 1\r\nv\r\nEND\r\n"  # running: alive
    server.kill9()  # (not SIGTERM: see the docstring)
    server.restart()
    # the records keep absolute times and the new process reads the wall clock
    reply = connect(server).exchange(b"get due kept\r\n", until=b"END\r\n")
    assert reply == b"VALUE kept 0 1\r\nv\r\nEND\r\n"
