"""The exact reply bytes memcached 1.6 sends, as the session tests expect
them: written out here once, independently of handlers.py's own constants."""

import handlers

VERSION = b"VERSION " + handlers.VERSION.encode() + b"\r\n"
ERROR = b"ERROR\r\n"
END = b"END\r\n"
STORED = b"STORED\r\n"
NOT_STORED = b"NOT_STORED\r\n"
EXISTS = b"EXISTS\r\n"
NOT_FOUND = b"NOT_FOUND\r\n"
DELETED = b"DELETED\r\n"
TOUCHED = b"TOUCHED\r\n"
OK = b"OK\r\n"
BAD_FORMAT = b"CLIENT_ERROR bad command line format\r\n"
BAD_CHUNK = b"CLIENT_ERROR bad data chunk\r\n"
BAD_EXPTIME = b"CLIENT_ERROR invalid exptime argument\r\n"
BAD_DELTA = b"CLIENT_ERROR invalid numeric delta argument\r\n"
NON_NUMERIC = b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n"
TOO_LARGE = b"SERVER_ERROR object too large for cache\r\n"
DELETE_USAGE = b"CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n"


def value(key, data, flags=0):
    """The reply lines `get` gives for one hit."""
    return b"VALUE %s %d %d\r\n%s\r\n" % (key, flags, len(data), data)


def hit(key, data, flags=0):
    """The whole reply of `get key` when key holds data."""
    return value(key, data, flags) + END
