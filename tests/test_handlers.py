"""The protocol session: the command line and its errors (word counts, keys,
numbers, the data block, items too large and the SWALLOW state, lines too
long), the general stats, a failing disk, the one error funnel (a StoreError
from each command family's store call), the one work slot (a paused
multi-get) and the batch seam (a reply waits for the batch its command used).
The commands themselves, by family, are in test_commands_*.py; the dispatch
table in test_commands.py.

Every test drives a sans-I/O `Session` with bytes and compares the bytes it
returns; no socket, no thread, no sleep. Time is a `FakeClock` shared by the
store and the server, so expiry and delayed flushes are tested by moving it.

Where a reply was in doubt it was checked against the real memcached 1.6.18
(`memcached -t 1 -U 0`, and `-I 1024 -o slab_chunk_max=1024` for the item size
limit, which makes its limit the same `key + len + 59 (+4 with flags)` rule).

The h11-style whole / byte-by-byte / glued tests, the random pipelines and the
output limit are in test_handlers_pipelines.py.
"""

import errno
import os
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import handlers  # noqa: E402

NOW = 1_700_000_000.0
THIRTY_DAYS = 60 * 60 * 24 * 30
ITEM_SIZE_MAX = 1024  # memcached's smallest -I; keeps the too-large tests small

from replies import (  # noqa: E402
    VERSION,
    ERROR,
    END,
    STORED,
    BAD_FORMAT,
    BAD_CHUNK,
    TOO_LARGE,
    hit,
    value,
)


# -- fixtures ------------------------------------------------------------------


# fsync changes nothing in the bytes a session answers (the store's own tests
# cover durability); skipping it keeps hundreds of fresh stores fast.
pytestmark = pytest.mark.usefixtures("no_fsync")


from sessions import cas_of, set_cmd, stats, store  # noqa: E402,F401


# == stats ======================================================================


def test_stats_lists_the_general_counters(session, clock):
    clock.advance(5)
    rows = stats(session)
    for name in (
        "pid uptime time version curr_connections total_connections cmd_get cmd_set "
        "cmd_flush cmd_touch get_hits get_misses get_expired get_flushed delete_misses "
        "delete_hits incr_misses incr_hits decr_misses decr_hits cas_misses cas_hits "
        "cas_badval touch_hits touch_misses bytes_read bytes_written limit_maxbytes "
        "threads curr_items total_items evictions bytes"
    ).split():
        assert name in rows, name
    assert rows["pid"] == str(os.getpid())
    assert rows["uptime"] == "5"
    assert rows["time"] == str(int(NOW) + 5)
    assert rows["version"] == handlers.VERSION
    assert rows["curr_connections"] == "1"


def test_a_server_given_no_clock_keeps_the_time_of_its_store(store):
    # `stats time` and the expiry it describes are one clock (store/clock.py)
    assert handlers.Server(store).clock is store.clock


def test_stats_counts_sets_hits_and_deletes(session):
    session.feed(set_cmd(b"k", b"a") + b"get k\r\ndelete k\r\ndelete k\r\n")
    rows = stats(session)
    assert (rows["cmd_set"], rows["get_hits"], rows["delete_hits"], rows["delete_misses"]) == ("1", "1", "1", "1")


def test_stats_reset_zeroes_the_counters(session):
    session.feed(set_cmd(b"k", b"a") + b"get k\r\nget x\r\n")
    assert session.feed(b"stats reset\r\n") == b"RESET\r\n"
    rows = stats(session)
    assert (rows["cmd_set"], rows["cmd_get"], rows["get_hits"], rows["get_misses"]) == ("0", "0", "0", "0")
    assert rows["curr_connections"] == "1"


def test_stats_reset_zeroes_the_item_counters_the_store_keeps(session, clock):
    session.feed(set_cmd(b"a", b"1") + set_cmd(b"gone", b"x", exptime=1))
    clock.advance(2)
    session.feed(b"get gone\r\n")
    assert session.feed(b"stats reset\r\n") == b"RESET\r\n"
    session.feed(set_cmd(b"b", b"2"))
    rows = stats(session)
    assert (rows["total_items"], rows["get_expired"]) == ("1", "0")


def test_gat_counts_as_a_touch_not_a_get(session):
    session.feed(set_cmd(b"k", b"v"))
    session.feed(b"gat 100 k nope\r\n")
    rows = stats(session)
    assert (rows["cmd_get"], rows["cmd_touch"], rows["touch_hits"], rows["touch_misses"]) == ("0", "2", "1", "1")


