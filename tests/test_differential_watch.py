"""Differential, `watch`: the same command streams to memcached 1.6.18 and
to memcached-lite while a watcher of fetchers, mutations and connevents
listens on each; the lines compared with what differs by run normalised
(ts, gid, cfd, the client's port). Needs memcached; skips without it."""

import re
import socket

import pytest

pytestmark = pytest.mark.timeout(60)

STREAMS = b"watch fetchers mutations connevents\r\n"
CASES = {
    "get_miss": b"get w1\r\n",
    "set_then_get": b"set w2 5 0 3\r\nbar\r\nget w2\r\n",
    "set_with_a_ttl": b"set w3 0 100 2\r\nab\r\n",
    "add_over_a_key": b"set w4 0 0 1\r\na\r\nadd w4 0 0 1\r\nx\r\n",
    "replace_of_a_missing_key": b"replace w5 0 0 1\r\nx\r\n",
    "append": b"set w6 0 0 3\r\nbar\r\nappend w6 0 0 1\r\nx\r\n",
    "prepend": b"set w7 0 0 3\r\nbar\r\nprepend w7 0 0 1\r\nx\r\n",
    "cas_mismatch": b"set w8 0 0 1\r\na\r\ncas w8 0 0 1 999999\r\nx\r\n",
    "cas_of_a_missing_key": b"cas w9 0 0 1 1\r\nx\r\n",
    "incr_non_numeric": b"set w10 0 0 1\r\na\r\nincr w10 1\r\n",
    "incr": b"set w11 0 0 1\r\n5\r\nincr w11 1\r\ndecr w11 1\r\n",
    "delete": b"set w12 0 0 1\r\na\r\ndelete w12\r\ndelete w12\r\n",
    "touch": b"set w13 0 0 1\r\na\r\ntouch w13 10\r\ntouch w14 10\r\n",
    "gets_and_gat": b"set w15 0 0 2\r\nab\r\ngets w15\r\ngat 5 w15\r\n",
    "multi_get": b"set w16 0 0 1\r\na\r\nget w16 w17 w16\r\n",
    "meta": b"ms w18 2\r\nhi\r\nmg w18 v\r\nmd w18\r\nmg w18 v\r\n",
    "a_bigger_value_s_class": b"set w19 0 0 1000\r\n" + b"x" * 1000 + b"\r\nget w19\r\n",
    "a_key_to_encode": b"get w%20\xff\r\n",
    "the_longest_key_encoded": b"set " + b"#" * 250 + b" 0 0 9\r\nmemcached\r\n",
    # memcached 1.6.18 passes the fd as the class of a too-large store, then logs the set's drop lookup
    "a_too_large_set": b"set w20 0 0 2000000\r\n" + b"x" * 2000000 + b"\r\n",
}


def normalised(lines):
    out = []
    for line in lines.decode().splitlines():
        line = re.sub(r"^ts=\d+\.\d+ gid=\d+ ", "", line)
        if "status=too_large" in line:
            line = re.sub(r" clsid=\d+", " clsid=N", line)  # (the fd, in memcached's call)
        # a negative ttl is memcached's clock's (its uptime + 62 s): the sign is what must agree
        line = re.sub(r" ttl=(\d+)", lambda m: " ttl=-" if int(m.group(1)) >= 1 << 31 else m.group(0), line)
        line = re.sub(r" cfd=-?\d+", " cfd=N", line)  # (memcached's too-large store: whatever its stack held)
        out.append(re.sub(r" rport=\d+", " rport=P", line))
    return out


@pytest.fixture(scope="module")
def pair(module_servers):
    return module_servers.memcached(), module_servers.mclite()


def watched(server, connect, data):
    """The lines a watcher gets while one client sends `data` and leaves."""
    watcher = connect(server)
    assert watcher.exchange(STREAMS) == b"OK\r\n"
    client = connect(server)
    port = client.sock.getsockname()[1]
    client.exchange(data + b"version\r\n", until=b"VERSION ")
    client.read_until()
    client.close()
    lines = watcher.read_until(b"type=conn_close rip=127.0.0.1 rport=%d " % port)
    lines += watcher.read_until(b"\n")
    watcher.close()
    # memcached's logger thread may deliver an earlier test's close (its
    # watcher's, noticed late) to this watcher: connection lines of other
    # ports are not this client's
    mine = b"\n".join(line for line in lines.split(b"\n")
                      if b" type=conn_" not in line or b" rport=%d " % port in line)
    return normalised(mine)


