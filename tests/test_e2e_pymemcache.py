"""End to end through pymemcache: every command a real client sends.

One server process serves the whole module; every test works on its own keys
(derived from the test's id), so tests do not see each other's items. Each
test runs twice: with pymemcache's ``Client`` and with its ``PooledClient``.

pymemcache 4 has no gat/gats method; those are covered by the raw and the
differential suites.
"""

from __future__ import annotations

import re
import threading
import time

import pytest
from pymemcache.client.base import Client, PooledClient
from pymemcache.exceptions import (
    MemcacheClientError,
    MemcacheIllegalInputError,
    MemcacheServerError,
    MemcacheUnknownCommandError,
)

ITEM_SIZE_MAX = 1024 * 1024  # both servers' default -I 1m
PAST_ABSOLUTE = 30 * 24 * 3600 + 1  # > 30 days: a unix time, in January 1970


@pytest.fixture(params=[Client, PooledClient], ids=["Client", "PooledClient"])
def client_class(request):
    return request.param


@pytest.fixture
def make_client(mclite, client_class):
    made = []

    def make():
        c = client_class(
            mclite.address,
            connect_timeout=5,
            timeout=10,
            default_noreply=False,
        )
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


@pytest.fixture
def client(make_client):
    return make_client()


@pytest.fixture
def key(request) -> str:
    """A key of this test's own: no other test touches it."""
    return re.sub(r"[^A-Za-z0-9_.:-]", "_", request.node.name)[:200]


def stat_delta(client, action, *names):
    """Run ``action`` and return how much each named counter moved."""
    before = client.stats()
    action()
    after = client.stats()
    return {n: after[n.encode()] - before[n.encode()] for n in names}


# --------------------------------------------------------------------------
# set / get


def test_set_then_get_returns_the_value(client, key):
    assert client.set(key, b"hello") is True
    assert client.get(key) == b"hello"


def test_get_of_missing_key_returns_none(client, key):
    assert client.get(key) is None
    assert client.get(key, default=b"dflt") == b"dflt"


def test_set_overwrites(client, key):
    client.set(key, b"one")
    client.set(key, b"two")
    assert client.get(key) == b"two"


def test_set_keeps_flags(client, key):
    client.set(key, b"v", flags=123456)
    assert client.raw_command(f"get {key}", end_tokens=b"END\r\n") == f"VALUE {key} 123456 1\r\nv\r\n".encode()


def test_empty_value_round_trips(client, key):
    client.set(key, b"")
    assert client.get(key) == b""


def test_get_many_returns_only_hits(client, key):
    client.set(key + ":a", b"1")
    client.set(key + ":c", b"3")
    got = client.get_many([key + ":a", key + ":b", key + ":c"])
    assert got == {key + ":a": b"1", key + ":c": b"3"}


def test_set_many_stores_all(client, key):
    items = {f"{key}:{i}": str(i).encode() for i in range(20)}
    assert client.set_many(items) == []
    assert client.get_many(list(items)) == items


# --------------------------------------------------------------------------
# gets / cas


def test_gets_returns_value_and_cas_token(client, key):
    client.set(key, b"v")
    value, cas = client.gets(key)
    assert value == b"v"
    assert cas.isdigit()


def test_gets_of_missing_key_returns_none_pair(client, key):
    assert client.gets(key) == (None, None)


def test_cas_token_changes_on_every_write(client, key):
    client.set(key, b"a")
    _, cas1 = client.gets(key)
    client.set(key, b"a")
    _, cas2 = client.gets(key)
    assert cas1 != cas2


def test_gets_many_returns_a_token_per_key(client, key):
    client.set(key + ":a", b"1")
    client.set(key + ":b", b"2")
    got = client.gets_many([key + ":a", key + ":b", key + ":x"])
    assert set(got) == {key + ":a", key + ":b"}
    assert got[key + ":a"][0] == b"1" and got[key + ":b"][0] == b"2"
    assert got[key + ":a"][1] != got[key + ":b"][1]


