"""The meta commands in the session (sans-I/O), as a specification: each
command whole, byte by byte and glued to the next in a pipeline; quiet mode
with mn closing a batch; the flags memcached 1.6.18 does not know but later
versions document (E, ms N, md x); and meta item state that must reach the
record (stale, recache token, fetched, base64 key) across a store restart.

Replies checked against the real memcached live in test_differential.py.
"""

import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from handlers import Server, Session, Settings  # noqa: E402
from store import Store  # noqa: E402

pytestmark = pytest.mark.usefixtures("no_fsync")


@pytest.fixture
def opened(tmp_path, clock):
    """Factory of sessions on the one data dir; stores closed at teardown."""
    stores = []

    def open_session():
        store = Store(str(tmp_path / "data"), item_size_max=1024, clock=clock)
        stores.append(store)
        return Session(Server(store, Settings(), clock=clock))

    yield open_session
    for store in stores:
        if store.dir._lock_fd is not None:
            store.close()


@pytest.fixture
def session(opened):
    return opened()


def feed_bytewise(session, data):
    return [session.feed(data[i : i + 1]) for i in range(len(data))]


def cas_of(session, key):
    return int(re.search(rb" c(\d+)", session.feed(b"mg " + key + b" c\r\n")).group(1))


# (setup, command, reply) for each meta command's main paths
CASES = {
    "mn": (b"", b"mn\r\n", b"MN\r\n"),
    "mg-miss": (b"", b"mg k v\r\n", b"EN\r\n"),
    "mg-hit": (b"ms k 2 F3\r\nhi\r\n", b"mg k v f s k O9\r\n", b"VA 2 f3 s2 kk O9\r\nhi\r\n"),
    "mg-vivify": (b"", b"mg k N30 t v\r\n", b"VA 0 t30 W\r\n\r\n"),
    "ms": (b"", b"ms k 5 T0 F1\r\nhello\r\n", b"HD\r\n"),
    "ms-crlf-in-value": (b"", b"ms k 4\r\n\r\n\r\n\r\n", b"HD\r\n"),
    "ms-add-existing": (b"ms k 1\r\na\r\n", b"ms k 1 ME\r\nb\r\n", b"NS\r\n"),
    "ms-bad-chunk": (b"", b"ms k 1\r\nabc", b"CLIENT_ERROR bad data chunk\r\n"),
    "ms-bad-flag-swallows": (b"", b"ms k 2 Z\r\nab\r\n", b"CLIENT_ERROR invalid flag\r\n"),
    "md": (b"ms k 1\r\na\r\n", b"md k k\r\n", b"HD kk\r\n"),
    "md-miss": (b"", b"md k O1\r\n", b"NF O1\r\n"),
    "ma": (b"ms k 1\r\n9\r\n", b"ma k v\r\n", b"VA 2\r\n10\r\n"),
    "ma-vivify": (b"", b"ma k N0 J5 v\r\n", b"VA 1\r\n5\r\n"),
    "me": (b"set k 0 0 1\r\na\r\n", b"me k\r\n", b"ME k exp=-1 la=0 cas=1 fetch=no cls=1 size=61\r\n"),
    "me-miss": (b"", b"me k\r\n", b"EN\r\n"),
}


@pytest.mark.parametrize("case", CASES)
def test_a_meta_command_fed_whole_is_answered(session, case):
    setup, command, reply = CASES[case]
    session.feed(setup)
    assert session.feed(command) == reply


# answered once the command line is read; the data that follows is dropped
ANSWERED_AT_THE_LINE = {"ms-bad-flag-swallows"}


@pytest.mark.parametrize("case", sorted(set(CASES) - ANSWERED_AT_THE_LINE))
def test_a_meta_command_fed_byte_by_byte_is_answered_at_its_last_byte(session, case):
    setup, command, reply = CASES[case]
    session.feed(setup)
    replies = feed_bytewise(session, command)
    assert replies[:-1] == [b""] * (len(command) - 1)
    assert replies[-1] == reply


