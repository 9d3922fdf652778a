"""`watch`'s refusals fed to a sans-I/O session (checked against memcached 1.6.18)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sessions import store  # noqa: E402,F401

from handlers import Server, Session  # noqa: E402
from options import parse_args  # noqa: E402


def _session(store, **settings):
    server = Server(store)
    for name, value in settings.items():
        setattr(server.settings, name, value)
    return Session(server)


def test_watch_under_disable_watch_is_a_client_error(store):
    s = _session(store, watch_enabled=False)
    assert s.feed(b"watch fetchers\r\n") == b"CLIENT_ERROR watch commands not allowed\r\n"


def test_watch_with_an_unknown_stream_is_an_error(store):
    assert _session(store).feed(b"watch bogus\r\n") == b"ERROR\r\n"


def test_dash_w_turns_watch_off():
    assert parse_args(["-W"]).disable_watch
