"""The server's I/O: one thread, one stdlib `selectors` loop, non-blocking
sockets. It accepts connections, moves bytes between sockets and each
connection's protocol session (handlers.Session), and gives the store's
background work (the start-up count, reclaiming dead files) a slice of time
whenever the loop is otherwise idle. It knows no command.

Some facts the loop relies on:

- A readable socket is read once per readiness with one large recv; the
  session parses every complete command in what arrived.
- Replies are sent at once; only what the kernel did not take is queued, and
  EVENT_WRITE is registered only while a queue is not empty.
- A client that does not read its replies stops being read from once its
  queue passes HIGH_WATER, and is read again below LOW_WATER; the session
  keeps what it has not parsed, so no connection can grow memory unbounded.
- SIGTERM/SIGINT call stop(), which sets a flag and writes a byte to a
  socketpair the selector watches, so the loop wakes at once; then it stops
  accepting, flushes what replies it can, closes the store and exits 0.
- TLS (-Z) runs in the same loop: sockets are wrapped with the stdlib `ssl`
  module, non-blocking. A handshake goes a step at each readiness, and an
  SSLWantRead/WantWrite error only says which readiness to wait for. ssl
  sockets have no sendmsg: small replies are joined and sent a buffer at a
  time, and a buffer that met SSLWantWrite is retried unchanged, as OpenSSL
  requires. Bytes already decrypted inside the ssl object are invisible to
  select, so a connection that stopped reading with `pending()` bytes is read
  again at the next iteration without waiting for the socket.
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

import argparse
import collections
import datetime
import json
import logging
import os
import resource
import selectors
import signal
import socket
import ssl
import sys
import time

import handlers
from store import DISK_POLICIES, EVERYSEC, FRESH_SPARES, LEVELS, METHODS, DataDirError, Store

log = logging.getLogger("memcached-lite")

RECV_SIZE = 256 * 1024
HIGH_WATER = 4 << 20
LOW_WATER = 1 << 20
# Commands one connection may run before the others get a turn (memcached's
# reqs_per_event): a client pipelining thousands of writes cannot stall the rest.
REQS_PER_EVENT = 20
# After accept fails for want of file descriptors, how long to stop accepting.
ACCEPT_BACKOFF = 0.5
# After the store's background work fails, how long before it is tried again.
BACKGROUND_BACKOFF = 5.0
# How long the store's background work may hold the loop per iteration.
TICK_BUDGET = 0.005
# ...and of the idle work (empty spare files), done only in a turn no client needed
IDLE_BUDGET = 0.002
SHUTDOWN_FLUSH_SECONDS = 5.0
# sendmsg takes at most IOV_MAX (1024 on Linux) buffers per call.
MAX_IOV = 512
# ssl has no sendmsg: replies smaller than this are joined into one write
# (one TLS record instead of one per reply); larger values go alone, uncopied.
TLS_JOIN = 64 * 1024
# How often the idle-connection timer looks at the connections.
IDLE_CHECK_INTERVAL = 1.0
# memcached's ssl_verify_mode: none, request, require, once (as require here)
VERIFY_MODES = {0: ssl.CERT_NONE, 1: ssl.CERT_OPTIONAL, 2: ssl.CERT_REQUIRED, 3: ssl.CERT_REQUIRED}


class Connection:
    """One client socket, its session, and the replies the kernel has not taken."""

    __slots__ = (
        "sock", "session", "peer", "out", "out_size", "later", "paused", "eof", "events",
        "tls", "handshaking", "tls_want", "tls_retry", "commands_seen", "active_at",
    )

    def __init__(self, sock, session, peer, tls=False, now=0.0):
        self.sock = sock
        self.session = session
        self.peer = _peer_name(peer)
        self.out = collections.deque()
        self.out_size = 0
        self.later = None  # this turn's reply, sent once the turn's other connections ran
        self.paused = False  # stopped reading: too much unsent output
        self.eof = False  # the client will send nothing more
        self.events = 0
        self.tls = tls
        self.handshaking = tls
        # the readiness ssl asked for in the middle of a read or a write
        # (a read may need to write, a write to read), besides the usual ones
        self.tls_want = 0
        self.tls_retry = False  # out[0] met SSLWantWrite: resend it unchanged
        self.commands_seen = 0  # session.commands when the idle timer last looked
        self.active_at = now  # when the idle timer last saw a command (monotonic)

    def log_extra(self):
        return {"peer": self.peer}


class Reactor:
    """The selectors loop serving one listening socket."""

    def __init__(self, server, listener, tls_context=None):
        self.server = server
        self.listener = listener
        self.tls_context = tls_context
        self.sel = selectors.DefaultSelector()
        server.settings.event_loop = type(self.sel).__name__
        self.conns = set()
        self.ready = set()  # connections with input parsed only in part
        self.held = set()  # connections whose replies wait for the store's batch
        self._later = []  # connections with a `later` reply, in the order they made it
        self._deferring = False  # replies made now wait for the end of the turn's reads
        self.unread = set()  # TLS connections with decrypted bytes select cannot see
        self.stopping = False
        self.graceful = True
        self._calls = collections.deque()  # work signal handlers asked the loop to do
        self._next_idle_check = time.monotonic() + IDLE_CHECK_INTERVAL
        server.request_stop = self.stop
        self._accept_paused_until = None
        self._background_paused_until = 0.0
        listener.setblocking(False)
        self.sel.register(listener, selectors.EVENT_READ, None)
        # every plain recv lands in this one buffer: recv(RECV_SIZE) would
        # allocate 256 KiB (an mmap) and shrink and free it on each call
        self._recv_buffer = memoryview(bytearray(RECV_SIZE))
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self.sel.register(self._wake_r, selectors.EVENT_READ, "wake")

    # -- the loop -----------------------------------------------------------

    def run(self):
        """Serve until stop() is called, then shut down cleanly."""
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
                if self.server.settings.idle_timeout:
                    timeout = min(timeout, max(0.0, self._next_idle_check - time.monotonic()))
                events = self.sel.select(timeout)
                self._deferring = True
                for key, mask in events:
                    if key.data is None:
                        self._accept()
                    elif key.data == "wake":
                        self._drain_wake()
                    else:
                        self._serve(key.data, mask)
                if self.unread:
                    self._run_unread()
                if self._later:
                    self._send_later()
                if self.ready:
                    self._run_ready()
                self._deferring = False
                if self._later:
                    self._send_later()
                self._commit()
                self.server.sync_if_due()
                self._resume_accepting()
                self._run_calls()
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
        """Read what ssl has already decrypted for connections that may read."""
        for conn in list(self.unread):
            self.unread.discard(conn)
            if conn in self.conns and self._may_read(conn):
                self._guarded(conn, self._read, conn)

    def _commit(self):
        """Make the iteration's writes durable, then send what waited for it."""
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

    def _release(self, conn):
        self._queue(conn, conn.session.release())

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
        if not limit or now < self._next_idle_check:
            return
        self._next_idle_check = now + IDLE_CHECK_INTERVAL
        for conn in list(self.conns):
            session = conn.session
            if session.commands != conn.commands_seen:
                conn.commands_seen = session.commands
                conn.active_at = now
            elif now - conn.active_at > limit and self._idle(conn):
                self.server.counters.idle_kicks += 1
                log.debug("closing idle connection %s", conn.peer, extra=conn.log_extra())
                self._close(conn)

    def _idle(self, conn):
        # writing replies, holding them for a batch or in a value's data is
        # not idleness: memcached kicks only connections waiting for a command
        return conn.handshaking or (
            conn.session.awaiting_command and not conn.out and conn not in self.held
        )

    # -- connections ----------------------------------------------------------

    def _accept(self):
        for _ in range(64):  # a burst of connections, without starving the others
            try:
                sock, peer = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                # Out of file descriptors: the listener stays readable, so
                # stop watching it for a moment instead of spinning on it.
                log.error("accept failed: %s; not accepting for %.1f s", e, ACCEPT_BACKOFF)
                self.sel.unregister(self.listener)
                self._accept_paused_until = time.monotonic() + ACCEPT_BACKOFF
                return
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if len(self.conns) >= self.server.settings.max_connections:
                self._reject(sock, peer)
                continue
            if self.tls_context is not None:
                try:
                    sock = self.tls_context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
                except (OSError, ValueError) as e:
                    log.debug("cannot start TLS with %s: %s", _peer_name(peer), e)
                    sock.close()
                    continue
            conn = Connection(sock, handlers.Session(self.server), peer, self.tls_context is not None, time.monotonic())
            self.conns.add(conn)
            log.debug("connection from %s%s", conn.peer, " (TLS)" if conn.tls else "", extra=conn.log_extra())
            self._set_events(conn)
            conn.session.attach(sock.fileno(), peer, self.listener.getsockname(), _unsent_of(conn))

    def _reject(self, sock, peer):
        # memcached's answer when -c is reached, in clear text even under TLS
        # (as memcached writes it before any handshake)
        self.server.counters.rejected_connections += 1
        log.debug("rejecting %s: %d connections open", _peer_name(peer), len(self.conns))
        try:
            sock.send(b"ERROR Too many open connections\r\n")
        except OSError:
            pass
        _discard_input(sock)
        sock.close()

    def _resume_accepting(self):
        until = self._accept_paused_until
        if until is not None and time.monotonic() >= until:
            self._accept_paused_until = None
            self.sel.register(self.listener, selectors.EVENT_READ, None)

    def _serve(self, conn, mask):
        if mask != selectors.EVENT_READ or conn.tls or not self._may_read(conn):
            self._guarded(conn, self._handle_events, conn, mask)
            return
        # The common case, a plain socket with a request, straight to the
        # read (the general path is four calls deeper, and settles every
        # time; at 50 connections that was a tenth of a get's time).
        try:
            self._read(conn)
            if conn.sock.fileno() >= 0 and (
                conn.events != selectors.EVENT_READ or conn.out or not self._may_read(conn)
            ):
                self._settle(conn)  # (else it waits for what it waited for)
        except Exception:  # one connection's failure must never stop the server
            log.exception("error on connection %s; closing it", conn.peer)
            self._close(conn)

    def _guarded(self, conn, work, *args):
        try:
            work(*args)
            if conn.sock.fileno() >= 0:
                self._settle(conn)
        except Exception:  # one connection's failure must never stop the server
            log.exception("error on connection %s; closing it", conn.peer)
            self._close(conn)

    def _handle_events(self, conn, mask):
        if mask == selectors.EVENT_READ and not (conn.tls or conn.tls_want):
            # the common case, a plain socket with a request: straight to the read
            if self._may_read(conn):
                self._read(conn)
            return
        if conn.handshaking:
            self._handshake(conn)
            return
        # what ssl asked for was a read for a write or a write for a read:
        # any readiness retries both
        ssl_retry, conn.tls_want = conn.tls_want, 0
        if mask & selectors.EVENT_WRITE or ssl_retry:
            self._send(conn)
            if conn.paused and conn.out_size < LOW_WATER and not self.stopping:
                conn.paused = False
                self._trace(conn, "reading again")
                self._pump(conn, b"")
        if (mask & selectors.EVENT_READ or ssl_retry) and conn.sock.fileno() >= 0 and self._may_read(conn):
            self._read(conn)

    def _handshake(self, conn):
        """One step of a TLS handshake; the rest waits for the readiness
        ssl asks for. A failed handshake closes that connection only."""
        try:
            conn.sock.do_handshake()
        except ssl.SSLWantReadError:
            conn.tls_want = selectors.EVENT_READ
            return
        except ssl.SSLWantWriteError:
            conn.tls_want = selectors.EVENT_WRITE
            return
        except (ssl.SSLError, OSError) as e:
            log.debug("TLS handshake with %s failed: %s", conn.peer, e, extra=conn.log_extra())
            self._close(conn)
            return
        conn.handshaking = False
        conn.tls_want = 0
        self._trace(conn, "TLS handshake done (%s)" % conn.sock.version())
        # the client's first command may have come with its last handshake
        # bytes, already inside ssl
        if self._may_read(conn):
            self._read(conn)

    def _may_read(self, conn):
        # a session with a backlog is not read from until it has run it
        return not (
            conn.paused or conn.session.stopped_early or conn.eof or conn.session.closing or self.stopping
        )

    def _read(self, conn):
        if conn.tls:
            data = self._recv_tls(conn)
        else:
            try:
                n = conn.sock.recv_into(self._recv_buffer)
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionError:
                self._close(conn)
                return
            if not n:
                conn.eof = True
            data = self._recv_buffer[:n]  # the session copies what it keeps
        if data:
            self._pump(conn, data)

    def _recv_tls(self, conn):
        """Up to RECV_SIZE decrypted bytes (ssl hands out one record, at most
        16 KiB, per recv); b"" if none yet, None if the connection failed."""
        sock = conn.sock
        buffer = self._recv_buffer
        size = 0
        while size < RECV_SIZE:
            try:
                n = sock.recv_into(buffer[size:])
            except ssl.SSLWantReadError:
                break
            except ssl.SSLWantWriteError:
                conn.tls_want = selectors.EVENT_WRITE
                break
            except (ssl.SSLError, ConnectionError) as e:
                log.debug("TLS read from %s failed: %s", conn.peer, e, extra=conn.log_extra())
                self._close(conn)
                return None
            if not n:
                conn.eof = True
                break
            size += n
        return buffer[:size]

    def _pump(self, conn, data):
        """Feed the session one turn and send its replies. What it left for
        later waits in `ready` for the next turn, or, if the client is
        HIGH_WATER behind on reading, until it catches up."""
        session = conn.session
        tracing = self.server.settings.verbosity > 2
        state = session.state if tracing else None
        reply = session.feed(data, limit=HIGH_WATER, max_commands=REQS_PER_EVENT)
        if tracing and session.state is not state:
            self._trace(conn, "%s -> %s" % (state, session.state))
        if not reply and session.holding:  # (a session holding its replies returns none)
            self.held.add(conn)
        self._queue(conn, reply)
        if session.stopped_early and not conn.paused:
            self.ready.add(conn)

    def _queue(self, conn, reply):
        if reply and self._deferring and not conn.out and not conn.tls:
            # Sent once the other connections of this turn ran: a client
            # process waiting on several connections is then woken once for
            # their replies, not once for each (on this project's VM, each
            # wake-up of an idle CPU made a reply's send cost 10-20 µs more).
            if conn.later is None:
                conn.later = reply
                self._later.append(conn)
            else:
                conn.later += reply
            return
        self._queue_now(conn, reply)

    def _send_later(self):
        later, self._later = self._later, []
        conns = self.conns
        quiet = self.server.settings.verbosity <= 1
        for conn in later:
            reply, conn.later = conn.later, None
            if conn not in conns:
                continue
            if quiet and not conn.out and not conn.eof and not conn.session.closing:
                # the usual reply: one send that takes it all, and the
                # connection waits for what it waited for before
                try:
                    sent = conn.sock.send(reply)
                except OSError:
                    sent = 0  # the general path below meets it again and deals with it
                if sent == len(reply):
                    continue
                reply = memoryview(reply)[sent:]
            self._guarded(conn, self._queue_now, conn, reply)

    def _queue_now(self, conn, reply):
        if reply:
            if self.server.settings.verbosity > 1:
                log.debug(">%s %r", conn.peer, reply[:200], extra=conn.log_extra())
            if not conn.out and not conn.tls:
                # nothing queued before it: one send, and the queue only for a rest
                sent = self._send_now(conn, reply)
                if sent == len(reply):
                    return
                reply = memoryview(reply)[sent:]
            conn.out.append(reply)
            conn.out_size += len(reply)
            self._send(conn)
        if conn.out_size >= HIGH_WATER and not conn.paused:
            conn.paused = True
            self._trace(conn, "paused: %d bytes unsent" % conn.out_size)

    def _send_now(self, conn, reply):
        """Send a reply on a plain socket with nothing queued; how much went."""
        try:
            return conn.sock.send(reply)
        except (BlockingIOError, InterruptedError):
            return 0
        except (ConnectionError, BrokenPipeError) as e:
            self._send_failed(conn, e)
            return len(reply)  # dropped with the connection

    def _send_failed(self, conn, e):
        log.debug("sending to %s failed: %s", conn.peer, e, extra=conn.log_extra())
        conn.out.clear()
        conn.out_size = 0
        conn.eof = True

    def _send(self, conn):
        out = conn.out
        while out:
            try:
                if conn.tls:
                    sent = self._send_tls(conn)
                elif len(out) == 1:
                    sent = conn.sock.send(out[0])
                else:
                    sent = conn.sock.sendmsg(list(_take(out, MAX_IOV)))
            except (BlockingIOError, InterruptedError, ssl.SSLWantWriteError):
                return
            except ssl.SSLWantReadError:
                conn.tls_want = selectors.EVENT_READ
                return
            except (ConnectionError, BrokenPipeError, ssl.SSLError) as e:
                self._send_failed(conn, e)
                return
            conn.out_size -= sent
            while sent:
                head = out[0]
                if sent >= len(head):
                    sent -= len(head)
                    out.popleft()
                else:
                    out[0] = memoryview(head)[sent:]
                    sent = 0

    def _send_tls(self, conn):
        """One ssl write of the queue's head, small replies joined first.
        After SSLWantWrite, OpenSSL wants the same buffer again: tls_retry
        keeps the head as it was until it has gone."""
        out = conn.out
        if not conn.tls_retry and len(out) > 1 and len(out[0]) < TLS_JOIN:
            parts = [out.popleft()]
            size = len(parts[0])
            while out and size + len(out[0]) <= TLS_JOIN:
                size += len(out[0])
                parts.append(out.popleft())
            out.appendleft(b"".join(parts))
        conn.tls_retry = True
        sent = conn.sock.send(out[0])
        conn.tls_retry = False
        return sent

    def _settle(self, conn):
        """Close a finished connection, or set what it waits for."""
        session = conn.session
        finished = session.closing or (conn.eof and not session.stopped_early)
        if finished and not conn.out and conn.later is None and not session.holding:
            self._close(conn)
            return
        self._set_events(conn)

    def _set_events(self, conn):
        if conn.handshaking:
            events = conn.tls_want or selectors.EVENT_READ
        else:
            events = conn.tls_want
            if self._may_read(conn):
                events |= selectors.EVENT_READ
                if conn.tls and conn.sock.pending():
                    self.unread.add(conn)
            if conn.out:
                events |= selectors.EVENT_WRITE
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
        _discard_input(conn.sock)
        conn.sock.close()
        log.debug("connection from %s closed", conn.peer, extra=conn.log_extra())

    def _trace(self, conn, what):
        """-vvv: a connection's state transition."""
        if self.server.settings.verbosity > 2:
            log.debug("%s: %s", conn.peer, what, extra=conn.log_extra())

    # -- shutdown ---------------------------------------------------------------

    def _shutdown(self):
        if self._accept_paused_until is None:
            self.sel.unregister(self.listener)
        self.listener.close()
        deadline = time.monotonic() + (SHUTDOWN_FLUSH_SECONDS if self.graceful else 0.0)
        self._deferring = False
        self._send_later()
        self._commit()  # replies owed for writes already made
        for conn in list(self.conns):
            self._settle(conn)  # from now on: no reading, only flushing
        while any(c.out for c in self.conns) and time.monotonic() < deadline:
            for key, mask in self.sel.select(0.1):
                if isinstance(key.data, Connection):
                    self._serve(key.data, mask)
        for conn in list(self.conns):
            self._close(conn)
        self.sel.close()
        self._wake_r.close()
        self._wake_w.close()
        self.server.close()
        log.info("stopped")