def test_a_refused_ms_fed_byte_by_byte_is_answered_at_its_line_end_then_its_data_dropped(session):
    line, data = b"ms k 2 Z\r\n", b"ab\r\n"
    replies = feed_bytewise(session, line + data)
    assert replies[len(line) - 1] == b"CLIENT_ERROR invalid flag\r\n"
    assert b"".join(replies) == replies[len(line) - 1]
    assert session.feed(b"mg k v\r\n") == b"EN\r\n"


@pytest.mark.parametrize("case", CASES)
def test_a_meta_command_glued_to_the_next_is_answered_then_the_next(session, case):
    setup, command, reply = CASES[case]
    session.feed(setup)
    assert session.feed(command + b"mn\r\n") == reply + b"MN\r\n"


def test_a_quiet_batch_answers_only_what_memcached_does_and_mn_ends_it(session):
    batch = (
        b"ms a 1 q\r\n1\r\nms b 1 q\r\n2\r\n"  # stored: silent
        b"mg a q v k\r\nmg zz q v k\r\n"  # a hit answers, a miss is silent
        b"md zz q\r\nmd b q\r\n"  # a miss answers NF, a delete is silent
        b"ma a q\r\nma zz q\r\n"  # an incr is silent, a miss answers NF
        b"ms a 1 q ME\r\nx\r\n"  # not stored: answers NS
        b"mn\r\n"
    )
    assert session.feed(batch) == b"VA 1 ka\r\n1\r\nNF\r\nNF\r\nNS\r\nMN\r\n"


def test_a_quiet_batch_fed_byte_by_byte_gives_the_same_bytes(session):
    batch = b"ms a 1 q\r\n1\r\nmg a q v\r\nmg zz q v\r\nmd a q\r\nmn\r\n"
    assert b"".join(feed_bytewise(session, batch)) == b"VA 1\r\n1\r\nMN\r\n"


def test_errors_are_answered_even_in_quiet_mode_and_the_stream_stays_in_step(session):
    stream = b"mg k q v v\r\nms k 2 q Fx\r\nab\r\nma k q Mx\r\nmn\r\n"
    assert session.feed(stream) == (
        b"CLIENT_ERROR duplicate flag\r\nCLIENT_ERROR bad command line format\r\n"
        b"CLIENT_ERROR invalid mode for ma M token\r\nMN\r\n"
    )


def test_a_too_large_ms_is_refused_at_once_and_its_data_dropped_as_it_comes(session):
    session.feed(b"ms k 1\r\na\r\n")
    assert session.feed(b"ms k 5000 q\r\n") == b"SERVER_ERROR object too large for cache\r\n"
    assert session.feed(b"x" * 5000) == b""
    assert session.feed(b"\r\nmg k v\r\n") == b"EN\r\n"


def test_ms_with_an_explicit_cas_stores_it(session):
    assert session.feed(b"ms k 1 E12345 c\r\na\r\n") == b"HD c12345\r\n"
    assert cas_of(session, b"k") == 12345


def test_an_explicit_cas_moves_the_counter_past_it(session):
    session.feed(b"ms k 1 E1000000000000\r\na\r\n")
    assert session.feed(b"ms j 1 c\r\nb\r\n") == b"HD c1000000000001\r\n"


def test_flush_all_kills_an_item_stored_with_a_high_explicit_cas(session):
    session.feed(b"ms k 1 E1000000000000\r\na\r\n")
    assert session.feed(b"flush_all\r\nmg k v\r\n") == b"OK\r\nEN\r\n"


def test_an_explicit_cas_survives_a_restart_as_the_counters_floor(opened):
    first = opened()
    first.feed(b"ms k 1 E5000000\r\na\r\n")
    first.store.close()
    again = opened()
    assert again.feed(b"ms j 1 c\r\nb\r\n") == b"HD c5000001\r\n"


