"""Differential: the same binary-protocol packets to the real memcached 1.6.18
and to ours, the replies compared packet by packet.

Each case is a list of steps; a step is a function of the case's key (and
the last cas the server itself returned) giving the bytes to send. Every
step gets a NOOP with a sentinel opaque after it, and its reply is read up
to that NOOP's answer; a case that makes the server close (`closes`) is read
until the close instead. What legitimately differs is normalised: cas values
become <cas#0>, <cas#1>... in order of appearance, and the VERSION body.
Every case runs twice: the whole stream in one send, and one byte per send.
Needs the real memcached; skips without it.
"""

from __future__ import annotations

import hashlib
import socket
import struct
from dataclasses import dataclass, field
from typing import Callable, List

import pytest

from commands import binary as b

SENTINEL = 0xDEADBEEF
BYTEWISE_LIMIT = 4096


def req(op, key=b"", extras=b"", value=b"", cas=0, opaque=0x01020304, bodylen=None, magic=0x80):
    body = len(key) + len(extras) + len(value) if bodylen is None else bodylen
    return struct.pack(">BBHBBHIIQ", magic, op, len(key), len(extras), 0, 0, body, opaque, cas) + extras + key + value


def setx(flags=0, exptime=0):
    return struct.pack(">II", flags, exptime)


def incrx(delta, initial=0, exptime=0):
    return struct.pack(">QQI", delta, initial, exptime)


def parse(data):
    """The packets in data: (header fields, extras, key, value) each."""
    packets = []
    while len(data) >= 24:
        magic, op, keylen, extlen, dtype, status, bodylen, opaque, cas = struct.unpack_from(">BBHBBHIIQ", data)
        body = data[24 : 24 + bodylen]
        packets.append([magic, op, keylen, extlen, dtype, status, bodylen, opaque, cas,
                        body[:extlen], body[extlen : extlen + keylen], body[extlen + keylen :]])
        data = data[24 + bodylen :]
    assert not data, f"a partial packet: {data!r}"
    return packets


def normalise(packets):
    seen = {}
    for p in packets:
        if p[8]:
            p[8] = "<cas#%d>" % seen.setdefault(p[8], len(seen))
        if p[1] == b.VERSION_OP and p[5] == 0:
            p[6], p[11] = "<len>", "<version>"
    return packets


@dataclass
class Case:
    name: str
    steps: List[Callable]
    closes: bool = False
    bytewise: bool = True
    extra: dict = field(default_factory=dict)


def one(make):
    return [make]


