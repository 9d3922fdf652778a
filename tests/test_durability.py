"""Durability levels (store/durability.py, the store's batch, the session's held
replies): what each `--fsync` level makes durable, in which order, and what a
client is told when the disk refuses.

The barrier is replaced by a recorder that notes what was on disk at each
call, so the order "data durable, then renamed, then the rename durable, then
the reply" is checked without a power cut. Time is a fake clock; nothing
sleeps.
"""

import os
import signal
import time

import pytest

from handlers import Server, Session, Settings
from store import ALWAYS, EVERYSEC, NO, Mode, Result, Store, StoreError
from store import durability as durability_mod
from store import record
from store.durability import Durability, FsyncBarrier, SyncfsBarrier, make_barrier
from store.filesystem import OSFileSystem
from store.syncer import HelperGone


class RecordingBarrier:
    """Stands in for syncfs: records each call with the item files present
    and the temp files waiting, and fails when told to."""

    name = "recording"
    needs_paths = True

    def __init__(self, store):
        self.store = store
        self.calls = []
        self.fail_with = None

    def sync(self, files, dirs):
        self.calls.append(
            {"files": list(files), "dirs": set(dirs), "items": item_files(self.store), "tmp": tmp_files(self.store)}
        )
        if self.fail_with is not None:
            raise OSError(self.fail_with, os.strerror(self.fail_with))

    def close(self):
        pass


def item_files(store):
    out = set()
    for root, _, names in os.walk(store.dir.items):
        out.update(names)
    return out


def tmp_files(store):
    """The temp files in tmp/: what is there beside the idle spares."""
    idle = {os.path.basename(p) for p in store.dir.spares.idle()}
    return set(os.listdir(store.dir.tmp)) - idle


def file_name(store, key):
    return os.path.basename(store.dir.locate(key)[1])


@pytest.fixture
def store(open_store):
    return open_store(ALWAYS)


@pytest.fixture
def barrier(store):
    recorder = RecordingBarrier(store)
    store.durability.barrier = recorder
    return recorder


def set_(store, key, value, flags=0):
    return store.store(Mode.SET, key, flags, 0, value)


# == always: the batch ==========================================================


def test_always_keeps_a_write_out_of_its_file_until_the_commit(store, barrier):
    set_(store, b"k", b"v")
    assert file_name(store, b"k") not in item_files(store)
    store.commit()
    assert file_name(store, b"k") in item_files(store)


def test_always_serves_a_write_of_the_open_batch_to_readers(store, barrier):
    set_(store, b"k", b"v", flags=5)
    item = store.get(b"k")
    assert (item.flags, item.value) == (5, b"v")


def test_always_serves_a_pending_write_even_when_the_cache_has_no_room(open_store):
    store = open_store(ALWAYS, memory_limit=10)
    store.durability.barrier = RecordingBarrier(store)
    set_(store, b"k", b"a value far larger than the cache")
    assert store.get(b"k").value == b"a value far larger than the cache"


def test_always_commits_data_before_renaming_and_renames_before_the_second_barrier(store, barrier):
    set_(store, b"a", b"1")
    set_(store, b"b", b"2")
    store.commit()
    first, second = barrier.calls
    names = {file_name(store, b"a"), file_name(store, b"b")}
    # first barrier: both values wait in temp files, neither is renamed yet
    assert len(first["tmp"]) == 2 and not names & first["items"]
    assert sorted(first["files"]) == sorted(os.path.join(store.dir.tmp, t) for t in first["tmp"])
    # second barrier: both are in place, and their folders are the ones synced
    assert names <= second["items"] and not second["tmp"]
    assert {os.path.dirname(store.dir.locate(k)[1]) for k in (b"a", b"b")} <= second["dirs"]


def test_always_makes_one_batch_of_many_writes_with_two_barriers(store, barrier):
    for i in range(50):
        set_(store, b"k%d" % i, b"v")
    store.commit()
    assert len(barrier.calls) == 2
    assert store.durability.calls == 2


def test_always_syncs_the_parents_of_new_bucket_folders(store, barrier):
    set_(store, b"k", b"v")
    store.commit()
    bucket = os.path.dirname(store.dir.locate(b"k")[1])
    top = os.path.dirname(bucket)
    assert {bucket, top, store.dir.items} <= barrier.calls[1]["dirs"]


def test_always_commits_a_batch_of_deletes_with_one_barrier(store, barrier):
    set_(store, b"k", b"v")
    store.commit()
    barrier.calls.clear()
    assert store.delete(b"k")
    store.commit()
    assert len(barrier.calls) == 1
    assert file_name(store, b"k") not in barrier.calls[0]["items"]


def test_always_with_nothing_written_makes_no_barrier(store, barrier):
    store.get(b"nothing")
    assert store.commit() is None
    assert barrier.calls == []


