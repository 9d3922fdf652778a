"""Differential, -C (--disable-cas): the same streams to memcached -C and to
memcached-lite -C, the replies compared byte for byte (no cas to normalize:
both show 0). gets and mg show cas 0; a `cas` on an existing key is EXISTS,
on a missing one NOT_FOUND, whatever the token; `ms ... C<n>` is EX; a
binary get's cas is 0; `md`/`ma` with C0 match, with any other C are EX;
`stats settings` says cas_enabled no. Needs
memcached; skips without it.
"""

import struct

import pytest

pytestmark = pytest.mark.timeout(60)

SENTINEL = b"version\r\n"

CASES = {
    "gets_shows_cas_0": b"set ck1 0 0 1\r\na\r\ngets ck1\r\n",
    "mg_c_shows_cas_0": b"set ck2 0 0 1\r\na\r\nmg ck2 c v\r\n",
    "cas_token_0_on_an_existing_key_is_exists": b"set ck3 0 0 1\r\na\r\ncas ck3 0 0 1 0\r\nb\r\nget ck3\r\n",
    "cas_any_token_on_an_existing_key_is_exists": b"set ck4 0 0 1\r\na\r\ncas ck4 0 0 1 5\r\nb\r\n",
    "cas_on_a_missing_key_is_not_found": b"cas ck5 0 0 1 0\r\nb\r\n",
    "ms_C_is_EX": b"set ck6 0 0 1\r\na\r\nms ck6 1 C0\r\nz\r\nms ck6 1 C7\r\nz\r\nget ck6\r\n",
    "ms_c_returns_cas_0": b"ms ck7 1 c\r\nz\r\n",
    "md_C0_matches": b"set ck8 0 0 1\r\na\r\nmd ck8 C0\r\nmg ck8 v\r\n",
    "md_C_nonzero_is_EX": b"set ck9 0 0 1\r\na\r\nmd ck9 C1\r\nmd ck9 C2\r\nmg ck9 v\r\n",
    "ma_C0_matches": b"set ck10 0 0 1\r\n1\r\nma ck10 C0 v\r\n",
    "ma_C_nonzero_is_EX": b"set ck11 0 0 1\r\n1\r\nma ck11 C1 v\r\nma ck11 C2 v\r\n",
}


@pytest.fixture(scope="module")
def pair(module_servers):
    return module_servers.memcached(["-C"]), module_servers.mclite(["-C"])


def replies(pair, connect, data):
    out = []
    for server in pair:
        conn = connect(server)
        reply = conn.exchange(data + SENTINEL, until=b"VERSION ")
        conn.read_until()
        out.append(reply)
    return out


@pytest.mark.parametrize("data", CASES.values(), ids=CASES.keys())
def test_same_replies_under_disable_cas(pair, connect, data):
    theirs, ours = replies(pair, connect, data)
    assert ours == theirs


def test_stats_settings_says_cas_disabled(pair, connect):
    theirs, ours = (connect(server).stat(b"cas_enabled", b"settings") for server in pair)
    assert theirs == ours == b"no"


def test_a_binary_get_shows_cas_0(pair, connect):
    key = b"cbin"
    set_packet = struct.pack(">BBHBBHIIQ", 0x80, 0x01, len(key), 8, 0, 0, 8 + len(key) + 1, 0, 0)
    set_packet += struct.pack(">II", 0, 0) + key + b"v"
    get_packet = struct.pack(">BBHBBHIIQ", 0x80, 0x00, len(key), 0, 0, 0, len(key), 0, 0) + key
    cas_values = []
    for server in pair:
        conn = connect(server)
        conn.send(set_packet + get_packet)
        conn.read_exactly(24)  # the set's reply: no body
        header = conn.read_exactly(24)
        conn.read_exactly(struct.unpack(">I", header[8:12])[0])
        cas_values.append(struct.unpack(">Q", header[16:24])[0])
    assert cas_values == [0, 0]
