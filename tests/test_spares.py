"""Spare files (store/spares.py): a replaced or deleted record's inode is kept
in tmp/ and written over by a later write, only once a barrier has made the
record that replaced it durable; at start-up a torn item is put back from its
previous record."""

import errno
import os

import pytest

from store import Mode
from store.errors import StoreError
from store.durability import ALWAYS, EVERYSEC, NO
from store.restore import intact_record


@pytest.fixture(params=["renameat2", "link"])
def open_store(request, open_store):
    """conftest's open_store at everysec by default; each test runs with
    renameat2's exchange and with the fallback where the C library or file
    system lacks it (link + rename). Every write takes the exchange path
    (the one spares are for, and the fallback of a write in place:
    tests/test_inplace.py)."""

    def open_(level=EVERYSEC, **kw):
        store = open_store(level, **kw)
        store.dir.in_place = False
        if request.param == "link":
            store.fs._exchange.available = False
        return store

    return open_


def set_(store, key, value):
    return store.store(Mode.SET, key, 0, 0, value)


def inode(store, key):
    return os.stat(store.dir.locate(key)[1]).st_ino


def spares_on_disk(store):
    return sorted(os.listdir(store.dir.tmp))


def crash(store):
    """Die without close(): nothing is saved, the OS drops the flock."""
    store.dir.close()


def barrier(store):
    assert store.durability.sync_if_due(force=True)


def test_an_overwritten_record_is_kept_as_a_spare(open_store):
    store = open_store()
    set_(store, b"k", b"v1")
    first = inode(store, b"k")
    set_(store, b"k", b"v2")
    [spare] = spares_on_disk(store)
    assert os.stat(os.path.join(store.dir.tmp, spare)).st_ino == first


def test_a_deleted_record_is_kept_as_a_spare(open_store):
    store = open_store()
    set_(store, b"k", b"v1")
    first = inode(store, b"k")
    assert store.delete(b"k")
    [spare] = spares_on_disk(store)
    assert os.stat(os.path.join(store.dir.tmp, spare)).st_ino == first
    assert store.get(b"k") is None


def test_a_spare_is_written_over_only_after_a_barrier(open_store):
    store = open_store()
    set_(store, b"a", b"1")
    set_(store, b"b", b"1")
    old_a = inode(store, b"a")
    set_(store, b"a", b"2")  # a's first inode is held: a's fallback
    set_(store, b"b", b"2")
    assert inode(store, b"b") != old_a
    barrier(store)
    set_(store, b"b", b"3")
    assert inode(store, b"b") == old_a
    assert store.dir.spares.reused == 1


def test_a_spare_is_never_written_for_the_key_it_held(open_store):
    store = open_store()
    set_(store, b"k", b"v1")
    old = inode(store, b"k")
    set_(store, b"k", b"v2")
    barrier(store)
    set_(store, b"k", b"v3")
    assert inode(store, b"k") != old
    assert store.dir.spares.reused == 0


def test_under_no_a_spare_is_ready_at_once(open_store):
    store = open_store(NO)
    set_(store, b"a", b"1")
    set_(store, b"b", b"1")
    old_a = inode(store, b"a")
    set_(store, b"a", b"2")
    set_(store, b"b", b"2")
    assert inode(store, b"b") == old_a


def test_under_always_the_commit_is_the_barrier(open_store):
    store = open_store(ALWAYS)
    set_(store, b"a", b"1")
    set_(store, b"b", b"1")
    store.commit()
    old_a = inode(store, b"a")
    set_(store, b"a", b"2")
    store.commit()
    set_(store, b"b", b"2")
    store.commit()
    assert inode(store, b"b") == old_a
    assert (store.get(b"a").value, store.get(b"b").value) == (b"2", b"2")


def test_a_longer_spare_is_cut_to_the_new_record(open_store):
    store = open_store(NO)
    set_(store, b"a", b"x" * 5000)
    set_(store, b"a", b"short")
    set_(store, b"b", b"tiny")  # written into a's old 5 KB record
    reopened = open_store_again(store, open_store)
    assert reopened.get(b"b").value == b"tiny"
    assert reopened.get(b"a").value == b"short"