def test_always_two_writes_of_one_key_in_a_batch_leave_the_last(store, barrier):
    set_(store, b"k", b"first")
    set_(store, b"k", b"second")
    store.commit()
    assert len(barrier.calls[0]["files"]) == 1
    assert not tmp_files(store)
    store.cache.clear()
    assert store.get(b"k").value == b"second"
    assert (store.curr_items, store.bytes) == (1, store.get(b"k").size)


def test_always_a_write_then_delete_in_one_batch_leaves_nothing(store, barrier):
    set_(store, b"k", b"v")
    assert store.delete(b"k")
    store.commit()
    assert file_name(store, b"k") not in item_files(store)
    assert not tmp_files(store)
    assert (store.curr_items, store.bytes) == (0, 0)


def test_always_a_delete_then_write_in_one_batch_leaves_the_new_value(store, barrier):
    set_(store, b"k", b"old")
    store.commit()
    store.delete(b"k")
    set_(store, b"k", b"new")
    store.commit()
    store.cache.clear()
    assert store.get(b"k").value == b"new"
    assert store.curr_items == 1


def test_always_append_in_the_batch_builds_on_the_pending_value(store, barrier):
    set_(store, b"k", b"a")
    assert store.store(Mode.APPEND, b"k", 0, 0, b"b") is Result.STORED
    store.commit()
    store.cache.clear()
    assert store.get(b"k").value == b"ab"


def test_always_a_failed_first_barrier_keeps_every_old_value(store, barrier):
    set_(store, b"k", b"old")
    store.commit()
    barrier.fail_with = 5  # EIO
    set_(store, b"k", b"new")
    set_(store, b"fresh", b"x")
    batch = store.commit()
    assert batch.error == "Input/output error"
    barrier.fail_with = None
    assert store.get(b"k").value == b"old"
    assert store.get(b"fresh") is None
    assert not tmp_files(store)
    assert (store.curr_items, store.bytes) == (1, store.get(b"k").size)


def test_always_a_failed_first_barrier_leaves_old_values_after_a_restart(open_store, store, barrier):
    set_(store, b"k", b"old")
    store.commit()
    barrier.fail_with = 28  # ENOSPC
    set_(store, b"k", b"new")
    store.commit()
    store.close()
    again = open_store(ALWAYS)
    assert again.get(b"k").value == b"old"


def test_always_the_store_works_again_after_a_failed_commit(store, barrier):
    barrier.fail_with = 5
    set_(store, b"k", b"lost")
    store.commit()
    barrier.fail_with = None
    set_(store, b"k", b"kept")
    assert store.commit().error is None
    store.cache.clear()
    assert store.get(b"k").value == b"kept"


def test_always_counts_barrier_calls_time_and_errors(store, barrier):
    set_(store, b"k", b"v")
    store.commit()
    barrier.fail_with = 5
    set_(store, b"k", b"w")
    store.commit()
    d = store.durability
    assert (d.calls, d.errors) == (3, 1)
    assert d.seconds >= 0


def test_always_evicting_for_the_disk_quota_in_one_batch_keeps_the_counts_exact(open_store):
    record_size = record.HEADER_SIZE + 2 + 200
    store = open_store(ALWAYS, max_disk=4 * record_size, disk_policy="evict")
    store.durability.barrier = RecordingBarrier(store)
    for i in range(4):
        set_(store, b"a%d" % i, b"v" * 200)
    store.commit()
    # each of these needs an eviction; an evicted file stays on disk until
    # the commit, and must not be evicted (and counted) twice
    for i in range(3):
        set_(store, b"b%d" % i, b"v" * 200)
    store.commit()
    files = item_files(store)
    assert store.curr_items == len(files) == 4
    assert store.bytes == 4 * record_size
    assert store.evictions == 3


class FailFirst(RecordingBarrier):
    """Fails the first barrier of the next commit when told to."""

    def sync(self, files, dirs):
        fail, self.fail_with = self.fail_with, None
        self.calls.append({"files": list(files)})
        if fail is not None:
            raise OSError(fail, os.strerror(fail))


@pytest.mark.parametrize("seed", range(12))
def test_always_random_batches_leave_the_store_as_the_last_durable_state(open_store, seed):
    # Random sets, appends and deletes over a few keys, committed in random
    # batches, some of whose first barrier fails: the items (read through the
    # store and, after a restart, from disk) and the counts are always those
    # of the batches that succeeded. (A batch of deletes alone has no barrier
    # before its unlinks: if its one barrier fails, the deletes are done.)
    import random

    rng = random.Random(seed)
    store = open_store(ALWAYS)
    barrier = store.durability.barrier = FailFirst(store)
    durable = {}
    keys = [b"k%d" % i for i in range(6)]
    for _ in range(25):
        model = dict(durable)
        for _ in range(rng.randrange(1, 8)):
            key, op = rng.choice(keys), rng.choice(["set", "set", "append", "delete"])
            if op == "set":
                value = b"v%d" % rng.randrange(1000)
                set_(store, key, value)
                model[key] = value
            elif op == "append":
                if store.store(Mode.APPEND, key, 0, 0, b"+") is Result.STORED:
                    model[key] += b"+"
            elif store.delete(key):
                del model[key]
        failing = rng.random() < 0.3
        barrier.fail_with = 5 if failing else None
        batch = store.commit()
        if batch is not None:
            writes = any(change.tmp is not None for change in batch.writes.values())
            if batch.error is None or not writes:
                durable = model
        assert {k: store.get(k).value for k in keys if store.get(k)} == durable
        assert (store.curr_items, store.bytes) == (len(durable), sum(
            record.HEADER_SIZE + len(k) + len(v) for k, v in durable.items()))
        assert not tmp_files(store)
    store.close()
    again = open_store(ALWAYS)
    assert {k: again.get(k).value for k in keys if again.get(k)} == durable


