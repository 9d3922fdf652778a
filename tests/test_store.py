"""The Store (store/items.py over store/files.py and store/state.py): memcached's
storage semantics, written through to a file-per-key directory that survives
restarts and crashes, with a fake clock for every rule that involves time."""

import errno
import json
import os
import random
import re
import shutil

import pytest

from store import Clock, DataDirError, Mode, NonNumeric, Result, Store, StoreError
from store import record
from store import state as state_mod
from store.items import BUMP_INTERVAL
from store.files import DataDir
from store.items import MAX_U64, REALTIME_MAXDELTA

T0 = 1_700_000_000.0  # a realistic "now": far above 30 days, so absolute times make sense


class Stores:
    """Opens Stores on one data dir and closes whatever is still open at teardown."""

    def __init__(self, data_dir, clock):
        self.data_dir = data_dir
        self.clock = clock
        self._open = []

    def open(self, path=None, *, scan=True, memory_limit=64 << 20, clock=None):
        store = Store(str(path or self.data_dir), memory_limit=memory_limit, clock=clock or self.clock)
        self._open.append(store)
        if scan:
            finish_scan(store)
        return store

    def close(self, store):
        self._open.remove(store)
        store.close()

    def crash(self, store):
        """Die without close(): nothing is saved, the OS drops the flock."""
        self._open.remove(store)
        store.dir.close()

    def reopen(self, store, **kw):
        self.close(store)
        return self.open(**kw)

    def close_all(self):
        for store in reversed(self._open):
            store.close()
        self._open.clear()


def finish_scan(store):
    while store.tick():
        pass


@pytest.fixture
def data_dir(tmp_path):
    return tmp_path / "data"


@pytest.fixture
def stores(data_dir, clock):
    s = Stores(data_dir, clock)
    yield s
    s.close_all()


@pytest.fixture
def store(stores):
    return stores.open()


def item_files(data_dir):
    out = []
    for root, _, names in os.walk(os.path.join(data_dir, "items")):
        out.extend(os.path.join(root, n) for n in names)
    return out


def disk_usage(data_dir):
    paths = item_files(data_dir)
    return len(paths), sum(os.path.getsize(p) for p in paths)


def assert_counts_match_disk(store):
    assert (store.curr_items, store.bytes) == disk_usage(store.dir.path)


def tmp_files(data_dir):
    return os.listdir(os.path.join(data_dir, "tmp"))


def stray_temp_files(store):
    """The files in tmp/ beside the idle spares (store/spares.py)."""
    idle = {os.path.basename(p) for p in store.dir.spares.idle()}
    return sorted(set(os.listdir(store.dir.tmp)) - idle)


def quarantined_files(data_dir):
    return os.listdir(os.path.join(data_dir, "quarantine"))


def set_(store, key, value, flags=0, exptime=0):
    return store.store(Mode.SET, key, flags, exptime, value)


def value_of(store, key):
    item = store.get(key)
    return None if item is None else item.value


# == storage modes ============================================================


def test_set_stores_a_new_item(store):
    assert store.store(Mode.SET, b"k", 5, 0, b"v") is Result.STORED
    item = store.get(b"k")
    assert (item.key, item.flags, item.exptime, item.value) == (b"k", 5, 0, b"v")


def test_set_replaces_an_existing_item(store):
    set_(store, b"k", b"old", flags=1)
    assert store.store(Mode.SET, b"k", 2, 0, b"new") is Result.STORED
    assert (store.get(b"k").flags, store.get(b"k").value) == (2, b"new")


def test_set_of_an_empty_value(store):
    set_(store, b"k", b"")
    assert store.get(b"k").value == b""


def test_get_of_a_missing_key_is_none(store):
    assert store.get(b"nope") is None


def test_get_each_answers_as_get_for_each_key_from_start(store, clock):
    set_(store, b"a", b"1")
    set_(store, b"b", b"2", exptime=10)
    set_(store, b"c", b"3")
    clock.advance(20)  # b expires
    found = list(store.get_each([b"x", b"a", b"b", b"nope", b"c"], start=1))
    assert [None if i is None else i.value for i in found] == [b"1", None, None, b"3"]
    assert store.get_expired == 1


def test_get_each_marks_what_it_answers_fetched_and_accessed_now(store, clock):
    set_(store, b"a", b"1")
    clock.advance(5)
    (item,) = store.get_each([b"a"])
    assert item.has(record.FETCHED) and item.atime == clock()


def test_get_each_leaves_the_last_access_of_an_item_fetched_within_the_bump_interval(store, clock):
    set_(store, b"a", b"1")
    list(store.get_each([b"a"]))
    read_at = clock()
    clock.advance(BUMP_INTERVAL - 1)
    (item,) = store.get_each([b"a"])
    assert item.has(record.FETCHED) and item.atime == read_at


def test_get_each_moves_the_last_access_of_an_item_fetched_a_bump_interval_ago(store, clock):
    set_(store, b"a", b"1")
    list(store.get_each([b"a"]))
    clock.advance(BUMP_INTERVAL)
    (item,) = store.get_each([b"a"])
    assert item.has(record.FETCHED) and item.atime == clock()


def test_get_each_answers_none_for_an_item_a_delayed_flush_killed(store, clock):
    set_(store, b"a", b"1")
    store.flush_all(5)
    clock.advance(6)
    assert list(store.get_each([b"a"])) == [None]


def test_get_each_leaves_the_keys_after_where_its_caller_stops_unread(store):
    set_(store, b"a", b"1")
    set_(store, b"b", b"2")
    items = store.get_each([b"a", b"b"])
    next(items)
    items.close()
    assert not store.peek(b"b").has(record.FETCHED)


def test_get_each_reads_an_item_that_left_memory_from_its_file(stores):
    store = stores.open(memory_limit=1)  # nothing stays in memory
    set_(store, b"a", b"1")
    assert b"a" not in store.cache
    assert [i.value for i in store.get_each([b"a"])] == [b"1"]


def test_add_stores_when_there_is_no_item(store):
    assert store.store(Mode.ADD, b"k", 3, 0, b"v") is Result.STORED
    assert (store.get(b"k").flags, store.get(b"k").value) == (3, b"v")


def test_add_refuses_an_existing_item_and_keeps_it(store):
    set_(store, b"k", b"old", flags=1)
    cas = store.get(b"k").cas
    assert store.store(Mode.ADD, b"k", 2, 0, b"new") is Result.NOT_STORED
    item = store.get(b"k")
    assert (item.flags, item.value, item.cas) == (1, b"old", cas)


def test_add_stores_over_an_expired_item(store, clock):
    set_(store, b"k", b"old", exptime=10)
    clock.advance(10)
    assert store.store(Mode.ADD, b"k", 0, 0, b"new") is Result.STORED
    assert value_of(store, b"k") == b"new"
    assert_counts_match_disk(store)


def test_replace_refuses_a_missing_item_and_creates_nothing(store):
    assert store.store(Mode.REPLACE, b"k", 0, 0, b"v") is Result.NOT_STORED
    assert store.get(b"k") is None
    assert disk_usage(store.dir.path) == (0, 0)


def test_replace_overwrites_value_flags_and_expiry(store, clock):
    set_(store, b"k", b"old", flags=1, exptime=0)
    assert store.store(Mode.REPLACE, b"k", 2, 100, b"new") is Result.STORED
    item = store.get(b"k")
    assert (item.flags, item.exptime, item.value) == (2, int(T0) + 100, b"new")


@pytest.mark.parametrize("mode", [Mode.APPEND, Mode.PREPEND])
def test_append_and_prepend_refuse_a_missing_item(store, mode):
    assert store.store(mode, b"k", 0, 0, b"v") is Result.NOT_STORED
    assert store.get(b"k") is None


def test_append_adds_after_the_value(store):
    set_(store, b"k", b"mid")
    assert store.store(Mode.APPEND, b"k", 0, 0, b">>") is Result.STORED
    assert value_of(store, b"k") == b"mid>>"


def test_prepend_adds_before_the_value(store):
    set_(store, b"k", b"mid")
    assert store.store(Mode.PREPEND, b"k", 0, 0, b"<<") is Result.STORED
    assert value_of(store, b"k") == b"<<mid"


@pytest.mark.parametrize("mode", [Mode.APPEND, Mode.PREPEND])
def test_append_and_prepend_keep_the_old_flags_and_expiry(store, clock, mode):
    set_(store, b"k", b"v", flags=7, exptime=100)
    store.store(mode, b"k", 99, 5000, b"x")
    item = store.get(b"k")
    assert (item.flags, item.exptime) == (7, int(T0) + 100)
    clock.advance(100)
    assert store.get(b"k") is None


@pytest.mark.parametrize("mode", [Mode.APPEND, Mode.PREPEND])
def test_append_and_prepend_refuse_an_expired_item(store, clock, mode):
    set_(store, b"k", b"v", exptime=10)
    clock.advance(10)
    assert store.store(mode, b"k", 0, 0, b"x") is Result.NOT_STORED
    assert store.get(b"k") is None