def open_store_again(store, open_store, level=EVERYSEC):
    store.close()
    return open_store(level)


def test_a_clean_stop_leaves_no_spares(open_store):
    store = open_store()
    for i in range(10):
        set_(store, b"k", b"%d" % i)
    store.delete(b"k")
    assert spares_on_disk(store)
    store.close()
    assert os.listdir(store.dir.tmp) == []


def test_a_torn_item_is_restored_from_its_previous_record_at_start_up(open_store):
    store = open_store()
    set_(store, b"k", b"v1")
    set_(store, b"other", b"x")
    barrier(store)
    set_(store, b"k", b"v2")  # into no spare yet; v1's inode is held
    path = store.dir.locate(b"k")[1]
    other = store.dir.locate(b"other")[1]
    crash(store)
    # a power loss before the barrier: the file holds a spare's old bytes
    with open(other, "rb") as f, open(path, "wb") as g:
        g.write(f.read())
    store = open_store()
    assert store.restored == 1
    assert store.get(b"k").value == b"v1"
    assert store.quarantined == 0
    assert os.listdir(store.dir.tmp) == []


def test_a_half_written_item_is_restored_from_its_previous_record(open_store):
    store = open_store()
    set_(store, b"k", b"v1" * 100)
    set_(store, b"k", b"v2" * 100)
    path = store.dir.locate(b"k")[1]
    crash(store)
    with open(path, "r+b") as f:
        f.truncate(50)
    store = open_store()
    assert store.get(b"k").value == b"v1" * 100


def test_an_intact_item_is_never_replaced_by_its_spare(open_store):
    store = open_store()
    set_(store, b"k", b"v1")
    set_(store, b"k", b"v2")
    crash(store)
    store = open_store()
    assert store.restored == 0
    assert store.get(b"k").value == b"v2"


def test_a_spare_never_brings_back_a_deleted_key(open_store):
    store = open_store()
    set_(store, b"k", b"v1")
    store.delete(b"k")
    crash(store)
    store = open_store()
    assert store.restored == 0
    assert store.get(b"k") is None


def test_a_key_set_again_after_its_delete_leaves_none_of_its_records_in_tmp(open_store):
    store = open_store()
    set_(store, b"k", b"v1")
    set_(store, b"k", b"v2")  # v1 a spare
    barrier(store)  # v1 ready: a superseded record
    store.delete(b"k")  # v2 a held spare
    set_(store, b"other", b"x")
    set_(store, b"k", b"v3")  # no old file: a plain rename
    names = {intact_record(store.dir, os.path.join(store.dir.tmp, n)).key for n in spares_on_disk(store)}
    assert b"k" not in names
    assert store.get(b"k").value == b"v3"


def test_a_durable_delete_stays_when_the_next_write_of_the_key_tears(open_store):
    store = open_store()
    set_(store, b"other", b"o" * 100)
    set_(store, b"other", b"p" * 100)  # a spare of another key
    set_(store, b"k", b"v1")
    barrier(store)
    store.delete(b"k")
    barrier(store)  # the delete is durable; v1's record a ready spare
    set_(store, b"k", b"v2")  # written over the other key's spare
    path = store.dir.locate(b"k")[1]
    crash(store)
    # a power loss before the barrier: the file holds the spare's old bytes
    with open(path, "r+b") as f:
        f.write(b"o" * 8)
    store = open_store()
    assert store.restored == 0
    assert store.get(b"k") is None


def inodes_in_tmp(store):
    return {os.stat(os.path.join(store.dir.tmp, n)).st_ino for n in spares_on_disk(store)}


def keys_in_tmp(store):
    records = (intact_record(store.dir, os.path.join(store.dir.tmp, n)) for n in spares_on_disk(store))
    return {r.key for r in records if r is not None}


def k_spares_ready(store, overwrites=2):
    """j set; k set `overwrites` times and deleted, each barrier passed: k's
    records are ready spares, and the next writes go into them."""
    set_(store, b"j", b"j0")
    for i in range(overwrites):
        set_(store, b"k", b"v%d" % i)
    barrier(store)
    store.delete(b"k")
    barrier(store)


