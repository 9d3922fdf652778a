"""`watch` fed to sans-I/O sessions: a watcher and a client on one Server,
the lines checked against what memcached 1.6.18 writes for the same
commands (tests/test_differential_watch.py asks the real one)."""

import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sessions import set_cmd, stats, store  # noqa: E402,F401

from commands import watch as watch_mod  # noqa: E402
from handlers import Server, Session  # noqa: E402
from options import parse_args  # noqa: E402

CLIENT = ("127.0.0.1", 40001)
LISTEN = ("127.0.0.1", 11211)


@pytest.fixture
def server(store, clock):
    return Server(store, clock=clock)


def attached(server, fd, addr=CLIENT):
    s = Session(server)
    s.attach(fd, addr, LISTEN)
    return s


def watcher(server, streams=b"fetchers mutations connevents"):
    w = attached(server, 30, ("127.0.0.1", 40000))
    assert w.feed(b"watch " + streams + b"\r\n" if streams else b"watch\r\n") == b"OK\r\n"
    return w


def lines(w):
    """The watcher's lines, each without its ts= and gid= (they differ per run)."""
    out = w.feed(b"").decode()
    assert out.endswith("\n") or not out
    return [re.sub(r"^ts=\d+\.\d+ gid=\d+ ", "", line) for line in out.splitlines()]


# == the command =============================================================


def test_watch_under_disable_watch_is_a_client_error(store):
    server = Server(store)
    server.settings.watch_enabled = False
    assert Session(server).feed(b"watch fetchers\r\n") == b"CLIENT_ERROR watch commands not allowed\r\n"


def test_watch_with_an_unknown_stream_is_an_error(server):
    assert Session(server).feed(b"watch bogus\r\n") == b"ERROR\r\n"


def test_dash_w_turns_watch_off():
    assert parse_args(["-W"]).disable_watch


def test_watch_answers_ok(server):
    assert Session(server).feed(b"watch fetchers\r\n") == b"OK\r\n"


def test_watch_after_a_pipelined_command_is_refused(server):
    assert Session(server).feed(b"version\r\nwatch\r\n").endswith(
        b"ERROR cannot pipeline other commands before watch\r\n")


def test_a_watcher_runs_no_more_commands(server):
    w = Session(server)
    assert w.feed(b"watch\r\nset k 0 0 1\r\nx\r\n") == b"OK\r\n"
    assert w.feed(b"get k\r\nversion\r\n") == b""
    assert Session(server).feed(b"get k\r\n") == b"END\r\n"


def test_the_twenty_first_watcher_is_refused(server):
    for _ in range(watch_mod.WATCHER_LIMIT):
        assert Session(server).feed(b"watch\r\n") == b"OK\r\n"
    assert Session(server).feed(b"watch\r\n") == b"WATCHER_TOO_MANY log watcher limit reached\r\n"


def test_a_closed_watcher_frees_its_place(server):
    first = Session(server)
    first.feed(b"watch\r\n")
    for _ in range(watch_mod.WATCHER_LIMIT - 1):
        Session(server).feed(b"watch\r\n")
    first.close()
    assert Session(server).feed(b"watch\r\n") == b"OK\r\n"


def test_a_line_is_memcached_s_with_its_time_and_id(server, clock):
    w = watcher(server, b"fetchers")
    clock.now = 1_700_000_000.068307
    attached(server, 25).feed(b"get foo\r\n")
    assert re.fullmatch(rb"ts=1700000000\.6830\d gid=\d+ type=item_get key=foo status=not_found "
                        rb"clsid=0 cfd=25 size=0\n", w.feed(b""))


# == fetchers ================================================================


def test_bare_watch_is_fetchers(server):
    w = watcher(server, b"")
    c = attached(server, 25)
    c.feed(set_cmd(b"foo", b"bar"))
    assert lines(w) == ["type=item_get key=foo status=not_found clsid=0 cfd=25 size=0"]


