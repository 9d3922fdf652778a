"""The binary protocol, sans-I/O: handlers.Session's BIN_HEADER framing and
commands.binary's opcodes, fed bytes without sockets (whole, byte by byte,
split at every offset), plus -B, -S (SASL PLAIN), the counters and
--fsync always. Reply for reply against memcached: test_differential_binary.py."""

import struct

import pytest

import handlers
from commands import binary as b
from sessions import ITEM_SIZE_MAX, store  # noqa: F401  (the fixture)
from test_differential_binary import incrx, parse, req, setx


def server_of(store, protocol="auto", sasl=None):
    settings = handlers.Settings()
    settings.protocol = protocol
    server = handlers.Server(store, settings)
    server.sasl = sasl
    return server


@pytest.fixture
def server(store):  # noqa: F811
    return server_of(store)


def replies(session, data):
    return [(p[1], p[5], p[9], p[10], p[11]) for p in parse(session.feed(data))]


PIPELINE = (
    req(b.SET, b"k", setx(3), b"hello") + req(b.GETQ, b"k") + req(b.GETKQ, b"miss") + req(b.ADDQ, b"k", setx(), b"x")
    + req(b.INCREMENT, b"n", incrx(2, 40)) + req(b.APPEND, b"k", value=b"!") + req(b.GETK, b"k") + req(b.NOOP)
)


def test_a_first_byte_0x80_makes_the_connection_binary(server):
    s = handlers.Session(server)
    assert replies(s, req(b.VERSION_OP)) == [(b.VERSION_OP, 0, b"", b"", b"1.6.18-lite")]
    assert s.state == handlers.BIN_HEADER


def test_a_pipeline_answers_in_order_with_quiet_successes_left_out(server):
    got = replies(handlers.Session(server), PIPELINE)
    assert [(op, status) for op, status, *_ in got] == [
        (b.SET, 0), (b.GETQ, 0), (b.ADDQ, b.KEY_EEXISTS), (b.INCREMENT, 0), (b.APPEND, 0), (b.GETK, 0), (b.NOOP, 0),
    ]
    assert got[1][2:] == (struct.pack(">I", 3), b"", b"hello")
    assert got[3][4] == struct.pack(">Q", 40)
    assert got[5][3:] == (b"k", b"hello!")


@pytest.mark.parametrize("how", ["bytewise", "every split"])
def test_a_pipeline_split_anywhere_answers_as_sent_whole(store, tmp_path, how):  # noqa: F811
    from store import Store

    def fresh(name):
        s = Store(str(tmp_path / name), item_size_max=ITEM_SIZE_MAX)
        return handlers.Session(server_of(s))

    def cas_free(data):
        return [p[:8] + p[9:] for p in parse(data)]

    whole = cas_free(fresh("whole").feed(PIPELINE))
    if how == "bytewise":
        s = fresh("bytes")
        assert cas_free(b"".join(s.feed(PIPELINE[i : i + 1]) for i in range(len(PIPELINE)))) == whole
        return
    for cut in range(1, len(PIPELINE), 7):
        s = fresh(f"cut{cut}")
        assert cas_free(s.feed(PIPELINE[:cut]) + s.feed(PIPELINE[cut:])) == whole, cut


def test_text_after_binary_on_another_connection_is_text(server):
    handlers.Session(server).feed(req(b.SET, b"k", setx(), b"v"))
    assert handlers.Session(server).feed(b"get k\r\n") == b"VALUE k 0 1\r\nv\r\nEND\r\n"


def test_under_B_ascii_a_binary_packet_is_text(store):  # noqa: F811
    s = handlers.Session(server_of(store, "ascii"))
    assert s.feed(req(b.VERSION_OP)) == b""  # a line still without its end
    assert s.state == handlers.LINE


def test_under_B_binary_a_text_line_waits_for_a_header_then_closes(store):  # noqa: F811
    s = handlers.Session(server_of(store, "binary"))
    assert s.feed(b"get k\r\n") == b""
    assert not s.closing
    assert s.feed(b" " * 17) == b""  # 24 bytes: a header with a bad magic
    assert s.closing


