"""The on-disk record (store/record.py): what is written is read back exactly,
and no damaged file is ever taken for a valid record."""

import struct
import zlib

import pytest

from old_records import v1, v2, v3_slot
from store import record
from store.record import CorruptRecord, UnsupportedVersion

KEY = b"some:key"
VALUE = b"hello\r\nworld\x00\xff"


def make(key=KEY, flags=7, exptime=1_700_000_000, cas=42, stored=1_699_999_999.25, value=VALUE, seq=0):
    return record.encode(key, flags, exptime, cas, stored, value, seq=seq) + key + value


def test_round_trip_returns_every_field():
    data = make(seq=77)
    assert record.decode(data) == (KEY, 7, 1_700_000_000, 42, 1_699_999_999.25, VALUE, 0, 1_699_999_999.25, 77)


def test_round_trip_keeps_the_meta_state_and_last_access():
    state = record.STALE | record.TOKEN_SENT | record.FETCHED | record.KEY_BINARY
    data = record.encode(KEY, 7, 0, 42, 1.0, VALUE, state=state, atime=5.5) + KEY + VALUE
    got = record.decode(data)
    assert (got.state, got.atime) == (state, 5.5)


@pytest.mark.parametrize(
    "fields",
    [
        (b"", 0, 0, 0, 0.0, b""),  # empty key and value, zeroes everywhere
        (b"k", 0xFFFFFFFF, -1, (1 << 64) - 1, 1.5, b"v"),  # extremes of each field
        (b"x" * 250, 1, 2_000_000_000, 1, 1_700_000_000.123456, b"\x00" * 10_000),
        (bytes(range(256)), 3, 0, 9, 0.0, bytes(range(256)) * 4),  # any byte in key and value
    ],
)
def test_round_trip_at_the_edges_of_each_field(fields):
    key, flags, exptime, cas, stored, value = fields
    data = record.encode(key, flags, exptime, cas, stored, value) + key + value
    assert record.decode(data)[:6] == fields


def test_header_size_is_what_encode_writes():
    assert len(record.encode(KEY, 0, 0, 0, 0.0, VALUE)) == record.HEADER_SIZE


def test_decode_accepts_bytearray_and_memoryview():
    data = make()
    assert record.decode(bytearray(data)) == record.decode(data)
    assert record.decode(memoryview(data)) == record.decode(data)


def test_decode_header_reads_the_header_alone():
    data = make(seq=5)
    head = data[: record.HEADER_SIZE]
    assert record.decode_header(head) == (
        record.HEADER_SIZE, len(KEY), 7, 1_700_000_000, 42, 1_699_999_999.25, len(VALUE), 0, 1_699_999_999.25, 5, 0
    )


def test_record_truncated_at_every_length_is_corrupt():
    data = make()
    for n in range(len(data)):
        with pytest.raises(CorruptRecord):
            record.decode(data[:n])


def test_empty_file_is_corrupt():
    with pytest.raises(CorruptRecord):
        record.decode(b"")


def test_header_truncated_at_every_length_is_corrupt():
    data = make()
    for n in range(record.HEADER_SIZE):
        with pytest.raises(CorruptRecord):
            record.decode_header(data[:n])


@pytest.mark.parametrize("extra", [b"\x00", b"x" * 100])
def test_trailing_bytes_are_corrupt(extra):
    with pytest.raises(CorruptRecord):
        record.decode(make() + extra)


@pytest.mark.parametrize("mask", [0x01, 0x80, 0x55, 0xFF])
def test_flipped_byte_anywhere_is_corrupt(mask):
    data = make()
    for i in range(len(data)):
        damaged = bytearray(data)
        damaged[i] ^= mask
        with pytest.raises(CorruptRecord):
            record.decode(bytes(damaged))