def test_a_get_hit_is_found_with_its_size_and_class(server):
    c = attached(server, 25)
    c.feed(set_cmd(b"foo", b"bar"))
    w = watcher(server, b"fetchers")
    c.feed(b"get foo\r\n")
    assert lines(w) == ["type=item_get key=foo status=found clsid=1 cfd=25 size=3"]


def test_a_multi_get_is_a_line_per_key(server):
    w = watcher(server, b"fetchers")
    attached(server, 25).feed(b"get a b\r\n")
    assert lines(w) == [
        "type=item_get key=a status=not_found clsid=0 cfd=25 size=0",
        "type=item_get key=b status=not_found clsid=0 cfd=25 size=0",
    ]


def test_an_expired_item_s_lookup_says_expired(server, clock):
    c = attached(server, 25)
    c.feed(set_cmd(b"foo", b"bar", exptime=10))
    w = watcher(server, b"fetchers")
    clock.advance(11)
    c.feed(b"get foo\r\n")
    assert lines(w) == ["type=item_get key=foo status=expired clsid=0 cfd=25 size=0"]


def test_a_flushed_item_s_lookup_says_flushed(server):
    c = attached(server, 25)
    c.feed(set_cmd(b"foo", b"bar") + b"flush_all\r\n")
    w = watcher(server, b"fetchers")
    c.feed(b"get foo\r\n")
    assert lines(w) == ["type=item_get key=foo status=flushed clsid=0 cfd=25 size=0"]


@pytest.mark.parametrize("command", [b"delete foo\r\n", b"incr foo 1\r\n", b"touch foo 10\r\n",
                                     b"gat 10 foo\r\n", b"mg foo v\r\n", b"md foo\r\n"])
def test_a_command_that_looks_its_key_up_is_one_fetch(server, command):
    c = attached(server, 25)
    c.feed(set_cmd(b"foo", b"bar"))
    w = watcher(server, b"fetchers")
    c.feed(command)
    assert lines(w) == ["type=item_get key=foo status=found clsid=1 cfd=25 size=3"]


def test_a_binary_get_is_a_fetch_too(server):
    c = attached(server, 25)
    w = watcher(server, b"fetchers")
    key = b"foo"
    header = bytes([0x80, 0x00]) + len(key).to_bytes(2, "big") + bytes(4) + len(key).to_bytes(4, "big") + bytes(12)
    c.feed(header + key)
    assert lines(w) == ["type=item_get key=foo status=not_found clsid=0 cfd=25 size=0"]


def test_a_key_is_uri_encoded(server):
    w = watcher(server, b"fetchers")
    attached(server, 25).feed(b"get a%b\xff\r\n")
    assert lines(w) == ["type=item_get key=a%25b%FF status=not_found clsid=0 cfd=25 size=0"]


@pytest.mark.parametrize("nkey, nbytes, clsid", [(3, 3, 1), (10, 100, 4), (10, 1000, 12), (2, 5000, 19),
                                                 (3, 600000, 39)])
def test_the_class_is_memcached_s_for_the_same_item(nkey, nbytes, clsid):
    # (each asked of memcached 1.6.18 with its default slab sizes)
    assert watch_mod.slab_class(nkey, nbytes) == clsid


# == mutations ===============================================================


def test_a_set_is_its_lookup_then_its_store(server):
    w = watcher(server, b"fetchers mutations")
    attached(server, 25).feed(set_cmd(b"foo", b"bar", exptime=100))
    assert lines(w) == [
        "type=item_get key=foo status=not_found clsid=0 cfd=25 size=0",
        "type=item_store key=foo status=stored cmd=set ttl=100 clsid=1 cfd=25 size=3",
    ]


def test_mutations_alone_is_the_store_line_only(server):
    w = watcher(server, b"mutations")
    attached(server, 25).feed(set_cmd(b"foo", b"bar"))
    assert lines(w) == ["type=item_store key=foo status=stored cmd=set ttl=0 clsid=1 cfd=25 size=3"]


