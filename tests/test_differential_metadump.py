"""Differential: `lru_crawler metadump` on real memcached 1.6.18 and on ours.

The same items are stored on both servers, then dumped on a fresh connection
(memcached refuses a metadump pipelined behind other replies). What differs
by nature is normalised before comparing: `la` and `cas` are dropped, and
`exp` becomes the time to live it encodes (`exp - la`, to the nearest ten
seconds, since our `la` is the write's time and may be a second later than
the `exp` computed just before it). Lines are compared as sorted lists: the
order is memcached's LRU order there, hash order here.

One item is read before the dumps, so `fetch` is "yes" for it on both and
"no" for the others. Class-list dumps that start no crawl (`metadump ,`) are not
sent: memcached 1.6.18 then answers every later metadump with "ERROR an
unknown error happened".
"""

from __future__ import annotations

import socket

import pytest

ITEMS = [
    # key, flags, exptime, value size: several slab classes, TTLs, key bytes
    (b"plain", 0, 0, 1),
    (b"flagged", 7, 0, 10),
    (b"ttl-1000", 0, 1000, 100),
    (b"ttl-3600-flags", 3, 3600, 500),
    (b"b%20c", 0, 0, 2),
    (b"\xff\x01z~._-", 0, 0, 1),
    (b"mid", 0, 0, 2000),
    (b"bigger", 1, 0, 30000),
    (b"chunked", 0, 0, 600000),
    (b"fetched", 0, 0, 3),  # read once before the dumps
]


@pytest.fixture(scope="module")
def pair(module_servers):
    servers = module_servers.memcached(), module_servers.mclite()
    for server in servers:
        with socket.create_connection(server.address, timeout=10) as c:
            stream = b"".join(
                b"set %s %d %d %d\r\n%s\r\n" % (key, flags, exptime, size, b"v" * size)
                for key, flags, exptime, size in ITEMS
            )
            c.sendall(stream + b"get fetched\r\n")
            expected = b"STORED\r\n" * len(ITEMS) + b"VALUE fetched 0 3\r\nvvv\r\nEND\r\n"
            replies = b""
            while len(replies) < len(expected):
                chunk = c.recv(4096)
                assert chunk, replies
                replies += chunk
        assert replies == expected, (server, replies)
    return servers


def reply_of(connect, server, line: bytes) -> bytes:
    c = connect(server)
    c.send(line + b"\r\n")
    first = c.read_until(b"\n")
    if first.startswith(b"key="):
        return first + c.read_until(b"END\r\n")
    return first


def normalised(reply: bytes):
    assert reply.endswith(b"END\r\n"), reply
    lines = []
    for line in reply[: -len(b"END\r\n")].split(b"\n")[:-1]:
        f = dict(word.split(b"=", 1) for word in line.split(b" "))
        exp = int(f.pop(b"exp"))
        la = int(f.pop(b"la"))
        f.pop(b"cas")
        f[b"ttl"] = b"never" if exp == -1 else b"%d" % round(exp - la, -1)
        lines.append(b" ".join(b"%s=%s" % kv for kv in sorted(f.items())))
    return sorted(lines)


@pytest.mark.parametrize("arg", [b"all", b"hash", b"1", b"15", b"1,27,39"])
def test_metadump_lines_are_memcached_lines(pair, connect, arg):
    theirs, ours = (normalised(reply_of(connect, s, b"lru_crawler metadump " + arg)) for s in pair)
    assert ours == theirs


def test_metadump_lines_end_in_a_bare_newline_and_the_dump_in_end_crlf(pair, connect):
    for server in pair:
        reply = reply_of(connect, server, b"lru_crawler metadump all")
        assert reply.endswith(b"\nEND\r\n")
        assert b"\r" not in reply[: -len(b"END\r\n")]


@pytest.mark.parametrize(
    "line",
    [
        b"lru_crawler metadump",
        b"lru_crawler metadump bogus",
        b"lru_crawler metadump 0",
        b"lru_crawler metadump 64",
        b"lru_crawler metadump -1",
        b"lru_crawler metadump all extra",
        b"lru_crawler metadump a b",
        b"lru_crawler",
        b"lru_crawler bogus",
    ],
)
def test_lru_crawler_errors_are_memcached_errors(pair, connect, line):
    theirs, ours = (reply_of(connect, s, line) for s in pair)
    assert ours == theirs