def test_the_background_walk_commits_the_open_batch_first(open_store):
    store = open_store(ALWAYS)
    store.durability.barrier = RecordingBarrier(store)
    set_(store, b"k", b"v")
    store.tick()
    assert store.batch is None
    assert file_name(store, b"k") in item_files(store)


def test_close_commits_the_open_batch(open_store, store, barrier):
    set_(store, b"k", b"v")
    store.close()
    assert open_store(ALWAYS).get(b"k").value == b"v"


# == everysec and no ============================================================


@pytest.fixture
def ticking(monkeypatch):
    """The monotonic clock everysec's timer reads, moved by the test."""
    now = [1000.0]
    monkeypatch.setattr(durability_mod.time, "monotonic", lambda: now[0])
    return now


def test_everysec_writes_the_file_at_once(open_store, ticking):
    store = open_store(EVERYSEC)
    set_(store, b"k", b"v")
    assert store.batch is None
    assert file_name(store, b"k") in item_files(store)


def test_everysec_syncs_once_a_second_after_writes(open_store, ticking):
    store = open_store(EVERYSEC)
    recorder = store.durability.barrier = RecordingBarrier(store)
    set_(store, b"k", b"v")
    assert store.sync_if_due() is False
    assert 0 < store.seconds_to_sync() <= 1.0
    ticking[0] += 1.0
    assert store.sync_if_due() is True
    assert len(recorder.calls) == 1
    assert file_name(store, b"k") in recorder.calls[0]["items"]


# -- everysec's barrier in the helper process (store/syncer.py) --


def until_passed(store, deadline=10.0):
    """Tick the store's everysec timer until the helper's barrier has passed."""
    end = time.monotonic_ns() + deadline * 1e9
    while not store.sync_if_due():
        assert time.monotonic_ns() < end, "the helper's barrier never finished"
        os.sched_yield()


@pytest.fixture
def helper_store(open_store, ticking):
    if not durability_mod.HAVE_SYNCFS:
        pytest.skip("the helper runs syncfs, which this C library lacks")
    return open_store(EVERYSEC, background_sync=True)


def test_everysec_with_the_helper_only_starts_the_barrier(helper_store, ticking):
    set_(helper_store, b"k", b"v")
    ticking[0] += 1.0
    assert helper_store.sync_if_due() is False
    assert helper_store.durability.syncer.running
    assert helper_store.seconds_to_sync() == durability_mod.BACKGROUND_POLL


def test_everysec_with_the_helper_counts_the_barrier_when_it_is_done(helper_store, ticking):
    set_(helper_store, b"k", b"v")
    ticking[0] += 1.0
    until_passed(helper_store)
    assert helper_store.durability.calls == 1
    assert not helper_store.durability.syncer.running
    assert helper_store.seconds_to_sync() is None


def test_spares_released_before_the_helpers_barrier_are_ready_only_once_it_passed(helper_store, ticking):
    store = helper_store
    store.dir.in_place = False  # the exchange path, whose spares these are
    set_(store, b"a", b"1")
    set_(store, b"a", b"2")  # a's first record is held
    ticking[0] += 1.0
    store.sync_if_due()  # started
    set_(store, b"b", b"1")
    set_(store, b"b", b"2")  # released during the barrier: not covered by it
    until_passed(store)
    spares = store.dir.spares
    assert [name for _, name, _ in spares._ready] == [file_name(store, b"a")]
    assert [name for _, name, _ in spares._held] == [file_name(store, b"b")]


def test_a_dead_helper_is_replaced_by_a_new_one(helper_store, ticking, caplog):
    store = helper_store
    dead = store.durability.syncer
    dead._proc.kill()
    dead._proc.wait()
    set_(store, b"k", b"v")
    ticking[0] += 1.0
    store.sync_if_due()  # the request finds the helper gone: another starts
    assert store.durability.syncer is not dead
    assert store.durability.restarts == 1
    until_passed(store)
    assert store.durability.helper_state == "running"
    assert "a new one" in caplog.text


def test_kill_ends_a_stopped_helper(helper_store):
    syncer = helper_store.durability.syncer
    os.kill(syncer.pid, signal.SIGSTOP)
    syncer.kill()
    assert syncer._proc.returncode == -signal.SIGKILL


