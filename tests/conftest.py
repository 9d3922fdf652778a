"""Fixtures for the end-to-end and differential suites.

Everything here talks to real server processes over loopback TCP (or a
unix-domain socket, for -s):

- ``ServerProcess`` starts one server (ours, ``python -m reactor``, or the real
  ``memcached``) on a free port, waits until it is ready, and stops it by PID.
  Every process started here is registered; a session finalizer kills any that
  a test left running, so no process outlives the test run.
- ``Conn`` is a raw socket with its own receive buffer. It reads until a given
  number of reply terminators has arrived, or until the peer closes, always
  under a deadline. Sleeps are never used for correctness: a timeout only
  bounds how long a broken server can keep a test waiting.

``MCLITE_TARGET=memcached`` makes the ``mclite`` fixtures start the real
memcached instead of ours. That is how the suites themselves are validated:
every e2e test must pass against memcached, except those that need persistence
(they skip, because memcached forgets everything on restart).

Helpers are handed to tests as fixtures (``connect``, ``exchange``,
``free_port``, ``certs``: a self-signed certificate for the TLS tests,
``unix_path``: a short path for a unix socket), so
test modules never import this file.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
TARGET = os.environ.get("MCLITE_TARGET", "mclite").strip().lower() or "mclite"
MEMCACHED_BIN = shutil.which("memcached")

START_TIMEOUT = 20.0  # seconds until a server must accept connections
STOP_TIMEOUT = 10.0  # seconds a server gets to exit after SIGTERM
IO_TIMEOUT = 10.0  # seconds any single read on a test socket may take

NO_MEMCACHED = "the real memcached binary is not installed (apt-get install memcached)"

if TARGET not in ("mclite", "memcached"):
    raise pytest.UsageError(f"MCLITE_TARGET must be 'mclite' or 'memcached', not {TARGET!r}")


# --------------------------------------------------------------------------
# ports


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (bind port 0, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------
# server processes

_STARTED: List["ServerProcess"] = []  # every process ever started, for the safety net


class ServerStartError(RuntimeError):
    pass


class PortTaken(ServerStartError):
    """The free port was taken by another server before ours bound it."""


def open_socket(address, timeout: float) -> socket.socket:
    """A connected client socket: TCP for a (host, port), unix-domain for a path."""
    if isinstance(address, tuple):
        return socket.create_connection(address, timeout=timeout)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(str(address))
    except OSError:
        sock.close()
        raise
    return sock


class ServerProcess:
    """One server process on 127.0.0.1, owned by the test that started it.

    ``kind`` is ``"mclite"`` (``python -m reactor``) or ``"memcached"``.
    ``extra_args`` are command-line flags; for memcached only the flags both
    servers share (-m, -I, -c, -v, -A, -F, -o idle_timeout) are meaningful.
    ``env`` is added to the process's environment (e.g. libfaketime's).
    ``unix_socket``: listen there (-s) instead of TCP; ``address`` is then the path.
    """

    LISTEN_MARKER = "listening on 127.0.0.1:{port}"
    UNIX_LISTEN_MARKER = "listening on unix socket {path} "
    ADDR_IN_USE = ("address already in use", "errno 98", "failed to listen")

    def __init__(
        self,
        kind: str,
        data_dir: Optional[Path] = None,
        port: Optional[int] = None,
        extra_args: Sequence[str] = (),
        env: Optional[Dict[str, str]] = None,
        unix_socket: Optional[Path] = None,
    ) -> None:
        if kind not in ("mclite", "memcached"):
            raise ValueError(kind)
        if kind == "memcached" and MEMCACHED_BIN is None:
            pytest.skip(NO_MEMCACHED)
        if kind == "mclite" and data_dir is None:
            raise ValueError("our server needs a data dir")
        self.kind = kind
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self.port = port
        self._port_pinned = port is not None
        self.extra_args = list(extra_args)
        self.env = dict(env or {})
        self.unix_socket = Path(unix_socket) if unix_socket is not None else None
        self.proc: Optional[subprocess.Popen] = None
        self.returncode: Optional[int] = None
        self._stderr_lines: List[str] = []
        self._stderr_cond = threading.Condition()
        self._stderr_done = False
        self._reader: Optional[threading.Thread] = None
        # under -Y the readiness probe must authenticate first: b"<user> <password>"
        self.probe_auth: Optional[bytes] = None
        # under -S (memcached's port is then binary only): (user, password) for
        # a binary SASL PLAIN login before the probe's binary stat
        self.probe_sasl: Optional[tuple] = None

    # -- facts

    @property
    def persistent(self) -> bool:
        """True when items survive a restart on the same data dir."""
        return self.kind == "mclite"

    @property
    def address(self):
        if self.unix_socket is not None:
            return str(self.unix_socket)
        return ("127.0.0.1", self.port)

    @property
    def pid(self) -> Optional[int]:
        return self.proc.pid if self.proc else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stderr_text(self) -> str:
        with self._stderr_cond:
            return "".join(self._stderr_lines)

    def __repr__(self) -> str:
        return f"<ServerProcess {self.kind} pid={self.pid} port={self.port}>"

    # -- starting

    def argv(self) -> List[str]:
        unix = ["-s", str(self.unix_socket)] if self.unix_socket is not None else []
        if self.kind == "mclite":
            return [
                sys.executable, "-m", "reactor",
                "--port", str(self.port),
                "--listen", "127.0.0.1",
                "--data-dir", str(self.data_dir),
                *unix,
                *self.extra_args,
            ]
        argv = [MEMCACHED_BIN]
        if os.geteuid() == 0:
            argv += ["-u", "root"]
        return argv + ["-l", "127.0.0.1", "-p", str(self.port), "-t", "1", "-U", "0", *unix, *self.extra_args]

    def spawn(self) -> "ServerProcess":
        """Start the process without waiting for it to be ready."""
        assert not self.alive(), "already running"
        if self.port is None:
            self.port = free_port()
        self._stderr_lines = []
        self._stderr_done = False
        self.returncode = None
        env = dict(os.environ, PYTHONUNBUFFERED="1", **self.env)
        self.proc = subprocess.Popen(
            self.argv(),
            cwd=str(REPO_ROOT),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
        )
        _STARTED.append(self)
        # Drain stderr for the whole life of the process, so a chatty server
        # (-v) can never block on a full pipe.
        self._reader = threading.Thread(target=self._drain_stderr, args=(self.proc,), daemon=True)
        self._reader.start()
        return self

    def _drain_stderr(self, proc: subprocess.Popen) -> None:
        for raw in iter(proc.stderr.readline, b""):
            with self._stderr_cond:
                self._stderr_lines.append(raw.decode("utf-8", "replace"))
                self._stderr_cond.notify_all()
        with self._stderr_cond:
            self._stderr_done = True
            self._stderr_cond.notify_all()
        proc.stderr.close()

    def start(self, timeout: float = START_TIMEOUT) -> "ServerProcess":
        """Start and wait until the server accepts connections.

        A port picked by ``free_port`` can be taken by someone else before the
        server binds it; then (and only when the port was not pinned) retry
        on another port.
        """
        for attempt in range(3):
            self.spawn()
            try:
                self._wait_ready(timeout)
                return self
            except ServerStartError as e:
                self._terminate_quietly()
                in_use = isinstance(e, PortTaken) or any(
                    m in self.stderr_text().lower() for m in self.ADDR_IN_USE
                )
                if self._port_pinned or self.unix_socket is not None or not in_use or attempt == 2:
                    raise
                self.port = None
        raise AssertionError("unreachable")

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        if self.kind == "mclite":
            self._wait_for_listening_line(deadline)
        else:
            self._wait_for_connect(deadline)

    def _wait_for_listening_line(self, deadline: float) -> None:
        if self.unix_socket is not None:
            marker = self.UNIX_LISTEN_MARKER.format(path=self.unix_socket)
        else:
            marker = self.LISTEN_MARKER.format(port=self.port)
        with self._stderr_cond:
            while True:
                if any(marker in line for line in self._stderr_lines):
                    return
                if self._stderr_done:
                    self.proc.wait(timeout=STOP_TIMEOUT)
                    raise ServerStartError(
                        f"{self.argv()} exited with {self.proc.returncode} before listening; "
                        f"stderr:\n{''.join(self._stderr_lines)}"
                    )
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise ServerStartError(
                        f"{self.argv()} did not print {marker!r} within the deadline; "
                        f"stderr:\n{''.join(self._stderr_lines)}"
                    )
                self._stderr_cond.wait(remaining)

    def _wait_for_connect(self, deadline: float) -> None:
        while True:
            if self.proc.poll() is not None:
                self._reader.join(STOP_TIMEOUT)
                raise ServerStartError(
                    f"{self.argv()} exited with {self.proc.returncode}; stderr:\n{self.stderr_text()}"
                )
            try:
                with open_socket(self.address, timeout=1.0) as probe:
                    # the port was free a moment ago: make sure the server that
                    # answers is this process, not another that took the port
                    if self.probe_sasl is not None:
                        if _binary_sasl_pid(probe, *self.probe_sasl) != self.proc.pid:
                            raise PortTaken(f"another server answers on {self.address}")
                        return
                    if self.probe_auth is not None:
                        probe.sendall(b"set auth 0 0 %d\r\n%s\r\n" % (len(self.probe_auth), self.probe_auth))
                    probe.sendall(b"stats\r\n")
                    reply = b""
                    while not reply.endswith(b"END\r\n"):
                        chunk = probe.recv(65536)
                        if not chunk:
                            break
                        reply += chunk
                if b"STAT pid %d\r\n" % self.proc.pid not in reply:
                    raise PortTaken(f"another server answers on {self.address}")
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise ServerStartError(f"{self.argv()} never accepted a connection")
                # Polling interval only; readiness is decided by the connect.
                time.sleep(0.01)

    # -- stopping

    def wait_exit(self, timeout: float = STOP_TIMEOUT) -> int:
        """Wait (bounded) for the process to exit; return its exit status."""
        try:
            self.returncode = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self!r} did not exit within {timeout}s; stderr:\n{self.stderr_text()}")
        if self._reader is not None:
            self._reader.join(STOP_TIMEOUT)
        return self.returncode

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Graceful stop by PID (SIGTERM unless told); asserts exit status 0."""
        assert self.alive(), f"{self!r} is not running; stderr:\n{self.stderr_text()}"
        os.kill(self.proc.pid, sig)
        try:
            rc = self.wait_exit()
        except AssertionError:
            self._terminate_quietly()
            raise
        assert rc == 0, f"{self!r} exited with {rc} after signal {sig}; stderr:\n{self.stderr_text()}"
        return rc

    def kill9(self) -> None:
        """SIGKILL by PID: a crash, nothing gets flushed."""
        assert self.alive(), f"{self!r} is not running; stderr:\n{self.stderr_text()}"
        os.kill(self.proc.pid, signal.SIGKILL)
        self.wait_exit()

    def restart(self, new_port: bool = False, timeout: float = START_TIMEOUT) -> "ServerProcess":
        """Start again on the same data dir (stop it first if it still runs)."""
        if self.alive():
            self.stop()
        if new_port:
            self.port = None
            self._port_pinned = False
        else:
            self._port_pinned = True
        return self.start(timeout)

    def _terminate_quietly(self) -> None:
        """Teardown: SIGTERM, a bounded wait, then SIGKILL. Never raises."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            if proc is not None and self.returncode is None:
                self.returncode = proc.returncode
            return
        try:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=STOP_TIMEOUT)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
        self.returncode = proc.returncode
        if self._reader is not None:
            self._reader.join(STOP_TIMEOUT)

    close = _terminate_quietly


def _binary_sasl_pid(sock: socket.socket, user: bytes, password: bytes) -> Optional[int]:
    """Log in with binary SASL PLAIN, then read the ``pid`` of a binary stat
    (None if the login fails): the readiness probe of a server under -S."""

    def request(opcode: int, key: bytes = b"", value: bytes = b"") -> None:
        sock.sendall(struct.pack(">BBHBBHIIQ", 0x80, opcode, len(key), 0, 0, 0, len(key) + len(value), 0, 0)
                     + key + value)

    def reply():
        head = _recv_exactly(sock, 24)
        _, _, keylen, extlen, _, status, bodylen, _, _ = struct.unpack(">BBHBBHIIQ", head)
        body = _recv_exactly(sock, bodylen)
        return status, body[extlen:extlen + keylen], body[extlen + keylen:]

    request(0x21, b"PLAIN", b"\0" + user + b"\0" + password)  # SASL auth
    if reply()[0] != 0:
        return None
    request(0x10)  # stat: one packet per statistic, then one with an empty key
    pid = None
    while True:
        status, key, value = reply()
        if status != 0 or not key:
            return pid
        if key == b"pid":
            pid = int(value)


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionResetError("closed during the readiness probe")
        data += chunk
    return data


def stop_all(servers: Sequence[ServerProcess]) -> None:
    """Teardown of several servers at once: SIGTERM to each, then the bounded
    waits (memcached takes up to a second to notice a signal; in parallel,
    that second is paid once)."""
    for server in servers:
        if server.alive():
            try:
                os.kill(server.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    for server in servers:
        server._terminate_quietly()


_SHARED_FLAGS_WITH_VALUE = {"-m", "-I", "-c", "-o", "-a"}
_SHARED_FLAGS = {"-v", "-vv", "-A", "-F"}


def memcached_args(extra_args: Sequence[str]) -> List[str]:
    """The subset of our flags that mean the same to memcached; skip otherwise."""
    out: List[str] = []
    it = iter(extra_args)
    for arg in it:
        if arg in _SHARED_FLAGS_WITH_VALUE:
            out += [arg, next(it)]
        elif arg in _SHARED_FLAGS:
            out.append(arg)
        else:
            pytest.skip(f"flag {arg!r} is ours only; not running it against memcached")
    return out


def make_target_server(
    data_dir: Path,
    extra_args: Sequence[str] = (),
    port: Optional[int] = None,
    env: Optional[Dict[str, str]] = None,
    unix_socket: Optional[Path] = None,
) -> ServerProcess:
    """The server under test: ours, or real memcached when MCLITE_TARGET=memcached."""
    if TARGET == "memcached":
        return ServerProcess(
            "memcached", port=port, extra_args=memcached_args(extra_args), env=env, unix_socket=unix_socket
        )
    return ServerProcess(
        "mclite", data_dir=data_dir, port=port, extra_args=extra_args, env=env, unix_socket=unix_socket
    )


@pytest.fixture(scope="session", autouse=True)
def _no_leaked_servers():
    """Safety net: whatever a test forgot, kill it by PID at the end."""
    yield
    for server in _STARTED:
        server._terminate_quietly()


@pytest.fixture(scope="session")
def target() -> str:
    """'mclite' or 'memcached': what the mclite fixtures start."""
    return TARGET


@pytest.fixture(scope="module")
def mclite(tmp_path_factory) -> Iterable[ServerProcess]:
    """One server under test shared by a whole module (use distinct keys)."""
    server = make_target_server(tmp_path_factory.mktemp("mclite-data"))
    try:
        server.start()
        yield server
    finally:
        server._terminate_quietly()


@pytest.fixture
def start_mclite(tmp_path) -> Iterable[Callable[..., ServerProcess]]:
    """Factory: ``start_mclite(data_dir=None, extra_args=(), port=None, env=None, unix_socket=None)``.

    Every server it starts is stopped by PID at the end of the test.
    """
    started: List[ServerProcess] = []

    def start(
        data_dir: Optional[Path] = None,
        extra_args: Sequence[str] = (),
        port: Optional[int] = None,
        env: Optional[Dict[str, str]] = None,
        unix_socket: Optional[Path] = None,
    ):
        if data_dir is None:
            data_dir = tmp_path / f"data{len(started)}"
            data_dir.mkdir()
        server = make_target_server(Path(data_dir), extra_args, port, env, unix_socket)
        started.append(server)
        return server.start()

    yield start
    stop_all(started)


@pytest.fixture
def spawn_mclite() -> Iterable[Callable[..., ServerProcess]]:
    """Factory: ``spawn_mclite(data_dir, extra_args=(), unix_socket=None, env=None)``
    starts our server without waiting for it to listen (for start-up failures);
    stopped by PID at the end of the test."""
    spawned: List[ServerProcess] = []

    def spawn(
        data_dir: Path,
        extra_args: Sequence[str] = (),
        unix_socket: Optional[Path] = None,
        env: Optional[Dict[str, str]] = None,
    ):
        server = ServerProcess(
            "mclite", data_dir=Path(data_dir), extra_args=extra_args, unix_socket=unix_socket, env=env
        )
        spawned.append(server)
        return server.spawn()

    yield spawn
    stop_all(spawned)


@pytest.fixture
def spawn_memcached() -> Iterable[Callable[..., ServerProcess]]:
    """Factory: ``spawn_memcached(extra_args=(), env=None)`` starts the real
    memcached without waiting for it to listen (for its refusals); stopped by
    PID at the end of the test; skips when it is not installed."""
    if MEMCACHED_BIN is None:
        pytest.skip(NO_MEMCACHED)
    spawned: List[ServerProcess] = []

    def spawn(extra_args: Sequence[str] = (), env: Optional[Dict[str, str]] = None):
        server = ServerProcess("memcached", extra_args=extra_args, env=env)
        spawned.append(server)
        return server.spawn()

    yield spawn
    stop_all(spawned)


@pytest.fixture(scope="module")
def memcached() -> Iterable[ServerProcess]:
    """The real memcached 1.6, one per module; skips when it is not installed."""
    if MEMCACHED_BIN is None:
        pytest.skip(NO_MEMCACHED)
    server = ServerProcess("memcached")
    try:
        server.start()
        yield server
    finally:
        server._terminate_quietly()


@pytest.fixture
def start_memcached() -> Iterable[Callable[..., ServerProcess]]:
    """Factory for fresh real memcached processes, stopped at the end of the
    test: ``start_memcached(extra_args=(), env=None, sasl=None, unix_socket=None)``;
    with -S, ``sasl`` is the (user, password) the readiness probe logs in with."""
    if MEMCACHED_BIN is None:
        pytest.skip(NO_MEMCACHED)
    started: List[ServerProcess] = []

    def start(
        extra_args: Sequence[str] = (),
        env: Optional[Dict[str, str]] = None,
        sasl: Optional[tuple] = None,
        unix_socket: Optional[Path] = None,
    ):
        server = ServerProcess("memcached", extra_args=extra_args, env=env, unix_socket=unix_socket)
        server.probe_sasl = sasl
        started.append(server)
        return server.start()

    yield start
    stop_all(started)


class ServerSet:
    """Servers started on demand and all stopped together (see ``module_servers``)."""

    def __init__(self, tmp_path_factory) -> None:
        self._tmp = tmp_path_factory
        self.started: List[ServerProcess] = []

    def mclite(self, extra_args: Sequence[str] = ()) -> ServerProcess:
        """The server under test (memcached when MCLITE_TARGET=memcached)."""
        server = make_target_server(self._tmp.mktemp("mclite-data"), extra_args)
        self.started.append(server)
        return server.start()

    def memcached(self, extra_args: Sequence[str] = (), auth: Optional[bytes] = None) -> ServerProcess:
        """Real memcached; with -Y among extra_args, ``auth`` (b"<user> <password>")
        lets the readiness probe in."""
        if MEMCACHED_BIN is None:
            pytest.skip(NO_MEMCACHED)
        server = ServerProcess("memcached", extra_args=extra_args)
        server.probe_auth = auth
        self.started.append(server)
        return server.start()


@pytest.fixture(scope="module")
def module_servers(tmp_path_factory) -> Iterable[ServerSet]:
    """Extra servers that live as long as the module, stopped together at its end."""
    servers = ServerSet(tmp_path_factory)
    yield servers
    stop_all(servers.started)


# --------------------------------------------------------------------------
# raw sockets


class PeerClosed(AssertionError):
    """The server closed the connection while a reply was still expected."""


class Conn:
    """A raw client connection with its own buffer and deadlines.

    ``read_until(term, count)`` returns everything up to and including the
    ``count``-th occurrence of ``term`` and keeps the rest for the next read,
    so a test sees exactly the replies it asked for, however TCP split them.
    """

    def __init__(self, address, timeout: float = IO_TIMEOUT) -> None:
        self.address = address
        self.timeout = timeout
        self.sock = open_socket(address, timeout)
        if self.sock.family != socket.AF_UNIX:
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.eof = False

    # -- sending

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_bytewise(self, data: bytes) -> None:
        """One ``send`` per byte (TCP_NODELAY is on): the worst fragmentation."""
        for i in range(len(data)):
            self.sock.sendall(data[i:i + 1])

    # -- receiving

    def _fill(self, deadline: float, what: str) -> bool:
        """One recv into the buffer; False on EOF. Raises on the deadline."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"timed out waiting for {what}; received so far: {bytes(self.buf)!r}")
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(1 << 20)
        except socket.timeout:
            raise AssertionError(f"timed out waiting for {what}; received so far: {bytes(self.buf)!r}")
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            self.eof = True
            return False
        self.buf += chunk
        return True

    def _take(self, n: int) -> bytes:
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def read_until(self, term: bytes = b"\r\n", count: int = 1, timeout: Optional[float] = None) -> bytes:
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        what = f"{count} x {term!r}"
        pos, found = 0, 0
        while True:
            while found < count:
                i = self.buf.find(term, pos)
                if i < 0:
                    break
                found += 1
                pos = i + len(term)
            if found == count:
                return self._take(pos)
            if not self._fill(deadline, what):
                raise PeerClosed(f"connection closed while waiting for {what}; received: {bytes(self.buf)!r}")

    def read_exactly(self, n: int, timeout: Optional[float] = None) -> bytes:
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while len(self.buf) < n:
            if not self._fill(deadline, f"{n} bytes"):
                raise PeerClosed(f"connection closed after {len(self.buf)} of {n} bytes: {bytes(self.buf)!r}")
        return self._take(n)

    def read_until_closed(self, timeout: Optional[float] = None) -> bytes:
        """Everything the server sends until it closes; fails if it never does."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while self._fill(deadline, "the server to close the connection"):
            pass
        return self._take(len(self.buf))

    def exchange(self, data: bytes, until: bytes = b"\r\n", count: int = 1) -> bytes:
        """Send ``data``; return the reply up to the ``count``-th ``until``."""
        self.send(data)
        return self.read_until(until, count)

    def stat(self, name: bytes, sub: bytes = b"") -> bytes:
        """One value of ``stats`` (or ``stats <sub>``); fails if there is none."""
        reply = self.exchange(b"stats" + (b" " + sub if sub else b"") + b"\r\n", until=b"END\r\n")
        for line in reply.split(b"\r\n"):
            parts = line.split()
            if len(parts) == 3 and parts[1] == name:
                return parts[2]
        raise AssertionError(f"no STAT {name!r} in {reply!r}")

    def stats_reach(self, value: int, *names: bytes) -> None:
        """Poll ``stats`` until these counters sum to ``value`` or more (real
        memcached's logger thread adds its counts once a loop, up to a second
        apart); the test's timeout bounds the wait."""
        while sum(int(self.stat(name)) for name in names) < value:
            time.sleep(0.01)

    def assert_in_step(self) -> None:
        """The next reply belongs to the next command: nothing stray is queued."""
        reply = self.exchange(b"version\r\n")
        assert reply.startswith(b"VERSION "), f"connection out of step: {reply!r}"

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def exchange(sock_or_conn, data: bytes, until: bytes = b"\r\n", count: int = 1) -> bytes:
    """``exchange(conn, data, until=b"END\\r\\n")``: send, read to the count-th terminator."""
    return sock_or_conn.exchange(data, until, count)


