"""The in-memory cache (store/cache.py): least recently used first out, bounded
by bytes; and, through the Store, leaving memory never loses an item."""

import pytest

from store import Mode, Result, Store
from store.cache import LRUCache
from store.items import Item
from store.record import HEADER_SIZE


class Sized:
    """A stand-in item: the cache only looks at .key and .size."""

    def __init__(self, key, size):
        self.key = key
        self.size = size


def keys(cache):
    return list(cache.items)  # oldest first


# -- LRUCache -----------------------------------------------------------------


def test_get_of_missing_key_is_none():
    assert LRUCache(100).get(b"nope") is None


def test_put_then_get_returns_the_same_item():
    cache = LRUCache(100)
    item = Sized(b"a", 10)
    cache.put(item)
    assert cache.get(b"a") is item
    assert b"a" in cache and len(cache) == 1


def test_used_is_the_sum_of_item_sizes():
    cache = LRUCache(100)
    cache.put(Sized(b"a", 10))
    cache.put(Sized(b"b", 20))
    assert cache.used == 30


def test_replacing_an_item_counts_only_the_new_size():
    cache = LRUCache(100)
    cache.put(Sized(b"a", 10))
    cache.put(Sized(b"a", 25))
    assert cache.used == 25 and len(cache) == 1
    assert cache.get(b"a").size == 25


def test_least_recently_put_leaves_first():
    cache = LRUCache(30)
    for k in (b"a", b"b", b"c"):
        cache.put(Sized(k, 10))
    cache.put(Sized(b"d", 10))
    assert keys(cache) == [b"b", b"c", b"d"]
    assert cache.evictions == 1


def test_get_makes_an_item_most_recently_used():
    cache = LRUCache(30)
    for k in (b"a", b"b", b"c"):
        cache.put(Sized(k, 10))
    cache.get(b"a")
    cache.put(Sized(b"d", 10))
    assert keys(cache) == [b"c", b"a", b"d"]


def test_put_of_an_existing_key_makes_it_most_recently_used():
    cache = LRUCache(30)
    for k in (b"a", b"b", b"c"):
        cache.put(Sized(k, 10))
    cache.put(Sized(b"a", 10))
    cache.put(Sized(b"d", 10))
    assert keys(cache) == [b"c", b"a", b"d"]


def test_a_miss_changes_no_order():
    cache = LRUCache(30)
    for k in (b"a", b"b"):
        cache.put(Sized(k, 10))
    cache.get(b"zz")
    assert keys(cache) == [b"a", b"b"]


def test_used_never_exceeds_the_limit():
    cache = LRUCache(100)
    for i in range(200):
        cache.put(Sized(b"k%d" % i, 1 + i % 37))
        assert cache.used <= 100
    assert cache.used == sum(item.size for item in cache.items.values())


def test_an_item_exactly_at_the_limit_is_kept():
    cache = LRUCache(50)
    cache.put(Sized(b"a", 50))
    assert b"a" in cache and cache.used == 50


def test_an_item_larger_than_the_limit_is_not_kept_and_evicts_nothing():
    cache = LRUCache(50)
    cache.put(Sized(b"a", 10))
    cache.put(Sized(b"big", 51))
    assert b"big" not in cache
    assert keys(cache) == [b"a"] and cache.used == 10


def test_an_oversized_replacement_drops_the_old_copy():
    # The old, smaller copy must not stay behind and be served in place of the new one.
    cache = LRUCache(50)
    cache.put(Sized(b"a", 10))
    cache.put(Sized(b"a", 51))
    assert b"a" not in cache and cache.used == 0


def test_one_large_put_evicts_as_many_old_items_as_needed():
    cache = LRUCache(40)
    for k in (b"a", b"b", b"c", b"d"):
        cache.put(Sized(k, 10))
    cache.put(Sized(b"e", 25))
    assert keys(cache) == [b"d", b"e"]
    assert cache.used == 35 and cache.evictions == 3


def test_discard_removes_and_frees():
    cache = LRUCache(100)
    cache.put(Sized(b"a", 10))
    cache.put(Sized(b"b", 20))
    cache.discard(b"a")
    cache.discard(b"missing")
    assert keys(cache) == [b"b"] and cache.used == 20


def test_clear_empties_the_cache():
    cache = LRUCache(100)
    cache.put(Sized(b"a", 10))
    cache.clear()
    assert len(cache) == 0 and cache.used == 0 and cache.get(b"a") is None


def test_resize_down_evicts_least_recently_used_until_within_the_limit():
    cache = LRUCache(100)
    for k in (b"a", b"b", b"c", b"d"):
        cache.put(Sized(k, 10))
    cache.get(b"a")
    cache.resize(25)
    assert keys(cache) == [b"d", b"a"]
    assert cache.used == 20 and cache.limit == 25


