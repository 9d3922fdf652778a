"""Persistence, end to end: what was acknowledged survives the process.

Each test starts its own server on its own data dir, stops it (SIGTERM) or
crashes it (SIGKILL), starts it again on the same dir and looks. memcached
keeps nothing across restarts, so under MCLITE_TARGET=memcached this module
skips.
"""

from __future__ import annotations

import signal
import time

import pytest


@pytest.fixture(autouse=True)
def _needs_persistence(target):
    if target != "mclite":
        pytest.skip("persistence is ours: memcached forgets everything on restart")


def crash(server):
    server.kill9()


def graceful(server):
    server.stop(signal.SIGTERM)


STOPS = pytest.mark.parametrize("stop", [graceful, crash], ids=["sigterm", "kill9"])


def get_all(conn, keys, batch=100):
    """{key: (flags, value)} for the keys present, by multi-get."""
    found = {}
    for i in range(0, len(keys), batch):
        part = keys[i:i + batch]
        conn.send(b"get " + b" ".join(part) + b"\r\n")
        while True:
            line = conn.read_until(b"\r\n")
            if line == b"END\r\n":
                break
            _, key, flags, size = line.split()
            data = conn.read_exactly(int(size) + 2)
            assert data.endswith(b"\r\n"), data
            found[key] = (int(flags), data[:-2])
    return found


def stat(conn, name: bytes) -> int:
    return int(conn.stat(name))


ITEMS = {
    b"plain": (0, b"hello"),
    b"flagged": (4294967295, b"max flags"),
    b"binary": (7, bytes(range(256))),
    b"crlf": (1, b"a\r\nb\r\nEND\r\n"),
    b"empty": (0, b""),
    b"big": (2, bytes(range(256)) * 2000),
    b"%2F..%2F/../x": (0, b"path-like key"),
    b".": (0, b"dot"),
    b"..": (0, b"dotdot"),
    b"/": (0, b"slash"),
    b"lock": (0, b"a name a server file might have"),
    b"k" * 250: (3, b"longest key"),
}


def store_items(conn, items, exptime=3600):
    for key, (flags, value) in items.items():
        line = b"set %s %d %d %d\r\n" % (key, flags, exptime, len(value))
        assert conn.exchange(line + value + b"\r\n") == b"STORED\r\n", key


@STOPS
def test_items_come_back_with_flags_and_values(start_mclite, connect, stop):
    server = start_mclite()
    store_items(connect(server), ITEMS)
    stop(server)
    server.restart()
    assert get_all(connect(server), list(ITEMS)) == ITEMS


def test_items_come_back_on_a_new_port(start_mclite, connect):
    server = start_mclite()
    store_items(connect(server), {b"a": (1, b"x")})
    server.stop()
    old_port = server.port
    server.restart(new_port=True)
    assert server.port != old_port
    assert get_all(connect(server), [b"a"]) == {b"a": (1, b"x")}


@STOPS
def test_the_latest_value_of_an_overwritten_key_comes_back(start_mclite, connect, stop):
    server = start_mclite()
    c = connect(server)
    for i in range(5):
        assert c.exchange(b"set k %d 0 2\r\nv%d\r\n" % (i, i)) == b"STORED\r\n"
    assert c.exchange(b"append k 0 0 1\r\n!\r\n") == b"STORED\r\n"
    assert c.exchange(b"prepend k 0 0 1\r\n<\r\n") == b"STORED\r\n"
    stop(server)
    server.restart()
    assert get_all(connect(server), [b"k"]) == {b"k": (4, b"<v4!")}


def test_every_acknowledged_pipelined_set_survives_kill9(start_mclite, connect):
    server = start_mclite()
    c = connect(server)
    n = 500
    keys = [b"item:%d" % i for i in range(n)]
    stream = b"".join(b"set %s %d 0 %d\r\n%s\r\n" % (k, i, len(k) + 2, b"v=" + k) for i, k in enumerate(keys))
    assert c.exchange(stream, count=n) == b"STORED\r\n" * n
    server.kill9()
    server.restart()
    expected = {k: (i, b"v=" + k) for i, k in enumerate(keys)}
    assert get_all(connect(server), keys) == expected