def test_every_single_bit_flip_is_corrupt():
    data = make(key=b"k", value=b"12345")
    for bit in range(len(data) * 8):
        damaged = bytearray(data)
        damaged[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(CorruptRecord):
            record.decode(bytes(damaged))


def test_key_and_value_boundary_moved_is_corrupt():
    # Same bytes after the header, but key_len/value_len say the split is elsewhere.
    key, value = b"ab", b"cd"
    good = record.encode(key, 0, 0, 1, 0.0, value)
    moved = record.encode(b"abc", 0, 0, 1, 0.0, b"d")
    with pytest.raises(CorruptRecord):
        record.decode(moved[:-4] + good[-4:] + key + value)


def test_zeroed_file_is_corrupt():
    with pytest.raises(CorruptRecord):
        record.decode(bytes(len(make())))


def _with_version(version, key=KEY, value=VALUE, stored=0.0):
    # A record that is whole and correctly checksummed, in the version 1 layout.
    return v1(key, value, stored=stored, version=version)


def _v4_by_hand(key=KEY, value=VALUE, seq=3):
    head = struct.pack("<4sHHIqQdIHdQI", record.MAGIC, 4, len(key), 0, 0, 1, 0.0, len(value), 0, 0.0, seq, 0)
    crc = zlib.crc32(value, zlib.crc32(key, zlib.crc32(head)))
    return head + struct.pack("<I", crc) + key + value


def test_record_of_this_version_built_by_hand_decodes():
    # The hand-built layout matches encode's.
    assert _v4_by_hand() == make(flags=0, exptime=0, cas=1, stored=0.0, seq=3)


def test_a_version_1_record_is_read_with_no_state_and_last_access_at_its_write():
    got = record.decode(_with_version(1, stored=3.25))
    assert got == (KEY, 0, 0, 1, 3.25, VALUE, 0, 3.25, 0)
    assert record.decode_header(_with_version(1)).size == len(v2(KEY, b"")) - len(KEY) - 10


def test_a_version_2_record_is_read_with_write_sequence_0():
    got = record.decode(v2(KEY, VALUE, cas=9, stored=2.5, flags=3, state=record.FETCHED, atime=4.0))
    assert got == (KEY, 3, 0, 9, 2.5, VALUE, record.FETCHED, 4.0, 0)


def test_a_whole_file_record_whose_cap_is_not_0_is_corrupt():
    data = record.encode(KEY, 0, 0, 1, 0.0, VALUE, cap=512) + KEY + VALUE  # checksummed, length right
    with pytest.raises(CorruptRecord):
        record.decode(data)


def test_a_version_3_record_is_never_a_whole_file():
    with pytest.raises(CorruptRecord):
        record.decode(v3_slot(KEY, VALUE, 1, 0))  # cap 0, as a whole file's, checksummed


@pytest.mark.parametrize("version", [0, 5, 0xFFFF])
def test_other_version_is_unsupported(version):
    with pytest.raises(UnsupportedVersion):
        record.decode(_with_version(version))
    with pytest.raises(UnsupportedVersion):
        record.decode_header(_with_version(version))


def test_unsupported_version_is_a_kind_of_corrupt_record():
    # Callers that quarantine CorruptRecord also catch a foreign version.
    assert issubclass(UnsupportedVersion, CorruptRecord)


def test_wrong_magic_is_corrupt_not_unsupported():
    data = bytearray(make())
    data[0:4] = b"XXXX"
    with pytest.raises(CorruptRecord) as info:
        record.decode(bytes(data))
    assert not isinstance(info.value, UnsupportedVersion)


# -- two slots per file ------------------------------------------------------


def two_slots(first, second=None, cap=None):
    """A two-slot file of (key, value, seq) records; None: a zero slot."""
    cap = cap or record.slot_cap(len(KEY), 1000)
    out = b""
    for slot in (first, second):
        if slot is None:
            out += bytes(cap)
            continue
        key, value, seq = slot
        head = record.encode(key, 7, 0, 40 + seq, 1.5, value, 0, 1.5, seq, cap)
        out += (head + key + value).ljust(cap, b"\0")
    return out


def test_a_slot_cap_is_whole_sectors_and_none_past_slot_max():
    assert record.slot_cap(1, 1) == record.SECTOR
    assert record.slot_cap(1, record.SECTOR) == 2 * record.SECTOR
    assert record.slot_cap(1, record.SLOT_MAX) is None


def test_a_two_slot_file_round_trips_its_record():
    r, size, slot, rank = record.decode_file(two_slots((KEY, VALUE, 1)))
    assert (r.key, r.flags, r.cas, r.value, r.seq, slot, rank) == (KEY, 7, 41, VALUE, 1, 0, (1, 0))
    assert size == 2 * record.slot_cap(len(KEY), 1000)


def test_of_two_valid_slots_the_higher_seq_wins_wherever_it_is():
    assert record.decode_file(two_slots((KEY, b"old", 1), (KEY, b"new", 2)))[0].value == b"new"
    assert record.decode_file(two_slots((KEY, b"new", 3), (KEY, b"old", 2)))[0].value == b"new"


def test_a_flipped_byte_anywhere_in_a_slots_record_leaves_the_other_slot():
    data = two_slots((KEY, b"old", 1), (KEY, b"new", 2))
    cap = len(data) // 2
    for i in range(cap, cap + record.SLOT_HEADER_SIZE + len(KEY) + 3):
        damaged = bytearray(data)
        damaged[i] ^= 0x55
        assert record.decode_file(bytes(damaged))[0].value == b"old", i


def test_a_slot_whose_cap_is_not_half_the_file_is_ignored():
    data = two_slots((KEY, VALUE, 1))
    with pytest.raises(CorruptRecord):
        record.decode_file(data + bytes(2 * record.SECTOR))  # slot 1 moved, slot 0's cap wrong


def test_a_two_slot_file_with_no_valid_slot_is_corrupt():
    with pytest.raises(CorruptRecord):
        record.decode_file(bytes(2 * record.SECTOR))
    data = bytearray(two_slots((KEY, VALUE, 1)))
    data[4] = 9  # slot 0's version
    with pytest.raises(CorruptRecord):
        record.decode_file(bytes(data))


def test_decode_file_reads_a_whole_file_record_as_it_is():
    r, size, slot, rank = record.decode_file(make())
    assert (r.value, size, slot, rank) == (VALUE, len(make()), None, None)


def test_decode_file_reads_a_version_2_record_as_it_is():
    data = v2(KEY, VALUE)
    r, size, slot, rank = record.decode_file(data)
    assert (r.value, r.seq, size, slot, rank) == (VALUE, 0, len(data), None, None)


def test_decode_slots_gives_every_valid_slot_with_its_rank():
    got = record.decode_slots(two_slots((KEY, b"a", 4), (b"other", b"b", 9)))
    assert [(r.key, rank, slot) for r, rank, slot in got] == [(KEY, (4, 0), 0), (b"other", (9, 0), 1)]


def test_of_two_slots_the_later_write_wins_whatever_their_cas():
    cap = record.slot_cap(len(KEY), 10)
    older = (record.encode(KEY, 0, 0, 1000, 1.0, b"old", 0, 1.0, 7, cap) + KEY + b"old").ljust(cap, b"\0")
    newer = (record.encode(KEY, 0, 0, 5, 1.0, b"new", 0, 1.0, 8, cap) + KEY + b"new").ljust(cap, b"\0")
    assert record.decode_file(older + newer)[0].value == b"new"
    assert record.decode_file(newer + older)[0].value == b"new"


# -- format 3's two-slot files, read as they are ------------------------------


def v3_file(first, second):
    """A format 3 two-slot file of (value, per-file seq, cas) slots."""
    cap = record.slot_cap(len(KEY), 1000)
    return b"".join(v3_slot(KEY, value, seq, cap, cas=cas) for value, seq, cas in (first, second))


def test_a_format_3_file_is_read_by_its_per_file_seq():
    assert record.decode_file(v3_file((b"old", 1, 50), (b"new", 2, 40)))[0].value == b"new"
    assert record.decode_file(v3_file((b"new", 3, 40), (b"old", 2, 50)))[0].value == b"new"


def test_a_format_3_slots_record_has_write_sequence_0():
    r, _, _, rank = record.decode_file(v3_file((b"a", 5, 1), (b"b", 4, 1)))
    assert (r.value, r.seq, rank) == (b"a", 0, (0, 5))


def test_a_version_4_slot_is_later_than_a_version_3_slot_of_any_seq():
    cap = record.slot_cap(len(KEY), 1000)
    old = v3_slot(KEY, b"old", 1 << 40, cap, cas=99)
    new = (record.encode(KEY, 0, 0, 1, 1.0, b"new", 0, 1.0, 1, cap) + KEY + b"new").ljust(cap, b"\0")
    assert record.decode_file(old + new)[0].value == b"new"
    assert record.decode_file(new + old)[0].value == b"new"
