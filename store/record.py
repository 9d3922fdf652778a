"""The on-disk record: one item per file, a fixed header, the key, the value.

Layout (little-endian), version 4 (what this server writes):

    magic      4s   b"MCL1"
    version    H    format version of this record (4)
    key_len    H    length of the key
    flags      I    the client's opaque 32-bit flags
    exptime    q    absolute unix time the item dies at; 0 never, <0 already dead
    cas        Q    the item's cas unique, as the client or the counter set it
    stored     d    unix time of the write (orders items against a delayed flush)
    value_len  I    length of the value
    state      H    bits of item state the meta commands need (STALE,
                    TOKEN_SENT, FETCHED, KEY_BINARY below)
    atime      d    unix time of the last access (memcached's "la")
    seq        Q    the store-wide write sequence: every record written gets
                    the next one (store/state.py), so of two records of a key
                    the higher seq is the later write, whatever their cas
    cap        I    0: the record is the whole file; else the slot's size
    crc        I    CRC-32 of everything else: header fields, key and value

A whole-file record (cap 0) is valid only if the file holds exactly header +
key + value bytes and the checksum matches; anything else is a torn or
corrupt file. Records over SLOT_MAX (and every record under `--fsync
always`) are whole files.

Two slots (records up to SLOT_MAX under everysec/no): a file of two slots of
`cap` bytes each (a multiple of 512, the disk's atomic sector), slot i at
offset i * cap, so the file is 2 * cap long; each slot holds a record whose
`cap` is half the file, then zeros to the slot's end (not checksummed). Each
slot is checked on its own, so a torn or stale slot never hides the other;
the valid one that ranks higher wins (`decode_file`, docs/ARCHITECTURE.md,
"Writes in place").

Older versions are read as they are (a data dir of format 1-3 is adopted:
store/files.py), each rewritten as version 4 by its key's next write:

- version 1: version 2 without `state` and `atime` (read as state 0, last
  access = stored);
- version 2: the header up to `atime`, a whole file;
- version 3: version 4's layout, always a slot, but its `seq` orders only
  the two slots of its file (a per-file count). A record of version 1-3 has
  `Record.seq` 0: older than every version 4 record, since once a dir is
  adopted every write is version 4.
"""
import collections
import struct
import zlib

MAGIC = b"MCL1"
VERSION = 4

# state bits
STALE = 1  # marked stale by `md <key> I` (or an `ms ... I` with an older cas)
TOKEN_SENT = 2  # a client was handed the recache win (W); others see Z
FETCHED = 4  # read at least once since it was stored (`h`, `me ... fetch=`)
KEY_BINARY = 8  # stored with a base64 key (`ms ... b`): `k` and `me` echo it encoded

_SLOT = struct.Struct("<4sHHIqQdIHdQI")  # versions 3 and 4: seq and cap after atime
_HEADERS = {
    1: struct.Struct("<4sHHIqQdI"),
    2: struct.Struct("<4sHHIqQdIHd"),
    3: _SLOT,
    4: _SLOT,
}
_PREFIX = struct.Struct("<4sH")
_CRC = struct.Struct("<I")
HEADER_SIZE = _HEADERS[VERSION].size + _CRC.size  # of the records this server writes
# the fewest bytes that hold the header of a record of any version read
MIN_HEADER_SIZE = min(h.size for h in _HEADERS.values()) + _CRC.size

Header = collections.namedtuple(
    "Header", "size key_len flags exptime cas stored value_len state atime seq cap"
)
# seq: the store-wide write sequence (0: a record of version 1-3)
Record = collections.namedtuple("Record", "key flags exptime cas stored value state atime seq")


class CorruptRecord(ValueError):
    """A file that is not a whole, valid record of this format."""


class UnsupportedVersion(CorruptRecord):
    """A record written by an incompatible format version."""


SLOT_VERSION = 3  # the first version of two-slot files (its seq per file)
_SLOT_VERSIONS = (3, 4)
SECTOR = 512
# Records (header + key + value) up to this many bytes are written as
# two-slot files: two slots of up to 4 KiB share two blocks at most.
SLOT_MAX = 4096
SLOT_HEADER_SIZE = _SLOT.size + _CRC.size


