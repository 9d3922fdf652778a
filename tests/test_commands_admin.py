"""version, verbosity, cache_memlimit and quit fed to a sans-I/O session.

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
    VERSION,
    ERROR,
    OK,
    BAD_FORMAT,
)


from sessions import cas_of, set_cmd, stats, store  # noqa: E402,F401

# fsync changes nothing in the bytes a session answers
pytestmark = pytest.mark.usefixtures("no_fsync")


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