def test_a_spare_written_over_and_back_in_tmp_before_a_barrier_is_removed_by_its_old_keys_plain_install(open_store):
    store = open_store()
    k_spares_ready(store)
    set_(store, b"j", b"j1")  # into a record of k: on disk it may still be k's
    j1 = inode(store, b"j")
    set_(store, b"j", b"j2")  # j1's file back in tmp/, as j's
    assert j1 in inodes_in_tmp(store)
    set_(store, b"k", b"v3")  # no old file: a plain rename
    assert j1 not in inodes_in_tmp(store)
    assert keys_in_tmp(store) == {b"j"}  # j0's record: j's fallback stays


def test_after_its_old_keys_plain_install_an_overwrite_frees_a_file_written_over_a_spare(open_store):
    store = open_store()
    k_spares_ready(store, overwrites=1)
    set_(store, b"j", b"j1")  # into k's record
    j1 = inode(store, b"j")
    set_(store, b"k", b"v3")  # a plain rename: a removal after it could be lost where it is kept
    set_(store, b"j", b"j2")
    assert j1 not in inodes_in_tmp(store)
    assert keys_in_tmp(store) == {b"j"}  # j0's record: j's fallback stays
    assert store.get(b"j").value == b"j2"


def test_after_its_old_keys_plain_install_a_delete_frees_a_file_written_over_a_spare(open_store):
    store = open_store()
    k_spares_ready(store, overwrites=1)
    set_(store, b"j", b"j1")  # into k's record
    j1 = inode(store, b"j")
    set_(store, b"k", b"v3")
    store.delete(b"j")
    assert j1 not in inodes_in_tmp(store)
    assert store.get(b"j") is None


def test_a_mark_from_before_the_barrier_in_flight_makes_the_overwrite_after_a_plain_install_wait_for_a_barrier(open_store):
    store = open_store()
    k_spares_ready(store, overwrites=1)
    set_(store, b"j", b"j1")  # into k's record
    j1 = inode(store, b"j")
    store.dir.spares.barrier_started()  # the helper's barrier begins: j1 is its to make durable
    set_(store, b"k", b"v3")
    calls = store.durability.calls
    set_(store, b"j", b"j2")  # j1 is j's fallback once that barrier passes: kept, after one here
    assert store.durability.calls == calls + 1
    assert j1 in inodes_in_tmp(store)


def test_a_mark_from_before_the_barrier_in_flight_makes_a_plain_install_wait_for_a_barrier(open_store):
    store = open_store()
    k_spares_ready(store)
    set_(store, b"j", b"j1")  # into a record of k
    j1 = inode(store, b"j")
    set_(store, b"j", b"j2")  # j1's file back in tmp/
    store.dir.spares.barrier_started()  # the helper's barrier begins: j1 is its to make durable
    calls = store.durability.calls
    set_(store, b"k", b"v3")  # a plain rename: j1's file may hold k's record until that barrier passes
    assert store.durability.calls == calls + 1
    assert j1 in inodes_in_tmp(store)  # j's fallback, kept
    assert b"k" not in keys_in_tmp(store)


def test_an_abandoned_write_frees_its_spare(open_store, monkeypatch):
    store = open_store()
    set_(store, b"a", b"1")
    set_(store, b"a", b"2")
    barrier(store)  # a's old record a ready spare

    def refuse(src, dst):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(store.fs, "replace", refuse)
    with pytest.raises(StoreError):
        set_(store, b"b", b"1")  # written into a's spare, never installed
    assert spares_on_disk(store) == []
    assert len(store.dir.spares) == 0


def test_the_newest_intact_spare_wins(open_store):
    store = open_store()
    for v in (b"v1", b"v2", b"v3", b"v4"):
        set_(store, b"k", v)  # v1..v3 are held spares
    path = store.dir.locate(b"k")[1]
    crash(store)
    with open(path, "wb") as f:
        f.write(b"garbage")
    store = open_store()
    assert store.get(b"k").value == b"v3"