def test_cas_with_current_token_stores(client, key):
    client.set(key, b"old")
    _, cas = client.gets(key)
    assert client.cas(key, b"new", cas) is True
    assert client.get(key) == b"new"


def test_cas_with_stale_token_returns_false(client, key):
    client.set(key, b"old")
    _, cas = client.gets(key)
    client.set(key, b"changed")
    assert client.cas(key, b"new", cas) is False
    assert client.get(key) == b"changed"


def test_cas_on_missing_key_returns_none(client, key):
    assert client.cas(key, b"new", b"12345") is None
    assert client.get(key) is None


def test_cas_counters_count_hits_badval_and_misses(client, key):
    client.set(key, b"v")
    _, cas = client.gets(key)

    def act():
        client.cas(key, b"w", cas)  # hit
        client.cas(key, b"x", cas)  # stale: badval
        client.cas(key + ":missing", b"x", b"1")  # miss

    assert stat_delta(client, act, "cas_hits", "cas_badval", "cas_misses") == {
        "cas_hits": 1, "cas_badval": 1, "cas_misses": 1,
    }


# --------------------------------------------------------------------------
# add / replace / append / prepend


def test_add_stores_when_absent(client, key):
    assert client.add(key, b"v") is True
    assert client.get(key) == b"v"


def test_add_refuses_when_present(client, key):
    client.set(key, b"v")
    assert client.add(key, b"w") is False
    assert client.get(key) == b"v"


def test_replace_refuses_when_absent(client, key):
    assert client.replace(key, b"v") is False
    assert client.get(key) is None


def test_replace_stores_when_present(client, key):
    client.set(key, b"v")
    assert client.replace(key, b"w") is True
    assert client.get(key) == b"w"


def test_append_adds_to_the_end(client, key):
    client.set(key, b"abc")
    assert client.append(key, b"def") is True
    assert client.get(key) == b"abcdef"


def test_prepend_adds_to_the_front(client, key):
    client.set(key, b"abc")
    assert client.prepend(key, b"xyz") is True
    assert client.get(key) == b"xyzabc"


def test_append_and_prepend_refuse_when_absent(client, key):
    assert client.append(key, b"x") is False
    assert client.prepend(key, b"x") is False
    assert client.get(key) is None


def test_append_keeps_the_original_flags(client, key):
    client.set(key, b"a", flags=7)
    client.append(key, b"b", flags=99)
    assert client.raw_command(f"get {key}", end_tokens=b"END\r\n") == f"VALUE {key} 7 2\r\nab\r\n".encode()


# --------------------------------------------------------------------------
# delete


def test_delete_of_present_key_returns_true_and_removes(client, key):
    client.set(key, b"v")
    assert client.delete(key) is True
    assert client.get(key) is None


def test_delete_of_missing_key_returns_false(client, key):
    assert client.delete(key) is False


def test_delete_many_removes_all(client, key):
    client.set_many({key + ":a": b"1", key + ":b": b"2"})
    assert client.delete_many([key + ":a", key + ":b", key + ":c"]) is True
    assert client.get_many([key + ":a", key + ":b"]) == {}


def test_delete_counters_count_hits_and_misses(client, key):
    client.set(key, b"v")

    def act():
        client.delete(key)
        client.delete(key)

    assert stat_delta(client, act, "delete_hits", "delete_misses") == {"delete_hits": 1, "delete_misses": 1}


# --------------------------------------------------------------------------
# incr / decr


def test_incr_adds_and_returns_the_new_value(client, key):
    client.set(key, b"10")
    assert client.incr(key, 5) == 15
    assert client.get(key) == b"15"


def test_decr_subtracts_and_returns_the_new_value(client, key):
    client.set(key, b"10")
    assert client.decr(key, 3) == 7


def test_incr_of_missing_key_returns_none(client, key):
    assert client.incr(key, 1) is None
    assert client.decr(key, 1) is None


def test_incr_wraps_at_2_to_the_64(client, key):
    client.set(key, str(2**64 - 1).encode())
    assert client.incr(key, 1) == 0
    client.set(key, str(2**64 - 2).encode())
    assert client.incr(key, 5) == 3


