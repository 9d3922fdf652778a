"""delete, incr/decr, touch and flush_all fed to a sans-I/O session.

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
    ERROR,
    END,
    NOT_FOUND,
    DELETED,
    TOUCHED,
    OK,
    BAD_EXPTIME,
    BAD_DELTA,
    NON_NUMERIC,
    DELETE_USAGE,
    hit,
)


from sessions import cas_of, set_cmd, stats, store  # noqa: E402,F401

# fsync changes nothing in the bytes a session answers
pytestmark = pytest.mark.usefixtures("no_fsync")


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


@pytest.mark.parametrize("step", [3600, -3600], ids=["forward", "back"])
def test_flush_all_with_a_delay_fires_after_its_seconds_not_at_a_wall_clock_step(
    stepped_session, stepped_clock, step
):
    stepped_session.feed(set_cmd(b"a", b"1"))
    assert stepped_session.feed(b"flush_all 10\r\n") == OK
    stepped_clock.step(step)
    stepped_clock.run(9)
    assert stepped_session.feed(b"get a\r\n") == hit(b"a", b"1")
    stepped_clock.run(1)
    assert stepped_session.feed(b"get a\r\n") == END


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