CASES = [
    Case("set_get_hit", one(lambda k, c: req(b.SET, k, setx(7), b"hello") + req(b.GET, k))),
    Case("get_miss", one(lambda k, c: req(b.GET, k))),
    Case("getk_miss_returns_the_key", one(lambda k, c: req(b.GETK, k))),
    Case("getk_hit", one(lambda k, c: req(b.SET, k, setx(1), b"v") + req(b.GETK, k))),
    Case("getq_hit_and_miss_pipelined", one(lambda k, c: req(b.SET, k, setx(), b"v") + req(b.GETQ, k)
                                            + req(b.GETQ, k + b"x") + req(b.GETKQ, k) + req(b.GETKQ, k + b"y"))),
    Case("add_existing_is_exists", one(lambda k, c: req(b.ADD, k, setx(), b"1") + req(b.ADD, k, setx(), b"2"))),
    Case("replace_missing_is_not_found", one(lambda k, c: req(b.REPLACE, k, setx(), b"1"))),
    Case("replace_existing", one(lambda k, c: req(b.SET, k, setx(), b"1") + req(b.REPLACE, k, setx(3), b"2")
                                 + req(b.GET, k))),
    Case("set_bad_cas_is_exists", one(lambda k, c: req(b.SET, k, setx(), b"1") + req(b.SET, k, setx(), b"2", cas=1))),
    Case("set_cas_missing_is_not_found", one(lambda k, c: req(b.SET, k, setx(), b"2", cas=12345))),
    Case("set_good_cas", [lambda k, c: req(b.SET, k, setx(), b"1"),
                          lambda k, c: req(b.SET, k, setx(), b"2", cas=c) + req(b.GET, k)]),
    Case("add_with_cas_is_a_cas", one(lambda k, c: req(b.SET, k, setx(), b"1") + req(b.ADD, k, setx(), b"2", cas=1))),
    Case("append_prepend", one(lambda k, c: req(b.SET, k, setx(5), b"mid") + req(b.APPEND, k, value=b">")
                               + req(b.PREPEND, k, value=b"<") + req(b.GET, k))),
    Case("append_missing_is_not_stored", one(lambda k, c: req(b.APPEND, k, value=b"x") + req(b.PREPEND, k, value=b"x"))),
    Case("append_bad_cas_is_exists", one(lambda k, c: req(b.SET, k, setx(), b"1") + req(b.APPEND, k, value=b"x", cas=1))),
    Case("delete_hit_then_miss", one(lambda k, c: req(b.SET, k, setx(), b"1") + req(b.DELETE, k) + req(b.DELETE, k))),
    Case("delete_bad_cas_is_exists", one(lambda k, c: req(b.SET, k, setx(), b"1") + req(b.DELETE, k, cas=1)
                                         + req(b.GET, k))),
    Case("incr_creates_with_initial", one(lambda k, c: req(b.INCREMENT, k, incrx(5, 10)) + req(b.INCREMENT, k, incrx(5, 10))
                                          + req(b.GET, k))),
    Case("incr_no_create", one(lambda k, c: req(b.INCREMENT, k, incrx(1, 0, 0xFFFFFFFF))
                               + req(b.DECREMENT, k, incrx(1, 0, 0xFFFFFFFF)))),
    Case("decr_stops_at_zero", one(lambda k, c: req(b.SET, k, setx(), b"3") + req(b.DECREMENT, k, incrx(10)))),
    Case("incr_wraps", one(lambda k, c: req(b.SET, k, setx(), b"18446744073709551615") + req(b.INCREMENT, k, incrx(2)))),
    Case("incr_non_numeric", one(lambda k, c: req(b.SET, k, setx(), b"abc") + req(b.INCREMENT, k, incrx(1)))),
    Case("incr_bad_cas", one(lambda k, c: req(b.SET, k, setx(), b"1") + req(b.INCREMENT, k, incrx(1), cas=1))),
    Case("decr_shorter_is_padded", one(lambda k, c: req(b.SET, k, setx(), b"100") + req(b.DECREMENT, k, incrx(95))
                                       + req(b.GET, k))),
    Case("touch_hit_and_miss", one(lambda k, c: req(b.SET, k, setx(9), b"v") + req(b.TOUCH, k, struct.pack(">I", 100))
                                   + req(b.TOUCH, k + b"m", struct.pack(">I", 100)))),
    Case("gat_gatk", one(lambda k, c: req(b.SET, k, setx(9), b"v") + req(b.GAT, k, struct.pack(">I", 100))
                         + req(b.GATK, k, struct.pack(">I", 100)) + req(b.GATK, k + b"m", struct.pack(">I", 100)))),
    Case("gatq_gatkq", one(lambda k, c: req(b.SET, k, setx(9), b"v") + req(b.GATQ, k, struct.pack(">I", 100))
                           + req(b.GATQ, k + b"m", struct.pack(">I", 0)) + req(b.GATKQ, k, struct.pack(">I", 0))
                           + req(b.GATKQ, k + b"m", struct.pack(">I", 0)))),
    Case("quiet_writes_answer_only_errors", one(lambda k, c: req(b.SETQ, k, setx(), b"1") + req(b.ADDQ, k, setx(), b"2")
                                                + req(b.REPLACEQ, k + b"m", setx(), b"2") + req(b.APPENDQ, k, value=b"a")
                                                + req(b.PREPENDQ, k + b"m", value=b"a") + req(b.INCREMENTQ, k, incrx(1))
                                                + req(b.DECREMENTQ, k, incrx(1)) + req(b.DELETEQ, k)
                                                + req(b.DELETEQ, k))),
    Case("huge_exptime_is_absolute_and_far", one(lambda k, c: req(b.SET, k, setx(0, 0xFFFFFFFF), b"v") + req(b.GET, k))),
    Case("past_absolute_exptime_is_a_miss", one(lambda k, c: req(b.SET, k, setx(0, 3000000), b"v") + req(b.GET, k))),
    Case("stat_reset_is_its_terminator_alone", one(lambda k, c: req(b.STAT, b"reset"))),
    Case("stat_detail_on_dump_off", one(lambda k, c: req(b.STAT, b"detail on") + req(b.SET, b"dp:" + k, setx(), b"v")
                                        + req(b.GET, b"dp:" + k) + req(b.DELETE, b"dp:" + k)
                                        + req(b.STAT, b"detail dump") + req(b.STAT, b"detail off"))),
    Case("version", one(lambda k, c: req(b.VERSION_OP))),
    Case("noop_opaque_echoed", one(lambda k, c: req(b.NOOP, opaque=0x55AA))),
    # memcached swallows a whole body's length after the key it has read: the
    # two bytes after the packet are eaten too
    Case("unknown_opcode_swallows_its_body", one(lambda k, c: req(0x55, b"kk", value=b"0123456789abcdef") + b"..")),
    Case("verbosity_is_unknown", one(lambda k, c: req(b.VERBOSITY, extras=struct.pack(">I", 1)) + b"...."),),
    Case("sasl_list_mechs_without_sasl", one(lambda k, c: req(b.SASL_LIST_MECHS))),
    Case("sasl_auth_without_sasl", one(lambda k, c: req(b.SASL_AUTH, b"PLAIN", value=b"\0u\0p"))),
    Case("stat_unknown_group", one(lambda k, c: req(b.STAT, b"nonsense"))),
    Case("stat_detail_bad", one(lambda k, c: req(b.STAT, b"detail what"))),
    Case("stat_sizes", one(lambda k, c: req(b.STAT, b"sizes")), extra={"memcached": "skip-values"}),
    Case("too_large_is_swallowed", one(lambda k, c: req(b.SET, k, setx(), b"x" * (2 << 20)) + req(b.GET, k)),
         bytewise=False),
    Case("too_large_set_drops_the_old_value", one(lambda k, c: req(b.SET, k, setx(), b"old")
                                                  + req(b.SET, k, setx(), b"x" * (2 << 20)) + req(b.GET, k)),
         bytewise=False),
    Case("empty_value", one(lambda k, c: req(b.SET, k, setx(), b"") + req(b.GET, k))),
    Case("binary_key", one(lambda k, c: req(b.SET, k + b" \r\n\0", setx(), b"v") + req(b.GETK, k + b" \r\n\0"))),
    Case("flush_with_delay_then_noop", one(lambda k, c: req(b.SET, k, setx(), b"v")
                                           + req(b.FLUSH, extras=struct.pack(">I", 3600)) + req(b.GET, k))),
    Case("flushq_is_silent", one(lambda k, c: req(b.SET, k, setx(), b"v") + req(b.FLUSHQ) + req(b.GET, k))),
    # malformed packets
    Case("quit", one(lambda k, c: req(b.QUIT)), closes=True),
    Case("quitq_closes_silently", one(lambda k, c: req(b.QUITQ)), closes=True),
    Case("bad_magic_later_closes", one(lambda k, c: req(b.NOOP) + req(b.GET, k, magic=0x42)), closes=True),
    Case("get_with_extras_is_einval", one(lambda k, c: req(b.GET, k, extras=b"1234")), closes=True),
    Case("get_with_a_value_is_einval", one(lambda k, c: req(b.GET, k, value=b"v")), closes=True),
    Case("key_longer_than_body", one(lambda k, c: req(b.GET, k, bodylen=2)), closes=True),
    Case("key_too_long_is_einval", one(lambda k, c: req(b.GET, b"a" * 251)), closes=True),
    Case("set_with_short_extras", one(lambda k, c: req(b.SET, k, extras=b"1234", value=b"v")), closes=True),
    Case("set_without_a_key", one(lambda k, c: req(b.SET, b"", setx(), b"v")), closes=True),
    Case("incr_with_a_value", one(lambda k, c: req(b.INCREMENT, k, incrx(1), value=b"zz")), closes=True),
    Case("delete_with_extras", one(lambda k, c: req(b.DELETE, k, extras=b"1234")), closes=True),
    Case("version_with_a_body", one(lambda k, c: req(b.VERSION_OP, value=b"x")), closes=True),
    Case("noop_with_a_key", one(lambda k, c: req(b.NOOP, b"k")), closes=True),
    Case("flush_with_bad_extras", one(lambda k, c: req(b.FLUSH, extras=b"12")), closes=True),
    Case("stat_with_extras", one(lambda k, c: req(b.STAT, extras=b"1234")), closes=True),
    Case("touch_without_extras", one(lambda k, c: req(b.TOUCH, k)), closes=True),
]


