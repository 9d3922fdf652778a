"""Start-up's repair of torn items (store/restore.py): of a key's intact
records left in tmp/, the one written last is put back, by the store-wide
write sequence, never by cas; records of an adopted format 1-3 dir rank below
every newer one and keep their old order among themselves."""

import os

import pytest

from old_records import v1, v2, v3_slot
from store import record
from store.files import DataDir
from store.restore import restore_from_spares

KEY = b"k"


@pytest.fixture
def data_dir(tmp_path):
    d = DataDir(str(tmp_path / "data"))
    yield d
    d.close()


def record_of(value, seq, cas, stored=1.0, key=KEY):
    """A whole-file version 4 record."""
    return record.encode(key, 0, 0, cas, stored, value, seq=seq) + key + value


def slot_of(value, seq, cas, cap, key=KEY):
    return (record.encode(key, 0, 0, cas, 1.0, value, 0, 1.0, seq, cap) + key + value).ljust(cap, b"\0")


def put(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def torn_with_spares(data_dir, *spares, key=KEY):
    """The key's file torn, each of `spares` (bytes) a file in tmp/; what
    the key's file holds after the restore."""
    path = data_dir.locate(key)[1]
    put(path, b"torn" * 20)
    for i, data in enumerate(spares):
        put(os.path.join(data_dir.tmp, "r.%d" % i), data)
    restored, _ = restore_from_spares(data_dir)
    assert restored == [path]
    with open(path, "rb") as f:
        return record.decode_file(f.read())[0].value


def test_the_later_written_record_wins_though_its_cas_is_lower(data_dir):
    # `ms k S2 E5` after a write of cas 1000: the newer record has the lower cas
    assert torn_with_spares(data_dir, record_of(b"older", 7, 1000), record_of(b"newer", 8, 5)) == b"newer"


def test_the_later_written_record_wins_whichever_spare_is_listed_first(data_dir):
    assert torn_with_spares(data_dir, record_of(b"newer", 8, 5), record_of(b"older", 7, 1000)) == b"newer"


def test_of_two_records_of_one_cas_the_later_written_wins(data_dir):
    # a touch keeps the cas (and may keep `stored` on a clock that did not move)
    assert torn_with_spares(data_dir, record_of(b"touched", 9, 40), record_of(b"before", 3, 40)) == b"touched"


def test_a_slot_s_record_is_ranked_against_other_files_by_its_write_sequence(data_dir):
    cap = record.slot_cap(1, 10)
    two_slots = slot_of(b"slot-new", 6, 2, cap) + slot_of(b"slot-old", 5, 3, cap)
    assert torn_with_spares(data_dir, two_slots, record_of(b"file", 4, 900)) == b"slot-new"
    assert torn_with_spares(data_dir, two_slots, record_of(b"file", 7, 1)) == b"file"


def test_a_record_written_since_the_dir_was_adopted_beats_every_older_version_s(data_dir):
    cap = record.slot_cap(1, 10)
    old = [v1(KEY, b"v1", cas=9000), v2(KEY, b"v2", cas=9000, stored=99.0), v3_slot(KEY, b"v3", 50, cap, cas=9000) + bytes(cap)]
    assert torn_with_spares(data_dir, *old, record_of(b"new", 1, 1)) == b"new"


def test_among_records_of_format_1_to_3_the_higher_cas_then_the_later_stored_wins(data_dir):
    assert torn_with_spares(data_dir, v2(KEY, b"low", cas=1, stored=9.0), v2(KEY, b"high", cas=2, stored=1.0)) == b"high"
    assert torn_with_spares(data_dir, v2(KEY, b"early", cas=2, stored=1.0), v2(KEY, b"late", cas=2, stored=2.0)) == b"late"


def test_restore_reports_the_highest_write_sequence_in_tmp(data_dir):
    put(os.path.join(data_dir.tmp, "r.0"), record_of(b"a", 41, 1))
    put(os.path.join(data_dir.tmp, "r.1"), record_of(b"b", 12, 1, key=b"other"))
    put(os.path.join(data_dir.tmp, "r.2"), v2(KEY, b"old"))
    assert restore_from_spares(data_dir) == ([], 41)