def test_kill9_in_the_middle_of_a_write_stream_loses_nothing_acknowledged_and_tears_nothing(
    start_mclite, connect
):
    server = start_mclite()
    c = connect(server)
    value = b"x" * 4000
    n = 2000
    keys = [b"w:%d" % i for i in range(n)]
    c.send(b"".join(b"set %s 0 0 %d\r\n%s\r\n" % (k, len(value), value) for k in keys))
    # wait for some replies, then kill while the rest are being written
    acknowledged = c.exchange(b"", count=200).count(b"STORED\r\n")
    server.kill9()
    server.restart()
    c = connect(server)
    found = get_all(c, keys)
    for key in keys[:acknowledged]:
        assert found.get(key) == (0, value), key
    # whatever else made it is whole: the old value or the new, never torn
    assert all(v == (0, value) for v in found.values())
    assert stat(c, b"files_quarantined") == 0


@STOPS
def test_incr_result_survives(start_mclite, connect, stop):
    server = start_mclite()
    c = connect(server)
    assert c.exchange(b"set n 0 0 2\r\n10\r\n") == b"STORED\r\n"
    assert c.exchange(b"incr n 5\r\n") == b"15\r\n"
    stop(server)
    server.restart()
    assert get_all(connect(server), [b"n"]) == {b"n": (0, b"15")}


@STOPS
def test_deleted_item_stays_deleted(start_mclite, connect, stop):
    server = start_mclite()
    c = connect(server)
    store_items(c, {b"gone": (0, b"x"), b"kept": (0, b"y")})
    assert c.exchange(b"delete gone\r\n") == b"DELETED\r\n"
    stop(server)
    server.restart()
    assert get_all(connect(server), [b"gone", b"kept"]) == {b"kept": (0, b"y")}


@STOPS
def test_flush_all_stays_flushed_and_later_items_survive(start_mclite, connect, stop):
    server = start_mclite()
    c = connect(server)
    store_items(c, {b"f%d" % i: (0, b"old") for i in range(50)})
    assert c.exchange(b"flush_all\r\n") == b"OK\r\n"
    store_items(c, {b"after": (9, b"new")})
    stop(server)
    server.restart()
    keys = [b"f%d" % i for i in range(50)] + [b"after"]
    assert get_all(connect(server), keys) == {b"after": (9, b"new")}


@STOPS
def test_expired_items_stay_gone(start_mclite, connect, stop):
    server = start_mclite()
    c = connect(server)
    assert c.exchange(b"set neg 0 -1 1\r\nx\r\n") == b"STORED\r\n"
    assert c.exchange(b"set past 0 2592001 1\r\nx\r\n") == b"STORED\r\n"
    assert c.exchange(b"set touched 0 0 1\r\nx\r\n") == b"STORED\r\n"
    assert c.exchange(b"touch touched -1\r\n") == b"TOUCHED\r\n"
    stop(server)
    server.restart()
    assert get_all(connect(server), [b"neg", b"past", b"touched"]) == {}


def test_an_item_with_time_left_is_served_after_a_kill_and_restart(start_mclite, connect):
    server = start_mclite()
    c = connect(server)
    assert c.exchange(b"set ttl 0 1000 1\r\nx\r\n", count=1) == b"STORED\r\n"
    server.kill9()
    server.restart()
    assert get_all(connect(server), [b"ttl"]) == {b"ttl": (0, b"x")}


def test_an_item_dies_on_schedule_after_a_kill_and_restart(start_mclite, connect):
    # Needs real time to pass (about 2 s): the expiry is absolute on disk, so
    # the restart neither extends nor resets it. Polled under a deadline.
    server = start_mclite()
    c = connect(server)
    t0 = time.time()
    assert c.exchange(b"set ttl 0 2 1\r\nx\r\nset forever 0 0 1\r\ny\r\n", count=2) == b"STORED\r\nSTORED\r\n"
    server.kill9()
    server.restart()
    c = connect(server)
    deadline = t0 + 2 + 3
    while get_all(c, [b"ttl"]):
        assert time.time() < deadline, "item outlived its TTL after the restart"
        time.sleep(0.05)  # polling interval only
    assert get_all(c, [b"forever"]) == {b"forever": (0, b"y")}


