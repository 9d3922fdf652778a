"""The server's event loop: one thread, one stdlib `selectors` loop,
non-blocking sockets. It accepts connections, moves bytes between each
connection's transport (transports.py: plain or TLS, chosen at accept) and
its protocol session (handlers.Session), and gives the store's background
work (the start-up count, reclaiming dead files) a slice of time whenever
the loop is otherwise idle. It knows no command, and nothing of the process
around it (process.py: the command line, the log, signals, the pid file).

Some facts the loop relies on:

- A readable socket is read once per readiness into the loop's one buffer;
  the session parses every complete command in what arrived.
- A turn's replies leave at the end of the turn's reads, one send per
  connection (`_send_later`); only what the kernel did not take is queued,
  and EVENT_WRITE is registered only while a queue is not empty.
- A client that does not read its replies stops being read from once its
  queue passes HIGH_WATER, and is read again below LOW_WATER; the session
  keeps what it has not parsed, so no connection can grow memory unbounded.
- Every error of a connection ends in one place (`_fail`): logged (at -v if
  it was the peer's doing, with its traceback if it was ours), and that
  connection closed; the loop goes on.
- SIGTERM/SIGINT call stop(), which sets a flag and writes a byte to a
  socketpair the selector watches, so the loop wakes at once; then it stops
  accepting, flushes what replies it can, closes the store and exits 0.
- TLS (-Z) runs in the same loop: only the transport differs. A handshake
  goes a step at each readiness; what ssl asks for in the middle of a read
  or a write (`want`) is a readiness like any other; bytes already decrypted
  inside ssl (`buffered`) are invisible to select, so such a connection is
  read again at the next iteration without waiting for the socket.
- `-o idle_timeout=N` is a timer of the loop: about once a second it closes
  the connections that ran no command for N seconds while waiting for one
  (never one in the middle of a value, as memcached), and counts idle_kicks.
- Durability is ordered like Redis's beforeSleep: under `--fsync always` the
  sessions hold their replies while the store gathers the writes of every
  connection served in one iteration; after the last event of the iteration
  the batch is committed (made durable together), and only then are the held
  replies sent. Under `everysec` the select timeout is cut so the store's
  once-a-second barrier runs on time.

Run it with `python -m reactor --help`.
"""

import collections
import logging
import selectors
import socket
import sys
import time

import handlers
import process
from transports import PEER_ERRORS, Connection, PlainConnection, TlsConnection, discard_input, peer_name

log = logging.getLogger("memcached-lite")

EVENT_READ = selectors.EVENT_READ
EVENT_WRITE = selectors.EVENT_WRITE
RECV_SIZE = 256 * 1024
HIGH_WATER = 4 << 20
LOW_WATER = 1 << 20
# Commands one connection may run before the others get a turn (memcached's
# reqs_per_event, -R): a client pipelining thousands of writes cannot stall the
# rest. The default; the server's settings say what this one runs with.
REQS_PER_EVENT = handlers.REQS_PER_EVENT
# After accept fails for want of file descriptors, how long to stop accepting.
ACCEPT_BACKOFF = 0.5
# After the store's background work fails, how long before it is tried again.
BACKGROUND_BACKOFF = 5.0
# How long the store's background work may hold the loop per iteration.
TICK_BUDGET = 0.005
# ...and of the idle work (empty spare files), done only in a turn no client needed
IDLE_BUDGET = 0.002
SHUTDOWN_FLUSH_SECONDS = 5.0
# How often the idle-connection timer looks at the connections.
IDLE_CHECK_INTERVAL = 1.0
# the selector key data of the wake-up socket (a connection's is the Connection)
WAKE = "wake"


