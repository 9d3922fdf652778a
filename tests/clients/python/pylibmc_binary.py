"""pylibmc (libmemcached) in binary mode, driven by tests/test_clients.py.

usage: pylibmc_binary.py HOST PORT checks|write|reread
Prints "ok <check>" per check; the first failure prints "FAIL <check>: why"
and exits 1. ``write`` writes one key, ``reread`` reads it (after the server
was restarted on the same data dir).
"""

import sys
import time

import pylibmc

host, port, phase = sys.argv[1], sys.argv[2], sys.argv[3]
mc = pylibmc.Client(
    [f"{host}:{port}"],
    binary=True,
    behaviors={"cas": True, "connect_timeout": 2000, "_poll_timeout": 500},
)
# libmemcached 1.1's binary touch waits out its poll timeout after memcached
# 1.6.18's reply (status 0, the flags as extras, no value) and then succeeds:
# the short _poll_timeout keeps that wait small.
PAST = int(time.time()) - 3600  # an absolute exptime in the past: expired at once, no waiting


def check(name, fn):
    try:
        fn()
    except Exception as e:  # the report, not a crash: the test shows the line
        print(f"FAIL {name}: {type(e).__name__}: {e}", flush=True)
        sys.exit(1)
    print(f"ok {name}", flush=True)


def expect(got, want):
    if got != want:
        raise AssertionError(f"got {got!r}, want {want!r}")


def set_get():
    expect(mc.set("py:k", b"hello"), True)
    expect(mc.get("py:k"), b"hello")
    expect(mc.get("py:missing"), None)


def get_multi():
    mc.set("py:a", b"1")
    mc.set("py:b", b"2")
    expect(mc.get_multi(["py:a", "py:b", "py:nope"]), {"py:a": b"1", "py:b": b"2"})


def delete():
    expect(mc.delete("py:a"), True)
    expect(mc.get("py:a"), None)
    expect(mc.delete("py:a"), False)


def incr_decr():
    mc.set("py:n", b"10")
    expect(mc.incr("py:n", 5), 15)
    expect(mc.decr("py:n", 20), 0)  # decr stops at 0
    try:
        mc.incr("py:nothere", 1)
    except pylibmc.NotFound:
        return
    raise AssertionError("incr of a missing key did not raise NotFound")


def cas():
    mc.set("py:c", b"v1")
    value, token = mc.gets("py:c")
    expect(value, b"v1")
    expect(mc.cas("py:c", b"v2", token), True)
    expect(mc.cas("py:c", b"v3", token), False)  # the token is stale now
    expect(mc.get("py:c"), b"v2")


def touch():
    mc.set("py:t", b"x")
    expect(mc.touch("py:t", 3600), True)
    expect(mc.get("py:t"), b"x")
    expect(mc.touch("py:t", PAST), True)
    expect(mc.get("py:t"), None)
    expect(mc.touch("py:t", 3600), False)


def expiry():
    mc.set("py:e", b"x", time=PAST)
    expect(mc.get("py:e"), None)
    mc.set("py:e2", b"y", time=3600)
    expect(mc.get("py:e2"), b"y")


def flush():
    mc.set("py:f", b"x")
    expect(mc.flush_all(), True)
    expect(mc.get("py:f"), None)


def persist_written():
    expect(mc.set("py:reread", b"kept"), True)


def restart_keeps_data():
    expect(mc.get("py:reread"), b"kept")


if phase == "checks":
    for fn in (set_get, get_multi, delete, incr_decr, cas, touch, expiry, flush):
        check(fn.__name__, fn)
elif phase == "write":
    check("persist_written", persist_written)
else:
    check("restart_keeps_data", restart_keeps_data)
