"""The interactive shell: a prompt showing host:port, readline editing and
persistent history where the platform has readline, the client's commands
(`set k v --ttl 60`, `get a b c`, `stats`...) and any protocol line typed as
in telnet, the raw two-line storage form included.

Ctrl-C cancels the line being typed (or the request in flight, whose
connection is then dropped, being out of step); Ctrl-D exits. A connection
the server dropped is reported, and the next command connects again.
"""

import argparse
import os
import shlex
import sys

from . import commands, render
from .client import STORAGE, Client, ClientError, ConnectFailed, address_of

try:
    import readline
except ImportError:  # e.g. Windows without pyreadline: plain input()
    readline = None

HISTORY_ENV = "MEMCACHED_LITE_CLI_HISTORY"
HISTORY_LENGTH = 1000
SHELL_ONLY = {
    "help": "help [COMMAND]: the commands, or one command's arguments",
    "raw": "raw [on|off]: print replies exactly as the server sends them",
    "quit": "quit (or exit, or Ctrl-D): leave the shell",
}
RAW_FORMS = """\
Anything else is sent to the server as typed, e.g. `lru_crawler metadump all`,
`verbosity 1`, `gat 60 k`, and the protocol's own two-line storage form:
    set KEY FLAGS EXPTIME BYTES [noreply]      (the data on the next line)
Quote a value with spaces: set greeting "hello world" --ttl 60"""


def history_path():
    return os.environ.get(HISTORY_ENV) or os.path.expanduser("~/.memcached_lite_cli_history")


