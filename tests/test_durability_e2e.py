"""Durability end to end, against a real `python -m reactor` process: at every
`--fsync` level, what a client was told is what a restart finds, kill -9 in
the middle of many writers included; damaged files at start-up are set aside,
never served; and under `always`, strace shows that no reply leaves before
the barrier that makes its write durable.

A power cut cannot be staged here; what it would lose is what the barrier
order decides, and that order is what the strace test and test_durability.py
check.
"""

from __future__ import annotations

import os
import random
import re
import select
import shutil
import signal
import subprocess
import time

import pytest

LEVELS = ["always", "everysec", "no"]


@pytest.fixture(autouse=True)
def _needs_persistence(target):
    if target != "mclite":
        pytest.skip("persistence is ours: memcached forgets everything on restart")


def stat(conn, name: bytes, sub: bytes = b"") -> bytes:
    """One value of `stats` (or `stats <sub>`)."""
    return conn.stat(name, sub)


def get_one(conn, key):
    reply = conn.exchange(b"get " + key + b"\r\n", until=b"END\r\n")
    if reply == b"END\r\n":
        return None
    head, rest = reply.split(b"\r\n", 1)
    _, _, flags, size = head.split()
    return int(flags), rest[: int(size)]


# == what each level shows ======================================================


@pytest.mark.parametrize("level", LEVELS)
def test_the_level_is_shown_in_stats_settings_and_stats(level, start_mclite, connect):
    c = connect(start_mclite(extra_args=["--fsync", level]))
    assert stat(c, b"fsync", b"settings") == level.encode()
    assert stat(c, b"fsync_level") == level.encode()
    assert stat(c, b"fsync_method", b"settings") in (b"syncfs", b"fsync")


def test_the_start_up_line_names_the_level(start_mclite):
    server = start_mclite(extra_args=["--fsync", "always"])
    assert re.search(r"fsync always \((syncfs|fsync)\)", server.stderr_text())


def test_everysec_is_the_default(start_mclite, connect):
    assert stat(connect(start_mclite()), b"fsync", b"settings") == b"everysec"


def test_always_counts_its_barriers(start_mclite, connect):
    c = connect(start_mclite(extra_args=["--fsync", "always"]))
    before = int(stat(c, b"fsync_calls"))
    assert c.exchange(b"set k 0 0 1\r\nv\r\n") == b"STORED\r\n"
    assert int(stat(c, b"fsync_calls")) == before + 2


def test_an_unknown_level_is_refused_at_start(tmp_path, spawn_mclite):
    server = spawn_mclite(tmp_path / "d", extra_args=["--fsync", "sometimes"])
    assert server.wait_exit() == 1  # a bad value: getopt's status, as memcached
    assert "invalid choice: 'sometimes'" in server.stderr_text()


# == kill -9 under many writers =================================================


def run_writers(conns, keys_per_conn, value, kill_after, kill):
    """Each connection pipelines sets of its own keys, then deletes every
    third of them; replies are read round-robin and `kill` runs once
    `kill_after` replies have arrived. Returns (stored, deleted): the keys
    whose STORED / DELETED the client received."""
    streams = {}
    for n, c in enumerate(conns):
        keys = [b"w%d:%d" % (n, i) for i in range(keys_per_conn)]
        sets = b"".join(b"set %s %d 0 %d\r\n%s\r\n" % (k, n, len(value), value) for k in keys)
        deletes = b"".join(b"delete %s\r\n" % k for k in keys[::3])
        c.send(sets + deletes)
        streams[c] = [(b"STORED\r\n", k) for k in keys] + [(b"DELETED\r\n", k) for k in keys[::3]]
    stored, deleted = set(), set()
    replies = 0
    pending = dict(streams)
    while pending and replies < kill_after:
        for c in list(pending):
            expected, key = pending[c][0]
            if not (c.buf or select.select([c.sock], [], [], 0.01)[0]):
                continue
            assert c.read_until(b"\r\n") == expected
            (stored if expected == b"STORED\r\n" else deleted).add(key)
            pending[c].pop(0)
            if not pending[c]:
                del pending[c]
            replies += 1
    kill()
    return stored, deleted