def _discard_input(sock):
    # Closing a socket with unread input makes Linux send RST, and a peer that
    # gets RST may lose replies it has not read yet: read what is there first.
    # For TLS, the raw bytes (socket.socket.recv, below ssl): after a failed
    # handshake ssl would only raise again.
    recv = socket.socket.recv if isinstance(sock, ssl.SSLSocket) else type(sock).recv
    try:
        for _ in range(16):
            if not recv(sock, RECV_SIZE):
                break
    except OSError:
        pass


def _unsent_of(conn):
    # for `stats conns`: a connection whose replies wait for the client is conn_mwrite
    return lambda: conn.out_size


def _take(out, n):
    for i, part in enumerate(out):
        if i == n:
            return
        yield part


# -- the command line ---------------------------------------------------------


def default_data_dir(port):
    """Where items live when --data-dir is not given: one folder per port."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(base, "memcached-lite", str(port))


def parse_size(text):
    """memcached's -I: bytes, or with a k/m (or g) suffix."""
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    text = text.strip().lower()
    try:
        if text and text[-1] in units:
            return int(text[:-1]) * units[text[-1]]
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r}") from None


# memcached's -o suboptions that memcached-lite has; the others are refused
EXTENDED = ("idle_timeout", "ssl_chain_cert", "ssl_key", "ssl_ca_cert", "ssl_verify_mode")


