"""The on-disk record: one item per file, a fixed header, the key, the value.

Layout (little-endian), version 2 (what this server writes):

    magic      4s   b"MCL1"
    version    H    format version of this record (2)
    key_len    H    length of the key
    flags      I    the client's opaque 32-bit flags
    exptime    q    absolute unix time the item dies at; 0 never, <0 already dead
    cas        Q    the item's cas unique
    stored     d    unix time of the write (orders items against a delayed flush)
    value_len  I    length of the value
    state      H    bits of item state the meta commands need (STALE,
                    TOKEN_SENT, FETCHED, KEY_BINARY below)
    atime      d    unix time of the last access (memcached's "la")
    crc        I    CRC-32 of everything else: header fields, key and value

Version 1 is the same without `state` and `atime`; it is still read (as state
0, last access = stored time), so a data dir written by an older server is
served as it is, and each item is rewritten as version 2 with its next change.

A record is valid only if the file holds exactly header + key + value bytes and
the checksum matches; anything else is a torn or corrupt file.

Format 3 (what this server writes for records up to SLOT_MAX): a file of two
slots of `cap` bytes each (a multiple of 512, the disk's atomic sector), slot
i at offset i * cap, so the file is 2 * cap long. A slot holds a version 3
record: version 2's header fields, then

    seq        Q    orders the two slots of one file: the higher valid one wins
    cap        I    the slot's size (half the file: a slot elsewhere is torn)
    crc        I    CRC-32 of the header fields, key and value

then the key and the value, then zeros to the slot's end (not checksummed).
Each slot is checked on its own, so a torn or stale slot never hides the
other; `decode_file` reads a file of either format (docs/ARCHITECTURE.md,
"Writes in place").
"""

import collections
import struct
import zlib

MAGIC = b"MCL1"
VERSION = 2

# state bits
STALE = 1  # marked stale by `md <key> I` (or an `ms ... I` with an older cas)
TOKEN_SENT = 2  # a client was handed the recache win (W); others see Z
FETCHED = 4  # read at least once since it was stored (`h`, `me ... fetch=`)
KEY_BINARY = 8  # stored with a base64 key (`ms ... b`): `k` and `me` echo it encoded

_HEADERS = {
    1: struct.Struct("<4sHHIqQdI"),
    2: struct.Struct("<4sHHIqQdIHd"),
}
_PREFIX = struct.Struct("<4sH")
_CRC = struct.Struct("<I")
HEADER_SIZE = _HEADERS[VERSION].size + _CRC.size  # of the records this server writes
# the fewest bytes that hold the header of a record of any version read
MIN_HEADER_SIZE = min(h.size for h in _HEADERS.values()) + _CRC.size

Header = collections.namedtuple(
    "Header", "size key_len flags exptime cas stored value_len state atime"
)
Record = collections.namedtuple("Record", "key flags exptime cas stored value state atime")


class CorruptRecord(ValueError):
    """A file that is not a whole, valid record of this format."""


class UnsupportedVersion(CorruptRecord):
    """A record written by an incompatible format version."""


SLOT_VERSION = 3
SECTOR = 512
# Records (version 3 header + key + value) up to this many bytes are written
# as two-slot files: two slots of up to 4 KiB share two blocks at most.
SLOT_MAX = 4096
_SLOT = struct.Struct("<4sHHIqQdIHdQI")
SLOT_HEADER_SIZE = _SLOT.size + _CRC.size


def slot_cap(key_len, value_len):
    """The slot size of a record of that key and value in a two-slot file,
    or None if it is too big for one (then it is a version 2 file)."""
    n = SLOT_HEADER_SIZE + key_len + value_len
    if n > SLOT_MAX:
        return None
    return -(-n // SECTOR) * SECTOR


def encode_slot(key, flags, exptime, cas, stored, value, state, atime, seq, cap):
    """The header of a version 3 record (a slot: header + key + value, then
    zeros to `cap`)."""
    head = _SLOT.pack(
        MAGIC, SLOT_VERSION, len(key), flags, exptime, cas, stored, len(value), state, atime, seq, cap
    )
    crc = zlib.crc32(value, zlib.crc32(key, zlib.crc32(head)))
    return head + _CRC.pack(crc)


def _slot(data, at, cap):
    """(Record, seq) of the slot at `at`, or None if it is not a whole,
    valid version 3 record of a slot of `cap` bytes."""
    end = at + SLOT_HEADER_SIZE
    if len(data) < end:
        return None
    fields = _SLOT.unpack_from(data, at)
    magic, version, key_len, flags, exptime, cas, stored, value_len, state, atime, seq, slot = fields
    if magic != MAGIC or version != SLOT_VERSION or slot != cap:
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
    return Record(key, flags, exptime, cas, stored, value, state, atime), seq


def decode_slots(data):
    """[(Record, seq, slot)] of the valid slots of a two-slot file (none for
    any other file)."""
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
    for a slot) one version 2 record."""
    cap = slot_cap(key_len, value_len)
    return HEADER_SIZE + key_len + value_len if cap is None else 2 * cap


def decode_file(data, accept=None):
    """Read an item's file of any format: (Record, size, slot, seq).

    A file that is one whole version 1/2 record is that record (slot and seq
    None; `accept` is then the caller's to apply). Else the valid slots of a
    two-slot file whose key `accept(key)` takes (all, without accept): the
    one with the higher seq. `size` is the file's (what `bytes` counts). Raises
    CorruptRecord (UnsupportedVersion for a foreign version) if nothing
    valid is there."""
    try:
        r = decode(data)
        return r, len(data), None, None
    except UnsupportedVersion as e:
        error = e
        if len(data) >= _PREFIX.size and _PREFIX.unpack_from(data)[1] == SLOT_VERSION:
            error = CorruptRecord("no valid slot")
    except CorruptRecord as e:
        error = e
    best = None
    foreign = False
    for r, seq, slot in decode_slots(data):
        if accept is not None and not accept(r.key):
            foreign = True
            continue
        if best is None or seq > best[3]:
            best = (r, len(data), slot, seq)
    if best is not None:
        return best
    if foreign:
        raise CorruptRecord("key does not match its file name")
    raise error


def encode(key, flags, exptime, cas, stored, value, state=0, atime=None):
    """Return the header bytes for an item; the record is header + key + value."""
    if atime is None:
        atime = stored
    head = _HEADERS[VERSION].pack(
        MAGIC, VERSION, len(key), flags, exptime, cas, stored, len(value), state, atime
    )
    crc = zlib.crc32(value, zlib.crc32(key, zlib.crc32(head)))
    return head + _CRC.pack(crc)


def decode(data):
    """Parse a whole record of any version read; return a Record."""
    h = decode_header(data)
    if len(data) != h.size + h.key_len + h.value_len:
        raise CorruptRecord("length mismatch")
    fields_end = h.size - _CRC.size
    (crc,) = _CRC.unpack_from(data, fields_end)
    body = memoryview(data)[h.size :]
    if zlib.crc32(body, zlib.crc32(memoryview(data)[:fields_end])) != crc:
        raise CorruptRecord("checksum mismatch")
    key = bytes(body[: h.key_len])
    value = bytes(body[h.key_len :])
    return Record(key, h.flags, h.exptime, h.cas, h.stored, value, h.state, h.atime)


def decode_header(data):
    """Parse only the header: a Header (its own size included)."""
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
    state, atime = fields[8:] if version >= 2 else (0, stored)
    return Header(layout.size + _CRC.size, key_len, flags, exptime, cas, stored, value_len, state, atime)
