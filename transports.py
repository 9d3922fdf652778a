"""A connection's transport: how bytes move between one client socket and
the loop, chosen once, when the socket is accepted (as asyncio picks
`_SelectorSocketTransport` or its SSL transport when a connection is made).
The loop's read and send paths call the same two methods on either kind and
never ask which it is:

| method | PlainConnection | TlsConnection |
| --- | --- | --- |
| `receive(buffer)` | one `recv_into` the loop's buffer | records until ssl wants more, or the buffer is full |
| `send(data)` | one `send` when nothing is queued; the queue drained with `sendmsg` | the queue's small head parts joined into one ssl write; a write that met SSLWantWrite retried unchanged |
| `handshake()` | (none: never `handshaking`) | one `do_handshake` step |

Both keep what the kernel has not taken in `out` (a deque of buffers) and
report what they need from the loop in three attributes the loop reads:
`handshaking`, `want` (a readiness asked for in the middle of a read or a
write: ssl's read that needs a write, or write that needs a read) and
`buffered` (input already taken from the socket that select cannot see).
A plain connection never sets them.

Errors: `BlockingIOError` is absorbed here (nothing more now); anything else
(a reset, a broken pipe, a TLS alert) is raised to the loop, which ends the
connection in its one error funnel.
"""

import collections
import itertools
import os
import selectors
import socket
import ssl

# sendmsg takes at most IOV_MAX (1024 on Linux) buffers per call.
MAX_IOV = 512
# ssl has no sendmsg: replies smaller than this are joined into one write
# (one TLS record instead of one per reply); larger values go alone, uncopied.
TLS_JOIN = 64 * 1024
# The errors a transport raises that are the peer's doing (it went away, it
# spoke no TLS): the loop logs them at -v, not with a traceback.
PEER_ERRORS = (ConnectionError, ssl.SSLError)
# how much of a closing connection's unread input is read away
DISCARD_SIZE = 256 * 1024


class Connection:
    """One client socket, its protocol session, and the replies the kernel
    has not taken; the loop's bookkeeping of it besides (`later`, `paused`,
    `eof`, `events`, the idle timer's marks)."""

    __slots__ = (
        "sock", "session", "peer", "out", "out_size", "later", "paused", "eof", "events",
        "handshaking", "want", "buffered", "commands_seen", "active_at",
    )

    # how the connection is named in the "connection from" log line
    KIND = ""

    def __init__(self, sock, session, peer, now=0.0):
        self.sock = sock
        self.session = session
        self.peer = peer_name(peer)
        self.out = collections.deque()
        self.out_size = 0
        self.later = None  # this turn's reply, sent once the turn's other connections ran
        self.paused = False  # stopped reading: too much unsent output
        self.eof = False  # the client will send nothing more
        self.events = 0  # what the selector watches for it
        self.handshaking = False
        self.want = 0
        self.buffered = False
        self.commands_seen = 0  # session.commands when the idle timer last looked
        self.active_at = now  # when the idle timer last saw a command (monotonic)

    @staticmethod
    def wrap(sock, context):
        """The socket this transport runs over (before the session exists:
        a socket that cannot be wrapped is closed uncounted)."""
        return sock

    def log_extra(self):
        return {"peer": self.peer}

    def close(self):
        discard_input(self.sock)
        self.sock.close()

    def _queue(self, data):
        self.out.append(data)
        self.out_size += len(data)

    def _sent(self, sent):
        """Drop `sent` bytes from the head of the queue."""
        out = self.out
        self.out_size -= sent
        while sent:
            head = out[0]
            if sent >= len(head):
                sent -= len(head)
                out.popleft()
            else:
                out[0] = memoryview(head)[sent:]
                sent = 0