def test_the_helper_exits_when_the_store_closes(helper_store):
    proc = helper_store.durability.syncer._proc
    helper_store.close()
    assert proc.wait(10) == 0


def test_a_helper_stopped_while_idle_exits_cleanly_when_the_store_closes(helper_store):
    # continued first: it exits on the closed pipe, not killed after a timeout
    proc = helper_store.durability.syncer._proc
    os.kill(proc.pid, signal.SIGSTOP)
    helper_store.close()
    assert proc.wait(10) == 0


def test_a_clean_stop_waits_for_the_helpers_barrier_and_makes_its_own(helper_store, ticking):
    set_(helper_store, b"k", b"v")
    ticking[0] += 1.0
    helper_store.sync_if_due()  # the helper's, under way
    set_(helper_store, b"k2", b"v")
    helper_store.close()
    assert helper_store.durability.calls == 2  # the helper's, then the last one


def test_everysec_makes_no_barrier_without_writes(open_store, ticking):
    store = open_store(EVERYSEC)
    recorder = store.durability.barrier = RecordingBarrier(store)
    ticking[0] += 5.0
    assert store.sync_if_due() is False
    assert store.seconds_to_sync() is None
    assert recorder.calls == []


def test_everysec_counts_deletes_as_writes(open_store, ticking):
    store = open_store(EVERYSEC)
    set_(store, b"k", b"v")
    ticking[0] += 1.0
    store.sync_if_due()
    store.delete(b"k")
    assert store.seconds_to_sync() is not None


def test_everysec_retries_a_failed_sync_at_the_next_tick(open_store, ticking):
    store = open_store(EVERYSEC)
    recorder = store.durability.barrier = RecordingBarrier(store)
    set_(store, b"k", b"v")
    ticking[0] += 1.0
    recorder.fail_with = 5
    with pytest.raises(StoreError):
        store.sync_if_due()
    recorder.fail_with = None
    ticking[0] += 1.0
    assert store.sync_if_due() is True
    assert store.durability.errors == 1


def test_everysec_fsync_barrier_gets_the_written_files_and_folders(open_store, ticking):
    store = open_store(EVERYSEC, fsync_method="fsync")
    recorder = RecordingBarrier(store)
    store.durability.barrier = recorder
    set_(store, b"k", b"v")
    ticking[0] += 1.0
    store.sync_if_due()
    path = store.dir.locate(b"k")[1]
    assert recorder.calls[0]["files"] == [path]
    assert os.path.dirname(path) in recorder.calls[0]["dirs"]


def test_everysec_fsync_barrier_also_syncs_a_record_moved_to_tmp_in_its_window(open_store, ticking):
    # the key's first record, written and displaced by the second before the
    # barrier, is a spare now: the barrier must cover it where it lives
    store = open_store(EVERYSEC, fsync_method="fsync")
    store.dir.in_place = False  # the exchange path, which displaces the first record
    recorder = RecordingBarrier(store)
    store.durability.barrier = recorder
    set_(store, b"k", b"first")
    set_(store, b"k", b"second")
    ticking[0] += 1.0
    store.sync_if_due()
    path = store.dir.locate(b"k")[1]
    files = recorder.calls[0]["files"]
    assert sorted(os.path.dirname(f) for f in files) == sorted([os.path.dirname(path), store.dir.tmp])


def test_everysec_fsync_barrier_leaves_out_a_displaced_record_an_earlier_barrier_covered(open_store, ticking):
    store = open_store(EVERYSEC, fsync_method="fsync")
    recorder = RecordingBarrier(store)
    store.durability.barrier = recorder
    set_(store, b"k", b"first")
    ticking[0] += 1.0
    store.sync_if_due()
    set_(store, b"k", b"second")
    ticking[0] += 1.0
    store.sync_if_due()
    assert recorder.calls[1]["files"] == [store.dir.locate(b"k")[1]]


def test_everysec_close_makes_what_is_left_durable(open_store, ticking):
    store = open_store(EVERYSEC)
    recorder = store.durability.barrier = RecordingBarrier(store)
    set_(store, b"k", b"v")
    store.close()
    assert len(recorder.calls) == 1


def test_no_makes_no_barrier_while_running(open_store, ticking):
    store = open_store(NO)
    recorder = store.durability.barrier = RecordingBarrier(store)
    set_(store, b"k", b"v")
    store.delete(b"k")
    ticking[0] += 10.0
    assert store.sync_if_due() is False
    assert store.seconds_to_sync() is None
    assert recorder.calls == []


def test_no_makes_one_barrier_at_a_clean_stop(open_store, ticking):
    store = open_store(NO)
    recorder = store.durability.barrier = RecordingBarrier(store)
    recorder.needs_paths = False  # as syncfs (the fsync method would os.sync)
    set_(store, b"k", b"v")
    store.close()
    assert len(recorder.calls) == 1


def test_a_clean_stop_with_nothing_written_makes_no_barrier(open_store):
    store = open_store(NO)
    recorder = store.durability.barrier = RecordingBarrier(store)
    store.get(b"k")
    store.close()
    assert recorder.calls == []


