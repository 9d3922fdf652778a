"""`python -m cli dump` and `load`, end to end: items go out through
`lru_crawler metadump` and `get`, into the dump format, and come back by
`set` with their values, flags and what was left of their TTL.

Each test has a server of its own (a dump holds every item of a server, and
the round trip flushes it). MCLITE_TARGET=memcached runs them against real
memcached, which has `lru_crawler metadump` too.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cli.dump import Reader, Writer  # noqa: E402

pexpect = pytest.importorskip("pexpect")

REPO_ROOT = Path(__file__).resolve().parent.parent
EVERY_BYTE = bytes(range(256))
THIRTY_DAYS = 30 * 24 * 3600


def cli(server, *args, stdin=b""):
    return subprocess.run(
        [sys.executable, "-m", "cli", "-p", str(server.port), *map(str, args)],
        input=stdin, capture_output=True, cwd=str(REPO_ROOT), timeout=60,
    )


def store_items(conn, items):
    """Set (key, flags, exptime, value) items in one pipelined send."""
    stream = b"".join(b"set %s %d %d %d\r\n%s\r\n" % (k, f, e, len(v), v) for k, f, e, v in items)
    assert conn.exchange(stream, count=len(items)) == b"STORED\r\n" * len(items)


def everything(conn, keys):
    """key -> (flags, value) of the keys that hit."""
    conn.send(b"get " + b" ".join(keys) + b"\r\n")
    out = {}
    while True:
        line = conn.read_until(b"\r\n")
        if line == b"END\r\n":
            return out
        _, key, flags, size = line[:-2].split(b" ")
        out[key] = (int(flags), conn.read_exactly(int(size) + 2)[:-2])


def expiry_times(conn):
    """key -> (exp, la) from the server's own metadump."""
    conn.send(b"lru_crawler metadump all\r\n")
    reply = conn.read_until(b"END\r\n")
    out = {}
    for line in reply[: -len(b"END\r\n")].split(b"\n")[:-1]:
        f = dict(w.split(b"=", 1) for w in line.split(b" "))
        out[urllib.parse.unquote_to_bytes(f[b"key"])] = (int(f[b"exp"]), int(f[b"la"]))
    return out


def dumped(path):
    with open(path, "rb") as f:
        return {key: (flags, ttl, value) for key, flags, ttl, value in Reader(f)}


ITEMS = [
    (b"plain", 0, 0, b"hello"),
    (b"flags-max", 4294967295, 0, b"x"),
    (b"ttl", 3, 1000, b"lives a while"),
    (b"binary", 9, 0, EVERY_BYTE * 3),
    (b"empty", 0, 0, b""),
    (b"crlf-end", 0, 0, b"\r\nEND\r\n"),
    (b"k\xff\x01~%", 1, 0, b"odd key bytes"),
]


@pytest.fixture
def server(start_mclite):
    return start_mclite()


def test_dump_flush_load_brings_every_item_back_with_its_flags(server, connect, tmp_path):
    c = connect(server)
    store_items(c, ITEMS)
    path = tmp_path / "items.dump"
    assert cli(server, "dump", "-o", path).returncode == 0
    assert c.exchange(b"flush_all\r\n") == b"OK\r\n"
    assert everything(c, [k for k, *_ in ITEMS]) == {}
    r = cli(server, "load", path)
    assert (r.returncode, r.stderr) == (0, b"")
    assert everything(c, [k for k, *_ in ITEMS]) == {k: (f, v) for k, f, _, v in ITEMS}


def test_a_loaded_item_keeps_what_was_left_of_its_ttl(server, connect, tmp_path):
    c = connect(server)
    set_at = time.time()
    store_items(c, [(b"ttl", 0, 1000, b"v"), (b"forever", 0, 0, b"v")])
    path = tmp_path / "ttl.dump"
    cli(server, "dump", "-o", path)
    items = dumped(path)
    elapsed = time.time() - set_at
    assert 1000 - elapsed - 1 <= items[b"ttl"][1] <= 1000
    assert items[b"forever"][1] == 0
    c.exchange(b"flush_all\r\n")
    cli(server, "load", path)
    times = expiry_times(c)
    exp, la = times[b"ttl"]
    assert items[b"ttl"][1] - 1 <= exp - la <= items[b"ttl"][1]
    assert times[b"forever"][0] == -1


def test_a_ttl_over_thirty_days_comes_back_as_the_same_deadline(server, connect, tmp_path):
    c = connect(server)
    deadline = int(time.time()) + THIRTY_DAYS + 86400
    store_items(c, [(b"far", 0, deadline, b"v")])
    path = tmp_path / "far.dump"
    cli(server, "dump", "-o", path)
    c.exchange(b"flush_all\r\n")
    cli(server, "load", path)
    exp, _ = expiry_times(c)[b"far"]
    assert abs(exp - deadline) <= 1


def test_load_with_noreply_brings_every_item_back(server, connect, tmp_path):
    c = connect(server)
    store_items(c, ITEMS)
    path = tmp_path / "items.dump"
    cli(server, "dump", "-o", path)
    c.exchange(b"flush_all\r\n")
    assert cli(server, "load", "--noreply", path).returncode == 0
    assert everything(c, [k for k, *_ in ITEMS]) == {k: (f, v) for k, f, _, v in ITEMS}


def test_a_dump_of_hundreds_of_items_holds_each_once(server, connect, tmp_path):
    c = connect(server)
    items = [(b"n:%04d" % i, i, 0, b"v" * (i % 50)) for i in range(500)]
    for start in range(0, len(items), 100):
        store_items(c, items[start : start + 100])
    path = tmp_path / "many.dump"
    assert cli(server, "dump", "-o", path).returncode == 0
    assert dumped(path) == {k: (f, 0, v) for k, f, _, v in items}


