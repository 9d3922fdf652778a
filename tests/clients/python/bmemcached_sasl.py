"""python-binary-memcached (bmemcached: binary protocol, SASL PLAIN), driven
by tests/test_clients.py.

usage: bmemcached_sasl.py HOST PORT checks|write|reread USER PASSWORD
Prints "ok <check>" per check; the first failure prints "FAIL <check>: why"
and exits 1. bmemcached has no touch.
"""

import sys
import time

import bmemcached

host, port, phase, user, password = sys.argv[1:6]
mc = bmemcached.Client([f"{host}:{port}"], user, password, socket_timeout=2)
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


def sasl_refuses_a_wrong_password():
    wrong = bmemcached.Client([f"{host}:{port}"], user, password + "x", socket_timeout=2)
    try:
        wrong.set("bm:k", "nope")
    except bmemcached.exceptions.MemcachedException as e:
        expect(e.code, 0x20)  # auth error
        return
    finally:
        wrong.disconnect_all()
    raise AssertionError("a wrong password was let in")


def set_get():
    expect(mc.set("bm:k", "hello"), True)
    expect(mc.get("bm:k"), "hello")
    expect(mc.get("bm:missing"), None)


def get_multi():
    mc.set("bm:a", "1")
    mc.set("bm:b", "2")
    expect(mc.get_multi(["bm:a", "bm:b", "bm:nope"]), {"bm:a": "1", "bm:b": "2"})


def delete():
    expect(mc.delete("bm:a"), True)
    expect(mc.get("bm:a"), None)  # (bmemcached answers True for a missing key too)


def incr_decr():
    mc.set("bm:n", "10")  # a str is stored as is, so the server can count it
    expect(mc.incr("bm:n", 5), 15)
    expect(mc.decr("bm:n", 20), 0)  # decr stops at 0


def cas():
    mc.set("bm:c", "v1")
    value, token = mc.gets("bm:c")
    expect(value, "v1")
    expect(mc.cas("bm:c", "v2", token), True)
    expect(mc.cas("bm:c", "v3", token), False)  # the token is stale now
    expect(mc.get("bm:c"), "v2")


def expiry():
    mc.set("bm:e", "x", time=PAST)
    expect(mc.get("bm:e"), None)
    mc.set("bm:e2", "y", time=3600)
    expect(mc.get("bm:e2"), "y")


def flush():
    mc.set("bm:f", "x")
    expect(mc.flush_all(), True)
    expect(mc.get("bm:f"), None)


def persist_written():
    expect(mc.set("bm:reread", "kept"), True)


def restart_keeps_data():
    expect(mc.get("bm:reread"), "kept")


if phase == "checks":
    for fn in (sasl_refuses_a_wrong_password, set_get, get_multi, delete, incr_decr, cas, expiry, flush):
        check(fn.__name__, fn)
elif phase == "write":
    check("persist_written", persist_written)
else:
    check("restart_keeps_data", restart_keeps_data)
