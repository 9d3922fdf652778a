"""Differential, for what tools parse: the names and value formats (not the
values) of `stats` and `stats settings` against the real memcached 1.6.18 for
every name both have, in the same order; the line formats of `stats items`,
`slabs`, `sizes`, `conns`; and the exact replies of `stats detail`,
`stats cachedump`'s errors and -Y authentication.

Authentication steps are sent one at a time and read to their reply:
memcached, before a client is authenticated, keeps only the last reply of
what one read brought (a quirk we do not imitate). Needs memcached; skips
without it.
"""

import os
import re
import stat

import pytest

pytestmark = pytest.mark.timeout(60)


def stat_rows(conn, sub=b""):
    reply = conn.exchange(b"stats" + (b" " + sub if sub else b"") + b"\r\n", until=b"END\r\n")
    return [tuple(line.split(" ", 2)[1:]) for line in reply.decode().splitlines() if line.startswith("STAT ")]


def shape(value):
    if re.fullmatch(r"-?\d+", value):
        return "integer"
    if re.fullmatch(r"\d+\.\d+", value):
        return "decimal %d" % len(value.split(".")[1])
    return "word"


@pytest.fixture(scope="module")
def pair(module_servers):
    return module_servers.memcached(), module_servers.mclite()


def both(pair, connect, data=b""):
    conns = [connect(server) for server in pair]
    for c in conns:
        if data:
            c.exchange(data + b"version\r\n", until=b"VERSION ")
            c.read_until()
    return conns


@pytest.mark.parametrize("sub", [b"", b"settings"], ids=["general", "settings"])
def test_shared_names_have_memcached_formats_and_order(pair, connect, sub):
    theirs, ours = (dict(stat_rows(c, sub)) for c in both(pair, connect, b"set fmt 0 0 1\r\na\r\n"))
    shared = [name for name in theirs if name in ours]
    assert len(shared) > (60 if not sub else 20)
    assert [n for n in ours if n in theirs] == shared, "same relative order"
    assert {n: shape(ours[n]) for n in shared} == {n: shape(theirs[n]) for n in shared}


def test_the_names_tools_read_are_all_there(pair, connect):
    theirs, ours = (dict(stat_rows(c)) for c in both(pair, connect))
    # what memcached-tool, pymemcache's stats() and memcached_exporter read
    needed = (
        "pid uptime time version libevent pointer_size rusage_user rusage_system max_connections "
        "curr_connections total_connections connection_structures cmd_get cmd_set cmd_flush "
        "cmd_touch cmd_meta get_hits get_misses get_expired get_flushed delete_misses delete_hits "
        "incr_misses incr_hits decr_misses decr_hits cas_misses cas_hits cas_badval touch_hits "
        "touch_misses store_too_large store_no_memory auth_cmds auth_errors bytes_read bytes_written "
        "limit_maxbytes accepting_conns listen_disabled_num threads conn_yields hash_power_level "
        "hash_bytes hash_is_expanding bytes curr_items total_items evictions reclaimed"
    ).split()
    assert [n for n in needed if n not in theirs] == []
    assert [n for n in needed if n not in ours] == []


def test_stats_items_has_memcached_s_names_for_a_class(pair, connect):
    theirs, ours = (stat_rows(c, b"items") for c in both(pair, connect, b"set itm 0 0 1\r\na\r\n"))
    assert [n for n, _ in ours] == [n for n, _ in theirs if n.startswith("items:1:")]
    assert all(shape(v) == "integer" for _, v in ours)


def test_stats_slabs_has_memcached_s_names_for_a_class(pair, connect):
    theirs, ours = (stat_rows(c, b"slabs") for c in both(pair, connect, b"set slb 0 0 1\r\na\r\n"))
    pick = lambda rows: [n for n, _ in rows if n.startswith("1:") or ":" not in n]  # noqa: E731
    assert pick(ours) == pick(theirs)
    assert all(shape(v) == "integer" for _, v in ours)


def test_stats_sizes_is_the_same(pair, connect):
    theirs, ours = (stat_rows(c, b"sizes") for c in both(pair, connect))
    assert ours == theirs


def test_stats_conns_lines_have_memcached_s_shape(pair, connect):
    line = re.compile(r"\d+:(addr tcp:127\.0\.0\.1:\d+|listen_addr tcp:127\.0\.0\.1:\d+|state conn_[a-z_]+|"
                      r"secs_since_last_cmd \d+)")
    for server in pair:
        idle = connect(server)
        idle.exchange(b"version\r\n")
        rows = stat_rows(connect(server), b"conns")
        assert all(line.fullmatch(" ".join(row)) for row in rows), rows
        states = sorted(v for n, v in rows if n.endswith(":state"))
        assert states == ["conn_listening", "conn_parse_cmd", "conn_read"], server


DETAIL = (
    b"stats detail on\r\nset dp:1 0 0 1\r\na\r\nget dp:1\r\nget dp:2 dq:1 nopfx\r\ndelete dp:1\r\n"
    b"gets dq:1\r\nmg dp:3 v\r\nstats detail off\r\nget dp:1\r\n"
)


