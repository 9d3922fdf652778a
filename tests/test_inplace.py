"""Writes in place (store/inplace.py, files.DataDir.write): the records'
two slots, which slot an overwrite goes to, when it takes the exchange
instead, the kept descriptors, and what a power loss leaves of each slot
(over store/faultfs.FaultFS)."""

import os
import sys
from pathlib import Path

import pytest

from store import ALWAYS, EVERYSEC, NO, Mode
from store import record
from store.faultfs import SECTOR
from store.inplace import Kept, KeptFiles

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
from powerloss import DATA, data_dir_made_durable, open_store as open_on, served  # noqa: E402

from old_records import v2, v3_slot  # noqa: E402


def set_(store, key, value):
    assert store.store(Mode.SET, key, 0, 0, value).name == "STORED"


def file_of(store, key):
    return store.dir.locate(key)[1]


def slots(store, key):
    """{slot: value} of the valid slots of the key's file."""
    data = store.fs.read_file(file_of(store, key))
    return {slot: r.value for r, _, slot in record.decode_slots(data)}


def barrier(store):
    assert store.durability.sync_if_due(force=True)


# -- the slot rule, alone ---------------------------------------------------


class NoFS:
    def close(self, fd):
        pass


def kept_at(started, passed, w_cur, w_other, cur=0):
    files = KeptFiles(NoFS())
    files.started, files.passed = started, passed
    k = Kept(3, 512, 0)
    k.cur = cur
    k.w[cur], k.w[1 - cur] = w_cur, w_other
    return files, k


def test_with_no_barrier_begun_the_writes_alternate_slots():
    files, k = kept_at(started=0, passed=0, w_cur=0, w_other=0)
    assert files.target(k) == 1


def test_a_durable_current_record_sends_the_write_to_the_other_slot():
    files, k = kept_at(started=1, passed=1, w_cur=0, w_other=None)
    assert files.target(k) == 1


def test_an_uncovered_current_record_is_written_over_when_the_other_is_durable():
    files, k = kept_at(started=1, passed=1, w_cur=1, w_other=0)
    assert files.target(k) == 0  # cur (slot 0) again; slot 1 holds the durable record


def test_a_current_record_covered_by_the_barrier_in_flight_with_the_other_durable_takes_the_exchange():
    files, k = kept_at(started=2, passed=1, w_cur=1, w_other=0)
    assert files.target(k) is None


def test_the_barrier_passing_frees_the_older_slot_again():
    files, k = kept_at(started=2, passed=2, w_cur=1, w_other=0)
    assert files.target(k) == 1


def test_a_failed_barrier_never_counts_as_passed():
    files = KeptFiles(NoFS())
    files.barrier_started()
    files.barrier_failed()
    files.barrier_started()
    assert files.passed == 0
    files.barrier_passed()
    assert files.passed == 2


def test_a_barrier_in_the_loop_passing_during_the_helpers_counts_as_the_newer():
    files = KeptFiles(NoFS())
    files.barrier_started()  # the helper's
    files.barrier_started()  # the loop's (a full disk's)
    files.barrier_passed()
    assert files.passed == 2
    files.barrier_passed()  # the helper's, later
    assert files.passed == 2


# -- the write path ---------------------------------------------------------


@pytest.fixture
def store():
    s = open_on(data_dir_made_durable(), level=EVERYSEC)
    yield s
    s.close()


def test_a_first_write_makes_a_two_slot_file_with_the_record_in_slot_0(store):
    set_(store, b"k", b"v1")
    data = store.fs.read_file(file_of(store, b"k"))
    assert len(data) == 2 * record.slot_cap(1, 2) and slots(store, b"k") == {0: b"v1"}


def test_an_overwrite_goes_in_place_into_the_slot_not_holding_the_current_record(store):
    set_(store, b"k", b"v1")
    ino = store.fs.stat(file_of(store, b"k")).st_ino
    set_(store, b"k", b"v2")
    assert store.fs.stat(file_of(store, b"k")).st_ino == ino
    assert slots(store, b"k") == {0: b"v1", 1: b"v2"}
    assert len(store.dir.spares) == 0  # nothing displaced


def test_overwrites_after_a_barrier_never_touch_the_durable_slot(store):
    set_(store, b"k", b"v1")
    barrier(store)
    for v in (b"v2", b"v3", b"v4"):
        set_(store, b"k", v)
    assert slots(store, b"k") == {0: b"v1", 1: b"v4"}


