"""The reactor: connections, backpressure, failure isolation, clean stop.

The loop runs in a background thread of the test process, so the tests can
look at its connections; the server itself never uses threads.
"""

import errno
import select
import selectors
import socket
import threading
import time

import pytest

import commands
import handlers
import reactor
import transports
from store import Store

BIG = 1 << 20  # near the largest item


class Running:
    def __init__(self, tmp_path, wrap_listener=None, fsync="everysec", fresh_spares=0, listener=None, **settings):
        self.data_dir = tmp_path / "data"
        self.store = Store(self.data_dir, item_size_max=2 << 20, fsync=fsync, fresh_spares=fresh_spares)
        self.server = handlers.Server(self.store, handlers.Settings(**settings))
        listener = socket.create_server(("127.0.0.1", 0)) if listener is None else listener
        first = listener[0] if isinstance(listener, list) and listener else listener
        self.port = first.getsockname()[1] if first and first.family != socket.AF_UNIX else None
        if wrap_listener:
            listener = wrap_listener(listener)
        self.reactor = reactor.Reactor(self.server, listener)
        self.thread = threading.Thread(target=self.reactor.run, daemon=True)
        self.thread.start()

    def connect(self, rcvbuf=None):
        s = socket.socket()
        s.settimeout(10)
        if rcvbuf:
            # set before connecting, so the kernel cannot absorb the backlog
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        s.connect(("127.0.0.1", self.port))
        return s

    def stop(self):
        self.reactor.stop()
        self.thread.join(15)
        assert not self.thread.is_alive()


@pytest.fixture
def running(tmp_path):
    r = Running(tmp_path)
    yield r
    if r.thread.is_alive():
        r.stop()


@pytest.fixture(params=["everysec", "always"])
def at_each_level(tmp_path, request):
    """A running loop under `--fsync everysec` and under `always`, where every
    reply is held until its batch is committed."""
    r = Running(tmp_path, fsync=request.param)
    yield r
    if r.thread.is_alive():
        r.stop()


def read_exactly(sock, n):
    out = bytearray()
    while len(out) < n:
        chunk = sock.recv(min(1 << 20, n - len(out)))
        if not chunk:
            break
        out += chunk
    return bytes(out)


def read_until_closed(sock):
    out = bytearray()
    while True:
        chunk = sock.recv(1 << 20)
        if not chunk:
            return bytes(out)
        out += chunk


def wait_for(condition, seconds=10.0):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def roundtrip(sock, data, expect):
    sock.sendall(data)
    return read_exactly(sock, len(expect))


def test_a_request_is_answered(running):
    with running.connect() as s:
        assert roundtrip(s, b"set k 0 0 1\r\nv\r\nget k\r\n", b"STORED\r\nVALUE k 0 1\r\nv\r\nEND\r\n") == (
            b"STORED\r\nVALUE k 0 1\r\nv\r\nEND\r\n"
        )


def test_a_unix_socket_client_is_served_with_no_tcp_option_and_no_peer_address(tmp_path, unix_path):
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(unix_path))
    listener.listen(16)
    r = Running(tmp_path, listener=listener)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(10)
            s.connect(str(unix_path))
            # TCP_NODELAY on it would have raised in accept, and the connection been lost
            assert roundtrip(s, b"set k 0 0 1\r\nv\r\nget k\r\n", b"STORED\r\nVALUE k 0 1\r\nv\r\nEND\r\n") == (
                b"STORED\r\nVALUE k 0 1\r\nv\r\nEND\r\n"
            )
            (conn,) = r.reactor.conns
            assert (conn.peer, conn.session.addr, conn.session.listen_addr) == ("unix client", "", str(unix_path))
    finally:
        r.stop()


def test_a_connection_that_raises_is_closed_and_the_others_are_served(running, monkeypatch):
    def broken(session, words):
        raise RuntimeError("handler bug")

    monkeypatch.setitem(commands.COMMANDS, b"version", (broken, 1, None))
    with running.connect() as bad, running.connect() as good:
        bad.sendall(b"version\r\n")
        assert read_until_closed(bad) == b""
        assert roundtrip(good, b"get nothing\r\n", b"END\r\n") == b"END\r\n"


