"""-Y: memcached's ASCII authentication (the `commands.auth` family): before a
connection authenticates every line is `CLIENT_ERROR unauthenticated` except
the auth `set` whose data is `<user> <password>`; the -Y file's reading and
reloading. Byte for byte what memcached 1.6.18 answers with `-Y`
(test_differential_stats.py compares them with it on every run).

Sans-I/O: a Session fed bytes, a FakeClock, no socket.
"""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import handlers  # noqa: E402
from commands import auth  # noqa: E402
from handlers import Session  # noqa: E402
from store import Store  # noqa: E402

from sessions import stats  # noqa: E402

END = b"END\r\n"
STORED = b"STORED\r\n"

pytestmark = pytest.mark.usefixtures("no_fsync")


@pytest.fixture
def store(tmp_path, clock):
    s = Store(str(tmp_path / "data"), clock=clock)
    yield s
    s.close()


@pytest.fixture
def auth_server(server, tmp_path):
    path = tmp_path / "auth"
    path.write_bytes(b"alice:secret\nbob:pw2\r\n")
    server.load_auth(str(path))
    return server


@pytest.fixture
def guest(auth_server):
    """A session of a server started with -Y, not authenticated yet."""
    s = Session(auth_server)
    yield s
    s.close()


@pytest.mark.parametrize("line", [b"get a", b"version", b"stats", b"quit", b"add a 0 0 1", b"set a 0 0", b""])
def test_before_authenticating_every_other_command_is_unauthenticated(guest, line):
    assert guest.feed(line + b"\r\n") == b"CLIENT_ERROR unauthenticated\r\n"
    assert not guest.closing


def test_the_auth_set_with_a_known_user_is_stored_and_unlocks_the_connection(guest):
    assert guest.feed(b"set any 0 0 12\r\nalice secret\r\n") == STORED
    assert guest.feed(b"version\r\n") == b"VERSION %s\r\n" % handlers.VERSION.encode()


def test_the_auth_set_stores_nothing(guest):
    guest.feed(b"set any 5 5 12\r\nalice secret\r\n")
    assert guest.feed(b"get any\r\n") == END


def test_after_authenticating_set_is_a_set_again(guest):
    guest.feed(b"set any 0 0 12\r\nalice secret\r\n")
    guest.feed(b"set any 0 0 7\r\nbob pw2\r\n")
    assert guest.feed(b"get any\r\n") == b"VALUE any 0 7\r\nbob pw2\r\nEND\r\n"


def test_a_wrong_password_is_an_authentication_failure_and_the_connection_stays(guest):
    assert guest.feed(b"set a 0 0 10\r\nalice nope\r\n") == b"CLIENT_ERROR authentication failure\r\n"
    assert guest.feed(b"set a 0 0 7\r\nbob pw2\r\n") == STORED


def test_data_without_a_space_is_a_bad_token_format(guest):
    assert guest.feed(b"set a 0 0 1\r\nx\r\n") == b"CLIENT_ERROR bad authentication token format\r\n"


def test_auth_data_not_ended_by_crlf_is_a_bad_termination(guest):
    reply = guest.feed(b"set a 0 0 12\r\nalice secret \r\n")
    assert reply.startswith(b"CLIENT_ERROR bad command line termination\r\n")


def test_extra_words_after_the_password_are_ignored(guest):
    assert guest.feed(b"set a 0 0 13\r\nalice secret \r\n") == STORED


def test_the_auth_set_is_answered_under_noreply_too(guest):
    assert guest.feed(b"set a 0 0 12 noreply\r\nalice secret\r\n") == STORED


def test_the_auth_set_may_arrive_a_byte_at_a_time(guest):
    data = b"set a 0 0 12\r\nalice secret\r\n"
    replies = b"".join(guest.feed(data[i : i + 1]) for i in range(len(data)))
    assert replies == STORED


def test_an_oversized_auth_set_is_dropped_and_refused(guest):
    assert guest.feed(b"set a 0 0 100000\r\n") == b"CLIENT_ERROR bad authentication token format\r\n"
    assert guest.feed(b"x" * 100000 + b"\r\n") == b""
    assert guest.feed(b"set a 0 0 12\r\nalice secret\r\n") == STORED


def test_auth_attempts_and_failures_are_counted(guest):
    guest.feed(b"set a 0 0 10\r\nalice nope\r\nset a 0 0 1\r\nx\r\nset a 0 0 12\r\nalice secret\r\n")
    rows = stats(guest)
    assert (rows["auth_cmds"], rows["auth_errors"], rows["cmd_set"]) == ("2", "1", "0")


def test_stats_settings_show_the_auth_file_as_memcached(guest):
    guest.feed(b"set a 0 0 12\r\nalice secret\r\n")
    assert stats(guest, b"settings")["auth_enabled_ascii"] == guest.server.settings.auth_file


def test_reload_reads_the_auth_file_again(auth_server, tmp_path):
    (tmp_path / "auth").write_bytes(b"carol:new\n")
    assert auth_server.reload_auth() is True
    s = Session(auth_server)
    assert s.feed(b"set a 0 0 12\r\nalice secret\r\n") == b"CLIENT_ERROR authentication failure\r\n"
    assert s.feed(b"set a 0 0 9\r\ncarol new\r\n") == STORED
    s.close()


def test_a_failed_reload_keeps_the_old_users(auth_server, tmp_path):
    (tmp_path / "auth").write_bytes(b"no colon here\n")
    assert auth_server.reload_auth() is False
    s = Session(auth_server)
    assert s.feed(b"set a 0 0 12\r\nalice secret\r\n") == STORED
    s.close()


def test_reload_without_an_auth_file_does_nothing(server):
    assert server.reload_auth() is None


@pytest.mark.parametrize("content", [b"", b"nocolon\n", b":nouser\n"])
def test_a_malformed_auth_file_is_refused(tmp_path, content):
    path = tmp_path / "auth"
    path.write_bytes(content)
    with pytest.raises(auth.AuthFileError):
        auth.load_auth_file(str(path))


def test_an_auth_file_ignores_blank_lines_and_keeps_colons_in_passwords(tmp_path):
    path = tmp_path / "auth"
    path.write_bytes(b"a:b:c\n\nd:e")
    assert auth.load_auth_file(str(path)) == [(b"a", b"b:c"), (b"d", b"e")]
