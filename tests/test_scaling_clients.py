"""Sharding in the client, end to end: pymemcache's HashClient (rendezvous
hashing) and libmemcached's ketama through pylibmc, over three memcached-lite
processes on loopback.

What is shown for each: keys spread over the instances; get/set/delete,
multi-get, cas and incr answer as one server does; and an instance killed
with SIGKILL and restarted on its port and data dir loses nothing the
client had been told was stored. pylibmc is a test extra only where a wheel
exists (Linux x86_64, CPython < 3.12); elsewhere its tests skip.
"""

from __future__ import annotations

import time

import pytest
from pymemcache.client.base import Client
from pymemcache.client.hash import HashClient
from pymemcache.exceptions import MemcacheError

try:
    import pylibmc
except ImportError:  # no wheel for this platform or Python
    pylibmc = None

N_INSTANCES = 3
KEYS = [f"user:{i}" for i in range(300)]
DEADLINE = 15.0


def direct(instance) -> Client:
    return Client(instance.address, connect_timeout=5, timeout=5, default_noreply=False)


def curr_items(instance) -> int:
    c = direct(instance)
    try:
        return int(c.stats()[b"curr_items"])
    finally:
        c.close()


def holders(instances, key):
    found = []
    for instance in instances:
        c = direct(instance)
        try:
            if c.get(key) is not None:
                found.append(instance)
        finally:
            c.close()
    return found


def until(what, attempt, deadline=DEADLINE):
    end = time.monotonic() + deadline
    while True:
        result = attempt()
        if result:
            return result
        assert time.monotonic() < end, f"never saw: {what}"
        time.sleep(0.02)  # pacing the retries; the assertion is on results


# --------------------------------------------------------------------------
# the two clients behind one interface


class Sharded:
    """One interface over both clients: what they share is passed through,
    `get_multi` and whatever differs is spelled out by each."""

    def __getattr__(self, name):
        if name in ("set", "get", "delete", "gets", "cas", "incr", "decr", "add"):
            return getattr(self.c, name)
        raise AttributeError(name)


class PymemcacheHash(Sharded):
    name = "pymemcache-HashClient"
    errors = (MemcacheError, OSError)

    def __init__(self, instances):
        # retry_attempts: never take a failed instance off the ring. The
        # default (2) remaps its keys after about two retry_timeouts, and a
        # write acknowledged by another instance then is hidden behind the
        # old value once the instance returns (docs/SCALING.md).
        self.c = HashClient([i.address for i in instances], connect_timeout=5, timeout=5,
                            default_noreply=False, retry_attempts=1 << 30)

    def get_multi(self, keys):
        return self.c.get_many(keys)

    def close(self):
        self.c.close()


class Pylibmc(Sharded):
    name = "pylibmc-ketama"
    errors = (pylibmc.Error,) if pylibmc else ()

    def __init__(self, instances):
        # ketama: libmemcached's consistent hashing (md5, 160 points per
        # server, as twemproxy's). retry_timeout: a failed server is tried
        # again after a second, so a restarted one is used again soon.
        self.c = pylibmc.Client([f"127.0.0.1:{i.port}" for i in instances], binary=False,
                                behaviors={"ketama": True, "cas": True, "retry_timeout": 1,
                                           "connect_timeout": 5000})

    def get_multi(self, keys):
        return self.c.get_multi(keys)

    def incr(self, k, n):
        try:
            return self.c.incr(k, n)
        except pylibmc.NotFound:
            return None

    def close(self):
        self.c.disconnect_all()


CLIENTS = [
    pytest.param(PymemcacheHash, id="pymemcache-HashClient"),
    pytest.param(Pylibmc, id="pylibmc-ketama", marks=pytest.mark.skipif(
        pylibmc is None, reason="pylibmc is not installed (a wheel exists for Linux x86_64, CPython < 3.12)")),
]


@pytest.fixture(params=CLIENTS)
def kind(request):
    return request.param


@pytest.fixture
def instances(start_mclite):
    return [start_mclite() for _ in range(N_INSTANCES)]


@pytest.fixture
def sharded(kind, instances):
    c = kind(instances)
    yield c
    c.close()


def script(c):
    """Operations whose results must not depend on how many servers there are."""
    keys = [f"s:{i}" for i in range(30)]
    out = [bool(c.set(k, k.encode())) for k in keys]
    out.append(c.get_multi(keys + ["s:missing"]))
    out += [bool(c.add("s:0", b"no")), bool(c.add("s:new", b"yes"))]
    value, token = c.gets("s:3")
    out += [value, bool(c.cas("s:3", b"first", token)), bool(c.cas("s:3", b"second", token)), c.get("s:3")]
    out += [bool(c.set("n", b"41")), c.incr("n", 1), c.decr("n", 40), c.incr("nothing", 1)]
    out += [bool(c.delete("s:5")), bool(c.delete("s:5")), c.get("s:5")]
    return out


def test_keys_spread_over_every_instance(sharded, instances):
    for key in KEYS:
        assert sharded.set(key, b"v")
    counts = [curr_items(i) for i in instances]
    assert sum(counts) == len(KEYS), counts
    assert all(c >= len(KEYS) // 5 for c in counts), counts


def test_commands_answer_as_one_server_does(kind, sharded, start_mclite):
    single = kind([start_mclite()])
    try:
        assert script(sharded) == script(single)
    finally:
        single.close()


def test_every_key_lives_on_exactly_one_instance(sharded, instances):
    for key in KEYS[:60]:
        assert sharded.set(key, b"v")
    assert all(len(holders(instances, key)) == 1 for key in KEYS[:60])


def test_an_instance_killed_and_restarted_loses_nothing_it_acknowledged(kind, sharded, instances):
    if not instances[0].persistent:
        pytest.skip("persistence is ours: memcached forgets everything on restart")
    acknowledged = {}
    for key in KEYS:
        assert sharded.set(key, b"before-" + key.encode())
        acknowledged[key] = b"before-" + key.encode()
    victim = instances[1]
    victim.kill9()

    # While it is down, writes go on; the client says which were stored.
    # (Its own keys are refused or reported not stored: neither client
    # remaps them this quickly, so nothing lands elsewhere.)
    for key in KEYS[::3]:
        value = b"during-" + key.encode()
        try:
            if sharded.set(key, value):
                acknowledged[key] = value
        except kind.errors:
            pass
    assert any(v.startswith(b"during-") for v in acknowledged.values())

    victim.restart()  # same port, same data dir
    fresh = kind(instances)
    try:
        # the first request to the restarted instance may still be refused
        # by a client that remembers the failure: retry under a deadline
        def read_all():
            try:
                return fresh.get_multi(list(acknowledged)) == acknowledged
            except kind.errors:
                return False

        until("every acknowledged value read back", read_all)
    finally:
        fresh.close()
