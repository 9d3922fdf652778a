"""The protocol session, command by command: what memcached 1.6 answers, byte
for byte, and what the command does to the items.

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
from store import Store  # noqa: E402

NOW = 1_700_000_000.0
THIRTY_DAYS = 60 * 60 * 24 * 30
ITEM_SIZE_MAX = 1024  # memcached's smallest -I; keeps the too-large tests small

from replies import (  # noqa: E402
    VERSION,
    ERROR,
    END,
    STORED,
    NOT_STORED,
    EXISTS,
    NOT_FOUND,
    DELETED,
    TOUCHED,
    OK,
    BAD_FORMAT,
    BAD_CHUNK,
    BAD_EXPTIME,
    BAD_DELTA,
    NON_NUMERIC,
    TOO_LARGE,
    DELETE_USAGE,
    hit,
    value,
)


# -- fixtures ------------------------------------------------------------------


# fsync changes nothing in the bytes a session answers (the store's own tests
# cover durability); skipping it keeps hundreds of fresh stores fast.
pytestmark = pytest.mark.usefixtures("no_fsync")


@pytest.fixture
def store(tmp_path, clock):
    s = Store(str(tmp_path / "data"), item_size_max=ITEM_SIZE_MAX, clock=clock)
    yield s
    s.close()


# -- helpers -------------------------------------------------------------------


def set_cmd(key, data, flags=0, exptime=0, verb=b"set"):
    return b"%s %s %d %d %d\r\n%s\r\n" % (verb, key, flags, exptime, len(data), data)


def cas_of(session, key):
    reply = session.feed(b"gets " + key + b"\r\n")
    m = re.match(rb"VALUE \S+ \d+ \d+ (\d+)\r\n", reply)
    assert m, reply
    return int(m.group(1))


def stats(session, sub=b""):
    reply = session.feed(b"stats" + (b" " + sub if sub else b"") + b"\r\n")
    assert reply.endswith(END), reply
    rows = {}
    for line in reply[: -len(END)].split(b"\r\n")[:-1]:
        stat, name, val = line.split(b" ", 2)
        assert stat == b"STAT"
        rows[name.decode()] = val.decode()
    return rows


# == storage commands ===========================================================


def test_set_stores_a_value_that_get_returns_with_its_flags(session):
    assert session.feed(b"set k 42 0 5\r\nhello\r\n") == STORED
    assert session.feed(b"get k\r\n") == b"VALUE k 42 5\r\nhello\r\nEND\r\n"


def test_set_overwrites_an_existing_value(session):
    session.feed(set_cmd(b"k", b"old", flags=1))
    assert session.feed(set_cmd(b"k", b"newer", flags=2)) == STORED
    assert session.feed(b"get k\r\n") == hit(b"k", b"newer", flags=2)


def test_set_accepts_an_empty_value(session):
    assert session.feed(b"set k 0 0 0\r\n\r\n") == STORED
    assert session.feed(b"get k\r\n") == b"VALUE k 0 0\r\n\r\nEND\r\n"


def test_a_value_may_hold_any_bytes_including_line_ends(session):
    data = b"\r\n\x00\xff\nend\r"
    assert session.feed(set_cmd(b"k", data)) == STORED
    assert session.feed(b"get k\r\n") == hit(b"k", data)


def test_a_sixth_word_that_is_not_noreply_is_ignored(session):
    assert session.feed(b"set k 0 0 1 foo\r\na\r\n") == STORED


def test_add_stores_a_missing_key(session):
    assert session.feed(set_cmd(b"k", b"a", verb=b"add")) == STORED
    assert session.feed(b"get k\r\n") == hit(b"k", b"a")


def test_add_refuses_an_existing_key_and_keeps_its_value(session):
    session.feed(set_cmd(b"k", b"old"))
    assert session.feed(set_cmd(b"k", b"new", verb=b"add")) == NOT_STORED
    assert session.feed(b"get k\r\n") == hit(b"k", b"old")


def test_add_stores_over_an_expired_item(session, clock):
    session.feed(set_cmd(b"k", b"old", exptime=10))
    clock.advance(10)
    assert session.feed(set_cmd(b"k", b"new", verb=b"add")) == STORED


def test_replace_stores_over_an_existing_key(session):
    session.feed(set_cmd(b"k", b"old"))
    assert session.feed(set_cmd(b"k", b"new", flags=3, verb=b"replace")) == STORED
    assert session.feed(b"get k\r\n") == hit(b"k", b"new", flags=3)


def test_replace_refuses_a_missing_key(session):
    assert session.feed(set_cmd(b"k", b"new", verb=b"replace")) == NOT_STORED
    assert session.feed(b"get k\r\n") == END


def test_append_adds_after_the_value_and_keeps_the_old_flags(session):
    session.feed(set_cmd(b"k", b"ab", flags=5))
    assert session.feed(set_cmd(b"k", b"cd", flags=7, verb=b"append")) == STORED
    assert session.feed(b"get k\r\n") == hit(b"k", b"abcd", flags=5)


def test_prepend_adds_before_the_value_and_keeps_the_old_flags(session):
    session.feed(set_cmd(b"k", b"ab", flags=5))
    assert session.feed(set_cmd(b"k", b"xy", flags=9, verb=b"prepend")) == STORED
    assert session.feed(b"get k\r\n") == hit(b"k", b"xyab", flags=5)


@pytest.mark.parametrize("verb", [b"append", b"prepend"])
def test_append_and_prepend_refuse_a_missing_key(session, verb):
    assert session.feed(set_cmd(b"k", b"a", verb=verb)) == NOT_STORED
    assert session.feed(b"get k\r\n") == END


@pytest.mark.parametrize("verb", [b"append", b"prepend"])
def test_append_and_prepend_keep_the_old_expiry(session, clock, verb):
    session.feed(set_cmd(b"k", b"a", exptime=100))
    assert session.feed(set_cmd(b"k", b"b", exptime=0, verb=verb)) == STORED
    clock.advance(100)
    assert session.feed(b"get k\r\n") == END


@pytest.mark.parametrize("verb", [b"append", b"prepend"])
def test_append_and_prepend_refuse_a_result_larger_than_the_item_size_limit(session, verb):
    session.feed(set_cmd(b"k", b"a" * 900))
    assert session.feed(set_cmd(b"k", b"b" * 100, verb=verb)) == NOT_STORED
    assert session.feed(b"get k\r\n") == hit(b"k", b"a" * 900)


def test_cas_with_the_current_unique_stores(session):
    session.feed(set_cmd(b"k", b"old"))
    unique = cas_of(session, b"k")
    assert session.feed(b"cas k 4 0 3 %d\r\nnew\r\n" % unique) == STORED
    assert session.feed(b"get k\r\n") == hit(b"k", b"new", flags=4)


def test_cas_with_a_stale_unique_is_exists_and_keeps_the_value(session):
    session.feed(set_cmd(b"k", b"old"))
    unique = cas_of(session, b"k")
    session.feed(set_cmd(b"k", b"other"))
    assert session.feed(b"cas k 0 0 3 %d\r\nnew\r\n" % unique) == EXISTS
    assert session.feed(b"get k\r\n") == hit(b"k", b"other")


def test_cas_on_a_missing_key_is_not_found(session):
    assert session.feed(b"cas k 0 0 1 1\r\na\r\n") == NOT_FOUND


def test_cas_on_a_deleted_key_is_not_found(session):
    session.feed(set_cmd(b"k", b"a"))
    unique = cas_of(session, b"k")
    session.feed(b"delete k\r\n")
    assert session.feed(b"cas k 0 0 1 %d\r\nb\r\n" % unique) == NOT_FOUND


def test_every_write_gets_a_new_cas_unique(session):
    session.feed(set_cmd(b"k", b"a"))
    first = cas_of(session, b"k")
    session.feed(set_cmd(b"k", b"a"))
    second = cas_of(session, b"k")
    session.feed(set_cmd(b"k", b"b", verb=b"append"))
    third = cas_of(session, b"k")
    assert first < second < third


def test_cas_counters_count_hits_misses_and_bad_values(session):
    session.feed(set_cmd(b"k", b"a"))
    unique = cas_of(session, b"k")
    session.feed(b"cas k 0 0 1 %d\r\nb\r\n" % unique)
    session.feed(b"cas k 0 0 1 %d\r\nc\r\n" % unique)
    session.feed(b"cas nokey 0 0 1 1\r\nc\r\n")
    rows = stats(session)
    assert (rows["cas_hits"], rows["cas_badval"], rows["cas_misses"]) == ("1", "1", "1")


@pytest.mark.parametrize(
    "setup, command, expected",
    [
        (b"", b"set k 0 0 1 noreply\r\nb\r\n", b"b"),
        (b"", b"add k 0 0 1 noreply\r\nb\r\n", b"b"),
        (b"add k 0 0 1\r\na\r\n", b"add k 0 0 1 noreply\r\nb\r\n", b"a"),
        (b"set k 0 0 1\r\na\r\n", b"replace k 0 0 1 noreply\r\nb\r\n", b"b"),
        (b"", b"replace k 0 0 1 noreply\r\nb\r\n", None),
        (b"set k 0 0 1\r\na\r\n", b"append k 0 0 1 noreply\r\nb\r\n", b"ab"),
        (b"set k 0 0 1\r\na\r\n", b"prepend k 0 0 1 noreply\r\nb\r\n", b"ba"),
        (b"set k 0 0 1\r\na\r\n", b"cas k 0 0 1 999 noreply\r\nb\r\n", b"a"),
        (b"", b"cas k 0 0 1 1 noreply\r\nb\r\n", None),
    ],
    ids=["set", "add", "add-refused", "replace", "replace-refused", "append", "prepend", "cas-exists", "cas-missing"],
)
def test_storage_commands_with_noreply_answer_nothing(session, setup, command, expected):
    session.feed(setup)
    assert session.feed(command) == b""
    assert session.feed(b"get k\r\n") == (END if expected is None else hit(b"k", expected))


def test_cas_with_noreply_stores_silently(session):
    session.feed(set_cmd(b"k", b"a"))
    unique = cas_of(session, b"k")
    assert session.feed(b"cas k 0 0 1 %d noreply\r\nb\r\n" % unique) == b""
    assert session.feed(b"get k\r\n") == hit(b"k", b"b")


# == retrieval ==================================================================


def test_get_of_a_missing_key_is_just_end(session):
    assert session.feed(b"get nokey\r\n") == END


def test_get_of_many_keys_returns_the_hits_in_request_order(session):
    session.feed(set_cmd(b"a", b"1", flags=1) + set_cmd(b"b", b"22", flags=2))
    assert session.feed(b"get b missing a\r\n") == value(b"b", b"22", 2) + value(b"a", b"1", 1) + END


def test_get_of_a_repeated_key_returns_it_each_time(session):
    session.feed(set_cmd(b"a", b"1"))
    assert session.feed(b"get a a\r\n") == value(b"a", b"1") * 2 + END


def test_gets_adds_the_cas_unique_to_each_value(session):
    session.feed(set_cmd(b"a", b"1") + set_cmd(b"b", b"2", flags=3))
    reply = session.feed(b"gets a b\r\n")
    m = re.fullmatch(rb"VALUE a 0 1 (\d+)\r\n1\r\nVALUE b 3 1 (\d+)\r\n2\r\nEND\r\n", reply)
    assert m, reply
    assert int(m.group(1)) < int(m.group(2))


def test_get_counts_hits_and_misses(session):
    session.feed(set_cmd(b"a", b"1"))
    session.feed(b"get a b c\r\n")
    rows = stats(session)
    assert (rows["cmd_get"], rows["get_hits"], rows["get_misses"]) == ("3", "1", "2")


def test_gat_returns_the_values_without_cas_and_sets_a_new_expiry(session, clock):
    session.feed(set_cmd(b"a", b"1", exptime=10) + set_cmd(b"b", b"2", flags=7))
    assert session.feed(b"gat 100 a missing b\r\n") == value(b"a", b"1") + value(b"b", b"2", 7) + END
    clock.advance(99)
    assert session.feed(b"get a b\r\n") == value(b"a", b"1") + value(b"b", b"2", 7) + END
    clock.advance(1)
    assert session.feed(b"get a b\r\n") == END


def test_gats_returns_the_values_with_their_unchanged_cas(session):
    session.feed(set_cmd(b"a", b"1"))
    unique = cas_of(session, b"a")
    assert session.feed(b"gats 100 a\r\n") == b"VALUE a 0 1 %d\r\n1\r\nEND\r\n" % unique
    assert cas_of(session, b"a") == unique


def test_gat_of_a_missing_key_is_just_end(session):
    assert session.feed(b"gat 100 nokey\r\n") == END


def test_gat_without_keys_is_just_end(session):
    assert session.feed(b"gat 100\r\n") == END
    assert session.feed(b"gats 100\r\n") == END


def test_gat_with_a_bad_exptime_is_a_client_error(session):
    session.feed(set_cmd(b"a", b"1"))
    assert session.feed(b"gat abc a\r\n") == BAD_EXPTIME
    assert session.feed(b"gats abc a\r\n") == BAD_EXPTIME


def test_gat_with_a_negative_exptime_returns_the_value_then_it_is_gone(session):
    session.feed(set_cmd(b"a", b"1"))
    assert session.feed(b"gat -1 a\r\n") == hit(b"a", b"1")
    assert session.feed(b"get a\r\n") == END


# == delete =====================================================================


def test_delete_removes_an_item(session):
    session.feed(set_cmd(b"k", b"a"))
    assert session.feed(b"delete k\r\n") == DELETED
    assert session.feed(b"get k\r\n") == END


def test_delete_of_a_missing_key_is_not_found(session):
    assert session.feed(b"delete k\r\n") == NOT_FOUND


def test_delete_of_an_expired_item_is_not_found(session, clock):
    session.feed(set_cmd(b"k", b"a", exptime=5))
    clock.advance(5)
    assert session.feed(b"delete k\r\n") == NOT_FOUND


def test_delete_accepts_a_zero_hold_time(session):
    session.feed(set_cmd(b"k", b"a"))
    assert session.feed(b"delete k 0\r\n") == DELETED
    assert session.feed(b"delete k 0\r\n") == NOT_FOUND


@pytest.mark.parametrize("command", [b"delete k noreply\r\n", b"delete k 0 noreply\r\n"])
def test_delete_with_noreply_deletes_silently(session, command):
    session.feed(set_cmd(b"k", b"a"))
    assert session.feed(command) == b""
    assert session.feed(b"get k\r\n") == END


def test_delete_with_a_non_zero_hold_time_is_a_usage_error(session):
    session.feed(set_cmd(b"k", b"a"))
    assert session.feed(b"delete k 1\r\n") == DELETE_USAGE
    assert session.feed(b"get k\r\n") == hit(b"k", b"a")


def test_delete_usage_error_is_silent_under_noreply(session):
    session.feed(set_cmd(b"k", b"a"))
    assert session.feed(b"delete k 1 noreply\r\n") == b""
    assert session.feed(b"get k\r\n") == hit(b"k", b"a")


def test_delete_with_too_many_words_is_error(session):
    assert session.feed(b"delete k 0 noreply x\r\n") == ERROR


def test_delete_of_a_key_named_noreply_answers(session):
    session.feed(set_cmd(b"noreply", b"a"))
    assert session.feed(b"delete noreply\r\n") == DELETED
    assert session.feed(b"delete noreply\r\n") == NOT_FOUND


# == incr / decr ================================================================


def test_incr_adds_and_returns_the_new_value(session):
    session.feed(set_cmd(b"n", b"41"))
    assert session.feed(b"incr n 1\r\n") == b"42\r\n"
    assert session.feed(b"get n\r\n") == hit(b"n", b"42")


def test_incr_lengthens_the_value_when_the_number_grows(session):
    session.feed(set_cmd(b"n", b"99"))
    assert session.feed(b"incr n 1\r\n") == b"100\r\n"
    assert session.feed(b"get n\r\n") == hit(b"n", b"100")


def test_incr_wraps_around_at_2_to_the_64(session):
    session.feed(set_cmd(b"n", b"18446744073709551615"))
    assert session.feed(b"incr n 2\r\n") == b"1\r\n"
    # the shorter number is padded with spaces to the old length, as memcached does
    assert session.feed(b"get n\r\n") == hit(b"n", b"1" + b" " * 19)


def test_incr_accepts_the_largest_64_bit_delta(session):
    session.feed(set_cmd(b"n", b"10"))
    assert session.feed(b"incr n 18446744073709551615\r\n") == b"9\r\n"


def test_decr_subtracts_and_pads_a_shorter_result_with_spaces(session):
    session.feed(set_cmd(b"n", b"100"))
    assert session.feed(b"decr n 1\r\n") == b"99\r\n"
    assert session.feed(b"get n\r\n") == hit(b"n", b"99 ")


def test_decr_stops_at_zero(session):
    session.feed(set_cmd(b"n", b"10"))
    assert session.feed(b"decr n 100\r\n") == b"0\r\n"
    assert session.feed(b"get n\r\n") == hit(b"n", b"0 ")


def test_incr_reads_a_space_padded_value(session):
    session.feed(set_cmd(b"n", b"100"))
    session.feed(b"decr n 1\r\n")
    assert session.feed(b"incr n 1\r\n") == b"100\r\n"
    assert session.feed(b"get n\r\n") == hit(b"n", b"100")


def test_incr_reads_a_value_with_leading_white_space(session):
    session.feed(set_cmd(b"n", b" 5"))
    assert session.feed(b"incr n 1\r\n") == b"6\r\n"
    assert session.feed(b"get n\r\n") == hit(b"n", b"6 ")


def test_incr_keeps_the_flags_and_gives_a_new_cas(session):
    session.feed(set_cmd(b"n", b"1", flags=9))
    before = cas_of(session, b"n")
    session.feed(b"incr n 1\r\n")
    assert session.feed(b"get n\r\n") == hit(b"n", b"2", flags=9)
    assert cas_of(session, b"n") > before


@pytest.mark.parametrize("verb", [b"incr", b"decr"])
def test_incr_and_decr_of_a_missing_key_are_not_found(session, verb):
    assert session.feed(verb + b" n 1\r\n") == NOT_FOUND


@pytest.mark.parametrize("data", [b"abc", b"12abc", b"-5", b"", b"18446744073709551616"])
@pytest.mark.parametrize("verb", [b"incr", b"decr"])
def test_incr_and_decr_of_a_non_numeric_value_are_a_client_error(session, verb, data):
    session.feed(set_cmd(b"n", data))
    assert session.feed(verb + b" n 1\r\n") == NON_NUMERIC
    assert session.feed(b"get n\r\n") == hit(b"n", data)


@pytest.mark.parametrize("delta", [b"abc", b"-1", b"1.5", b"18446744073709551616", b"1x"])
@pytest.mark.parametrize("verb", [b"incr", b"decr"])
def test_incr_and_decr_with_a_bad_delta_are_a_client_error(session, verb, delta):
    session.feed(set_cmd(b"n", b"5"))
    assert session.feed(verb + b" n " + delta + b"\r\n") == BAD_DELTA
    assert session.feed(b"get n\r\n") == hit(b"n", b"5")


def test_incr_accepts_a_plus_signed_delta_and_minus_zero(session):
    session.feed(set_cmd(b"n", b"5"))
    assert session.feed(b"incr n +5\r\n") == b"10\r\n"
    assert session.feed(b"incr n -0\r\n") == b"10\r\n"


def test_incr_takes_a_negative_delta_as_strtoull_wraps_it(session):
    session.feed(set_cmd(b"n", b"5"))
    assert session.feed(b"incr n -9223372036854775809\r\n") == b"9223372036854775812\r\n"


@pytest.mark.parametrize("verb", [b"incr", b"decr"])
def test_incr_and_decr_with_noreply_change_silently(session, verb):
    session.feed(set_cmd(b"n", b"5"))
    assert session.feed(verb + b" n 2 noreply\r\n") == b""
    assert session.feed(b"get n\r\n") == hit(b"n", b"7" if verb == b"incr" else b"3")


@pytest.mark.parametrize(
    "command", [b"incr nokey 1 noreply\r\n", b"incr n abc noreply\r\n", b"incr s 1 noreply\r\n"]
)
def test_incr_errors_are_silent_under_noreply(session, command):
    session.feed(set_cmd(b"n", b"5") + set_cmd(b"s", b"abc"))
    assert session.feed(command) == b""


def test_incr_and_decr_count_hits_and_misses(session):
    session.feed(set_cmd(b"n", b"5"))
    session.feed(b"incr n 1\r\nincr x 1\r\ndecr n 1\r\ndecr n 1\r\ndecr x 1\r\n")
    rows = stats(session)
    assert (rows["incr_hits"], rows["incr_misses"], rows["decr_hits"], rows["decr_misses"]) == ("1", "1", "2", "1")


# == touch ======================================================================


def test_touch_sets_a_new_expiry(session, clock):
    session.feed(set_cmd(b"k", b"a", exptime=10))
    assert session.feed(b"touch k 100\r\n") == TOUCHED
    clock.advance(99)
    assert session.feed(b"get k\r\n") == hit(b"k", b"a")
    clock.advance(1)
    assert session.feed(b"get k\r\n") == END


def test_touch_with_zero_makes_an_item_immortal(session, clock):
    session.feed(set_cmd(b"k", b"a", exptime=10))
    assert session.feed(b"touch k 0\r\n") == TOUCHED
    clock.advance(THIRTY_DAYS * 12)
    assert session.feed(b"get k\r\n") == hit(b"k", b"a")


def test_touch_keeps_value_flags_and_cas(session):
    session.feed(set_cmd(b"k", b"a", flags=3))
    unique = cas_of(session, b"k")
    session.feed(b"touch k 100\r\n")
    assert session.feed(b"gets k\r\n") == b"VALUE k 3 1 %d\r\na\r\nEND\r\n" % unique


def test_touch_of_a_missing_key_is_not_found(session):
    assert session.feed(b"touch k 10\r\n") == NOT_FOUND


def test_touch_with_a_bad_exptime_is_a_client_error(session):
    session.feed(set_cmd(b"k", b"a"))
    assert session.feed(b"touch k abc\r\n") == BAD_EXPTIME


def test_touch_with_noreply_touches_silently(session, clock):
    session.feed(set_cmd(b"k", b"a", exptime=10))
    assert session.feed(b"touch k 100 noreply\r\n") == b""
    assert session.feed(b"touch nokey 100 noreply\r\n") == b""
    assert session.feed(b"touch k abc noreply\r\n") == b""
    clock.advance(50)
    assert session.feed(b"get k\r\n") == hit(b"k", b"a")


def test_touch_counts_hits_and_misses(session):
    session.feed(set_cmd(b"k", b"a"))
    session.feed(b"touch k 1\r\ntouch x 1\r\n")
    rows = stats(session)
    assert (rows["cmd_touch"], rows["touch_hits"], rows["touch_misses"]) == ("2", "1", "1")


# == expiry =====================================================================


def test_an_item_lives_exactly_exptime_seconds(session, clock):
    session.feed(set_cmd(b"k", b"a", exptime=10))
    clock.advance(9.9)
    assert session.feed(b"get k\r\n") == hit(b"k", b"a")
    clock.advance(0.1)
    assert session.feed(b"get k\r\n") == END


def test_a_negative_exptime_stores_an_already_expired_item(session):
    assert session.feed(set_cmd(b"k", b"a", exptime=-1)) == STORED
    assert session.feed(b"get k\r\n") == END


def test_an_exptime_of_thirty_days_is_still_relative(session, clock):
    session.feed(set_cmd(b"k", b"a", exptime=THIRTY_DAYS))
    clock.advance(THIRTY_DAYS - 1)
    assert session.feed(b"get k\r\n") == hit(b"k", b"a")
    clock.advance(1)
    assert session.feed(b"get k\r\n") == END


def test_an_exptime_above_thirty_days_is_an_absolute_unix_time(session, clock):
    session.feed(set_cmd(b"k", b"a", exptime=int(NOW) + 100))
    clock.advance(99)
    assert session.feed(b"get k\r\n") == hit(b"k", b"a")
    clock.advance(1)
    assert session.feed(b"get k\r\n") == END


def test_an_absolute_exptime_in_the_past_stores_an_expired_item(session):
    assert session.feed(set_cmd(b"k", b"a", exptime=THIRTY_DAYS + 1)) == STORED
    assert session.feed(b"get k\r\n") == END


def test_an_exptime_of_2_to_the_31_wraps_negative_and_is_already_expired(session):
    assert session.feed(b"set k 0 2147483648 1\r\na\r\n") == STORED
    assert session.feed(b"get k\r\n") == END


def test_an_exptime_is_cut_to_32_bits_like_a_c_int(session, clock):
    # 4294967396 = 2**32 + 100: memcached's int32 sees 100 seconds
    assert session.feed(b"set k 0 4294967396 1\r\na\r\n") == STORED
    clock.advance(99)
    assert session.feed(b"get k\r\n") == hit(b"k", b"a")
    clock.advance(1)
    assert session.feed(b"get k\r\n") == END


# == flush_all ==================================================================


def test_flush_all_kills_every_item_at_once(session):
    session.feed(set_cmd(b"a", b"1") + set_cmd(b"b", b"2"))
    assert session.feed(b"flush_all\r\n") == OK
    assert session.feed(b"get a b\r\n") == END


def test_flush_all_with_zero_delay_is_immediate(session):
    session.feed(set_cmd(b"a", b"1"))
    assert session.feed(b"flush_all 0\r\n") == OK
    assert session.feed(b"get a\r\n") == END


def test_items_stored_after_a_flush_all_live(session):
    session.feed(set_cmd(b"a", b"1"))
    session.feed(b"flush_all\r\n")
    session.feed(set_cmd(b"b", b"2"))
    assert session.feed(b"get a b\r\n") == hit(b"b", b"2")


def test_flush_all_with_a_delay_kills_the_items_when_it_has_passed(session, clock):
    session.feed(set_cmd(b"a", b"1"))
    assert session.feed(b"flush_all 10\r\n") == OK
    clock.advance(9)
    assert session.feed(b"get a\r\n") == hit(b"a", b"1")
    clock.advance(1)
    assert session.feed(b"get a\r\n") == END


def test_items_stored_after_a_delayed_flush_has_happened_live(session, clock):
    session.feed(b"flush_all 10\r\n")
    clock.advance(11)
    session.feed(set_cmd(b"a", b"1"))
    assert session.feed(b"get a\r\n") == hit(b"a", b"1")


def test_flush_all_with_a_delay_above_thirty_days_is_an_absolute_unix_time(session, clock):
    session.feed(set_cmd(b"a", b"1"))
    assert session.feed(b"flush_all %d\r\n" % (int(NOW) + 100)) == OK
    clock.advance(99)
    assert session.feed(b"get a\r\n") == hit(b"a", b"1")
    clock.advance(2)
    assert session.feed(b"get a\r\n") == END


@pytest.mark.parametrize("command", [b"flush_all noreply\r\n", b"flush_all 0 noreply\r\n"])
def test_flush_all_with_noreply_flushes_silently(session, command):
    session.feed(set_cmd(b"a", b"1"))
    assert session.feed(command) == b""
    assert session.feed(b"get a\r\n") == END


def test_flush_all_with_a_delay_and_noreply_flushes_later_silently(session, clock):
    session.feed(set_cmd(b"a", b"1"))
    assert session.feed(b"flush_all 10 noreply\r\n") == b""
    assert session.feed(b"get a\r\n") == hit(b"a", b"1")
    clock.advance(10)
    assert session.feed(b"get a\r\n") == END


def test_flush_all_with_a_bad_delay_is_a_client_error_and_flushes_nothing(session):
    session.feed(set_cmd(b"a", b"1"))
    assert session.feed(b"flush_all abc\r\n") == BAD_EXPTIME
    assert session.feed(b"get a\r\n") == hit(b"a", b"1")


def test_flush_all_with_too_many_words_is_error(session):
    assert session.feed(b"flush_all 0 noreply x\r\n") == ERROR


def test_flush_all_is_counted(session):
    session.feed(b"flush_all\r\nflush_all 0 noreply\r\n")
    assert stats(session)["cmd_flush"] == "2"


# == version, verbosity, cache_memlimit, quit ==================================


def test_version_answers_the_version(session):
    assert session.feed(b"version\r\n") == VERSION
    assert VERSION.startswith(b"VERSION 1.6.")


def test_version_ignores_extra_words(session):
    assert session.feed(b"version extra\r\n") == VERSION


def test_verbosity_sets_the_level(session):
    assert session.feed(b"verbosity 1\r\n") == OK
    assert stats(session, b"settings")["verbosity"] == "1"


def test_verbosity_with_noreply_is_silent(session):
    assert session.feed(b"verbosity 1 noreply\r\n") == b""
    assert session.feed(b"verbosity noreply\r\n") == b""


def test_verbosity_without_a_level_is_error(session):
    assert session.feed(b"verbosity\r\n") == ERROR


def test_verbosity_with_a_bad_level_is_a_bad_format_client_error(session):
    assert session.feed(b"verbosity abc\r\n") == BAD_FORMAT


def test_cache_memlimit_resizes_the_memory_limit(session, store):
    assert session.feed(b"cache_memlimit 100\r\n") == OK
    assert store.cache.limit == 100 << 20
    assert stats(session)["limit_maxbytes"] == str(100 << 20)


def test_cache_memlimit_with_noreply_is_silent(session, store):
    assert session.feed(b"cache_memlimit 100 noreply\r\n") == b""
    assert store.cache.limit == 100 << 20


@pytest.mark.parametrize("arg", [b"abc", b"-1"])
def test_cache_memlimit_with_a_bad_number_is_error(session, arg):
    assert session.feed(b"cache_memlimit " + arg + b"\r\n") == ERROR


def test_cache_memlimit_without_a_number_is_error(session):
    assert session.feed(b"cache_memlimit\r\n") == ERROR


@pytest.mark.parametrize("arg", [b"0", b"7", b"4294967296"])
def test_cache_memlimit_below_8_megabytes_is_too_small(session, store, arg):
    before = store.cache.limit
    assert session.feed(b"cache_memlimit " + arg + b"\r\n") == (
        b"MEMLIMIT_TOO_SMALL cannot set maxbytes to less than 8m\r\n"
    )
    assert store.cache.limit == before


def test_cache_memlimit_in_bytes_by_mistake_is_refused(session):
    assert session.feed(b"cache_memlimit 2000000000\r\n") == (
        b"MEMLIMIT_ADJUST_FAILED input value is megabytes not bytes\r\n"
    )


def test_quit_closes_without_a_reply(session):
    assert session.feed(b"quit\r\n") == b""
    assert session.closing


def test_quit_answers_what_came_before_and_ignores_what_follows(session):
    assert session.feed(b"version\r\nquit\r\nversion\r\n") == VERSION
    assert session.closing
    assert session.feed(b"version\r\n") == b""


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


def test_a_failed_read_is_a_server_error_instead_of_the_whole_get_reply(session, store, monkeypatch):
    session.feed(set_cmd(b"k", b"a"))  # k is in memory; "other" must be read from disk
    reason = _fail_with(store, monkeypatch, "read", errno.EIO)
    reply = session.feed(b"get k other\r\nversion\r\n")
    assert re.fullmatch(rb"SERVER_ERROR [^\r\n]*" + re.escape(reason) + rb"\r\n", reply[: -len(VERSION)]), reply
    assert reply.endswith(VERSION)


def test_a_too_large_set_that_cannot_drop_the_old_value_gets_one_reply(session, store, monkeypatch):
    session.feed(set_cmd(b"k", b"old"))
    _fail_with(store, monkeypatch, "remove", errno.EACCES)
    reply = session.feed(set_cmd(b"k", b"x" * 2000) + b"version\r\n")
    assert reply.endswith(VERSION)
    assert reply[: -len(VERSION)].count(b"\r\n") == 1, reply
