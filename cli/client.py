"""A small memcached text-protocol client over a plain socket (TCP, or a
unix-domain socket: a path for host and no port): send a command, read
exactly its reply. It speaks only the wire protocol, so it works against
memcached-lite and real memcached alike.

`request()` returns a reply's raw bytes (what `--raw` prints); the helpers
around it (`parse_values`, `parse_stats`, `metadump`) turn replies into
values. Errors are exceptions of one small family: `ConnectFailed` (nothing
listens, or no answer within the connect timeout), `ConnectionClosed` (the
server went away mid-conversation) and `ReplyTimeout` (it stopped answering).
"""

import collections
import errno
import socket

STORAGE = {b"set", b"add", b"replace", b"append", b"prepend", b"cas"}
RETRIEVAL = {b"get", b"gets", b"gat", b"gats"}
ERRORS = (b"ERROR", b"CLIENT_ERROR", b"SERVER_ERROR")
KEY_MAX_LENGTH = 250
# bytes a key may not hold: the protocol splits on spaces and ends lines at \n
# (a \r before it is dropped, and memcached ends a line at a NUL)
_KEY_FORBIDDEN = frozenset(b" \r\n\0")

Value = collections.namedtuple("Value", "key flags value cas")


class ClientError(Exception):
    """Talking to the server failed; the message says how, for a person."""


class ConnectFailed(ClientError):
    """No server accepted the connection."""


class ConnectionClosed(ClientError):
    """The server closed the connection."""


class ReplyTimeout(ClientError):
    """The server did not answer within the read timeout."""


class ProtocolError(ClientError):
    """The server sent something this client cannot read as a reply."""


def key_problem(key):
    """Why key cannot be sent as a memcached key, or None if it can."""
    if not key:
        return "a key cannot be empty"
    if len(key) > KEY_MAX_LENGTH:
        return f"a key is at most {KEY_MAX_LENGTH} bytes (this one is {len(key)})"
    if any(b in _KEY_FORBIDDEN for b in key):
        return "a key cannot hold spaces, line breaks or NUL bytes"
    return None


def address_of(host, port):
    """How a server is named in messages and the shell's prompt: host:port, or the socket's path."""
    return host if port is None else f"{host}:{port}"


def _connect(host, port, timeout):
    if port is not None:
        return socket.create_connection((host, port), timeout=timeout)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(host)
    except BaseException:
        sock.close()
        raise
    return sock


