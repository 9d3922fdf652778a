"""`watch` on a real server process: a watcher sees another client's
commands as they run; one that never reads costs the others nothing and
is told, once it reads again, how many lines it lost."""

import socket

import pytest

pytestmark = pytest.mark.timeout(60)


def test_a_watcher_sees_another_client_s_commands(mclite, connect):
    watcher = connect(mclite)
    assert watcher.exchange(b"watch fetchers mutations\r\n") == b"OK\r\n"
    client = connect(mclite)
    assert client.exchange(b"set e2e 0 0 2\r\nhi\r\n") == b"STORED\r\n"
    line = watcher.read_until(b"\n", count=2)
    assert b"type=item_get key=e2e status=not_found" in line
    assert b"type=item_store key=e2e status=stored cmd=set ttl=0 clsid=1" in line


def _most_a_kernel_holds():
    # what a socket's send buffer may grow to (tcp_wmem's last figure), with
    # room for the receiver's small window
    try:
        with open("/proc/sys/net/ipv4/tcp_wmem") as f:
            return int(f.read().split()[2]) + (1 << 20)
    except (OSError, ValueError, IndexError):
        return 8 << 20


def test_a_watcher_that_never_reads_does_not_slow_the_others(mclite, connect):
    watcher = socket.socket()
    watcher.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a small window, set before connecting
    watcher.settimeout(10)
    try:
        watcher.connect(mclite.address)
        watcher.sendall(b"watch fetchers\r\n")
        assert watcher.recv(3) == b"OK\r"
        client = connect(mclite)
        line = b"get slow-watcher-key-0123456789\r\n"
        batch = line * 500
        # more lines than the kernel and the watcher's 256 KiB can hold, none read
        for _ in range(_most_a_kernel_holds() // (len(batch) * 2) + 2):
            assert client.exchange(batch, until=b"END\r\n", count=500).count(b"END\r\n") == 500
        # what it could not hold was dropped, not queued: the server counts it
        assert int(client.stat(b"log_watcher_skipped")) > 0
        assert int(client.stat(b"log_watchers")) == 1
    finally:
        watcher.close()


def test_disable_watch_refuses_it(start_mclite, connect):
    server = start_mclite(extra_args=["-W"])
    assert connect(server).exchange(b"watch\r\n") == b"CLIENT_ERROR watch commands not allowed\r\n"


def test_a_watcher_sees_a_connection_come_and_go(mclite, connect):
    watcher = connect(mclite)
    assert watcher.exchange(b"watch connevents\r\n") == b"OK\r\n"
    connect(mclite).close()
    lines = watcher.read_until(b"type=conn_close")
    assert b"type=conn_new rip=127.0.0.1" in lines and b"transport=tcp" in lines