def parse_extended(values):
    """memcached's `-o a=1,b=2` (the option may be repeated) as a dict."""
    options = {}
    for value in values:
        for item in value.split(","):
            name, _, setting = item.strip().partition("=")
            if not name:
                continue
            if name not in EXTENDED:
                raise argparse.ArgumentTypeError(f"unknown -o option {name!r} (known: {', '.join(EXTENDED)})")
            options[name] = setting
    return options


def parse_args(argv):
    """The command line, memcached's flag names where they exist."""
    p = argparse.ArgumentParser(
        prog="python -m reactor",
        description="memcached-lite: a memcached 1.6 text-protocol server whose items "
        "are written through to files and survive restarts.",
    )
    p.add_argument("-p", "--port", type=int, default=11211, help="TCP port to listen on (default: 11211)")
    p.add_argument("-l", "--listen", default="127.0.0.1", help="interface to listen on (default: 127.0.0.1)")
    p.add_argument(
        "-c", "--conn-limit", type=int, default=1024,
        help="max simultaneous connections; more are answered 'ERROR Too many open connections' "
        "and closed (default: 1024)",
    )
    p.add_argument(
        "-m", "--memory-limit", type=int, default=64, help="MB of items kept in memory in front of the files (default: 64)"
    )
    p.add_argument(
        "-I", "--max-item-size", type=parse_size, default=1 << 20, help="largest item, e.g. 1m or 512k (default: 1m)"
    )
    p.add_argument(
        "--data-dir",
        help="where items are kept (default: $XDG_DATA_HOME/memcached-lite/<port>, "
        "i.e. ~/.local/share/memcached-lite/<port>)",
    )
    p.add_argument(
        "--fsync",
        choices=LEVELS,
        default=EVERYSEC,
        help="always: reply only once the write is on disk (group commit); everysec: "
        "reply after the rename, on disk within about a second; no: when the OS likes "
        "(default: everysec)",
    )
    p.add_argument(
        "--fsync-method",
        choices=METHODS,
        default="auto",
        help="how writes are made durable: syncfs (one call per batch, Linux), fsync "
        "(each file and folder), auto: syncfs where available (default: auto)",
    )
    p.add_argument("-A", "--enable-shutdown", action="store_true", help="enable the 'shutdown [graceful]' command")
    p.add_argument("-F", "--disable-flush-all", action="store_true", help="refuse flush_all")
    p.add_argument(
        "-o", "--extended", action="append", default=[], metavar="OPT=VALUE,...",
        help="memcached's suboptions: idle_timeout=N (close connections idle N seconds), "
        "ssl_chain_cert=, ssl_key=, ssl_ca_cert=, ssl_verify_mode=0|1|2|3",
    )
    p.add_argument("-Z", "--enable-ssl", action="store_true", help="TLS on the listening port (needs --tls-cert)")
    p.add_argument("--tls-cert", help="certificate chain, PEM (-o ssl_chain_cert=)")
    p.add_argument("--tls-key", help="private key, PEM, if not in the certificate file (-o ssl_key=)")
    p.add_argument("--tls-ca", help="CA certificates for client certificates, PEM (-o ssl_ca_cert=)")
    p.add_argument("-P", "--pidfile", help="write the pid here at start; removed at a clean exit")
    p.add_argument("--log-file", help="log here instead of stderr; SIGHUP reopens it (for logrotate)")
    p.add_argument("--log-format", choices=("text", "json"), default="text", help="text lines or one JSON object a line")
    p.add_argument(
        "-v", "--verbose", action="count", default=0,
        help="-v connections and errors, -vv every command and reply, -vvv state transitions",
    )
    # issue 7: observability, the disk quota, safe defaults
    p.add_argument(
        "-D", dest="prefix_delimiter", type=os.fsencode,
        help="the character that ends a key's prefix for `stats detail`; turns detail on (default: ':')",
    )
    p.add_argument(
        "-X", "--disable-dumping", action="store_true",
        help="refuse key dumps: `stats cachedump` and `lru_crawler metadump`",
    )
    p.add_argument(
        "-Y", "--auth-file", type=auth_file,
        help="memcached's ASCII authentication: a file of user:password lines; a client "
        "authenticates with `set <any> 0 0 <n>` and `<user> <password>` as the data",
    )
    p.add_argument(
        "--max-disk", type=parse_size, default=None,
        help="most bytes of item records the data dir may hold, e.g. 100m or 2g (default: no limit)",
    )
    p.add_argument(
        "--disk-policy", choices=DISK_POLICIES, default="refuse",
        help="past --max-disk: refuse (SERVER_ERROR out of memory storing object, as memcached's -M) "
        "or evict the least recently written files (default: refuse)",
    )
    args = p.parse_args(argv)
    if args.prefix_delimiter is not None and len(args.prefix_delimiter) != 1:
        p.error("-D takes one character")
    if not 0 < args.port < 65536:
        p.error("port must be 1-65535")
    if args.conn_limit < 1 or args.memory_limit < 1:
        p.error("-c and -m must be positive")
    if not 1024 <= args.max_item_size <= 1 << 30:
        p.error("-I must be between 1k and 1024m")
    try:
        extended = parse_extended(args.extended)
        args.idle_timeout = int(extended.get("idle_timeout", 0))
        args.tls_verify_mode = int(extended.get("ssl_verify_mode", 0))
    except (argparse.ArgumentTypeError, ValueError) as e:
        p.error(f"-o: {e}")
    if args.idle_timeout < 0:
        p.error("-o idle_timeout must be 0 (off) or a number of seconds")
    if args.tls_verify_mode not in VERIFY_MODES:
        p.error("-o ssl_verify_mode must be 0, 1, 2 or 3")
    args.tls_cert = args.tls_cert or extended.get("ssl_chain_cert")
    args.tls_key = args.tls_key or extended.get("ssl_key")
    args.tls_ca = args.tls_ca or extended.get("ssl_ca_cert")
    if args.enable_ssl and not args.tls_cert:
        p.error("-Z needs a certificate: --tls-cert or -o ssl_chain_cert=")
    if args.tls_verify_mode and not args.tls_ca:
        p.error("-o ssl_verify_mode needs the clients' CA: --tls-ca or -o ssl_ca_cert=")
    args.data_dir = args.data_dir or default_data_dir(args.port)
    return args


