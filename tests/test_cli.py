"""The bundled client's one-shot commands, run as a user runs them: `python -m
cli ...` as a subprocess against a real server, judged by exit status,
stdout and stderr. Exit status: 0 done, 1 a miss, 2 an error.

The cli speaks only the wire protocol, so MCLITE_TARGET=memcached runs this
file against real memcached unchanged.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
EVERY_BYTE = bytes(range(256))


@pytest.fixture
def cli(mclite):
    """cli(*args, stdin=b"") -> CompletedProcess, against the module's server."""

    def run(*args, stdin=b"", port=None):
        argv = [sys.executable, "-m", "cli", "-p", str(port or mclite.port)]
        return subprocess.run(
            argv + [a if isinstance(a, bytes) else str(a) for a in args],
            input=stdin, capture_output=True, cwd=str(REPO_ROOT), timeout=30,
        )

    return run


@pytest.fixture
def key(request) -> str:
    return "cli:" + request.node.name[:100]


# -- get and set ------------------------------------------------------------------


def test_set_then_get_prints_exactly_the_value(cli, key):
    assert cli("set", key, "hello").returncode == 0
    r = cli("get", key)
    assert (r.returncode, r.stdout) == (0, b"hello")


def test_set_prints_stored(cli, key):
    r = cli("set", key, "v")
    assert (r.returncode, r.stdout) == (0, b"STORED\n")


def test_get_of_a_missing_key_exits_1_and_prints_nothing(cli, key):
    r = cli("get", key)
    assert (r.returncode, r.stdout, r.stderr) == (1, b"", b"")


def test_set_reads_the_value_from_stdin_when_none_is_given(cli, key):
    cli("set", key, stdin=b"from stdin")
    assert cli("get", key).stdout == b"from stdin"


def test_set_reads_stdin_for_a_dash(cli, key):
    cli("set", key, "-", stdin=b"dash")
    assert cli("get", key).stdout == b"dash"


def test_a_binary_value_from_stdin_comes_back_byte_for_byte(cli, key):
    cli("set", key, stdin=EVERY_BYTE * 4)
    assert cli("get", key).stdout == EVERY_BYTE * 4


def test_a_value_with_crlf_and_end_lines_comes_back_unchanged(cli, key):
    value = b"line\r\nEND\r\nVALUE x 0 1\r\n"
    cli("set", key, stdin=value)
    assert cli("get", key).stdout == value


def test_a_key_with_non_utf8_bytes_works(cli):
    key = b"cli:\xff\xfe"
    assert cli("set", key, "v").returncode == 0
    assert cli("get", key).stdout == b"v"


def test_flags_are_stored_and_shown_by_gets(cli, key):
    cli("set", key, "v", "--flags", "42")
    r = cli("gets", key)
    assert r.returncode == 0
    assert b"(flags 42, cas " in r.stdout


def test_a_ttl_in_the_past_stores_an_already_expired_item(cli, key):
    cli("set", key, "v", "--ttl", "-1")
    assert cli("get", key).returncode == 1


def test_get_of_several_keys_shows_each_with_flags_and_misses(cli, key):
    cli("set", key + "a", "one", "--flags", "1")
    r = cli("get", key + "a", key + "b")
    assert r.returncode == 1  # one of them missed
    lines = r.stdout.decode().splitlines()
    assert lines[0].startswith(f'{key}a: "one"  (flags 1, cas ')
    assert lines[1] == f"{key}b: (not found)"


def test_raw_prints_exactly_what_the_server_sent(cli, key):
    cli("set", key, "hi", "--flags", "3")
    r = cli("--raw", "get", key)
    assert r.stdout == b"VALUE %s 3 2\r\nhi\r\nEND\r\n" % key.encode()


def test_options_may_follow_the_command(cli, key, mclite):
    assert cli("set", key, "v", "-p", mclite.port).returncode == 0


# -- the other storage commands --------------------------------------------------


def test_add_of_an_existing_key_is_not_stored_and_exits_1(cli, key):
    cli("set", key, "v")
    r = cli("add", key, "w")
    assert (r.returncode, r.stdout) == (1, b"NOT_STORED\n")


def test_append_adds_to_the_value(cli, key):
    cli("set", key, "ab")
    cli("append", key, "cd")
    assert cli("get", key).stdout == b"abcd"


def test_cas_with_a_stale_token_exits_1(cli, key):
    cli("set", key, "v")
    r = cli("cas", key, "999999999", "w")
    assert (r.returncode, r.stdout) == (1, b"EXISTS\n")


# -- delete, incr/decr, touch, flush ------------------------------------------------


def test_delete_prints_deleted_then_a_miss(cli, key):
    cli("set", key, "v")
    assert cli("delete", key).stdout == b"DELETED\n"
    r = cli("delete", key)
    assert (r.returncode, r.stdout) == (1, b"NOT_FOUND\n")