@pytest.mark.parametrize("command, line", [
    (set_cmd(b"foo", b"x", verb=b"add"), "status=not_stored cmd=add ttl=0 clsid=1 cfd=25 size=1"),
    (set_cmd(b"foo", b"x", verb=b"append"), "status=stored cmd=append ttl=0 clsid=1 cfd=25 size=4"),
    (b"cas foo 0 0 1 999\r\nx\r\n", "status=exists cmd=cas ttl=0 clsid=1 cfd=25 size=1"),
    (b"ms foo 2\r\nhi\r\n", "status=stored cmd=set ttl=0 clsid=1 cfd=25 size=2"),
])
def test_a_storage_command_s_outcome(server, command, line):
    c = attached(server, 25)
    c.feed(set_cmd(b"foo", b"bar"))
    w = watcher(server, b"mutations")
    c.feed(command)
    assert lines(w) == ["type=item_store key=foo " + line]


@pytest.mark.parametrize("key, status, outcome", [(b"foo", "found clsid=1 cfd=25 size=3", "exists"),
                                                   (b"nope", "not_found clsid=0 cfd=25 size=0", "not_found")])
def test_under_dash_c_a_cas_is_still_its_lookup_then_its_store(server, key, status, outcome):
    server.settings.cas_enabled = False  # -C (memcached 1.6.18 logs both, checked on loopback)
    c = attached(server, 25)
    c.feed(set_cmd(b"foo", b"bar"))
    w = watcher(server, b"fetchers mutations")
    c.feed(b"cas %s 0 0 1 5\r\nx\r\n" % key)
    assert lines(w) == ["type=item_get key=%s status=%s" % (key.decode(), status),
                        "type=item_store key=%s status=%s cmd=cas ttl=0 clsid=1 cfd=25 size=1" % (key.decode(), outcome)]


def test_a_replace_of_a_missing_key_is_not_stored(server):
    w = watcher(server, b"mutations")
    attached(server, 25).feed(set_cmd(b"nope", b"x", verb=b"replace"))
    assert lines(w) == ["type=item_store key=nope status=not_stored cmd=replace ttl=0 clsid=1 cfd=25 size=1"]


# == evictions ===============================================================


def test_an_item_evicted_for_room_is_an_eviction_line(tmp_path, clock):
    from store import Store

    evicting = Store(str(tmp_path / "evict"), clock=clock, max_disk=1536, disk_policy="evict")  # room for one two-slot file
    while evicting.tick():  # the start-up walk: the quota counts from then on
        pass
    try:
        server = Server(evicting, clock=clock)
        c = attached(server, 25)
        c.feed(set_cmd(b"old", b"x" * 300, exptime=100))
        w = watcher(server, b"evictions")
        clock.advance(5)
        c.feed(set_cmd(b"new", b"y" * 300))
        assert lines(w) == ["type=eviction key=old fetch=no ttl=95 la=5 clsid=7 size=300"]
    finally:
        evicting.close()


# == connevents ==============================================================


def test_a_new_connection_and_its_close(server):
    w = watcher(server, b"connevents")
    attached(server, 25).close()
    assert lines(w) == [
        "type=conn_new rip=127.0.0.1 rport=40001 transport=tcp cfd=25",
        "type=conn_close rip=127.0.0.1 rport=40001 transport=tcp reason=normal cfd=25",
    ]


def test_a_close_says_its_reason(server):
    w = watcher(server, b"connevents")
    c = attached(server, 25)
    c.close_reason = "idle_timeout"
    c.close()
    assert lines(w)[-1].endswith("reason=idle_timeout cfd=25")


def test_a_cross_protocol_request_s_close_is_an_error(server):
    w = watcher(server, b"connevents")
    c = attached(server, 25)
    c.feed(b"GET / HTTP/1.1\r\n")
    c.close()
    assert lines(w)[-1].endswith("reason=error cfd=25")


def test_a_unix_socket_peer_is_local(server):
    w = watcher(server, b"connevents")
    attached(server, 25, "").close()
    assert lines(w)[0] == "type=conn_new rip=unix rport=0 transport=local cfd=25"


# == a slow watcher ============================================================