def test_of_two_spares_of_one_cas_the_later_written_wins(open_store):
    store = open_store()
    set_(store, b"k", b"v1")
    barrier(store)
    store.touch(b"k", 3600)  # the same cas; the pre-touch record a held spare
    barrier(store)
    set_(store, b"k", b"v2")  # the touched record displaced: the fallback
    path = store.dir.locate(b"k")[1]
    crash(store)
    with open(path, "wb") as f:
        f.write(b"garbage")
    store = open_store()
    assert store.restored == 1
    assert store.get(b"k").exptime == int(store.clock()) + 3600


@pytest.mark.parametrize("level", [ALWAYS, EVERYSEC, NO])
def test_start_up_makes_its_clean_up_of_tmp_durable_before_serving(open_store, level):
    store = open_store()
    set_(store, b"k", b"v1")
    set_(store, b"k", b"v2")  # v1 a spare
    crash(store)
    store = open_store(level)
    assert store.dir.removed_temp_files == 1
    assert store.durability.calls == 1


@pytest.mark.parametrize("level", [ALWAYS, EVERYSEC, NO])
def test_start_up_makes_its_restores_durable_before_serving(open_store, level):
    store = open_store()
    set_(store, b"k", b"v1" * 100)
    set_(store, b"k", b"v2" * 100)
    path = store.dir.locate(b"k")[1]
    crash(store)
    with open(path, "r+b") as f:
        f.truncate(50)
    store = open_store(level)
    assert store.restored == 1
    assert store.durability.calls == 1


def test_start_up_with_nothing_to_repair_makes_no_barrier(open_store):
    store = open_store()
    set_(store, b"k", b"v1")
    store.close()
    store = open_store()
    assert store.durability.calls == 0


BIG = b"B" * (70 << 10)  # over spares.MAX_RECORD: never recycled


def test_an_overwritten_big_record_is_held_in_tmp_until_a_barrier(open_store):
    store = open_store()
    set_(store, b"k", BIG)
    first = inode(store, b"k")
    set_(store, b"k", b"v2")
    [spare] = spares_on_disk(store)
    assert os.stat(os.path.join(store.dir.tmp, spare)).st_ino == first
    assert store.dir.spares.held_big == 1


def test_a_held_big_record_is_freed_not_recycled_once_a_barrier_passes(open_store):
    store = open_store()
    set_(store, b"k", BIG)
    set_(store, b"k", b"v2")
    barrier(store)
    assert spares_on_disk(store) == []
    assert len(store.dir.spares) == 0


def test_a_torn_overwrite_of_a_big_record_falls_back_to_it(open_store):
    store = open_store()
    set_(store, b"k", BIG)
    barrier(store)
    set_(store, b"k", b"v2" * 100)
    path = store.dir.locate(b"k")[1]
    crash(store)
    with open(path, "r+b") as f:
        f.truncate(50)
    store = open_store()
    assert store.restored == 1
    assert store.get(b"k").value == BIG


def test_a_key_set_again_after_its_delete_leaves_no_big_record_in_tmp(open_store):
    store = open_store()
    set_(store, b"k", BIG)
    set_(store, b"k", b"v2")  # BIG held
    store.delete(b"k")
    set_(store, b"k", b"v3")  # no old file: a plain rename
    names = {intact_record(store.dir, os.path.join(store.dir.tmp, n)).key for n in spares_on_disk(store)}
    assert b"k" not in names


def test_under_no_an_overwritten_big_record_is_freed_at_once(open_store):
    store = open_store(NO)
    set_(store, b"k", BIG)
    set_(store, b"k", b"v2")
    assert spares_on_disk(store) == []


def test_a_clean_stop_frees_the_held_big_records(open_store):
    store = open_store()
    set_(store, b"k", BIG)
    set_(store, b"k", b"v2")
    store.close()
    assert os.listdir(store.dir.tmp) == []


def test_a_full_disk_frees_the_spares_and_tries_once_more(open_store, monkeypatch):
    store = open_store(NO)
    set_(store, b"a", b"1")
    set_(store, b"a", b"2")
    real_writev = os.writev
    calls = []

    def full_once(fd, parts):
        calls.append(fd)
        if len(calls) == 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_writev(fd, parts)

    monkeypatch.setattr(store.fs, "writev", full_once)
    set_(store, b"b", b"1")
    assert len(calls) == 2
    assert spares_on_disk(store) == []
    assert store.get(b"b").value == b"1"


