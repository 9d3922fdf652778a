"""The dumps family: `lru_crawler metadump`, one line per live item in
memcached 1.6.18's format, ended by END, produced a bucket at a time so a dump
never stalls the server; `stats cachedump`; and -X, which refuses both.

Session tests with a fake clock (no socket, no sleep), then the store's
enumeration it rests on. The byte formats were checked against memcached
1.6.18 (`memcached -t 1 -U 0`); test_differential_metadump.py compares them
with it on every run.
"""

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from commands import base  # noqa: E402
from handlers import Session  # noqa: E402
from store import Mode, Store  # noqa: E402

from replies import END, ERROR, VERSION  # noqa: E402
from sessions import set_cmd, stats  # noqa: E402

NOW = 1_700_000_000.0
BADCLASS = b"BADCLASS invalid class id\r\n"
NOTSTARTED = b"NOTSTARTED no items to crawl\r\n"
# `memcached -vv` 1.6.18 with default settings: its slab chunk sizes
MEMCACHED_CHUNK_SIZES = [
    96, 120, 152, 192, 240, 304, 384, 480, 600, 752, 944, 1184, 1480, 1856, 2320, 2904, 3632,
    4544, 5680, 7104, 8880, 11104, 13880, 17352, 21696, 27120, 33904, 42384, 52984, 66232,
    82792, 103496, 129376, 161720, 202152, 252696, 315872, 394840, 524288,
]

pytestmark = pytest.mark.usefixtures("no_fsync")


@pytest.fixture
def store(tmp_path, clock):
    s = Store(str(tmp_path / "data"), clock=clock)
    yield s
    s.close()


def put(session, key, data=b"v", flags=0, exptime=0):
    reply = session.feed(b"set %s %d %d %d\r\n%s\r\n" % (key, flags, exptime, len(data), data))
    assert reply == b"STORED\r\n", reply


def dump_lines(session, arg=b"all"):
    reply = session.feed(b"lru_crawler metadump " + arg + b"\r\n")
    assert reply.endswith(END), reply
    return reply[: -len(END)].split(b"\n")[:-1]


def fields(line):
    return dict(word.split(b"=", 1) for word in line.split(b" "))


# -- the reply -----------------------------------------------------------------


def test_an_empty_store_dumps_just_end(session):
    assert session.feed(b"lru_crawler metadump all\r\n") == END


def test_an_item_is_one_line_in_memcached_format_ending_in_a_bare_newline(session):
    put(session, b"a", b"x", flags=5)
    reply = session.feed(b"lru_crawler metadump all\r\n")
    assert reply == b"key=a exp=-1 la=%d cas=1 fetch=no cls=1 size=65\nEND\r\n" % NOW


def test_every_live_item_is_dumped_once(session):
    keys = {b"k%d" % i for i in range(300)}
    for key in keys:
        put(session, key)
    dumped = [fields(line)[b"key"] for line in dump_lines(session)]
    assert sorted(dumped) == sorted(keys)


def test_keys_are_url_encoded_as_memcached_does(session):
    put(session, b"b%20c")
    put(session, b"\xff\x01z")
    put(session, b"az-AZ.09_~")
    keys = {fields(line)[b"key"] for line in dump_lines(session)}
    assert keys == {b"b%2520c", b"%FF%01z", b"az-AZ.09_~"}


def test_an_item_read_since_its_write_is_fetched_with_the_read_as_last_access(session, clock):
    put(session, b"r")
    clock.now += 30
    session.feed(b"get r\r\n")
    f = fields(dump_lines(session)[0])
    assert (f[b"fetch"], f[b"la"]) == (b"yes", b"%d" % (NOW + 30))


def test_an_item_never_read_is_not_fetched_and_last_accessed_when_written(session):
    put(session, b"w")
    f = fields(dump_lines(session)[0])
    assert (f[b"fetch"], f[b"la"]) == (b"no", b"%d" % NOW)


def test_exp_is_the_absolute_expiry_time(session):
    put(session, b"t", exptime=100)
    assert fields(dump_lines(session)[0])[b"exp"] == b"%d" % (NOW + 100)