def test_an_incr_that_fits_in_place_makes_no_new_item(session):
    session.feed(set_cmd(b"n", b"10"))
    session.feed(b"incr n 5\r\n")
    assert stats(session)["total_items"] == "1"
    session.feed(b"incr n 100\r\n")  # 115: longer than "15", a new item
    assert stats(session)["total_items"] == "2"


def test_stats_reset_ignores_extra_words(session):
    assert session.feed(b"stats reset extra\r\n") == b"RESET\r\n"


def test_stats_settings_lists_the_settings(session, store):
    rows = stats(session, b"settings")
    assert rows["item_size_max"] == str(ITEM_SIZE_MAX)
    assert rows["maxbytes"] == str(store.cache.limit)
    assert rows["cas_enabled"] == "yes"
    assert rows["evictions"] == "on"
    assert {"maxconns", "tcpport", "verbosity"} <= rows.keys()


def test_stats_of_an_unknown_group_is_error(session):
    assert session.feed(b"stats nonsense\r\n") == ERROR


def test_every_stats_line_is_well_formed(session):
    reply = session.feed(b"stats\r\n")
    assert re.fullmatch(rb"(STAT [a-z_]+ [^\r\n ]+\r\n)+END\r\n", reply), reply


# == the command line: errors ===================================================


@pytest.mark.parametrize("line", [b"foo", b"bogus k 0 0 1", b"GET k", b"x", b"sett k 0 0 1"])
def test_an_unknown_command_is_error(session, line):
    assert session.feed(line + b"\r\n") == ERROR


@pytest.mark.parametrize("line", [b"\r\n", b"\n", b"   \r\n"])
def test_an_empty_line_is_error(session, line):
    assert session.feed(line) == ERROR


@pytest.mark.parametrize(
    "line",
    [
        b"get",
        b"gets",
        b"gat",
        b"gats",
        b"set k 0 0",
        b"set k 0 0 1 noreply x",
        b"add k",
        b"cas k 0 0 1",
        b"cas k 0 0 1 1 noreply x",
        b"delete",
        b"incr k",
        b"decr k 1 noreply x",
        b"touch k",
        b"touch k 1 noreply x",
        b"verbosity 1 noreply x",
        b"cache_memlimit 10 noreply x",
    ],
)
def test_a_command_with_the_wrong_number_of_words_is_error(session, line):
    assert session.feed(line + b"\r\n") == ERROR


def test_an_error_does_not_break_the_stream(session):
    assert session.feed(b"foo\r\nversion\r\n") == ERROR + VERSION


def test_a_bare_newline_ends_a_line(session):
    assert session.feed(b"set k 0 0 1\nb\r\nget k\n") == STORED + hit(b"k", b"b")


def test_extra_spaces_between_words_are_ignored(session):
    assert session.feed(b"  set  k  0  0  1  \r\na\r\nget   k \r\n") == STORED + hit(b"k", b"a")


# -- keys

K250 = b"k" * 250
K251 = b"k" * 251


def test_a_250_byte_key_works(session):
    assert session.feed(set_cmd(K250, b"a")) == STORED
    assert session.feed(b"get " + K250 + b"\r\n") == hit(K250, b"a")


def test_setting_a_251_byte_key_is_a_bad_format_and_its_data_is_read_as_a_command(session):
    # memcached does not swallow the data of a line it could not parse
    assert session.feed(b"set " + K251 + b" 0 0 1\r\na\r\n") == BAD_FORMAT + ERROR


def test_a_251_byte_key_error_is_silent_under_noreply(session):
    assert session.feed(b"set " + K251 + b" 0 0 1 noreply\r\na\r\n") == ERROR


def test_getting_a_251_byte_key_is_a_bad_format_and_nothing_else(session):
    session.feed(set_cmd(b"a", b"1"))
    assert session.feed(b"get a " + K251 + b"\r\n") == BAD_FORMAT
    assert session.feed(b"gat 1 a " + K251 + b"\r\n") == BAD_FORMAT


def test_a_get_line_ends_at_a_nul_as_memcached_reads_it_as_a_c_string(session):
    session.feed(set_cmd(b"a", b"1") + set_cmd(b"c", b"2"))
    assert session.feed(b"get a\0b c\r\nget c\r\n") == hit(b"a", b"1") + hit(b"c", b"2")