def test_mg_vivify_with_an_explicit_cas_gives_the_new_item_that_cas(session):
    assert session.feed(b"mg k N30 E777 c\r\n") == b"HD c777 W\r\n"


def test_md_invalidate_with_an_explicit_cas(session):
    session.feed(b"ms k 1\r\na\r\n")
    assert session.feed(b"md k I E999\r\nmg k c\r\n") == b"HD\r\nHD c999 X W\r\n"


def test_ma_with_an_explicit_cas(session):
    session.feed(b"ms k 1\r\n1\r\n")
    assert session.feed(b"ma k E4242 c\r\n") == b"HD c4242\r\n"


def test_ms_append_with_autovivify_creates_a_missing_item(session):
    assert session.feed(b"ms k 1 MA N30\r\na\r\nmg k v t\r\n") == b"HD\r\nVA 1 t30\r\na\r\n"


def test_ms_append_without_autovivify_to_a_missing_item_is_not_stored(session):
    assert session.feed(b"ms k 1 MA\r\na\r\n") == b"NS\r\n"


def test_md_x_keeps_the_item_with_an_empty_value(session):
    session.feed(b"ms k 3 F7 T100\r\nabc\r\n")
    assert session.feed(b"md k x\r\nmg k v f t\r\n") == b"HD\r\nVA 0 f7 t100\r\n\r\n"


def test_mg_h_and_l_report_the_state_before_this_fetch(session, clock):
    session.feed(b"ms k 1\r\na\r\n")
    clock.now += 20
    assert session.feed(b"mg k h l\r\n") == b"HD h0 l20\r\n"
    assert session.feed(b"mg k h l\r\n") == b"HD h1 l0\r\n"


@pytest.mark.parametrize("step", [3600, -3600], ids=["forward", "back"])
def test_mg_t_counts_down_on_the_monotonic_clock_across_a_wall_clock_step(stepped_session, stepped_clock, step):
    stepped_session.feed(b"ms k 1 T100\r\nv\r\n")
    stepped_clock.step(step)
    stepped_clock.run(10)
    assert stepped_session.feed(b"mg k t\r\n") == b"HD t90\r\n"


def test_a_get_does_not_write_the_item_file(session):
    session.feed(b"ms k 1\r\na\r\n")
    path = session.store.dir.locate(b"k")[1]
    before = Path(path).stat().st_mtime_ns, Path(path).stat().st_ino
    session.feed(b"mg k v\r\nget k\r\n")
    assert (Path(path).stat().st_mtime_ns, Path(path).stat().st_ino) == before


def test_stale_and_recache_token_reach_the_record(opened):
    first = opened()
    first.feed(b"ms k 3 T100\r\nold\r\nmd k I\r\n")
    assert first.feed(b"mg k v\r\n") == b"VA 3 X W\r\nold\r\n"
    first.store.dir.close()  # a crash: nothing more is written
    second = opened()
    assert second.feed(b"mg k v\r\n") == b"VA 3 Z X\r\nold\r\n"


def test_fetched_and_last_access_are_saved_at_close(opened, clock):
    first = opened()
    first.feed(b"ms k 1\r\na\r\n")
    clock.now += 50
    first.feed(b"mg k\r\n")
    first.store.close()
    clock.now += 10
    assert opened().feed(b"mg k h l\r\n") == b"HD h1 l10\r\n"


def test_a_binary_key_is_echoed_encoded_after_a_restart(opened):
    first = opened()
    first.feed(b"ms Zm9vYg== 1 b\r\na\r\n")
    first.store.close()
    assert opened().feed(b"mg foob k\r\nme foob\r\n") == (
        b"HD kZm9vYg== b\r\nME Zm9vYg== exp=-1 la=0 cas=1 fetch=yes cls=1 size=64\r\n"
    )