def test_stats_curr_items_counts_the_items_after_restart(start_mclite, connect):
    # The start-up scan may run a slice at a time, so the count may reach
    # its value shortly after the server listens: poll, under a deadline.
    server = start_mclite()
    store_items(connect(server), {b"c%d" % i: (0, b"v") for i in range(25)})
    server.stop()
    server.restart()
    c = connect(server)
    deadline = time.monotonic() + 10
    seen = []
    while not seen or seen[-1] != 25:
        assert time.monotonic() < deadline, f"curr_items after restart went {seen}, never 25"
        seen.append(stat(c, b"curr_items"))
        if seen[-1] != 25:
            time.sleep(0.02)  # polling interval only
    assert max(seen) == 25, seen


@STOPS
def test_cas_token_of_an_unchanged_item_survives(start_mclite, connect, stop):
    server = start_mclite()
    c = connect(server)
    assert c.exchange(b"set k 0 0 1\r\nv\r\n") == b"STORED\r\n"
    cas = c.exchange(b"gets k\r\n", until=b"END\r\n").split(b"\r\n")[0].split()[4]
    stop(server)
    server.restart()
    c = connect(server)
    assert c.exchange(b"cas k 0 0 1 %s\r\nw\r\n" % cas) == b"STORED\r\n"


@STOPS
def test_cas_tokens_are_never_handed_out_twice_across_restarts(start_mclite, connect, stop):
    server = start_mclite()
    c = connect(server)
    seen = []
    for i in range(5):
        assert c.exchange(b"set a%d 0 0 1\r\nv\r\n" % i) == b"STORED\r\n"
        seen.append(int(c.exchange(b"gets a%d\r\n" % i, until=b"END\r\n").split()[4]))
    stop(server)
    server.restart()
    c = connect(server)
    assert c.exchange(b"set b 0 0 1\r\nv\r\n") == b"STORED\r\n"
    after = int(c.exchange(b"gets b\r\n", until=b"END\r\n").split()[4])
    assert after > max(seen), (seen, after)


def test_second_server_on_the_same_data_dir_is_refused(start_mclite, spawn_mclite, connect):
    first = start_mclite()
    store_items(connect(first), {b"mine": (0, b"v")})
    second = spawn_mclite(first.data_dir)
    rc = second.wait_exit()
    assert rc != 0
    err = second.stderr_text().lower()
    assert "lock" in err or str(first.data_dir).lower() in err or "already" in err, err
    assert get_all(connect(first), [b"mine"]) == {b"mine": (0, b"v")}


def test_a_full_disk_is_answered_server_error_and_what_was_stored_stays(small_disk, start_mclite, connect):
    server = start_mclite(data_dir=small_disk / "data")
    c = connect(server)
    assert c.exchange(b"set keep 5 0 4\r\nsafe\r\n") == b"STORED\r\n"
    value = b"f" * 100_000
    stored = []
    for i in range(40):  # 4 MB into a 1 MiB disk: it must fill
        reply = c.exchange(b"set fill%d 0 0 %d\r\n%s\r\n" % (i, len(value), value))
        if reply != b"STORED\r\n":
            break
        stored.append(b"fill%d" % i)
    assert reply.startswith(b"SERVER_ERROR "), reply
    assert b"No space left" in reply
    # nothing acknowledged is lost, reads go on, and the server counts it
    assert get_all(c, [b"keep"] + stored) == {b"keep": (5, b"safe"), **{k: (0, value) for k in stored}}
    assert stat(c, b"persist_errors") >= 1
    # freeing space makes writes work again
    assert c.exchange(b"delete " + stored[0] + b"\r\n") == b"DELETED\r\n"
    assert c.exchange(b"set again 0 0 1\r\nx\r\n") == b"STORED\r\n"