@pytest.mark.parametrize(
    "command", [b"delete %s\r\n", b"incr %s 1\r\n", b"decr %s 1\r\n", b"touch %s 1\r\n"]
)
def test_other_commands_refuse_a_251_byte_key(session, command):
    assert session.feed(command % K251) == BAD_FORMAT


# -- the numbers of a storage command


@pytest.mark.parametrize(
    "line",
    [
        b"set k -1 0 1",
        b"set k abc 0 1",
        b"set k 1x 0 1",
        b"set k 18446744073709551616 0 1",
        b"set k 0 abc 1",
        b"set k 0 9223372036854775808 1",
        b"set k 0 0 -1",
        b"set k 0 0 abc",
        b"set k 0 0 2147483647",
        b"cas k 0 0 1 abc",
        b"cas k 0 0 1 -1",
    ],
)
def test_a_bad_number_on_a_storage_line_is_a_bad_format_and_no_data_is_expected(session, line):
    assert session.feed(line + b"\r\na\r\n") == BAD_FORMAT + ERROR


def test_a_bad_number_error_is_silent_under_noreply(session):
    assert session.feed(b"set k 0 0 -1 noreply\r\n") == b""


def test_flags_are_cut_to_32_bits(session):
    assert session.feed(b"set k 4294967296 0 1\r\na\r\n") == STORED
    assert session.feed(b"get k\r\n") == hit(b"k", b"a", flags=0)


def test_the_largest_32_bit_flags_are_kept(session):
    session.feed(b"set k 4294967295 0 1\r\na\r\n")
    assert session.feed(b"get k\r\n") == hit(b"k", b"a", flags=4294967295)


def test_numbers_may_have_a_plus_sign(session):
    assert session.feed(b"set k +5 +0 +1\r\na\r\n") == STORED
    assert session.feed(b"get k\r\n") == hit(b"k", b"a", flags=5)


def test_a_length_is_cut_to_32_bits_like_a_c_int(session):
    # 4294967297 = 2**32 + 1: memcached's int32 sees a length of 1
    assert session.feed(b"set k 0 0 4294967297\r\na\r\n") == STORED
    assert session.feed(b"get k\r\n") == hit(b"k", b"a")


# -- the data block


def test_a_data_block_not_ending_in_crlf_is_a_bad_data_chunk(session):
    # 3 bytes + 2 are read ("abcde"), the "\r\n" left over is an empty line
    assert session.feed(b"set k 0 0 3\r\nabcde\r\nversion\r\n") == BAD_CHUNK + ERROR + VERSION
    assert session.feed(b"get k\r\n") == END


def test_a_bad_data_chunk_keeps_the_old_value(session):
    session.feed(set_cmd(b"k", b"old"))
    session.feed(b"set k 0 0 3\r\nnewXY")
    assert session.feed(b"get k\r\n") == hit(b"k", b"old")


def test_a_data_block_ending_in_a_bare_newline_is_a_bad_data_chunk(session):
    assert session.feed(b"set k 0 0 1\r\na\nversion\r\n") == BAD_CHUNK + ERROR


def test_a_bad_data_chunk_is_silent_under_noreply(session):
    assert session.feed(b"set k 0 0 3 noreply\r\nabcde\r\nversion\r\n") == ERROR + VERSION


# -- items too large

# key "k": 1 + 964 + 59 = 1024 fits; with flags 1 + 960 + 59 + 4 = 1024 fits


def test_an_item_of_exactly_the_size_limit_is_stored(session):
    assert session.feed(set_cmd(b"k", b"a" * 964)) == STORED
    assert session.feed(set_cmd(b"f", b"a" * 960, flags=1)) == STORED


def test_an_item_one_byte_over_the_size_limit_is_too_large(session):
    assert session.feed(set_cmd(b"k", b"a" * 965)) == TOO_LARGE
    assert session.feed(set_cmd(b"f", b"a" * 961, flags=1)) == TOO_LARGE
    assert session.feed(b"get k f\r\n") == END


def test_the_key_counts_toward_the_size_limit(session):
    assert session.feed(set_cmd(b"kk", b"a" * 964)) == TOO_LARGE