def test_the_newer_slot_is_served(store):
    set_(store, b"k", b"v1")
    barrier(store)
    set_(store, b"k", b"v2")
    store.cache.clear()
    assert store.get(b"k").value == b"v2"


def test_an_overwrite_while_the_barrier_in_flight_covers_the_current_record_takes_the_exchange(store):
    set_(store, b"k", b"v1")
    barrier(store)  # v1 durable
    set_(store, b"k", b"v2")  # in place
    ino = store.fs.stat(file_of(store, b"k")).st_ino
    store.durability.barrier_started()  # a barrier in flight covers v2
    set_(store, b"k", b"v3")
    assert store.fs.stat(file_of(store, b"k")).st_ino != ino
    assert store.get(b"k").value == b"v3"


def test_a_record_that_does_not_fit_its_slot_takes_the_exchange(store):
    set_(store, b"k", b"v1")
    ino = store.fs.stat(file_of(store, b"k")).st_ino
    set_(store, b"k", b"x" * 1000)
    assert store.fs.stat(file_of(store, b"k")).st_ino != ino
    assert slots(store, b"k") == {0: b"x" * 1000}


def test_a_record_too_big_for_a_slot_is_a_version_2_file(store):
    set_(store, b"k", b"x" * (record.SLOT_MAX + 1))
    data = store.fs.read_file(file_of(store, b"k"))
    assert record.decode(data).value == b"x" * (record.SLOT_MAX + 1)


def test_a_delete_closes_the_kept_descriptor(store):
    set_(store, b"k", b"v1")
    assert store.dir.kept.get(file_of(store, b"k")) is not None
    store.delete(b"k")
    assert store.dir.kept.get(file_of(store, b"k")) is None
    assert len(store.dir.kept) == 0


def test_kept_descriptors_are_bounded_and_the_oldest_is_closed_first():
    fs = data_dir_made_durable()
    s = open_on(fs, level=EVERYSEC, kept_files=2)
    for key in (b"a", b"b", b"c"):
        set_(s, key, b"1")
    assert [s.dir.kept.get(file_of(s, k)) is not None for k in (b"a", b"b", b"c")] == [False, True, True]
    s.close()
    assert fs.open_fds == 0


def test_under_always_every_write_takes_the_exchange_as_a_version_2_file():
    s = open_on(data_dir_made_durable(), level=ALWAYS)
    set_(s, b"k", b"v1")
    s.commit()
    set_(s, b"k", b"v2")
    s.commit()
    assert len(s.dir.kept) == 0
    assert record.decode(s.fs.read_file(file_of(s, b"k"))).value == b"v2"
    s.close()


def test_under_no_the_writes_alternate_slots():
    s = open_on(data_dir_made_durable(), level=NO)
    for v in (b"v1", b"v2", b"v3"):
        set_(s, b"k", v)
    assert slots(s, b"k") == {0: b"v3", 1: b"v2"}
    s.close()


def write_as_an_older_server(fs, format_, files):
    """Make the dir at DATA one of that format, holding `files` (path: bytes)."""
    fd = fs.open(DATA + "/FORMAT", os.O_WRONLY | os.O_TRUNC)
    fs.write(fd, b"memcached-lite %d\n" % format_)
    fs.close(fd)
    for path, data in files.items():
        fs.makedirs(os.path.dirname(path), exist_ok=True)
        fd = fs.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        fs.write(fd, data)
        fs.close(fd)


def test_a_format_2_data_dir_is_read_and_converted_by_the_next_write(caplog):
    fs = data_dir_made_durable()
    s = open_on(fs, level=EVERYSEC)
    path = file_of(s, b"k")
    s.close()
    write_as_an_older_server(fs, 2, {path: v2(b"k", b"old", flags=5, stored=1.0)})
    s = open_on(fs, level=EVERYSEC)
    assert "format 2 adopted as format 4" in caplog.text
    assert fs.read_file(DATA + "/FORMAT") == b"memcached-lite 4\n"
    item = s.get(b"k")
    assert (item.flags, item.value) == (5, b"old")
    set_(s, b"k", b"new")
    assert slots(s, b"k") == {0: b"new"}
    s.close()


