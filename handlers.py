"""memcached's text protocol, sans-I/O: a Session per connection turns the bytes
a client sent into the bytes it must get back. It never touches a socket.

The session is a two-state machine, as memcached's own connection is:

    LINE    waiting for a command line ending in "\\n" (a "\\r" before it is
            dropped). Each complete line is handled at once; pipelined
            clients may send many in one read.
    DATA    a storage command's line was accepted and exactly <bytes>+2 more
            bytes (the value and its "\\r\\n") are awaited.

A storage command whose item is too large is answered at once and its data
block is then counted off and dropped as it arrives (DATA with nowhere to
keep it), so even a declared size of 2 GB costs no memory and the stream
stays in step. A line that reaches 2048 bytes without an end closes the
connection, as in memcached, except for get/gets whose key lists may be long.

What each command does to the items is the store's business; this module
parses, validates, counts, and formats replies exactly as memcached 1.6 does.
"""

import logging
import os
import re
import resource
import time
import urllib.parse

from store import Mode, NonNumeric, Result, StoreError, parse_c_integer, parse_u64
from store.items import ITEM_OVERHEAD

log = logging.getLogger("memcached-lite.protocol")

VERSION = "1.6.18-lite"
KEY_MAX_LENGTH = 250
# memcached closes a connection whose line has no end within this many bytes...
MAX_LINE = 2048
# ...unless it is a get, whose key list may be long; this bounds its memory.
MAX_GET_LINE = 8 << 20
INT32_MAX = (1 << 31) - 1
MEMLIMIT_MIN_MB = 8

LINE, DATA = "LINE", "DATA"
FAILED = object()  # a store change that could not be persisted

ERROR = b"ERROR\r\n"
BAD_FORMAT = b"CLIENT_ERROR bad command line format\r\n"
BAD_CHUNK = b"CLIENT_ERROR bad data chunk\r\n"
BAD_EXPTIME = b"CLIENT_ERROR invalid exptime argument\r\n"
BAD_DELTA = b"CLIENT_ERROR invalid numeric delta argument\r\n"
NON_NUMERIC = b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n"
TOO_LARGE = b"SERVER_ERROR object too large for cache\r\n"
DELETE_USAGE = b"CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n"
END = b"END\r\n"
BADCLASS = b"BADCLASS invalid class id\r\n"
NOTSTARTED = b"NOTSTARTED no items to crawl\r\n"

_STORAGE_MODES = {
    b"set": Mode.SET,
    b"add": Mode.ADD,
    b"replace": Mode.REPLACE,
    b"append": Mode.APPEND,
    b"prepend": Mode.PREPEND,
    b"cas": Mode.CAS,
}
_CAS_COUNTERS = {Result.STORED: "cas_hits", Result.EXISTS: "cas_badval", Result.NOT_FOUND: "cas_misses"}


# -- numbers as memcached's safe_strto* functions read them ----------------


def strtoul32(token):
    """safe_strtoul: an unsigned long (64 bits here) stored into 32 bits."""
    n = parse_u64(token)
    return None if n is None else n & 0xFFFFFFFF


def strtol32(token):
    """safe_strtol: a long (64 bits here) stored into a signed 32-bit int."""
    n = parse_c_integer(token)
    if n is None or not -(1 << 63) <= n < (1 << 63):
        return None
    n &= 0xFFFFFFFF
    return n - (1 << 32) if n > INT32_MAX else n


# -- lru_crawler metadump: what memcached would say of an item --------------


def _slab_classes(smallest=96, factor=1.25, largest=512 * 1024):
    """memcached's default slab chunk sizes (-n 48, -f 1.25, 1 MB pages):
    item sizes up to each class's bound go in that class (1, 2, ...)."""
    sizes = []
    size = smallest
    while size < largest / factor:
        size += -size % 8  # CHUNK_ALIGN_BYTES
        sizes.append(size)
        size = int(size * factor)
    sizes.append(largest)
    return sizes


SLAB_CLASSES = _slab_classes()
# the bytes memcached's uriencode leaves as they are
_URI_SAFE = re.compile(rb"[A-Za-z0-9._~-]*")
# memcached accepts class ids 1..63 in `lru_crawler metadump 1,2,...`
MAX_SLAB_CLASS_ID = 63


