"""End to end with a real meta-protocol client: the `meta-memcache` package
(4.x) drives a real server process (`python -m reactor`, or memcached with
MCLITE_TARGET=memcached) through mg/ms/md/ma: set, get, delete, touch,
counters, cas, stale-while-revalidate and leases. The last tests restart our
server and check that the meta item state survived."""

import pytest

meta_memcache = pytest.importorskip("meta_memcache")
from meta_memcache import (  # noqa: E402
    CacheClient,
    LeasePolicy,
    RecachePolicy,
    ServerAddress,
    StalePolicy,
    connection_pool_factory_builder,
)


def client_of(server):
    return CacheClient.cache_client_from_servers(
        servers=[ServerAddress(host="127.0.0.1", port=server.port)],
        connection_pool_factory_fn=connection_pool_factory_builder(recv_timeout=10, connection_timeout=10),
    )


@pytest.fixture(scope="module")
def client(mclite):
    return client_of(mclite)


def test_set_then_get_returns_the_value(client):
    assert client.set("mm:set", b"hello", ttl=100)
    assert client.get("mm:set") == b"hello"


def test_values_of_other_types_round_trip_through_the_client_flags(client):
    assert client.set("mm:typed", {"a": [1, 2]}, ttl=100)
    assert client.get("mm:typed") == {"a": [1, 2]}


def test_a_missing_key_is_none(client):
    assert client.get("mm:never-set") is None


def test_delete_removes_and_reports_a_miss_after(client):
    client.set("mm:del", b"v", ttl=100)
    assert client.delete("mm:del") is True
    assert client.get("mm:del") is None
    assert client.delete("mm:del") is False


def test_touch_hits_a_present_key_only(client):
    client.set("mm:touch", b"v", ttl=100)
    assert client.touch("mm:touch", ttl=10) is True
    assert client.touch("mm:touch-missing", ttl=10) is False


def test_counters_initialize_and_count(client):
    assert client.delta_initialize("mm:n", 5, initial_value=10, initial_ttl=100)
    assert client.delta_and_get("mm:n", 3) == 13
    assert client.delta("mm:n", -2)
    assert client.get("mm:n") == "11"


def test_cas_write_succeeds_once_with_the_token_read(client):
    client.set("mm:cas", b"v1", ttl=100)
    _, token = client.get_cas("mm:cas")
    assert client.set("mm:cas", b"v2", ttl=100, cas_token=token)
    assert not client.set("mm:cas", b"v3", ttl=100, cas_token=token)
    assert client.get("mm:cas") == b"v2"


def test_multi_get_answers_hits_and_misses(client):
    client.set("mm:m1", b"1", ttl=100)
    got = client.multi_get(["mm:m1", "mm:m-missing"])
    assert {k.key: v for k, v in got.items()} == {"mm:m1": b"1", "mm:m-missing": None}


def test_a_stale_item_gives_one_client_the_miss_and_the_others_the_stale_value(client):
    stale = StalePolicy(mark_stale_on_deletion_ttl=30)
    client.set("mm:swr", b"old", ttl=100)
    assert client.delete("mm:swr", stale_policy=stale)
    winner, token = client.get_or_lease_cas("mm:swr", lease_policy=LeasePolicy())
    loser, _ = client.get_or_lease_cas("mm:swr", lease_policy=LeasePolicy())
    assert (winner, loser) == (None, b"old")
    assert client.set("mm:swr", b"new", ttl=100, cas_token=token)
    assert client.get("mm:swr") == b"new"


def test_a_miss_with_a_lease_is_won_by_the_first_client_only(client):
    value, token = client.get_or_lease_cas("mm:lease", lease_policy=LeasePolicy())
    assert value is None and token is not None
    assert client.set("mm:lease", b"filled", ttl=100, cas_token=token)
    assert client.get_or_lease("mm:lease", lease_policy=LeasePolicy()) == b"filled"


def test_recache_hands_one_client_the_refresh_before_the_ttl_runs_out(client):
    client.set("mm:recache", b"v", ttl=20)
    policy = RecachePolicy(ttl=60)
    first = client.get_or_lease("mm:recache", lease_policy=LeasePolicy(), recache_policy=policy)
    second = client.get_or_lease("mm:recache", lease_policy=LeasePolicy(), recache_policy=policy)
    assert (first, second) == (None, b"v")


def test_stale_state_and_recache_token_survive_a_restart(start_mclite, connect, target):
    if target != "mclite":
        pytest.skip("memcached forgets its items on restart")
    server = start_mclite()
    client = client_of(server)
    client.set("mm:persist", b"old", ttl=100)
    assert client.delete("mm:persist", stale_policy=StalePolicy(mark_stale_on_deletion_ttl=30))
    assert client.get_or_lease("mm:persist", lease_policy=LeasePolicy()) is None  # won
    server.restart()
    client = client_of(server)
    # still stale, and the win was already handed out: the stale value, no second win
    assert client.get_or_lease("mm:persist", lease_policy=LeasePolicy()) == b"old"
    c = connect(server)
    assert c.exchange(b"mg mm:persist v\r\n", count=2) == b"VA 3 Z X\r\nold\r\n"


def test_fetched_state_is_saved_at_a_clean_stop(start_mclite, connect, target):
    if target != "mclite":
        pytest.skip("memcached forgets its items on restart")
    server = start_mclite()
    c = connect(server)
    assert c.exchange(b"ms mm:fetched 1\r\na\r\nmg mm:fetched h\r\nmg mm:fetched h\r\n", count=3) == (
        b"HD\r\nHD h0\r\nHD h1\r\n"
    )
    server.restart()
    c = connect(server)
    assert c.exchange(b"mg mm:fetched h\r\n") == b"HD h1\r\n"
    assert b" fetch=yes " in c.exchange(b"me mm:fetched\r\n")
