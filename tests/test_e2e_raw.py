"""End to end over raw sockets: the protocol's error paths and the server's
robustness against clients that misbehave.

One server serves the module; each test uses keys of its own. Expected bytes
are memcached 1.6's, checked against it (MCLITE_TARGET=memcached).
"""

from __future__ import annotations

import signal
import socket
import struct
import subprocess
import sys
import threading
from pathlib import Path

import pytest

ITEM_SIZE_MAX = 1024 * 1024
REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def conn(mclite, connect):
    return connect(mclite)


@pytest.fixture
def key(request) -> bytes:
    name = request.node.name.replace("[", "_").replace("]", "_")
    return ("r:" + name)[:200].encode()


def assert_server_serves(connect, server):
    """A brand-new connection gets a complete reply."""
    c = connect(server)
    assert c.exchange(b"version\r\n").startswith(b"VERSION ")


# --------------------------------------------------------------------------
# error replies


def test_unknown_command_is_error(conn):
    assert conn.exchange(b"bogus\r\n") == b"ERROR\r\n"
    conn.assert_in_step()


def test_empty_line_is_error(conn):
    assert conn.exchange(b"\r\n") == b"ERROR\r\n"


def test_commands_are_case_sensitive(conn):
    assert conn.exchange(b"GET x\r\n") == b"ERROR\r\n"


def test_tab_is_not_a_separator(conn):
    assert conn.exchange(b"get\tx\r\n") == b"ERROR\r\n"


def test_bare_newline_ends_a_command_line(conn, key):
    assert conn.exchange(b"get " + key + b"\n") == b"END\r\n"


def test_key_of_250_bytes_is_accepted(conn):
    k = b"k" * 250
    assert conn.exchange(b"set " + k + b" 0 0 1\r\nv\r\n") == b"STORED\r\n"
    assert conn.exchange(b"get " + k + b"\r\n", until=b"END\r\n") == b"VALUE " + k + b" 0 1\r\nv\r\nEND\r\n"


def test_get_with_key_of_251_bytes_is_bad_command_line_format(conn):
    assert conn.exchange(b"get " + b"k" * 251 + b"\r\n") == b"CLIENT_ERROR bad command line format\r\n"
    conn.assert_in_step()


def test_set_with_key_of_251_bytes_is_refused_and_its_data_line_read_as_a_command(conn):
    reply = conn.exchange(b"set " + b"k" * 251 + b" 0 0 1\r\nv\r\n", count=2)
    assert reply == b"CLIENT_ERROR bad command line format\r\nERROR\r\n"
    conn.assert_in_step()


def test_negative_length_is_bad_command_line_format(conn, key):
    assert conn.exchange(b"set " + key + b" 0 0 -1\r\n") == b"CLIENT_ERROR bad command line format\r\n"
    conn.assert_in_step()


def test_data_block_longer_than_declared_is_bad_data_chunk(conn, key):
    # 3 bytes + 2 are read ("hello"); "lo" is not CRLF; the leftover CRLF is
    # an empty command line.
    reply = conn.exchange(b"set " + key + b" 0 0 3\r\nhello\r\n", count=2)
    assert reply == b"CLIENT_ERROR bad data chunk\r\nERROR\r\n"
    assert conn.exchange(b"get " + key + b"\r\n") == b"END\r\n"


def test_bad_data_chunk_keeps_the_old_value(conn, key):
    assert conn.exchange(b"set " + key + b" 0 0 1\r\na\r\n") == b"STORED\r\n"
    assert conn.exchange(b"set " + key + b" 0 0 3\r\nhello\r\n", count=2) == b"CLIENT_ERROR bad data chunk\r\nERROR\r\n"
    assert conn.exchange(b"get " + key + b"\r\n", until=b"END\r\n") == b"VALUE " + key + b" 0 1\r\na\r\nEND\r\n"


def test_data_block_must_end_in_crlf_not_bare_newline(conn, key):
    # "a\ng" is read as the 1+2 data bytes; the rest "et k\n" is a bad command.
    reply = conn.exchange(b"set " + key + b" 0 0 1\na\nget " + key + b"\n", count=2)
    assert reply == b"CLIENT_ERROR bad data chunk\r\nERROR\r\n"


