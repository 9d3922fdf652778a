"""Faults beyond power loss (issue 17, items 4 and 5): a full disk in a
commit and mid-write, EIO on write, barrier and read, a file system remounted
read-only. The store runs over store/faultfs.FaultFS, the faults injected with
FaultFS.fail; a client is a sans-I/O session, its batch committed as the
reactor does. docs/POWER_LOSS.md's "Other faults" is the table of these."""

import errno
import logging
import os

import pytest

import handlers
from store import ALWAYS, EVERYSEC, Store
from store import durability as durability_mod
from store.faultfs import FaultFS

DATA = "/data"
TMP = DATA + "/tmp/"
SEEDS = range(12)
NOW = 1_000_000.0
STORED = b"STORED\r\n"
END = b"END\r\n"


def clock():
    return NOW


def error(code):
    return b"SERVER_ERROR " + os.strerror(code).encode() + b"\r\n"


def set_cmd(key, value):
    return b"set %s 0 0 %d\r\n%s\r\n" % (key, len(value), value)


def hit(key, value):
    return b"VALUE %s 0 %d\r\n%s\r\n" % (key, len(value), value) + END


def open_store(fs, level=ALWAYS, **kw):
    store = Store(DATA, fsync=level, fs=fs, clock=clock, **kw)
    while store.tick():  # the start-up walk
        pass
    return store


class Client:
    """One connection: what it is sent runs, the loop iteration's batch is
    committed, and the replies come back (reactor.py's order)."""

    def __init__(self, store):
        self.store = store
        self.server = handlers.Server(store, handlers.Settings(), clock=clock)
        self.session = handlers.Session(self.server)

    def send(self, data):
        reply = self.session.feed(data)
        self.server.commit()
        if self.session.holding:
            reply += self.session.release()
        return reply

    def stats(self):
        reply = self.send(b"stats\r\n")
        return {
            line.split(b" ")[1].decode(): line.split(b" ", 2)[2].decode()
            for line in reply.split(b"\r\n")
            if line.startswith(b"STAT ")
        }


def nth_call(n):
    """A fault's `when`: only the n-th call (1-based) of its operation."""
    calls = [0]

    def when(path):
        calls[0] += 1
        return calls[0] == n

    return when


def stray_temp_files(store):
    """Files in tmp/ that are neither spares nor lent to a pending write."""
    return sorted(set(store.dir.leftovers()) - set(store.dir.spares.idle()))


def served_after_power_loss(fs, keys, seeds=SEEDS, level=ALWAYS):
    """{seed: {key: value}} of what a restarted store serves after a cut."""
    out = {}
    for seed in seeds:
        crashed = open_store(fs.crash(seed), level=level)
        out[seed] = {}
        for key in keys:
            item = crashed.get(key, bump=False)
            out[seed][key] = None if item is None else item.value
        crashed.close()
    return out


@pytest.fixture
def fs():
    return FaultFS()


@pytest.fixture
def ticking(monkeypatch):
    """The monotonic clock everysec's timer reads, moved by the test."""
    now = [1000.0]
    monkeypatch.setattr(durability_mod.time, "monotonic", lambda: now[0])
    return now


# == ENOSPC under --fsync always: in the commit ==================================

# where the commit meets the full disk: the batch's data barrier, an install
# (the rename of a temp file onto its item), the folders' barrier
COMMIT_POINTS = {
    "data-barrier": lambda fs: fs.fail("syncfs", errno.ENOSPC, when=nth_call(1)),
    "install": lambda fs: fs.fail("exchange", errno.ENOSPC),
    "folders-barrier": lambda fs: fs.fail("syncfs", errno.ENOSPC, when=nth_call(2)),
}
# what each key may serve after the failed batch: the folders' barrier fails
# after the renames, so the new values are in place (their commands were still
# told of the error: nothing failed is acknowledged)
AFTER = {
    "data-barrier": {b"k": {b"old"}, b"j": {b"old"}},
    "install": {b"k": {b"old"}, b"j": {b"old"}},
    "folders-barrier": {b"k": {b"new"}, b"j": {b"new"}},
}


@pytest.fixture
def full_in_commit(fs, request):
    """An `always` store whose k and j hold b"old" (acknowledged), then one
    batch setting both to b"new" meets ENOSPC at request.param; returns
    (client, the batch's reply, the point)."""
    store = open_store(fs)
    client = Client(store)
    assert client.send(set_cmd(b"k", b"old") + set_cmd(b"j", b"old")) == STORED * 2
    COMMIT_POINTS[request.param](fs)
    reply = client.send(set_cmd(b"k", b"new") + set_cmd(b"j", b"new"))
    yield client, reply, request.param
    store.close()