class Client:
    """One connection to a memcached server.

    `connect_timeout` bounds the connect, `timeout` every read after it.
    With `port=None`, `host` is the path of a unix-domain socket (memcached's -s).
    """

    def __init__(self, host="127.0.0.1", port=11211, timeout=10.0, connect_timeout=3.0):
        self.host = host
        self.port = port
        self.address = address_of(host, port)
        try:
            self.sock = _connect(host, port, connect_timeout)
        except socket.timeout:
            raise ConnectFailed(f"cannot connect to {self.address}: no answer within {connect_timeout:g} s") from None
        except OSError as e:
            raise ConnectFailed(f"cannot connect to {self.address}: {e.strerror or e}") from None
        self.sock.settimeout(timeout)
        if port is not None:
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.timeout = timeout
        self._buf = bytearray()
        self._pos = 0

    def close(self):
        self.sock.close()

    def peer_closed(self):
        """Whether the server has closed the connection since the last reply
        (checked without blocking and without consuming anything)."""
        if self._pos < len(self._buf):
            return False
        # with a timeout set, Python waits for readability before recv even
        # with MSG_DONTWAIT: the socket must be non-blocking for the peek
        self.sock.setblocking(False)
        try:
            data = self.sock.recv(1, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            return True
        finally:
            self.sock.settimeout(self.timeout)
        return not data

    # -- whole requests -----------------------------------------------------

    def request(self, line, data=None):
        """Send a command line (and a storage command's data); return the
        reply bytes, exactly as the server sent them."""
        payload = line + b"\r\n"
        if data is not None:
            payload += data + b"\r\n"
        self.send(payload)
        return self.read_reply(line)

    def read_reply(self, line):
        """Read the reply to the command `line`, however long it is."""
        words = line.split()
        if not words:
            return self.read_line()
        command = words[0]
        if command == b"quit":
            return b""
        if words[-1] == b"noreply" and command not in RETRIEVAL and command != b"stats":
            return b""
        if command in RETRIEVAL:
            return self._read_values()
        if command == b"stats":
            return self._read_until_end(ends=(b"END\r\n", b"RESET\r\n"))
        if command == b"lru_crawler" and len(words) > 1 and words[1] == b"metadump":
            return self._read_until_end()
        first = self.read_line()
        if first.startswith(b"VA "):  # a meta get's value follows its line
            size = _int_word(first, 1)
            return first + self.read_exactly(size + 2)
        return first

    def _read_values(self):
        out = []
        while True:
            line = self.read_line()
            out.append(line)
            if line == b"END\r\n" or line.startswith(ERRORS):
                return b"".join(out)
            if not line.startswith(b"VALUE "):
                raise ProtocolError(f"unexpected line in a get reply: {line[:80]!r}")
            out.append(self.read_exactly(_int_word(line, 3) + 2))

    def _read_until_end(self, ends=(b"END\r\n",)):
        out = []
        while True:
            line = self.read_line()
            out.append(line)
            if line in ends or line.startswith(ERRORS) or not out[0].startswith((b"STAT ", b"key=", b"END")):
                return b"".join(out)

    # -- typed helpers ------------------------------------------------------

    def get_values(self, keys, with_cas=False):
        """The values of keys that hit, as Value tuples (cas None without it)."""
        reply = self.request((b"gets " if with_cas else b"get ") + b" ".join(keys))
        if reply.startswith(ERRORS):
            raise ProtocolError(reply.decode("utf-8", "replace").strip())
        return parse_values(reply)

    def stats(self, sub=None):
        """`stats [sub]` as an ordered dict of name -> value (bytes)."""
        reply = self.request(b"stats" + (b" " + sub if sub else b""))
        if reply.startswith(ERRORS):
            raise ProtocolError(reply.decode("utf-8", "replace").strip())
        return parse_stats(reply)

    # -- the stream underneath ----------------------------------------------

    def send(self, data):
        try:
            self.sock.sendall(data)
        except socket.timeout:
            raise ReplyTimeout(f"{self.address} stopped reading for {self.timeout:g} s") from None
        except OSError as e:
            raise ConnectionClosed(f"connection to {self.address} lost: {e.strerror or e}") from None

    def read_line(self):
        """One reply line, with its line end."""
        while True:
            nl = self._buf.find(b"\n", self._pos)
            if nl >= 0:
                line = bytes(self._buf[self._pos : nl + 1])
                self._pos = nl + 1
                return line
            self._fill()

    def read_exactly(self, n):
        while len(self._buf) - self._pos < n:
            self._fill()
        data = bytes(self._buf[self._pos : self._pos + n])
        self._pos += n
        return data

    def _fill(self):
        if self._pos:
            del self._buf[: self._pos]
            self._pos = 0
        try:
            chunk = self.sock.recv(1 << 18)
        except socket.timeout:
            raise ReplyTimeout(f"{self.address} sent no reply within {self.timeout:g} s") from None
        except OSError as e:
            if e.errno == errno.ECONNRESET:
                raise ConnectionClosed(f"{self.address} reset the connection") from None
            raise ConnectionClosed(f"connection to {self.address} lost: {e.strerror or e}") from None
        if not chunk:
            raise ConnectionClosed(f"{self.address} closed the connection")
        self._buf += chunk

    def metadump(self, which=b"all"):
        """Yield each `lru_crawler metadump <which>` line (without its "\\n")
        until END. The first line may be an error or BUSY reply, raised as
        ProtocolError with the server's words."""
        self.send(b"lru_crawler metadump " + which + b"\r\n")
        first = True
        while True:
            line = self.read_line()
            if line == b"END\r\n":
                return
            if first and not line.startswith(b"key="):
                raise ProtocolError(line.decode("utf-8", "replace").strip())
            first = False
            yield line[:-1]


def _int_word(line, index):
    try:
        return int(line.split()[index])
    except (IndexError, ValueError):
        raise ProtocolError(f"malformed reply line: {line[:80]!r}") from None


def parse_values(reply):
    """The Value tuples of a get/gets reply."""
    try:
        return _parse_values(reply)
    except (ValueError, IndexError):
        raise ProtocolError(f"unreadable get reply: {reply[:80]!r}") from None


def _parse_values(reply):
    values = []
    pos = 0
    while True:
        nl = reply.index(b"\n", pos)
        line = reply[pos : nl + 1]
        pos = nl + 1
        if line == b"END\r\n":
            return values
        words = line.split()
        size = int(words[3])
        cas = int(words[4]) if len(words) > 4 else None
        values.append(Value(words[1], int(words[2]), reply[pos : pos + size], cas))
        pos += size + 2


def parse_stats(reply):
    """`STAT name value` lines as an ordered dict."""
    rows = {}
    for line in reply.split(b"\r\n"):
        if line.startswith(b"STAT "):
            _, name, value = (line.split(b" ", 2) + [b""])[:3]
            rows[name.decode("utf-8", "replace")] = value
    return rows