@pytest.mark.parametrize("data", CASES.values(), ids=CASES.keys())
def test_the_same_lines_as_memcached(pair, connect, data):
    theirs, ours = (watched(server, connect, data) for server in pair)
    assert ours == theirs


@pytest.mark.parametrize("line", [b"watch bogus\r\n", b"watch fetchers bogus\r\n", b"watch\r\nwatch\r\n"])
def test_the_same_refusals_as_memcached(pair, connect, line):
    theirs, ours = (connect(server).exchange(line) for server in pair)
    assert ours == theirs


def test_pipelined_commands_before_watch_are_refused_as_memcached(pair, connect):
    theirs, ours = (connect(server).exchange(b"version\r\nwatch\r\n", count=2) for server in pair)
    assert re.sub(rb"VERSION \S+", b"VERSION", ours) == re.sub(rb"VERSION \S+", b"VERSION", theirs)


def test_a_negative_exptime_s_ttl_wraps_as_memcached_s(pair, connect):
    # (and the get of that item, dead at once, is expired: no lookup of the watcher's reclaimed it)
    theirs, ours = (watched(server, connect, b"set w21 0 -1 1\r\na\r\nget w21\r\n") for server in pair)
    assert ours == theirs


@pytest.mark.parametrize(
    "data, replies",
    [
        (b"set w22 0 0 1 noreply\r\na\r\nwatch\r\n", 1),  # a noreply command's response is still stacked
        (b"watch fetchers noreply\r\nversion\r\n", 1),  # silent, and not attached
    ],
    ids=["after_a_noreply_command", "watch_noreply"],
)
def test_noreply_around_watch_as_memcached(pair, connect, data, replies):
    theirs, ours = (connect(server).exchange(data, count=replies) for server in pair)
    assert re.sub(rb"VERSION \S+", b"VERSION", ours) == re.sub(rb"VERSION \S+", b"VERSION", theirs)


def test_a_cas_under_dash_c_is_logged_as_memcached_s(start_memcached, start_mclite, connect):
    # memcached looks the key up (a fetch) and no cas matches (exists / not_found)
    data = b"set w23 0 0 1\r\na\r\ncas w23 0 0 1 5\r\nb\r\ncas w24 0 0 1 5\r\nb\r\n"
    theirs, ours = (watched(server, connect, data)
                    for server in (start_memcached(["-C"]), start_mclite(extra_args=["-C"])))
    assert ours == theirs


# -- -o watcher_logbuf_size ------------------------------------------------------


@pytest.mark.parametrize("value", [None, "8", "0", "4194305"], ids=["default", "8", "0", "wraps"])
def test_stats_settings_shows_watcher_logbuf_size_as_memcached(start_memcached, start_mclite, connect, value):
    argv = [] if value is None else ["-o", "watcher_logbuf_size=" + value]
    theirs, ours = (connect(server).stat(b"watcher_logbuf_size", b"settings")
                    for server in (start_memcached(argv), start_mclite(extra_args=argv)))
    assert ours == theirs


def test_under_a_zero_watcher_logbuf_size_a_watcher_gets_nothing_as_memcached(start_memcached, start_mclite,
                                                                            connect):
    # memcached writes even the OK into the watcher's buffer: nothing fits, every line is skipped
    argv = ["-o", "watcher_logbuf_size=0"]
    for server in (start_memcached(argv), start_mclite(extra_args=argv)):
        watcher, client = connect(server), connect(server)
        watcher.send(b"watch fetchers\r\n")
        client.stats_reach(1, b"log_watchers")
        client.exchange(b"get z1 z2 z3\r\n", until=b"END\r\n")
        client.stats_reach(3, b"log_watcher_skipped", b"log_watcher_sent")
        assert (client.stat(b"log_watcher_skipped"), client.stat(b"log_watcher_sent")) == (b"3", b"0")
        watcher.sock.shutdown(socket.SHUT_WR)  # both close a watcher whose client hung up
        assert watcher.read_until_closed() == b"", server