# == the barriers ===============================================================


def test_auto_picks_syncfs_where_the_c_library_has_it(tmp_path):
    barrier = make_barrier("auto", str(tmp_path))
    try:
        expected = SyncfsBarrier if durability_mod.HAVE_SYNCFS else FsyncBarrier
        assert isinstance(barrier, expected)
    finally:
        barrier.close()


def test_an_unknown_level_or_method_is_refused(tmp_path):
    with pytest.raises(ValueError):
        Store(str(tmp_path / "a"), fsync="sometimes")
    with pytest.raises(ValueError):
        Store(str(tmp_path / "b"), fsync_method="prayer")


@pytest.mark.skipif(not durability_mod.HAVE_SYNCFS, reason="no syncfs in this C library")
def test_syncfs_barrier_runs(tmp_path):
    barrier = SyncfsBarrier(str(tmp_path))
    try:
        barrier.sync([], [])
    finally:
        barrier.close()


def test_fsync_barrier_syncs_each_file_and_folder(tmp_path, monkeypatch):
    synced = []
    fs = OSFileSystem()
    monkeypatch.setattr(fs, "fdatasync", lambda fd: synced.append(("file", os.readlink(f"/proc/self/fd/{fd}"))))
    monkeypatch.setattr(fs, "fsync", lambda fd: synced.append(("dir", os.readlink(f"/proc/self/fd/{fd}"))))
    f = tmp_path / "f"
    f.write_bytes(b"x")
    FsyncBarrier(str(tmp_path), fs).sync([str(f)], [str(tmp_path)])
    assert synced == [("file", str(f)), ("dir", str(tmp_path))]


# == the session holds replies until the batch is durable =======================


def session_of(server):
    return Session(server)


def commit_and_release(server, *sessions):
    server.commit()
    return [s.release() for s in sessions]


def test_a_write_under_always_is_answered_only_after_the_commit(server, barrier):
    s = session_of(server)
    assert s.feed(b"set k 0 0 1\r\nv\r\n") == b""
    assert s.holding
    assert barrier.calls == []
    assert commit_and_release(server, s) == [b"STORED\r\n"]
    assert len(barrier.calls) == 2
    assert not s.holding


def test_every_reply_of_the_iteration_waits_and_keeps_its_order(server, barrier):
    s = session_of(server)
    stream = b"get k\r\nset k 0 0 1\r\nv\r\nget k\r\ndelete k\r\nget k\r\n"
    assert s.feed(stream) == b""
    (reply,) = commit_and_release(server, s)
    assert reply == b"END\r\nSTORED\r\nVALUE k 0 1\r\nv\r\nEND\r\nDELETED\r\nEND\r\n"


def test_another_connection_does_not_see_a_pending_value_before_it_is_durable(server, barrier):
    writer, reader = session_of(server), session_of(server)
    writer.feed(b"set k 0 0 1\r\nv\r\n")
    assert reader.feed(b"get k\r\n") == b""
    assert commit_and_release(server, writer, reader) == [b"STORED\r\n", b"VALUE k 0 1\r\nv\r\nEND\r\n"]


def test_reads_are_answered_at_once_while_no_batch_is_open(server, barrier):
    s = session_of(server)
    assert s.feed(b"get k\r\n") == b"END\r\n"
    assert not s.holding


def test_a_failed_commit_answers_every_command_that_depends_on_the_batch_server_error(server, barrier):
    s = session_of(server)
    s.feed(b"set k 0 0 3\r\nold\r\n")
    commit_and_release(server, s)
    barrier.fail_with = 5
    s.feed(b"set k 0 0 3\r\nnew\r\nget k\r\ntouch k 10\r\nget other\r\n")
    (reply,) = commit_and_release(server, s)
    error = b"SERVER_ERROR Input/output error\r\n"
    # the get of the pending value is refused with the writes; the get of a
    # key the batch does not hold answers what is durable
    assert reply == error * 3 + b"END\r\n"
    barrier.fail_with = None
    assert s.feed(b"get k\r\n") == b"VALUE k 0 3\r\nold\r\nEND\r\n"


def test_another_connection_reading_a_pending_value_is_refused_when_its_batch_fails(server, barrier):
    writer, reader = session_of(server), session_of(server)
    barrier.fail_with = 5
    writer.feed(b"set k 0 0 5\r\nfresh\r\n")
    reader.feed(b"get k\r\nmg k v\r\n")
    error = b"SERVER_ERROR Input/output error\r\n"
    assert commit_and_release(server, writer, reader) == [error, error * 2]


def test_a_delete_in_a_batch_whose_first_barrier_fails_leaves_the_item(server, store, barrier):
    # (a batch of deletes alone has only the second barrier, after the unlinks)
    s = session_of(server)
    s.feed(b"set k 0 0 3\r\nold\r\n")
    commit_and_release(server, s)
    barrier.fail_with = 5
    s.feed(b"set other 0 0 1\r\nx\r\ndelete k\r\nget k\r\n")
    (reply,) = commit_and_release(server, s)
    assert reply == b"SERVER_ERROR Input/output error\r\n" * 3
    barrier.fail_with = None
    assert s.feed(b"get k\r\n") == b"VALUE k 0 3\r\nold\r\nEND\r\n"
    assert s.feed(b"get other\r\n") == b"END\r\n"
    assert store.curr_items == 1