def test_too_large_item_is_swallowed_and_the_stream_stays_in_step(conn, key):
    size = 2 * ITEM_SIZE_MAX
    stream = b"set " + key + b" 0 0 %d\r\n" % size + b"g" * size + b"\r\nget " + key + b"\r\n"
    sender = threading.Thread(target=conn.send, args=(stream,))
    sender.start()
    try:
        assert conn.read_until(b"\r\n") == b"SERVER_ERROR object too large for cache\r\n"
        assert conn.read_until(b"\r\n") == b"END\r\n"
    finally:
        sender.join(30)
    conn.assert_in_step()


def test_too_large_set_removes_the_old_value(conn, key):
    assert conn.exchange(b"set " + key + b" 0 0 3\r\nold\r\n") == b"STORED\r\n"
    size = ITEM_SIZE_MAX + 1
    reply = conn.exchange(b"set " + key + b" 0 0 %d\r\n" % size + b"n" * size + b"\r\n")
    assert reply == b"SERVER_ERROR object too large for cache\r\n"
    assert conn.exchange(b"get " + key + b"\r\n") == b"END\r\n"


def test_too_large_add_and_append_keep_the_old_value(conn, key):
    assert conn.exchange(b"set " + key + b" 0 0 3\r\nold\r\n") == b"STORED\r\n"
    size = ITEM_SIZE_MAX + 1
    for verb in (b"add", b"replace", b"append", b"prepend"):
        reply = conn.exchange(verb + b" " + key + b" 0 0 %d\r\n" % size + b"n" * size + b"\r\n")
        assert reply == b"SERVER_ERROR object too large for cache\r\n", verb
    assert conn.exchange(b"get " + key + b"\r\n", until=b"END\r\n") == b"VALUE " + key + b" 0 3\r\nold\r\nEND\r\n"


def test_too_large_noreply_set_says_nothing(conn, key):
    size = ITEM_SIZE_MAX + 1
    conn.send(b"set " + key + b" 0 0 %d noreply\r\n" % size + b"n" * size + b"\r\n")
    conn.assert_in_step()


def test_incr_of_non_numeric_value_is_client_error(conn, key):
    assert conn.exchange(b"set " + key + b" 0 0 1\r\na\r\n") == b"STORED\r\n"
    assert conn.exchange(b"incr " + key + b" 1\r\n") == b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n"


def test_incr_with_bad_delta_is_client_error(conn, key):
    assert conn.exchange(b"incr " + key + b" abc\r\n") == b"CLIENT_ERROR invalid numeric delta argument\r\n"
    assert conn.exchange(b"incr " + key + b" -1\r\n") == b"CLIENT_ERROR invalid numeric delta argument\r\n"


def test_delete_with_time_argument_is_refused_except_zero(conn, key):
    assert conn.exchange(b"delete " + key + b" 0\r\n") == b"NOT_FOUND\r\n"
    assert conn.exchange(b"delete " + key + b" 5\r\n") == (
        b"CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n"
    )


# --------------------------------------------------------------------------
# connection handling


def test_quit_closes_the_connection(conn):
    conn.send(b"quit\r\n")
    assert conn.read_until_closed() == b""


def test_commands_after_quit_are_not_answered(conn, key):
    conn.send(b"quit\r\nget " + key + b"\r\n")
    assert conn.read_until_closed() == b""


def test_long_line_without_newline_closes_the_connection(mclite, conn, connect):
    conn.send(b"x" * 4096)
    assert conn.read_until_closed() == b""
    assert_server_serves(connect, mclite)


def test_long_multiget_line_is_served(conn, key):
    # A get line longer than 2048 bytes is legitimate: many keys.
    keys = [key + b":%d" % i for i in range(200)]
    assert conn.exchange(b"set " + keys[7] + b" 0 0 1\r\nv\r\n") == b"STORED\r\n"
    line = b"get " + b" ".join(keys) + b"\r\n"
    assert len(line) > 4096
    assert conn.exchange(line, until=b"END\r\n") == b"VALUE " + keys[7] + b" 0 1\r\nv\r\nEND\r\n"


