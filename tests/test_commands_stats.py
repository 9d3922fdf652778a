"""The session's stats groups, `stats detail` and the --max-disk quota: what
memcached 1.6.18 answers, byte for byte where it was checked on loopback
(`memcached -t 1 -U 0`, with `-X`, `-D /`), and what the counters count.
(`stats cachedump` is the dumps family's: test_commands_dumps.py; -Y is
test_commands_auth.py.)

Sans-I/O like test_handlers.py: a Session fed bytes, a FakeClock, no socket.
"""

import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from commands import stats as stats_family  # noqa: E402
from handlers import Server, Session, Settings  # noqa: E402
from store import Mode, Store, record  # noqa: E402

NOW = 1_700_000_000.0
END = b"END\r\n"
STORED = b"STORED\r\n"

pytestmark = pytest.mark.usefixtures("no_fsync")


def finish_scan(store):
    """Run the start-up walk to its end: curr_items and bytes are exact from then on."""
    while store.tick(1.0):
        pass


@pytest.fixture
def store(tmp_path, clock):
    s = Store(str(tmp_path / "data"), clock=clock)
    finish_scan(s)
    yield s
    s.close()


def set_cmd(key, data, flags=0, exptime=0):
    return b"set %s %d %d %d\r\n%s\r\n" % (key, flags, exptime, len(data), data)


def rows_of(reply):
    assert reply.endswith(END), reply
    rows = {}
    for line in reply[: -len(END)].split(b"\r\n")[:-1]:
        stat, name, val = line.split(b" ", 2)
        assert stat == b"STAT"
        rows[name.decode()] = val.decode()
    return rows


def stats(session, sub=b""):
    return rows_of(session.feed(b"stats" + (b" " + sub if sub else b"") + b"\r\n"))


# == stats: memcached's names, in its order ======================================


def test_stats_has_memcached_names_it_lacked(session):
    rows = stats(session)
    for name in (
        "libevent connection_structures response_obj_oom read_buf_count cmd_meta store_no_memory "
        "auth_cmds auth_errors accepting_conns listen_disabled_num time_in_listen_disabled_us "
        "conn_yields hash_power_level hash_bytes hash_is_expanding lru_crawler_running "
        "lru_crawler_starts crawler_reclaimed crawler_items_checked"
    ).split():
        assert name in rows, name


def test_stats_has_the_eviction_and_expiry_names_tools_read(session):
    rows = stats(session)
    assert (rows["expired_unfetched"], rows["evicted_unfetched"], rows["evicted_active"]) == ("0", "0", "0")


def test_stats_settings_show_the_listen_backlog(session):
    assert stats(session, b"settings")["tcp_backlog"] == "1024"


def test_stats_names_follow_memcached_order_then_ours(session):
    names = list(stats(session))
    order = stats_family.GENERAL_STATS_ORDER
    theirs = [n for n in names if n in order]
    assert theirs == sorted(theirs, key=order.index)
    ours = names[len(theirs):]
    assert ours and not set(ours) & set(order)
    assert names[: len(theirs)] == theirs


def test_stats_settings_say_there_is_no_unix_socket_and_the_default_mask_as_memcached(session):
    rows = stats(session, b"settings")
    assert (rows["domain_socket"], rows["umask"]) == ("NULL", "700")


def test_stats_settings_show_the_unix_socket_and_its_mask_in_octal(server, session):
    server.settings.domain_socket, server.settings.unix_mask = "/run/memcached/memcached.sock", 0o770
    rows = stats(session, b"settings")
    assert (rows["domain_socket"], rows["umask"]) == ("/run/memcached/memcached.sock", "770")


@pytest.mark.parametrize("listen, inter", [(None, "NULL"), ("127.0.0.1", "127.0.0.1")])
def test_stats_settings_inter_is_l_as_given_or_null_as_memcached(server, session, listen, inter):
    server.settings.listen = listen
    assert stats(session, b"settings")["inter"] == inter


def test_stats_settings_follow_memcached_order_then_ours(session):
    names = list(stats(session, b"settings"))
    order = stats_family.SETTINGS_STATS_ORDER
    theirs = [n for n in names if n in order]
    assert names[: len(theirs)] == sorted(theirs, key=order.index)
    assert {"data_dir", "fsync", "max_disk", "disk_policy"} <= set(names[len(theirs):])