def test_cas_on_a_missing_item_is_not_found(store):
    assert store.store(Mode.CAS, b"k", 0, 0, b"v", 1) is Result.NOT_FOUND
    assert store.get(b"k") is None


def test_cas_with_a_stale_unique_is_exists_and_changes_nothing(store):
    set_(store, b"k", b"old", flags=1)
    cas = store.get(b"k").cas
    assert store.store(Mode.CAS, b"k", 2, 0, b"new", cas + 1) is Result.EXISTS
    item = store.get(b"k")
    assert (item.flags, item.value, item.cas) == (1, b"old", cas)


def test_cas_with_the_current_unique_stores(store):
    set_(store, b"k", b"old", flags=1)
    cas = store.get(b"k").cas
    assert store.store(Mode.CAS, b"k", 2, 100, b"new", cas) is Result.STORED
    item = store.get(b"k")
    assert (item.flags, item.exptime, item.value) == (2, int(T0) + 100, b"new")
    assert item.cas != cas


def test_cas_unique_is_stale_after_a_successful_cas(store):
    set_(store, b"k", b"v0")
    cas = store.get(b"k").cas
    assert store.store(Mode.CAS, b"k", 0, 0, b"v1", cas) is Result.STORED
    assert store.store(Mode.CAS, b"k", 0, 0, b"v2", cas) is Result.EXISTS
    assert value_of(store, b"k") == b"v1"


def test_cas_on_an_expired_item_is_not_found(store, clock):
    set_(store, b"k", b"v", exptime=10)
    cas = store.get(b"k").cas
    clock.advance(10)
    assert store.store(Mode.CAS, b"k", 0, 0, b"new", cas) is Result.NOT_FOUND


def test_every_write_gets_a_unique_increasing_cas(store):
    seen = []
    set_(store, b"a", b"1")
    seen.append(store.get(b"a").cas)
    for mode, key in [
        (Mode.SET, b"a"),
        (Mode.SET, b"b"),
        (Mode.ADD, b"c"),
        (Mode.REPLACE, b"a"),
        (Mode.APPEND, b"b"),
        (Mode.PREPEND, b"c"),
    ]:
        assert store.store(mode, key, 0, 0, b"9") is Result.STORED
        seen.append(store.get(key).cas)
    store.store(Mode.CAS, b"a", 0, 0, b"5", store.get(b"a").cas)
    seen.append(store.get(b"a").cas)
    store.incr_decr(b"a", 1, True)
    seen.append(store.get(b"a").cas)
    assert seen == sorted(seen) and len(set(seen)) == len(seen)
    assert all(c > 0 for c in seen)


def test_a_refused_write_does_not_change_the_cas(store):
    set_(store, b"k", b"v")
    cas = store.get(b"k").cas
    store.store(Mode.ADD, b"k", 0, 0, b"x")
    store.store(Mode.CAS, b"k", 0, 0, b"x", cas + 100)
    assert store.get(b"k").cas == cas


def test_delete_removes_a_live_item(store):
    set_(store, b"k", b"v")
    assert store.delete(b"k") is True
    assert store.get(b"k") is None
    assert disk_usage(store.dir.path) == (0, 0)


def test_delete_of_a_missing_item_is_false(store):
    assert store.delete(b"k") is False


def test_delete_of_an_expired_item_is_false_and_removes_its_file(store, clock):
    set_(store, b"k", b"v", exptime=5)
    clock.advance(5)
    assert store.delete(b"k") is False
    assert disk_usage(store.dir.path) == (0, 0)
    assert store.curr_items == 0


def test_discard_removes_the_file_whatever_it_holds(store, clock):
    set_(store, b"k", b"v", exptime=5)
    clock.advance(5)
    store.discard(b"k")
    store.discard(b"never")
    assert disk_usage(store.dir.path) == (0, 0)
    assert_counts_match_disk(store)


def test_touch_sets_a_new_expiry(store, clock):
    set_(store, b"k", b"v", exptime=10)
    item = store.touch(b"k", 100)
    assert item.exptime == int(T0) + 100
    clock.advance(50)
    assert value_of(store, b"k") == b"v"
    clock.advance(50)
    assert store.get(b"k") is None


def test_touch_keeps_cas_value_and_flags(store):
    set_(store, b"k", b"v", flags=4)
    before = store.get(b"k")
    store.touch(b"k", 100)
    after = store.get(b"k")
    assert (after.cas, after.value, after.flags) == (before.cas, b"v", 4)


def test_touch_keeps_cas_across_a_restart(stores, store):
    set_(store, b"k", b"v")
    cas = store.get(b"k").cas
    store.touch(b"k", 100)
    store = stores.reopen(store)
    assert store.get(b"k").cas == cas


def _seq_on_disk(store, key):
    return record.decode_file(store.fs.read_file(store.dir.locate(key)[1]))[0].seq


def test_every_write_s_record_is_later_in_the_write_sequence_a_touch_s_included(stores, store):
    # start-up restore orders a key's records by it (store/restore.py)
    set_(store, b"k", b"v")
    seqs = [_seq_on_disk(store, b"k")]
    store.touch(b"k", 100)  # the same cas
    seqs.append(_seq_on_disk(store, b"k"))
    store.store(Mode.SET, b"k", 0, 0, b"w", new_cas=1)  # a lower cas
    seqs.append(_seq_on_disk(store, b"k"))
    set_(store, b"other", b"v")
    seqs.append(_seq_on_disk(store, b"other"))
    assert seqs == sorted(set(seqs)) and seqs[0] > 0


def test_touch_of_a_missing_or_expired_item_is_none(store, clock):
    assert store.touch(b"k", 10) is None
    set_(store, b"k", b"v", exptime=1)
    clock.advance(1)
    assert store.touch(b"k", 100) is None


def test_touch_with_a_negative_expiry_kills_the_item(store):
    set_(store, b"k", b"v")
    store.touch(b"k", -1)
    assert store.get(b"k") is None


def test_touch_to_zero_makes_the_item_immortal(store, clock):
    set_(store, b"k", b"v", exptime=10)
    store.touch(b"k", 0)
    clock.advance(10 * 365 * 86400)
    assert value_of(store, b"k") == b"v"


# -- incr / decr --------------------------------------------------------------


def test_incr_adds_and_returns_the_new_number(store):
    set_(store, b"n", b"41")
    assert store.incr_decr(b"n", 1, True) == 42
    assert value_of(store, b"n") == b"42"


def test_decr_subtracts(store):
    set_(store, b"n", b"100")
    assert store.incr_decr(b"n", 58, False) == 42


def test_incr_of_a_missing_item_is_none(store):
    assert store.incr_decr(b"n", 1, True) is None
    assert store.incr_decr(b"n", 1, False) is None
    assert store.get(b"n") is None


def test_incr_wraps_at_2_to_the_64(store):
    set_(store, b"n", b"%d" % MAX_U64)
    assert store.incr_decr(b"n", 1, True) == 0
    assert value_of(store, b"n").rstrip() == b"0"
    set_(store, b"m", b"%d" % (MAX_U64 - 1))
    assert store.incr_decr(b"m", 5, True) == 3


def test_incr_by_the_largest_delta(store):
    set_(store, b"n", b"1")
    assert store.incr_decr(b"n", MAX_U64, True) == 0


def test_decr_stops_at_zero(store):
    set_(store, b"n", b"5")
    assert store.incr_decr(b"n", 6, False) == 0
    assert store.incr_decr(b"n", 1, False) == 0
    assert value_of(store, b"n") == b"0"


def test_decr_pads_a_shorter_result_with_spaces_to_the_old_length(store):
    set_(store, b"n", b"100")
    assert store.incr_decr(b"n", 1, False) == 99
    assert value_of(store, b"n") == b"99 "
    store.incr_decr(b"n", 99, False)
    assert value_of(store, b"n") == b"0  "


def test_incr_of_a_padded_value_reads_the_number(store):
    set_(store, b"n", b"100")
    store.incr_decr(b"n", 91, False)  # b"9  "
    assert store.incr_decr(b"n", 1, True) == 10
    assert value_of(store, b"n") == b"10 "


def test_incr_grows_a_longer_result(store):
    set_(store, b"n", b"99")
    assert store.incr_decr(b"n", 1, True) == 100
    assert value_of(store, b"n") == b"100"


def test_incr_wrap_to_a_shorter_number_is_padded(store):
    set_(store, b"n", b"%d" % MAX_U64)
    store.incr_decr(b"n", 2, True)
    assert value_of(store, b"n") == b"1".ljust(20)


def test_incr_accepts_leading_and_trailing_white_space(store):
    set_(store, b"n", b"  7 ")
    assert store.incr_decr(b"n", 1, True) == 8


@pytest.mark.parametrize(
    "value",
    [b"", b"abc", b"12abc", b"1.5", b"-1", b"0x10", b"%d" % (MAX_U64 + 1), b" ", b"+"],
)
def test_incr_and_decr_of_a_non_number_raise_non_numeric(store, value):
    set_(store, b"n", value)
    with pytest.raises(NonNumeric):
        store.incr_decr(b"n", 1, True)
    with pytest.raises(NonNumeric):
        store.incr_decr(b"n", 1, False)
    assert value_of(store, b"n") == value