def test_pipelined_commands_in_one_send_are_answered_in_order(conn, key):
    k = key
    stream = (
        b"set " + k + b" 5 0 2\r\nhi\r\n"
        b"get " + k + b"\r\n"
        b"append " + k + b" 0 0 1\r\n!\r\n"
        b"add " + k + b" 0 0 1\r\nx\r\n"
        b"incr " + k + b" 1\r\n"
        b"delete " + k + b"\r\n"
        b"delete " + k + b"\r\n"
        b"bogus\r\n"
        b"get " + k + b"\r\n"
    )
    expected = (
        b"STORED\r\n"
        b"VALUE " + k + b" 5 2\r\nhi\r\nEND\r\n"
        b"STORED\r\n"
        b"NOT_STORED\r\n"
        b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n"
        b"DELETED\r\n"
        b"NOT_FOUND\r\n"
        b"ERROR\r\n"
        b"END\r\n"
    )
    conn.send(stream)
    assert conn.read_exactly(len(expected)) == expected
    conn.assert_in_step()


def test_five_hundred_pipelined_sets_are_all_stored(conn, key):
    stream = b"".join(b"set " + key + b":%d 0 0 3\r\n%03d\r\n" % (i, i) for i in range(500))
    assert conn.exchange(stream, count=500) == b"STORED\r\n" * 500
    keys = b" ".join(key + b":%d" % i for i in range(0, 500, 50))
    reply = conn.exchange(b"get " + keys + b"\r\n", until=b"END\r\n")
    assert reply.count(b"VALUE ") == 10


def test_commands_sent_one_byte_at_a_time_are_understood(conn, key):
    stream = (
        b"set " + key + b" 3 0 5\r\nhe\r\no\r\n"
        b"get " + key + b"\r\n"
        b"incr nope 1\r\n"
        b"delete " + key + b"\r\n"
    )
    expected = b"STORED\r\nVALUE " + key + b" 3 5\r\nhe\r\no\r\nEND\r\nNOT_FOUND\r\nDELETED\r\n"
    conn.send_bytewise(stream)
    assert conn.read_exactly(len(expected)) == expected
    conn.assert_in_step()


def test_storage_command_split_between_line_and_data_is_understood(conn, key):
    conn.send(b"set " + key + b" 0 0 10\r\n01234")
    conn.send(b"56789")
    conn.send(b"\r")
    assert conn.exchange(b"\n") == b"STORED\r\n"


def test_server_survives_a_client_that_disconnects_mid_value(mclite, connect, key):
    c = connect(mclite)
    c.send(b"set " + key + b" 0 0 100\r\n" + b"x" * 10)
    c.close()
    other = connect(mclite)
    assert other.exchange(b"get " + key + b"\r\n") == b"END\r\n"


def test_server_survives_a_client_that_resets_mid_command(mclite, connect, key):
    c = connect(mclite)
    c.send(b"set " + key + b" 0 0 100\r\n" + b"x" * 10)
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()  # RST instead of FIN
    assert_server_serves(connect, mclite)


def test_server_survives_garbage_and_keeps_serving_others(mclite, connect, key):
    bystander = connect(mclite)
    assert bystander.exchange(b"set " + key + b" 0 0 1\r\nv\r\n") == b"STORED\r\n"
    garbage = connect(mclite)
    junk = bytes(range(256)) * 8 + b"\x00\xff\r\n" * 10 + bytes(range(255, -1, -1)) * 8
    try:
        garbage.send(junk)
    except OSError:
        pass  # the server may have closed it: allowed
    assert bystander.exchange(b"get " + key + b"\r\n", until=b"END\r\n") == b"VALUE " + key + b" 0 1\r\nv\r\nEND\r\n"
    assert_server_serves(connect, mclite)


def test_server_survives_a_client_that_never_reads_its_replies(mclite, connect, key):
    c = connect(mclite)
    size = 500_000
    assert c.exchange(b"set " + key + b" 0 0 %d\r\n" % size + b"b" * size + b"\r\n") == b"STORED\r\n"
    # Ask for ~100 MB of replies and read none of them.
    c.sock.setblocking(False)
    try:
        for _ in range(200):
            c.sock.send(b"get " + key + b"\r\n")
    except BlockingIOError:
        pass
    c.sock.setblocking(True)
    other = connect(mclite)
    assert other.exchange(b"get " + key + b":other\r\n") == b"END\r\n"
    c.close()
    assert_server_serves(connect, mclite)


