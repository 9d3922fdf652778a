"""The operator's switches as the protocol sees them: `shutdown` with and
without -A, flush_all under -F, the counters and settings they show.

Replies were checked against the real memcached 1.6.18 on loopback
(`memcached -A`, `memcached -F`, `-U 0 -t 1`): with -A, `shutdown` and
`shutdown graceful` close the connection without a reply and stop the server;
any other argument is `CLIENT_ERROR invalid shutdown mode`; under -F every
flush_all is `CLIENT_ERROR flush_all not allowed` (silent with noreply) and
still counted in cmd_flush.
"""

import pytest

from handlers import Server, Session, Settings
from store import Store

pytestmark = pytest.mark.usefixtures("no_fsync")

NOT_ENABLED = b"ERROR: shutdown not enabled\r\n"
INVALID_MODE = b"CLIENT_ERROR invalid shutdown mode\r\n"
FLUSH_REFUSED = b"CLIENT_ERROR flush_all not allowed\r\n"


class StopRecorder:
    """Stands in for Reactor.stop: records how it was asked to stop."""

    def __init__(self):
        self.calls = []

    def __call__(self, graceful=True):
        self.calls.append(graceful)


@pytest.fixture
def store(tmp_path):
    s = Store(str(tmp_path / "data"))
    yield s
    s.close()


def make_session(store, **knobs):
    settings = Settings()
    for name, value in knobs.items():
        setattr(settings, name, value)
    server = Server(store, settings)
    server.request_stop = StopRecorder()
    return Session(server), server


def stats(session, sub=b""):
    reply = session.feed(b"stats " + sub + b"\r\n")
    return dict(line.split(b" ", 2)[1:] for line in reply.split(b"\r\n") if line.startswith(b"STAT "))


def test_shutdown_without_A_is_refused_and_the_server_keeps_running(store):
    session, server = make_session(store)
    assert session.feed(b"shutdown\r\n") == NOT_ENABLED
    assert session.feed(b"shutdown graceful\r\n") == NOT_ENABLED
    assert server.request_stop.calls == [] and not session.closing


def test_shutdown_with_A_stops_the_server_and_closes_the_connection_without_a_reply(store):
    session, server = make_session(store, shutdown_enabled=True)
    assert session.feed(b"shutdown\r\n") == b""
    assert session.closing
    assert server.request_stop.calls == [False]


def test_shutdown_graceful_with_A_asks_for_a_graceful_stop(store):
    session, server = make_session(store, shutdown_enabled=True)
    assert session.feed(b"shutdown graceful\r\n") == b""
    assert session.closing
    assert server.request_stop.calls == [True]


@pytest.mark.parametrize("line", [b"shutdown now", b"shutdown graceful noreply", b"shutdown noreply"])
def test_shutdown_with_another_argument_is_an_invalid_mode(store, line):
    session, server = make_session(store, shutdown_enabled=True)
    assert session.feed(line + b"\r\n") == INVALID_MODE
    assert server.request_stop.calls == [] and not session.closing


def test_replies_before_a_shutdown_in_the_pipeline_are_sent_and_later_commands_ignored(store):
    session, server = make_session(store, shutdown_enabled=True)
    assert session.feed(b"version\r\nshutdown\r\nversion\r\n").count(b"VERSION ") == 1


@pytest.mark.parametrize("line", [b"flush_all", b"flush_all 10", b"flush_all x"])
def test_flush_all_under_F_is_refused_and_flushes_nothing(store, line):
    session, _ = make_session(store, flush_enabled=False)
    session.feed(b"set k 0 0 1\r\nv\r\n")
    assert session.feed(line + b"\r\n") == FLUSH_REFUSED
    assert session.feed(b"get k\r\n") == b"VALUE k 0 1\r\nv\r\nEND\r\n"


def test_flush_all_noreply_under_F_is_silent(store):
    session, _ = make_session(store, flush_enabled=False)
    assert session.feed(b"flush_all noreply\r\n") == b""


def test_a_refused_flush_all_is_counted_in_cmd_flush(store):
    session, _ = make_session(store, flush_enabled=False)
    session.feed(b"flush_all\r\nflush_all noreply\r\n")
    assert stats(session)[b"cmd_flush"] == b"2"


def test_stats_settings_show_the_switches(store):
    session, _ = make_session(store, flush_enabled=False, shutdown_enabled=True, idle_timeout=5)
    rows = stats(session, b"settings")
    assert rows[b"flush_enabled"] == b"no"
    assert rows[b"shutdown_command"] == b"yes"
    assert rows[b"idle_timeout"] == b"5"
    assert rows[b"ssl_enabled"] == b"no"


def test_stats_show_rejected_connections_and_idle_kicks(store):
    session, server = make_session(store)
    server.counters.rejected_connections = 3
    server.counters.idle_kicks = 2
    rows = stats(session)
    assert rows[b"rejected_connections"] == b"3" and rows[b"idle_kicks"] == b"2"


def test_a_session_counts_its_commands_for_the_idle_timer(store):
    session, _ = make_session(store)
    session.feed(b"version\r\nget a\r\nset k 0 0 1\r\n")
    assert session.commands == 3
    assert not session.awaiting_command  # in the value's data
    session.feed(b"v\r\n")
    assert session.awaiting_command