def test_a_bad_magic_after_a_packet_closes_without_a_reply(server):
    s = handlers.Session(server)
    assert replies(s, req(b.NOOP) + req(b.GET, b"k", magic=0x81)) == [(b.NOOP, 0, b"", b"", b"")]
    assert s.closing


def test_a_malformed_packet_is_answered_einval_and_closes(server):
    s = handlers.Session(server)
    assert replies(s, req(b.GET, b"k", extras=b"1234")) == [(b.GET, b.EINVAL, b"", b"", b"Invalid arguments")]
    assert s.closing


def test_a_value_over_the_item_size_is_too_large_and_swallowed(server):
    s = handlers.Session(server)
    packet = req(b.SET, b"k", setx(), b"x" * (ITEM_SIZE_MAX * 2)) + req(b.NOOP)
    assert [r[:2] for r in replies(s, packet[:1000])] == [(b.SET, b.E2BIG)]
    assert [r[:2] for r in replies(s, packet[1000:])] == [(b.NOOP, 0)]


def test_binary_commands_count_as_memcached_counts_them(server):
    s = handlers.Session(server)
    s.feed(req(b.SET, b"k", setx(), b"v") + req(b.GET, b"k") + req(b.GETQ, b"m") + req(b.DELETE, b"m")
           + req(b.TOUCH, b"k", struct.pack(">I", 0)) + req(b.INCREMENT, b"m", incrx(1, 0, 0xFFFFFFFF)))
    c = server.counters
    assert (c.cmd_set, c.cmd_get, c.get_hits, c.get_misses) == (1, 2, 1, 1)
    assert (c.delete_misses, c.cmd_touch, c.touch_hits, c.incr_misses) == (1, 1, 1, 1)


def test_stat_packets_end_with_an_empty_one(server):
    got = replies(handlers.Session(server), req(b.STAT, b"settings"))
    assert got[-1] == (b.STAT, 0, b"", b"", b"")
    rows = {key: value for _, _, _, key, value in got[:-1]}
    assert rows[b"binding_protocol"] == b"auto-negotiate"


@pytest.mark.parametrize("protocol, shown", [("ascii", b"ascii"), ("binary", b"binary")])
def test_stats_settings_shows_the_binding_protocol(store, protocol, shown):  # noqa: F811
    s = handlers.Session(server_of(store, protocol))
    if protocol == "binary":
        rows = {key: value for _, _, _, key, value in replies(s, req(b.STAT, b"settings"))}
        assert rows[b"binding_protocol"] == shown
    else:
        assert b"STAT binding_protocol ascii\r\n" in s.feed(b"stats settings\r\n")


def test_under_always_a_quiet_write_holds_the_replies_after_it(open_store, clock):
    from store import ALWAYS

    from test_handlers import NoBarrier

    st = open_store(ALWAYS, name="always")
    st.durability.barrier = NoBarrier()
    server = handlers.Server(st, handlers.Settings(), clock=clock)
    s = handlers.Session(server)
    assert s.feed(req(b.SETQ, b"k", setx(), b"v") + req(b.NOOP)) == b""
    assert s.holding
    server.commit()
    assert [p[1] for p in parse(s.release())] == [b.NOOP]


# -- SASL (-S) --------------------------------------------------------------

USERS = [(b"alice", b"secret")]


@pytest.fixture
def sasl_server(store):  # noqa: F811
    return server_of(store, "binary", sasl=list(USERS))


def auth(user, password):
    return req(b.SASL_AUTH, b"PLAIN", value=b"\0" + user + b"\0" + password)


def test_sasl_lists_plain(sasl_server):
    assert replies(handlers.Session(sasl_server), req(b.SASL_LIST_MECHS)) == [(b.SASL_LIST_MECHS, 0, b"", b"", b"PLAIN")]


def test_before_authenticating_a_command_is_an_auth_error_and_closes(sasl_server):
    s = handlers.Session(sasl_server)
    assert replies(s, req(b.GET, b"k")) == [(b.GET, b.AUTH_ERROR, b"", b"", b"Auth failure.")]
    assert s.closing


def test_version_needs_no_authentication(sasl_server):
    assert replies(handlers.Session(sasl_server), req(b.VERSION_OP))[0][1] == 0


