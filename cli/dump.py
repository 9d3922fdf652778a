"""The dump file format: every live item of a server, binary-safe, versioned,
written and read as a stream (docs/DUMP_FORMAT.md is its specification).

    memcached-dump 1 <unix time of the dump>\\n
    I <key length> <flags> <ttl> <value length>\\n<key><value>\\n     (per item)
    E <item count> <crc32, 8 hex digits>\\n

Numbers are ASCII decimal. `ttl` is the seconds the item had left when it
was dumped, 0 if it never expires. Key and value are raw bytes, found by
their lengths, never by a delimiter, so any byte may appear in them; the
"\\n" after each value only makes the file easier to inspect and checks
framing. The CRC-32 covers every byte before the `E` line, so a truncated,
cut or altered file is refused rather than half-trusted.
"""

import zlib

MAGIC = b"memcached-dump"
VERSION = 1
# no numbers line of a valid file comes near this; it bounds reads of junk
_MAX_LINE = 128
_MAX_KEY = 250
_MAX_U32 = (1 << 32) - 1


class DumpFormatError(ValueError):
    """A file that is not a whole dump of a version this client reads."""

    def __init__(self, message, offset):
        super().__init__(f"{message} (at byte {offset})")
        self.offset = offset


class Writer:
    """Writes a dump to a binary file object; `close()` writes the trailer."""

    def __init__(self, out, dumped_at):
        self._out = out
        self._crc = 0
        self.items = 0
        self.bytes = 0
        self._write(b"%s %d %d\n" % (MAGIC, VERSION, int(dumped_at)))

    def _write(self, data):
        self._out.write(data)
        self._crc = zlib.crc32(data, self._crc)
        self.bytes += len(data)

    def item(self, key, flags, ttl, value):
        if not 0 < len(key) <= _MAX_KEY:
            raise ValueError(f"key length {len(key)} outside 1..{_MAX_KEY}")
        if ttl < 0:
            raise ValueError("ttl cannot be negative")
        self._write(b"I %d %d %d %d\n%s%s\n" % (len(key), flags, ttl, len(value), key, value))
        self.items += 1

    def close(self):
        """Write the trailer and flush; the file is whole only after this."""
        trailer = b"E %d %08x\n" % (self.items, self._crc)
        self._out.write(trailer)
        self.bytes += len(trailer)
        self._out.flush()


class Reader:
    """Reads a dump from a binary file object, one item at a time.

    Iterating yields (key, flags, ttl, value); the header is read at once
    (`dumped_at`, `version`). Any departure from the format raises
    DumpFormatError, including a missing or wrong trailer at the end.
    """

    def __init__(self, inp):
        self._in = inp
        self._crc = 0
        self.offset = 0
        self.items = 0
        header = self._line("header")
        words = header.split(b" ")
        if len(words) != 3 or words[0] != MAGIC:
            raise DumpFormatError("not a memcached dump file", 0)
        self.version = self._number(words[1], "version", 0)
        if self.version != VERSION:
            raise DumpFormatError(f"dump format version {self.version}; this client reads version {VERSION}", 0)
        self.dumped_at = self._number(words[2], "dump time", 0)

    def _read(self, n, what):
        data = self._in.read(n)
        if len(data) != n:
            raise DumpFormatError(f"file ends inside {what}: truncated", self.offset + len(data))
        self._crc = zlib.crc32(data, self._crc)
        self.offset += n
        return data

    def _line(self, what, crc=True):
        start = self.offset
        data = self._in.readline(_MAX_LINE)
        if not data:
            raise DumpFormatError(f"file ends before {what}: truncated", start)
        if not data.endswith(b"\n"):
            if len(data) < _MAX_LINE:
                raise DumpFormatError(f"file ends inside {what} line: truncated", start + len(data))
            raise DumpFormatError(f"malformed {what} line", start)
        if crc:
            self._crc = zlib.crc32(data, self._crc)
        self.offset += len(data)
        return data[:-1]

    def _number(self, word, what, at, limit=None):
        if not word.isdigit() or (limit is not None and int(word) > limit):
            raise DumpFormatError(f"bad {what} {word[:20]!r}", at)
        return int(word)

    def __iter__(self):
        while True:
            start = self.offset
            crc_before = self._crc
            line = self._line("an item")
            words = line.split(b" ")
            if words[0] == b"E" and len(words) == 3:
                self._check_trailer(words, crc_before, start)
                return
            if words[0] != b"I" or len(words) != 5:
                raise DumpFormatError("expected an item (I) or the end (E)", start)
            key_len = self._number(words[1], "key length", start, _MAX_KEY)
            flags = self._number(words[2], "flags", start, _MAX_U32)
            ttl = self._number(words[3], "ttl", start)
            value_len = self._number(words[4], "value length", start)
            if key_len == 0:
                raise DumpFormatError("empty key", start)
            key = self._read(key_len, "a key")
            value = self._read(value_len, "a value")
            if self._read(1, "an item") != b"\n":
                raise DumpFormatError("an item's value is not followed by a newline", self.offset - 1)
            self.items += 1
            yield key, flags, ttl, value

    def _check_trailer(self, words, crc_before, start):
        count = self._number(words[1], "item count", start)
        if count != self.items:
            raise DumpFormatError(f"the end says {count} items, the file holds {self.items}", start)
        if words[2] != b"%08x" % crc_before:
            raise DumpFormatError("checksum mismatch: the file was altered or damaged", start)
        if self._in.read(1):
            raise DumpFormatError("data after the end of the dump", self.offset)