def test_a_failed_commit_is_reported_even_under_noreply(server, barrier):
    s = session_of(server)
    barrier.fail_with = 28
    s.feed(b"set k 0 0 1 noreply\r\nv\r\n")
    assert commit_and_release(server, s) == [b"SERVER_ERROR No space left on device\r\n"]


def test_noreply_writes_are_silent_once_durable(server, barrier):
    s = session_of(server)
    s.feed(b"set k 0 0 1 noreply\r\nv\r\n")
    assert commit_and_release(server, s) == [b""]


def test_a_failed_commit_counts_a_persist_error_per_refused_command(server, barrier):
    s = session_of(server)
    barrier.fail_with = 5
    s.feed(b"set k 0 0 1\r\nv\r\nset j 0 0 1 noreply\r\nv\r\nget k\r\nget nothing\r\n")
    commit_and_release(server, s)
    assert server.counters.persist_errors == 3


def test_a_failed_meta_touch_is_forgotten_with_its_batch(server, store, barrier):
    s = session_of(server)
    s.feed(b"set k 0 100 1\r\nv\r\n")
    commit_and_release(server, s)
    barrier.fail_with = 5
    s.feed(b"mg k T30 v\r\n")
    assert commit_and_release(server, s) == [b"SERVER_ERROR Input/output error\r\n"]
    barrier.fail_with = None
    # the old expiry, as on disk: nothing of the failed touch is left
    assert s.feed(b"mg k t v\r\n") == b"VA 1 t100\r\nv\r\n"


def test_a_metadump_lists_the_writes_of_the_open_batch(server, barrier):
    s = session_of(server)
    s.feed(b"set k 0 0 1\r\nv\r\nlru_crawler metadump all\r\n")
    (reply,) = commit_and_release(server, s)
    assert reply.startswith(b"STORED\r\nkey=k ")
    assert reply.endswith(b"END\r\n")


def test_a_gat_under_always_waits_for_its_touch(server, barrier):
    s = session_of(server)
    s.feed(b"set k 0 0 1\r\nv\r\n")
    commit_and_release(server, s)
    assert s.feed(b"gat 100 k\r\n") == b""
    assert commit_and_release(server, s) == [b"VALUE k 0 1\r\nv\r\nEND\r\n"]


def test_stats_show_the_level_and_the_barrier_counters(server, barrier):
    s = session_of(server)
    s.feed(b"set k 0 0 1\r\nv\r\n")
    commit_and_release(server, s)
    general = s.feed(b"stats\r\n")
    assert b"STAT fsync_level always\r\n" in general
    assert b"STAT fsync_calls 2\r\n" in general
    assert b"STAT fsync_errors 0\r\n" in general
    assert b"STAT fsync_seconds " in general
    settings = s.feed(b"stats settings\r\n")
    assert b"STAT fsync always\r\n" in settings
    assert b"STAT fsync_method recording\r\n" in settings


def test_everysec_sessions_answer_at_once(open_store, clock):
    store = open_store(EVERYSEC)
    s = Session(Server(store, Settings(), clock=clock))
    assert s.feed(b"set k 0 0 1\r\nv\r\n") == b"STORED\r\n"
    assert not s.holding


def test_a_barrier_still_running_at_the_next_second_is_waited_for_not_doubled(helper_store, ticking, monkeypatch):
    store = helper_store
    store.dir.in_place = False  # the exchange path, whose spares these are
    syncer = store.durability.syncer
    set_(store, b"a", b"1")
    set_(store, b"a", b"2")
    ticking[0] += 1.0
    store.sync_if_due()  # started
    real_poll = syncer.poll
    monkeypatch.setattr(syncer, "poll", lambda wait=False: None)  # a slow disk: still running
    asked = []
    real_start = syncer.start
    monkeypatch.setattr(syncer, "start", lambda: (asked.append(1), real_start()))
    set_(store, b"b", b"1")
    set_(store, b"b", b"2")  # b's first record is held: this barrier does not cover it
    ticking[0] += 1.0
    assert store.sync_if_due() is False
    assert asked == []  # one barrier in flight at a time
    monkeypatch.setattr(syncer, "poll", real_poll)
    until_passed(store)  # the first barrier's answer (the next one may start at once)
    spares = store.dir.spares
    assert [name for _, name, _ in spares._ready] == [file_name(store, b"a")]
    assert [name for _, name, _ in spares._held + spares._in_flight] == [file_name(store, b"b")]


# == the helper's watchdog ======================================================