def test_incr_prints_the_new_number(cli, key):
    cli("set", key, "41")
    r = cli("incr", key)
    assert (r.returncode, r.stdout) == (0, b"42\n")


def test_decr_by_a_delta(cli, key):
    cli("set", key, "10")
    assert cli("decr", key, "3").stdout == b"7\n"


def test_incr_of_a_missing_key_exits_1(cli, key):
    assert cli("incr", key).returncode == 1


def test_incr_of_a_non_number_is_a_server_error_exit_2(cli, key):
    cli("set", key, "abc")
    r = cli("incr", key)
    assert r.returncode == 2
    assert b"CLIENT_ERROR cannot increment or decrement non-numeric value" in r.stderr


def test_touch_prints_touched(cli, key):
    cli("set", key, "v")
    assert cli("touch", key, "100").stdout == b"TOUCHED\n"


def test_touch_of_a_missing_key_exits_1(cli, key):
    assert cli("touch", key, "100").returncode == 1


def test_flush_with_a_delay_far_away_prints_ok(cli):
    # a delayed flush an hour away: the module's other items live on
    r = cli("flush", "3600")
    assert (r.returncode, r.stdout) == (0, b"OK\n")


# -- stats, version, send ------------------------------------------------------------


def test_version_prints_the_version_alone(cli):
    r = cli("version")
    assert r.returncode == 0
    assert r.stdout.strip().startswith(b"1.6.")


def test_stats_is_an_aligned_table(cli):
    lines = cli("stats").stdout.decode().splitlines()
    assert lines[0].split()[0] == "pid"
    columns = {line.index(line.split()[1], len(line.split()[0])) for line in lines}
    assert len(columns) == 1  # every value starts in the same column


def test_stats_with_an_unknown_subcommand_exits_2(cli):
    assert cli("stats", "bogus").returncode == 2


def test_send_passes_a_protocol_line_through(cli):
    r = cli("send", "verbosity", "0")
    assert (r.returncode, r.stdout) == (0, b"OK\n")


# -- bad input and no server ------------------------------------------------------


def test_nothing_listening_is_a_clear_error_and_exit_2(cli, free_port):
    r = cli("get", "k", port=free_port())
    assert r.returncode == 2
    assert b"cannot connect to 127.0.0.1:" in r.stderr
    assert b"Traceback" not in r.stderr


def test_a_key_with_a_space_is_refused_before_sending(cli):
    r = cli("get", "a b")
    assert r.returncode == 2
    assert b"a key cannot hold spaces" in r.stderr


def test_a_key_over_250_bytes_is_refused(cli):
    r = cli("set", "k" * 251, "v")
    assert r.returncode == 2
    assert b"at most 250 bytes" in r.stderr


def test_a_ttl_that_is_not_a_number_is_a_usage_error(cli, key):
    r = cli("set", key, "v", "--ttl", "soon")
    assert r.returncode == 2
    assert b"not a whole number: 'soon'" in r.stderr
    assert b"Traceback" not in r.stderr


def test_flags_beyond_32_bits_are_refused(cli, key):
    r = cli("set", key, "v", "--flags", str(1 << 32))
    assert r.returncode == 2


def test_an_unknown_command_is_a_usage_error(cli):
    r = cli("frobnicate")
    assert r.returncode == 2
    assert b"invalid choice: 'frobnicate'" in r.stderr


def test_a_storage_command_through_send_is_refused(cli):
    r = cli("send", "set", "k", "0", "0", "1")
    assert r.returncode == 2
    assert b"use set KEY VALUE" in r.stderr


def test_help_exits_0(cli):
    r = cli("--help")
    assert r.returncode == 0
    assert b"exit status: 0 done, 1 a miss" in r.stdout


def test_the_console_script_is_declared():
    text = (REPO_ROOT / "pyproject.toml").read_text()
    assert 'memcached-lite-cli = "cli.__main__:console_script"' in text


def test_cli_imports_nothing_of_the_server():
    code = "import sys, cli.__main__; print(sorted(m for m in ('reactor', 'handlers', 'store') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, cwd=str(REPO_ROOT), timeout=30)
    assert out.stdout == b"[]\n"


def test_a_server_that_never_answers_is_a_timeout_error_exit_2(tmp_path):
    with socket.socket() as silent:  # accepts (the kernel does), never replies
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        r = subprocess.run([sys.executable, "-m", "cli", "-p", str(port), "-t", "0.3", "version"],
                           capture_output=True, cwd=str(REPO_ROOT), timeout=30)
    assert r.returncode == 2
    assert b"sent no reply within 0.3 s" in r.stderr


def test_a_unix_socket_nobody_listens_on_is_an_error_naming_its_path(tmp_path):
    path = tmp_path / "none.sock"
    r = subprocess.run(
        [sys.executable, "-m", "cli", "-s", str(path), "get", "k"],
        capture_output=True, cwd=str(REPO_ROOT), timeout=30,
    )
    assert r.returncode == 2
    assert f"cannot connect to {path}: No such file or directory".encode() in r.stderr
