"""memcached's text protocol, sans-I/O: a Session per connection turns the bytes
a client sent into the bytes it must get back. It never touches a socket.

The session's states, as memcached names its connection's:

    state    waits for                          then
    -------  ---------------------------------  ----------------------------------
    LINE     a command line ending in "\\n"     the command runs (one table,
             (a "\\r" before it is dropped)      `commands.COMMANDS`); a storage
                                                command goes to DATA or SWALLOW
    DATA     exactly `pending.need` bytes (a    pending.complete(block), then LINE
             value and its "\\r\\n")
    SWALLOW  `n` bytes of a refused value       dropped as they come, never
             (memcached's conn_swallow)         buffered, then LINE

A binary-protocol connection (memcached's, detected from its first byte,
0x80, under `-B auto`; every connection under `-B binary`) has one state of
its own and shares the other two:

    BIN_HEADER  a 24-byte header, then its extras  commands.binary.dispatch;
                and key (a bad magic closes)       a write's value goes to
                                                   DATA (`need` = its length),
                                                   a refused body to SWALLOW

A connection that ran `watch` becomes a watcher (memcached's conn_watch):
it runs no more commands, its input is dropped, and each feed returns the
log lines the server's `Watchers` (commands/watch.py) kept for it; it calls
`wake` (the reactor's, given to attach) when lines wait and no input came.

Besides the state, one slot holds resumable work (`work`: a multi-get paused
at a limit, a running metadump); while it is there it runs before any new
line, one `step` a turn of the feed loop.

A line that reaches 2048 bytes without an end closes the connection, as in
memcached, except for get/gets whose key lists may be long. What each command
does is its family's business (the `commands` package); this module frames,
dispatches, turns a `StoreError` into its reply (`_fail`, the one funnel),
holds replies for `--fsync always`, and runs plain `get` lines by a fast path.
"""

import logging

from commands import COMMANDS, binary
from commands.auth import AuthFileError, load_auth_file, unauthenticated
from commands.base import ERROR, INFINITY, KEY_MAX_LENGTH, VERSION
from commands.retrieval import get_hits, retrieve_keys
from commands.stats import PrefixStats
from commands.watch import BUFFER, Watchers
from store import DiskFull, StoreError

__all__ = ["AuthFileError", "Deferred", "Server", "Session", "Settings", "VERSION", "load_auth_file"]

log = logging.getLogger("memcached-lite.protocol")

# memcached closes a connection whose line has no end within this many bytes...
MAX_LINE = 2048
# ...unless it is a get, whose key list may be long; this bounds its memory.
MAX_GET_LINE = 8 << 20

# memcached's default -R: commands a connection runs before the others get a turn
REQS_PER_EVENT = 20

LINE, DATA, SWALLOW, BIN_HEADER = "LINE", "DATA", "SWALLOW", "BIN_HEADER"


class Deferred:
    """A command's reply that waits for the store's batch (`--fsync always`):
    the reply itself once the batch is durable, `SERVER_ERROR <reason>` if
    making it durable failed (even under noreply, as for any failed write);
    for a binary `request`, that error as its packet."""

    __slots__ = ("batch", "reply", "request")

    def __init__(self, batch, reply, request=None):
        self.batch = batch
        self.reply = reply
        self.request = request

    def __len__(self):
        return len(self.reply)

    def render(self):
        if not self.batch.committed:
            raise RuntimeError("a reply released before its batch was committed")
        if self.batch.error is None:
            return self.reply
        if self.request is not None:
            return binary.server_error(self.request, self.batch.error)
        return b"SERVER_ERROR " + self.batch.error.encode("utf-8", "replace") + b"\r\n"


def _render(parts):
    return b"".join(p if isinstance(p, bytes) else p.render() for p in parts)


# -- what all sessions of one server share ---------------------------------