pytestmark_points = pytest.mark.parametrize("full_in_commit", list(COMMIT_POINTS), indirect=True)


@pytestmark_points
def test_enospc_in_a_commit_answers_each_of_the_batch_s_commands_with_the_error(full_in_commit):
    client, reply, _ = full_in_commit
    assert reply == error(errno.ENOSPC) * 2
    assert client.stats()["persist_errors"] == "2"


@pytestmark_points
def test_enospc_in_a_commit_serves_the_old_or_the_renamed_value_never_a_torn_one(full_in_commit):
    client, _, point = full_in_commit
    for key in (b"k", b"j"):
        item = client.store.get(key, bump=False)
        assert item is not None and item.value in AFTER[point][key], (key, item and item.value)


@pytestmark_points
def test_enospc_in_a_commit_loses_nothing_acknowledged_at_a_power_loss(fs, full_in_commit):
    for seed, got in served_after_power_loss(fs, [b"k", b"j"]).items():
        for key, value in got.items():
            assert value in (b"old", b"new"), (seed, key, value)


@pytestmark_points
def test_enospc_in_a_commit_leaves_no_temp_file_behind(full_in_commit):
    client, _, _ = full_in_commit
    assert stray_temp_files(client.store) == []


@pytestmark_points
def test_after_enospc_in_a_commit_the_server_keeps_serving(full_in_commit):
    client, _, _ = full_in_commit
    assert client.send(set_cmd(b"k", b"later")) == STORED
    assert client.send(b"get k\r\n") == hit(b"k", b"later")


# == ENOSPC mid-write: a short write, then the disk is full ======================


@pytest.fixture(params=[ALWAYS, EVERYSEC])
def full_mid_write(fs, request):
    """k holds b"old" (made durable); then the disk fills during the next
    write of k: writev comes up short and every write after it is refused."""
    store = open_store(fs, level=request.param)
    client = Client(store)
    assert client.send(set_cmd(b"k", b"old")) == STORED
    store.durability.sync_now()
    fs.fail("writev", errno.ENOSPC, short=7, times=None)
    fs.fail("write", errno.ENOSPC, times=None)
    fs.fail("pwrite", errno.ENOSPC, short=7, times=None)  # the write in place
    reply = client.send(set_cmd(b"k", b"new value"))
    yield client, reply
    store.close()


def test_a_write_cut_short_by_a_full_disk_is_the_persist_error(full_mid_write):
    client, reply = full_mid_write
    assert reply == error(errno.ENOSPC)
    assert client.stats()["persist_errors"] == "1"


def test_a_write_cut_short_by_a_full_disk_is_never_served_half_written(fs, full_mid_write):
    client, _ = full_mid_write
    assert client.send(b"get k\r\n") == hit(b"k", b"old")
    client.store.cache.clear()  # from the file, too
    assert client.send(b"get k\r\n") == hit(b"k", b"old")


def test_a_write_cut_short_by_a_full_disk_leaves_no_temp_file_behind(full_mid_write):
    client, _ = full_mid_write
    assert stray_temp_files(client.store) == []


def test_a_write_cut_short_by_a_full_disk_loses_nothing_durable_at_a_power_loss(fs, full_mid_write):
    level = full_mid_write[0].store.durability.level
    for seed, got in served_after_power_loss(fs, [b"k"], level=level).items():
        assert got[b"k"] == b"old", seed


def test_once_the_disk_has_room_again_writes_succeed(fs, full_mid_write):
    client, _ = full_mid_write
    fs.clear_faults()
    assert client.send(set_cmd(b"k", b"new value")) == STORED
    assert client.send(b"get k\r\n") == hit(b"k", b"new value")


# == ENOSPC with held spares (item 5): a barrier before they are freed ==========


@pytest.fixture
def held_spare(fs):
    """An everysec store (barriers in the loop) where a's b"1" was made
    durable and then overwritten by b"2": a's old record is a held spare, the
    record a power loss now would fall back to."""
    store = open_store(fs, level=EVERYSEC)
    store.dir.in_place = False  # the exchange path, whose spares these are
    client = Client(store)
    assert client.send(set_cmd(b"a", b"1")) == STORED
    store.durability.sync_now()
    assert client.send(set_cmd(b"a", b"2")) == STORED
    assert store.dir.spares.held == 1
    yield client
    store.close()