def test_a_watcher_whose_lines_are_not_taken_loses_the_rest_and_is_told_how_many(server):
    w = attached(server, 30)
    backlog = [server.settings.watcher_logbuf_size]  # bytes the kernel has not taken: the bound already
    w.attach(30, CLIENT, LISTEN, unsent=lambda: backlog[0])
    w.feed(b"watch fetchers\r\n")
    c = attached(server, 25)
    c.feed(b"get a\r\nget b\r\nget c\r\n")
    assert w.feed(b"") == b""  # all three dropped
    backlog[0] = 0
    c.feed(b"get d\r\n")
    assert lines(w) == ["skipped=3", "type=item_get key=d status=not_found clsid=0 cfd=25 size=0"]


def test_the_default_bound_is_memcached_s_256_kib(server):
    assert server.settings.watcher_logbuf_size == watch_mod.BUFFER == 256 * 1024


def test_watcher_logbuf_size_bounds_each_watcher(server):
    line = len(b"ts=0.0 gid=1 type=item_get key=a status=not_found clsid=0 cfd=25 size=0\n")
    server.settings.watcher_logbuf_size = watch_mod.RESERVE + line + 20  # one line, not two
    w = watcher(server, b"fetchers")
    c = attached(server, 25)
    c.feed(b"get a b c\r\n")
    assert lines(w) == ["type=item_get key=a status=not_found clsid=0 cfd=25 size=0"]
    c.feed(b"get d\r\n")
    assert lines(w) == ["skipped=2", "type=item_get key=d status=not_found clsid=0 cfd=25 size=0"]


@pytest.mark.parametrize("spare, kept", [(0, True), (-1, False)], ids=["exactly_room", "one_byte_short"])
def test_a_line_goes_in_only_with_memcached_s_128_bytes_to_spare(server, spare, kept):
    line = b"ts=1.2 gid=3 type=item_get key=a status=not_found clsid=0 cfd=25 size=0\n"
    w = watch_mod.Watcher(Session(server), watch_mod.FETCHERS, len(line) + watch_mod.RESERVE + spare)
    assert w.offer(line) is kept


def test_under_a_zero_bound_watch_attaches_unanswered_and_every_line_is_skipped(server):
    server.settings.watcher_logbuf_size = 0  # memcached writes the OK into the watcher's buffer: no room
    w = attached(server, 30)
    assert w.feed(b"watch fetchers\r\n") == b""
    c = attached(server, 25)
    c.feed(b"get a b\r\n")
    assert w.feed(b"") == b""
    rows = stats(c)
    assert (rows["log_watchers"], rows["log_watcher_skipped"], rows["log_watcher_sent"]) == ("1", "2", "0")


@pytest.mark.parametrize("size", [watch_mod.BUFFER, 8192, 0])
def test_stats_settings_shows_the_bound_in_bytes_as_memcached(server, size):
    server.settings.watcher_logbuf_size = size
    assert stats(Session(server), b"settings")["watcher_logbuf_size"] == str(size)


def test_a_watcher_s_lines_wake_its_connection_once(server):
    woken = []
    w = Session(server)
    w.attach(30, CLIENT, LISTEN, wake=lambda: woken.append(1))
    w.feed(b"watch fetchers\r\n")
    attached(server, 25).feed(b"get a b c\r\n")
    assert woken == [1]


# == what it costs without a watcher ============================================


def test_with_no_watcher_the_store_calls_no_one(server):
    assert server.store.watch is None
    w = watcher(server, b"fetchers")
    assert server.store.watch is server.watchers
    w.close()
    assert server.store.watch is None


def test_a_connevents_watcher_alone_leaves_the_store_alone(server):
    watcher(server, b"connevents")
    assert server.store.watch is None


@pytest.mark.parametrize("split", range(1, len(b"watch fetchers\r\n")))
def test_watch_split_anywhere_is_the_same_command(server, split):
    w = Session(server)
    data = b"watch fetchers\r\n"
    assert w.feed(data[:split]) + w.feed(data[split:]) == b"OK\r\n"