def run(address, case, bytewise):
    key = b"bin:" + hashlib.sha1(f"{case.name}{bytewise}".encode()).hexdigest()[:12].encode()
    sock = socket.create_connection(address, timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    replies, cas, buf = [], 0, b""
    try:
        for step in case.steps:
            data = step(key, cas)
            if not case.closes:
                data += req(b.NOOP, opaque=SENTINEL)
            try:
                if bytewise:
                    for i in range(len(data)):
                        sock.sendall(data[i : i + 1])
                else:
                    sock.sendall(data)
            except (BrokenPipeError, ConnectionResetError):
                assert case.closes  # closed before the rest arrived: read what it said
            packets = []
            while True:
                try:
                    chunk = sock.recv(1 << 20)
                except ConnectionResetError:
                    chunk = b""
                if not chunk:
                    assert case.closes, f"closed early: {buf!r}"
                    packets = parse(buf)
                    break
                buf += chunk
                if not case.closes and len(buf) >= 24 and buf.endswith(struct.pack(">IQ", SENTINEL, 0)):
                    packets, buf = parse(buf), b""
                    break
            cas = next((p[8] for p in reversed(packets) if p[8]), cas)
            replies += packets
    finally:
        sock.close()
    return normalise(replies)


@pytest.fixture(scope="module")
def pair(module_servers):
    return module_servers.memcached(), module_servers.mclite()


@pytest.mark.parametrize("bytewise", [False, True], ids=["whole", "bytewise"])
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_binary_matches_memcached(pair, case, bytewise):
    if bytewise and not case.bytewise:
        pytest.skip("too long to send a byte at a time")
    theirs, ours = pair
    expected = run(theirs.address, case, bytewise)
    assert run(ours.address, case, bytewise) == expected


# -- SASL (-S) ------------------------------------------------------------------
# Debian's memcached is built with Cyrus SASL but not with memcached's own
# MEMCACHED_SASL_PWDB check, so no password can succeed against it here: the
# cases below are what can be compared (list-mechs with `mech_list: plain`, the
# refusals before authenticating, a failed auth, a step). A good password is
# tested against ours alone (test_commands_binary.py, test_e2e_binary_clients.py).

# (a NOOP is refused before authenticating: each case ends with one, which
# closes the connection, and is read to the close)
SASL_CASES = [
    Case("sasl_list_mechs", one(lambda k, c: req(b.SASL_LIST_MECHS))),
    Case("sasl_version_before_auth", one(lambda k, c: req(b.VERSION_OP))),
    Case("sasl_get_before_auth_closes", one(lambda k, c: req(b.GET, k))),
    Case("sasl_noop_before_auth_closes", one(lambda k, c: req(b.NOOP))),
    Case("sasl_bad_password", one(lambda k, c: req(b.SASL_AUTH, b"PLAIN", value=b"\0alice\0wrong"))),
    Case("sasl_unknown_mechanism", one(lambda k, c: req(b.SASL_AUTH, b"NOPE", value=b"x"))),
    Case("sasl_step_not_started", one(lambda k, c: req(b.SASL_STEP, b"PLAIN", value=b"\0alice\0secret"))),
    Case("sasl_failed_auth_then_get_closes", one(lambda k, c: req(b.SASL_AUTH, b"PLAIN", value=b"\0a\0b")
                                                 + req(b.GET, k))),
    Case("sasl_text_line_waits", one(lambda k, c: b"get k\r\n" + b" " * 17)),
]


def wait_binary(server):
    import time

    deadline = time.monotonic() + 20
    while True:
        try:
            with socket.create_connection(server.address, timeout=1) as s:
                s.sendall(req(b.VERSION_OP))
                if s.recv(100):
                    return server
        except OSError:
            if time.monotonic() > deadline or server.proc.poll() is not None:
                raise AssertionError(f"{server.argv()} did not start: {server.stderr_text()}")
            time.sleep(0.01)


@pytest.fixture(scope="module")
def sasl_pair(tmp_path_factory):
    from conftest import MEMCACHED_BIN, ServerProcess, free_port, stop_all

    if MEMCACHED_BIN is None:
        pytest.skip("no memcached")
    tmp = tmp_path_factory.mktemp("sasl")
    (tmp / "pwdb").write_text("alice:secret\n")
    (tmp / "memcached.conf").write_text("mech_list: plain\n")
    env = {"MEMCACHED_SASL_PWDB": str(tmp / "pwdb"), "SASL_CONF_PATH": str(tmp)}
    (tmp / "data").mkdir()
    servers = [
        ServerProcess("memcached", port=free_port(), extra_args=["-S"], env=env),
        ServerProcess("mclite", data_dir=tmp / "data", port=free_port(), extra_args=["-S"], env=env),
    ]
    try:
        yield [wait_binary(s.spawn()) for s in servers]
    finally:
        stop_all(servers)


@pytest.mark.parametrize("case", SASL_CASES, ids=[c.name for c in SASL_CASES])
def test_sasl_matches_memcached(sasl_pair, case):
    theirs, ours = sasl_pair
    case = Case(case.name, [lambda k, c, step=case.steps[0]: step(k, c) + req(b.NOOP)], closes=True)
    expected = run(theirs.address, case, False)
    assert run(ours.address, case, False) == expected


@pytest.mark.parametrize("group", [b"", b"settings"], ids=["general", "settings"])
def test_stat_packets_share_memcached_s_names_in_its_order(pair, group):
    def names(server):
        case = Case("stat_names", one(lambda k, c: req(b.STAT, group)))
        packets = run(server.address, case, False)
        assert packets[-2][10:] == [b"", b""]  # the terminator, before the sentinel's NOOP
        return [p[10].decode() for p in packets[:-2]]

    theirs, ours = (names(server) for server in pair)
    shared = [n for n in theirs if n in ours]
    assert len(shared) > (60 if not group else 20)
    assert [n for n in ours if n in theirs] == shared