def test_quit_closes_after_the_replies_before_it(at_each_level):
    with at_each_level.connect() as s:
        s.sendall(b"get a\r\nquit\r\nget b\r\n")
        assert read_until_closed(s) == b"END\r\n"


def test_a_client_that_half_closes_still_gets_its_replies(at_each_level):
    with at_each_level.connect() as s:
        s.sendall(b"set k 0 0 2\r\nhi\r\nget k\r\n")
        s.shutdown(socket.SHUT_WR)
        assert read_until_closed(s) == b"STORED\r\nVALUE k 0 2\r\nhi\r\nEND\r\n"


def test_a_client_that_half_closes_after_a_long_pipeline_gets_every_reply(at_each_level):
    count = reactor.REQS_PER_EVENT * 10
    with at_each_level.connect() as s:
        s.sendall(b"".join(b"set k%d 0 0 1\r\nv\r\n" % i for i in range(count)))
        s.shutdown(socket.SHUT_WR)
        assert read_until_closed(s) == b"STORED\r\n" * count


def test_a_pipelining_client_does_not_hold_up_the_others(running, monkeypatch):
    # The hog's first command holds the loop until the other client's command
    # has arrived; from then on the hog runs REQS_PER_EVENT commands a turn,
    # and the other client's command runs at the next turn, not after the hog.
    order = []
    other_sent = threading.Event()
    real = commands.admin.version

    def version(session, words):
        if not order:
            other_sent.wait(10)
        order.append(session)
        real(session, words)

    monkeypatch.setitem(commands.COMMANDS, b"version", (version, 1, None))
    reply = b"VERSION 1.6.18-lite\r\n"
    count = reactor.REQS_PER_EVENT * 50
    with running.connect() as hog, running.connect() as other:
        hog.sendall(b"version\r\n" * count)
        wait_for(lambda: any(c.session.counters.bytes_read for c in list(running.reactor.conns)))
        other.sendall(b"version\r\n")
        other_sent.set()
        assert read_exactly(other, len(reply)) == reply
        assert read_exactly(hog, len(reply) * count) == reply * count
    position = next(i for i, s in enumerate(order) if s is not order[0])
    assert position <= 2 * reactor.REQS_PER_EVENT


def test_connections_over_the_limit_get_memcacheds_error(tmp_path):
    r = Running(tmp_path, max_connections=2)
    try:
        a, b = r.connect(), r.connect()
        roundtrip(a, b"version\r\n", b"VERSION 1.6.18-lite\r\n")
        roundtrip(b, b"version\r\n", b"VERSION 1.6.18-lite\r\n")
        with r.connect() as c:
            assert read_until_closed(c) == b"ERROR Too many open connections\r\n"
        assert roundtrip(a, b"get x\r\n", b"END\r\n") == b"END\r\n"
        a.close()
        b.close()
    finally:
        r.stop()


def test_a_client_that_does_not_read_stops_being_read_and_memory_stays_bounded(running):
    value = b"x" * BIG
    with running.connect() as writer:
        roundtrip(writer, b"set big 0 0 %d\r\n%s\r\n" % (BIG, value), b"STORED\r\n")
    reply = b"VALUE big 0 %d\r\n%s\r\nEND\r\n" % (BIG, value)
    count = 300  # 300 MiB of replies if the server buffered them all
    with running.connect(rcvbuf=64 * 1024) as s, running.connect() as other:
        s.sendall(b"get big\r\n" * count)
        wait_for(lambda: any(c.paused for c in list(running.reactor.conns)))
        conn = next(c for c in list(running.reactor.conns) if c.paused)
        assert conn.out_size <= reactor.HIGH_WATER + len(reply)
        # the server still answers everyone else
        assert roundtrip(other, b"get none\r\n", b"END\r\n") == b"END\r\n"
        # and nothing is lost for the slow reader once it reads
        for _ in range(count):
            assert read_exactly(s, len(reply)) == reply