def test_incr_accepts_the_largest_delta(client, key):
    client.set(key, b"0")
    assert client.incr(key, 2**64 - 1) == 2**64 - 1


def test_decr_stops_at_zero(client, key):
    client.set(key, b"5")
    assert client.decr(key, 10) == 0
    assert client.decr(key, 1) == 0


def test_decr_to_fewer_digits_then_incr_still_works(client, key):
    client.set(key, b"100")
    assert client.decr(key, 1) == 99
    assert client.incr(key, 1) == 100


def test_incr_grows_the_value_length(client, key):
    client.set(key, b"99")
    assert client.incr(key, 1) == 100
    assert client.get(key) == b"100"


def test_incr_of_non_numeric_value_raises_client_error(client, key):
    client.set(key, b"abc")
    with pytest.raises(MemcacheClientError, match="non-numeric"):
        client.incr(key, 1)
    assert client.get(key) == b"abc"


def test_incr_decr_counters_count_hits_and_misses(client, key):
    client.set(key, b"1")

    def act():
        client.incr(key, 1)
        client.incr(key + ":missing", 1)
        client.decr(key, 1)
        client.decr(key + ":missing", 1)

    names = ("incr_hits", "incr_misses", "decr_hits", "decr_misses")
    assert stat_delta(client, act, *names) == dict.fromkeys(names, 1)


# --------------------------------------------------------------------------
# touch and expiry (no sleeping: negative or past-absolute exptimes)


def test_touch_of_present_key_returns_true(client, key):
    client.set(key, b"v")
    assert client.touch(key, 3600) is True
    assert client.get(key) == b"v"


def test_touch_of_missing_key_returns_false(client, key):
    assert client.touch(key, 3600) is False


def test_touch_with_negative_exptime_expires_the_item(client, key):
    client.set(key, b"v")
    assert client.touch(key, -1) is True
    assert client.get(key) is None


def test_touch_counters_count_hits_and_misses(client, key):
    client.set(key, b"v")

    def act():
        client.touch(key, 100)
        client.touch(key + ":missing", 100)

    assert stat_delta(client, act, "cmd_touch", "touch_hits", "touch_misses") == {
        "cmd_touch": 2, "touch_hits": 1, "touch_misses": 1,
    }


def test_set_with_negative_exptime_is_stored_but_already_expired(client, key):
    assert client.set(key, b"v", expire=-1) is True
    assert client.get(key) is None


def test_set_with_absolute_exptime_in_the_past_is_already_expired(client, key):
    assert client.set(key, b"v", expire=PAST_ABSOLUTE) is True
    assert client.get(key) is None


def test_set_with_absolute_exptime_in_the_future_is_alive(client, key):
    assert client.set(key, b"v", expire=int(time.time()) + 3600) is True
    assert client.get(key) == b"v"


def test_set_with_relative_exptime_of_thirty_days_is_alive(client, key):
    assert client.set(key, b"v", expire=30 * 24 * 3600) is True
    assert client.get(key) == b"v"


def test_add_over_an_expired_item_succeeds(client, key):
    client.set(key, b"old", expire=-1)
    assert client.add(key, b"new") is True
    assert client.get(key) == b"new"


def test_get_of_expired_item_counts_get_expired(client, key):
    client.set(key, b"v", expire=-1)
    delta = stat_delta(client, lambda: client.get(key), "get_expired", "get_misses")
    assert delta == {"get_expired": 1, "get_misses": 1}


# --------------------------------------------------------------------------
# flush_all


def test_flush_all_removes_every_item(client, key):
    client.set_many({key + ":a": b"1", key + ":b": b"2"})
    assert client.flush_all() is True
    assert client.get_many([key + ":a", key + ":b"]) == {}


def test_items_set_after_flush_all_are_alive(client, key):
    client.set(key, b"old")
    client.flush_all()
    client.set(key, b"new")
    assert client.get(key) == b"new"


def test_flush_all_counts_cmd_flush(client, key):
    assert stat_delta(client, client.flush_all, "cmd_flush") == {"cmd_flush": 1}