class Reactor:
    """The selectors loop serving its listening sockets (one, -l's list, or none under -p 0)."""

    def __init__(self, server, listener, tls_context=None):
        self.server = server
        # one listening socket, a list of them (-l's list), or none (-p 0)
        if listener is None:
            self.listeners = []
        elif isinstance(listener, (list, tuple)):
            self.listeners = list(listener)
        else:
            self.listeners = [listener]
        self.listener = self.listeners[0] if self.listeners else None
        self.tls_context = tls_context
        # every accepted socket gets the listener's transport
        self.transport = PlainConnection if tls_context is None else TlsConnection
        # TCP_NODELAY for TCP clients; a unix socket (-s) has no Nagle to turn off
        self.nodelay = any(sock.family != socket.AF_UNIX for sock in self.listeners)
        self.sel = selectors.DefaultSelector()
        server.settings.event_loop = type(self.sel).__name__
        self.reqs_per_event = server.settings.reqs_per_event
        self.conns = set()
        self.ready = set()  # connections with input parsed only in part
        self.held = set()  # connections whose replies wait for the store's batch
        self._later = []  # connections with a `later` reply, in the order they made it
        self.unread = set()  # connections with input select cannot see (`buffered`)
        self.stopping = False
        self.graceful = True
        self._calls = collections.deque()  # work signal handlers asked the loop to do
        self._next_idle_check = time.monotonic() + IDLE_CHECK_INTERVAL
        server.request_stop = self.stop
        self._accept_paused_until = None
        self._background_paused_until = 0.0
        for sock in self.listeners:
            sock.setblocking(False)
            self.sel.register(sock, EVENT_READ, None)
        # every recv lands in this one buffer: recv(RECV_SIZE) would
        # allocate 256 KiB (an mmap) and shrink and free it on each call
        self._recv_buffer = memoryview(bytearray(RECV_SIZE))
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self.sel.register(self._wake_r, EVENT_READ, WAKE)

    # -- the loop -----------------------------------------------------------

    def run(self):
        """Serve until stop() is called, then shut down cleanly."""
        server = self.server
        settings = server.settings
        clock = server.clock
        buffer = self._recv_buffer
        try:
            while not self.stopping:
                may = time.monotonic() >= self._background_paused_until
                busy = may and self.server.has_background_work()
                idle_work = may and not busy and self.server.has_idle_work()
                timeout = 0 if busy or idle_work or self.ready or self.unread else 1.0
                if self._accept_paused_until is not None:
                    timeout = min(timeout, ACCEPT_BACKOFF)
                sync_in = self.server.seconds_to_sync()
                if sync_in is not None:
                    timeout = min(timeout, sync_in)
                if settings.idle_timeout > 0:
                    timeout = min(timeout, max(0.0, self._next_idle_check - time.monotonic()))
                events = self.sel.select(timeout)
                server.now = clock()
                for key, mask in events:
                    conn = key.data
                    if conn is None:
                        self._accept(key.fileobj)
                    elif conn is WAKE:
                        self._drain_wake()
                    elif mask == EVENT_READ and not conn.want and not (
                        # _may_read() written out
                        conn.paused or conn.session.stopped_early or conn.eof or conn.session.closing
                        or self.stopping
                    ):
                        # the usual event, a request: straight to the read,
                        # _guarded's work written out here (two calls fewer a
                        # request, about 4% of a get at 50 connections)
                        try:
                            data = conn.receive(buffer)
                            if data:
                                self._pump(conn, data)
                            if conn.later is None and self._unsettled(conn):
                                self._settle(conn)
                        except Exception as e:  # one connection's failure must never stop the server
                            self._fail(conn, e)
                    else:
                        self._guarded(conn, self._serve, conn, mask)
                if self.unread:
                    self._run_unread()
                if self._later:
                    self._send_later()
                if self.ready:
                    self._run_ready()
                    if self._later:
                        self._send_later()
                # _commit()'s usual case without its call: no batch, nothing held
                batch = self.server.commit()
                if batch is not None or self.held:
                    self._commit(batch)
                self.server.sync_if_due()
                # (each looked at here, not in a call: this runs once a request on a get load)
                if self._accept_paused_until is not None:
                    self._resume_accepting()
                if self._calls:
                    self._run_calls()
                if settings.idle_timeout > 0:  # memcached's negative one never fires (unsigned)
                    self._kick_idle()
                if busy:
                    self._background(self.server.background, TICK_BUDGET)
                elif idle_work and not events and not self.ready and not self.unread:
                    # nobody waited this turn: a short slice, as a request may come any moment
                    self._background(self.server.idle_background, IDLE_BUDGET)
        finally:
            self._shutdown()

    def _run_ready(self):
        """Give each connection that still has parsed input its next turn."""
        for conn in list(self.ready):
            self.ready.discard(conn)
            if conn in self.conns and not conn.paused:
                self._guarded(conn, self._pump, conn, b"")

    def _run_unread(self):
        """Read the input transports hold that select cannot see, for connections that may read."""
        for conn in list(self.unread):
            self.unread.discard(conn)
            if conn in self.conns and self._may_read(conn):
                self._guarded(conn, self._read, conn)

    def _commit(self, batch=None):
        """Make the iteration's writes durable, then send what waited for
        it; `batch`: the one the loop has just committed itself."""
        if batch is None:
            batch = self.server.commit()
        if batch is not None and self.server.settings.verbosity > 2:
            log.debug("batch committed: %d changes%s", batch.changes,
                      "" if batch.error is None else ", failed: " + batch.error)
        if not self.held:
            return
        held, self.held = self.held, set()
        for conn in held:
            if conn in self.conns:
                self._guarded(conn, self._release, conn)
        if self._later:
            self._send_later()

    def _release(self, conn):
        reply = conn.session.release()
        if reply:
            self._queue(conn, reply)

    def _background(self, work, budget):
        try:
            work(budget)
        except Exception:  # the store's housekeeping must never stop serving
            log.exception("background store work failed; retrying in %.0f s", BACKGROUND_BACKOFF)
            self._background_paused_until = time.monotonic() + BACKGROUND_BACKOFF

    def _drain_wake(self):
        try:
            while self._wake_r.recv(4096):
                pass
        except BlockingIOError:
            pass

    def stop(self, graceful=True):
        """Ask the loop to stop; safe from a signal handler or another thread:
        the byte written to the wake-up socket ends the select at once.
        A graceful stop gives the replies owed up to SHUTDOWN_FLUSH_SECONDS to
        leave; the other (`shutdown`) sends only what the sockets take at
        once. Both make every write durable and close the store."""
        self.graceful = self.graceful and graceful
        self.stopping = True
        self._wake()

    def call_soon(self, work):
        """Run work() in the loop at the end of this iteration: for signal
        handlers, whose own frame may have interrupted the loop anywhere."""
        self._calls.append(work)
        self._wake()

    def _wake(self):
        try:
            self._wake_w.send(b"\0")
        except OSError:
            pass  # already awake, or already shut down

    def _run_calls(self):
        while self._calls:
            work = self._calls.popleft()
            try:
                work()
            except Exception:  # an operator's request must not stop serving
                log.exception("%s failed", getattr(work, "__name__", work))

    # -- the idle timer ---------------------------------------------------------

    def _kick_idle(self):
        """memcached's idle_timeout: close the connections that ran no command
        for that long while waiting for one. Looks once a second, not at
        every iteration, so 1,000 connections cost 1,000 checks a second."""
        limit = self.server.settings.idle_timeout
        now = time.monotonic()
        if limit <= 0 or now < self._next_idle_check:
            return
        self._next_idle_check = now + IDLE_CHECK_INTERVAL
        for conn in list(self.conns):
            session = conn.session
            if session.commands != conn.commands_seen:
                conn.commands_seen = session.commands
                conn.active_at = now
            elif now - conn.active_at > limit and self._idle(conn):
                self.server.counters.idle_kicks += 1
                conn.session.close_reason = "idle_timeout"
                log.debug("closing idle connection %s", conn.peer, extra=conn.log_extra())
                self._close(conn)

    def _idle(self, conn):
        # writing replies, holding them for a batch or in a value's data is
        # not idleness: memcached kicks only connections waiting for a command
        return conn.handshaking or (
            conn.session.awaiting_command and not conn.out and conn not in self.held
        )

    # -- connections ----------------------------------------------------------

    def _accept(self, listener):
        for _ in range(64):  # a burst of connections, without starving the others
            try:
                sock, peer = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                # Out of file descriptors: the listener stays readable, so
                # stop watching it for a moment instead of spinning on it.
                log.error("accept failed: %s; not accepting for %.1f s", e, ACCEPT_BACKOFF)
                for sock in self.listeners:
                    self.sel.unregister(sock)
                self._accept_paused_until = time.monotonic() + ACCEPT_BACKOFF
                return
            sock.setblocking(False)
            if self.nodelay:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if len(self.conns) >= self.server.settings.max_connections:
                self._reject(sock, peer)
                continue
            try:
                sock = self.transport.wrap(sock, self.tls_context)
            except (OSError, ValueError) as e:
                log.debug("cannot start TLS with %s: %s", peer_name(peer), e)
                sock.close()
                continue
            conn = self.transport(sock, handlers.Session(self.server), peer, time.monotonic())
            self.conns.add(conn)
            log.debug("connection from %s%s", conn.peer, conn.KIND, extra=conn.log_extra())
            self._set_events(conn)
            conn.session.attach(sock.fileno(), peer, listener.getsockname(), _unsent_of(conn), _wake_of(self, conn))

    def _reject(self, sock, peer):
        # memcached's answer when -c is reached, in clear text even under TLS
        # (as memcached writes it before any handshake)
        self.server.counters.rejected_connections += 1
        log.debug("rejecting %s: %d connections open", peer_name(peer), len(self.conns))
        try:
            sock.send(b"ERROR Too many open connections\r\n")
        except OSError:
            pass
        discard_input(sock)
        sock.close()

    def _resume_accepting(self):
        until = self._accept_paused_until
        if until is not None and time.monotonic() >= until:
            self._accept_paused_until = None
            for sock in self.listeners:
                self.sel.register(sock, EVENT_READ, None)

    def _guarded(self, conn, work, *args):
        """Run a connection's work: the one way into it and its one error
        funnel. Then settle the connection, unless it is as it was (waiting
        to read, nothing queued, nothing its transport wants: what the
        usual request leaves) or has a reply this turn still to send
        (`_send_later` settles it then)."""
        try:
            work(*args)
            if conn.later is None and self._unsettled(conn):
                self._settle(conn)
        except Exception as e:  # one connection's failure must never stop the server
            self._fail(conn, e)

    def _unsettled(self, conn):
        """Whether what the connection waits for may have changed: anything
        but waiting to read with nothing queued and nothing its transport
        wants (what the usual request leaves)."""
        return conn.events != EVENT_READ or conn.out or conn.want or conn.buffered or not self._may_read(conn)

    def _fail(self, conn, error):
        """The end of a connection whose work raised (called in its except
        clause): logged by what it was, then closed."""
        if conn.handshaking and isinstance(error, OSError):
            log.debug("TLS handshake with %s failed: %s", conn.peer, error, extra=conn.log_extra())
        elif isinstance(error, PEER_ERRORS):
            log.debug("connection %s failed: %s", conn.peer, error, extra=conn.log_extra())
        else:
            log.exception("error on connection %s; closing it", conn.peer, extra=conn.log_extra())
        conn.session.close_reason = "error"
        self._close(conn)

    def _serve(self, conn, mask):
        """Any readiness but a plain request's: a handshake's step, a queue
        to drain, what the transport asked for (a read that needs a write or
        a write that needs a read: any readiness retries both), a read."""
        if conn.handshaking:
            self._handshake(conn)
            return
        retry = conn.want
        if retry:
            conn.want = 0
        if mask & EVENT_WRITE or retry:
            conn.send()
            if conn.paused and conn.out_size < LOW_WATER and not self.stopping:
                conn.paused = False
                self._trace(conn, "reading again")
                self._pump(conn, b"")
        if (mask & EVENT_READ or retry) and self._may_read(conn):
            self._read(conn)

    def _handshake(self, conn):
        """One step of a TLS handshake; the rest waits for the readiness ssl
        asks for. A failed one raises, and closes that connection only."""
        version = conn.handshake()
        if version is None:
            return
        self._trace(conn, "TLS handshake done (%s)" % version)
        if self._may_read(conn):
            self._read(conn)

    def _may_read(self, conn):
        # a session with a backlog is not read from until it has run it
        return not (
            conn.paused or conn.session.stopped_early or conn.eof or conn.session.closing or self.stopping
        )

    def _read(self, conn):
        data = conn.receive(self._recv_buffer)
        if data:
            self._pump(conn, data)

    def _pump(self, conn, data):
        """Feed the session one turn and queue its replies. What it left for
        later waits in `ready` for the next turn, or, if the client is
        HIGH_WATER behind on reading, until it catches up."""
        session = conn.session
        tracing = self.server.settings.verbosity > 2
        state = session.state if tracing else None
        reply = session.feed(data, limit=HIGH_WATER, max_commands=self.reqs_per_event)
        if tracing and session.state is not state:
            self._trace(conn, "%s -> %s" % (state, session.state))
        if reply:
            # _queue()'s work written out: this runs once a request
            if self.server.settings.verbosity > 1:
                log.debug(">%s %r", conn.peer, reply[:200], extra=conn.log_extra())
            if conn.later is None:
                conn.later = reply
                self._later.append(conn)
            else:
                conn.later += reply
        elif session.holding:  # (a session holding its replies returns none)
            self.held.add(conn)
        if session.stopped_early and not conn.paused:
            self.ready.add(conn)

    def _queue(self, conn, reply):
        """A reply, sent with the connection's others of this turn once the
        turn's reads ran (`_send_later`): a client process waiting on several
        connections is then woken once for their replies, not once for each
        (on this project's VM, each wake-up of an idle CPU made a reply's
        send cost 10-20 µs more)."""
        if self.server.settings.verbosity > 1:
            log.debug(">%s %r", conn.peer, reply[:200], extra=conn.log_extra())
        if conn.later is None:
            conn.later = reply
            self._later.append(conn)
        else:
            conn.later += reply

    def _send_later(self):
        """Send the replies queued since the last time, each connection's
        through its transport's one send, in the order they were made."""
        later, self._later = self._later, []
        conns = self.conns
        for conn in later:
            reply, conn.later = conn.later, None
            if conn in conns:
                # _guarded's work and _unsettled written out: they would be
                # two calls more a reply
                try:
                    conn.send(reply)
                    if (
                        conn.events != EVENT_READ or conn.out or conn.want or conn.buffered
                        # (not _may_read(conn))
                        or conn.paused or conn.session.stopped_early or conn.eof or conn.session.closing
                        or self.stopping
                    ):
                        self._settle(conn)
                except Exception as e:  # one connection's failure must never stop the server
                    self._fail(conn, e)

    def _settle(self, conn):
        """Close a finished connection, or set what it waits for: not reading
        past HIGH_WATER of unsent replies."""
        if conn not in self.conns:
            return  # (its work closed it)
        if conn.out_size >= HIGH_WATER and not conn.paused:
            conn.paused = True
            self._trace(conn, "paused: %d bytes unsent" % conn.out_size)
        session = conn.session
        finished = session.closing or (conn.eof and not session.stopped_early)
        if finished and not conn.out and conn.later is None and not session.holding:
            self._close(conn)
            return
        self._set_events(conn)

    def _set_events(self, conn):
        events = conn.want
        if not conn.handshaking:
            if self._may_read(conn):
                events |= EVENT_READ
                if conn.buffered:
                    self.unread.add(conn)
            if conn.out:
                events |= EVENT_WRITE
        if events == conn.events:
            return
        if conn.events == 0:
            self.sel.register(conn.sock, events, conn)
        elif events == 0:
            self.sel.unregister(conn.sock)
        else:
            self.sel.modify(conn.sock, events, conn)
        conn.events = events

    def _close(self, conn):
        if conn not in self.conns:
            return
        self.conns.discard(conn)
        self.ready.discard(conn)
        self.held.discard(conn)
        self.unread.discard(conn)
        if conn.events:
            self.sel.unregister(conn.sock)
            conn.events = 0
        conn.session.close()
        conn.close()
        log.debug("connection from %s closed", conn.peer, extra=conn.log_extra())

    def _trace(self, conn, what):
        """-vvv: a connection's state transition."""
        if self.server.settings.verbosity > 2:
            log.debug("%s: %s", conn.peer, what, extra=conn.log_extra())

    # -- shutdown ---------------------------------------------------------------

    def _shutdown(self):
        for sock in self.listeners:
            if self._accept_paused_until is None:
                self.sel.unregister(sock)
            sock.close()
        deadline = time.monotonic() + (SHUTDOWN_FLUSH_SECONDS if self.graceful else 0.0)
        self._send_later()
        self._commit()  # replies owed for writes already made
        for conn in list(self.conns):
            self._settle(conn)  # from now on: no reading, only flushing
        while any(c.out for c in self.conns) and time.monotonic() < deadline:
            for key, mask in self.sel.select(0.1):
                conn = key.data
                if isinstance(conn, Connection):
                    self._guarded(conn, self._serve, conn, mask)
        for conn in list(self.conns):
            conn.session.close_reason = "shutdown"
            self._close(conn)
        self.sel.close()
        self._wake_r.close()
        self._wake_w.close()
        self.server.close()
        log.info("stopped")


def _wake_of(reactor, conn):
    # a watcher's lines wait: the connection gets a turn with no input
    return lambda: reactor.ready.add(conn)


def _unsent_of(conn):
    # for `stats conns`: a connection whose replies wait for the client is conn_mwrite
    return lambda: conn.out_size


def main(argv=None):
    """`python -m reactor`, the `memcached-lite` command: the process
    set-up (process.main) around this loop; the exit status."""
    return process.main(sys.argv[1:] if argv is None else argv, Reactor)


if __name__ == "__main__":
    sys.exit(main())