def test_incr_keeps_flags_and_expiry_and_takes_a_new_cas(store, clock):
    set_(store, b"n", b"1", flags=6, exptime=100)
    cas = store.get(b"n").cas
    store.incr_decr(b"n", 1, True)
    item = store.get(b"n")
    assert (item.flags, item.exptime) == (6, int(T0) + 100)
    assert item.cas > cas
    clock.advance(100)
    assert store.get(b"n") is None


def test_incr_of_an_expired_item_is_none(store, clock):
    set_(store, b"n", b"1", exptime=1)
    clock.advance(1)
    assert store.incr_decr(b"n", 1, True) is None


def test_incr_result_survives_a_restart(stores, store):
    set_(store, b"n", b"100")
    store.incr_decr(b"n", 1, False)
    store = stores.reopen(store)
    assert value_of(store, b"n") == b"99 "


# == restart and crash ========================================================


def _populate(store):
    set_(store, b"plain", b"value", flags=1)
    set_(store, b"relative", b"dies in 100s", flags=2, exptime=100)
    set_(store, b"absolute", b"dies at T0+5000", flags=3, exptime=int(T0) + 5000)
    set_(store, b"binary", bytes(range(256)), flags=0xFFFFFFFF)
    set_(store, b"empty", b"")
    return {k: store.get(k) for k in (b"plain", b"relative", b"absolute", b"binary", b"empty")}


def _fields(item):
    return (item.key, item.flags, item.exptime, item.cas, item.value)


def test_restart_brings_back_every_item_with_flags_value_cas_and_expiry(stores, store):
    before = {k: _fields(v) for k, v in _populate(store).items()}
    store = stores.reopen(store)
    assert {k: _fields(store.get(k)) for k in before} == before


def test_crash_loses_no_acknowledged_item(stores, store):
    before = {k: _fields(v) for k, v in _populate(store).items()}
    stores.crash(store)
    store = stores.open()
    assert {k: _fields(store.get(k)) for k in before} == before


def test_restart_keeps_the_absolute_expiry_of_a_relative_exptime(stores, store, clock):
    set_(store, b"k", b"v", exptime=100)
    clock.advance(60)
    store = stores.reopen(store)
    assert store.get(b"k").exptime == int(T0) + 100
    clock.advance(39)
    assert value_of(store, b"k") == b"v"
    clock.advance(1)
    assert store.get(b"k") is None


def test_item_that_expired_while_down_is_gone_after_restart(stores, store, clock):
    set_(store, b"k", b"v", exptime=10)
    stores.close(store)
    clock.advance(20)
    store = stores.open()
    assert store.get(b"k") is None
    assert disk_usage(store.dir.path) == (0, 0)


def test_the_walk_counts_an_expired_item_never_read_as_expired_unfetched(stores, store, clock):
    set_(store, b"k", b"v", exptime=10)
    store = stores.reopen(store, scan=False)
    clock.advance(20)
    finish_scan(store)
    assert (store.reclaimed, store.expired_unfetched) == (1, 1)


def test_the_walk_does_not_count_an_expired_item_that_was_read(stores, store, clock):
    set_(store, b"k", b"v", exptime=10)
    assert value_of(store, b"k") == b"v"
    store = stores.reopen(store, scan=False)
    clock.advance(20)
    finish_scan(store)
    assert (store.reclaimed, store.expired_unfetched) == (1, 0)


def test_restart_reads_items_from_disk_not_memory(stores, store):
    set_(store, b"k", b"v")
    store = stores.reopen(store)
    assert b"k" not in store.cache
    assert value_of(store, b"k") == b"v"


def test_deleted_items_stay_deleted_after_restart(stores, store):
    set_(store, b"a", b"1")
    set_(store, b"b", b"2")
    store.delete(b"a")
    store = stores.reopen(store)
    assert store.get(b"a") is None
    assert value_of(store, b"b") == b"2"


def test_deleted_items_stay_deleted_after_a_crash(stores, store):
    set_(store, b"a", b"1")
    store.delete(b"a")
    stores.crash(store)
    store = stores.open()
    assert store.get(b"a") is None


def test_immediate_flush_stays_flushed_after_restart(stores, store):
    set_(store, b"a", b"1")
    set_(store, b"b", b"2")
    store.flush_all()
    set_(store, b"after", b"3")
    store = stores.reopen(store, scan=False)  # no clean-up walk before we look
    assert store.get(b"a") is None and store.get(b"b") is None
    assert value_of(store, b"after") == b"3"


def test_immediate_flush_stays_flushed_after_a_crash(stores, store):
    set_(store, b"a", b"1")
    store.flush_all()
    stores.crash(store)
    store = stores.open(scan=False)
    assert store.get(b"a") is None


def test_delayed_flush_that_passed_while_down_is_applied_at_restart(stores, store, clock):
    set_(store, b"a", b"1")
    store.flush_all(100)
    clock.advance(50)
    set_(store, b"b", b"2")  # stored before the flush time: dies too
    stores.close(store)
    clock.advance(60)  # the flush time passes while the server is down
    store = stores.open(scan=False)
    set_(store, b"c", b"3")
    assert store.get(b"a") is None and store.get(b"b") is None
    assert value_of(store, b"c") == b"3"


def test_delayed_flush_pending_at_restart_happens_after_it(stores, store, clock):
    set_(store, b"a", b"1")
    store.flush_all(100)
    store = stores.reopen(store)
    clock.advance(98)
    assert value_of(store, b"a") == b"1"
    clock.advance(2)
    assert store.get(b"a") is None


def test_delayed_flush_after_a_crash_is_still_applied(stores, store, clock):
    set_(store, b"a", b"1")
    store.flush_all(100)
    stores.crash(store)
    clock.advance(100)
    store = stores.open(scan=False)
    assert store.get(b"a") is None


def test_flushed_items_stay_flushed_after_two_restarts(stores, store, clock):
    set_(store, b"a", b"1")
    store.flush_all()
    store = stores.reopen(store, scan=False)
    store = stores.reopen(store, scan=False)
    assert store.get(b"a") is None


def _all_cas(store, keys):
    return [store.get(k).cas for k in keys]


def test_cas_after_a_restart_is_above_every_earlier_cas(stores, store):
    keys = [b"k%d" % i for i in range(20)]
    for k in keys:
        set_(store, k, b"v")
    highest = max(_all_cas(store, keys))
    store = stores.reopen(store)
    set_(store, b"new", b"v")
    assert store.get(b"new").cas > highest


def test_cas_after_a_crash_is_above_every_earlier_cas(stores, store):
    keys = [b"k%d" % i for i in range(20)]
    for k in keys:
        set_(store, k, b"v")
    highest = max(_all_cas(store, keys))
    stores.crash(store)
    store = stores.open()
    set_(store, b"new", b"v")
    assert store.get(b"new").cas > highest


def test_no_cas_is_handed_out_twice_across_crashes_and_block_boundaries(stores, monkeypatch):
    # Small reservation blocks, so the writes cross many of them between crashes.
    monkeypatch.setattr(state_mod, "CAS_BLOCK", 3)
    handed_out = []
    for round_ in range(6):
        store = stores.open()
        for i in range(7):
            set_(store, b"r%d-%d" % (round_, i), b"v")
            handed_out.append(store.get(b"r%d-%d" % (round_, i)).cas)
        if round_ % 2:
            stores.crash(store)
        else:
            stores.close(store)
    assert handed_out == sorted(handed_out)
    assert len(set(handed_out)) == len(handed_out)


def test_crash_right_after_start_hands_out_no_cas_twice(stores):
    store = stores.open()
    set_(store, b"a", b"1")
    first = store.get(b"a").cas
    stores.crash(store)
    store = stores.open()  # crash again before any write
    stores.crash(store)
    store = stores.open()
    set_(store, b"b", b"1")
    assert store.get(b"b").cas > first


def test_the_write_sequence_only_grows_across_restarts_crashes_and_block_boundaries(stores, monkeypatch):
    monkeypatch.setattr(state_mod, "SEQ_BLOCK", 3)
    seqs = []
    for round_ in range(6):
        store = stores.open()
        for i in range(7):
            set_(store, b"r%d-%d" % (round_, i), b"v")
            seqs.append(_seq_on_disk(store, b"r%d-%d" % (round_, i)))
        if round_ % 2:
            stores.crash(store)
        else:
            stores.close(store)
    assert seqs == sorted(set(seqs))


def test_the_write_sequence_goes_on_past_the_highest_start_up_finds_in_tmp(stores, data_dir):
    store = stores.open()
    set_(store, b"a", b"1")
    stores.crash(store)
    # a record in tmp/ beyond what the state file reserved (a state file
    # lost, or from before the sequence)
    with open(data_dir / "tmp" / "r.9", "wb") as f:
        f.write(record.encode(b"b", 0, 0, 1, T0, b"x", seq=1 << 40) + b"b" + b"x")
    store = stores.open()
    set_(store, b"c", b"1")
    assert _seq_on_disk(store, b"c") > 1 << 40
    stores.crash(store)
    store = stores.open()  # and the state file says so
    set_(store, b"d", b"1")
    assert _seq_on_disk(store, b"d") > _seq_on_disk(store, b"c")