def test_fifty_open_connections_are_all_served(mclite, connect, key):
    conns = [connect(mclite) for _ in range(50)]
    for i, c in enumerate(conns):
        c.send(b"set " + key + b":%d 0 0 1\r\n%d\r\n" % (i, i % 10))
    for c in conns:
        assert c.read_until() == b"STORED\r\n"
    for i, c in enumerate(conns):
        k = key + b":%d" % ((i + 1) % 50)
        assert c.exchange(b"get " + k + b"\r\n", until=b"END\r\n") == b"VALUE " + k + b" 0 1\r\n%d\r\nEND\r\n" % (
            (i + 1) % 50 % 10
        )


def test_gat_returns_the_value_and_gats_adds_a_cas(conn, key):
    assert conn.exchange(b"set " + key + b" 4 0 1\r\nv\r\n") == b"STORED\r\n"
    assert conn.exchange(b"gat 100 " + key + b"\r\n", until=b"END\r\n") == b"VALUE " + key + b" 4 1\r\nv\r\nEND\r\n"
    reply = conn.exchange(b"gats 100 " + key + b"\r\n", until=b"END\r\n")
    head, _, rest = reply.partition(b"\r\n")
    assert head.startswith(b"VALUE " + key + b" 4 1 ") and head.split()[-1].isdigit()
    assert rest == b"v\r\nEND\r\n"


def test_gat_with_negative_exptime_returns_the_value_then_expires_it(conn, key):
    assert conn.exchange(b"set " + key + b" 0 0 1\r\nv\r\n") == b"STORED\r\n"
    assert conn.exchange(b"gat -1 " + key + b"\r\n", until=b"END\r\n") == b"VALUE " + key + b" 0 1\r\nv\r\nEND\r\n"
    assert conn.exchange(b"get " + key + b"\r\n") == b"END\r\n"


# --------------------------------------------------------------------------
# the process


def test_sigterm_stops_the_server_with_status_zero(start_mclite):
    start_mclite().stop(signal.SIGTERM)


def test_sigint_stops_the_server_with_status_zero(start_mclite):
    start_mclite().stop(signal.SIGINT)


def test_bad_flag_prints_usage_and_exits_2(target, tmp_path):
    if target != "mclite":
        pytest.skip("memcached's usage errors differ; this is our command line")
    proc = subprocess.run(
        [sys.executable, "-m", "reactor", "--no-such-flag", "--data-dir", str(tmp_path)],
        cwd=str(REPO_ROOT),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=30,
    )
    assert proc.returncode == 1, proc  # getopt's status, as memcached
    assert b"usage" in proc.stderr.lower(), proc.stderr


def _rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_a_client_that_never_reads_costs_the_server_megabytes_not_its_whole_backlog(start_mclite, connect):
    # 300 replies of 1 MB are asked for and never read: the server must stop
    # reading that client once it is a few MiB behind, so its memory stays
    # near where it started, measured from /proc, not guessed.
    server = start_mclite()
    if server.kind != "mclite":
        pytest.skip("measures our server's memory")
    c = connect(server)
    size = 1_000_000
    assert c.exchange(b"set big 0 0 %d\r\n" % size + b"b" * size + b"\r\n") == b"STORED\r\n"
    before = _rss_kib(server.pid)
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    c.sock.setblocking(False)
    sent = 0
    request = b"get big\r\n" * 300
    try:
        while sent < len(request):
            sent += c.sock.send(request[sent:])
    except BlockingIOError:
        pass
    other = connect(server)
    peak = before
    for _ in range(20):  # the server has had many loop turns by the end
        assert other.exchange(b"get nothing\r\n") == b"END\r\n"
        peak = max(peak, _rss_kib(server.pid))
    assert peak - before < 64 * 1024, f"RSS grew by {(peak - before) // 1024} MiB"