class FakeHelper:
    """Stands in for the helper process: answers a barrier only when the test
    says so (answer), dies when told (die) or killed."""

    def __init__(self, pid):
        self.pid = pid
        self.started = None
        self.asked = 0
        self.answer_with = None  # the errno the next poll returns; None: no answer yet
        self.dead = False
        self.killed = False
        self.waits = []

    @property
    def running(self):
        return self.started is not None

    def start(self):
        if self.dead:
            raise HelperGone("the sync helper is gone")
        self.asked += 1
        self.started = time.perf_counter()

    def poll(self, wait=0.0):
        self.waits.append(wait)
        if self.started is None:
            return None
        if self.dead:
            self.started = None
            raise HelperGone("the sync helper exited")
        if self.answer_with is None:
            return None
        code, self.answer_with, self.started = self.answer_with, None, None
        return code

    def die(self):
        self.dead = True

    def kill(self):
        self.killed = self.dead = True
        self.started = None

    def close(self):
        pass


class Helpers:
    """The factory Durability starts helpers with: keeps every one made."""

    def __init__(self):
        self.made = []
        self.refusing = False  # a new process cannot be started (EAGAIN)

    def __call__(self, path):
        if self.refusing:
            raise OSError(11, "Resource temporarily unavailable")
        self.made.append(FakeHelper(pid=1000 + len(self.made)))
        return self.made[-1]

    @property
    def current(self):
        return self.made[-1]


@pytest.fixture
def helpers():
    return Helpers()


@pytest.fixture
def now():
    """The monotonic clock the watchdog reads, moved by the test."""
    return [1000.0]


@pytest.fixture
def watched(tmp_path, helpers, now):
    """An everysec Durability with a fake helper; its barrier hooks recorded."""
    if not durability_mod.HAVE_SYNCFS:
        pytest.skip("the helper runs syncfs, which this C library lacks")
    d = Durability(EVERYSEC, "auto", str(tmp_path), clock=lambda: now[0], background=True, helper=helpers)
    d.hooks = []
    d.barrier_started = lambda: d.hooks.append("started")
    d.barrier_passed = lambda: d.hooks.append("passed")
    yield d
    d.close()


def start_barrier(d, now):
    """A write, then the timer's second: the helper's barrier is in flight."""
    d.written("f", [])
    now[0] += 1.0
    d.sync_if_due()
    assert d.syncer.running


def poll_for(d, now, seconds, step=0.1):
    """The loop polling every `step` seconds for `seconds`."""
    for _ in range(round(seconds / step)):
        now[0] += step
        d.sync_if_due()


def test_a_helper_barrier_answered_before_the_watchdog_passes(watched, helpers, now):
    start_barrier(watched, now)
    poll_for(watched, now, durability_mod.WATCHDOG - 1)
    helpers.current.answer_with = 0
    assert watched.sync_if_due() is True
    assert len(helpers.made) == 1
    assert watched.hooks == ["started", "passed"]


def test_a_helper_that_never_answers_is_killed_at_the_watchdog(watched, helpers, now):
    start_barrier(watched, now)
    first = helpers.current
    poll_for(watched, now, durability_mod.WATCHDOG - 0.5)
    assert not first.killed
    poll_for(watched, now, 1.0)
    assert first.killed


def test_a_killed_helper_is_replaced_and_the_new_ones_barrier_starts_at_once(watched, helpers, now):
    start_barrier(watched, now)
    poll_for(watched, now, durability_mod.WATCHDOG + 0.5)
    assert len(helpers.made) == 2
    assert helpers.current.asked == 1
    assert watched.restarts == 1


def test_a_given_up_barrier_is_never_counted_as_passed(watched, helpers, now):
    start_barrier(watched, now)
    poll_for(watched, now, durability_mod.WATCHDOG + 0.5)
    assert "passed" not in watched.hooks
    assert watched.calls == 0


def test_the_writes_of_a_given_up_barrier_wait_for_the_next_one(watched, helpers, now):
    start_barrier(watched, now)
    poll_for(watched, now, durability_mod.WATCHDOG + 0.5)
    assert watched.unsynced_seconds() > durability_mod.WATCHDOG
    helpers.current.answer_with = 0
    assert watched.sync_if_due() is True
    assert watched.unsynced_seconds() == 0


def test_the_give_up_is_logged_with_the_pid_the_wait_and_what_is_not_durable(watched, helpers, now, caplog):
    start_barrier(watched, now)
    poll_for(watched, now, durability_mod.WATCHDOG + 0.5)
    assert "the sync helper (pid 1000) has not answered its barrier in 5." in caplog.text
    assert "are not durable yet" in caplog.text


def test_a_clean_stop_waits_for_a_hung_helper_no_longer_than_the_watchdog(watched, helpers, now):
    start_barrier(watched, now)
    first = helpers.current
    assert watched.sync_if_due(force=True) is True  # given up, then the loop's own barrier
    assert first.waits[-1] == durability_mod.WATCHDOG
    assert first.killed