@pytest.mark.parametrize("level", LEVELS)
def test_kill9_among_many_writers_loses_no_acknowledged_write_or_delete(level, start_mclite, connect):
    server = start_mclite(extra_args=["--fsync", level])
    writers, per_conn = 8, 150
    value = b"v" * 500
    # a moment chosen by a seeded draw: somewhere in the middle of the sets
    # or of the deletes, different for each level, the same on every run
    kill_after = random.Random(level).randrange(200, writers * per_conn)
    conns = [connect(server) for _ in range(writers)]
    stored, deleted = run_writers(conns, per_conn, value, kill_after, server.kill9)
    server.restart()
    c = connect(server)
    for key in stored:
        n, i = (int(x) for x in key[1:].split(b":"))
        found = get_one(c, key)
        if key in deleted:
            assert found is None, key
        elif i % 3:
            assert found == (n, value), key
        else:
            # its delete was sent but not acknowledged: either is right
            assert found in (None, (n, value)), key
    assert stat(c, b"files_quarantined") == b"0"


@pytest.mark.parametrize("level", LEVELS)
def test_an_acknowledged_flush_all_survives_kill9(level, start_mclite, connect):
    server = start_mclite(extra_args=["--fsync", level])
    c = connect(server)
    for i in range(20):
        assert c.exchange(b"set old%d 0 0 1\r\nx\r\n" % i) == b"STORED\r\n"
    assert c.exchange(b"flush_all\r\n") == b"OK\r\n"
    assert c.exchange(b"set new 0 0 1\r\ny\r\n") == b"STORED\r\n"
    server.kill9()
    server.restart()
    c = connect(server)
    assert all(get_one(c, b"old%d" % i) is None for i in range(20))
    assert get_one(c, b"new") == (0, b"y")


# == damaged files at start-up ==================================================


def record_path(data_dir, key):
    import hashlib

    h = hashlib.blake2b(key, digest_size=16).hexdigest()
    return os.path.join(data_dir, "items", h[:2], h[2:4], h)


def test_damaged_and_foreign_files_at_start_up_are_quarantined_never_served(start_mclite, connect, tmp_path):
    data_dir = tmp_path / "damaged"
    server = start_mclite(data_dir=data_dir)
    c = connect(server)
    keys = [b"truncated", b"flipped", b"swapped", b"other", b"intact"]
    for k in keys:
        assert c.exchange(b"set %s 3 0 20\r\n%s\r\n" % (k, b"v" * 20)) == b"STORED\r\n"
    server.stop()
    paths = {k: record_path(data_dir, k) for k in keys}
    with open(paths[b"truncated"], "r+b") as f:
        f.truncate(os.path.getsize(paths[b"truncated"]) - 7)
    with open(paths[b"flipped"], "r+b") as f:
        f.seek(60)  # a byte of the record's key or value (a two-slot file's ends in zeros)
        f.write(b"X")
    # a whole, valid record of another key under this key's name
    shutil.copyfile(paths[b"other"], paths[b"swapped"])
    foreign = os.path.join(os.path.dirname(paths[b"intact"]), "0" * 32)
    with open(foreign, "wb") as f:
        f.write(b"not a record, just some bytes someone left here")
    with open(os.path.join(data_dir, "tmp", "12345.7"), "wb") as f:
        f.write(b"half a record from a crash")
    server.restart()
    c = connect(server)
    # the scan runs in the background: wait for it through the protocol
    for _ in range(500):
        if stat(c, b"startup_scan_done") == b"1":
            break
    assert stat(c, b"startup_scan_done") == b"1"
    assert stat(c, b"files_quarantined") == b"4"
    for k in (b"truncated", b"flipped", b"swapped"):
        assert get_one(c, k) is None, k
    assert get_one(c, b"intact") == (3, b"v" * 20)
    assert get_one(c, b"other") == (3, b"v" * 20)
    assert stat(c, b"curr_items") == b"2"
    assert sorted(os.listdir(data_dir / "quarantine")) == sorted(
        os.path.basename(p) for p in (paths[b"truncated"], paths[b"flipped"], paths[b"swapped"], foreign)
    )
    assert os.listdir(data_dir / "tmp") == []


