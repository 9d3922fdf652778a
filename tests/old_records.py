"""Records of the versions this server reads but no longer writes, built by
hand from their layouts (store/record.py's docstring), as the servers of
format 1-3 wrote them: the tests of reading old data dirs never go through
the module they test."""

import struct
import zlib

MAGIC = b"MCL1"
_V1 = struct.Struct("<4sHHIqQdI")
_V2 = struct.Struct("<4sHHIqQdIHd")
_V3 = struct.Struct("<4sHHIqQdIHdQI")


def _sealed(head, key, value):
    crc = zlib.crc32(value, zlib.crc32(key, zlib.crc32(head)))
    return head + struct.pack("<I", crc) + key + value


def v1(key, value, cas=1, stored=0.0, flags=0, exptime=0, version=1):
    """A whole version 1 record (no state, no last access)."""
    return _sealed(_V1.pack(MAGIC, version, len(key), flags, exptime, cas, stored, len(value)), key, value)


def v2(key, value, cas=1, stored=0.0, flags=0, exptime=0, state=0, atime=None):
    """A whole version 2 record: a file of format 1-3."""
    atime = stored if atime is None else atime
    head = _V2.pack(MAGIC, 2, len(key), flags, exptime, cas, stored, len(value), state, atime)
    return _sealed(head, key, value)


def v3_slot(key, value, seq, cap, cas=1, stored=0.0, flags=0, exptime=0):
    """A slot of a format 3 two-slot file (`seq` counted per file), padded
    with zeros to `cap`."""
    head = _V3.pack(MAGIC, 3, len(key), flags, exptime, cas, stored, len(value), 0, stored, seq, cap)
    return _sealed(head, key, value).ljust(cap, b"\0")