def test_too_large_is_answered_before_the_data_arrives(session):
    # The design (see handlers.py): answer at once, then drop the data as it
    # comes. memcached 1.6.18 sends the same bytes, but only once it has
    # swallowed the data; the reply stream is the same either way.
    assert session.feed(b"set k 0 0 2000\r\n") == TOO_LARGE


def test_the_data_of_a_too_large_item_is_swallowed_when_it_arrives_in_pieces(session):
    data = b"x" * 2000 + b"\r\n"
    assert session.feed(b"set k 0 0 2000\r\n") == TOO_LARGE
    for i in range(0, len(data), 300):
        assert session.feed(data[i : i + 300]) == b""
    assert session.feed(b"get k\r\n") == END


def test_the_data_of_a_too_large_item_is_swallowed_whatever_it_ends_in(session):
    assert session.feed(b"set k 0 0 2000\r\n" + b"x" * 2000 + b"XYversion\r\n") == TOO_LARGE + VERSION


def test_the_rest_of_a_feed_after_the_swallowed_data_is_answered(session):
    session.feed(b"set k 0 0 2000\r\n" + b"x" * 1000)
    assert session.feed(b"x" * 1000 + b"\r\nversion\r\n") == VERSION


def test_a_huge_declared_length_is_swallowed_without_buffering(session):
    assert session.feed(b"set k 0 0 2147483645\r\n") == TOO_LARGE
    chunk = b"x" * (1 << 20)
    for _ in range(4):
        assert session.feed(chunk) == b""
    assert len(session._buf) == 0


def test_too_large_is_silent_under_noreply_but_still_swallows_the_data(session):
    assert session.feed(b"set k 0 0 2000 noreply\r\n" + b"x" * 2000 + b"\r\nversion\r\n") == VERSION


def test_a_too_large_set_removes_the_old_value(session):
    session.feed(set_cmd(b"k", b"old"))
    assert session.feed(set_cmd(b"k", b"x" * 2000)) == TOO_LARGE
    assert session.feed(b"get k\r\n") == END


@pytest.mark.parametrize("verb", [b"add", b"replace", b"append", b"prepend"])
def test_other_too_large_storage_commands_keep_the_old_value(session, verb):
    session.feed(set_cmd(b"k", b"old"))
    assert session.feed(set_cmd(b"k", b"x" * 2000, verb=verb)) == TOO_LARGE
    assert session.feed(b"get k\r\n") == hit(b"k", b"old")


def test_a_too_large_cas_keeps_the_old_value(session):
    session.feed(set_cmd(b"k", b"old"))
    unique = cas_of(session, b"k")
    assert session.feed(b"cas k 0 0 2000 %d\r\n%s\r\n" % (unique, b"x" * 2000)) == TOO_LARGE
    assert session.feed(b"get k\r\n") == hit(b"k", b"old")


def test_too_large_items_are_counted(session):
    session.feed(set_cmd(b"k", b"x" * 2000))
    assert stats(session)["store_too_large"] == "1"


# -- lines too long, and lines from another protocol


def test_a_line_of_2048_bytes_without_an_end_is_still_awaited(session):
    assert session.feed(b"x" * 2048) == b""
    assert not session.closing
    assert session.feed(b"\r\n") == ERROR


def test_a_line_longer_than_2048_bytes_without_an_end_closes(session):
    assert session.feed(b"x" * 2049) == b""
    assert session.closing
    assert session.feed(b"\r\nversion\r\n") == b""


def test_a_line_that_grows_past_2048_bytes_in_pieces_closes(session):
    for _ in range(20):
        session.feed(b"y" * 100)
    assert not session.closing
    session.feed(b"y" * 49)
    assert session.closing


def test_the_replies_before_an_overlong_line_are_given(session):
    assert session.feed(b"version\r\n" + b"x" * 3000) == VERSION
    assert session.closing


def test_a_long_get_line_does_not_close(session):
    session.feed(set_cmd(b"k1", b"a") + set_cmd(b"k999", b"b"))
    line = b"get " + b" ".join(b"k%d" % i for i in range(1000))
    assert len(line) > 2048
    assert session.feed(line) == b""
    assert not session.closing
    assert session.feed(b"\r\n") == value(b"k1", b"a") + value(b"k999", b"b") + END


def test_a_long_gets_line_does_not_close(session):
    assert session.feed(b"gets " + b"k " * 1500) == b""
    assert not session.closing
    assert session.feed(b"\r\n") == END