def test_stats_detail_dump_counts_as_memcached(pair, connect):
    dumps = []
    for c in both(pair, connect, DETAIL):
        reply = c.exchange(b"stats detail dump\r\n", until=b"END\r\n")
        dumps.append(sorted(reply.split(b"\r\n")))
    assert dumps[0] == dumps[1]


@pytest.mark.parametrize(
    "line",
    [b"stats detail", b"stats detail bogus", b"stats cachedump 1", b"stats cachedump x 1",
     b"stats cachedump 99 1", b"stats cachedump 2 1", b"stats bogus"],
)
def test_stats_errors_are_memcached_s(pair, connect, line):
    replies = [c.exchange(line + b"\r\nversion\r\n", until=b"VERSION ") for c in both(pair, connect)]
    assert replies[0] == replies[1]


def test_stats_cachedump_lines_have_memcached_s_format(pair, connect):
    # memcached lists only items its LRU maintainer has moved out of the hot
    # LRU, so which items appear is a matter of timing; the line format is not
    item_line = re.compile(rb"ITEM \S+ \[\d+ b; \d+ s\]")
    replies = []
    for c in both(pair, connect, b"set cdump_key 0 0 5\r\nhello\r\n"):
        reply = c.exchange(b"stats cachedump 1 0\r\n", until=b"END\r\n")
        lines = reply.split(b"\r\n")[:-2]
        assert all(item_line.fullmatch(line) for line in lines), lines
        replies.append(lines)
    assert b"ITEM cdump_key [5 b; 0 s]" in replies[1]


# -- -Y ------------------------------------------------------------------------------

AUTH_STEPS = [
    [b"get a\r\n", b"version\r\n"],
    [b"set a 0 0 1\r\nx\r\n", b"set a 0 0\r\n"],
    [b"set a 0 0 10\r\nalice nope\r\n", b"set a 0 0 12\r\nalice secret\r\n", b"version\r\n"],
    [b"set a 0 0 13\r\nalice secret \r\n", b"set a 0 0 7\r\nbob pw2\r\n", b"get a\r\n"],
    [b"set a 0 0 12 noreply\r\nalice secret\r\n", b"mn\r\n"],
    [b"add a 0 0 12\r\nalice secret\r\n"],
]


@pytest.fixture(scope="module")
def auth_pair(module_servers, tmp_path_factory):
    path = tmp_path_factory.mktemp("auth") / "users"
    path.write_text("alice:secret\nbob:pw2\n")
    return module_servers.memcached(["-Y", str(path)], auth=b"alice secret"), module_servers.mclite(["-Y", str(path)])


@pytest.mark.parametrize("steps", AUTH_STEPS, ids=lambda steps: steps[0][:24].decode().strip())
def test_authentication_replies_are_memcached_s(auth_pair, connect, steps):
    replies = []
    for server in auth_pair:
        c = connect(server)
        got = []
        for step in steps:
            c.send(step)
            got.append(c.read_until(b"\r\n", 2 if step.startswith(b"get a\r\n") and got and got[-1] == b"STORED\r\n" else 1))
        replies.append(got)
    assert [[r.replace(b"1.6.18-lite", b"1.6.18") for r in rs] for rs in replies[1:]] == replies[:1]


def test_auth_counters_count_as_memcached(auth_pair, connect):
    counted = []
    for server in auth_pair:
        c = connect(server)
        for step in (b"set a 0 0 10\r\nalice nope\r\n", b"set a 0 0 1\r\nx\r\n", b"set a 0 0 12\r\nalice secret\r\n"):
            c.send(step)
            c.read_until()
        c.exchange(b"stats reset\r\n")
        c2 = connect(server)
        for step in (b"set a 0 0 10\r\nalice nope\r\n", b"set a 0 0 12\r\nalice secret\r\n"):
            c2.send(step)
            c2.read_until()
        rows = dict(stat_rows(c2))
        counted.append((rows["auth_cmds"], rows["auth_errors"]))
    assert counted[0] == counted[1] == ("2", "1")


def test_stats_settings_say_ascii_auth_is_on_as_memcached(auth_pair, connect):
    values = []
    for server in auth_pair:
        c = connect(server)
        c.send(b"set a 0 0 12\r\nalice secret\r\n")
        c.read_until()
        values.append(dict(stat_rows(c, b"settings"))["auth_enabled_ascii"])
    assert values[0] == values[1]  # memcached shows the file's path


# -- -s and -a: the unix socket's settings ---------------------------------------------


def test_stats_settings_show_the_unix_socket_and_mask_as_memcached(start_memcached, start_mclite, connect, unix_path):
    # the same path for both (domain_socket is the path), one after the other:
    # memcached leaves its file at exit, and ours replaces it as stale
    rows = []
    for start in (lambda: start_memcached(["-a", "0770"], unix_socket=unix_path),
                  lambda: start_mclite(extra_args=["-a", "0770"], unix_socket=unix_path)):
        server = start()
        settings = dict(stat_rows(connect(server), b"settings"))
        rows.append((settings["domain_socket"], settings["umask"], stat.S_IMODE(os.lstat(unix_path).st_mode)))
        server.close()
    assert rows[0] == rows[1] == (str(unix_path), "770", 0o770)