def tls_context(args):
    """The server's ssl context for -Z: TLS 1.2 or later, no renegotiation."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.options |= getattr(ssl, "OP_NO_RENEGOTIATION", 0)
    ctx.load_cert_chain(args.tls_cert, args.tls_key)
    if args.tls_ca:
        ctx.load_verify_locations(args.tls_ca)
    ctx.verify_mode = VERIFY_MODES[args.tls_verify_mode]
    return ctx


def auth_file(path):
    """-Y: the path, once it is known to load."""
    try:
        handlers.load_auth_file(path)
    except handlers.AuthFileError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return path


def configure_stats(server, args, listener):
    """Hand -D, -X, -Y and the listening socket (for `stats conns`) to the protocol."""
    settings = server.settings
    if args.prefix_delimiter is not None:
        settings.prefix_delimiter = args.prefix_delimiter
        settings.detail_enabled = True  # as memcached's -D
    settings.dump_enabled = not args.disable_dumping
    if args.auth_file is not None:
        server.load_auth(args.auth_file)
    server.listener = (listener.fileno(), listener.getsockname())


def ensure_descriptors(connections):
    """Raise the open-files limit so -c connections fit, as memcached does;
    warn when the hard limit does not allow it."""
    need = connections + 64  # the store's files, the listener, logs
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        target = need if hard == resource.RLIM_INFINITY else min(need, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        if target < need:
            log.warning("open-files limit %d is below -c %d plus a reserve", target, connections)


# -- logging --------------------------------------------------------------------


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time (UTC, ISO 8601), level, logger, message,
    and the connection's peer where the line is about one."""

    FIELDS = ("peer",)

    def format(self, record):
        entry = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for field in self.FIELDS:
            if hasattr(record, field):
                entry[field] = getattr(record, field)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