@pytest.fixture(name="free_port")
def free_port_fixture() -> Callable[[], int]:
    return free_port


@pytest.fixture(name="exchange")
def exchange_fixture():
    return exchange


@pytest.fixture
def connect() -> Iterable[Callable[..., Conn]]:
    """Factory: ``connect(server_or_address)`` -> Conn, closed at teardown."""
    conns: List[Conn] = []

    def _connect(server, timeout: float = IO_TIMEOUT) -> Conn:
        address = server.address if isinstance(server, ServerProcess) else server
        conn = Conn(address, timeout)
        conns.append(conn)
        return conn

    yield _connect
    for conn in conns:
        conn.close()


@pytest.fixture(scope="module")
def no_fsync():
    """The store's fsync as a no-op for one module: for tests of replies, not durability."""
    from store.filesystem import OSFileSystem

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(OSFileSystem, "fsync", staticmethod(lambda fd: None))
        yield


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs mounted for the test (root only), unmounted after it
    (request it before the server, so the server stops first)."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small file system needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount_point)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], capture_output=True)


# --------------------------------------------------------------------------
# the unit suites' clock


class FakeClock:
    """A time.time that only moves when a test says so: expiry, delayed
    flushes and last-access times are tested by moving it, never by sleeping."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        # a realistic "now": far above 30 days, so absolute times make sense
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


class SteppedClock:
    """A wall clock an operator (or NTP) steps, beside a monotonic clock that
    runs steadily: `clock` is the server's store.Clock over the two, made at
    `now`. `run` moves both clocks, `step` the wall clock alone."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        from store import Clock

        self.wall = now
        self.monotonic = 1_000.0
        self.clock = Clock(wall=lambda: self.wall, monotonic=lambda: self.monotonic)

    def run(self, seconds: float) -> None:
        self.wall += seconds
        self.monotonic += seconds

    def step(self, seconds: float) -> None:
        self.wall += seconds


