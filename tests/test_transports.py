"""transports.py: a connection's two ways of moving bytes, driven over
socketpairs with no loop. Each send takes what the kernel takes now and
keeps the rest, in order, for the next; a send error is raised (never
swallowed) to the loop's one funnel, as a peer's error where it is one.

TLS runs over a socketpair too, with a self-signed certificate made by the
`openssl` command line for the module (skipped without it).
"""

import socket
import ssl
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import transports  # noqa: E402

BIG = 4 << 20  # more than a socketpair's buffers hold
SMALL_BUFFER = 64 * 1024


def pair():
    """(ours, theirs): ours non-blocking as the loop's, with small buffers so
    a send is taken in part."""
    ours, theirs = socket.socketpair()
    for s in (ours, theirs):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL_BUFFER)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_BUFFER)
    ours.setblocking(False)
    theirs.settimeout(10)
    return ours, theirs


def pattern(n):
    """n bytes in which every offset is told apart (a lost or doubled byte shows)."""
    return (b"".join(b"%08d" % i for i in range(n // 8 + 1)))[:n]


@pytest.fixture
def plain():
    ours, theirs = pair()
    conn = transports.PlainConnection(ours, None, ("127.0.0.1", 1))
    yield conn, theirs
    ours.close()
    theirs.close()


def drain(conn, read, total):
    """Read what the peer was sent, calling send() to move the queue on
    whenever nothing is in flight; every byte read, in order."""
    got = bytearray()
    while len(got) < total:
        in_flight = read(got, total)
        if not in_flight:
            conn.send()
    return bytes(got)


# == plain =======================================================================


def test_plain_send_of_what_the_kernel_takes_queues_nothing(plain):
    conn, theirs = plain
    conn.send(b"hello\r\n")
    assert (len(conn.out), conn.out_size) == (0, 0)
    assert theirs.recv(100) == b"hello\r\n"


def test_plain_a_partial_send_keeps_the_rest_in_order(plain):
    conn, theirs = plain
    data = pattern(BIG)
    conn.send(data)
    queued = conn.out_size
    assert 0 < queued < BIG  # the kernel took a part: the rest is queued, not lost
    conn.send(b"tail")  # queued behind the rest, never ahead of it
    assert conn.out_size == queued + 4

    def read(got, total):
        if conn.out_size + len(got) < total:
            got += theirs.recv(1 << 20)
            return True
        return False

    assert drain(conn, read, BIG + 4) == data + b"tail"
    assert (len(conn.out), conn.out_size) == (0, 0)


def test_plain_send_error_is_raised_to_the_loop_as_a_peer_error(plain):
    conn, theirs = plain
    theirs.close()
    with pytest.raises(transports.PEER_ERRORS):
        conn.send(b"hello\r\n")


def test_plain_send_error_while_draining_the_queue_is_raised_too(plain):
    conn, theirs = plain
    conn.send(pattern(BIG))
    assert conn.out
    theirs.close()
    with pytest.raises(transports.PEER_ERRORS):
        conn.send()


def test_plain_receive_gives_a_view_of_the_buffer_and_marks_eof(plain):
    conn, theirs = plain
    buffer = memoryview(bytearray(100))
    assert conn.receive(buffer) is None  # nothing there yet: no error, no eof
    theirs.sendall(b"get k\r\n")
    assert bytes(conn.receive(buffer)) == b"get k\r\n"
    theirs.close()
    assert bytes(conn.receive(buffer)) == b""
    assert conn.eof


def test_a_plain_connection_never_asks_the_loop_for_more(plain):
    conn, _ = plain
    conn.send(pattern(BIG))
    assert (conn.handshaking, conn.want, conn.buffered) == (False, 0, False)


# == TLS =========================================================================


@pytest.fixture
def tls(certs):
    """(the server's TlsConnection, the client's ssl socket), handshake done;
    both non-blocking, stepped in turn (a bounded number of steps)."""
    cert, key = certs
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(str(cert), str(key))
    client_ctx = ssl.create_default_context(cafile=str(cert))
    ours, theirs = pair()
    theirs.setblocking(False)
    conn = transports.TlsConnection(transports.TlsConnection.wrap(ours, server_ctx), None, ("127.0.0.1", 1))
    client = client_ctx.wrap_socket(theirs, server_hostname="localhost", do_handshake_on_connect=False)
    client_done = False
    for _ in range(100):
        if not client_done:
            try:
                client.do_handshake()
                client_done = True
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                pass
        if conn.handshaking:
            conn.handshake()
        if client_done and not conn.handshaking:
            break
    assert client_done and not conn.handshaking
    yield conn, client
    conn.sock.close()
    client.close()


def tls_read(client):
    def read(got, total):
        try:
            data = client.recv(1 << 20)
        except ssl.SSLWantReadError:
            return False
        got += data
        return True

    return read


def test_tls_send_of_all_bytes_queues_nothing(tls):
    conn, client = tls
    conn.send(b"hello\r\n")
    assert (len(conn.out), conn.out_size, conn.retry) == (0, 0, False)
    assert drain(conn, tls_read(client), 7) == b"hello\r\n"


def test_tls_a_send_the_socket_takes_in_part_is_kept_and_retried_unchanged(tls):
    conn, client = tls
    data = pattern(BIG)
    conn.send(data)
    # ssl took some records and met SSLWantWrite: OpenSSL wants the same
    # buffer again, so the queue keeps it as it was
    assert conn.out_size == BIG and conn.retry
    conn.send(b"tail")
    # (a changed buffer on the retry would raise ssl's "bad write retry")
    assert drain(conn, tls_read(client), BIG + 4) == data + b"tail"
    assert (len(conn.out), conn.out_size, conn.retry) == (0, 0, False)


def test_tls_small_queued_replies_leave_joined_in_one_record(tls):
    conn, client = tls
    for part in (b"STORED\r\n", b"END\r\n", b"DELETED\r\n"):
        conn._queue(part)
    conn.send()
    assert client.recv(1 << 16) == b"STORED\r\nEND\r\nDELETED\r\n"  # one recv: one record


def test_tls_send_error_is_raised_to_the_loop_as_a_peer_error(tls):
    conn, client = tls
    socket.socket.close(client)  # the raw socket, no close_notify
    with pytest.raises(transports.PEER_ERRORS):
        conn.send(b"hello\r\n")


def test_tls_receive_reads_records_until_ssl_wants_more(tls):
    conn, client = tls
    client.sendall(b"get a\r\n")
    client.sendall(b"get b\r\n")  # a second record
    buffer = memoryview(bytearray(100))
    assert bytes(conn.receive(buffer)) == b"get a\r\nget b\r\n"
    assert not conn.buffered


# == peer names ======================================================================


@pytest.mark.parametrize(
    "peer, name",
    [
        (("127.0.0.1", 40000), "127.0.0.1:40000"),
        (("::1", 40000, 0, 0), "[::1]:40000"),
        ("", "unix client"),  # what accept gives for a unix client's unnamed socket
        ("/tmp/client.sock", "/tmp/client.sock"),
    ],
    ids=["ipv4", "ipv6", "unix-unnamed", "unix-bound"],
)
def test_a_peer_is_named_for_the_log_by_its_address(peer, name):
    assert transports.peer_name(peer) == name