class PlainConnection(Connection):
    """A TCP socket as it is: the fast path of the loop."""

    __slots__ = ()

    def receive(self, buffer):
        """What one recv_into `buffer` got, as a view of it (empty at EOF,
        with `eof` set); None if nothing was there."""
        try:
            n = self.sock.recv_into(buffer)
        except (BlockingIOError, InterruptedError):
            return None
        if not n:
            self.eof = True
        return buffer[:n]  # the session copies what it keeps

    def send(self, data=b""):
        """Send `data` after what is queued, as much as the kernel takes now,
        and queue the rest; send(b"") at EVENT_WRITE drains the queue."""
        out = self.out
        if data and not out:
            # nothing queued before it: one send, and the queue only for a rest
            try:
                sent = self.sock.send(data)
            except (BlockingIOError, InterruptedError):
                sent = 0
            if sent != len(data):
                # the kernel took what it could: the rest waits for EVENT_WRITE
                self._queue(memoryview(data)[sent:])
            return
        if data:
            self._queue(data)
        while out:
            try:
                if len(out) == 1:
                    sent = self.sock.send(out[0])
                else:
                    sent = self.sock.sendmsg(list(itertools.islice(out, MAX_IOV)))
            except (BlockingIOError, InterruptedError):
                return
            self._sent(sent)


class TlsConnection(Connection):
    """A TLS socket (the stdlib `ssl` module, non-blocking) from its handshake on."""

    __slots__ = ("retry",)

    KIND = " (TLS)"

    def __init__(self, sock, session, peer, now=0.0):
        super().__init__(sock, session, peer, now)
        self.handshaking = True
        self.want = selectors.EVENT_READ  # the client speaks first
        self.retry = False  # out[0] met SSLWantWrite: resend it unchanged

    @staticmethod
    def wrap(sock, context):
        return context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)

    def handshake(self):
        """One step of the handshake: the protocol's name once it is done,
        else None, `want` saying which readiness the next step waits for."""
        try:
            self.sock.do_handshake()
        except ssl.SSLWantReadError:
            self.want = selectors.EVENT_READ
            return None
        except ssl.SSLWantWriteError:
            self.want = selectors.EVENT_WRITE
            return None
        self.handshaking = False
        self.want = 0
        # the client's first command may have come with the last handshake bytes
        self.buffered = self.sock.pending() > 0
        return self.sock.version()

    def receive(self, buffer):
        """Up to len(buffer) decrypted bytes, as a view of `buffer`: ssl
        hands out one record (at most 16 KiB) per recv, so records are read
        until it wants more from the socket or the buffer is full."""
        sock = self.sock
        limit = len(buffer)
        size = 0
        while size < limit:
            try:
                n = sock.recv_into(buffer[size:])
            except ssl.SSLWantReadError:
                break
            except ssl.SSLWantWriteError:
                self.want = selectors.EVENT_WRITE
                break
            if not n:
                self.eof = True
                break
            size += n
        # decrypted bytes left inside ssl: select will not report them
        self.buffered = sock.pending() > 0
        return buffer[:size]

    def send(self, data=b""):
        """Queue `data` and send the queue, one ssl write at a time, small
        head parts joined first. After SSLWantWrite, OpenSSL wants the same
        buffer again: `retry` keeps the head as it was until it has gone."""
        out = self.out
        if data:
            self._queue(data)
        while out:
            if not self.retry and len(out) > 1 and len(out[0]) < TLS_JOIN:
                parts = [out.popleft()]
                size = len(parts[0])
                while out and size + len(out[0]) <= TLS_JOIN:
                    size += len(out[0])
                    parts.append(out.popleft())
                out.appendleft(b"".join(parts))
            self.retry = True
            try:
                sent = self.sock.send(out[0])
            except (ssl.SSLWantWriteError, BlockingIOError, InterruptedError):
                return
            except ssl.SSLWantReadError:
                self.want = selectors.EVENT_READ
                return
            self.retry = False
            self._sent(sent)


def discard_input(sock):
    """Read away a socket's unread input before it is closed: closing a
    socket with unread input makes Linux send RST, and a peer that gets RST
    may lose replies it has not read yet. The raw bytes (socket.socket.recv,
    below ssl for a TLS socket: after a failed handshake ssl would only
    raise again)."""
    try:
        for _ in range(16):
            if not socket.socket.recv(sock, DISCARD_SIZE):
                break
    except OSError:
        pass


def peer_name(peer):
    """host:port of a socket address (IPv6 hosts in brackets); a unix
    socket's peer by its path, and a client's unnamed socket (accept gives
    '' for one: the usual case) as `unix client`."""
    if isinstance(peer, tuple) and len(peer) >= 2:
        host, port = peer[0], peer[1]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if peer == "" or peer == b"":
        return "unix client"
    return os.fsdecode(peer) if isinstance(peer, bytes) else str(peer)