def test_stats_settings_show_detail_dump_and_auth_switches(session):
    rows = stats(session, b"settings")
    assert (rows["stat_key_prefix"], rows["detail_enabled"]) == (":", "no")
    assert (rows["dump_enabled"], rows["auth_enabled_ascii"], rows["auth_enabled_sasl"]) == ("yes", "no", "no")


def test_only_me_counts_cmd_meta_as_in_memcached_1_6_18(session):
    session.feed(b"mn\r\nmg k v\r\nms k 1\r\na\r\nmd k\r\nma k\r\n")
    assert stats(session)["cmd_meta"] == "0"
    session.feed(b"me k\r\n")
    assert stats(session)["cmd_meta"] == "1"


def test_stats_reset_zeroes_cmd_meta(session):
    session.feed(b"me k\r\n")
    session.feed(b"stats reset\r\n")
    assert stats(session)["cmd_meta"] == "0"


def test_a_connection_that_uses_its_turn_counts_a_conn_yield(session):
    session.feed(b"version\r\n" * 3, max_commands=2)
    assert session.stopped_early
    session.feed()  # the third
    assert stats(session)["conn_yields"] == "1"


def test_connection_structures_is_the_most_connections_at_once_plus_the_listener(server, session):
    other = Session(server)
    other.close()
    assert stats(session)["connection_structures"] == "3"


def test_read_buf_counts_the_unparsed_input_of_sessions(server, session):
    before = stats(session)
    other = Session(server)
    other.feed(b"get somethi")
    after = stats(session)
    assert int(after["read_buf_count"]) == int(before["read_buf_count"]) + 1
    assert int(after["read_buf_bytes"]) == int(before["read_buf_bytes"]) + 11
    other.close()


def test_the_background_walk_counts_as_the_lru_crawler(session, store):
    session.feed(set_cmd(b"a", b"1"))
    while store.tick(1.0):
        pass
    rows = stats(session)
    assert rows["lru_crawler_starts"] == "1"
    assert rows["lru_crawler_running"] == "0"



def writes(session):
    rows = stats(session)
    return tuple(int(rows[n]) for n in ("writes_in_place", "writes_exchanged", "writes_renamed"))


def test_stats_count_a_first_write_as_renamed_an_overwrite_in_place_and_a_record_too_big_for_a_slot_as_exchanged(session):
    assert writes(session) == (0, 0, 0)
    session.feed(set_cmd(b"k", b"a"))  # no old file: a plain rename
    assert writes(session) == (0, 0, 1)
    session.feed(set_cmd(b"k", b"b"))  # a pwrite into the kept file's other slot
    assert writes(session) == (1, 0, 1)
    session.feed(set_cmd(b"k", b"c" * record.SLOT_MAX))  # no slot holds it: the exchange
    assert writes(session) == (1, 1, 1)


def test_stats_count_writes_by_the_exchange_where_writes_in_place_are_off(session, store):
    store.dir.in_place = False
    session.feed(set_cmd(b"k", b"a") + set_cmd(b"k", b"b") + set_cmd(b"k", b"c"))
    assert writes(session) == (0, 2, 1)


# == stats time and uptime when the wall clock steps ==============================
# memcached reports time as process_started + current_time, its monotonic
# seconds since start: a step of the wall clock moves neither time nor uptime.

WALL_STEPS = pytest.mark.parametrize("step", [3600, -3600], ids=["forward", "back"])


@WALL_STEPS
def test_stats_time_does_not_follow_a_wall_clock_step(stepped_session, stepped_clock, step):
    stepped_clock.run(5)
    stepped_clock.step(step)
    assert stats(stepped_session)["time"] == str(int(NOW) + 5)


@WALL_STEPS
def test_stats_uptime_counts_monotonic_seconds_across_a_wall_clock_step(stepped_session, stepped_clock, step):
    stepped_clock.run(5)
    stepped_clock.step(step)
    stepped_clock.run(2)
    assert stats(stepped_session)["uptime"] == "7"


# == stats items / slabs / sizes ================================================


def test_stats_items_of_an_empty_store_is_end(session):
    assert session.feed(b"stats items\r\n") == END