def test_exp_of_an_item_that_never_expires_is_minus_one(session):
    put(session, b"t", exptime=0)
    assert fields(dump_lines(session)[0])[b"exp"] == b"-1"


def test_size_is_memcached_item_size_with_four_bytes_more_for_flags(session):
    put(session, b"key", b"x" * 10, flags=0)
    put(session, b"kez", b"x" * 10, flags=1)
    sizes = {fields(line)[b"key"]: fields(line)[b"size"] for line in dump_lines(session)}
    assert sizes == {b"key": b"72", b"kez": b"76"}


def test_cls_is_the_slab_class_memcached_would_use(session):
    put(session, b"mid", b"y" * 2000)
    assert fields(dump_lines(session)[0])[b"cls"] == b"15"


def test_the_slab_classes_are_memcached_default_chunk_sizes():
    assert base.SLAB_SIZES == MEMCACHED_CHUNK_SIZES


def test_an_item_larger_than_the_largest_chunk_is_in_the_largest_class():
    assert base.slab_class(600_062) == 39


def test_expired_items_are_left_out(session, clock):
    put(session, b"short", exptime=10)
    put(session, b"long", exptime=1000)
    clock.now += 10
    assert [fields(line)[b"key"] for line in dump_lines(session)] == [b"long"]


def test_flushed_items_are_left_out(session):
    put(session, b"old")
    assert session.feed(b"flush_all\r\n") == b"OK\r\n"
    put(session, b"new")
    assert [fields(line)[b"key"] for line in dump_lines(session)] == [b"new"]


def test_hash_dumps_every_item_like_all(session):
    put(session, b"a")
    put(session, b"b")
    assert sorted(dump_lines(session, b"hash")) == sorted(dump_lines(session, b"all"))


def test_a_class_list_dumps_only_items_of_those_classes(session):
    put(session, b"small")
    put(session, b"mid", b"y" * 2000)
    assert [fields(line)[b"key"] for line in dump_lines(session, b"15")] == [b"mid"]
    assert len(dump_lines(session, b"1,15")) == 2


def test_a_class_with_no_items_dumps_just_end(session):
    put(session, b"small")
    assert session.feed(b"lru_crawler metadump 63\r\n") == END


# -- errors, as memcached 1.6.18 answers them -------------------------------


@pytest.mark.parametrize("arg", [b"bogus", b"0", b"64", b"-1", b"1,x", b"ALL"])
def test_a_bad_class_is_badclass(session, arg):
    assert session.feed(b"lru_crawler metadump " + arg + b"\r\n") == BADCLASS


def test_a_class_list_of_only_commas_is_notstarted(session):
    assert session.feed(b"lru_crawler metadump ,\r\n") == NOTSTARTED


@pytest.mark.parametrize(
    "line",
    [b"lru_crawler", b"lru_crawler metadump", b"lru_crawler metadump all extra", b"lru_crawler bogus",
     b"lru_crawler metadump a b"],
)
def test_a_malformed_lru_crawler_command_is_error(session, line):
    assert session.feed(line + b"\r\n") == ERROR


# -- a slice at a time ----------------------------------------------------------


def test_a_dump_pauses_between_buckets_at_the_command_budget(session):
    for i in range(50):
        put(session, b"k%d" % i)
    first = session.feed(b"lru_crawler metadump all\r\n", max_commands=20)
    assert session.stopped_early
    assert not first.endswith(END)


def test_a_paused_dump_resumes_and_ends_with_every_item(session):
    for i in range(50):
        put(session, b"k%d" % i)
    reply = session.feed(b"lru_crawler metadump all\r\n", max_commands=20)
    turns = 1
    while session.stopped_early:
        reply += session.feed(b"", max_commands=20)
        turns += 1
    assert reply.endswith(END)
    assert reply.count(b"\n") == 51
    assert turns > 100  # 65,536 buckets at 20 a turn, empty ones included


def test_commands_after_a_dump_are_answered_after_its_end(session):
    put(session, b"a")
    reply = session.feed(b"lru_crawler metadump all\r\nversion\r\n")
    assert reply.endswith(END + VERSION)