def test_a_failed_rename_never_leaves_a_second_name_of_the_live_file(open_store, monkeypatch):
    store = open_store(NO)
    store.fs._exchange.available = False  # the link + rename path
    set_(store, b"a", b"old")
    real_replace = os.replace

    def refuse(src, dst):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(store.fs, "replace", refuse)
    with pytest.raises(Exception):
        set_(store, b"a", b"new")
    monkeypatch.setattr(store.fs, "replace", real_replace)
    for i in range(5):
        set_(store, b"k%d" % i, b"x")  # none may write into a's live file
        set_(store, b"k%d" % i, b"y")
    reopened = open_store_again(store, open_store)
    assert reopened.get(b"a").value == b"old"


def test_spares_outside_the_ready_budget_are_freed(open_store):
    store = open_store(NO)
    store.dir.spares.ready_bytes = 2 * 4096
    for i in range(5):
        set_(store, b"k%d" % i, b"1")
    for i in range(5):
        set_(store, b"k%d" % i, b"2")  # five old records released, two kept
    assert len(spares_on_disk(store)) <= 2


def test_a_disk_quota_keeps_the_spares_to_an_eighth_of_it(open_store):
    store = open_store(NO, max_disk=80 * 4096)
    assert store.dir.spares.ready_bytes == 10 * 4096


# -- empty spares made in idle moments ---------------------------------------


def idle_until_done(store):
    while store.has_idle_work():
        store.idle_tick(1.0)


def write_new_keys(store, n):
    """n writes that each make a new file (no spare is ready): 2n empty spares asked for."""
    for i in range(n):
        set_(store, b"k%d" % i, b"v")


def test_a_store_makes_no_empty_spares_unless_told(open_store):
    store = open_store()
    set_(store, b"k", b"v")  # a new file: a miss
    assert not store.has_idle_work()


def test_each_write_that_made_its_own_file_asks_for_two_empty_spares(open_store):
    store = open_store(fresh_spares=100)
    write_new_keys(store, 3)
    idle_until_done(store)
    assert len(spares_on_disk(store)) == 6
    assert store.dir.spares.made == 6
    assert all(os.path.getsize(os.path.join(store.dir.tmp, n)) == 0 for n in spares_on_disk(store))


def test_empty_spares_stop_at_fresh_spares_ready(open_store):
    store = open_store(fresh_spares=4)
    write_new_keys(store, 10)
    idle_until_done(store)
    assert len(spares_on_disk(store)) == 4


def test_empty_spares_stop_at_the_ready_budget(open_store):
    store = open_store(fresh_spares=100)
    store.dir.spares.ready_bytes = 3 * 4096
    write_new_keys(store, 10)
    idle_until_done(store)
    assert len(spares_on_disk(store)) == 3


def test_an_empty_spare_takes_the_next_write_without_a_barrier(open_store):
    store = open_store(fresh_spares=100)
    set_(store, b"a", b"1")
    idle_until_done(store)
    reused = store.dir.spares.reused
    set_(store, b"b", b"2")  # a new key: it takes an empty spare, no file made
    set_(store, b"a", b"3")  # an overwrite: the other one
    assert store.dir.spares.reused == reused + 2
    assert (store.get(b"a").value, store.get(b"b").value) == (b"3", b"2")


def test_an_item_written_into_an_empty_spare_survives_a_restart(open_store):
    store = open_store(fresh_spares=100)
    set_(store, b"a", b"1")
    idle_until_done(store)
    set_(store, b"b", b"2")
    store.close()
    reopened = open_store()
    assert reopened.get(b"b").value == b"2"
    assert spares_on_disk(reopened) == []


def test_a_failure_to_make_an_empty_spare_pauses_the_making(open_store, monkeypatch):
    store = open_store(fresh_spares=100)
    set_(store, b"a", b"1")
    real_open = os.open

    def full(path, flags, *args, **kw):
        if flags & os.O_CREAT and str(path).startswith(store.dir.tmp):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_open(path, flags, *args, **kw)

    monkeypatch.setattr(store.fs, "open", full)
    store.idle_tick(1.0)
    assert not store.has_idle_work()  # paused: not retried at every idle turn
    assert store.dir.spares.made == 0