def test_stats_items_shows_one_class_in_memcached_names(session):
    session.feed(set_cmd(b"a", b"1") + set_cmd(b"b", b"22") + b"get a\r\n")
    reply = session.feed(b"stats items\r\n")
    names = [line.split()[1] for line in reply.split(b"\r\n") if line.startswith(b"STAT")]
    assert names == [b"items:1:" + n.encode() for n in stats_family.ITEMS_NAMES]
    rows = rows_of(reply)
    assert (rows["items:1:number"], rows["items:1:hits_to_cold"]) == ("2", "1")


def test_stats_items_age_is_the_idle_time_of_the_least_recently_used_item(session, clock):
    session.feed(set_cmd(b"a", b"1"))
    clock.advance(30)
    session.feed(set_cmd(b"b", b"1"))
    assert stats(session, b"items")["items:1:age"] == "30"


def test_stats_slabs_shows_one_class_of_whole_files(session, store):
    session.feed(set_cmd(b"a", b"1") + set_cmd(b"b", b"1"))
    rows = stats(session, b"slabs")
    assert rows["1:chunk_size"] == str(store.item_size_max)
    assert (rows["1:total_pages"], rows["1:used_chunks"], rows["1:free_chunks"]) == ("2", "2", "0")
    assert (rows["1:cmd_set"], rows["active_slabs"], rows["total_malloced"]) == ("2", "1", str(store.bytes))


def test_stats_slabs_of_an_empty_store_has_only_the_totals(session):
    assert session.feed(b"stats slabs\r\n") == b"STAT active_slabs 0\r\nSTAT total_malloced 0\r\nEND\r\n"


def test_stats_sizes_is_disabled_as_memcached_without_track_sizes(session):
    assert session.feed(b"stats sizes\r\n") == b"STAT sizes_status disabled\r\nEND\r\n"


# == stats conns ===================================================================


def attached(server, fd, port, unsent=lambda: 0):
    s = Session(server)
    s.attach(fd, ("127.0.0.1", port), ("127.0.0.1", 11211), unsent)
    return s


def test_stats_conns_lists_the_listener_then_each_connection_by_fd(server, session, clock):
    server.listener = (5, ("127.0.0.1", 11211))
    session.attach(9, ("127.0.0.1", 40000), ("127.0.0.1", 11211))
    other = attached(server, 7, 40001)
    clock.advance(4)
    assert session.feed(b"stats conns\r\n") == (
        b"STAT 5:addr tcp:127.0.0.1:11211\r\n"
        b"STAT 5:state conn_listening\r\n"
        b"STAT 5:secs_since_last_cmd 4\r\n"
        b"STAT 7:addr tcp:127.0.0.1:40001\r\n"
        b"STAT 7:listen_addr tcp:127.0.0.1:11211\r\n"
        b"STAT 7:state conn_new_cmd\r\n"
        b"STAT 7:secs_since_last_cmd 4\r\n"
        b"STAT 9:addr tcp:127.0.0.1:40000\r\n"
        b"STAT 9:listen_addr tcp:127.0.0.1:11211\r\n"
        b"STAT 9:state conn_parse_cmd\r\n"
        b"STAT 9:secs_since_last_cmd 0\r\n"
        b"END\r\n"
    )
    other.close()


@pytest.mark.parametrize(
    "fed, unsent, state",
    [
        (b"", 0, "conn_new_cmd"),
        (b"version\r\n", 0, "conn_read"),
        (b"get k", 0, "conn_read"),
        (b"set k 0 0 10\r\nabc", 0, "conn_nread"),
        (b"version\r\n", 100, "conn_mwrite"),
        (b"quit\r\n", 0, "conn_closing"),
    ],
    ids=["new", "waiting", "partial-line", "in-a-value", "unsent-replies", "quitting"],
)
def test_stats_conns_names_each_state_as_memcached(server, session, fed, unsent, state):
    other = attached(server, 7, 40001, lambda: unsent)
    other.feed(fed)
    assert stats(session, b"conns")["7:state"] == state
    other.close()


def test_a_closed_connection_leaves_stats_conns(server, session):
    other = attached(server, 7, 40001)
    other.close()
    assert "7:addr" not in stats(session, b"conns")


def test_stats_conns_shows_ipv6_addresses_in_brackets(server, session):
    session.attach(9, ("::1", 40000, 0, 0), ("::1", 11211, 0, 0))
    assert stats(session, b"conns")["9:addr"] == "tcp6:[::1]:40000"