def test_expired_items_are_not_dumped(server, connect, tmp_path):
    c = connect(server)
    store_items(c, [(b"gone", 0, -1, b"v"), (b"here", 0, 0, b"v")])
    path = tmp_path / "d.dump"
    cli(server, "dump", "-o", path)
    assert set(dumped(path)) == {b"here"}


def test_a_dump_to_stdout_is_the_file_and_says_nothing_when_piped(server, connect, tmp_path):
    store_items(connect(server), ITEMS)
    r = cli(server, "dump")
    assert (r.returncode, r.stderr) == (0, b"")
    assert len(list(Reader(io.BytesIO(r.stdout)))) == len(ITEMS)


def test_load_reads_a_dump_from_stdin(server, connect, tmp_path):
    c = connect(server)
    store_items(c, ITEMS)
    data = cli(server, "dump").stdout
    c.exchange(b"flush_all\r\n")
    assert cli(server, "load", stdin=data).returncode == 0
    assert len(everything(c, [k for k, *_ in ITEMS])) == len(ITEMS)


def test_dump_and_load_draw_progress_on_a_terminal(server, connect, tmp_path):
    store_items(connect(server), ITEMS)
    path = tmp_path / "tty.dump"
    for args, summary in ((["dump", "-o", str(path)], "dumped: 7 items"), (["load", str(path)], "loaded: 7 items")):
        child = pexpect.spawn(sys.executable, ["-m", "cli", "-p", str(server.port), *args],
                              cwd=str(REPO_ROOT), encoding="utf-8", timeout=30)
        child.expect_exact(summary)
        child.expect_exact("items/s")
        child.expect(pexpect.EOF)
        child.close()
        assert child.exitstatus == 0


def test_dump_refuses_to_write_binary_to_a_terminal(server):
    child = pexpect.spawn(sys.executable, ["-m", "cli", "-p", str(server.port), "dump"],
                          cwd=str(REPO_ROOT), encoding="utf-8", timeout=30)
    child.expect_exact("refusing to write a binary dump to a terminal")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 2


def test_a_damaged_dump_stops_the_load_with_exit_2_after_storing_what_came_before(server, connect, tmp_path):
    c = connect(server)
    store_items(c, [(b"a", 0, 0, b"1"), (b"b", 0, 0, b"2")])
    data = cli(server, "dump").stdout
    c.exchange(b"flush_all\r\n")
    first_item_end = data.index(b"\n", data.index(b"\n", data.index(b"\n") + 1) + 1) + 1
    r = cli(server, "load", stdin=data[: first_item_end + 5])
    assert r.returncode == 2
    assert b"is not a usable dump: file ends inside" in r.stderr
    assert b"1 items before it were loaded" in r.stderr
    assert len(everything(c, [b"a", b"b"])) == 1


def test_a_file_that_is_not_a_dump_is_refused(server, tmp_path):
    path = tmp_path / "junk"
    path.write_bytes(b"hello\n")
    r = cli(server, "load", path)
    assert r.returncode == 2
    assert b"not a memcached dump file" in r.stderr
    assert b"Traceback" not in r.stderr


def test_items_the_server_refuses_are_named_and_exit_2(server, connect, tmp_path):
    path = tmp_path / "big.dump"
    with open(path, "wb") as f:
        w = Writer(f, time.time())
        w.item(b"fits", 0, 0, b"v")
        w.item(b"too-big", 0, 0, b"x" * (2 << 20))
        w.close()
    r = cli(server, "load", path)
    assert r.returncode == 2
    assert b"1 items were not stored" in r.stderr
    assert b"too-big: SERVER_ERROR object too large for cache" in r.stderr
    assert everything(connect(server), [b"fits"]) == {b"fits": (0, b"v")}


def test_a_missing_dump_file_is_a_clear_error(server, tmp_path):
    r = cli(server, "load", tmp_path / "nope.dump")
    assert r.returncode == 2
    assert b"cannot read" in r.stderr and b"No such file" in r.stderr


def test_dump_with_nothing_listening_exits_2(free_port, tmp_path):
    r = subprocess.run([sys.executable, "-m", "cli", "-p", str(free_port()), "dump", "-o", str(tmp_path / "x")],
                       capture_output=True, cwd=str(REPO_ROOT), timeout=30)
    assert r.returncode == 2
    assert b"cannot connect" in r.stderr
    assert os.path.getsize(tmp_path / "x") == 0


# -- with real memcached in the same run (skipped where it is not installed) ----


def test_the_round_trip_works_against_real_memcached(start_memcached, connect, tmp_path):
    memcached = start_memcached()
    c = connect(memcached)
    store_items(c, ITEMS)
    path = tmp_path / "memcached.dump"
    assert cli(memcached, "dump", "-o", path).returncode == 0
    c.exchange(b"flush_all\r\n")
    assert cli(memcached, "load", "--noreply", path).returncode == 0
    assert everything(c, [k for k, *_ in ITEMS]) == {k: (f, v) for k, f, _, v in ITEMS}


def test_a_dump_of_real_memcached_loads_into_memcached_lite(start_memcached, server, connect, tmp_path):
    source = start_memcached()
    store_items(connect(source), ITEMS)
    path = tmp_path / "migrate.dump"
    assert cli(source, "dump", "-o", path).returncode == 0
    assert cli(server, "load", path).returncode == 0
    assert everything(connect(server), [k for k, *_ in ITEMS]) == {k: (f, v) for k, f, _, v in ITEMS}