def test_plain_with_a_good_password_authenticates(sasl_server):
    s = handlers.Session(sasl_server)
    got = replies(s, auth(b"alice", b"secret") + req(b.SET, b"k", setx(), b"v") + req(b.GET, b"k"))
    assert got[0] == (b.SASL_AUTH, 0, b"", b"", b"Authenticated")
    assert got[2][4] == b"v"
    assert (sasl_server.counters.auth_cmds, sasl_server.counters.auth_errors) == (1, 0)


def test_a_bad_password_is_an_auth_error_counted_and_the_connection_stays(sasl_server):
    s = handlers.Session(sasl_server)
    assert replies(s, auth(b"alice", b"wrong")) == [(b.SASL_AUTH, b.AUTH_ERROR, b"", b"", b"Auth failure.")]
    assert not s.closing
    assert (sasl_server.counters.auth_cmds, sasl_server.counters.auth_errors) == (1, 1)


def test_a_failed_second_auth_unauthenticates(sasl_server):
    s = handlers.Session(sasl_server)
    got = replies(s, auth(b"alice", b"secret") + auth(b"alice", b"bad") + req(b.GET, b"k"))
    assert [r[1] for r in got] == [0, b.AUTH_ERROR, b.AUTH_ERROR]
    assert s.closing


def test_a_step_is_an_auth_error(sasl_server):
    s = handlers.Session(sasl_server)
    assert replies(s, req(b.SASL_STEP, b"PLAIN", value=b"\0alice\0secret"))[0][1] == b.AUTH_ERROR


def test_the_sasl_file_is_read_again_on_reload(sasl_server, tmp_path):
    path = tmp_path / "pwdb"
    path.write_text("alice:secret\n")
    sasl_server.load_sasl(str(path))
    path.write_text("alice:new\n")
    assert sasl_server.reload_auth() is True
    got = replies(handlers.Session(sasl_server), auth(b"alice", b"new"))
    assert got[0][1] == 0


# -- the error funnel ----------------------------------------------------------


def test_a_store_error_is_answered_enomem_with_its_message(server, monkeypatch):
    from store import StoreError

    def failing(*args, **kwargs):
        raise StoreError("disk gone")

    monkeypatch.setattr(server.store, "store", failing)
    got = replies(handlers.Session(server), req(b.SETQ, b"k", setx(), b"v") + req(b.NOOP))
    assert got == [(b.SETQ, b.ENOMEM, b"", b"", b"disk gone"), (b.NOOP, 0, b"", b"", b"")]
    assert server.counters.persist_errors == 1


def test_a_failed_batch_answers_enomem_even_to_a_quiet_write(open_store, clock):
    from store import ALWAYS

    from test_handlers import NoBarrier

    st = open_store(ALWAYS, name="always")
    st.durability.barrier = NoBarrier()
    server = handlers.Server(st, handlers.Settings(), clock=clock)
    s = handlers.Session(server)
    s.feed(req(b.SETQ, b"k", setx(), b"v") + req(b.NOOP))
    batch = next(p for p in s._held if isinstance(p, handlers.Deferred)).batch
    batch.committed, batch.error = True, "fsync failed"
    got = [(p[1], p[5], p[11]) for p in parse(s.release())]
    assert got[0] == (b.SETQ, b.ENOMEM, b"fsync failed")


def test_an_auth_too_large_for_an_item_is_refused_and_dropped_unbuffered(sasl_server):
    s = handlers.Session(sasl_server)
    packet = req(b.SASL_AUTH, b"PLAIN", value=b"x" * (ITEM_SIZE_MAX * 2))
    assert [r[:2] for r in replies(s, packet[:100])] == [(b.SASL_AUTH, b.ENOMEM)]
    assert s.buffered == 0
    assert replies(s, packet[100:] + req(b.SASL_LIST_MECHS))[0][4] == b"PLAIN"


def test_a_mechanism_name_over_32_bytes_is_invalid(sasl_server):
    s = handlers.Session(sasl_server)
    assert replies(s, req(b.SASL_AUTH, b"M" * 33, value=b"x") + req(b.SASL_LIST_MECHS))[0][1] == b.EINVAL