def test_a_full_disk_makes_a_barrier_before_it_frees_the_held_spares(fs, held_spare):
    fs.fail("writev", errno.ENOSPC)  # the first try; the second finds room
    calls = held_spare.store.durability.calls
    assert held_spare.send(set_cmd(b"b", b"1")) == STORED
    assert held_spare.store.durability.calls == calls + 1
    assert held_spare.store.dir.spares.held == 0
    assert len(held_spare.store.dir.spares) == 0  # all freed


def test_a_power_loss_after_a_full_disk_freed_the_spares_keeps_what_was_acknowledged_before(fs, held_spare):
    fs.fail("writev", errno.ENOSPC)
    assert held_spare.send(set_cmd(b"b", b"1")) == STORED
    for seed, got in served_after_power_loss(fs, [b"a", b"b"], level=EVERYSEC).items():
        assert got[b"a"] == b"2", seed  # durable before its fallback went
        assert got[b"b"] in (b"1", None), seed  # within the barrier window


def test_a_full_disk_whose_barrier_fails_keeps_the_held_spares(fs, held_spare):
    fs.fail("writev", errno.ENOSPC)
    fs.fail("syncfs", errno.ENOSPC)
    held_spare.send(set_cmd(b"b", b"1"))
    assert held_spare.store.dir.spares.held == 1
    for seed, got in served_after_power_loss(fs, [b"a"], level=EVERYSEC).items():
        assert got[b"a"] in (b"1", b"2"), seed  # never neither


# == EIO on write and on the barrier ============================================


@pytest.fixture(params=[ALWAYS, EVERYSEC])
def client(fs, request):
    store = open_store(fs, level=request.param)
    c = Client(store)
    assert c.send(set_cmd(b"k", b"old")) == STORED
    yield c
    store.close()


def test_eio_on_a_write_is_the_persist_error_and_the_old_value_stays(fs, client):
    fs.fail("writev", errno.EIO)
    fs.fail("pwrite", errno.EIO)  # the write in place
    assert client.send(set_cmd(b"k", b"new")) == error(errno.EIO)
    assert client.stats()["persist_errors"] == "1"
    assert client.send(b"get k\r\n") == hit(b"k", b"old")


def test_after_eio_on_a_write_the_server_keeps_serving(fs, client):
    fs.fail("writev", errno.EIO)
    client.send(set_cmd(b"k", b"new"))
    assert client.send(set_cmd(b"k", b"newer")) == STORED
    assert stray_temp_files(client.store) == []


@pytest.fixture
def always_client(fs):
    store = open_store(fs)
    c = Client(store)
    assert c.send(set_cmd(b"k", b"old")) == STORED
    yield c
    store.close()


def test_eio_on_the_barrier_under_always_fails_the_batch_and_is_counted(fs, always_client):
    fs.fail("syncfs", errno.EIO)
    assert always_client.send(set_cmd(b"k", b"new")) == error(errno.EIO)
    rows = always_client.stats()
    assert (rows["fsync_errors"], rows["persist_errors"]) == ("1", "1")
    assert always_client.send(b"get k\r\n") == hit(b"k", b"old")
    assert always_client.send(set_cmd(b"k", b"newer")) == STORED


@pytest.fixture
def everysec_client(fs, ticking):
    store = open_store(fs, level=EVERYSEC)
    c = Client(store)
    assert c.send(set_cmd(b"k", b"v")) == STORED
    yield c
    store.close()


def tick(client, ticking):
    ticking[0] += 1.0
    client.server.sync_if_due()


def test_under_everysec_a_failed_barrier_is_counted_and_logged_as_retried(fs, everysec_client, ticking, caplog):
    fs.fail("syncfs", errno.EIO)
    tick(everysec_client, ticking)
    rows = everysec_client.stats()
    assert (rows["fsync_errors"], rows["sync_errors"]) == ("1", "1")
    (line,) = [r.getMessage() for r in caplog.records if "periodic sync failed" in r.getMessage()]
    assert "Input/output error" in line and line.endswith("retried at the next tick")


def test_under_everysec_a_failed_barrier_is_retried_at_the_next_tick(fs, everysec_client, ticking):
    fs.fail("syncfs", errno.EIO)
    tick(everysec_client, ticking)
    assert everysec_client.store.durability.unsynced_seconds() > 0
    tick(everysec_client, ticking)
    assert everysec_client.store.durability.unsynced_seconds() == 0
    assert served_after_power_loss(fs, [b"k"], level=EVERYSEC) == {s: {b"k": b"v"} for s in SEEDS}


