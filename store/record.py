"""The on-disk record: one item per file, a fixed header, the key, the value.

Layout (little-endian), version 1:

    magic      4s   b"MCL1"
    version    H    format version of this record
    key_len    H    length of the key
    flags      I    the client's opaque 32-bit flags
    exptime    q    absolute unix time the item dies at; 0 never, <0 already dead
    cas        Q    the item's cas unique
    stored     d    unix time of the write (orders items against a delayed flush)
    value_len  I    length of the value
    crc        I    CRC-32 of everything else: header fields, key and value

A record is valid only if the file holds exactly header + key + value bytes and
the checksum matches; anything else is a torn or corrupt file.
"""

import struct
import zlib

MAGIC = b"MCL1"
VERSION = 1

_HEADER = struct.Struct("<4sHHIqQdI")
_CRC = struct.Struct("<I")
HEADER_SIZE = _HEADER.size + _CRC.size


class CorruptRecord(ValueError):
    """A file that is not a whole, valid record of this format."""


class UnsupportedVersion(CorruptRecord):
    """A record written by an incompatible format version."""


def encode(key, flags, exptime, cas, stored, value):
    """Return the header bytes for an item; the record is header + key + value."""
    head = _HEADER.pack(MAGIC, VERSION, len(key), flags, exptime, cas, stored, len(value))
    crc = zlib.crc32(value, zlib.crc32(key, zlib.crc32(head)))
    return head + _CRC.pack(crc)


def decode(data):
    """Parse a whole record; return (key, flags, exptime, cas, stored, value)."""
    key_len, flags, exptime, cas, stored, value_len = decode_header(data)
    if len(data) != HEADER_SIZE + key_len + value_len:
        raise CorruptRecord("length mismatch")
    (crc,) = _CRC.unpack_from(data, _HEADER.size)
    body = memoryview(data)[HEADER_SIZE:]
    if zlib.crc32(body, zlib.crc32(memoryview(data)[: _HEADER.size])) != crc:
        raise CorruptRecord("checksum mismatch")
    key = bytes(body[:key_len])
    value = bytes(body[key_len:])
    return key, flags, exptime, cas, stored, value


def decode_header(data):
    """Parse only the header: (key_len, flags, exptime, cas, stored, value_len)."""
    if len(data) < HEADER_SIZE:
        raise CorruptRecord("short header")
    magic, version, key_len, flags, exptime, cas, stored, value_len = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise CorruptRecord("bad magic")
    if version != VERSION:
        raise UnsupportedVersion(f"record version {version}, this server reads {VERSION}")
    return key_len, flags, exptime, cas, stored, value_len