class Settings:
    """The server's knobs that the protocol needs to know."""

    def __init__(self, max_connections=1024, port=11211, listen="127.0.0.1"):
        self.max_connections = max_connections
        self.port = port
        self.listen = listen
        # issue 7's observability and safety switches (-D, -X, -Y, --max-disk)
        self.prefix_delimiter = b":"  # -D: where a key's prefix ends for `stats detail`
        self.detail_enabled = False  # `stats detail on`, or -D
        self.dump_enabled = True  # -X turns off key dumps (`stats cachedump`, metadump)
        self.auth_file = None  # -Y: memcached's ASCII authentication
        self.protocol = "auto"  # -B: auto, ascii or binary
        self.sasl_file = None  # -S: the password file (MEMCACHED_SASL_PWDB, --sasl-file)
        self.verbosity = 0
        self.shutdown_enabled = False  # -A
        self.flush_enabled = True  # -F turns it off
        self.watch_enabled = True  # -W turns it off
        self.watcher_logbuf_size = BUFFER  # -o watcher_logbuf_size (given in KiB): a watcher's bound, bytes
        self.idle_timeout = 0  # -o idle_timeout=N; 0: never
        self.tcp_backlog = 1024  # the listening socket's backlog (memcached's -b)
        self.reqs_per_event = REQS_PER_EVENT  # -R
        self.domain_socket = None  # -s: the unix socket's path, when it listens on one
        self.unix_mask = 0o700  # -a: its file's mode
        self.cas_enabled = True  # -C turns off the cas replies show and compare
        # -Z and its certificates, shown by `stats settings` as memcached does
        self.tls_enabled = False
        self.tls_cert = None
        self.tls_key = None
        self.tls_ca = None
        self.tls_verify_mode = 0
        # what `stats` names in memcached's `libevent` row: the reactor's
        # selector class (the protocol knows no I/O of its own)
        self.event_loop = "selectors"


class Counters:
    """memcached's general counters that the protocol keeps."""

    NAMES = (
        "curr_connections total_connections cmd_get cmd_set cmd_flush cmd_touch "
        "get_hits get_misses delete_misses delete_hits incr_misses incr_hits "
        "decr_misses decr_hits cas_misses cas_hits cas_badval touch_hits touch_misses "
        "store_too_large persist_errors sync_errors bytes_read bytes_written "
        "rejected_connections idle_kicks"
    ).split()
    NAMES += ("cmd_meta", "store_no_memory", "auth_cmds", "auth_errors", "conn_yields")

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

    def __init__(self, store, settings=None, clock=None):
        self.store = store
        self.settings = settings or Settings()
        self.counters = Counters()
        # the store's clock unless told: `stats time` and the expiry it
        # reports must be the same time (store/clock.py)
        self.clock = clock or store.clock
        self.sessions = set()  # the open connections' sessions, for `stats conns`
        self.listener = None  # (fd, address) of the listening socket, set by the reactor
        self.prefixes = PrefixStats()  # `stats detail`
        self.auth = None  # the -Y file's (user, password) pairs, or None: no auth
        self.sasl = None  # -S: the SASL password file's pairs, or None: no SASL
        self.conn_structs = 1  # memcached's connection_structures: the most at once, listener included
        self.started = self.clock()
        # the time of the loop's turn, set by a loop that drives the sessions
        # (the reactor, once an iteration): a command's stamp for `stats
        # conns` without a clock read per feed; None: each feed reads the clock
        self.now = None
        # set by the reactor: request_stop(graceful) ends the loop (`shutdown`)
        self.request_stop = None
        self.watchers = Watchers(store, self.clock)  # `watch`'s log streams

    def has_background_work(self):
        """Whether the store has housekeeping for the loop's idle moments."""
        return self.store.has_work()

    def background(self, budget):
        """Give the store's housekeeping about `budget` seconds."""
        self.store.tick(budget)

    def has_idle_work(self):
        """Whether the store has work for moments when no client waits."""
        return self.store.has_idle_work()

    def idle_background(self, budget):
        """Give the store's idle work about `budget` seconds."""
        self.store.idle_tick(budget)

    def commit(self):
        """Make the writes of this loop iteration durable (`--fsync always`);
        afterwards the sessions holding replies may release them."""
        return self.store.commit()

    def seconds_to_sync(self):
        """How long the loop may sleep before sync_if_due has work, or None."""
        return self.store.seconds_to_sync()

    def sync_if_due(self):
        """`--fsync everysec`'s timer: a barrier about once a second."""
        try:
            self.store.sync_if_due()
        except StoreError:
            self.counters.sync_errors += 1

    def close(self):
        self.store.close()

    def load_auth(self, path):
        """Read -Y's file of `user:password` lines and require authentication;
        raises AuthFileError (the old entries stay, as memcached keeps them
        when a reload fails)."""
        self.auth = load_auth_file(path)
        self.settings.auth_file = path

    def load_sasl(self, path):
        """-S: read the SASL password file (memcached's MEMCACHED_SASL_PWDB,
        `user:password` lines) and require binary authentication; raises
        AuthFileError (the old entries stay)."""
        self.sasl = load_auth_file(path)
        self.settings.sasl_file = path

    def reload_auth(self):
        """Read the -Y file and the -S password file again (on SIGHUP); True
        if they loaded, False (logged, the old entries kept) if not, None
        without either."""
        if self.settings.sasl_file is not None:
            try:
                self.load_sasl(self.settings.sasl_file)
            except AuthFileError as e:
                log.error("SASL password file not reloaded, the old one stays: %s", e)
                return False
            log.info("SASL password file %s reloaded: %d users", self.settings.sasl_file, len(self.sasl))
        if self.settings.auth_file is None:
            return None if self.settings.sasl_file is None else True
        try:
            self.load_auth(self.settings.auth_file)
        except AuthFileError as e:
            log.error("auth file not reloaded, the old one stays: %s", e)
            return False
        log.info("auth file %s reloaded: %d users", self.settings.auth_file, len(self.auth))
        return True


