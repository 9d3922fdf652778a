"""The interactive shell, driven as a person drives it: `python -m cli` under a
pseudo-terminal (pexpect), typing lines and keys, reading what the terminal
shows. Every wait is for a given text under a deadline, never a sleep.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pexpect = pytest.importorskip("pexpect")

REPO_ROOT = Path(__file__).resolve().parent.parent
CTRL_C, CTRL_D, CTRL_P = "\x03", "\x04", "\x10"


class Shell:
    """One shell process on a pty; `run(line)` types a line and returns what
    it printed before the next prompt."""

    def __init__(self, port, history, extra=()):
        self.prompt = f"127.0.0.1:{port}> "
        self.child = pexpect.spawn(
            sys.executable, ["-m", "cli", "-p", str(port), *extra],
            cwd=str(REPO_ROOT), encoding="utf-8", timeout=10, dimensions=(50, 200),
            env={"MEMCACHED_LITE_CLI_HISTORY": str(history), "TERM": "dumb", "PATH": "/usr/bin:/bin"},
        )

    def wait_prompt(self, prompt=None):
        self.child.expect_exact(prompt or self.prompt)
        return self.child.before

    def run(self, line, prompt=None):
        self.child.sendline(line)
        out = self.wait_prompt(prompt)
        # drop the echo of the typed line
        return out.replace("\r\n", "\n").split("\n", 1)[1] if "\n" in out.replace("\r\n", "\n") else ""

    def close(self):
        if self.child.isalive():
            self.child.terminate(force=True)


@pytest.fixture
def open_shell(tmp_path):
    shells = []

    def start(server, extra=()):
        s = Shell(server.port, tmp_path / "history", extra)
        shells.append(s)
        s.wait_prompt()
        return s

    yield start
    for s in shells:
        s.close()


@pytest.fixture
def shell(open_shell, mclite):
    return open_shell(mclite)


@pytest.fixture
def key(request) -> str:
    return "sh:" + request.node.name[:60]


def test_the_prompt_shows_host_and_port(open_shell, mclite):
    s = open_shell(mclite)
    assert s.prompt == f"127.0.0.1:{mclite.port}> "


def test_set_with_the_value_on_the_line_and_options(shell, key):
    assert shell.run(f"set {key} 'hello world' --ttl 600 --flags 3").strip() == "STORED"


def test_get_shows_the_value_flags_and_cas(shell, key):
    shell.run(f"set {key} hello --flags 7")
    out = shell.run(f"get {key}")
    assert re.fullmatch(rf'{re.escape(key)}: "hello"  \(flags 7, cas \d+, 5 bytes\)\n', out)


def test_get_of_several_keys_lists_hits_and_misses(shell, key):
    shell.run(f"set {key}1 one")
    out = shell.run(f"get {key}1 {key}2").splitlines()
    assert out[0].startswith(f'{key}1: "one"')
    assert out[1] == f"{key}2: (not found)"


def test_a_binary_value_is_shown_escaped(shell, mclite, key):
    subprocess.run([sys.executable, "-m", "cli", "-p", str(mclite.port), "set", key], cwd=str(REPO_ROOT),
                   input=b"a\tb\r\n\x00\xff\xc3\xa9", check=True, capture_output=True, timeout=30)
    assert '"a\\tb\\r\\n\\x00\\xff\u00e9"' in shell.run(f"get {key}")


def test_the_raw_two_line_form_asks_for_the_data(shell, key):
    shell.child.sendline(f"set {key} 5 0 5")
    shell.child.expect_exact("data> ")
    assert shell.run("hello").strip() == "STORED"
    assert "(flags 5," in shell.run(f"get {key}")


def test_data_of_the_wrong_length_is_refused_and_not_sent(shell, key):
    shell.child.sendline(f"set {key} 0 0 5")
    shell.child.expect_exact("data> ")
    assert "the data is 3 bytes but the command says 5; nothing was sent" in shell.run("abc")
    assert "(not found)" in shell.run(f"get {key}")


def test_raw_mode_prints_exactly_what_the_server_sent(open_shell, mclite, key):
    s = open_shell(mclite, extra=["--raw"])
    s.run(f"set {key} hi")
    # the terminal shows the server's \r\n as \r\r\n (its own \n becomes \r\n)
    assert s.run(f"get {key}") == f"VALUE {key} 0 2\r\nhi\r\nEND\r\n"


def test_raw_can_be_switched_on_in_the_shell(shell, key):
    shell.run(f"set {key} hi")
    assert shell.run("raw on").strip() == "raw output on"
    assert shell.run(f"get {key}").startswith(f"VALUE {key} 0 2")


def test_stats_is_an_aligned_table(shell):
    lines = shell.run("stats").splitlines()
    starts = {len(line) - len(line.split()[-1]) for line in lines if line.split()[0] in ("pid", "uptime", "version")}
    assert len(starts) == 1


def test_help_lists_the_commands(shell):
    out = shell.run("help")
    for name in ("get", "set", "delete", "incr", "stats", "dump", "load", "quit"):
        assert re.search(rf"^  {name}\b", out, re.M), name


def test_help_of_a_command_shows_its_arguments(shell):
    out = shell.run("help set")
    assert "usage:" in out and "--ttl" in out and "--flags" in out


def test_other_protocol_lines_are_sent_as_typed(shell, key):
    shell.run(f"set {key} v")
    out = shell.run("lru_crawler metadump all")
    assert f"key={key.replace(':', '%3A')} " in out
    assert out.endswith("END\n")


def test_bad_input_is_a_message_not_a_traceback(shell):
    for line, message in [
        ("set 'a b' v", "a key cannot hold spaces"),
        ("incr k many", "not a whole number"),
        ("set k 'unclosed", "cannot read the line"),
        ("set k", "give the value on the line"),
        ("touch", "the following arguments are required"),
    ]:
        out = shell.run(line)
        assert message in out, (line, out)
        assert "Traceback" not in out


def test_a_server_error_is_shown_and_the_shell_goes_on(shell, key):
    shell.run(f"set {key} abc")
    assert "(error) CLIENT_ERROR cannot increment or decrement non-numeric value" in shell.run(f"incr {key}")
    assert shell.run("version").strip().startswith("1.6.")


def test_ctrl_c_cancels_the_line_being_typed(shell, key):
    shell.child.send(f"set {key} typed-but-cancelled")
    # As a user does: Ctrl-C once the text is on the screen. (CPython's
    # readline only notices a SIGINT that arrives while it waits in select();
    # one arriving while it is still handling typed keys waits for the next
    # key, so sending both at once would race.)
    shell.child.expect_exact("typed-but-cancelled")
    shell.child.send(CTRL_C)
    shell.wait_prompt()
    assert "(not found)" in shell.run(f"get {key}")


def test_ctrl_d_exits_with_status_0(shell):
    shell.child.send(CTRL_D)
    shell.child.expect(pexpect.EOF)
    shell.child.close()
    assert shell.child.exitstatus == 0


def test_quit_exits(shell):
    shell.child.sendline("quit")
    shell.child.expect(pexpect.EOF)


def test_history_persists_between_sessions(open_shell, mclite, key):
    first = open_shell(mclite)
    first.run(f"set {key} remembered")
    first.child.sendline("quit")
    first.child.expect(pexpect.EOF)
    second = open_shell(mclite)
    second.child.send(CTRL_P + CTRL_P)  # readline's previous-history, twice: past "quit"
    assert "STORED" in second.run("")


def test_a_dropped_connection_is_reported_and_the_next_command_reconnects(open_shell, start_mclite):
    server = start_mclite()
    s = open_shell(server)
    assert s.run("version").strip().startswith("1.6.")
    server.restart()  # same port; the shell's connection is gone
    out = s.run("version")
    assert "the server closed the connection; connecting to" in out
    assert out.splitlines()[-1].startswith("1.6.")


def test_a_server_that_went_away_is_an_error_then_it_is_retried(open_shell, start_mclite):
    server = start_mclite()
    s = open_shell(server)
    server.stop()
    not_connected = f"127.0.0.1:{server.port} (not connected)> "
    out = s.run("version", prompt=not_connected)
    assert "cannot connect to" in out
    server.start()
    assert s.run("version").strip().startswith("1.6.")


def test_nothing_listening_exits_2_with_a_clear_error(tmp_path, free_port):
    child = pexpect.spawn(sys.executable, ["-m", "cli", "-p", str(free_port())], cwd=str(REPO_ROOT),
                          encoding="utf-8", timeout=10)
    child.expect(pexpect.EOF)
    child.close()
    assert "error: cannot connect to 127.0.0.1:" in child.before
    assert child.exitstatus == 2


def test_lines_piped_in_run_without_prompts(mclite, key):
    r = subprocess.run([sys.executable, "-m", "cli", "-p", str(mclite.port)], cwd=str(REPO_ROOT),
                       input=f"set {key} piped\nget {key}\n".encode(), capture_output=True, timeout=30)
    assert r.stdout.decode().splitlines()[0] == "STORED"
    assert r.stdout.decode().splitlines()[1].startswith(f'{key}: "piped"')
    assert r.returncode == 0