def test_stats_conns_names_a_unix_socket_and_its_client_as_memcached(server, session):
    server.listener = (5, "/tmp/m.sock")
    session.attach(9, "", "/tmp/m.sock")
    rows = stats(session, b"conns")
    # memcached keeps no address for a unix client: its "?:<AF 0>"
    assert (rows["5:addr"], rows["9:addr"], rows["9:listen_addr"]) == (
        "unix:/tmp/m.sock", "?:<AF 0>", "unix:/tmp/m.sock"
    )


# == stats detail ==================================================================


def test_stats_detail_counts_gets_hits_sets_and_deletes_per_prefix(session):
    assert session.feed(b"stats detail on\r\n") == b"OK\r\n"
    session.feed(set_cmd(b"p:1", b"a") + b"get p:1\r\nget p:2 q:1 nopfx\r\ndelete p:1\r\n")
    assert session.feed(b"stats detail dump\r\n") == (
        b"PREFIX p get 2 hit 1 set 1 del 1\r\nPREFIX q get 1 hit 0 set 0 del 0\r\nEND\r\n"
    )


def test_stats_detail_is_off_by_default(session):
    session.feed(b"get p:1\r\n")
    assert session.feed(b"stats detail dump\r\n") == END


def test_stats_detail_off_stops_counting_and_keeps_the_counts(session):
    session.feed(b"stats detail on\r\nget p:1\r\n")
    assert session.feed(b"stats detail off\r\n") == b"OK\r\n"
    session.feed(b"get p:1\r\n")
    assert session.feed(b"stats detail dump\r\n") == b"PREFIX p get 1 hit 0 set 0 del 0\r\nEND\r\n"


def test_stats_detail_counts_gets_and_gats_and_every_classic_storage_command(session):
    session.feed(b"stats detail on\r\n")
    session.feed(b"gets p:1\r\ngat 10 p:1\r\nadd p:1 0 0 1\r\na\r\ncas p:1 0 0 1 1\r\nb\r\nappend p:1 0 0 1\r\nc\r\n")
    assert session.feed(b"stats detail dump\r\n") == b"PREFIX p get 2 hit 0 set 3 del 0\r\nEND\r\n"


def test_stats_detail_does_not_count_meta_commands(session):
    session.feed(b"stats detail on\r\nmg p:1 v\r\nms p:1 1\r\na\r\nmd p:1\r\n")
    assert session.feed(b"stats detail dump\r\n") == END


def test_stats_detail_counts_a_delete_that_misses(session):
    session.feed(b"stats detail on\r\ndelete p:1\r\n")
    assert session.feed(b"stats detail dump\r\n") == b"PREFIX p get 0 hit 0 set 0 del 1\r\nEND\r\n"


def test_stats_detail_uses_the_delimiter_of_D(server, session):
    server.settings.prefix_delimiter = b"/"
    session.feed(b"stats detail on\r\nget a/b c:d\r\n")
    assert session.feed(b"stats detail dump\r\n") == b"PREFIX a get 1 hit 0 set 0 del 0\r\nEND\r\n"


def test_stats_reset_clears_the_prefix_counts(session):
    session.feed(b"stats detail on\r\nget p:1\r\nstats reset\r\n")
    assert session.feed(b"stats detail dump\r\n") == END


@pytest.mark.parametrize("line", [b"stats detail", b"stats detail bogus"])
def test_stats_detail_without_on_off_or_dump_is_its_usage(session, line):
    assert session.feed(line + b"\r\n") == b"CLIENT_ERROR usage: stats detail on|off|dump\r\n"


def test_stats_detail_keeps_a_bounded_number_of_prefixes(session, monkeypatch):
    monkeypatch.setattr(stats_family.PrefixStats, "MAX", 2)
    session.feed(b"stats detail on\r\nget a:1 b:1 c:1\r\n")
    assert session.feed(b"stats detail dump\r\n").count(b"PREFIX") == 2


def test_X_leaves_stats_detail_dump_as_memcached_does(server, session):
    server.settings.dump_enabled = False
    session.feed(b"stats detail on\r\nget p:1\r\n")
    assert session.feed(b"stats detail dump\r\n") == b"PREFIX p get 1 hit 0 set 0 del 0\r\nEND\r\n"


# == --max-disk =======================================================================


# room for exactly four records of a 2-byte key and a 200-byte value
QUOTA = 4 * record.file_size(2, 200)