class Shell:
    """One interactive session against host:port (taken from args)."""

    def __init__(self, args, parser, stdin=None, out=None, err=None):
        self.args = args
        self.parser = parser
        self.stdin = stdin if stdin is not None else sys.stdin
        self.out = out if out is not None else sys.stdout
        self.err = err if err is not None else sys.stderr
        self.interactive = self.stdin.isatty()
        self.address = address_of(args.host, args.port)
        self.raw = args.raw
        self.client = None
        self.worst = commands.OK
        self._commands = _subcommands(parser)

    # -- the connection -------------------------------------------------------

    def connection(self):
        if self.client is not None and self.client.peer_closed():
            self.warn(f"the server closed the connection; connecting to {self.address} again")
            self.drop()
        if self.client is None:
            self.client = Client(self.args.host, self.args.port, self.args.timeout, self.args.connect_timeout)
        return self.client

    def drop(self):
        if self.client is not None:
            self.client.close()
            self.client = None

    # -- the loop -------------------------------------------------------------

    @property
    def prompt(self):
        if not self.interactive:
            return ""
        return f"{self.address}> " if self.client is not None else f"{self.address} (not connected)> "

    def run(self):
        try:
            self.connection()
        except ConnectFailed as e:
            self.warn(f"error: {e}")
            return commands.FAILED
        self._start_readline()
        try:
            while True:
                try:
                    line = self.read_line(self.prompt)
                except EOFError:
                    if self.interactive:
                        self._print("\n")
                    return commands.OK if self.interactive else self.worst
                except KeyboardInterrupt:
                    self._print("^C\n" if readline is None else "\n")
                    continue
                if self.execute(line) == "quit":
                    return commands.OK if self.interactive else self.worst
        finally:
            self._save_history()
            self.drop()

    def read_line(self, prompt):
        if self.interactive:
            return input(prompt)
        line = self.stdin.readline()
        if not line:
            raise EOFError
        return line.rstrip("\n").rstrip("\r")

    def execute(self, line):
        """Run one line; "quit" when the shell should end."""
        if not line.strip():
            return None
        try:
            code = self._dispatch(line)
        except commands.UsageError as e:
            self.warn(f"error: {e}")
            code = commands.FAILED
        except commands.HelpShown:
            code = commands.OK
        except KeyboardInterrupt:
            self.drop()
            self.warn("cancelled; the next command connects again")
            code = commands.FAILED
        except ConnectFailed as e:
            self.warn(f"error: {e}")
            code = commands.FAILED
        except ClientError as e:
            self.drop()
            self.warn(f"error: {e}; the next command connects again")
            code = commands.FAILED
        if code == "quit":
            return "quit"
        if code == commands.FAILED:
            self.worst = commands.FAILED
        return None

    def _dispatch(self, line):
        try:
            words = shlex.split(line)
        except ValueError as e:
            raise commands.UsageError(f"cannot read the line: {e}") from None
        name = words[0] if words else ""
        if name in ("quit", "exit"):
            return "quit"
        if name == "help":
            return self.help(words[1:])
        if name == "raw":
            return self.toggle_raw(words[1:])
        raw_words = os.fsencode(line).split()
        if _is_two_line_storage(raw_words):
            return self.two_line_storage(os.fsencode(line.strip()), raw_words)
        if name in self._commands and name != "shell":
            args = self.parser.parse_args(words, namespace=argparse.Namespace(**vars(self.args)))
            args.raw = args.raw or self.raw
            ctx = commands.Context(self.connection, args, out=self.out.buffer, err=self.err, shell=True)
            return args.handler(ctx, args)
        return self.passthrough(os.fsencode(line.strip()))

    # -- what is not a client command -----------------------------------------

    def passthrough(self, line):
        reply = self.connection().request(line)
        self.show(reply)
        return commands.FAILED if render.is_error(reply) else commands.OK

    def two_line_storage(self, line, words):
        declared = int(words[4])
        try:
            data = os.fsencode(self.read_line("data> " if self.interactive else ""))
        except EOFError:
            return "quit"
        if len(data) != declared:
            raise commands.UsageError(
                f"the data is {len(data)} bytes but the command says {declared}; nothing was sent"
            )
        reply = self.connection().request(line, data)
        self.show(reply)
        return commands.FAILED if render.is_error(reply) else commands.OK

    def show(self, reply):
        if self.raw:
            self.out.buffer.write(reply)
            self.out.flush()
        elif reply:
            self._print("\n".join(render.reply_lines(reply)) + "\n")
            self.out.flush()

    def help(self, topic):
        if topic:
            name = topic[0]
            if name in self._commands:
                self._print(self._commands[name].format_help())
            elif name in SHELL_ONLY or name == "exit":
                self._print(SHELL_ONLY.get(name, SHELL_ONLY["quit"]) + "\n")
            else:
                self._print(f"{name}: not a client command; it is sent to the server as typed\n")
            return commands.OK
        width = max(len(n) for n in self._commands)
        self._print("Commands (help COMMAND for its arguments):\n")
        shown = set()
        for name, sub in self._commands.items():
            if name != "shell" and id(sub) not in shown:  # an alias shares its parser
                shown.add(id(sub))
                self._print(f"  {name.ljust(width)}  {sub.description}\n")
        for text in SHELL_ONLY.values():
            self._print(f"  {text}\n")
        self._print(RAW_FORMS + "\n")
        return commands.OK

    def toggle_raw(self, words):
        if words and words[0] not in ("on", "off"):
            raise commands.UsageError("raw: say `raw on` or `raw off`")
        self.raw = (words[0] == "on") if words else not self.raw
        self._print(f"raw output {'on' if self.raw else 'off'}\n")
        return commands.OK

    def warn(self, text):
        self.err.write(text + "\n")
        self.err.flush()

    def _print(self, text):
        # flushed at once: commands write replies to the binary buffer below
        self.out.write(text)
        self.out.flush()

    # -- readline -------------------------------------------------------------

    def _start_readline(self):
        if readline is None or not self.interactive:
            return
        try:
            readline.read_history_file(history_path())
        except OSError:
            pass  # no history yet, or unreadable: start without
        readline.set_history_length(HISTORY_LENGTH)
        names = sorted(set(self._commands) | set(SHELL_ONLY) | {"exit"})

        def complete(text, state):
            if readline.get_begidx() > 0:
                return None  # only the command word is completed
            matches = [n + " " for n in names if n.startswith(text)]
            return matches[state] if state < len(matches) else None

        readline.set_completer(complete)
        readline.parse_and_bind("tab: complete")

    def _save_history(self):
        if readline is None or not self.interactive:
            return
        try:
            readline.write_history_file(history_path())
        except OSError as e:
            self.warn(f"warning: history not saved to {history_path()}: {e.strerror}")


def _subcommands(parser):
    for action in parser._actions:  # argparse offers no public way to list them
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _is_two_line_storage(words):
    if not words or words[0] not in STORAGE:
        return False
    need = 6 if words[0] == b"cas" else 5
    if len(words) not in (need, need + 1):
        return False
    if len(words) == need + 1 and words[-1] != b"noreply":
        return False
    numbers = words[2:need]
    return all(w.lstrip(b"-").isdigit() for w in numbers)