def slab_class(size):
    """The class memcached with default settings would keep an item of this
    size in; larger items are chunked and reported in the largest class."""
    for i, bound in enumerate(SLAB_CLASSES):
        if size <= bound:
            return i + 1
    return len(SLAB_CLASSES)


def metadump_classes(token):
    """The class ids of `lru_crawler metadump <token>`: None for every class
    (`all`, `hash`), a set for a comma list, BADCLASS for a bad one."""
    if token in (b"all", b"hash"):
        return None
    classes = set()
    for part in token.split(b","):
        if not part:
            continue  # strtok skips empty fields
        n = strtoul32(part)
        if n is None or not 1 <= n <= MAX_SLAB_CLASS_ID:
            return BADCLASS
        classes.add(n)
    return classes


def _uriencode(key):
    if _URI_SAFE.fullmatch(key):
        return key  # most keys: no copy, no per-byte work
    return urllib.parse.quote_from_bytes(key, safe="").encode("ascii")


def metadump_line(head, classes=None):
    """memcached 1.6.18's metadump line for one item, or None if its class
    is not asked for. `la` is the time of the last write (reads are not
    recorded on disk) and `fetch` is always "no" for the same reason."""
    size = len(head.key) + head.value_len + ITEM_OVERHEAD + (4 if head.flags else 0)
    cls = slab_class(size)
    if classes is not None and cls not in classes:
        return None
    return b"key=%s exp=%d la=%d cas=%d fetch=no cls=%d size=%d\n" % (
        _uriencode(head.key),
        head.exptime if head.exptime else -1,
        int(head.stored),
        head.cas,
        cls,
        size,
    )


# -- what all sessions of one server share ---------------------------------


class Settings:
    """The server's knobs that the protocol needs to know."""

    def __init__(self, max_connections=1024, port=11211, listen="127.0.0.1"):
        self.max_connections = max_connections
        self.port = port
        self.listen = listen
        self.verbosity = 0


class Counters:
    """memcached's general counters that the protocol keeps."""

    NAMES = (
        "curr_connections total_connections cmd_get cmd_set cmd_flush cmd_touch "
        "get_hits get_misses delete_misses delete_hits incr_misses incr_hits "
        "decr_misses decr_hits cas_misses cas_hits cas_badval touch_hits touch_misses "
        "store_too_large persist_errors bytes_read bytes_written"
    ).split()

    def __init__(self):
        for name in self.NAMES:
            setattr(self, name, 0)

    def bump(self, name):
        setattr(self, name, getattr(self, name) + 1)

    def reset(self):
        # memcached's "stats reset" leaves the connection gauges alone
        for name in self.NAMES:
            if name != "curr_connections":
                setattr(self, name, 0)


class Server:
    """The state shared by every session: store, settings, counters, clock."""

    def __init__(self, store, settings=None, clock=time.time):
        self.store = store
        self.settings = settings or Settings()
        self.counters = Counters()
        self.clock = clock
        self.started = clock()

    def has_background_work(self):
        """Whether the store has housekeeping for the loop's idle moments."""
        return self.store.has_work()

    def background(self, budget):
        """Give the store's housekeeping about `budget` seconds."""
        self.store.tick(budget)

    def close(self):
        self.store.close()

    def general_stats(self):
        c, s, st = self.counters, self.store, self.settings
        now = self.clock()
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return [
            ("pid", os.getpid()),
            ("uptime", int(now - self.started)),
            ("time", int(now)),
            ("version", VERSION),
            ("pointer_size", 64),
            ("rusage_user", "%.6f" % usage.ru_utime),
            ("rusage_system", "%.6f" % usage.ru_stime),
            ("max_connections", st.max_connections),
            ("curr_connections", c.curr_connections),
            ("total_connections", c.total_connections),
            ("cmd_get", c.cmd_get),
            ("cmd_set", c.cmd_set),
            ("cmd_flush", c.cmd_flush),
            ("cmd_touch", c.cmd_touch),
            ("get_hits", c.get_hits),
            ("get_misses", c.get_misses),
            ("get_expired", s.get_expired),
            ("get_flushed", s.get_flushed),
            ("delete_misses", c.delete_misses),
            ("delete_hits", c.delete_hits),
            ("incr_misses", c.incr_misses),
            ("incr_hits", c.incr_hits),
            ("decr_misses", c.decr_misses),
            ("decr_hits", c.decr_hits),
            ("cas_misses", c.cas_misses),
            ("cas_hits", c.cas_hits),
            ("cas_badval", c.cas_badval),
            ("touch_hits", c.touch_hits),
            ("touch_misses", c.touch_misses),
            ("store_too_large", c.store_too_large),
            ("bytes_read", c.bytes_read),
            ("bytes_written", c.bytes_written),
            ("limit_maxbytes", s.cache.limit),
            ("threads", 1),
            ("bytes", s.bytes),
            ("curr_items", s.curr_items),
            ("total_items", s.total_items),
            ("evictions", 0),  # leaving memory loses nothing: the item stays on disk
            ("reclaimed", s.reclaimed),
            ("cache_items", len(s.cache)),
            ("cache_bytes", s.cache.used),
            ("cache_evictions", s.cache.evictions),
            ("persist_errors", c.persist_errors),
            ("items_loaded", s.loaded),
            ("files_quarantined", s.quarantined),
            ("startup_scan_done", int(s.scan_done)),
        ]

    def settings_stats(self):
        st, s = self.settings, self.store
        return [
            ("maxbytes", s.cache.limit),
            ("maxconns", st.max_connections),
            ("tcpport", st.port),
            ("udpport", 0),
            ("inter", st.listen),
            ("verbosity", st.verbosity),
            ("evictions", "on"),
            ("cas_enabled", "yes"),
            ("item_size_max", s.item_size_max),
            ("flush_enabled", "yes"),
            ("data_dir", s.dir.path),
        ]