@pytest.fixture
def quota_store(tmp_path, clock, request):
    policy = getattr(request, "param", "refuse")
    s = Store(str(tmp_path / "quota"), clock=clock, max_disk=QUOTA, disk_policy=policy)
    finish_scan(s)
    yield s
    s.close()


@pytest.fixture
def quota_session(quota_store, clock):
    s = Session(Server(quota_store, Settings(), clock=clock))
    yield s
    s.close()


NO_MEMORY = b"SERVER_ERROR out of memory storing object\r\n"


def fill(session, n, size=200):
    return [session.feed(set_cmd(b"k%d" % i, b"v" * size)) for i in range(n)]


def test_a_write_past_max_disk_is_refused_as_memcached_M(quota_session, quota_store):
    assert fill(quota_session, 4) == [STORED] * 4
    assert quota_session.feed(set_cmd(b"k9", b"v" * 200)) == NO_MEMORY
    assert quota_store.bytes <= QUOTA
    rows = stats(quota_session)
    assert (rows["store_no_memory"], rows["persist_errors"], rows["evictions"]) == ("1", "0", "0")


def test_a_refused_set_drops_the_old_value_as_memcached(quota_session):
    fill(quota_session, 4)
    assert quota_session.feed(set_cmd(b"k0", b"v" * 600)) == NO_MEMORY
    assert quota_session.feed(b"get k0\r\n") == END


def test_a_refused_append_keeps_the_old_value(quota_session):
    fill(quota_session, 4)
    assert quota_session.feed(b"append k0 0 0 300\r\n" + b"x" * 300 + b"\r\n") == NO_MEMORY
    assert quota_session.feed(b"get k0\r\n").startswith(b"VALUE k0 0 200\r\n")


def test_an_overwrite_that_does_not_grow_fits_at_the_quota(quota_session):
    fill(quota_session, 4)
    assert quota_session.feed(set_cmd(b"k0", b"w" * 200)) == STORED


def test_deletes_make_room_again(quota_session):
    fill(quota_session, 4)
    quota_session.feed(b"delete k0\r\n")
    assert quota_session.feed(set_cmd(b"k9", b"v" * 200)) == STORED


@pytest.mark.parametrize("quota_store", ["evict"], indirect=True)
def test_the_evict_policy_removes_files_to_make_room_and_counts_evictions(quota_session, quota_store):
    fill(quota_session, 4)
    assert quota_session.feed(set_cmd(b"k9", b"v" * 200)) == STORED
    assert quota_store.bytes <= QUOTA
    rows = stats(quota_session)
    assert rows["evictions"] == "1"
    assert rows["curr_items"] == "4"
    assert quota_session.feed(b"get k9\r\n").startswith(b"VALUE k9")


@pytest.mark.parametrize("quota_store", ["evict"], indirect=True)
def test_the_evict_policy_removes_the_least_recently_written_of_a_bucket(quota_store, clock):
    # keys whose files share a bucket: the older write goes first
    from store.files import key_hash

    by_bucket = {}
    for i in range(20000):
        key = b"s%d" % i
        by_bucket.setdefault(key_hash(key)[:4], []).append(key)
        if len(by_bucket[key_hash(key)[:4]]) == 3:
            break
    old, new, third = by_bucket[key_hash(key)[:4]]
    quota_store.store(Mode.SET, old, 0, 0, b"v" * 900)
    clock.advance(1)
    quota_store.store(Mode.SET, new, 0, 0, b"v" * 900)
    path = quota_store.dir.locate(old)[1]
    import os

    os.utime(path, (NOW - 100, NOW - 100))
    quota_store.store(Mode.SET, third, 0, 0, b"v" * 900)
    assert quota_store.peek(old) is None
    assert quota_store.peek(new) is not None


def test_settings_show_the_quota(quota_session):
    rows = stats(quota_session, b"settings")
    assert (rows["max_disk"], rows["disk_policy"]) == (str(QUOTA), "refuse")


def test_every_new_stats_line_is_well_formed(session):
    session.feed(set_cmd(b"a", b"1"))
    for sub in (b"", b"items", b"slabs", b"sizes", b"settings"):
        reply = session.feed(b"stats" + (b" " + sub if sub else b"") + b"\r\n")
        assert re.fullmatch(rb"(STAT [a-z0-9_:]+ [^\r\n ]+\r\n)+END\r\n", reply), (sub, reply)
