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