def test_the_loops_own_gap_does_not_count_against_the_helper(watched, helpers, now):
    start_barrier(watched, now)
    now[0] += 10.0  # the server was stopped (SIGSTOP) for 10 s
    watched.sync_if_due()
    poll_for(watched, now, durability_mod.WATCHDOG - 1)
    assert not helpers.current.killed
    assert len(helpers.made) == 1


def test_a_dead_helper_is_restarted(watched, helpers, now):
    start_barrier(watched, now)
    helpers.current.die()
    watched.sync_if_due()
    assert len(helpers.made) == 2
    assert helpers.current.running  # its barrier at once
    assert "passed" not in watched.hooks


def test_a_helper_found_dead_at_the_request_is_restarted(watched, helpers, now):
    helpers.current.die()
    watched.written("f", [])
    now[0] += 1.0
    watched.sync_if_due()
    assert len(helpers.made) == 2
    watched.sync_if_due()
    assert helpers.current.running


def test_repeated_failures_fall_back_to_barriers_in_the_loop_and_say_so_once(watched, helpers, now, caplog):
    for _ in range(durability_mod.MAX_RESTARTS + 1):
        start_barrier(watched, now)
        helpers.current.die()
        watched.sync_if_due()
    assert watched.syncer is None
    assert watched.helper_state == "none"
    assert watched.restarts == durability_mod.MAX_RESTARTS
    watched.written("f", [])
    now[0] += 1.0
    assert watched.sync_if_due() is True  # in the loop
    assert caplog.text.count("runs in the loop from now on") == 1


def test_failures_further_apart_than_the_window_keep_restarting(watched, helpers, now):
    for _ in range(durability_mod.MAX_RESTARTS + 2):
        start_barrier(watched, now)
        helpers.current.die()
        watched.sync_if_due()
        now[0] += durability_mod.RESTART_WINDOW
    assert watched.helper_state != "none"


def test_the_helper_state_is_restarting_until_the_new_helpers_barrier_passes(watched, helpers, now):
    assert watched.helper_state == "running"
    start_barrier(watched, now)
    helpers.current.die()
    watched.sync_if_due()
    assert watched.helper_state == "restarting"
    helpers.current.answer_with = 0
    watched.sync_if_due()
    assert watched.helper_state == "running"


@pytest.mark.parametrize("level, background, state", [
    (EVERYSEC, False, "none"), (ALWAYS, True, "off"), (NO, True, "off"),
])
def test_the_helper_state_without_a_helper(tmp_path, level, background, state):
    d = Durability(level, "auto", str(tmp_path), background=background, helper=Helpers())
    assert d.helper_state == state
    d.close()


def test_nothing_written_is_nothing_unsynced(watched):
    assert watched.unsynced_seconds() == 0


def test_unsynced_seconds_count_from_the_oldest_write_not_yet_covered(watched, now):
    watched.written("f", [])
    now[0] += 0.5
    watched.written("g", [])
    now[0] += 0.25
    assert watched.unsynced_seconds() == 0.75


def test_unsynced_seconds_go_on_while_the_barrier_is_in_flight(watched, now):
    start_barrier(watched, now)
    now[0] += 0.5
    assert watched.unsynced_seconds() == 1.5


def test_a_failed_helper_barrier_leaves_its_writes_unsynced(watched, helpers, now):
    start_barrier(watched, now)
    helpers.current.answer_with = 5
    with pytest.raises(OSError):
        watched.sync_if_due()
    assert watched.unsynced_seconds() == 1.0
    assert watched.dirty


def test_the_spares_of_a_given_up_barrier_stay_held(open_store, helpers, ticking):
    if not durability_mod.HAVE_SYNCFS:
        pytest.skip("the helper runs syncfs, which this C library lacks")
    store = open_store(EVERYSEC)
    store.durability.close()
    d = store.durability = Durability(EVERYSEC, "auto", store.dir.path, background=True, helper=helpers)
    d.barrier_started = store.dir.spares.barrier_started
    d.barrier_passed = store.dir.spares.barrier_passed
    store.dir.in_place = False  # the exchange path, whose spares these are
    set_(store, b"a", b"1")
    set_(store, b"a", b"2")  # a's first record is held until a barrier passes
    ticking[0] += 1.0
    store.sync_if_due()
    for _ in range(int(durability_mod.WATCHDOG * 10) + 5):
        ticking[0] += 0.1
        store.sync_if_due()
    assert helpers.made[0].killed
    spares = store.dir.spares
    assert list(spares._ready) == []
    assert [name for _, name, _ in spares._held + spares._in_flight] == [file_name(store, b"a")]
    helpers.current.answer_with = 0
    store.sync_if_due()  # the new helper's barrier covers it
    assert [name for _, name, _ in spares._ready] == [file_name(store, b"a")]


def test_a_helper_that_cannot_be_started_again_puts_the_barrier_in_the_loop(watched, helpers, now, caplog):
    start_barrier(watched, now)
    helpers.current.die()
    helpers.refusing = True
    watched.sync_if_due()
    assert watched.helper_state == "none"
    assert "no new one starts" in caplog.text