def test_a_data_dir_of_another_format_is_refused_with_a_clear_message(tmp_path, spawn_mclite):
    data_dir = tmp_path / "future"
    data_dir.mkdir()
    (data_dir / "FORMAT").write_text("memcached-lite 99\n")
    server = spawn_mclite(data_dir)
    assert server.wait_exit() == 1
    assert "has format 'memcached-lite 99'; this server reads 'memcached-lite 4'" in server.stderr_text()


# == a full disk under always ===================================================


def test_a_full_disk_under_always_is_answered_server_error_and_reads_go_on(small_disk, start_mclite, connect):
    server = start_mclite(data_dir=small_disk / "data", extra_args=["--fsync", "always"])
    c = connect(server)
    assert c.exchange(b"set keep 5 0 4\r\nsafe\r\n") == b"STORED\r\n"
    value = b"f" * 100_000
    for i in range(40):  # 4 MB into a 1 MiB disk: it must fill
        reply = c.exchange(b"set fill%d 0 0 %d\r\n%s\r\n" % (i, len(value), value))
        if reply != b"STORED\r\n":
            break
    assert reply.startswith(b"SERVER_ERROR ") and b"No space left" in reply, reply
    assert get_one(c, b"keep") == (5, b"safe")
    assert int(stat(c, b"persist_errors")) >= 1


# == the order of barriers and replies, seen by strace ==========================


def strace_works():
    if shutil.which("strace") is None:
        return False
    done = subprocess.run(["strace", "-f", "-qq", "-e", "trace=none", "true"], capture_output=True)
    return done.returncode == 0