def test_flush_all_with_delay_keeps_items_until_then(start_mclite, client_class, key):
    # Its own server: a pending delayed flush must not hit other tests' items.
    # That items vanish once the delay passes would need a sleep; not tested.
    server = start_mclite()
    c = client_class(server.address, connect_timeout=5, timeout=10, default_noreply=False)
    try:
        c.set(key, b"v")
        assert c.flush_all(delay=3600) is True
        assert c.get(key) == b"v"
    finally:
        c.close()


def test_flush_all_noreply_still_flushes(client, key):
    client.set(key, b"v")
    assert client.flush_all(noreply=True) is True
    assert client.get(key) is None


# --------------------------------------------------------------------------
# noreply


def test_noreply_storage_commands_take_effect(client, key):
    assert client.set(key + ":s", b"1", noreply=True) is True
    assert client.add(key + ":a", b"2", noreply=True) is True
    assert client.replace(key + ":s", b"3", noreply=True) is True
    assert client.append(key + ":s", b"4", noreply=True) is True
    assert client.prepend(key + ":s", b"5", noreply=True) is True
    assert client.get_many([key + ":s", key + ":a"]) == {key + ":s": b"534", key + ":a": b"2"}


def test_noreply_failures_send_nothing_back(client, key):
    client.set(key, b"v")
    client.add(key, b"x", noreply=True)  # NOT_STORED, not sent
    client.replace(key + ":missing", b"x", noreply=True)  # NOT_STORED, not sent
    client.delete(key + ":missing", noreply=True)  # NOT_FOUND, not sent
    client.incr(key, 1, noreply=True)  # non-numeric error, not sent
    client.touch(key + ":missing", 10, noreply=True)
    # The next reply read is the reply to this get, not a stray one.
    assert client.get(key) == b"v"


def test_noreply_delete_incr_decr_touch_take_effect(client, key):
    client.set(key + ":n", b"10")
    client.set(key + ":d", b"x")
    assert client.incr(key + ":n", 5, noreply=True) is None
    assert client.decr(key + ":n", 2, noreply=True) is None
    assert client.delete(key + ":d", noreply=True) is True
    assert client.touch(key + ":n", -1, noreply=True) is True
    assert client.get_many([key + ":n", key + ":d"]) == {}


def test_noreply_cas_takes_effect(client, key):
    client.set(key, b"old")
    _, cas = client.gets(key)
    assert client.cas(key, b"new", cas, noreply=True) is True
    assert client.get(key) == b"new"


# --------------------------------------------------------------------------
# values


def test_all_256_byte_values_round_trip(client, key):
    value = bytes(range(256)) * 4
    client.set(key, value)
    assert client.get(key) == value


def test_values_containing_crlf_and_reply_words_round_trip(client, key):
    values = {
        key + ":1": b"\r\n",
        key + ":2": b"a\r\nb\r\n",
        key + ":3": b"\r\nEND\r\n",
        key + ":4": b"VALUE x 0 1\r\ny\r\nEND\r\n",
        key + ":5": b"\n\n\r\r",
    }
    client.set_many(values)
    assert client.get_many(list(values)) == values