# -- one connection's protocol ----------------------------------------------


class Session:
    """One client connection's protocol state: feed it bytes, get reply bytes.

    After `closing` turns true (quit, or a line too long) the reactor sends
    what was returned and closes the connection; later input is ignored.

    Under `--fsync always`, while the store has an open batch, feed() returns
    nothing and `holding` is true: the replies wait until the reactor has
    committed the batch and calls release(), so no reply (not even a read of
    a value written in the batch) leaves before what it depends on is durable.

    The part of it a command may use is listed in the `commands` package's
    docstring: `out`, `server`, `store`, `counters`, `room`, `closing`,
    `authenticated`, `expect`, `swallow`, `resume_later`.
    """

    def __init__(self, server):
        self.server = server
        self.store = server.store
        self.counters = server.counters
        self.closing = False
        self.authenticated = server.auth is None and server.sasl is None
        self.out = []  # the reply parts of the commands running now
        self.room = INFINITY  # reply bytes the current command may still make
        self.work = None  # resumable work: a paused multi-get, a running metadump
        self._buf = bytearray()
        self._state = self._idle = LINE  # _idle: the state between commands
        # how the bytes are framed, when not as text lines: the first byte
        # decides under -B auto, -B binary frames every packet as binary
        protocol = server.settings.protocol
        self._framing = None
        self.request = None  # the binary request running (the error funnel's reply)
        if protocol == "auto":
            self._framing = self._negotiate
        elif protocol == "binary":
            self._start_binary()
        self._pending = None  # DATA: what waits for the data block
        self._need = 0  # SWALLOW: bytes still to drop
        self._held = []  # replies waiting for the store's batch
        self._searched = 0  # bytes of the unended line known to hold no "\n"
        self._turn_over = False  # the work asked to wait for the other clients
        # feed() stopped at a limit with work left (commands or a paused get)
        self.stopped_early = False
        self.commands = 0  # command lines run so far: the idle timer's clock, `stats conns`
        self._turn_start = 0  # `commands` when this turn's feed began (`pipelined`)
        self.counters.curr_connections += 1
        self.counters.total_connections += 1
        # `stats conns`: the socket's description, filled in by attach()
        self.fd = None
        self.addr = None
        self.listen_addr = None
        self._unsent = None
        self._wake = None
        self.close_reason = "normal"  # what `watch connevents` says of its close
        self.last_command = server.clock()
        server.sessions.add(self)
        server.conn_structs = max(server.conn_structs, len(server.sessions) + 1)

    def attach(self, fd, addr, listen_addr, unsent=None, wake=None):
        """What the reactor tells about the socket, for `stats conns`: its file
        descriptor, peer and local address, and unsent() the bytes of replies
        the kernel has not taken yet; wake() asks for a feed with no input
        (a watcher's lines wait)."""
        self.fd, self.addr, self.listen_addr, self._unsent = fd, addr, listen_addr, unsent
        self._wake = wake
        self.server.watchers.conn_new(self)

    def close(self):
        """The connection is gone."""
        self.counters.curr_connections -= 1
        self.server.sessions.discard(self)
        watchers = self.server.watchers
        if self._framing == self._watching:
            watchers.remove(self)
        if self.fd is not None:
            watchers.conn_close(self, self.close_reason)

    def unsent(self):
        """Bytes of replies the kernel has not taken yet (0 if not told)."""
        return self._unsent() if self._unsent is not None else 0

    def wake(self):
        """Ask the loop for a feed with no input (a watcher's lines wait)."""
        if self._wake is not None:
            self._wake()

    def become_watcher(self):
        """`watch` answered OK: from the next feed on, only log lines."""
        self._framing = self._watching
        self._turn_over = True  # the commands after it are never run

    def _watching(self, data, limit, max_commands):
        # memcached stops reading a watcher: what it sends is dropped
        self._buf.clear()
        self.stopped_early = False
        lines = self.server.watchers.take(self)
        self.counters.bytes_written += len(lines)
        return lines

    # -- what the reactor and `stats` ask -----------------------------------

    @property
    def state(self):
        """LINE, DATA, SWALLOW or BIN_HEADER (for the reactor's -vvv log)."""
        return self._state

    @property
    def awaiting_command(self):
        """Between commands, with nothing left to run: where memcached's
        idle_timeout may close a connection (never in a value's data)."""
        # (a watcher never: memcached's idle timer does not look at conn_watch)
        return (
            self._state is self._idle and self.work is None and not self.stopped_early
            and self._framing != self._watching
        )

    @property
    def pipelined(self):
        """Whether commands ran before the running one in this turn (their
        replies, even none under noreply, are not sent yet)."""
        return self.commands - self._turn_start > 1

    @property
    def holding(self):
        """Replies wait for the store's batch to be committed."""
        return bool(self._held)

    @property
    def buffered(self):
        """Bytes of input not parsed yet (`stats`' read_buf_bytes)."""
        return len(self._buf)

    @property
    def conn_state(self):
        """memcached's name for what this connection is doing (`stats conns`)."""
        if self.closing:
            return "conn_closing"
        if self._state is not self._idle:
            return "conn_nread"
        if self._unsent is not None and self._unsent():
            return "conn_mwrite"
        return "conn_read" if self.commands or self._buf else "conn_new_cmd"

    # -- what a command may do (see the `commands` package) ----------------

    def expect(self, pending):
        """Go to DATA: read pending.need bytes, then pending.complete(self, block)."""
        self._state = DATA
        self._pending = pending

    def swallow(self, size):
        """Go to SWALLOW: read and drop the next `size` bytes."""
        self._state = SWALLOW
        self._need = size

    def resume_later(self, work, end_turn):
        """Run work.step(self) next, before any new line; with end_turn, only
        after the other connections had their turn."""
        self.work = work
        if end_turn:
            self._turn_over = True

    # -- the feed loop --------------------------------------------------------

    def release(self):
        """The held replies, once the reactor committed the store's batch;
        each command refused because its batch failed counts a persist error."""
        held = self._held
        self.counters.persist_errors += sum(
            1 for p in held if isinstance(p, Deferred) and p.batch.error is not None
        )
        reply = _render(held)
        held.clear()
        self.counters.bytes_written += len(reply)
        return reply

    def feed(self, data=b"", limit=None, max_commands=None):
        """Take bytes from the client, return the replies they complete.

        Stops early once the replies reach about `limit` bytes (a multi-get
        pauses between two keys) or after `max_commands` commands; the rest
        stays buffered for the next call, and `stopped_early` says so. The
        reactor uses the first for backpressure, the second for fairness.
        """
        if self.server.watchers.flags:
            # the lines this feed's commands make name its connection
            self.server.watchers.cfd = -1 if self.fd is None else self.fd
        if self._framing is not None:
            return self._framing(data, limit, max_commands)
        self.counters.bytes_read += len(data)
        if self.closing:
            return b""
        buf = self._buf
        if self._state is SWALLOW and not buf:
            data = data[self._drop(len(data)) :]  # never buffer what is thrown away
        buf += data
        out = self.out
        store = self.store
        durability = store.durability
        size_limit = INFINITY if limit is None else limit
        command_limit = INFINITY if max_commands is None else max_commands
        size = 0
        pos = 0
        commands = 0
        deferred = False
        searched, self._searched = self._searched, 0
        self.stopped_early = False
        self._turn_start = self.commands
        self.last_command = self.server.now or self.server.clock()
        # plain `get` lines skip _command's dispatch (they are most of a
        # cache's traffic); anything that needs more goes the general way
        plain = self.authenticated and self.server.settings.verbosity <= 1
        while not self.closing:
            if size >= size_limit or commands >= command_limit or self._turn_over:
                self._turn_over = False
                self.stopped_early = True
                if commands >= command_limit:
                    self.counters.conn_yields += 1  # memcached's reqs_per_event yield
                break
            before = len(out)
            self.room = size_limit - size
            state = self._state
            try:
                work = self.work
                if work is not None:
                    self.work = None
                    commands += work.COUNTS
                    work.step(self)
                elif state is LINE:
                    if plain and durability.batch is None and buf.startswith(b"get ", pos):
                        ran = self._plain_gets(buf, pos, command_limit - commands, size_limit - size)
                        if ran is not None:
                            searched = 0  # it was of the line just run
                            pos, n, made = ran
                            commands += n
                            size += made
                            if pos == len(buf) and self.work is None:
                                break  # all run: no need to look for another line
                            continue
                    nl = buf.find(b"\n", pos + searched)
                    searched = 0
                    if nl < 0:
                        # a line still without its end: the next feed searches
                        # only what arrives, so a long line trickling in costs
                        # O(bytes), not O(bytes^2)
                        self._searched = len(buf) - pos
                        self._check_unended_line(buf, pos)
                        break
                    end = nl - 1 if nl > pos and buf[nl - 1] == 13 else nl
                    line = bytes(buf[pos:end])
                    pos = nl + 1
                    commands += 1
                    self._command(line)
                elif state is SWALLOW:
                    pos += self._drop(len(buf) - pos)
                    if self._state is SWALLOW:
                        break
                    continue
                if self._state is DATA:
                    # (a storage command's data that came with its line is
                    # handled in the same turn of the loop)
                    pending = self._pending
                    if len(buf) - pos < pending.need:
                        if state is DATA:
                            break
                    else:
                        block = bytes(buf[pos : pos + pending.need])
                        pos += pending.need
                        self._state = LINE
                        self._pending = None
                        pending.complete(self, block)
            except StoreError as e:
                self._fail(e)
            used = durability.used
            if used is not None:
                # the command wrote or read a batch (the store says which):
                # its reply is known only once that batch is durable
                durability.used = None
                out[before:] = [Deferred(used, b"".join(out[before:]))]
                deferred = True
            if limit is not None:
                size += sum(map(len, out[before:]))
            if (
                pos == len(buf)
                and self._state is LINE
                and self.work is None
                and commands < command_limit
                and size < size_limit
            ):
                break  # all run, and no limit reached: nothing for another turn to do
        del buf[:pos]
        return self._deliver(deferred)

    def _deliver(self, deferred):
        """The replies made, or (held for the store's batch) nothing yet."""
        out = self.out
        if deferred or self._held or self.store.durability.batch is not None:
            if out:
                self._held.extend(out)
                out.clear()
            return b""
        reply = b"".join(out)
        out.clear()
        self.counters.bytes_written += len(reply)
        return reply

    def _drop(self, available):
        """SWALLOW: drop up to `available` bytes of the refused value; how many."""
        take = min(available, self._need)
        self._need -= take
        if self._need == 0:
            self._state = self._idle
        return take

    # -- the binary protocol's framing ------------------------------------

    def _negotiate(self, data, limit, max_commands):
        """-B auto: the connection's first byte picks its protocol, as
        memcached's try_read_command_negotiate does."""
        if not data:
            return b""
        if data[0] == binary.REQUEST_MAGIC:
            self._start_binary()
        else:
            self._framing = None
        return self.feed(data, limit, max_commands)

    def _start_binary(self):
        self._framing = self._feed_binary
        self._state = self._idle = BIN_HEADER

    def _feed_binary(self, data, limit, max_commands):
        """feed() for a binary connection: packets, each a header (and its
        extras and key), then a write's value; the same limits, the same
        holding of replies for --fsync always as for text."""
        self.counters.bytes_read += len(data)
        if self.closing:
            return b""
        buf = self._buf
        if self._state is SWALLOW and not buf:
            data = data[self._drop(len(data)) :]
        buf += data
        out = self.out
        durability = self.store.durability
        size_limit = INFINITY if limit is None else limit
        command_limit = INFINITY if max_commands is None else max_commands
        size = pos = commands = 0
        deferred = False
        self.stopped_early = False
        self.last_command = self.server.now or self.server.clock()
        header_size = binary.HEADER_SIZE
        while not self.closing:
            if size >= size_limit or commands >= command_limit:
                self.stopped_early = True
                if commands >= command_limit:
                    self.counters.conn_yields += 1
                break
            before = len(out)
            state = self._state
            try:
                if state is BIN_HEADER:
                    have = len(buf) - pos
                    if have < header_size:
                        break
                    if buf[pos] != binary.REQUEST_MAGIC:
                        log.info("closing a binary connection: invalid magic %#x", buf[pos])
                        self.closing, self.close_reason = True, "error"  # memcached closes without a reply
                        break
                    request = binary.parse_header(buf, pos)
                    start = pos + header_size
                    end = start + request.extlen + request.keylen
                    if len(buf) < end:
                        break  # memcached waits for the extras and the key too
                    request.extras = bytes(buf[start : start + request.extlen])
                    request.key = bytes(buf[start + request.extlen : end])
                    pos = end
                    commands += 1
                    self.commands += 1
                    self.request = request
                    if self.server.settings.verbosity > 1:
                        log.debug("<binary opcode %#04x key %r", request.opcode, request.key[:200])
                    binary.dispatch(self, request)
                elif state is SWALLOW:
                    pos += self._drop(len(buf) - pos)
                    if self._state is SWALLOW:
                        break
                    continue
                if self._state is DATA:
                    pending = self._pending
                    if len(buf) - pos < pending.need:
                        break  # (nothing was answered yet: the value is still coming)
                    block = bytes(buf[pos : pos + pending.need])
                    pos += pending.need
                    self._state = BIN_HEADER
                    self._pending = None
                    pending.complete(self, block)
            except StoreError as e:
                self._fail(e)
            used = durability.used
            if used is not None:
                durability.used = None
                out[before:] = [Deferred(used, b"".join(out[before:]), self.request)]
                deferred = True
            if limit is not None:
                size += sum(map(len, out[before:]))
            if pos == len(buf) and self._state is BIN_HEADER:
                break
        del buf[:pos]
        return self._deliver(deferred)

    def _plain_gets(self, buf, pos, commands, room):
        """Run the `get <key>...` lines at buf[pos:] (single spaces, no NUL,
        keys of legal length), up to `commands` lines and `room` reply bytes,
        with the same retrieval as `get`; (new pos, lines run, reply bytes),
        or None if the first line is not that plain."""
        # The run of plain lines is parsed first: when all its keys are hits,
        # one get_hits answers every line (a pipelining client's stream).
        # (The caller saw buf[pos:] start with "get "; a further line's start
        # is looked at only if there is one: startswith() costs more than
        # the rest of a get's parsing.)
        lines = []
        ends = []
        end = len(buf)
        while True:
            start = pos + 4
            nl = buf.find(b"\n", start)
            if nl < 0:
                break
            line = bytes(buf[start : nl - 1 if buf[nl - 1] == 13 else nl])
            keys = line.split(b" ")
            if (
                b"" in keys
                or 0 in line  # a NUL (an int, as `b"\0" in` raises and catches an error inside)
                or (len(line) > KEY_MAX_LENGTH and max(map(len, keys)) > KEY_MAX_LENGTH)
            ):
                break
            pos = nl + 1
            lines.append(keys)
            ends.append(pos)
            if pos == end or len(lines) >= commands or not buf.startswith(b"get ", pos):
                break
        if not lines:
            return None
        try:
            if len(lines) == 1:
                made = get_hits(self, keys, room)
            else:
                made = get_hits(self, [key for keys in lines for key in keys], room, list(map(len, lines)))
        except StoreError as e:
            if len(lines) > 1:
                made = None  # (which line failed is found one line at a time below)
            else:
                self.commands += 1
                self._fail(e)  # (the feed loop's funnel)
                return pos, 1, 0
        if made is not None:
            self.commands += len(lines)
            return pos, len(lines), made
        # one line at a time: a miss, a large value, a reply that may pause
        made = 0
        ran = 0
        for keys in lines:
            ran += 1
            self.commands += 1
            try:
                hit = get_hits(self, keys, room - made) if len(lines) > 1 else None
                if hit is None:
                    self.room = room - made
                    hit = retrieve_keys(self, keys, False, None)
                made += hit
            except StoreError as e:
                self._fail(e)  # (the feed loop's funnel, for the lines run here)
            if self.work is not None or made >= room:
                break  # paused at a limit, or the room is full: feed() takes it from here
        return ends[ran - 1], ran, made

    def _check_unended_line(self, buf, pos):
        pending = len(buf) - pos
        if pending <= MAX_LINE:
            return
        head = bytes(buf[pos : pos + 100]).lstrip(b" ")
        if pending > MAX_GET_LINE or not (head.startswith(b"get ") or head.startswith(b"gets ")):
            log.info("closing a connection: command line longer than %d bytes", MAX_LINE)
            self.closing, self.close_reason = True, "error"

    def _command(self, line):
        self.commands += 1
        if 0 in line:  # (a NUL: an int, as `b"\0" in` raises and catches an error inside)
            line = line[: line.index(0)]  # memcached reads the line as a C string
        words = line.split(b" ")
        if b"" in words:
            words = [w for w in words if w]
        if not self.authenticated:
            return unauthenticated(self, words)
        if self.server.settings.verbosity > 1:
            log.debug("<%s", line[:200])
        if not words or len(words[0]) < 2:
            return self.out.append(ERROR)
        entry = COMMANDS.get(words[0])
        if entry is None:
            if words[-1].startswith(b"HTTP/"):
                self.closing, self.close_reason = True, "error"  # memcached's defence against cross-protocol requests
            else:
                self.out.append(ERROR)
            return
        handler, least, most = entry
        if len(words) < least or (most is not None and len(words) > most):
            return self.out.append(ERROR)
        handler(self, words)

    def _fail(self, e):
        """The one funnel of errors: a StoreError any command raised (a write
        not made durable, a file unreadable, --max-disk) becomes its reply,
        shown even under noreply as memcached's out_errstring is."""
        if isinstance(e, DiskFull):
            self.counters.store_no_memory += 1  # --max-disk, as memcached's -M
        else:
            self.counters.persist_errors += 1
        if self._idle is BIN_HEADER:
            return self.out.append(binary.server_error(self.request, str(e)))
        self.out.append(b"SERVER_ERROR " + str(e).encode("utf-8", "replace") + b"\r\n")
