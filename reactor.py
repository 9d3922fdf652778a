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
import logging
import os
import resource
import selectors
import signal
import socket
import sys
import time

import handlers
from store import DISK_POLICIES, EVERYSEC, LEVELS, METHODS, DataDirError, Store

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
SHUTDOWN_FLUSH_SECONDS = 5.0
# sendmsg takes at most IOV_MAX (1024 on Linux) buffers per call.
MAX_IOV = 512


class Connection:
    """One client socket, its session, and the replies the kernel has not taken."""

    __slots__ = ("sock", "session", "peer", "out", "out_size", "paused", "eof", "events")

    def __init__(self, sock, session, peer):
        self.sock = sock
        self.session = session
        self.peer = peer
        self.out = collections.deque()
        self.out_size = 0
        self.paused = False  # stopped reading: too much unsent output
        self.eof = False  # the client will send nothing more
        self.events = 0


class Reactor:
    """The selectors loop serving one listening socket."""

    def __init__(self, server, listener):
        self.server = server
        self.listener = listener
        self.sel = selectors.DefaultSelector()
        self.conns = set()
        self.ready = set()  # connections with input parsed only in part
        self.held = set()  # connections whose replies wait for the store's batch
        self.stopping = False
        self._accept_paused_until = None
        self._background_paused_until = 0.0
        listener.setblocking(False)
        self.sel.register(listener, selectors.EVENT_READ, None)
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self.sel.register(self._wake_r, selectors.EVENT_READ, "wake")

    # -- the loop -----------------------------------------------------------

    def run(self):
        """Serve until stop() is called, then shut down cleanly."""
        try:
            while not self.stopping:
                busy = (
                    time.monotonic() >= self._background_paused_until
                    and self.server.has_background_work()
                )
                timeout = 0 if busy or self.ready else 1.0
                if self._accept_paused_until is not None:
                    timeout = min(timeout, ACCEPT_BACKOFF)
                sync_in = self.server.seconds_to_sync()
                if sync_in is not None:
                    timeout = min(timeout, sync_in)
                for key, mask in self.sel.select(timeout):
                    if key.data is None:
                        self._accept()
                    elif key.data == "wake":
                        self._drain_wake()
                    else:
                        self._serve(key.data, mask)
                self._run_ready()
                self._commit()
                self.server.sync_if_due()
                self._resume_accepting()
                if busy:
                    self._background()
        finally:
            self._shutdown()

    def _run_ready(self):
        """Give each connection that still has parsed input its next turn."""
        for conn in list(self.ready):
            self.ready.discard(conn)
            if conn in self.conns and not conn.paused:
                self._guarded(conn, self._pump, conn, b"")

    def _commit(self):
        """Make the iteration's writes durable, then send what waited for it."""
        self.server.commit()
        held, self.held = self.held, set()
        for conn in held:
            if conn in self.conns:
                self._guarded(conn, self._release, conn)

    def _release(self, conn):
        self._queue(conn, conn.session.release())

    def _background(self):
        try:
            self.server.background(TICK_BUDGET)
        except Exception:  # the store's housekeeping must never stop serving
            log.exception("background store work failed; retrying in %.0f s", BACKGROUND_BACKOFF)
            self._background_paused_until = time.monotonic() + BACKGROUND_BACKOFF

    def _drain_wake(self):
        try:
            while self._wake_r.recv(4096):
                pass
        except BlockingIOError:
            pass

    def stop(self):
        """Ask the loop to stop; safe from a signal handler or another thread:
        the byte written to the wake-up socket ends the select at once."""
        self.stopping = True
        try:
            self._wake_w.send(b"\0")
        except OSError:
            pass  # already awake, or already shut down

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
                # memcached's answer when -c is reached
                try:
                    sock.send(b"ERROR Too many open connections\r\n")
                except OSError:
                    pass
                _discard_input(sock)
                sock.close()
                continue
            conn = Connection(sock, handlers.Session(self.server), peer)
            self.conns.add(conn)
            log.debug("connection from %s", peer)
            self._set_events(conn)
            conn.session.attach(sock.fileno(), peer, self.listener.getsockname(), _unsent_of(conn))

    def _resume_accepting(self):
        until = self._accept_paused_until
        if until is not None and time.monotonic() >= until:
            self._accept_paused_until = None
            self.sel.register(self.listener, selectors.EVENT_READ, None)

    def _serve(self, conn, mask):
        self._guarded(conn, self._handle_events, conn, mask)

    def _guarded(self, conn, work, *args):
        try:
            work(*args)
            if conn.sock.fileno() >= 0:
                self._settle(conn)
        except Exception:  # one connection's failure must never stop the server
            log.exception("error on connection %s; closing it", conn.peer)
            self._close(conn)

    def _handle_events(self, conn, mask):
        if mask & selectors.EVENT_WRITE:
            self._send(conn)
            if conn.paused and conn.out_size < LOW_WATER and not self.stopping:
                conn.paused = False
                self._pump(conn, b"")
        if mask & selectors.EVENT_READ and conn.sock.fileno() >= 0:
            self._read(conn)

    def _read(self, conn):
        try:
            data = conn.sock.recv(RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except ConnectionError:
            self._close(conn)
            return
        if not data:
            conn.eof = True
            return
        self._pump(conn, data)

    def _pump(self, conn, data):
        """Feed the session one turn and send its replies. What it left for
        later waits in `ready` for the next turn, or, if the client is
        HIGH_WATER behind on reading, until it catches up."""
        session = conn.session
        reply = session.feed(data, limit=HIGH_WATER, max_commands=REQS_PER_EVENT)
        if session.holding:
            self.held.add(conn)
        self._queue(conn, reply)
        if session.stopped_early and not conn.paused:
            self.ready.add(conn)

    def _queue(self, conn, reply):
        if reply:
            conn.out.append(reply)
            conn.out_size += len(reply)
            self._send(conn)
        if conn.out_size >= HIGH_WATER:
            conn.paused = True

    def _send(self, conn):
        out = conn.out
        while out:
            try:
                if len(out) == 1:
                    sent = conn.sock.send(out[0])
                else:
                    sent = conn.sock.sendmsg(list(_take(out, MAX_IOV)))
            except (BlockingIOError, InterruptedError):
                return
            except (ConnectionError, BrokenPipeError):
                out.clear()
                conn.out_size = 0
                conn.eof = True
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

    def _settle(self, conn):
        """Close a finished connection, or set what it waits for."""
        session = conn.session
        finished = session.closing or (conn.eof and not session.stopped_early)
        if finished and not conn.out and not session.holding:
            self._close(conn)
            return
        self._set_events(conn)

    def _set_events(self, conn):
        events = 0
        # a session with a backlog is not read from until it has run it
        backlog = conn.session.stopped_early
        if not (conn.paused or backlog or conn.eof or conn.session.closing or self.stopping):
            events |= selectors.EVENT_READ
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
        if conn.events:
            self.sel.unregister(conn.sock)
            conn.events = 0
        conn.session.close()
        _discard_input(conn.sock)
        conn.sock.close()
        log.debug("connection from %s closed", conn.peer)

    # -- shutdown ---------------------------------------------------------------

    def _shutdown(self):
        if self._accept_paused_until is None:
            self.sel.unregister(self.listener)
        self.listener.close()
        deadline = time.monotonic() + SHUTDOWN_FLUSH_SECONDS
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
    try:
        for _ in range(16):
            if not sock.recv(RECV_SIZE):
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


def parse_args(argv):
    """The command line, memcached's flag names where they exist."""
    p = argparse.ArgumentParser(
        prog="python -m reactor",
        description="memcached-lite: a memcached 1.6 text-protocol server whose items "
        "are written through to files and survive restarts.",
    )
    p.add_argument("-p", "--port", type=int, default=11211, help="TCP port to listen on (default: 11211)")
    p.add_argument("-l", "--listen", default="127.0.0.1", help="interface to listen on (default: 127.0.0.1)")
    p.add_argument("-c", "--conn-limit", type=int, default=1024, help="max simultaneous connections (default: 1024)")
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
    p.add_argument("-v", "--verbose", action="count", default=0, help="-v connections, -vv every command")
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
    args.data_dir = args.data_dir or default_data_dir(args.port)
    return args


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


def main(argv=None):
    """Open the store, listen, serve until SIGTERM/SIGINT; the exit status."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    log.setLevel(logging.DEBUG if args.verbose else logging.INFO)
    ensure_descriptors(args.conn_limit)
    try:
        store = Store(
            args.data_dir,
            memory_limit=args.memory_limit << 20,
            item_size_max=args.max_item_size,
            fsync=args.fsync,
            fsync_method=args.fsync_method,
            max_disk=args.max_disk,
            disk_policy=args.disk_policy,
        )
    except (DataDirError, ValueError) as e:
        log.error("%s", e)
        return 1
    settings = handlers.Settings(
        max_connections=args.conn_limit,
        port=args.port,
        listen=args.listen,
    )
    settings.verbosity = args.verbose
    try:
        family = socket.AF_INET6 if ":" in args.listen else socket.AF_INET
        listener = socket.create_server((args.listen, args.port), family=family, backlog=1024)
    except OSError as e:
        store.close()
        log.error("cannot listen on %s:%d: %s", args.listen, args.port, e.strerror)
        return 1
    reactor = Reactor(handlers.Server(store, settings), listener)
    configure_stats(reactor.server, args, listener)

    def on_signal(signum, frame):
        log.info("%s: shutting down", signal.Signals(signum).name)
        reactor.stop()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, on_signal)
    log.info(
        "memcached-lite %s listening on %s:%d, data in %s, fsync %s (%s)",
        handlers.VERSION,
        args.listen,
        args.port,
        store.dir.path,
        store.durability.level,
        store.durability.method,
    )
    reactor.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