def test_value_of_nearly_one_megabyte_is_stored(client, key):
    value = bytes(range(256)) * ((ITEM_SIZE_MAX - 1024) // 256)
    assert client.set(key, value) is True
    assert client.get(key) == value


def test_value_over_the_item_size_limit_raises_server_error(client, key):
    with pytest.raises(MemcacheServerError, match="too large"):
        client.set(key, b"x" * (ITEM_SIZE_MAX + 1))
    assert client.get(key) is None


def test_too_large_set_removes_the_old_value(client, key):
    client.set(key, b"old")
    with pytest.raises(MemcacheServerError):
        client.set(key, b"x" * (ITEM_SIZE_MAX + 1))
    assert client.get(key) is None


def test_too_large_append_keeps_the_old_value(client, key):
    client.set(key, b"old")
    with pytest.raises(MemcacheServerError):
        client.append(key, b"x" * (ITEM_SIZE_MAX + 1))
    assert client.get(key) == b"old"


def test_longest_key_is_accepted(client, key):
    long_key = (key + "_" * 250)[:250]
    client.set(long_key, b"v")
    assert client.get(long_key) == b"v"


def test_key_too_long_is_refused_by_the_client(client, key):
    # pymemcache checks this itself; the server side is in the raw suite.
    with pytest.raises(MemcacheIllegalInputError):
        client.set("k" * 251, b"v")


# --------------------------------------------------------------------------
# misc commands


def test_version_returns_a_version_string(client):
    version = client.version()
    assert re.fullmatch(rb"[0-9A-Za-z.\-_+]+", version), version


def test_cache_memlimit_is_accepted(client):
    if not hasattr(client, "cache_memlimit"):
        pytest.skip("pymemcache's PooledClient has no cache_memlimit")
    assert client.cache_memlimit(64) is True


def test_unknown_command_raises_unknown_command_error(client):
    with pytest.raises(MemcacheUnknownCommandError):
        client.raw_command("bogus_command")


def test_quit_then_next_command_reconnects(client, key):
    client.set(key, b"v")
    client.quit()
    assert client.get(key) == b"v"


STATS_KEYS = """
pid uptime time version curr_items total_items bytes curr_connections
total_connections cmd_get cmd_set cmd_flush cmd_touch get_hits get_misses
get_expired delete_misses delete_hits incr_misses incr_hits decr_misses
decr_hits cas_misses cas_hits cas_badval touch_hits touch_misses bytes_read
bytes_written limit_maxbytes threads evictions rusage_user rusage_system
""".split()


def test_stats_has_the_standard_keys(client):
    stats = client.stats()
    missing = [k for k in STATS_KEYS if k.encode() not in stats]
    assert not missing, f"stats lacks {missing}"


def test_stats_time_is_now_and_limit_maxbytes_is_64_mb(client):
    stats = client.stats()
    assert abs(stats[b"time"] - time.time()) < 5
    assert stats[b"limit_maxbytes"] == 64 * 1024 * 1024


def test_stats_counts_sets_and_gets(client, key):
    def act():
        client.set(key, b"v")
        client.get(key)
        client.get(key + ":missing")

    assert stat_delta(client, act, "cmd_set", "cmd_get", "get_hits", "get_misses", "total_items") == {
        "cmd_set": 1, "cmd_get": 2, "get_hits": 1, "get_misses": 1, "total_items": 1,
    }


def test_stats_counts_this_connection(client):
    stats = client.stats()
    assert stats[b"curr_connections"] >= 1
    assert stats[b"total_connections"] >= stats[b"curr_connections"]


def test_stats_curr_items_counts_a_new_item(client, key):
    assert stat_delta(client, lambda: client.set(key, b"v"), "curr_items") == {"curr_items": 1}


# --------------------------------------------------------------------------
# many clients at once


def test_twenty_concurrent_clients_all_get_their_own_results(mclite, make_client, key):
    threads_n, ops = 20, 50
    shared = make_client()  # a PooledClient is shared across threads as designed
    errors = []

    def worker(t):
        c = shared if isinstance(shared, PooledClient) else make_client()
        try:
            for i in range(ops):
                k = f"{key}:{t}:{i}"
                v = f"{t}-{i}-".encode() * (i + 1)
                assert c.set(k, v) is True
                assert c.get(k) == v
                assert c.incr(f"{key}:counter", 1) is not None
                if i % 2:
                    assert c.delete(k) is True
                    assert c.get(k) is None
        except BaseException as exc:  # collected and re-raised in the main thread
            errors.append((t, repr(exc)))

    shared.set(f"{key}:counter", b"0")
    threads = [threading.Thread(target=worker, args=(t,)) for t in range(threads_n)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    assert not any(th.is_alive() for th in threads), "a client thread hung"
    assert not errors, errors[:5]
    assert shared.get(f"{key}:counter") == str(threads_n * ops).encode()
    survivors = [f"{key}:{t}:{i}" for t in range(threads_n) for i in range(0, ops, 2)]
    got = shared.get_many(survivors)
    assert len(got) == len(survivors)
