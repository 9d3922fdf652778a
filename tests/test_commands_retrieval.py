"""The retrieval commands (get gets gat gats) fed to a sans-I/O session.

Every test drives a `Session` with bytes and compares the bytes it returns; no
socket, no thread, no sleep. Time is a `FakeClock` shared by the store and the
server. Where a reply was in doubt it was checked against the real memcached
1.6.18. Moved from test_handlers.py as the commands moved to their families.
"""

import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


NOW = 1_700_000_000.0
THIRTY_DAYS = 60 * 60 * 24 * 30
ITEM_SIZE_MAX = 1024  # memcached's smallest -I; keeps the too-large tests small

from replies import (  # noqa: E402
    END,
    BAD_EXPTIME,
    hit,
    value,
)


from sessions import cas_of, set_cmd, stats, store  # noqa: E402,F401

# fsync changes nothing in the bytes a session answers
pytestmark = pytest.mark.usefixtures("no_fsync")


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