def test_a_long_line_that_arrives_whole_is_answered(session):
    assert session.feed(b"set k 0 0 1" + b" " * 3000 + b"\r\na\r\n") == STORED


@pytest.mark.parametrize("line", [b"GET / HTTP/1.1", b"GET /index.html HTTP/1.0", b"foo bar HTTP/2"])
def test_a_line_ending_in_an_http_version_closes_without_a_reply(session, line):
    assert session.feed(line + b"\r\nversion\r\n") == b""
    assert session.closing


def test_a_known_command_ending_in_http_is_just_a_command(session):
    assert session.feed(b"set k 0 0 1 HTTP/1.1\r\na\r\n") == STORED
    assert not session.closing


# == when the disk fails ========================================================


@pytest.fixture
def broken_disk(store, monkeypatch):
    """Make every item write fail; return the reason the client is told.

    Read-only dirs stop writes only when not root; as root, the write itself
    is made to fail as on a full disk.
    """
    if os.geteuid() != 0:
        dirs = [store.dir.tmp, store.dir.items]
        for d in dirs:
            os.chmod(d, 0o500)
        yield b"Permission denied"
        for d in dirs:
            os.chmod(d, 0o755)
    else:

        def write(path, parts, old_size=None):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        monkeypatch.setattr(store.dir, "write", write)
        yield os.strerror(errno.ENOSPC).encode()


@pytest.fixture
def failing_session(session):
    """A session whose items k (b"old") and n (b"5") were written before the disk broke."""
    session.feed(set_cmd(b"k", b"old") + set_cmd(b"n", b"5"))
    return session


@pytest.mark.parametrize(
    "command",
    [
        b"set k 0 0 3\r\nnew\r\n",
        b"replace k 0 0 3\r\nnew\r\n",
        b"append k 0 0 3\r\nnew\r\n",
        b"prepend k 0 0 3\r\nnew\r\n",
        b"touch k 100\r\n",
    ],
    ids=["set", "replace", "append", "prepend", "touch"],
)
def test_a_failed_write_is_a_server_error_with_the_reason_and_keeps_the_old_value(
    failing_session, broken_disk, command
):
    assert failing_session.feed(command) == b"SERVER_ERROR " + broken_disk + b"\r\n"
    assert failing_session.feed(b"get k\r\n") == hit(b"k", b"old")


def test_a_failed_add_is_a_server_error_and_stores_nothing(failing_session, broken_disk):
    assert failing_session.feed(b"add new 0 0 1\r\na\r\n") == b"SERVER_ERROR " + broken_disk + b"\r\n"
    assert failing_session.feed(b"get new\r\n") == END


def test_a_failed_cas_is_a_server_error_and_keeps_the_old_value(failing_session, broken_disk):
    unique = cas_of(failing_session, b"k")
    reply = failing_session.feed(b"cas k 0 0 3 %d\r\nnew\r\n" % unique)
    assert reply == b"SERVER_ERROR " + broken_disk + b"\r\n"
    assert failing_session.feed(b"gets k\r\n") == b"VALUE k 0 3 %d\r\nold\r\nEND\r\n" % unique


@pytest.mark.parametrize("verb", [b"incr", b"decr"])
def test_a_failed_incr_is_a_server_error_and_keeps_the_old_value(failing_session, broken_disk, verb):
    assert failing_session.feed(verb + b" n 1\r\n") == b"SERVER_ERROR " + broken_disk + b"\r\n"
    assert failing_session.feed(b"get n\r\n") == hit(b"n", b"5")


def test_a_failed_gat_is_a_server_error_instead_of_the_values(failing_session, broken_disk):
    assert failing_session.feed(b"gat 100 k\r\n") == b"SERVER_ERROR " + broken_disk + b"\r\n"


def test_a_failed_write_is_reported_even_under_noreply(failing_session, broken_disk):
    assert failing_session.feed(b"set k 0 0 3 noreply\r\nnew\r\n") == b"SERVER_ERROR " + broken_disk + b"\r\n"
    assert failing_session.feed(b"get k\r\n") == hit(b"k", b"old")


def test_a_failed_write_leaves_the_stream_in_step(failing_session, broken_disk):
    reply = failing_session.feed(b"set k 0 0 3\r\nnew\r\nversion\r\nget k\r\n")
    assert reply == b"SERVER_ERROR " + broken_disk + b"\r\n" + VERSION + hit(b"k", b"old")


