"""`watch`: memcached 1.6.18's live log streams (its `logger.c`).

A connection that sends `watch [stream ...]` (bare: `fetchers`) gets `OK`
and from then on only log lines, one per event, in memcached's format:

    ts=<sec>.<usec> gid=<n> type=item_get key=<k> status=found clsid=1 cfd=25 size=3

It runs no more commands (memcached stops reading it). `Watchers`, one per
`handlers.Server`, is the hub: the events' sources call it only when some
watcher takes their stream (the store through `store.watch`, set only
while a watcher wants an item stream; the sessions after one test of
`flags`), so with no watcher an event costs one attribute test and nothing
is formatted.

| stream | lines | emitted by |
| --- | --- | --- |
| fetchers | `item_get` (found, not_found, expired, flushed) | every item lookup a command makes (store `_live`, the get fast path; a set's own lookup) |
| mutations | `item_store` (stored, not_stored, exists, not_found) | the one storage path (`StorageRequest.complete`) |
| evictions | `eviction` | `--disk-policy evict` removing an item to make room |
| connevents | `conn_new`, `conn_close` | a session attached to / closed by the reactor |
| rawcmds sysevents proxyreqs proxyevents proxyuser | (accepted; nothing here emits them: no proxy, no LRU crawler or slab mover) | |

Each watcher holds at most `-o watcher_logbuf_size` bytes not yet taken
by the kernel (`BUFFER`, 256 KiB, unless given; sized when it attaches, as
memcached's buffer): a line goes in only if it leaves `RESERVE` bytes free,
as memcached asks its buffer for (room for the notice); else it is dropped
and counted, and the next line that fits is preceded by `skipped=<n>`, as
memcached tells a slow watcher. A watcher never slows the server. memcached
puts the `OK` in that buffer too: under `watcher_logbuf_size=0` a watcher is
attached with no answer and every line is skipped, here as there.
"""

from .base import ERROR

FETCHERS, MUTATIONS, EVICTIONS, CONNEVENTS, RAWCMDS, SYSEVENTS, PROXYREQS, PROXYEVENTS, PROXYUSER = (
    1 << i for i in range(9)
)
# memcached 1.6.18's process_watch_command accepts these names
STREAMS = {
    b"rawcmds": RAWCMDS,
    b"evictions": EVICTIONS,
    b"fetchers": FETCHERS,
    b"mutations": MUTATIONS,
    b"sysevents": SYSEVENTS,
    b"connevents": CONNEVENTS,
    b"proxyreqs": PROXYREQS,
    b"proxyevents": PROXYEVENTS,
    b"proxyuser": PROXYUSER,
}
ITEM_STREAMS = FETCHERS | MUTATIONS | EVICTIONS  # what the store emits
WATCHER_LIMIT = 20  # memcached's WATCHER_LIMIT
BUFFER = 256 * 1024  # memcached's default watcher_logbuf_size (LOGGER_WATCHER_BUF_SIZE)
RESERVE = 128  # memcached asks its buffer for a line's length and this (a skipped notice's room)
OK = b"OK\r\n"

STORE_STATUS = {"STORED": "stored", "NOT_STORED": "not_stored", "EXISTS": "exists", "NOT_FOUND": "not_found"}
STORE_CMD = {"SET": "set", "ADD": "add", "REPLACE": "replace", "APPEND": "append", "PREPEND": "prepend",
             "CAS": "cas"}
CLOSE_REASONS = ("error", "normal", "idle_timeout", "shutdown")

# memcached's uriencode leaves these as they are
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def uriencode(key):
    if all(c in _UNRESERVED for c in key):
        return key.decode()
    return "".join(chr(c) if c in _UNRESERVED else "%%%02X" % c for c in key)


def _slab_sizes():
    # memcached's default slab classes: 96 bytes (an item header and -n 48),
    # each 1.25 times the last rounded up to 8, up to slab_chunk_max (512 KiB)
    sizes, size = [], 96
    while size <= (512 * 1024) / 1.25:
        sizes.append(size)
        size = int(size * 1.25)
        size += (-size) % 8
    sizes.append(512 * 1024)
    return sizes


SLAB_SIZES = _slab_sizes()


def slab_class(nkey, nbytes):
    """The slab class memcached would put an item of this key and value
    length in (its header of 48 bytes, the key's NUL, the value's CRLF, the
    cas): the `clsid` of its log lines."""
    total = 48 + nkey + 1 + nbytes + 2 + 8
    for i, size in enumerate(SLAB_SIZES):
        if total <= size:
            return i + 1
    return len(SLAB_SIZES)  # a chunked item: its header's class, the largest


class Watcher:
    """One watching connection: its streams, its bound (bytes not taken by
    the kernel), the lines not taken yet, the lines dropped since the last
    one it got."""

    __slots__ = ("session", "flags", "size", "lines", "skipped")

    def __init__(self, session, flags, size=BUFFER):
        self.session = session
        self.flags = flags
        self.size = size
        self.lines = bytearray()
        self.skipped = 0

    def offer(self, line):
        """Keep `line` for the watcher; False if it had no room (dropped)."""
        if len(self.lines) + len(line) + RESERVE + self.session.unsent() > self.size:
            self.skipped += 1
            return False
        woke = not self.lines
        if self.skipped:
            self.lines += b"skipped=%d\n" % self.skipped
            self.skipped = 0
        self.lines += line
        if woke:
            self.session.wake()
        return True