@pytest.fixture
def stepped_clock() -> SteppedClock:
    return SteppedClock()


@pytest.fixture
def stepped_session(tmp_path, stepped_clock):
    """A sans-I/O session of a server whose store runs on `stepped_clock`
    (the server is given no clock: it takes the store's, as process.py's)."""
    from handlers import Server, Session, Settings
    from store import Store

    store = Store(str(tmp_path / "stepped"), clock=stepped_clock.clock)
    while store.tick(1.0):  # the start-up walk of an empty dir
        pass
    session = Session(Server(store, Settings()))
    yield session
    session.close()
    store.close()


@pytest.fixture
def open_store(tmp_path, clock):
    """open_store(level, name="data", **kw): a Store on tmp_path/name at that
    --fsync level with its start-up walk done; whatever is still open is
    closed at teardown."""
    from store import ALWAYS, Store

    opened = []

    def open_(level=ALWAYS, name="data", **kw):
        store = Store(str(tmp_path / name), clock=clock, fsync=level, **kw)
        while store.tick():  # the start-up walk of an empty dir
            pass
        opened.append(store)
        return store

    yield open_
    for store in opened:
        if store.dir._lock_fd is not None:
            store.close()


@pytest.fixture
def server(store, clock):
    """A protocol server over the requesting module's ``store`` fixture."""
    from handlers import Server, Settings  # the unit suites' only need of the server modules

    return Server(store, Settings(), clock=clock)


@pytest.fixture
def session(server):
    """One sans-I/O session of ``server``, closed at teardown."""
    from handlers import Session

    s = Session(server)
    yield s
    s.close()


@pytest.fixture
def unix_path() -> Iterable[Path]:
    """A path for a unix socket in a fresh directory of its own, short
    enough for sun_path (pytest's tmp_path may not be): removed at teardown."""
    d = Path(tempfile.mkdtemp(prefix="mcl-"))
    yield d / "mc.sock"
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def certs(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1, made with openssl for the
    tests (TLS e2e and transports)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key