def test_a_barrier_that_passes_after_failed_ones_says_their_writes_may_not_be_durable(
    fs, everysec_client, ticking, caplog
):
    # Linux's fsync-gate: the retry passing does not prove the data reached the disk
    fs.fail("syncfs", errno.EIO)
    tick(everysec_client, ticking)
    tick(everysec_client, ticking)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "passed again after 1 failed" in errors[-1].getMessage()
    assert "may not be durable" in errors[-1].getMessage()


# == EIO on read ================================================================


@pytest.fixture
def on_disk(fs):
    """An `always` store whose k is on disk only (not in memory)."""
    store = open_store(fs)
    c = Client(store)
    assert c.send(set_cmd(b"k", b"v")) == STORED
    store.cache.clear()
    yield c
    store.close()


def item_path(store, key):
    return store.dir.locate(key)[1]


def test_eio_on_a_read_is_a_miss(fs, on_disk):
    fs.fail("read", errno.EIO)
    assert on_disk.send(b"get k\r\n") == END


def test_eio_on_a_read_is_a_miss_for_mg_too(fs, on_disk):
    fs.fail("read", errno.EIO)
    assert on_disk.send(b"mg k v\r\n") == b"EN\r\n"


@pytest.mark.parametrize("command", [b"delete k\r\n", b"add k 0 0 1\r\nx\r\n", b"gat 100 k\r\n", b"incr k 1\r\n"])
def test_eio_on_the_read_a_change_needs_is_the_error_not_a_miss(fs, on_disk, command):
    fs.fail("read", errno.EIO)
    assert on_disk.send(command) == b"SERVER_ERROR cannot read: Input/output error\r\n"
    assert on_disk.send(b"get k\r\n") == hit(b"k", b"v")  # the record is untouched


def test_eio_on_a_read_is_counted_in_read_errors(fs, on_disk):
    fs.fail("read", errno.EIO)
    on_disk.send(b"get k\r\n")
    assert on_disk.stats()["read_errors"] == "1"


def test_eio_on_a_read_is_logged_with_the_file(fs, on_disk, caplog):
    fs.fail("read", errno.EIO)
    on_disk.send(b"get k\r\n")
    assert f"cannot read {item_path(on_disk.store, b'k')}: [Errno 5] Input/output error" in caplog.text


def test_eio_on_a_read_does_not_quarantine_the_record(fs, on_disk):
    fs.fail("read", errno.EIO)
    on_disk.send(b"get k\r\n")
    assert on_disk.stats()["files_quarantined"] == "0"
    assert on_disk.send(b"get k\r\n") == hit(b"k", b"v")  # the error was transient


def test_repeated_read_errors_are_logged_once_not_per_command(fs, on_disk, caplog):
    fs.fail("read", errno.EIO, times=None)
    for _ in range(20):
        assert on_disk.send(b"get k\r\n") == END
    assert on_disk.stats()["read_errors"] == "20"
    assert caplog.text.count("cannot read") == 1


def test_eio_on_a_read_in_the_start_up_walk_keeps_and_counts_the_file(fs, on_disk):
    on_disk.store.close()
    path = item_path(on_disk.store, b"k")
    fs.fail("read", errno.EIO, when=lambda p: p == path)
    store = open_store(fs)
    try:
        assert (store.curr_items, store.quarantined, store.read_errors) == (1, 0, 1)
        assert store.get(b"k").value == b"v"
    finally:
        store.close()


def test_a_walk_over_buckets_that_cannot_be_listed_logs_it_once_not_per_bucket(fs, on_disk, caplog):
    fs.fail("scandir", errno.EIO, times=None)
    store = on_disk.store
    store._scan_wanted = True  # the walk a flush or the timer would start
    with caplog.at_level(logging.ERROR, logger="memcached-lite"):
        while store.tick():
            pass
    assert caplog.text.count("cannot list bucket") == 1


# == EROFS after start: the file system remounted read-only =====================


def test_a_store_closed_on_a_read_only_file_system_releases_its_dir(fs):
    store = open_store(fs)
    remount_read_only(fs)
    store.close()  # the state cannot be saved: logged, not raised
    assert fs.open_fds == 0

WRITING_OPS = ("open", "write", "writev", "pwrite", "ftruncate", "rename", "replace", "exchange", "link", "unlink", "mkdir")


