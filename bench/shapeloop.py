"""The shape loop: the dict loop of bench/refloop.py rebuilt in the shape the
design card fixes for memcached-lite, and nothing more: a yardstick of what
that shape costs in CPython before any feature is added (not a contestant:
keep it this plain).

The shape: a reactor of connection objects on non-blocking sockets, whose
replies go out once the turn's reads have run; a sans-I/O session (bytes in,
replies out) with a named state for a set's data line; a command table; a
store of item objects, each get checking expiry and flush as any memcached
must; the counters `stats` shows. No files, no LRU, no memory bound, no
per-turn limits, no error replies past ERROR: each of those is memcached-
lite's own cost on top of this.

    python bench/shapeloop.py --port P
"""
import argparse
import selectors
import socket
import time
from selectors import EVENT_READ, EVENT_WRITE

LINE, DATA = "line", "data"  # the session's states: a command line, a set's data
END, STORED, ERROR = b"END\r\n", b"STORED\r\n", b"ERROR\r\n"


class Item:
    """One stored value and what a get must check of it."""

    __slots__ = ("flags", "value", "exptime", "cas", "stored")

    def __init__(self, flags, value, exptime, cas, stored):
        self.flags, self.value, self.exptime, self.cas, self.stored = flags, value, exptime, cas, stored


class Counters:
    """The per-server counters `stats` would show."""

    __slots__ = ("cmd_get", "get_hits", "get_misses", "cmd_set", "bytes_read", "bytes_written")

    def __init__(self):
        self.cmd_get = self.get_hits = self.get_misses = self.cmd_set = 0
        self.bytes_read = self.bytes_written = 0


class Store:
    """Items by key; a dead item (expired, or stored before a flush_all) is a miss."""

    def __init__(self):
        self.items = {}
        self.now = time.monotonic()
        self.dead_before = 0.0  # flush_all's moment
        self.next_cas = 0

    def get(self, key):
        item = self.items.get(key)
        if item is None:
            return None
        if (item.exptime and item.exptime <= self.now) or item.stored < self.dead_before:
            del self.items[key]
            return None
        return item

    def set(self, key, flags, exptime, value):
        self.next_cas += 1
        expires = self.now + exptime if exptime else 0
        self.items[key] = Item(flags, value, expires, self.next_cas, self.now)


def get(session, words):
    store, counters, out = session.store, session.counters, session.out
    for key in words[1:]:
        counters.cmd_get += 1
        item = store.get(key)
        if item is None:
            counters.get_misses += 1
            continue
        counters.get_hits += 1
        out.append(b"VALUE %s %d %d\r\n%s\r\n" % (key, item.flags, len(item.value), item.value))
    out.append(END)


def set_(session, words):
    session.pending = (words[1], int(words[2]), int(words[3]), int(words[4]))
    session.state = DATA


COMMANDS = {b"get": get, b"set": set_}


class Session:
    """One connection's protocol, without I/O: feed it bytes, get its replies."""

    def __init__(self, store, counters):
        self.store, self.counters = store, counters
        self.buf = bytearray()
        self.state = LINE
        self.pending = None
        self.out = []

    def feed(self, data):
        counters = self.counters
        counters.bytes_read += len(data)
        buf = self.buf
        buf += data
        pos = 0
        while True:
            if self.state is LINE:
                nl = buf.find(b"\r\n", pos)
                if nl < 0:
                    break
                words = bytes(buf[pos:nl]).split(b" ")
                pos = nl + 2
                command = COMMANDS.get(words[0])
                if command is None:
                    self.out.append(ERROR)
                else:
                    command(self, words)
            else:
                key, flags, exptime, size = self.pending
                if len(buf) - pos < size + 2:
                    break
                self.store.set(key, flags, exptime, bytes(buf[pos : pos + size]))
                pos += size + 2
                counters.cmd_set += 1
                self.out.append(STORED)
                self.state, self.pending = LINE, None
        del buf[:pos]
        reply = b"".join(self.out)
        self.out.clear()
        counters.bytes_written += len(reply)
        return reply


class Conn:
    """A client's socket, its session, and what it has not taken yet."""

    __slots__ = ("sock", "session", "unsent")

    def __init__(self, sock, session):
        self.sock, self.session, self.unsent = sock, session, b""


class Reactor:
    """One selector over the listener and every connection."""

    def __init__(self, listener):
        self.listener = listener
        self.sel = selectors.DefaultSelector()
        self.sel.register(listener, EVENT_READ, None)
        self.store = Store()
        self.counters = Counters()

    def run(self):
        while True:
            events = self.sel.select()
            self.store.now = time.monotonic()
            later = []
            for key, mask in events:
                conn = key.data
                if conn is None:
                    self.accept()
                    continue
                if mask & EVENT_WRITE:
                    self.send(conn, b"")
                if mask & EVENT_READ:
                    try:
                        data = conn.sock.recv(65536)
                    except BlockingIOError:
                        continue
                    except OSError:
                        data = b""
                    if not data:
                        self.close(conn)
                        continue
                    reply = conn.session.feed(data)
                    if reply:
                        later.append((conn, reply))
            for conn, reply in later:
                self.send(conn, reply)

    def accept(self):
        try:
            sock, _ = self.listener.accept()
        except BlockingIOError:
            return
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sel.register(sock, EVENT_READ, Conn(sock, Session(self.store, self.counters)))

    def send(self, conn, reply):
        data = conn.unsent + reply if conn.unsent else reply
        try:
            sent = conn.sock.send(data) if data else 0
        except BlockingIOError:
            sent = 0
        except OSError:
            return self.close(conn)
        was, conn.unsent = conn.unsent, data[sent:]
        if bool(was) != bool(conn.unsent):
            self.sel.modify(conn.sock, EVENT_READ | (EVENT_WRITE if conn.unsent else 0), conn)

    def close(self, conn):
        if conn.sock.fileno() < 0:
            return  # (closed earlier this turn)
        self.sel.unregister(conn.sock)
        conn.sock.close()


if __name__ == "__main__":
    p = argparse.ArgumentParser(description="the benchmark's shape loop")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--host", default="127.0.0.1")
    args = p.parse_args()
    listener = socket.create_server((args.host, args.port), backlog=1024)
    listener.setblocking(False)
    Reactor(listener).run()