# -- one connection's protocol ----------------------------------------------


class Session:
    """One client connection's protocol state: feed it bytes, get reply bytes.

    After `closing` turns true (quit, or a line too long) the reactor sends
    what was returned and closes the connection; later input is ignored.
    """

    def __init__(self, server):
        self.server = server
        self.store = server.store
        self.counters = server.counters
        self.closing = False
        self._buf = bytearray()
        self._state = LINE
        self._need = 0  # DATA: bytes still to come, value plus "\r\n"
        self._pending = None  # DATA: the storage command, or None to drop the data
        self._out = []
        self._room = None  # reply bytes the current command may still make
        self._retrieval = None  # a get paused at the output limit: what is left
        self._metadump = None  # a metadump under way: (live_heads generator, classes)
        # feed() stopped at a limit with work left (commands or a paused get)
        self.stopped_early = False
        self.counters.curr_connections += 1
        self.counters.total_connections += 1

    def close(self):
        """The connection is gone."""
        self.counters.curr_connections -= 1

    def feed(self, data=b"", limit=None, max_commands=None):
        """Take bytes from the client, return the replies they complete.

        Stops early once the replies reach about `limit` bytes (a multi-get
        pauses between two keys) or after `max_commands` commands; the rest
        stays buffered for the next call, and `stopped_early` says so. The
        reactor uses the first for backpressure, the second for fairness.
        """
        self.counters.bytes_read += len(data)
        if self.closing:
            return b""
        buf = self._buf
        if self._state is DATA and self._pending is None and not buf:
            # dropping an oversized value: never buffer what is thrown away
            take = min(len(data), self._need)
            self._need -= take
            data = data[take:]
            if self._need == 0:
                self._state = LINE
        buf += data
        out = self._out
        size = 0
        pos = 0
        commands = 0
        self.stopped_early = False
        while not self.closing:
            if (limit is not None and size >= limit) or (max_commands is not None and commands >= max_commands):
                self.stopped_early = True
                break
            before = len(out)
            self._room = None if limit is None else limit - size
            if self._retrieval is not None:
                keys, with_cas, exptime = self._retrieval
                self._retrieval = None
                self._retrieve_keys(keys, with_cas, exptime)
            elif self._metadump is not None:
                # a bucket of the dump counts as a command, so a dump of a
                # million items takes turns with the other clients
                commands += 1
                self._metadump_bucket()
            elif self._state is LINE:
                nl = buf.find(b"\n", pos)
                if nl < 0:
                    self._check_unended_line(buf, pos)
                    break
                end = nl - 1 if nl > pos and buf[nl - 1] == 13 else nl
                line = bytes(buf[pos:end])
                pos = nl + 1
                commands += 1
                self._command(line)
            else:
                if self._pending is None:
                    take = min(len(buf) - pos, self._need)
                    pos += take
                    self._need -= take
                    if self._need:
                        break
                    self._state = LINE
                    continue
                if len(buf) - pos < self._need:
                    break
                block = bytes(buf[pos : pos + self._need])
                pos += self._need
                self._state = LINE
                self._complete_storage(block)
            if limit is not None:
                size += sum(len(p) for p in out[before:])
        del buf[:pos]
        reply = b"".join(out)
        out.clear()
        self.counters.bytes_written += len(reply)
        return reply

    def _check_unended_line(self, buf, pos):
        pending = len(buf) - pos
        if pending <= MAX_LINE:
            return
        head = bytes(buf[pos : pos + 100]).lstrip(b" ")
        if pending > MAX_GET_LINE or not (head.startswith(b"get ") or head.startswith(b"gets ")):
            log.info("closing a connection: command line longer than %d bytes", MAX_LINE)
            self.closing = True

    # -- dispatch ---------------------------------------------------------

    def _command(self, line):
        if b"\0" in line:
            line = line[: line.index(b"\0")]  # memcached reads the line as a C string
        words = [w for w in line.split(b" ") if w]
        if self.server.settings.verbosity > 1:
            log.debug("<%s", line[:200])
        if not words or len(words[0]) < 2:
            self._out.append(ERROR)
            return
        entry = _COMMANDS.get(words[0])
        if entry is None:
            if words[-1].startswith(b"HTTP/"):
                self.closing = True  # memcached's defence against cross-protocol requests
            else:
                self._out.append(ERROR)
            return
        handler, least, most = entry
        if len(words) < least or (most is not None and len(words) > most):
            self._out.append(ERROR)
            return
        handler(self, words)

    def _reply(self, noreply, reply):
        if not noreply:
            self._out.append(reply)

    # -- storage commands: one path for all six ---------------------------

    def _storage(self, words):
        mode = _STORAGE_MODES[words[0]]
        noreply = words[-1] == b"noreply"
        key = words[1]
        if len(key) > KEY_MAX_LENGTH:
            return self._reply(noreply, BAD_FORMAT)
        flags = strtoul32(words[2])
        exptime = strtol32(words[3])
        length = strtol32(words[4])
        cas_unique = 0
        if mode is Mode.CAS:
            cas_unique = parse_u64(words[5])
        if None in (flags, exptime, length, cas_unique) or not 0 <= length <= INT32_MAX - 2:
            return self._reply(noreply, BAD_FORMAT)
        self._state = DATA
        self._need = length + 2
        if not self.store.item_fits(len(key), length, flags):
            self.counters.store_too_large += 1
            self._pending = None  # the data will be read and dropped
            if mode is Mode.SET:
                self._drop_old_value(key)
            return self._reply(noreply, TOO_LARGE)
        self._pending = (mode, key, flags, exptime, cas_unique, noreply)

    def _drop_old_value(self, key):
        # memcached drops the old value of a set refused for size, so a client
        # never reads a stale one; if the disk refuses, the one reply stays
        # the size error and the failure is logged and counted
        try:
            self.store.discard(key)
        except StoreError as e:
            self.counters.persist_errors += 1
            log.error("could not drop the old value of %r: %s", key, e)

    def _complete_storage(self, block):
        mode, key, flags, exptime, cas_unique, noreply = self._pending
        self._pending = None
        self.counters.cmd_set += 1
        if block[-2:] != b"\r\n":
            return self._reply(noreply, BAD_CHUNK)
        result = self._persist(self.store.store, mode, key, flags, exptime, block[:-2], cas_unique)
        if result is FAILED:
            return
        if mode is Mode.CAS:
            self.counters.bump(_CAS_COUNTERS[result])
        self._reply(noreply, result.value.encode() + b"\r\n")

    def _persist(self, change, *args):
        """Run a store call; FAILED if the disk failed it (a write not made
        durable, a file unreadable), and the client told so (never STORED)."""
        try:
            return change(*args)
        except StoreError as e:
            self.counters.persist_errors += 1
            # like memcached's out_errstring, shown even under noreply
            self._out.append(b"SERVER_ERROR " + str(e).encode("utf-8", "replace") + b"\r\n")
            return FAILED

    # -- retrieval ----------------------------------------------------------

    def _get(self, words):
        self._retrieve(words[1:], with_cas=words[0] == b"gets", exptime=None)

    def _gat(self, words):
        exptime = strtol32(words[1])
        if exptime is None:
            self._out.append(BAD_EXPTIME)
            return
        self._retrieve(words[2:], with_cas=words[0] == b"gats", exptime=exptime)

    def _retrieve(self, keys, with_cas, exptime):
        if any(len(key) > KEY_MAX_LENGTH for key in keys):
            self._out.append(BAD_FORMAT)
            return
        self._retrieve_keys(keys, with_cas, exptime)

    def _retrieve_keys(self, keys, with_cas, exptime):
        # Values are only referenced, and a long key list pauses once the
        # reply passes the room feed() gives it, so `get k k k ...` of a large
        # item cannot make the server hold gigabytes of copies.
        c = self.counters
        parts = []
        made = 0
        for i, key in enumerate(keys):
            if self._room is not None and made >= self._room:
                self._out.extend(parts)
                self._retrieval = (keys[i:], with_cas, exptime)
                return
            # memcached counts gat/gats as touches, not gets
            if exptime is None:
                kind, item = "get", self._persist(self.store.get, key)
            else:
                kind, item = "touch", self._persist(self.store.touch, key, exptime)
            if item is FAILED:
                return  # the SERVER_ERROR stands in for the rest of the reply
            c.bump("cmd_" + kind)
            if item is None:
                c.bump(kind + "_misses")
                continue
            c.bump(kind + "_hits")
            if with_cas:
                head = b"VALUE %s %d %d %d\r\n" % (key, item.flags, len(item.value), item.cas)
            else:
                head = b"VALUE %s %d %d\r\n" % (key, item.flags, len(item.value))
            parts.append(head)
            parts.append(item.value)
            parts.append(b"\r\n")
            made += len(head) + len(item.value) + 2
        parts.append(END)
        self._out.extend(parts)

    # -- other item commands ---------------------------------------------

    def _delete(self, words):
        # memcached looks for noreply only after the key: `delete noreply`
        # deletes the key "noreply"
        noreply = len(words) > 2 and words[-1] == b"noreply"
        if len(words) > 2:
            hold_is_zero = words[2] == b"0"
            valid = (len(words) == 3 and (hold_is_zero or noreply)) or (
                len(words) == 4 and hold_is_zero and noreply
            )
            if not valid:
                return self._reply(noreply, DELETE_USAGE)
        key = words[1]
        if len(key) > KEY_MAX_LENGTH:
            return self._reply(noreply, BAD_FORMAT)
        deleted = self._persist(self.store.delete, key)
        if deleted is not FAILED:
            self._hit_or_miss(noreply, "delete", b"DELETED\r\n" if deleted else None)

    def _arithmetic(self, words):
        incr = words[0] == b"incr"
        noreply = words[-1] == b"noreply"
        key = words[1]
        if len(key) > KEY_MAX_LENGTH:
            return self._reply(noreply, BAD_FORMAT)
        delta = parse_u64(words[2])
        if delta is None:
            return self._reply(noreply, BAD_DELTA)
        try:
            value = self._persist(self.store.incr_decr, key, delta, incr)
        except NonNumeric:
            return self._reply(noreply, NON_NUMERIC)
        if value is not FAILED:
            reply = None if value is None else b"%d\r\n" % value
            self._hit_or_miss(noreply, "incr" if incr else "decr", reply)

    def _touch(self, words):
        noreply = words[-1] == b"noreply"
        key = words[1]
        if len(key) > KEY_MAX_LENGTH:
            return self._reply(noreply, BAD_FORMAT)
        exptime = strtol32(words[2])
        if exptime is None:
            return self._reply(noreply, BAD_EXPTIME)
        self.counters.cmd_touch += 1
        item = self._persist(self.store.touch, key, exptime)
        if item is not FAILED:
            self._hit_or_miss(noreply, "touch", None if item is None else b"TOUCHED\r\n")

    def _hit_or_miss(self, noreply, counter, reply):
        """Count `<counter>_hits` and send reply, or, when reply is None,
        count `<counter>_misses` and send NOT_FOUND."""
        if reply is None:
            self.counters.bump(counter + "_misses")
            reply = b"NOT_FOUND\r\n"
        else:
            self.counters.bump(counter + "_hits")
        self._reply(noreply, reply)

    def _flush_all(self, words):
        noreply = words[-1] == b"noreply"
        delay = 0
        if len(words) != (2 if noreply else 1):
            delay = strtol32(words[1])
            if delay is None:
                return self._reply(noreply, BAD_EXPTIME)
        self.counters.cmd_flush += 1
        if self._persist(self.store.flush_all, delay) is FAILED:
            return
        self._reply(noreply, b"OK\r\n")

    # -- lru_crawler metadump ---------------------------------------------

    def _lru_crawler(self, words):
        # memcached 1.6.18 also knows crawl, tocrawl, sleep, enable and
        # disable; they steer its slab crawler thread, which we do not have
        if len(words) != 3 or words[1] != b"metadump":
            self._out.append(ERROR)
            return
        classes = metadump_classes(words[2])
        if classes is BADCLASS:
            self._out.append(BADCLASS)
        elif classes is not None and not classes:
            self._out.append(NOTSTARTED)
        else:
            # answered a bucket at a time by feed(), which pauses between
            # buckets at its limits; ended with END, as memcached's issue 667
            # asks, so a client knows the dump is whole without a timeout
            self._metadump = (self.store.live_heads(), classes)

    def _metadump_bucket(self):
        heads, classes = self._metadump
        try:
            bucket = next(heads)
        except StopIteration:
            self._metadump = None
            self._out.append(END)
            return
        lines = [metadump_line(head, classes) for head in bucket]
        lines = [line for line in lines if line is not None]
        if lines:
            self._out.append(b"".join(lines))

    # -- server commands --------------------------------------------------

    def _version(self, words):
        self._out.append(b"VERSION " + VERSION.encode() + b"\r\n")

    def _quit(self, words):
        self.closing = True

    def _shutdown(self, words):
        # memcached without -A; enabling it is a later option
        self._out.append(b"ERROR: shutdown not enabled\r\n")

    def _verbosity(self, words):
        noreply = words[-1] == b"noreply"
        level = strtoul32(words[1])
        if level is None:
            return self._reply(noreply, BAD_FORMAT)
        self.server.settings.verbosity = min(level, 2)
        # as memcached's -v: 1 logs connections, 2 every command
        logging.getLogger("memcached-lite").setLevel(logging.DEBUG if level else logging.INFO)
        self._reply(noreply, b"OK\r\n")

    def _cache_memlimit(self, words):
        noreply = words[-1] == b"noreply"
        megabytes = strtoul32(words[1])
        if megabytes is None:
            return self._reply(noreply, ERROR)
        if megabytes < MEMLIMIT_MIN_MB:
            return self._reply(noreply, b"MEMLIMIT_TOO_SMALL cannot set maxbytes to less than 8m\r\n")
        if megabytes > 1000000000:
            return self._reply(noreply, b"MEMLIMIT_ADJUST_FAILED input value is megabytes not bytes\r\n")
        self.store.cache.resize(megabytes << 20)
        self._reply(noreply, b"OK\r\n")

    def _stats(self, words):
        sub = words[1] if len(words) > 1 else None
        if sub is None:
            rows = self.server.general_stats()
        elif sub == b"settings":
            rows = self.server.settings_stats()
        elif sub == b"reset":
            self.counters.reset()
            self.store.reset_stats()
            self._out.append(b"RESET\r\n")
            return
        else:
            self._out.append(ERROR)
            return
        self._out.append(
            b"".join(b"STAT %s %s\r\n" % (name.encode(), str(value).encode()) for name, value in rows)
            + END
        )


# command -> (handler, fewest words, most words or None), as memcached counts them
_COMMANDS = {
    b"get": (Session._get, 2, None),
    b"gets": (Session._get, 2, None),
    b"gat": (Session._gat, 2, None),
    b"gats": (Session._gat, 2, None),
    b"set": (Session._storage, 5, 6),
    b"add": (Session._storage, 5, 6),
    b"replace": (Session._storage, 5, 6),
    b"append": (Session._storage, 5, 6),
    b"prepend": (Session._storage, 5, 6),
    b"cas": (Session._storage, 6, 7),
    b"delete": (Session._delete, 2, 4),
    b"incr": (Session._arithmetic, 3, 4),
    b"decr": (Session._arithmetic, 3, 4),
    b"touch": (Session._touch, 3, 4),
    b"flush_all": (Session._flush_all, 1, 3),
    b"version": (Session._version, 1, None),
    b"quit": (Session._quit, 1, None),
    b"verbosity": (Session._verbosity, 2, 3),
    b"cache_memlimit": (Session._cache_memlimit, 2, 3),
    b"stats": (Session._stats, 1, None),
    b"shutdown": (Session._shutdown, 1, None),
    b"lru_crawler": (Session._lru_crawler, 2, None),
}
