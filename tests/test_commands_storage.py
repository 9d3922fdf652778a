"""The storage commands (set add replace append prepend cas) fed to a
sans-I/O session, and what expiry does to what they stored.

Every test drives a `Session` with bytes and compares the bytes it returns; no
socket, no thread, no sleep. Time is a `FakeClock` shared by the store and the
server. Where a reply was in doubt it was checked against the real memcached
1.6.18. Moved from test_handlers.py as the commands moved to their families.
"""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


NOW = 1_700_000_000.0
THIRTY_DAYS = 60 * 60 * 24 * 30
ITEM_SIZE_MAX = 1024  # memcached's smallest -I; keeps the too-large tests small

from replies import (  # noqa: E402
    END,
    STORED,
    NOT_STORED,
    EXISTS,
    NOT_FOUND,
    hit,
)


from sessions import cas_of, set_cmd, stats, store  # noqa: E402,F401

# fsync changes nothing in the bytes a session answers
pytestmark = pytest.mark.usefixtures("no_fsync")


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


# -- -C (--disable-cas): memcached's replies, the store's own cas kept ---------


def test_under_C_gets_shows_cas_0_and_the_store_keeps_its_own(session, store):
    session.server.settings.cas_enabled = False
    session.feed(set_cmd(b"k", b"v"))
    assert session.feed(b"gets k\r\n") == b"VALUE k 0 1 0\r\nv\r\nEND\r\n"
    assert store.peek(b"k").cas > 0


def test_under_C_a_cas_on_an_existing_key_is_exists_whatever_its_token(session, store):
    session.server.settings.cas_enabled = False
    session.feed(set_cmd(b"k", b"v"))
    token = store.peek(b"k").cas
    assert session.feed(b"cas k 0 0 1 %d\r\nw\r\n" % token) == b"EXISTS\r\n"
    assert store.peek(b"k").value == b"v"


def test_under_C_a_cas_on_a_missing_key_is_not_found(session):
    session.server.settings.cas_enabled = False
    assert session.feed(b"cas k 0 0 1 0\r\nw\r\n") == b"NOT_FOUND\r\n"