def slot_cap(key_len, value_len):
    """The slot size of a record of that key and value in a two-slot file,
    or None if it is too big for one (then it is a whole-file record)."""
    n = SLOT_HEADER_SIZE + key_len + value_len
    if n > SLOT_MAX:
        return None
    return -(-n // SECTOR) * SECTOR


def encode(key, flags, exptime, cas, stored, value, state=0, atime=None, seq=0, cap=0):
    """The header of a version 4 record; the record is header + key + value
    (a whole file with cap 0, else a slot of `cap` bytes: zeros follow)."""
    if atime is None:
        atime = stored
    head = _SLOT.pack(
        MAGIC, VERSION, len(key), flags, exptime, cas, stored, len(value), state, atime, seq, cap
    )
    crc = zlib.crc32(value, zlib.crc32(key, zlib.crc32(head)))
    return head + _CRC.pack(crc)


def _slot(data, at, cap):
    """(Record, rank) of the slot at `at`, or None if it is not a whole,
    valid version 3/4 record of a slot of `cap` bytes."""
    end = at + SLOT_HEADER_SIZE
    if len(data) < end:
        return None
    fields = _SLOT.unpack_from(data, at)
    magic, version, key_len, flags, exptime, cas, stored, value_len, state, atime, seq, slot = fields
    if magic != MAGIC or version not in _SLOT_VERSIONS or slot != cap:
        return None
    stop = end + key_len + value_len
    if stop > at + cap:
        return None
    (crc,) = _CRC.unpack_from(data, end - _CRC.size)
    view = memoryview(data)
    if zlib.crc32(view[end:stop], zlib.crc32(view[at : end - _CRC.size])) != crc:
        return None
    key = bytes(view[end : end + key_len])
    value = bytes(view[end + key_len : stop])
    if version == VERSION:
        return Record(key, flags, exptime, cas, stored, value, state, atime, seq), (seq, 0)
    # version 3: its seq counts the writes of this file only, and every
    # version 4 record is later than it
    return Record(key, flags, exptime, cas, stored, value, state, atime, 0), (0, seq)


def decode_slots(data):
    """[(Record, rank, slot)] of the valid slots of a two-slot file (none for
    any other file). Of two slots of one key, the higher `rank` is the later
    write: (seq, 0) for version 4, (0, the per-file seq) for version 3."""
    n = len(data)
    cap = n // 2
    if n % 2 or cap < SLOT_HEADER_SIZE:
        return []
    out = []
    for i in (0, 1):
        got = _slot(data, i * cap, cap)
        if got is not None:
            out.append((got[0], got[1], i))
    return out


def file_size(key_len, value_len):
    """The size of a new file holding such a record: two slots, or (too big
    for a slot) one whole-file record."""
    cap = slot_cap(key_len, value_len)
    return HEADER_SIZE + key_len + value_len if cap is None else 2 * cap


def decode_file(data, accept=None):
    """Read an item's file of any format: (Record, size, slot, rank).

    A file that is one whole record is that record (slot and rank None;
    `accept` is then the caller's to apply). Else the valid slots of a
    two-slot file whose key `accept(key)` takes (all, without accept): the
    one of the higher rank (decode_slots). `size` is the file's (what
    `bytes` counts). Raises CorruptRecord (UnsupportedVersion for a foreign
    version) if nothing valid is there."""
    try:
        r = decode(data)
        return r, len(data), None, None
    except UnsupportedVersion as e:
        error = e
    except CorruptRecord as e:
        error = e
        if len(data) >= _PREFIX.size and _PREFIX.unpack_from(data)[1] in _SLOT_VERSIONS:
            error = CorruptRecord("no valid slot")
    best = None
    foreign = False
    for r, rank, slot in decode_slots(data):
        if accept is not None and not accept(r.key):
            foreign = True
            continue
        if best is None or rank > best[3]:
            best = (r, len(data), slot, rank)
    if best is not None:
        return best
    if foreign:
        raise CorruptRecord("key does not match its file name")
    raise error


def decode(data):
    """Parse a whole-file record of any version read; return a Record."""
    h = decode_header(data)
    if h.cap or len(data) != h.size + h.key_len + h.value_len:
        raise CorruptRecord("length mismatch")
    fields_end = h.size - _CRC.size
    (crc,) = _CRC.unpack_from(data, fields_end)
    body = memoryview(data)[h.size :]
    if zlib.crc32(body, zlib.crc32(memoryview(data)[:fields_end])) != crc:
        raise CorruptRecord("checksum mismatch")
    key = bytes(body[: h.key_len])
    value = bytes(body[h.key_len :])
    return Record(key, h.flags, h.exptime, h.cas, h.stored, value, h.state, h.atime, h.seq)


def decode_header(data):
    """Parse only the header: a Header (its own size included; seq 0 for a
    version 1-3 record; cap not 0: the first slot of a two-slot file)."""
    if len(data) < _PREFIX.size:
        raise CorruptRecord("short header")
    magic, version = _PREFIX.unpack_from(data)
    if magic != MAGIC:
        raise CorruptRecord("bad magic")
    layout = _HEADERS.get(version)
    if layout is None:
        raise UnsupportedVersion(f"record version {version}, this server reads {sorted(_HEADERS)}")
    if len(data) < layout.size + _CRC.size:
        raise CorruptRecord("short header")
    fields = layout.unpack_from(data)
    key_len, flags, exptime, cas, stored, value_len = fields[2:8]
    state, atime = fields[8:10] if version >= 2 else (0, stored)
    seq, cap = fields[10:] if version >= 3 else (0, 0)
    if version == SLOT_VERSION:
        # always a slot (never a whole file), its seq per file
        seq, cap = 0, cap or SECTOR
    return Header(layout.size + _CRC.size, key_len, flags, exptime, cas, stored, value_len, state, atime, seq, cap)