def test_a_dump_pauses_at_the_output_limit(session):
    for i in range(200):
        put(session, b"key-%03d" % i)
    reply = session.feed(b"lru_crawler metadump all\r\n", limit=500)
    assert session.stopped_early
    assert 500 <= len(reply) < 500 + 4096  # one bucket past the limit at most


def test_an_item_written_by_another_client_during_a_paused_dump_keeps_the_reply_whole(session, store, clock):
    other = Session(session.server)
    put(session, b"a")
    reply = session.feed(b"lru_crawler metadump all\r\n", max_commands=1)
    put(other, b"b")
    while session.stopped_early:
        reply += session.feed(b"", max_commands=1000)
    assert reply.endswith(END)
    assert b"key=a " in reply


# -- stats cachedump and -X -----------------------------------------------------


def test_stats_cachedump_lists_items_in_memcached_format(session):
    session.feed(set_cmd(b"forever", b"hello") + set_cmd(b"later", b"abc", exptime=100))
    reply = session.feed(b"stats cachedump 1 0\r\n")
    assert sorted(reply.split(b"\r\n")[:-2]) == [
        b"ITEM forever [5 b; 0 s]",
        b"ITEM later [3 b; %d s]" % (int(NOW) + 100),
    ]
    assert reply.endswith(END)


def test_stats_cachedump_stops_at_its_limit(session):
    session.feed(b"".join(set_cmd(b"k%d" % i, b"v") for i in range(5)))
    assert session.feed(b"stats cachedump 1 2\r\n").count(b"ITEM ") == 2


def test_stats_cachedump_leaves_out_dead_items(session, clock):
    session.feed(set_cmd(b"brief", b"v", exptime=1) + set_cmd(b"gone", b"v") + b"delete gone\r\n")
    clock.advance(2)
    assert session.feed(b"stats cachedump 1 0\r\n") == END


def test_stats_cachedump_of_another_class_is_empty(session):
    session.feed(set_cmd(b"k", b"v"))
    assert session.feed(b"stats cachedump 2 10\r\n") == END


@pytest.mark.parametrize(
    "line, reply",
    [
        (b"stats cachedump 1", b"CLIENT_ERROR bad command line\r\n"),
        (b"stats cachedump x 1", b"CLIENT_ERROR bad command line format\r\n"),
        (b"stats cachedump 1 x", b"CLIENT_ERROR bad command line format\r\n"),
        (b"stats cachedump 99 1", b"CLIENT_ERROR Illegal slab id\r\n"),
    ],
)
def test_stats_cachedump_errors_are_memcached_s(session, line, reply):
    assert session.feed(line + b"\r\n") == reply


def test_X_refuses_stats_cachedump(server, session):
    server.settings.dump_enabled = False
    session.feed(set_cmd(b"k", b"v"))
    assert session.feed(b"stats cachedump 1 1\r\n") == b"CLIENT_ERROR stats cachedump not allowed\r\n"
    assert stats(session, b"settings")["dump_enabled"] == "no"


def test_X_refuses_lru_crawler_metadump_as_memcached_does(server, session):
    server.settings.dump_enabled = False
    session.feed(set_cmd(b"k", b"v"))
    assert session.feed(b"lru_crawler metadump all\r\n") == b"ERROR metadump not allowed\r\n"
    assert session.feed(b"lru_crawler metadump\r\n") == b"ERROR\r\n"


# -- the store's enumeration ----------------------------------------------------


def test_live_heads_yields_once_per_bucket(store):
    assert sum(1 for _ in store.live_heads()) == 256  # no item: no bucket folders


def test_live_heads_gives_each_item_header_without_its_value(store):
    store.store(Mode.SET, b"k", 7, 0, b"value")
    (head,) = [h for bucket in store.live_heads() for h in bucket]
    assert (head.key, head.flags, head.exptime, head.value_len, head.stored) == (b"k", 7, 0, 5, NOW)


def test_live_heads_skips_a_corrupt_file_and_leaves_it_to_the_walk(store):
    store.store(Mode.SET, b"k", 0, 0, b"value")
    _, path = store.dir.locate(b"k")
    with open(path, "r+b") as f:
        f.write(b"JUNK")
    assert [h for bucket in store.live_heads() for h in bucket] == []
    assert os.path.exists(path)