def test_a_format_3_data_dir_is_read_and_converted_by_the_next_write(caplog):
    fs = data_dir_made_durable()
    s = open_on(fs, level=EVERYSEC)
    path = file_of(s, b"k")
    s.close()
    cap = record.slot_cap(1, 3)
    write_as_an_older_server(fs, 3, {path: v3_slot(b"k", b"new", 8, cap, cas=3) + v3_slot(b"k", b"old", 7, cap, cas=9)})
    s = open_on(fs, level=EVERYSEC)
    assert "format 3 adopted as format 4" in caplog.text
    assert fs.read_file(DATA + "/FORMAT") == b"memcached-lite 4\n"
    assert s.get(b"k").value == b"new"  # by its per-file seq, not its cas
    set_(s, b"k", b"v4")
    got = record.decode_slots(fs.read_file(path))
    assert [(r.value, r.seq > 0, slot) for r, _, slot in got] == [(b"v4", True, 0)]
    s.close()


# -- what a power loss leaves -----------------------------------------------


V1, V2 = b"a" * 3 * SECTOR, b"b" * 3 * SECTOR  # records that span sectors: a seed tears some


def served_after_an_overwrite_of_a_durable_record():
    """What k serves in 40 crash states cut after V1 was made durable and
    overwritten in place by V2."""
    fs = data_dir_made_durable()
    s = open_on(fs, level=EVERYSEC)
    set_(s, b"k", V1)
    barrier(s)
    set_(s, b"k", V2)
    got = set()
    for seed in range(40):
        crashed = open_on(fs.crash(seed), level=EVERYSEC)
        got.add(served(crashed, [b"k"]).get(b"k"))
        crashed.close()
    s.close()
    return got


def test_a_torn_newer_slot_falls_back_to_the_older_record():
    assert served_after_an_overwrite_of_a_durable_record() == {V1, V2}  # never torn, never missing


def test_a_torn_slot_is_never_served_and_never_hides_the_other():
    cap = record.slot_cap(1, 600)
    one = record.encode(b"k", 0, 0, 1, 1.0, b"1" * 600, 0, 1.0, 1, cap) + b"k" + b"1" * 600
    two = record.encode(b"k", 0, 0, 2, 2.0, b"2" * 600, 0, 2.0, 2, cap) + b"k" + b"2" * 600
    data = bytearray(one.ljust(cap, b"\0") + two.ljust(cap, b"\0"))
    data[cap + SECTOR : cap + SECTOR + 10] = b"\0" * 10  # slot 1's second sector torn
    assert record.decode_file(bytes(data))[0].value == b"1" * 600


def test_a_slot_of_another_key_is_ignored():
    cap = record.slot_cap(5, 10)
    mine = record.encode(b"k", 0, 0, 1, 1.0, b"v", 0, 1.0, 1, cap) + b"k" + b"v"
    other = record.encode(b"other", 0, 0, 9, 9.0, b"x" * 10, 0, 9.0, 9, cap) + b"other" + b"x" * 10
    data = mine.ljust(cap, b"\0") + other.ljust(cap, b"\0")
    assert record.decode_file(data, b"k".__eq__)[0].value == b"v"
    with pytest.raises(record.CorruptRecord):
        record.decode_file(data, b"nobody".__eq__)


@pytest.fixture
def current_slot_overwritten(monkeypatch):
    """A broken store: an overwrite in place goes into the slot holding the
    current record (the durable one), not the other."""
    monkeypatch.setattr(KeptFiles, "target", lambda self, kept: kept.cur)


def test_writing_over_the_current_slot_loses_a_durable_value_at_a_power_loss(current_slot_overwritten):
    assert None in served_after_an_overwrite_of_a_durable_record()  # V1 was durable: the rule exists for this


def test_start_up_restores_two_keys_whose_best_records_share_one_spare():
    # a two-slot spare whose slots hold records of two keys (its second slot
    # still its previous key's on disk), both keys' files torn: each is put
    # back, the second from a copy
    fs = data_dir_made_durable()
    s = open_on(fs, level=NO)
    set_(s, b"j", b"j-now")
    set_(s, b"k", b"k-now")
    paths = {key: file_of(s, key) for key in (b"j", b"k")}
    s.close()
    cap = record.slot_cap(1, 5)
    slot = lambda key, value: (record.encode(key, 0, 0, 1, 1.0, value, 0, 1.0, 1, cap) + key + value).ljust(cap, b"\0")
    for name, data in (("/tmp/r1.1", slot(b"j", b"j-old") + slot(b"k", b"k-old")),
                       (paths[b"j"], b"torn" * 10), (paths[b"k"], b"torn" * 10)):
        fd = fs.open(DATA + name if name.startswith("/tmp") else name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        fs.write(fd, data)
        fs.close(fd)
    s = open_on(fs, level=NO)
    assert served(s, [b"j", b"k"]) == {b"j": b"j-old", b"k": b"k-old"}
    assert s.restored == 2
    s.close()