class Watchers:
    """The server's log hub: who watches which streams, and one method per
    kind of line (see the module's table)."""

    def __init__(self, store, clock):
        self.store = store
        self.clock = clock
        self.watchers = []
        self.flags = 0  # the streams someone watches
        self.gid = 0  # memcached's global id of a log entry
        self.cfd = -1  # the connection whose command runs (set by the session)
        # memcached's log_worker_written, log_watcher_skipped, log_watcher_sent
        self.written = self.skipped = self.sent = 0

    def add(self, session, flags, size=BUFFER):
        """A new watcher of `size` bytes; False past WATCHER_LIMIT."""
        if len(self.watchers) >= WATCHER_LIMIT:
            return False
        self.watchers.append(Watcher(session, flags, size))
        self._changed()
        return True

    def remove(self, session):
        self.watchers = [w for w in self.watchers if w.session is not session]
        self._changed()

    def take(self, session):
        """The lines waiting for `session` (a watcher), now its to send."""
        for w in self.watchers:
            if w.session is session:
                lines, w.lines = bytes(w.lines), bytearray()
                return lines
        return b""

    def _changed(self):
        self.flags = 0
        for w in self.watchers:
            self.flags |= w.flags
        # the store calls back only while an item stream is watched
        self.store.watch = self if self.flags & ITEM_STREAMS else None

    def _emit(self, stream, body):
        self.gid += 1
        now = self.clock()
        sec = int(now)
        line = b"ts=%d.%d gid=%d %s\n" % (sec, int((now - sec) * 1e6), self.gid, body.encode())
        self.written += 1
        for w in self.watchers:
            if w.flags & stream:
                if w.offer(line):
                    self.sent += 1
                else:
                    self.skipped += 1

    # -- the lines ------------------------------------------------------------

    def item_get(self, key, status, item=None):
        """fetchers: a command's lookup of `key`: found (with `item`),
        not_found, expired or flushed."""
        if not self.flags & FETCHERS:
            return
        if item is None:
            clsid = size = 0
        else:
            size = len(item.value)
            clsid = slab_class(len(key), size)
        self._emit(FETCHERS, "type=item_get key=%s status=%s clsid=%d cfd=%d size=%d" % (
            uriencode(key), status, clsid, self.cfd, size))

    def too_large(self, key, mode):
        """mutations: a storage command refused for size. memcached 1.6.18's
        call passes the fd where the class goes (and no fd): its line says
        clsid=<fd>; this one does too, with the fd as cfd."""
        if not self.flags & MUTATIONS:
            return
        self._emit(MUTATIONS, "type=item_store key=%s status=too_large cmd=%s ttl=0 clsid=%d cfd=%d size=0" % (
            uriencode(key), STORE_CMD[mode.name], self.cfd, self.cfd))

    def item_store(self, key, result, mode, ttl, size):
        """mutations: a storage command's outcome (a store.Result, a
        store.Mode, the relative ttl, the stored value's length)."""
        if not self.flags & MUTATIONS:
            return
        self._emit(MUTATIONS, "type=item_store key=%s status=%s cmd=%s ttl=%d clsid=%d cfd=%d size=%d" % (
            uriencode(key), STORE_STATUS[result.name], STORE_CMD[mode.name], ttl,
            slab_class(len(key), size), self.cfd, size))

    def eviction(self, key, exptime, fetched, atime, size, now):
        """evictions: an item removed to make room (its record's header)."""
        if not self.flags & EVICTIONS:
            return
        ttl = int(exptime - now) if exptime > 0 else -1
        self._emit(EVICTIONS, "type=eviction key=%s fetch=%s ttl=%d la=%d clsid=%d size=%d" % (
            uriencode(key), "yes" if fetched else "no", ttl, int(now - atime), slab_class(len(key), size), size))

    def conn_new(self, session):
        if self.flags & CONNEVENTS:
            self._emit(CONNEVENTS, "type=conn_new %s cfd=%d" % (_peer(session), session.fd))

    def conn_close(self, session, reason):
        if self.flags & CONNEVENTS:
            self._emit(CONNEVENTS, "type=conn_close %s reason=%s cfd=%d" % (_peer(session), reason, session.fd))


def _peer(session):
    addr = session.addr
    if isinstance(addr, tuple) and len(addr) >= 2:
        return "rip=%s rport=%d transport=tcp" % (addr[0], addr[1])
    return "rip=unix rport=0 transport=local"  # a unix socket's peer (memcached's words)


def watch(session, words):
    """watch [stream ...]: the connection becomes a watcher (OK), or
    memcached's refusal."""
    if words[-1] == b"noreply":
        # memcached: noreply silences whatever it answers, and `noreply` is
        # then read as a stream it does not know: never attached, no reply
        return
    if not session.server.settings.watch_enabled:
        return session.out.append(b"CLIENT_ERROR watch commands not allowed\r\n")
    if session.out or session.pipelined:
        # commands pipelined before it in this turn (a noreply one too: its
        # response is still on memcached's stack, resp_has_stack)
        return session.out.append(b"ERROR cannot pipeline other commands before watch\r\n")
    flags = 0
    for name in words[1:]:
        stream = STREAMS.get(name)
        if stream is None:
            return session.out.append(ERROR)
        flags |= stream
    size = session.server.settings.watcher_logbuf_size
    if not session.server.watchers.add(session, flags or FETCHERS, size):
        return session.out.append(b"WATCHER_TOO_MANY log watcher limit reached\r\n")
    if len(OK) <= size:  # memcached writes it into the watcher's buffer, if it fits
        session.out.append(OK)
    session.become_watcher()


COMMANDS = {b"watch": (watch, 1, None)}