def remount_read_only(fs):
    # reads go through read_file/read_head, never open(): only writing fails
    for op in WRITING_OPS:
        fs.fail(op, errno.EROFS, times=None)


@pytest.fixture(params=[ALWAYS, EVERYSEC])
def read_only(fs, request):
    """k holds b"old" and is on disk only; then the file system turns read-only."""
    store = open_store(fs, level=request.param)
    c = Client(store)
    assert c.send(set_cmd(b"k", b"old")) == STORED
    store.durability.sync_now()
    store.cache.clear()
    remount_read_only(fs)
    yield c
    store.close()


def test_on_a_read_only_file_system_a_write_is_the_persist_error(read_only):
    assert read_only.send(set_cmd(b"k", b"new")) == error(errno.EROFS)
    assert read_only.send(set_cmd(b"other", b"new")) == error(errno.EROFS)
    assert read_only.stats()["persist_errors"] == "2"


def test_on_a_read_only_file_system_a_delete_is_the_persist_error(read_only):
    reply = read_only.send(b"delete k\r\n")
    assert reply.startswith(b"SERVER_ERROR ") and os.strerror(errno.EROFS).encode() in reply


def test_on_a_read_only_file_system_reads_keep_working(read_only):
    read_only.send(set_cmd(b"k", b"new"))
    assert read_only.send(b"get k\r\n") == hit(b"k", b"old")


def test_on_a_read_only_file_system_the_write_failure_is_logged_once(read_only, caplog):
    for i in range(20):
        read_only.send(set_cmd(b"k%d" % i, b"new"))
    assert read_only.stats()["persist_errors"] == "20"
    assert caplog.text.count("Read-only file system") == 1


def test_on_a_read_only_file_system_a_write_leaves_its_spare_a_spare(fs):
    store = open_store(fs, level=EVERYSEC)
    store.dir.in_place = False  # the exchange path, whose spares these are
    client = Client(store)
    client.send(set_cmd(b"k", b"1") + set_cmd(b"k", b"2"))
    store.durability.sync_now()  # k's first record is a ready spare
    remount_read_only(fs)
    assert client.send(set_cmd(b"j", b"1")) == error(errno.EROFS)
    assert len(store.dir.spares) == 1
    assert stray_temp_files(store) == []
    store.close()


def test_a_failed_helper_barrier_is_counted_logged_and_retried(fs, ticking, caplog):
    store = open_store(fs, level=EVERYSEC, background_sync=True)
    client = Client(store)
    client.send(set_cmd(b"k", b"v"))
    fs.background_fails(errno.EIO)
    tick(client, ticking)  # starts the helper's barrier
    fs.finish_background()  # which fails
    client.server.sync_if_due()
    assert (client.stats()["fsync_errors"], client.stats()["sync_errors"]) == ("1", "1")
    assert "retried at the next tick" in caplog.text
    tick(client, ticking)  # the retry
    fs.finish_background()
    client.server.sync_if_due()
    assert store.durability.unsynced_seconds() == 0
    assert "passed again after 1 failed" in caplog.text
    store.close()


def test_under_always_a_full_disk_s_barrier_covers_a_failed_commit_s_renames(fs):
    # the fsync method keeps no list outside a batch: the barrier is a sync()
    store = open_store(fs, fsync_method="fsync")
    client = Client(store)
    assert client.send(set_cmd(b"k", b"old")) == STORED
    fs.fail("fsync", errno.EIO, when=lambda path: "/items/" in path)  # the folders' barrier
    assert client.send(set_cmd(b"k", b"new")) == error(errno.EIO)
    assert store.dir.spares.held == 1  # k's old record: its rename is not known durable
    fs.fail("writev", errno.ENOSPC)
    syncs = fs.calls.get("sync", 0)
    assert client.send(set_cmd(b"j", b"1")) == STORED
    assert (fs.calls["sync"], store.dir.spares.held) == (syncs + 1, 0)
    for seed, got in served_after_power_loss(fs, [b"k", b"j"]).items():
        assert got == {b"k": b"new", b"j": b"1"}, seed
    store.close()


def test_a_store_closed_on_a_read_only_file_system_says_once_that_it_cannot_save_the_access_state(fs, caplog):
    store = open_store(fs, level=EVERYSEC)
    client = Client(store)
    for i in range(10):
        client.send(set_cmd(b"k%d" % i, b"v") + b"get k%d\r\n" % i)
    remount_read_only(fs)
    store.close()
    assert caplog.text.count("could not save the access state") == 1