def test_stop_sends_the_replies_it_owes_whole_then_exits_and_releases_the_data_dir(running):
    value = b"y" * BIG
    with running.connect(rcvbuf=64 * 1024) as s:
        roundtrip(s, b"set big 0 0 %d\r\n%s\r\n" % (BIG, value), b"STORED\r\n")
        reply = b"VALUE big 0 %d\r\n%s\r\nEND\r\n" % (BIG, value)
        s.sendall(b"get big\r\n" * 20)  # more than the socket buffers hold
        # (a non-empty queue alone could be the STORED already read: the
        # client can see a reply before the loop's thread pops it)
        wait_for(
            lambda: running.server.counters.cmd_get > 0 and any(c.out for c in list(running.reactor.conns))
        )
        running.reactor.stop()
        received = read_until_closed(s)
    # commands not yet parsed when it stopped are not answered, but every
    # reply already made is sent whole
    whole, rest = divmod(len(received), len(reply))
    assert rest == 0 and whole >= 1 and received == reply * whole
    running.thread.join(15)
    assert not running.thread.is_alive()
    Store(running.data_dir).close()  # the lock was released


class OutOfDescriptors:
    """A listening socket whose first accepts fail as when the process has no
    file descriptors left."""

    def __init__(self, sock, failures):
        self.sock = sock
        self.failures = failures
        self.calls = 0

    def accept(self):
        self.calls += 1
        if self.calls <= self.failures:
            raise OSError(errno.EMFILE, "Too many open files")
        return self.sock.accept()

    def __getattr__(self, name):
        return getattr(self.sock, name)


def test_accept_failing_for_want_of_descriptors_backs_off_instead_of_spinning(tmp_path):
    listeners = []

    def wrap(sock):
        listeners.append(OutOfDescriptors(sock, failures=1))
        return listeners[0]

    r = Running(tmp_path, wrap_listener=wrap)
    try:
        with r.connect() as s:
            assert roundtrip(s, b"get x\r\n", b"END\r\n") == b"END\r\n"
        # one failure, then a pause, then the accept that worked: a loop that
        # spun on the readable listener would have called accept thousands of times
        assert listeners[0].calls <= 4
    finally:
        r.stop()


def test_failing_background_work_is_logged_and_backed_off_while_serving_goes_on(tmp_path, monkeypatch):
    calls = []

    def broken_tick(budget=0.005):
        calls.append(budget)
        raise OSError("disk on fire")

    r = Running(tmp_path)
    try:
        monkeypatch.setattr(r.store, "has_work", lambda: True)
        monkeypatch.setattr(r.store, "tick", broken_tick)
        with r.connect() as s:
            for _ in range(20):
                assert roundtrip(s, b"get x\r\n", b"END\r\n") == b"END\r\n"
        # without the back-off, the loop would retry it at every turn
        assert 1 <= len(calls) <= 2
    finally:
        r.stop()


class BareLoop:
    """A reactor that is never run: the test drives its steps, over
    connections that are socketpairs (ours for the loop, theirs to read)."""

    def __init__(self, tmp_path):
        self.store = Store(tmp_path / "data", fsync="everysec")
        self.server = handlers.Server(self.store)
        self.loop = reactor.Reactor(self.server, socket.create_server(("127.0.0.1", 0)))
        self.socks = []

    def connect(self):
        """(the loop's Connection, the client's socket)."""
        ours, theirs = socket.socketpair()
        self.socks += (ours, theirs)
        ours.setblocking(False)
        conn = transports.PlainConnection(ours, handlers.Session(self.server), "pair")
        self.loop.conns.add(conn)
        return conn, theirs

    def close(self):
        for sock in self.socks:
            sock.close()
        loop = self.loop
        loop.listener.close()
        loop.sel.close()
        loop._wake_r.close()
        loop._wake_w.close()
        self.store.close()


@pytest.fixture
def bare(tmp_path):
    b = BareLoop(tmp_path)
    yield b
    b.close()


def test_replies_of_a_turn_go_out_after_its_reads_in_the_order_they_were_made(bare):
    (a, a_reads), (b, b_reads) = bare.connect(), bare.connect()
    loop = bare.loop
    loop._queue(a, b"A1 ")
    loop._queue(b, b"B ")
    loop._queue(a, b"A2")
    for theirs in (a_reads, b_reads):
        theirs.setblocking(False)
        with pytest.raises(BlockingIOError):
            theirs.recv(10)  # nothing sent yet
    loop._send_later()
    assert [a_reads.recv(10), b_reads.recv(10)] == [b"A1 A2", b"B "]