def test_failed_writes_are_counted(failing_session, broken_disk):
    failing_session.feed(b"set k 0 0 3\r\nnew\r\n")
    assert stats(failing_session)["persist_errors"] == "1"


def test_a_failed_flush_all_is_a_server_error(session, store, monkeypatch):
    session.feed(set_cmd(b"k", b"a"))

    def write_small_file(name, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(store.dir, "write_small_file", write_small_file)
    reply = session.feed(b"flush_all\r\n")
    assert reply.startswith(b"SERVER_ERROR ") and reply.endswith(b"\r\n")
    assert os.strerror(errno.ENOSPC).encode() in reply
    assert b"OK" not in reply


def _fail_with(store, monkeypatch, method, err):
    def fail(*args):
        raise OSError(err, os.strerror(err))

    monkeypatch.setattr(store.dir, method, fail)
    return os.strerror(err).encode()


def test_a_failed_delete_is_a_server_error_and_keeps_the_item(session, store, monkeypatch):
    session.feed(set_cmd(b"k", b"a"))
    reason = _fail_with(store, monkeypatch, "remove", errno.EACCES)
    reply = session.feed(b"delete k\r\n")
    assert reply.startswith(b"SERVER_ERROR ") and reply.endswith(reason + b"\r\n"), reply
    monkeypatch.undo()
    assert session.feed(b"get k\r\n") == hit(b"k", b"a")


def test_a_failed_read_is_a_miss_in_the_get_reply_and_counted(session, store, monkeypatch):
    session.feed(set_cmd(b"k", b"a"))  # k is in memory; "other" must be read from disk
    _fail_with(store, monkeypatch, "read", errno.EIO)
    assert session.feed(b"get k other\r\nversion\r\n") == hit(b"k", b"a") + VERSION
    assert stats(session)["read_errors"] == "1"


def test_a_delete_whose_record_cannot_be_read_is_a_server_error(session, store, monkeypatch):
    # it cannot tell DELETED from NOT_FOUND, and NOT_FOUND would leave the record to come back
    reason = _fail_with(store, monkeypatch, "read", errno.EIO)
    reply = session.feed(b"delete other\r\n")
    assert re.fullmatch(rb"SERVER_ERROR [^\r\n]*" + re.escape(reason) + rb"\r\n", reply), reply


def test_a_too_large_set_that_cannot_drop_the_old_value_gets_one_reply(session, store, monkeypatch):
    session.feed(set_cmd(b"k", b"old"))
    _fail_with(store, monkeypatch, "remove", errno.EACCES)
    reply = session.feed(set_cmd(b"k", b"x" * 2000) + b"version\r\n")
    assert reply.endswith(VERSION)
    assert reply[: -len(VERSION)].count(b"\r\n") == 1, reply


# == SWALLOW: a refused value is dropped as it comes ===========================

# a value over -I made of command lines: swallowing a byte too few or too many
# would run (or mangle) one of them
REFUSED = b"version\r\n" * 130
REFUSED_SET = b"set k 0 0 %d\r\n" % len(REFUSED)


def test_a_refused_value_is_swallowed_exactly_n_plus_2_bytes_wherever_it_is_split(server):
    stream = REFUSED_SET + REFUSED + b"\r\nversion\r\n"
    for cut in range(len(stream) + 1):
        s = handlers.Session(server)
        reply = s.feed(stream[:cut])
        if len(REFUSED_SET) <= cut < len(REFUSED_SET) + len(REFUSED) + 2:
            assert (s.state, s.buffered) == (handlers.SWALLOW, 0), cut  # never buffered
        reply += s.feed(stream[cut:])
        assert reply == TOO_LARGE + VERSION, cut
        assert (s.state, s.buffered) == (handlers.LINE, 0), cut
        s.close()


def test_a_refused_value_fed_a_byte_at_a_time_leaves_nothing_buffered(session):
    assert session.feed(REFUSED_SET) == TOO_LARGE
    for i in range(len(REFUSED) + 2):
        assert session.feed((REFUSED + b"\r\n")[i : i + 1]) == b""
        assert session.buffered == 0
    assert session.state == handlers.LINE
    assert session.feed(b"version\r\n") == VERSION


# == the work slot: a paused multi-get =========================================


@pytest.fixture
def five_values(session):
    """Keys k0..k4, each a 100-byte value; the whole reply of `get k0 ... k4`."""
    keys = [b"k%d" % i for i in range(5)]
    session.feed(b"".join(set_cmd(k, b"%d" % i * 100) for i, k in enumerate(keys)))
    return keys, b"".join(value(k, b"%d" % i * 100) for i, k in enumerate(keys)) + END


def test_a_multi_get_paused_by_the_output_room_resumes_where_it_left_off(session, five_values):
    keys, whole = five_values
    reply = session.feed(b"get " + b" ".join(keys) + b"\r\n", limit=150)
    assert session.stopped_early and reply.count(b"VALUE ") == 2  # paused past its room
    assert session.work.start == 2  # the next key to answer
    while session.stopped_early:
        reply += session.feed(b"", limit=150)
    assert reply == whole
    assert session.work is None


def test_a_line_after_a_paused_multi_get_runs_after_the_get_ends(session, five_values):
    keys, whole = five_values
    reply = session.feed(b"gets " + b" ".join(keys) + b"\r\nversion\r\n", limit=150)
    while session.stopped_early:
        reply += session.feed(b"", limit=150)
    assert reply.endswith(END + VERSION)
    assert reply.count(b"VALUE ") == 5


def test_a_session_with_work_in_its_slot_is_not_awaiting_a_command(session, five_values):
    keys, _ = five_values
    session.feed(b"get " + b" ".join(keys) + b"\r\n", limit=150)
    assert session.work is not None
    assert not session.awaiting_command  # the idle timer leaves it alone
    while session.stopped_early:
        session.feed(b"", limit=150)
    assert session.awaiting_command


def test_a_resumed_multi_get_counts_each_key_once(session, five_values):
    keys, _ = five_values
    session.feed(b"get " + b" ".join(keys) + b" nokey\r\n", limit=150)
    while session.stopped_early:
        session.feed(b"", limit=150)
    rows = stats(session)
    assert (rows["cmd_get"], rows["get_hits"], rows["get_misses"]) == ("6", "5", "1")


# == the one funnel: a StoreError from any family's store call =================


def _raising(error):
    def fail(*args, **kwargs):
        raise error

    return fail


# family -> (the lines, the Store method their command calls); k holds b"old"
# and n holds b"5" before the store breaks
FAMILY_CALLS = {
    "storage": (b"set k 0 0 3\r\nnew\r\n", "store"),
    "retrieval": (b"gets k\r\n", "get_each"),
    "retrieval-plain-get": (b"get k\r\n", "hits"),
    "retrieval-gat": (b"gat 10 k\r\n", "touch"),
    "modify-delete": (b"delete k\r\n", "delete"),
    "modify-incr": (b"incr n 1\r\n", "incr_decr"),
    "modify-touch": (b"touch k 10\r\n", "touch"),
    "modify-flush_all": (b"flush_all\r\n", "flush_all"),
    "meta-mg": (b"mg k v\r\n", "get"),
    "meta-ms": (b"ms k 3\r\nnew\r\n", "store"),
    "meta-md": (b"md k\r\n", "delete"),
    "meta-ma": (b"ma n\r\n", "arithmetic"),
    "dumps-metadump": (b"lru_crawler metadump all\r\n", "live_heads"),
    "dumps-cachedump": (b"stats cachedump 1 1\r\n", "live_heads"),
    "stats-reset": (b"stats reset\r\n", "reset_stats"),
}


@pytest.fixture
def filled(session):
    session.feed(set_cmd(b"k", b"old") + set_cmd(b"n", b"5"))
    return session


@pytest.mark.parametrize("family", FAMILY_CALLS)
def test_a_store_error_of_any_family_is_its_server_error_and_the_stream_goes_on(filled, store, monkeypatch, family):
    line, method = FAMILY_CALLS[family]
    monkeypatch.setattr(store, method, _raising(handlers.StoreError("disk on fire")))
    assert filled.feed(line + b"version\r\n") == b"SERVER_ERROR disk on fire\r\n" + VERSION
    assert stats(filled)["persist_errors"] == "1"


def test_a_store_error_in_a_pipelined_run_of_gets_is_the_failing_line_s_alone(filled, store, monkeypatch):
    hits = store.hits

    def failing(keys):
        if b"n" in keys:
            raise handlers.StoreError("disk on fire")
        return hits(keys)

    monkeypatch.setattr(store, "hits", failing)
    replies = filled.feed(b"get k\r\nget n\r\nget k\r\n")
    assert replies == hit(b"k", b"old") + b"SERVER_ERROR disk on fire\r\n" + hit(b"k", b"old")


@pytest.mark.parametrize("family", ["storage", "meta-ms"])
def test_a_disk_full_on_a_write_is_memcached_s_out_of_memory(filled, store, monkeypatch, family):
    line, method = FAMILY_CALLS[family]
    monkeypatch.setattr(store, method, _raising(handlers.DiskFull()))
    assert filled.feed(line) == b"SERVER_ERROR out of memory storing object\r\n"
    rows = stats(filled)
    assert (rows["store_no_memory"], rows["persist_errors"]) == ("1", "0")


def test_a_disk_full_set_under_noreply_is_still_answered(filled, store, monkeypatch):
    monkeypatch.setattr(store, "store", _raising(handlers.DiskFull()))
    assert filled.feed(b"set k 0 0 3 noreply\r\nnew\r\n") == b"SERVER_ERROR out of memory storing object\r\n"


def test_a_store_error_in_a_resumed_multi_get_ends_its_reply(session, store, monkeypatch, five_values):
    keys, whole = five_values
    reply = session.feed(b"get " + b" ".join(keys) + b"\r\nversion\r\n", limit=150)
    monkeypatch.setattr(store, "get_each", _raising(handlers.StoreError("disk on fire")))
    while session.stopped_early:
        reply += session.feed(b"", limit=150)
    answered = whole[: whole.index(b"VALUE k2 ")]
    assert reply == answered + b"SERVER_ERROR disk on fire\r\n" + VERSION


# == the batch seam: a reply waits for the batch its command used ==============


class NoBarrier:
    """A barrier that does nothing: what is tested is when replies leave."""

    name = "none"
    needs_paths = False

    def sync(self, files, dirs):
        pass

    def close(self):
        pass


@pytest.fixture
def always_server(open_store, clock):
    from store import ALWAYS

    store = open_store(ALWAYS, name="always")
    store.durability.barrier = NoBarrier()
    return handlers.Server(store, handlers.Settings(), clock=clock)


def test_under_always_a_write_s_reply_is_held_until_its_batch_commits(always_server):
    s = handlers.Session(always_server)
    assert s.feed(set_cmd(b"k", b"v")) == b""
    assert s.holding
    with pytest.raises(RuntimeError):
        s.release()  # a reply never leaves before its batch is durable
    always_server.commit()
    assert s.release() == STORED
    assert not s.holding


def test_under_always_a_read_of_the_open_batch_is_held_with_it(always_server):
    writer, reader = handlers.Session(always_server), handlers.Session(always_server)
    writer.feed(set_cmd(b"k", b"v"))
    assert reader.feed(b"get k\r\n") == b""  # (not the plain-get fast path)
    always_server.commit()
    assert (writer.release(), reader.release()) == (STORED, hit(b"k", b"v"))


class FakeBatch:
    committed = False
    error = None


@pytest.fixture
def used_batch(session, store, monkeypatch):
    """A batch the store says every get_each used (as Store._live says of a
    read of the open batch): the session must ask it, not guess. (`gets`,
    not `get`: the plain-get fast path runs only while no batch is open, when
    a read can use none.)"""
    batch = FakeBatch()
    get_each = store.get_each

    def reading_the_batch(*args):
        store.durability.used = batch
        return get_each(*args)

    session.feed(set_cmd(b"k", b"v"))
    monkeypatch.setattr(store, "get_each", reading_the_batch)
    return batch


def test_the_reply_of_a_command_the_store_says_used_a_batch_waits_for_that_batch(session, used_batch):
    assert session.feed(b"gets k\r\n") == b""
    assert session.holding
    used_batch.committed = True
    assert session.release().startswith(b"VALUE k 0 1 ")


def test_a_reply_that_waited_for_a_failed_batch_is_its_server_error(session, used_batch):
    session.feed(b"gets k\r\n")
    used_batch.committed, used_batch.error = True, "disk on fire"
    assert session.release() == b"SERVER_ERROR disk on fire\r\n"
    assert stats(session)["persist_errors"] == "1"


def test_the_store_s_mark_is_taken_once_and_the_next_command_answers_at_once(session, store, used_batch):
    session.feed(b"gets k\r\n")
    used_batch.committed = True
    session.release()
    assert store.durability.used is None
    assert session.feed(b"version\r\n") == VERSION