def test_failed_cas_reservation_never_leads_to_a_reused_cas_after_a_crash(stores, monkeypatch):
    store = stores.open()
    real = DataDir.write_small_file

    def disk_full(self, name, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(DataDir, "write_small_file", disk_full)
    with pytest.raises(StoreError):
        set_(store, b"a", b"1")  # the first write must reserve a cas block
    monkeypatch.setattr(DataDir, "write_small_file", real)  # the disk has room again
    set_(store, b"a", b"1")
    given = store.get(b"a").cas
    stores.crash(store)
    store = stores.open()
    set_(store, b"b", b"2")
    assert store.get(b"b").cas > given


def test_curr_items_and_bytes_after_the_start_up_scan(stores, store):
    for i in range(100):
        set_(store, b"key-%d" % i, b"x" * i)
    for i in range(0, 100, 3):
        store.delete(b"key-%d" % i)
    expected = (store.curr_items, store.bytes)
    assert expected == disk_usage(store.dir.path)
    assert expected[0] == 100 - 34
    store = stores.reopen(store, scan=False)
    assert not store.scan_done
    finish_scan(store)
    assert store.scan_done
    assert (store.curr_items, store.bytes) == expected
    assert store.loaded == expected[0]


def test_start_up_scan_of_an_empty_dir_finishes_at_once(store):
    assert store.scan_done
    assert (store.curr_items, store.bytes) == (0, 0)
    assert not store.has_work() and store.tick() is False


def test_start_up_scan_goes_a_slice_at_a_time(stores, store):
    for i in range(50):
        set_(store, b"k%d" % i, b"v")
    store = stores.reopen(store, scan=False)
    assert store.has_work()
    assert store.tick(budget=0) is True
    assert not store.scan_done
    finish_scan(store)
    assert store.scan_done and not store.has_work()


@pytest.mark.parametrize("seed", range(6))
def test_counts_are_exact_with_writes_and_deletes_during_a_partial_scan(stores, store, clock, seed):
    rng = random.Random(seed)
    model = {}
    keys = [b"key-%d-%d" % (seed, i) for i in range(60)]
    for k in keys[:40]:
        value = b"v" * rng.randrange(0, 50)
        exptime = rng.choice([0, 0, 0, 30])  # some die while the server is down
        set_(store, k, value, exptime=exptime)
        if exptime == 0:
            model[k] = value
    for k in rng.sample(keys[:40], 5):
        store.delete(k)
        model.pop(k, None)
    stores.close(store)
    clock.advance(60)

    store = stores.open(scan=False)
    ops = 0
    while store.tick(budget=0):
        if rng.random() < 0.03:
            assert not store.scan_done
            ops += 1
            k = rng.choice(keys)
            op = rng.choice(["set", "set", "delete", "append", "get", "discard"])
            if op == "set":
                value = b"n" * rng.randrange(0, 80)
                set_(store, k, value)
                model[k] = value
            elif op == "delete":
                assert store.delete(k) is (k in model)
                model.pop(k, None)
            elif op == "append":
                r = store.store(Mode.APPEND, k, 0, 0, b"+" * rng.randrange(1, 20))
                assert (r is Result.STORED) is (k in model)
                if k in model:
                    model[k] = store.get(k).value
            elif op == "get":
                assert value_of(store, k) == model.get(k)
            else:
                store.discard(k)
                model.pop(k, None)
    assert ops > 5
    assert store.scan_done
    assert_counts_match_disk(store)
    assert store.curr_items == len(model)
    assert {k: value_of(store, k) for k in keys if value_of(store, k) is not None} == model


def test_counts_are_exact_for_every_kind_of_change_during_a_partial_scan(stores, store, clock):
    # Every change is made once in a bucket the scan has passed and once in one it has not.
    keys = [b"k%d" % i for i in range(400)]
    for k in keys:
        set_(store, k, b"12345")
    store = stores.reopen(store, scan=False)
    for _ in range(256 * 128):  # about half way: changes fall on both sides of the scan
        assert store.tick(budget=0)
    it = iter(keys)
    for _ in range(3):
        set_(store, next(it), b"much longer value than before")  # overwrite, grows
        set_(store, next(it), b"")  # overwrite, shrinks
        store.delete(next(it))
        store.discard(next(it))
        store.store(Mode.APPEND, next(it), 0, 0, b"tail")
        store.store(Mode.PREPEND, next(it), 0, 0, b"head")
        store.incr_decr(next(it), 100000, True)  # grows by a digit
        store.touch(next(it), 1000)
        store.store(Mode.CAS, k := next(it), 0, 0, b"c", store.get(k).cas)
        set_(store, b"fresh-%s" % next(it), b"brand new")
        set_(store, next(it), b"short-lived", exptime=5)
    clock.advance(5)  # the short-lived ones expire: some get reclaimed by the scan, some by get
    for k in keys[:60]:
        store.get(k)
    assert not store.scan_done
    finish_scan(store)
    assert_counts_match_disk(store)


def test_counts_stay_exact_after_the_scan(store, clock):
    for i in range(30):
        set_(store, b"k%d" % i, b"v" * i, exptime=10 if i % 2 else 0)
    store.delete(b"k0")
    store.store(Mode.APPEND, b"k2", 0, 0, b"more")
    assert_counts_match_disk(store)
    clock.advance(10)
    for i in range(30):
        store.get(b"k%d" % i)
    assert_counts_match_disk(store)
    assert store.curr_items == 14


# == hostile keys =============================================================

HOSTILE_KEYS = [
    b"../x",
    b"../../../../../../tmp/evil",
    b"/",
    b"/etc/passwd",
    b".",
    b"..",
    b"%" * 250,
    b"%2e%2e%2f",
    b"a\x00b",
    b"\x00",
    b"line\r\nbreak",
    b"\n",
    b"\x01\x02\x1b[31m\x7f",
    b"\xff\xfe\x80not-utf8\xc3",
    b"items/00/00/" + b"0" * 32,
    b"FORMAT",
    b"lock",
    b"state",
    b"tmp",
    b"quarantine",
    b"CON",
    b"a" * 250,
]

_TOP_LEVEL = {"FORMAT", "lock", "state"}
_SPARE_PATH = re.compile(r"tmp/r?\d+\.\d+")
_ITEM_PATH = re.compile(r"items/([0-9a-f]{2})/([0-9a-f]{2})/\1\2[0-9a-f]{28}")


def all_files(root):
    out = []
    for dirpath, _, names in os.walk(root):
        out.extend(os.path.relpath(os.path.join(dirpath, n), root) for n in names)
    return sorted(out)


def assert_only_store_files(tmp_path):
    assert os.listdir(tmp_path) == ["data"], "something was created outside the data dir"
    for rel in all_files(os.path.join(tmp_path, "data")):
        assert rel in _TOP_LEVEL or _ITEM_PATH.fullmatch(rel) or _SPARE_PATH.fullmatch(rel), rel


@pytest.mark.parametrize("key", HOSTILE_KEYS, ids=repr)
def test_hostile_key_is_stored_and_read_back(store, key):
    set_(store, key, b"value of " + key, flags=9)
    item = store.get(key)
    assert (item.key, item.flags, item.value) == (key, 9, b"value of " + key)


@pytest.mark.parametrize("key", HOSTILE_KEYS, ids=repr)
def test_hostile_key_file_lies_under_items(store, key):
    set_(store, key, b"v")
    _, path = store.dir.locate(key)
    items = os.path.realpath(os.path.join(store.dir.path, "items"))
    assert os.path.realpath(path).startswith(items + os.sep)
    assert os.path.isfile(path)


def test_hostile_keys_create_nothing_outside_the_items_dir(stores, store, tmp_path):
    for key in HOSTILE_KEYS:
        set_(store, key, b"v")
        store.store(Mode.APPEND, key, 0, 0, b"w")
        store.touch(key, 100)
    assert_only_store_files(tmp_path)
    assert len(item_files(store.dir.path)) == len(HOSTILE_KEYS)
    for key in HOSTILE_KEYS[::2]:
        assert store.delete(key)
    store = stores.reopen(store)
    assert_only_store_files(tmp_path)
    for i, key in enumerate(HOSTILE_KEYS):
        assert value_of(store, key) == (None if i % 2 == 0 else b"vw")


def test_hostile_keys_are_all_distinct_items(store):
    for i, key in enumerate(HOSTILE_KEYS):
        set_(store, key, b"%d" % i)
    for i, key in enumerate(HOSTILE_KEYS):
        assert value_of(store, key) == b"%d" % i
    assert store.curr_items == len(HOSTILE_KEYS)


def test_hostile_keys_touch_nothing_outside_the_data_dir(tmp_path, clock):
    # A data dir nested below others that a path-walking key could reach.
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "x").write_bytes(b"precious")
    data = tmp_path / "a" / "b" / "data"
    store = Store(str(data), clock=clock)
    try:
        finish_scan(store)
        for key in [b"../x", b"../../x", b"../../../outside/x", b"../../../../outside/x"]:
            set_(store, key, b"overwrite?")
            store.delete(key)
    finally:
        store.close()
    assert sorted(os.listdir(tmp_path)) == ["a", "outside"]
    assert os.listdir(tmp_path / "a") == ["b"]
    assert os.listdir(tmp_path / "a" / "b") == ["data"]
    assert os.listdir(outside) == ["x"]
    assert (outside / "x").read_bytes() == b"precious"