@pytest.mark.skipif(not strace_works(), reason="strace is not installed or ptrace is not allowed here")
def test_under_always_no_stored_leaves_before_a_barrier_after_its_rename(tmp_path, start_mclite, connect):
    """Trace the real server: every send carrying a STORED must come after a
    syncfs/fsync that follows the last rename of an item file."""
    server = start_mclite(extra_args=["--fsync", "always"])
    trace = tmp_path / "trace"
    tracer = subprocess.Popen(
        ["strace", "-f", "-p", str(server.pid), "-o", str(trace), "-e",
         "trace=syncfs,fsync,fdatasync,rename,renameat,renameat2,sendto,sendmsg,write"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        # strace says so on stderr once it is attached
        assert "attached" in tracer.stderr.readline()
        conns = [connect(server) for _ in range(4)]
        for round_ in range(25):
            for n, c in enumerate(conns):
                c.send(b"set k%d:%d 0 0 3\r\nabc\r\n" % (n, round_))
            for c in conns:
                assert c.read_until(b"\r\n") == b"STORED\r\n"
        server.stop()
        tracer.wait(timeout=30)
    finally:
        if tracer.poll() is None:
            tracer.kill()
            tracer.wait()
        tracer.stderr.close()
    renamed_since_barrier = False
    renames = stores_sent = 0
    for line in trace.read_text(errors="replace").splitlines():
        if re.search(r"\brename(at2?)?\(.*/items/", line):
            renamed_since_barrier = True
            renames += 1
        elif re.search(r"\b(syncfs|fsync|fdatasync)\(", line):
            renamed_since_barrier = False
        elif re.search(r"\b(sendto|sendmsg|write)\(.*STORED", line):
            assert not renamed_since_barrier, f"a reply left before its rename was durable: {line}"
            stores_sent += line.count("STORED")
    assert renames == 100
    assert stores_sent == 100


def children_of(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except FileNotFoundError:
        return []


def test_the_everysec_sync_helper_does_not_outlive_a_server_killed_with_kill9(start_mclite):
    server = start_mclite(extra_args=["--fsync", "everysec"])
    [helper] = children_of(server.pid)
    with open(f"/proc/{helper}/cmdline", "rb") as f:
        assert b"syncfs" in f.read()
    server.kill9()
    # its stdin closes with the server: it exits (and init reaps it)
    deadline = time.monotonic() + 10
    while os.path.exists(f"/proc/{helper}") and _state_of(helper) not in ("Z", "X"):
        assert time.monotonic() < deadline, "the sync helper outlived the server"
        os.sched_yield()


def _state_of(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return "X"


# == the everysec helper's watchdog =============================================

# short, so a lost barrier is given up soon (yet well past a healthy syncfs on
# a busy disk, or the new helper might be given up too); the tests wait for what the
# server reports, never for this long
WATCHDOG_ARGS = ["--fsync", "everysec", "-o", "fsync_watchdog=2"]
SETTLE = 30.0  # the most the tests wait for the server to report recovery


def helper_stats(conn):
    return {name: stat(conn, name.encode()).decode()
            for name in ("fsync_helper", "fsync_helper_restarts", "fsync_unsynced_seconds")}


def until_stats(conn, wanted, deadline=SETTLE):
    """Poll `stats` until the helper's rows read `wanted`; fail at the deadline."""
    end = time.monotonic() + deadline
    while True:
        found = helper_stats(conn)
        if all(found[name] == value for name, value in wanted.items()):
            return found
        assert time.monotonic() < end, f"the helper's stats stayed {found}, not {wanted}"
        time.sleep(0.05)


RECOVERED = {"fsync_helper": "running", "fsync_helper_restarts": "1", "fsync_unsynced_seconds": "0.000"}


def test_the_helper_is_reported_running_and_writes_durable(start_mclite, connect):
    c = connect(start_mclite(extra_args=WATCHDOG_ARGS))
    assert c.exchange(b"set k 0 0 1\r\nv\r\n") == b"STORED\r\n"
    until_stats(c, {"fsync_helper": "running", "fsync_helper_restarts": "0", "fsync_unsynced_seconds": "0.000"})


@pytest.mark.parametrize("sig", [signal.SIGSTOP, signal.SIGKILL], ids=["stopped", "killed"])
def test_a_stopped_or_killed_helper_is_replaced_and_the_write_made_durable(sig, start_mclite, connect):
    server = start_mclite(extra_args=WATCHDOG_ARGS)
    [helper] = children_of(server.pid)
    c = connect(server)
    os.kill(helper, sig)
    assert c.exchange(b"set k 0 0 1\r\nv\r\n") == b"STORED\r\n"
    until_stats(c, RECOVERED)
    assert children_of(server.pid) != [helper]
    assert not os.path.exists(f"/proc/{helper}")  # killed and reaped
    assert "the sync helper" in server.stderr_text()


def test_a_server_stopped_for_seconds_keeps_its_helper_and_answers(start_mclite, connect):
    server = start_mclite(extra_args=WATCHDOG_ARGS)
    [helper] = children_of(server.pid)
    c = connect(server)
    assert c.exchange(b"set k 0 0 1\r\nv\r\n") == b"STORED\r\n"  # a barrier may be in flight now
    os.kill(server.pid, signal.SIGSTOP)
    try:
        time.sleep(3.0)  # the stop itself, longer than the watchdog
    finally:
        os.kill(server.pid, signal.SIGCONT)
    assert c.exchange(b"set k2 0 0 1\r\nv\r\n") == b"STORED\r\n"
    until_stats(c, {"fsync_helper": "running", "fsync_unsynced_seconds": "0.000"})
    assert helper_stats(c)["fsync_helper_restarts"] == "0"
    assert children_of(server.pid) == [helper]