class ReopenableFileHandler(logging.FileHandler):
    """A log file that SIGHUP reopens, so logrotate can move it away."""

    def reopen(self):
        self.acquire()
        try:
            if self.stream is not None:
                self.stream.close()
            self.stream = open(self.baseFilename, self.mode, encoding=self.encoding)
        finally:
            self.release()


def configure_logging(args):
    """Timestamped lines to stderr or --log-file; the handler, for SIGHUP."""
    if args.log_file:
        handler = ReopenableFileHandler(args.log_file, encoding="utf-8")
    else:
        handler = logging.StreamHandler(sys.stderr)
    if args.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    log.setLevel(logging.DEBUG if args.verbose else logging.INFO)
    return handler


def reopen_log(handler):
    """SIGHUP's work, run by the loop: reopen --log-file (logged either way)."""
    if isinstance(handler, ReopenableFileHandler):
        handler.reopen()
        log.info("SIGHUP: log file %s reopened", handler.baseFilename)
    else:
        log.info("SIGHUP: no --log-file to reopen")


def write_pidfile(path):
    with open(path, "w", encoding="ascii") as f:
        f.write(f"{os.getpid()}\n")


def remove_pidfile(path):
    try:
        os.unlink(path)
    except OSError as e:
        log.warning("cannot remove the pid file %s: %s", path, e.strerror)