def test_a_reply_of_the_turn_the_socket_takes_in_part_waits_for_it_to_be_writable(bare):
    conn, theirs = bare.connect()
    loop = bare.loop
    reply = b"z" * BIG  # more than a socket buffer holds
    loop._queue(conn, reply)
    loop._send_later()
    assert conn.out and conn.events & selectors.EVENT_WRITE
    sent = len(reply) - conn.out_size
    assert read_exactly(theirs, sent) == reply[:sent]


def test_a_first_send_that_fails_is_logged_and_closes_only_that_connection(bare, caplog):
    # issue 17 item 5: _send_later's first send error was once swallowed
    (gone, theirs), (other, other_reads) = bare.connect(), bare.connect()
    loop = bare.loop
    theirs.close()
    loop._queue(gone, b"STORED\r\n")
    loop._queue(other, b"END\r\n")
    with caplog.at_level("DEBUG", logger="memcached-lite"):
        loop._send_later()
    failed = [r for r in caplog.records if r.getMessage().startswith("connection pair failed: ")]
    assert len(failed) == 1 and "Broken pipe" in failed[0].getMessage()
    assert gone not in loop.conns
    assert other in loop.conns and other_reads.recv(10) == b"END\r\n"


def test_the_idle_loop_makes_the_empty_spares_the_writes_asked_for(tmp_path):
    r = Running(tmp_path, fresh_spares=100)
    try:
        with r.connect() as s:
            # a new file (no spare was ready): two empty spares asked for
            assert roundtrip(s, b"set a 0 0 1\r\nx\r\n", b"STORED\r\n") == b"STORED\r\n"
            wait_for(lambda: r.store.dir.spares.made == 2)
            assert not r.store.has_idle_work()
            reused = r.store.dir.spares.reused
            assert roundtrip(s, b"set b 0 0 1\r\nx\r\n", b"STORED\r\n") == b"STORED\r\n"
        assert r.store.dir.spares.reused == reused + 1  # the next new key took one
    finally:
        r.stop()


def test_idle_work_waits_for_a_turn_no_client_needed(tmp_path, monkeypatch):
    r = Running(tmp_path)
    turns = []
    try:
        monkeypatch.setattr(r.store, "has_idle_work", lambda: True)
        monkeypatch.setattr(r.store, "idle_tick", lambda budget: turns.append(budget))
        wait_for(lambda: len(turns) > 0)
        assert max(turns) <= reactor.IDLE_BUDGET
        with r.connect() as s:
            for _ in range(20):
                assert roundtrip(s, b"get x\r\n", b"END\r\n") == b"END\r\n"
    finally:
        r.stop()


# -- --fsync always: group commit ------------------------------------------------


class PeekingBarrier:
    """A barrier that looks, at each call, whether any reply has reached the
    clients yet (loopback delivers a send at once), and counts the writes it
    made durable."""

    name = "peeking"
    needs_paths = True

    def __init__(self):
        self.clients = []
        self.calls = []  # (temp files made durable, replies already arrived)

    def sync(self, files, dirs):
        arrived = 0
        for c in self.clients:
            # (the client sockets have timeouts, so recv would wait: poll first)
            if select.select([c], [], [], 0)[0]:
                arrived += len(c.recv(1 << 16, socket.MSG_PEEK))
        self.calls.append((len(files), arrived))

    def close(self):
        pass


@pytest.fixture
def always(tmp_path):
    r = Running(tmp_path, fsync="always")
    r.barrier = PeekingBarrier()
    r.store.durability.barrier = r.barrier
    yield r
    if r.thread.is_alive():
        r.stop()


def test_always_sends_no_reply_before_the_write_is_durable(always):
    with always.connect() as s:
        always.barrier.clients.append(s)
        assert roundtrip(s, b"set k 0 0 1\r\nv\r\n", b"STORED\r\n") == b"STORED\r\n"
        assert always.barrier.calls == [(1, 0), (0, 0)]


