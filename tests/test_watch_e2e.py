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


def test_a_watcher_that_never_reads_holds_watcher_logbuf_size_then_is_told_what_it_lost(
        start_mclite, unix_path, connect):
    # over a unix socket the kernel holds a few hundred KiB at most, so what a
    # watcher that does not read gets before lines are dropped is its bound's
    bound = 2 << 20
    server = start_mclite(extra_args=["-o", "watcher_logbuf_size=%d" % (bound >> 10)], unix_socket=unix_path)
    watcher, client = connect(server), connect(server)
    watcher.send(b"watch fetchers\r\n")
    client.stats_reach(1, b"log_watchers")
    gets = 40000  # about 3.8 MB of lines: the bound and the kernel's share passed
    for start in range(0, gets, 500):
        batch = b"".join(b"get lost%06d\r\n" % i for i in range(start, start + 500))
        client.exchange(batch, until=b"END\r\n", count=500)
    # (memcached's worker drops lines its logger thread has not caught up with: told apart, not skipped)
    client.stats_reach(gets, b"log_worker_written", b"log_worker_dropped")
    sent, skipped = int(client.stat(b"log_watcher_sent")), int(client.stat(b"log_watcher_skipped"))
    assert sent + skipped == int(client.stat(b"log_worker_written")) and skipped > 0
    held = watcher.read_until(b"\n", count=1 + sent)  # the OK, then every line that had room
    assert held.startswith(b"OK\r\n") and bound // 2 < len(held) < bound + (1 << 20)
    # caught up: the next line comes with the count of the lost ones
    client.exchange(b"get found-again\r\n", until=b"END\r\n")
    notice, line = watcher.read_until(b"\n", count=2).splitlines()
    assert notice == b"skipped=%d" % skipped and b" type=item_get key=found-again status=not_found " in line


def test_disable_watch_refuses_it(start_mclite, connect):
    server = start_mclite(extra_args=["-W"])
    assert connect(server).exchange(b"watch\r\n") == b"CLIENT_ERROR watch commands not allowed\r\n"


def test_a_watcher_sees_a_connection_come_and_go(mclite, connect):
    watcher = connect(mclite)
    assert watcher.exchange(b"watch connevents\r\n") == b"OK\r\n"
    client = connect(mclite)
    port = client.sock.getsockname()[1]
    client.close()
    # (read up to this client's close: an earlier test's connection may be noticed closing first)
    lines = watcher.read_until(b"type=conn_close rip=127.0.0.1 rport=%d " % port)
    assert b"type=conn_new rip=127.0.0.1 rport=%d transport=tcp" % port in lines


def test_a_watcher_is_never_idle_kicked_and_hears_the_kick_of_another(start_mclite, connect):
    # memcached's idle timer does not look at a watcher (conn_watch); passes against memcached
    # (time is the input here, as in the idle timeout's own tests: a bounded wait for the kick)
    server = start_mclite(extra_args=["-o", "idle_timeout=1"])
    watcher = connect(server)
    assert watcher.exchange(b"watch connevents\r\n") == b"OK\r\n"
    client = connect(server)
    client.exchange(b"version\r\n")
    client.read_until_closed(timeout=10)
    lines = watcher.read_until(b"\n", 2, timeout=10)
    assert b" reason=idle_timeout cfd=" in lines.splitlines()[1]