def install_signals(reactor, log_handler):
    """SIGTERM, SIGINT and SIGUSR1 stop gracefully; SIGHUP reopens the log
    and reads the -Y auth file again, as memcached does."""

    def on_stop(signum, frame):
        log.info("%s: shutting down", signal.Signals(signum).name)
        reactor.stop()

    def on_hup(signum, frame):
        reactor.call_soon(lambda: reopen_log(log_handler))
        reactor.call_soon(reactor.server.reload_auth)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1):
        signal.signal(signum, on_stop)
    signal.signal(signal.SIGHUP, on_hup)


def make_settings(args):
    settings = handlers.Settings(max_connections=args.conn_limit, port=args.port, listen=args.listen)
    settings.verbosity = args.verbose
    settings.shutdown_enabled = args.enable_shutdown
    settings.flush_enabled = not args.disable_flush_all
    settings.idle_timeout = args.idle_timeout
    settings.tls_enabled = args.enable_ssl
    settings.tls_cert = args.tls_cert
    settings.tls_key = args.tls_key
    settings.tls_ca = args.tls_ca
    settings.tls_verify_mode = args.tls_verify_mode
    return settings


def main(argv=None):
    """Open the store, listen, serve until stopped; the exit status."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        log_handler = configure_logging(args)
    except OSError as e:
        print(f"cannot open the log file {args.log_file}: {e.strerror}", file=sys.stderr)
        return 1
    ensure_descriptors(args.conn_limit)
    context = None
    if args.enable_ssl:
        try:
            context = tls_context(args)
        except (OSError, ssl.SSLError) as e:
            log.error("cannot load the TLS certificate or key: %s", e)
            return 1
    try:
        store = Store(
            args.data_dir,
            memory_limit=args.memory_limit << 20,
            item_size_max=args.max_item_size,
            fsync=args.fsync,
            fsync_method=args.fsync_method,
            max_disk=args.max_disk,
            disk_policy=args.disk_policy,
            background_sync=True,
            fresh_spares=FRESH_SPARES,
        )
    except (DataDirError, ValueError) as e:
        log.error("%s", e)
        return 1
    try:
        family = socket.AF_INET6 if ":" in args.listen else socket.AF_INET
        listener = socket.create_server((args.listen, args.port), family=family, backlog=1024)
    except OSError as e:
        store.close()
        log.error("cannot listen on %s:%d: %s", args.listen, args.port, e.strerror)
        return 1
    if args.pidfile:
        try:
            write_pidfile(args.pidfile)
        except OSError as e:
            listener.close()
            store.close()
            log.error("cannot write the pid file %s: %s", args.pidfile, e.strerror)
            return 1
    reactor = Reactor(handlers.Server(store, make_settings(args)), listener, context)
    configure_stats(reactor.server, args, listener)
    install_signals(reactor, log_handler)
    log.info(
        "memcached-lite %s listening on %s:%d%s, data in %s, fsync %s (%s)",
        handlers.VERSION,
        args.listen,
        args.port,
        " (TLS)" if context else "",
        store.dir.path,
        store.durability.level,
        store.durability.method,
    )
    try:
        reactor.run()
    finally:
        if args.pidfile:
            remove_pidfile(args.pidfile)
    return 0


def _peer_name(peer):
    """host:port of a socket address (IPv6 hosts in brackets)."""
    if isinstance(peer, tuple) and len(peer) >= 2:
        host, port = peer[0], peer[1]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return str(peer)


if __name__ == "__main__":
    sys.exit(main())