def test_resize_up_keeps_everything_and_makes_room():
    cache = LRUCache(20)
    cache.put(Sized(b"a", 10))
    cache.put(Sized(b"b", 10))
    cache.resize(40)
    cache.put(Sized(b"c", 10))
    cache.put(Sized(b"d", 10))
    assert keys(cache) == [b"a", b"b", b"c", b"d"] and cache.evictions == 0


def test_resize_to_zero_empties_and_keeps_nothing_new():
    cache = LRUCache(100)
    cache.put(Sized(b"a", 10))
    cache.resize(0)
    cache.put(Sized(b"b", 1))
    assert len(cache) == 0 and cache.used == 0


# -- the cache in front of the Store ------------------------------------------


@pytest.fixture
def open_store(tmp_path):
    opened = []

    def open_(memory_limit):
        store = Store(tmp_path / "data", memory_limit=memory_limit, clock=lambda: 1_000_000.0)
        opened.append(store)
        while store.tick():
            pass
        return store

    yield open_
    for store in reversed(opened):
        store.close()


def item_size(key, value):
    return HEADER_SIZE + len(key) + len(value)


def test_store_cache_holds_items_up_to_the_memory_limit(open_store):
    size = item_size(b"k00", b"v" * 100)
    store = open_store(memory_limit=5 * size)
    for i in range(20):
        store.store(Mode.SET, b"k%02d" % i, 0, 0, b"v" * 100)
    assert store.cache.used <= 5 * size
    assert len(store.cache) == 5
    assert [k for k in store.cache.items] == [b"k%02d" % i for i in range(15, 20)]


def test_evicted_items_are_read_back_from_disk(open_store):
    store = open_store(memory_limit=3 * item_size(b"k00", b"x" * 100))
    for i in range(50):
        store.store(Mode.SET, b"k%02d" % i, i, 0, b"%02d" % i * 50)
    assert store.cache.evictions > 0
    for i in range(50):
        item = store.get(b"k%02d" % i)
        assert item is not None
        assert (item.flags, item.value) == (i, b"%02d" % i * 50)
    assert store.curr_items == 50


def test_an_item_read_from_disk_enters_the_cache(open_store):
    store = open_store(memory_limit=1 << 20)
    store.store(Mode.SET, b"a", 0, 0, b"1")
    store.cache.clear()
    store.get(b"a")
    assert b"a" in store.cache


def test_an_item_larger_than_the_whole_cache_is_still_stored(open_store):
    store = open_store(memory_limit=100)
    store.store(Mode.SET, b"big", 5, 0, b"z" * 1000)
    assert b"big" not in store.cache
    item = store.get(b"big")
    assert (item.flags, item.value) == (5, b"z" * 1000)


def test_store_with_zero_memory_serves_every_item_from_disk(open_store):
    store = open_store(memory_limit=0)
    for i in range(10):
        store.store(Mode.SET, b"k%d" % i, 0, 0, b"v%d" % i)
    assert len(store.cache) == 0
    assert [store.get(b"k%d" % i).value for i in range(10)] == [b"v%d" % i for i in range(10)]


def test_resizing_the_store_cache_loses_no_item(open_store):
    store = open_store(memory_limit=1 << 20)
    for i in range(30):
        store.store(Mode.SET, b"k%d" % i, 0, 0, b"v%d" % i)
    store.cache.resize(item_size(b"k0", b"v0") * 2)
    assert len(store.cache) <= 2
    assert [store.get(b"k%d" % i).value for i in range(30)] == [b"v%d" % i for i in range(30)]


def test_modes_that_read_the_old_value_work_after_eviction(open_store):
    store = open_store(memory_limit=0)
    store.store(Mode.SET, b"a", 9, 0, b"mid")
    store.store(Mode.APPEND, b"a", 0, 0, b">")
    store.store(Mode.PREPEND, b"a", 0, 0, b"<")
    assert store.get(b"a").value == b"<mid>"
    assert store.get(b"a").flags == 9
    cas = store.get(b"a").cas
    assert store.store(Mode.CAS, b"a", 1, 0, b"new", cas) is Result.STORED
    store.store(Mode.SET, b"n", 0, 0, b"41")
    assert store.incr_decr(b"n", 1, True) == 42
    assert store.get(b"n").value == b"42"


def test_item_size_is_its_record_size():
    item = Item(b"key", 0, 0, 1, 0.0, b"value")
    assert item.size == HEADER_SIZE + 3 + 5