# == corrupt and truncated files ==============================================


def _corrupt_after_restart(stores, store, key, damage, before_scan=False):
    """Write key, restart (so it is not in memory), damage its file; return the store and path.

    Damage after the start-up scan stands for bit rot the scan could not see; damage
    before it (before_scan) for a file that was already bad when the server started,
    so that the counts the scan makes describe the damaged file.
    """
    set_(store, key, b"the original value")
    _, path = store.dir.locate(key)
    stores.close(store)
    if before_scan:
        damage(path)
    store = stores.open()
    if not before_scan:
        damage(path)
    return store, path


def _garbage(path):
    # as long as the record it replaces, as bit rot would leave it
    size = os.path.getsize(path)
    with open(path, "wb") as f:
        f.write(b"this is not a record at all, not even close".ljust(size, b"."))


def _truncate_half(path):
    os.truncate(path, os.path.getsize(path) // 2)


def _truncate_value(path):
    os.truncate(path, os.path.getsize(path) - 1)


def _empty(path):
    os.truncate(path, 0)


def _record_at(path):
    """(offset of the record served from the file, its end): the whole file,
    or the winning slot of a two-slot file."""
    with open(path, "rb") as f:
        data = f.read()
    r, _, slot, _ = record.decode_file(data)
    if slot is None:
        return 0, len(data)
    at = slot * (len(data) // 2)
    return at, at + record.SLOT_HEADER_SIZE + len(r.key) + len(r.value)


def _flip_value_byte(path):
    _, end = _record_at(path)
    with open(path, "r+b") as f:
        f.seek(end - 3)
        b = f.read(1)
        f.seek(end - 3)
        f.write(bytes([b[0] ^ 0x20]))


def _other_version(path):
    at, _ = _record_at(path)
    with open(path, "r+b") as f:
        f.seek(at + 4)
        f.write((5).to_bytes(2, "little"))


def _record_of_another_key(path):
    head = record.encode(b"other", 0, 0, 1, T0, b"v")
    with open(path, "wb") as f:
        f.write(head + b"other" + b"v")


DAMAGES = [_garbage, _truncate_half, _truncate_value, _empty, _flip_value_byte, _other_version, _record_of_another_key]


@pytest.mark.parametrize("damage", DAMAGES, ids=lambda d: d.__name__.strip("_"))
def test_damaged_file_is_a_miss(stores, store, damage):
    store, _ = _corrupt_after_restart(stores, store, b"k", damage)
    assert store.get(b"k") is None


@pytest.mark.parametrize("damage", DAMAGES, ids=lambda d: d.__name__.strip("_"))
def test_damaged_file_is_moved_to_quarantine(stores, store, damage):
    store, path = _corrupt_after_restart(stores, store, b"k", damage)
    with open(path, "rb") as f:
        damaged = f.read()
    before = store.quarantined
    store.get(b"k")
    assert not os.path.exists(path)
    assert quarantined_files(store.dir.path) == [os.path.basename(path)]
    with open(os.path.join(store.dir.path, "quarantine", os.path.basename(path)), "rb") as f:
        assert f.read() == damaged
    assert store.quarantined == before + 1


@pytest.mark.parametrize("damage", DAMAGES, ids=lambda d: d.__name__.strip("_"))
def test_store_keeps_working_after_a_damaged_file(stores, store, damage):
    set_(store, b"neighbour", b"n")
    store, _ = _corrupt_after_restart(stores, store, b"k", damage, before_scan=True)
    store.get(b"k")
    assert store.get(b"k") is None
    assert value_of(store, b"neighbour") == b"n"
    assert set_(store, b"k", b"fresh") is Result.STORED
    assert value_of(store, b"k") == b"fresh"
    assert_counts_match_disk(store)


@pytest.mark.parametrize("damage", DAMAGES, ids=lambda d: d.__name__.strip("_"))
def test_counts_follow_a_quarantine(stores, store, damage):
    set_(store, b"neighbour", b"n")
    store, _ = _corrupt_after_restart(stores, store, b"k", damage, before_scan=True)
    store.get(b"k")
    assert_counts_match_disk(store)
    assert store.curr_items == 1


@pytest.mark.parametrize(
    "mode", [Mode.ADD, Mode.REPLACE, Mode.APPEND, Mode.PREPEND, Mode.CAS], ids=lambda m: m.value
)
def test_storage_modes_treat_a_damaged_file_as_a_miss(stores, store, mode):
    store, _ = _corrupt_after_restart(stores, store, b"k", _garbage)
    expected = {Mode.ADD: Result.STORED, Mode.CAS: Result.NOT_FOUND}.get(mode, Result.NOT_STORED)
    assert store.store(mode, b"k", 0, 0, b"x", 1) is expected
    assert store.quarantined == 1
    assert_counts_match_disk(store)


def test_delete_touch_and_incr_treat_a_damaged_file_as_a_miss(stores, store):
    set_(store, b"a", b"1")
    set_(store, b"b", b"1")
    set_(store, b"c", b"1")
    store = stores.reopen(store)
    for k in (b"a", b"b", b"c"):
        _flip_value_byte(store.dir.locate(k)[1])
    assert store.delete(b"a") is False
    assert store.touch(b"b", 10) is None
    assert store.incr_decr(b"c", 1, True) is None
    assert store.quarantined == 3
    assert_counts_match_disk(store)


def test_the_same_key_quarantined_twice_counts_twice(stores, store):
    store, _ = _corrupt_after_restart(stores, store, b"k", _garbage)
    store.get(b"k")
    set_(store, b"k", b"again")
    store.cache.clear()
    _garbage(store.dir.locate(b"k")[1])
    assert store.get(b"k") is None
    assert store.get(b"k") is None  # the second miss finds no file at all
    assert store.quarantined == 2


@pytest.mark.parametrize("damage", [_garbage, _truncate_half, _empty, _other_version], ids=lambda d: d.__name__.strip("_"))
def test_start_up_scan_quarantines_a_damaged_header(stores, store, damage):
    for i in range(10):
        set_(store, b"k%d" % i, b"v%d" % i)
    stores.close(store)
    store = stores.open(scan=False)
    _, path = store.dir.locate(b"k3")
    damage(path)
    finish_scan(store)
    assert store.quarantined == 1
    assert not os.path.exists(path)
    assert quarantined_files(store.dir.path) == [os.path.basename(path)]
    assert (store.curr_items, store.bytes) == disk_usage(store.dir.path)
    assert store.curr_items == 9
    assert store.get(b"k3") is None
    assert [value_of(store, b"k%d" % i) for i in (0, 1, 2, 4)] == [b"v0", b"v1", b"v2", b"v4"]


@pytest.mark.parametrize("damage", [_truncate_value, _flip_value_byte], ids=lambda d: d.__name__.strip("_"))
def test_start_up_scan_counts_stay_exact_with_a_damaged_body(stores, store, damage):
    # The scan reads headers only; a damaged body is found by the read, and the
    # counts agree with the disk either way.
    for i in range(10):
        set_(store, b"k%d" % i, b"v%d" % i)
    stores.close(store)
    store = stores.open(scan=False)
    damage(store.dir.locate(b"k3")[1])
    finish_scan(store)
    assert_counts_match_disk(store)
    assert store.get(b"k3") is None
    assert store.quarantined == 1
    assert_counts_match_disk(store)
    assert store.curr_items == 9


def test_start_up_scan_quarantines_a_truncated_record(stores, store):
    for i in range(10):
        set_(store, b"k%d" % i, b"v%d" % i)
    stores.close(store)
    store = stores.open(scan=False)
    path = store.dir.locate(b"k3")[1]
    _truncate_value(path)
    finish_scan(store)
    assert store.quarantined == 1
    assert not os.path.exists(path)
    assert store.curr_items == 9


def test_quarantine_during_a_partial_scan_keeps_counts_exact(stores, store):
    keys = [b"k%d" % i for i in range(200)]
    for k in keys:
        set_(store, k, b"value")
    store = stores.reopen(store, scan=False)
    for k in keys[::7]:
        _garbage(store.dir.locate(k)[1])
    for _ in range(256 * 50):
        store.tick(budget=0)
    assert not store.scan_done
    for k in keys[::14]:  # half of the damaged ones are found by a read, on both sides of the scan
        assert store.get(k) is None
    finish_scan(store)
    assert store.quarantined == len(keys[::7])
    assert_counts_match_disk(store)
    assert store.curr_items == len(keys) - len(keys[::7])


def test_a_stray_file_named_for_another_bucket_keeps_the_counts_exact(stores, store):
    # its name says bucket 00/00, which the scan has passed; the folder it lies
    # in is not counted yet, so quarantining it must not change the totals
    set_(store, b"k", b"value")
    bucket_dir = os.path.dirname(store.dir.locate(b"k")[1])
    store = stores.reopen(store, scan=False)
    with open(os.path.join(bucket_dir, "0" * 32), "wb") as f:
        f.write(b"not a record")
    finish_scan(store)
    assert store.quarantined == 1
    assert_counts_match_disk(store)


def test_the_start_up_scan_quarantines_a_record_filed_under_another_keys_name(stores, store):
    set_(store, b"a", b"1")
    set_(store, b"b", b"2")
    store = stores.reopen(store, scan=False)
    shutil.copyfile(store.dir.locate(b"a")[1], store.dir.locate(b"b")[1])
    finish_scan(store)
    assert store.quarantined == 1
    assert value_of(store, b"b") is None
    assert value_of(store, b"a") == b"1"
    assert_counts_match_disk(store)


def test_the_evict_policy_finds_the_files_of_a_sparse_store(stores):
    # four files among 65,536 buckets: each write past the quota evicts one
    size = record.file_size(2, 200)
    store = Store(str(stores.data_dir / "sparse"), max_disk=4 * size, disk_policy="evict", clock=stores.clock)
    try:
        finish_scan(store)
        for i in range(4):
            set_(store, b"a%d" % i, b"v" * 200)
        for i in range(4):
            assert set_(store, b"b%d" % i, b"v" * 200) is Result.STORED
        assert store.evictions == 4
        assert_counts_match_disk(store)
    finally:
        store.close()


def test_an_evicted_item_never_read_counts_as_evicted_unfetched(stores):
    size = record.file_size(2, 200)
    store = Store(str(stores.data_dir / "sparse"), max_disk=2 * size, disk_policy="evict", clock=stores.clock)
    try:
        finish_scan(store)
        set_(store, b"a0", b"v" * 200)
        set_(store, b"a1", b"v" * 200)
        assert value_of(store, b"a0") == b"v" * 200
        set_(store, b"b0", b"v" * 200)
        set_(store, b"b1", b"v" * 200)
        assert (store.evictions, store.evicted_unfetched) == (2, 1)
    finally:
        store.close()


# == the data directory: temp files, lock, format =============================


def test_temp_files_left_by_a_crash_are_removed_at_start_up(stores, store, data_dir):
    set_(store, b"k", b"v")
    stores.crash(store)
    for name in ("123.0", "123.1", "junk"):
        (data_dir / "tmp" / name).write_bytes(b"half a record")
    store = stores.open()
    assert tmp_files(data_dir) == []
    assert store.dir.removed_temp_files == 3
    assert value_of(store, b"k") == b"v"
    assert_counts_match_disk(store)


def test_writes_leave_no_temp_files_beside_the_spares(store, data_dir):
    for i in range(20):
        set_(store, b"k%d" % i, b"v")
        store.store(Mode.APPEND, b"k%d" % i, 0, 0, b"w")
    assert stray_temp_files(store) == []


def test_layout_of_a_new_data_dir(store, data_dir):
    assert sorted(os.listdir(data_dir)) == ["FORMAT", "items", "lock", "quarantine", "state", "tmp"]
    assert (data_dir / "FORMAT").read_text() == "memcached-lite 4\n"


def test_a_new_data_dir_and_its_folders_are_durable_in_their_parents():
    # under --fsync-method fsync nothing else would make the new folders'
    # entries durable: a power loss right after start-up keeps them all
    from store.faultfs import FaultFS

    fs = FaultFS()
    DataDir("/srv/data", fs).close()
    crashed = fs.crash(0)
    assert {"/srv/data", "/srv/data/items", "/srv/data/tmp", "/srv/data/quarantine"} <= set(crashed.dirs())
    assert crashed.read_file("/srv/data/FORMAT") == b"memcached-lite 4\n"


def test_a_second_store_on_an_open_dir_is_refused(stores, store, data_dir):
    with pytest.raises(DataDirError) as info:
        Store(str(data_dir))
    message = str(info.value)
    assert "in use" in message and str(data_dir) in message
    assert "pid %d" % os.getpid() in message


def test_refused_second_store_leaves_the_first_working(stores, store, data_dir):
    set_(store, b"k", b"v")
    with pytest.raises(DataDirError):
        Store(str(data_dir))
    set_(store, b"k2", b"v2")
    assert value_of(store, b"k") == b"v" and value_of(store, b"k2") == b"v2"


def test_a_closed_dir_can_be_opened_again(stores, store):
    stores.close(store)
    stores.open()


def test_a_crashed_stores_dir_can_be_opened_again(stores, store):
    stores.crash(store)
    stores.open()


def test_a_dir_of_another_format_is_refused(data_dir):
    data_dir.mkdir()
    (data_dir / "FORMAT").write_text("memcached-lite 5\n")
    with pytest.raises(DataDirError) as info:
        Store(str(data_dir))
    assert "format" in str(info.value) and "memcached-lite 5" in str(info.value)
    assert (data_dir / "FORMAT").read_text() == "memcached-lite 5\n"
    assert not (data_dir / "items").exists()


def test_a_dir_with_items_but_no_format_is_refused(data_dir):
    (data_dir / "items").mkdir(parents=True)
    with pytest.raises(DataDirError) as info:
        Store(str(data_dir))
    assert "FORMAT" in str(info.value)
    assert not (data_dir / "FORMAT").exists()


def test_refusing_a_foreign_dir_does_not_keep_it_locked(stores, data_dir):
    data_dir.mkdir()
    (data_dir / "FORMAT").write_text("something else\n")
    with pytest.raises(DataDirError):
        Store(str(data_dir))
    (data_dir / "FORMAT").write_text("memcached-lite 1\n")  # the operator fixes it
    stores.open()


def test_refusing_an_unreadable_state_file_does_not_keep_the_dir_locked(stores, store, data_dir):
    stores.close(store)
    (data_dir / "state").write_bytes(b"{not json")
    with pytest.raises(DataDirError):
        Store(str(data_dir))
    (data_dir / "state").unlink()
    stores.open()


def test_an_unreadable_state_file_is_refused(stores, store, data_dir):
    stores.close(store)
    (data_dir / "state").write_bytes(b"{not json")
    with pytest.raises(DataDirError) as info:
        Store(str(data_dir))
    assert "state" in str(info.value)


# == expiry, with a fake clock ================================================


def test_exptime_zero_never_expires(store, clock):
    set_(store, b"k", b"v", exptime=0)
    assert store.get(b"k").exptime == 0
    clock.advance(100 * 365 * 86400)
    assert value_of(store, b"k") == b"v"


@pytest.mark.parametrize("exptime", [-1, -1000, -(1 << 40)])
def test_negative_exptime_is_already_expired(store, exptime):
    set_(store, b"k", b"v", exptime=exptime)
    assert store.get(b"k") is None
    assert store.get_expired == 1


def test_exptime_up_to_30_days_is_relative(store, clock):
    set_(store, b"one", b"v", exptime=1)
    set_(store, b"max", b"v", exptime=REALTIME_MAXDELTA)
    assert store.get(b"one").exptime == int(T0) + 1
    assert store.get(b"max").exptime == int(T0) + REALTIME_MAXDELTA
    clock.advance(REALTIME_MAXDELTA - 1)
    assert value_of(store, b"max") == b"v"
    clock.advance(1)
    assert store.get(b"max") is None


def test_exptime_above_30_days_is_an_absolute_unix_time(store, clock):
    set_(store, b"k", b"v", exptime=int(T0) + 3600)
    assert store.get(b"k").exptime == int(T0) + 3600
    clock.advance(3599)
    assert value_of(store, b"k") == b"v"
    clock.advance(1)
    assert store.get(b"k") is None


def test_exptime_just_above_30_days_is_a_time_long_past(store):
    set_(store, b"k", b"v", exptime=REALTIME_MAXDELTA + 1)
    assert store.get(b"k") is None
    assert store.get_expired == 1


def test_absolute_exptime_in_the_past_is_already_expired(store):
    set_(store, b"k", b"v", exptime=int(T0) - 1)
    assert store.get(b"k") is None


def test_item_is_dead_at_exactly_its_second(store, clock):
    set_(store, b"k", b"v", exptime=10)
    clock.advance(9.999)
    assert value_of(store, b"k") == b"v"
    clock.now = T0 + 10
    assert store.get(b"k") is None


def test_relative_exptime_counts_from_the_whole_second(stores, clock):
    clock.now = T0 + 0.75
    store = stores.open()
    set_(store, b"k", b"v", exptime=10)
    assert store.get(b"k").exptime == int(T0) + 10
    clock.now = T0 + 9.999
    assert value_of(store, b"k") == b"v"
    clock.now = T0 + 10
    assert store.get(b"k") is None


def test_absolute_exptime_is_dead_at_exactly_its_second(store, clock):
    set_(store, b"k", b"v", exptime=int(T0) + 100)
    clock.now = T0 + 99.5
    assert value_of(store, b"k") == b"v"
    clock.now = T0 + 100
    assert store.get(b"k") is None


def test_expired_miss_is_counted_once_and_removes_the_file(store, clock):
    set_(store, b"k", b"v", exptime=1)
    clock.advance(1)
    assert store.get(b"k") is None
    assert store.get_expired == 1
    assert disk_usage(store.dir.path) == (0, 0)
    assert store.curr_items == 0 and store.bytes == 0
    assert store.get(b"k") is None
    assert store.get_expired == 1  # a plain miss now


def test_expired_item_on_disk_only_is_counted_too(stores, store, clock):
    set_(store, b"k", b"v", exptime=100)
    store = stores.reopen(store)
    clock.advance(100)
    assert store.get(b"k") is None
    assert store.get_expired == 1


def test_misses_of_absent_keys_are_not_counted_as_expired(store):
    store.get(b"nope")
    assert store.get_expired == 0 and store.get_flushed == 0


def test_start_up_scan_reclaims_expired_files(stores, store, clock):
    for i in range(10):
        set_(store, b"k%d" % i, b"v", exptime=10 if i < 4 else 0)
    stores.close(store)
    clock.advance(10)
    store = stores.open()
    assert store.reclaimed == 4
    assert disk_usage(store.dir.path)[0] == 6
    assert_counts_match_disk(store)
    assert store.curr_items == 6


# -- flush_all -----------------------------------------------------------------


def test_flush_all_kills_every_item(store):
    for i in range(5):
        set_(store, b"k%d" % i, b"v")
    store.flush_all()
    assert all(store.get(b"k%d" % i) is None for i in range(5))
    assert store.get_flushed == 5


def test_items_stored_after_an_immediate_flush_live_in_the_same_second(store):
    set_(store, b"before", b"1")
    store.flush_all()
    set_(store, b"after", b"2")
    assert store.get(b"before") is None
    assert value_of(store, b"after") == b"2"


def test_flush_all_kills_items_only_on_disk(stores, store):
    set_(store, b"k", b"v")
    store = stores.reopen(store)
    store.flush_all()
    assert store.get(b"k") is None


def test_delayed_flush_kills_at_its_time_not_before(store, clock):
    set_(store, b"k", b"v")
    store.flush_all(10)
    clock.advance(8)  # memcached itself may apply a delayed flush up to a second early
    assert value_of(store, b"k") == b"v"
    clock.advance(2)
    assert store.get(b"k") is None
    assert store.get_flushed == 1


def test_items_stored_after_a_delayed_flush_time_live(store, clock):
    store.flush_all(10)
    clock.advance(11)
    set_(store, b"k", b"v")
    assert value_of(store, b"k") == b"v"


def test_a_new_delayed_flush_replaces_a_pending_one(store, clock):
    set_(store, b"k", b"v")
    store.flush_all(10)
    store.flush_all(100)
    clock.advance(50)
    assert value_of(store, b"k") == b"v"
    clock.advance(50)
    assert store.get(b"k") is None


def test_tick_reclaims_flushed_files(store):
    for i in range(20):
        set_(store, b"k%d" % i, b"v" * i)
    store.flush_all()
    assert store.has_work()
    finish_scan(store)
    assert disk_usage(store.dir.path) == (0, 0)
    assert store.reclaimed == 20
    assert (store.curr_items, store.bytes) == (0, 0)
    assert not store.has_work()


def test_tick_reclaims_expired_files_after_flush_all(store, clock):
    set_(store, b"expired", b"v", exptime=5)
    store.flush_all(100)
    clock.advance(50)
    set_(store, b"survivor", b"v")  # stored before the flush time: dies with it
    clock.advance(50)
    set_(store, b"after", b"kept")
    finish_scan(store)
    assert disk_usage(store.dir.path)[0] == 1
    assert store.reclaimed == 2
    assert_counts_match_disk(store)
    assert value_of(store, b"after") == b"kept"


def test_tick_keeps_items_written_after_the_flush(store):
    for i in range(10):
        set_(store, b"old%d" % i, b"v")
    store.flush_all()
    for i in range(3):
        set_(store, b"new%d" % i, b"value")
    finish_scan(store)
    assert store.curr_items == 3
    assert_counts_match_disk(store)
    assert [value_of(store, b"new%d" % i) for i in range(3)] == [b"value"] * 3


def test_tick_does_not_reclaim_before_a_delayed_flush_is_due(store, clock):
    set_(store, b"k", b"v")
    store.flush_all(10)
    assert not store.has_work()
    assert store.tick() is False
    assert disk_usage(store.dir.path)[0] == 1
    clock.advance(10)
    assert store.has_work()
    finish_scan(store)
    assert disk_usage(store.dir.path) == (0, 0)
    assert (store.curr_items, store.bytes) == (0, 0)


def test_flush_during_the_start_up_scan_is_reclaimed_and_counted_exactly(stores, store):
    for i in range(50):
        set_(store, b"k%d" % i, b"v")
    store = stores.reopen(store, scan=False)
    for _ in range(256 * 10):
        store.tick(budget=0)
    assert not store.scan_done
    store.flush_all()
    set_(store, b"fresh", b"1")
    finish_scan(store)
    assert store.scan_done
    assert disk_usage(store.dir.path)[0] == 1
    assert_counts_match_disk(store)


def test_flushed_items_are_reclaimed_by_the_start_up_scan(stores, store):
    for i in range(10):
        set_(store, b"k%d" % i, b"v")
    store.flush_all()
    stores.close(store)  # before any clean-up ran
    store = stores.open()
    assert disk_usage(store.dir.path) == (0, 0)
    assert (store.curr_items, store.bytes) == (0, 0)


# == the wall clock stepped while running (store/clock.py) ====================

HOUR = 3600
WALL_STEPS = pytest.mark.parametrize("step", [HOUR, -HOUR], ids=["forward", "back"])


@pytest.fixture
def stepped_store(stores, stepped_clock):
    return stores.open(clock=stepped_clock.clock)


@WALL_STEPS
def test_a_relative_exptime_lives_its_seconds_across_a_wall_clock_step(stepped_store, stepped_clock, step):
    set_(stepped_store, b"k", b"v", exptime=100)
    stepped_clock.step(step)
    stepped_clock.run(99)
    assert value_of(stepped_store, b"k") == b"v"  # not expired early
    stepped_clock.run(1)
    assert stepped_store.get(b"k") is None  # nor alive longer


@WALL_STEPS
def test_an_absolute_exptime_comes_on_the_monotonic_clock_across_a_wall_clock_step(
    stepped_store, stepped_clock, step
):
    set_(stepped_store, b"k", b"v", exptime=int(T0) + 100)
    stepped_clock.step(step)
    stepped_clock.run(99)
    assert value_of(stepped_store, b"k") == b"v"
    stepped_clock.run(1)
    assert stepped_store.get(b"k") is None


@WALL_STEPS
def test_a_delayed_flush_fires_after_its_monotonic_seconds_not_at_a_wall_clock_step(
    stepped_store, stepped_clock, step
):
    set_(stepped_store, b"k", b"v")
    stepped_store.flush_all(10)
    stepped_clock.step(step)
    stepped_clock.run(9)
    assert value_of(stepped_store, b"k") == b"v"
    stepped_clock.run(1)
    assert stepped_store.get(b"k") is None


def test_cas_values_keep_increasing_across_wall_clock_steps(stepped_store, stepped_clock):
    seen = []
    for step in (HOUR, -HOUR, -HOUR, HOUR):
        set_(stepped_store, b"k", b"v")
        seen.append(stepped_store.get(b"k").cas)
        stepped_clock.step(step)
    assert seen == sorted(seen) and len(set(seen)) == len(seen)


def test_a_store_opened_without_a_clock_runs_on_the_step_proof_clock(data_dir):
    store = Store(str(data_dir))
    try:
        assert isinstance(store.clock, Clock)
    finally:
        store.close()


def test_a_restart_after_the_wall_clock_moved_on_sees_the_new_time(stores, stepped_store, stepped_clock):
    # the records keep absolute times: the next process reads the wall clock
    set_(stepped_store, b"k", b"v", exptime=100)
    stores.close(stepped_store)
    stepped_clock.step(HOUR)
    restarted = stores.open(clock=Clock(wall=lambda: stepped_clock.wall))
    assert restarted.get(b"k") is None


def restarted_clock(stepped_clock):
    """The Clock a restarted server makes: it reads the wall clock again."""
    return Clock(wall=lambda: stepped_clock.wall, monotonic=lambda: stepped_clock.monotonic)


@pytest.mark.parametrize("down", ["close", "crash"])
def test_writes_after_a_restart_with_the_wall_clock_stepped_back_outlive_a_past_delayed_flush(
    stores, stepped_store, stepped_clock, down
):
    set_(stepped_store, b"old", b"v")
    stepped_store.flush_all(10)
    stepped_clock.run(20)
    assert stepped_store.get(b"old") is None  # the flush has come
    getattr(stores, down)(stepped_store)
    stepped_clock.step(-HOUR)  # the new process's times are before the flush's
    store = stores.open(clock=restarted_clock(stepped_clock))
    set_(store, b"new", b"v")
    assert value_of(store, b"new") == b"v"
    assert store.get(b"old") is None


def test_a_delayed_flush_kills_an_item_with_a_client_cas_from_2_63_up(stepped_store, stepped_clock):
    # the counter never follows such a cas, so only the time can judge it
    stepped_store.store(Mode.SET, b"k", 0, 0, b"v", new_cas=(1 << 63) + 5)
    stepped_store.flush_all(10)
    stepped_clock.run(10)
    assert stepped_store.get(b"k") is None


def test_a_state_file_without_the_flush_cas_bound_keeps_its_delayed_flush(stores, store, clock):
    set_(store, b"a", b"1")
    store.flush_all(10)
    clock.advance(10)
    stores.close(store)
    path = stores.data_dir / "state"
    saved = json.loads(path.read_text())
    del saved["dead_before_cas"]  # as written before the bound existed
    path.write_text(json.dumps(saved))
    store = stores.open(scan=False)
    assert store.get(b"a") is None
    set_(store, b"b", b"2")
    assert value_of(store, b"b") == b"2"


# == write failures ===========================================================


def _disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_failed_write_raises_store_error_with_the_reason(store, monkeypatch):
    monkeypatch.setattr(DataDir, "write", _disk_full)
    with pytest.raises(StoreError) as info:
        set_(store, b"k", b"v")
    assert "No space left on device" in str(info.value)


def test_failed_write_keeps_serving_the_old_value(stores, store, monkeypatch):
    set_(store, b"k", b"old", flags=3)
    cas = store.get(b"k").cas
    monkeypatch.setattr(DataDir, "write", _disk_full)
    with pytest.raises(StoreError):
        set_(store, b"k", b"new")
    item = store.get(b"k")
    assert (item.value, item.flags, item.cas) == (b"old", 3, cas)
    store.cache.clear()
    assert value_of(store, b"k") == b"old"
    monkeypatch.undo()
    store = stores.reopen(store)
    assert value_of(store, b"k") == b"old"


def test_failed_write_of_a_new_key_stores_nothing(store, monkeypatch):
    monkeypatch.setattr(DataDir, "write", _disk_full)
    with pytest.raises(StoreError):
        set_(store, b"k", b"v")
    assert store.get(b"k") is None
    assert (store.curr_items, store.bytes) == (0, 0)
    assert disk_usage(store.dir.path) == (0, 0)


@pytest.mark.parametrize(
    "change",
    [
        lambda s: s.store(Mode.SET, b"k", 0, 0, b"new"),
        lambda s: s.store(Mode.ADD, b"other", 0, 0, b"new"),
        lambda s: s.store(Mode.REPLACE, b"k", 0, 0, b"new"),
        lambda s: s.store(Mode.APPEND, b"k", 0, 0, b"new"),
        lambda s: s.store(Mode.PREPEND, b"k", 0, 0, b"new"),
        lambda s: s.store(Mode.CAS, b"k", 0, 0, b"new", s.get(b"k").cas),
        lambda s: s.incr_decr(b"k", 1, True),
        lambda s: s.touch(b"k", 100),
    ],
    ids=["set", "add", "replace", "append", "prepend", "cas", "incr", "touch"],
)
def test_every_change_raises_store_error_when_the_write_fails(store, monkeypatch, change):
    set_(store, b"k", b"10", flags=1)
    before = _fields(store.get(b"k"))
    counts = (store.curr_items, store.bytes)
    monkeypatch.setattr(DataDir, "write", _disk_full)
    with pytest.raises(StoreError):
        change(store)
    assert _fields(store.get(b"k")) == before
    assert store.get(b"other") is None
    assert (store.curr_items, store.bytes) == counts


def test_failed_replace_leaves_no_temp_file(stores, store, monkeypatch, data_dir):
    set_(store, b"k", b"old")  # also reserves the first cas block, so state is not written below
    store.dir.in_place = False  # the exchange path (its failures; in place: below)
    real_replace = os.replace

    def replace(src, dst, *a, **kw):
        if os.path.dirname(src) == os.path.join(str(data_dir), "tmp"):
            _disk_full()
        return real_replace(src, dst, *a, **kw)

    monkeypatch.setattr(store.fs, "replace", replace)
    monkeypatch.setattr(store.fs, "exchange", lambda a, b: _disk_full())  # renameat2 too
    with pytest.raises(StoreError):
        set_(store, b"k", b"new")
    assert stray_temp_files(store) == []
    assert value_of(store, b"k") == b"old"
    monkeypatch.undo()
    store = stores.reopen(store)
    assert value_of(store, b"k") == b"old"
    assert_counts_match_disk(store)


def test_failed_replace_via_os_replace_raising_everywhere(store, monkeypatch, data_dir):
    set_(store, b"k", b"old")
    store.dir.in_place = False  # the exchange path (its failures; in place: below)
    monkeypatch.setattr(store.fs, "replace", _disk_full)
    monkeypatch.setattr(store.fs, "exchange", lambda a, b: _disk_full())
    with pytest.raises(StoreError):
        set_(store, b"k", b"new")
    monkeypatch.undo()
    assert stray_temp_files(store) == []
    assert value_of(store, b"k") == b"old"


def test_failed_data_write_leaves_no_temp_file(store, monkeypatch, data_dir):
    set_(store, b"k", b"old")
    store.dir.in_place = False  # the exchange path (its failures; in place: below)
    monkeypatch.setattr(store.fs, "writev", _disk_full)
    with pytest.raises(StoreError):
        set_(store, b"k", b"new")
    assert stray_temp_files(store) == []
    assert value_of(store, b"k") == b"old"


def test_the_store_works_again_once_the_disk_has_room(store, monkeypatch):
    set_(store, b"k", b"old")
    monkeypatch.setattr(DataDir, "write", _disk_full)
    with pytest.raises(StoreError):
        set_(store, b"k", b"new")
    monkeypatch.undo()
    assert set_(store, b"k", b"new") is Result.STORED
    assert value_of(store, b"k") == b"new"
    assert_counts_match_disk(store)


def test_short_writes_are_completed(stores, store, monkeypatch):
    real_writev = os.writev

    def short_writev(fd, parts):
        return real_writev(fd, [b"".join(parts)[:3]])

    monkeypatch.setattr(store.fs, "writev", short_writev)
    set_(store, b"k", b"a value longer than three bytes")
    monkeypatch.undo()
    store = stores.reopen(store)
    assert value_of(store, b"k") == b"a value longer than three bytes"
    assert store.quarantined == 0


def test_failed_state_save_raises_store_error(stores, monkeypatch):
    store = stores.open()
    monkeypatch.setattr(DataDir, "write_small_file", _disk_full)
    with pytest.raises(StoreError):
        set_(store, b"k", b"v")  # the first write reserves a cas block in the state file


def test_failed_delete_raises_store_error_and_keeps_the_item(store, monkeypatch):
    set_(store, b"k", b"v")

    def read_only(path, *a, **kw):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(store.fs, "unlink", read_only)
    monkeypatch.setattr(store.fs, "rename", read_only)  # a removed record may be kept as a spare
    with pytest.raises(StoreError):
        store.delete(b"k")
    monkeypatch.undo()
    assert value_of(store, b"k") == b"v"


def test_a_failed_write_in_place_keeps_serving_the_old_value(stores, store, monkeypatch):
    set_(store, b"k", b"old")
    monkeypatch.setattr(store.fs, "pwrite", _disk_full)
    with pytest.raises(StoreError):
        set_(store, b"k", b"new")
    assert value_of(store, b"k") == b"old"
    store.cache.clear()
    assert value_of(store, b"k") == b"old"
    monkeypatch.undo()
    assert set_(store, b"k", b"newer") is Result.STORED
    store = stores.reopen(store)
    assert value_of(store, b"k") == b"newer"


def test_a_file_removed_by_hand_is_not_written_through_its_kept_descriptor(store):
    set_(store, b"k", b"v1")
    _, path = store.dir.locate(b"k")
    os.unlink(path)
    set_(store, b"k", b"v2")
    store.cache.clear()
    assert value_of(store, b"k") == b"v2"


def test_a_bucket_dir_removed_by_hand_is_made_again(store):
    set_(store, b"k", b"v1")
    _, path = store.dir.locate(b"k")
    shutil.rmtree(os.path.dirname(path))
    set_(store, b"k", b"v2")
    assert value_of(store, b"k") == b"v2"
    assert os.path.isfile(path)


def test_start_up_scan_sets_aside_a_directory_among_the_items_and_goes_on(stores, data_dir):
    store = stores.open()
    set_(store, b"k", b"v")
    bucket, path = store.dir.locate(b"k")
    stores.close(store)
    os.mkdir(os.path.join(os.path.dirname(path), "f" * 32))
    store = stores.open()
    finish_scan(store)
    assert store.curr_items == 1 and store.quarantined == 1
    assert value_of(store, b"k") == b"v"


def test_incr_reads_a_value_with_thousands_of_leading_zeros(store):
    set_(store, b"z", b"0" * 5000 + b"7")
    assert store.incr_decr(b"z", 1, True) == 8


def test_incr_of_a_value_with_thousands_of_digits_is_non_numeric(store):
    set_(store, b"z", b"9" * 5000)
    with pytest.raises(NonNumeric):
        store.incr_decr(b"z", 1, True)