def test_always_commits_the_writes_of_many_connections_together(always, monkeypatch):
    # The first set holds the loop until the seven other clients' sets are
    # readable on the server's side of their sockets (looked at with select,
    # so loopback delivery delays under load change nothing); the next select
    # then finds all seven: one batch.
    clients = 8
    real = commands.storage.StorageRequest.complete
    first = []

    def others_readable():
        others = [c.sock for c in list(always.reactor.conns) if c.session is not first[0]]
        return len(others) == clients - 1 and len(select.select(others, [], [], 0)[0]) == clients - 1

    def complete(request, session, block):
        if not first:
            first.append(session)
            wait_for(others_readable)
        real(request, session, block)

    monkeypatch.setattr(commands.storage.StorageRequest, "complete", complete)
    socks = [always.connect() for _ in range(clients)]
    try:
        # every connection accepted before the first set holds the loop
        wait_for(lambda: len(always.reactor.conns) == clients)
        # (the first client's reply may be read at any moment: watch the others)
        always.barrier.clients.extend(socks[1:])
        socks[0].sendall(b"set k0 0 0 1\r\nv\r\n")
        wait_for(lambda: first)
        for i, s in enumerate(socks[1:], 1):
            s.sendall(b"set k%d 0 0 1\r\nv\r\n" % i)
        for s in socks:
            assert read_exactly(s, 8) == b"STORED\r\n"
    finally:
        for s in socks:
            s.close()
    # (temp files made durable, replies already at the seven): two batches,
    # and none of the seven replies left before its batch was durable
    assert always.barrier.calls == [(1, 0), (0, 0), (clients - 1, 0), (0, 0)]


def test_always_commits_a_long_pipeline_a_turn_at_a_time(always):
    count = reactor.REQS_PER_EVENT * 10
    with always.connect() as s:
        s.sendall(b"".join(b"set k%d 0 0 1\r\nv\r\n" % i for i in range(count)))
        assert read_exactly(s, 8 * count) == b"STORED\r\n" * count
    # a turn of REQS_PER_EVENT commands is one batch of two barriers, not one
    # batch per command
    assert len(always.barrier.calls) <= 2 * (count // reactor.REQS_PER_EVENT) + 2


def test_stop_commits_and_sends_what_was_owed(always):
    with always.connect() as s:
        roundtrip(s, b"set k 0 0 1\r\nv\r\n", b"STORED\r\n")
    always.stop()
    reopened = Store(always.data_dir)
    try:
        assert reopened.get(b"k").value == b"v"
    finally:
        reopened.close()


# -- idle timeout -----------------------------------------------------------------


def in_the_loop(r, work):
    """Run work in the loop's thread and wait until it has run."""
    done = threading.Event()
    r.reactor.call_soon(lambda: (work(), done.set()))
    assert done.wait(10)


@pytest.mark.parametrize("limit, kicked", [(5, True), (-1, False)])
def test_a_negative_idle_timeout_never_closes_a_connection_as_memcached_s(tmp_path, limit, kicked):
    # memcached compares an unsigned idle time with it: -1 is never passed
    r = Running(tmp_path)
    r.server.settings.idle_timeout = limit
    try:
        client = r.connect()
        assert handlers.VERSION.encode() in (client.sendall(b"version\r\n") or client.recv(100))

        def long_quiet():
            for conn in r.reactor.conns:
                conn.commands_seen = conn.session.commands  # its `version` seen long ago
                conn.active_at -= 100
            r.reactor._next_idle_check = 0

        in_the_loop(r, long_quiet)
        in_the_loop(r, lambda: None)  # an iteration later: the idle timer has looked
        assert bool(r.reactor.conns) is not kicked
        client.close()
    finally:
        r.stop()


# -- several listeners (-l's list) and none (-p 0) --------------------------------


def test_every_listener_of_a_list_is_served(tmp_path):
    listeners = [socket.create_server((host, 0)) for host in ("127.0.0.1", "127.0.0.2")]
    addresses = [sock.getsockname() for sock in listeners]
    r = Running(tmp_path, listener=listeners)
    try:
        for address in addresses:
            with socket.create_connection(address, timeout=10) as client:
                client.sendall(b"version\r\n")
                assert client.recv(100).startswith(b"VERSION ")
    finally:
        r.stop()
    assert all(sock.fileno() == -1 for sock in listeners)  # closed at the stop


def test_a_loop_with_no_listener_runs_and_stops(tmp_path):
    r = Running(tmp_path, listener=[])
    in_the_loop(r, lambda: None)
    r.stop()
