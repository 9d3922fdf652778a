"""-s PATH and -a MODE end to end: a real `python -m reactor` listening on a
unix-domain socket only, driven with raw sockets, pymemcache, the binary
protocol and the bundled cli; the socket file's life (its mode, a stale one
replaced, a live server's refused, removed at SIGTERM). Runs against real
memcached too (MCLITE_TARGET=memcached) except where memcached differs: it
takes a live server's socket over and leaves its file at exit.
"""

import os
import stat
import struct
import subprocess
import sys

import pytest
from pymemcache.client.base import Client

pytestmark = pytest.mark.timeout(60)

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def ours_only(target):
    if target != "mclite":
        pytest.skip("memcached takes a live server's socket over and leaves its file at exit")


@pytest.fixture
def on_socket(start_mclite, unix_path):
    """The server under test on a unix socket (mode 0770)."""
    return start_mclite(extra_args=["-a", "0770"], unix_socket=unix_path)


def test_set_get_and_meta_commands_are_served_over_the_socket(on_socket, connect):
    c = connect(on_socket)
    assert c.exchange(b"set k 0 0 5\r\nhello\r\n") == b"STORED\r\n"
    assert c.exchange(b"get k\r\n", until=b"END\r\n") == b"VALUE k 0 5\r\nhello\r\nEND\r\n"
    assert c.exchange(b"mg k v\r\n", count=2) == b"VA 5\r\nhello\r\n"
    assert c.exchange(b"md k\r\n") == b"HD\r\n"


def test_stats_count_the_unix_client(on_socket, connect):
    c = connect(on_socket)
    assert int(c.stat(b"curr_connections")) >= 1
    conns = c.exchange(b"stats conns\r\n", until=b"END\r\n").decode()
    assert f"addr unix:{on_socket.unix_socket}\r\n" in conns
    assert f"listen_addr unix:{on_socket.unix_socket}\r\n" in conns


def test_pymemcache_talks_over_the_socket_by_its_path(on_socket):
    client = Client(str(on_socket.unix_socket), connect_timeout=5, timeout=5)
    try:
        assert client.set("pm", b"value")
        assert client.get("pm") == b"value"
        assert client.incr("n", 1) is None
        assert client.stats()[b"curr_connections"] >= 1
    finally:
        client.close()


def test_the_binary_protocol_is_served_over_the_socket(on_socket, connect):
    c = connect(on_socket)
    header = struct.pack(">BBHBBHIIQ", 0x80, 0x0B, 0, 0, 0, 0, 0, 0xABCD, 0)  # version
    c.send(header)
    reply = c.read_exactly(24)
    magic, opcode, _, _, _, status, bodylen, opaque, _ = struct.unpack(">BBHBBHIIQ", reply)
    assert (magic, opcode, status, opaque) == (0x81, 0x0B, 0, 0xABCD)
    assert c.read_exactly(bodylen).startswith(b"1.6.18")


def test_the_socket_file_has_the_mode_a_gave(on_socket):
    st = os.lstat(on_socket.unix_socket)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o770


def test_the_cli_talks_over_the_socket(on_socket):
    def cli(*args):
        return subprocess.run(
            [sys.executable, "-m", "cli", "-s", str(on_socket.unix_socket), *args],
            capture_output=True, cwd=REPO_ROOT, timeout=30,
        )

    assert cli("set", "ck", "over unix").returncode == 0
    r = cli("get", "ck")
    assert (r.returncode, r.stdout) == (0, b"over unix")


def test_the_socket_file_is_removed_at_sigterm(on_socket, target):
    ours_only(target)
    on_socket.stop()
    assert not os.path.lexists(on_socket.unix_socket)


def test_a_stale_socket_file_left_by_kill_9_is_replaced_at_the_next_start(on_socket, connect):
    c = connect(on_socket)
    c.exchange(b"set kept 0 0 1\r\nx\r\n")
    c.close()
    on_socket.kill9()
    assert stat.S_ISSOCK(os.lstat(on_socket.unix_socket).st_mode)  # left behind
    on_socket.restart()
    again = connect(on_socket)
    assert again.exchange(b"version\r\n").startswith(b"VERSION ")
    if on_socket.persistent:
        assert again.exchange(b"get kept\r\n", until=b"END\r\n") == b"VALUE kept 0 1\r\nx\r\nEND\r\n"


def test_a_live_server_s_socket_is_refused_and_it_keeps_serving(on_socket, spawn_mclite, tmp_path, connect, target):
    ours_only(target)
    second = spawn_mclite(tmp_path / "second", unix_socket=on_socket.unix_socket)
    assert second.wait_exit() == 71
    assert f"failed to listen on UNIX socket: {on_socket.unix_socket}: another server is listening on it" in (
        second.stderr_text()
    )
    c = connect(on_socket)
    assert c.stat(b"pid") == b"%d" % on_socket.pid
