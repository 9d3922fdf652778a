"""A small memcached text-protocol client over a plain socket: send one
command, read exactly its reply. It speaks only the wire protocol, so it works
against memcached-lite and real memcached alike."""

import socket

STORAGE = {b"set", b"add", b"replace", b"append", b"prepend", b"cas"}
# Replies to these run until END (or an error line).
MULTILINE = {b"get", b"gets", b"gat", b"gats", b"stats"}
ERRORS = (b"ERROR", b"CLIENT_ERROR", b"SERVER_ERROR")


class ConnectionClosed(Exception):
    """The server closed the connection."""


class Client:
    """One connection to a memcached server."""

    def __init__(self, host="127.0.0.1", port=11211, timeout=5.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self._buf = b""

    def close(self):
        self.sock.close()

    def request(self, line, data=None):
        """Send a command line (and a storage command's data); return the reply bytes."""
        words = line.split()
        payload = line + b"\r\n"
        if data is not None:
            payload += data + b"\r\n"
        self.sock.sendall(payload)
        if not words:
            return self._line()
        command = words[0]
        if command == b"quit":
            return b""
        if words[-1] == b"noreply" and command not in MULTILINE:
            return b""
        if command not in MULTILINE:
            return self._line()
        return self._until_end()

    def _until_end(self):
        out = []
        while True:
            line = self._line()
            out.append(line)
            if line == b"END\r\n" or line.startswith(ERRORS) or line == b"RESET\r\n":
                return b"".join(out)
            if line.startswith(b"VALUE "):
                size = int(line.split()[3])
                out.append(self._exactly(size + 2))

    def _line(self):
        while b"\n" not in self._buf:
            self._fill()
        line, _, self._buf = self._buf.partition(b"\n")
        return line + b"\n"

    def _exactly(self, n):
        while len(self._buf) < n:
            self._fill()
        data, self._buf = self._buf[:n], self._buf[n:]
        return data

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionClosed("the server closed the connection")
        self._buf += chunk
