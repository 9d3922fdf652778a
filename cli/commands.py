"""The client's commands, shared by one-shot use and the shell: their
arguments (one argparse parser, so `help get` in the shell and
`python -m cli get --help` say the same), and what each does and prints.

A command returns its exit code: 0 done, 1 a miss (not found, not stored,
exists), 2 an error (the server's ERROR/CLIENT_ERROR/SERVER_ERROR, bad
input, a lost connection). Bad input raises UsageError before anything is
sent.
"""

import argparse
import os
import sys

from . import render
from .client import ERRORS, STORAGE, key_problem, parse_stats, parse_values
from .dump import DumpFormatError
from .transfer import dump, load

OK, MISS, FAILED = 0, 1, 2
MISSES = {b"NOT_FOUND\r\n", b"NOT_STORED\r\n", b"EXISTS\r\n"}
# lru_crawler's refusals, errors too though not spelled like the others
FAILURES = ERRORS + (b"BADCLASS", b"BUSY")
MAX_U32 = (1 << 32) - 1
MAX_U64 = (1 << 64) - 1


class UsageError(Exception):
    """Input the client refuses; the message tells the user what is wrong."""


class HelpShown(Exception):
    """argparse printed help (or a version) and wants to stop."""


class _Parser(argparse.ArgumentParser):
    # the shell must survive bad input, so errors raise instead of exiting
    def error(self, message):
        raise UsageError(f"{self.prog}: {message}")

    def exit(self, status=0, message=None):
        if message:
            sys.stderr.write(message)
        raise HelpShown(status)


def _key(text):
    key = os.fsencode(text)
    problem = key_problem(key)
    if problem:
        raise argparse.ArgumentTypeError(f"{problem}: {text[:60]!r}")
    return key


def _number(limit, signed=False):
    def parse(text):
        try:
            n = int(text, 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        low = -(1 << 31) if signed else 0
        if not low <= n <= limit:
            raise argparse.ArgumentTypeError(f"{n} is outside {low}..{limit}")
        return n

    return parse


def add_connection_options(parser, defaults=True):
    """-H/-p/-s/timeouts/--raw; subcommands get them too (without defaults, so
    `python -m cli get k -p 11212` works and does not undo an earlier -p)."""
    d = (lambda v: v) if defaults else (lambda v: argparse.SUPPRESS)
    parser.add_argument("-H", "--host", default=d("127.0.0.1"), help="server host (127.0.0.1)")
    parser.add_argument("-p", "--port", type=_number(65535), default=d(11211), help="server port (11211)")
    parser.add_argument("-s", "--socket", default=d(None), metavar="PATH",
                        help="the server's unix-domain socket (its -s) instead of -H and -p")
    parser.add_argument("--connect-timeout", type=float, default=d(3.0), metavar="S",
                        help="seconds to wait for the connection (3)")
    parser.add_argument("-t", "--timeout", type=float, default=d(10.0), metavar="S",
                        help="seconds to wait for any reply (10)")
    parser.add_argument("--raw", action="store_true", default=d(False),
                        help="print replies exactly as the server sent them")


def use_socket(args):
    """With -s, the server is its socket's path: host is the path and port
    None, the form the client and dump/load take."""
    if getattr(args, "socket", None):
        args.host, args.port = args.socket, None
    return args


def build_parser(prog="python -m cli"):
    parser = _Parser(
        prog=prog,
        description="The memcached client memcached never shipped: one-shot commands, "
        "an interactive shell (no command), dump and load. Works with any memcached 1.6.",
        epilog="exit status: 0 done, 1 a miss (not found / not stored), 2 an error",
    )
    add_connection_options(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def command(name, help, handler, aliases=()):
        p = sub.add_parser(name, help=help, description=help, aliases=list(aliases))
        add_connection_options(p, defaults=False)
        p.set_defaults(handler=handler)
        return p

    p = command("get", "print the value of KEY; with several keys, each with its flags and cas", cmd_get)
    p.add_argument("keys", nargs="+", type=_key, metavar="KEY")
    p = command("gets", "show KEYs with their values, flags and cas tokens", cmd_get)
    p.add_argument("keys", nargs="+", type=_key, metavar="KEY")
    for verb, text in (
        ("set", "store VALUE under KEY"),
        ("add", "store VALUE under KEY unless KEY holds one"),
        ("replace", "store VALUE under KEY only if KEY holds one"),
        ("append", "add VALUE at the end of KEY's value"),
        ("prepend", "add VALUE at the start of KEY's value"),
        ("cas", "store VALUE under KEY if its cas token is still CAS"),
    ):
        p = command(verb, text + " (VALUE from stdin when omitted or -)", cmd_store)
        p.add_argument("key", type=_key, metavar="KEY")
        if verb == "cas":
            p.add_argument("cas", type=_number(MAX_U64), metavar="CAS")
        p.add_argument("value", nargs="?", metavar="VALUE")
        p.add_argument("--ttl", type=_number((1 << 31) - 1, signed=True), default=0,
                       help="seconds to live (memcached's rules: 0 never, over 30 days a unix time)")
        p.add_argument("--flags", type=_number(MAX_U32), default=0, help="the item's 32-bit flags")
        p.add_argument("--noreply", action="store_true", help="do not wait for the reply")
    p = command("delete", "remove KEY", cmd_delete)
    p.add_argument("key", type=_key, metavar="KEY")
    for verb in ("incr", "decr"):
        p = command(verb, f"{verb}ement the number in KEY by DELTA (1)", cmd_arith)
        p.add_argument("key", type=_key, metavar="KEY")
        p.add_argument("delta", nargs="?", type=_number(MAX_U64), default=1, metavar="DELTA")
    p = command("touch", "give KEY a new time to live", cmd_touch)
    p.add_argument("key", type=_key, metavar="KEY")
    p.add_argument("ttl", type=_number((1 << 31) - 1, signed=True), metavar="TTL")
    p = command("flush", "invalidate every item, now or in DELAY seconds", cmd_flush, aliases=("flush_all",))
    p.add_argument("delay", nargs="?", type=_number((1 << 31) - 1), metavar="DELAY")
    p = command("stats", "server statistics (stats settings, stats items, ...)", cmd_stats)
    p.add_argument("sub", nargs="*", metavar="SUB")
    command("version", "the server's version", cmd_version)
    p = command("dump", "write every live item to FILE (or stdout) in the dump format", cmd_dump)
    p.add_argument("-o", "--output", metavar="FILE", help="file to write (default: stdout)")
    _progress_options(p)
    p = command("load", "store every item of a dump FILE (or stdin)", cmd_load)
    p.add_argument("file", nargs="?", metavar="FILE", help="dump to read (default: stdin)")
    p.add_argument("--noreply", action="store_true",
                   help="pipeline sets without replies: faster, failures only counted")
    _progress_options(p)
    p = command("send", "send WORDS as one protocol line, as typed, and print the reply", cmd_send)
    p.add_argument("words", nargs="+", metavar="WORD")
    command("shell", "the interactive shell (the default without a command)", None)
    return parser


def _progress_options(p):
    g = p.add_mutually_exclusive_group()
    g.add_argument("--progress", dest="progress", action="store_true", default=None,
                   help="draw the progress line even when stderr is not a terminal")
    g.add_argument("--no-progress", dest="progress", action="store_false",
                   help="never draw it (default: only on a terminal)")


class Context:
    """What a command needs: a connection (made on first use), where to
    print, and whether the user reads the output (shell) or a script does."""

    def __init__(self, connect, args, out=None, err=None, stdin=None, shell=False):
        self._connect = connect
        self.args = args
        self.out = out if out is not None else sys.stdout.buffer
        self.err = err if err is not None else sys.stderr
        self.stdin = stdin if stdin is not None else sys.stdin.buffer
        self.shell = shell
        self.raw = args.raw

    @property
    def client(self):
        return self._connect()

    def write(self, data):
        self.out.write(data)
        self.out.flush()

    def say(self, *lines):
        self.write("".join(line + "\n" for line in lines).encode("utf-8", "surrogateescape"))

    def warn(self, text):
        self.err.write(text + "\n")
        self.err.flush()


def _finish(ctx, reply, hit_words=None):
    """Print a one-line reply and map it to an exit code."""
    if ctx.raw:
        ctx.write(reply)
    elif reply.startswith(FAILURES):
        ctx.warn("(error) " + reply.decode("utf-8", "replace").strip())
    elif reply:
        ctx.say(*render.reply_lines(reply))
    if reply.startswith(FAILURES):
        return FAILED
    if reply in MISSES:
        return MISS
    return OK


def cmd_get(ctx, args):
    verb = b"gets" if args.command == "gets" or not ctx.raw else b"get"
    reply = ctx.client.request(verb + b" " + b" ".join(args.keys))
    if reply.startswith(ERRORS):
        return _finish(ctx, reply)
    found = parse_values(reply)
    if ctx.raw:
        ctx.write(reply)
    elif args.command == "get" and len(args.keys) == 1 and not ctx.shell:
        # a script's `v=$(cli get k)`: the value's bytes and nothing else
        if found:
            value = found[0].value
            ctx.write(value + (b"\n" if _is_tty(ctx.out) and not value.endswith(b"\n") else b""))
    else:
        ctx.say(*render.values(found, args.keys))
    return OK if {v.key for v in found} >= set(args.keys) else MISS


def _is_tty(stream):
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _value(ctx, args):
    if args.value is not None and args.value != "-":
        return os.fsencode(args.value)
    if ctx.shell:
        raise UsageError(f"{args.command}: give the value on the line: {args.command} KEY VALUE")
    if _is_tty(ctx.stdin):
        ctx.warn("reading the value from stdin; end it with Ctrl-D")
    return ctx.stdin.read()


def cmd_store(ctx, args):
    value = _value(ctx, args)
    words = [args.command.encode(), args.key, b"%d" % args.flags, b"%d" % args.ttl, b"%d" % len(value)]
    if args.command == "cas":
        words.append(b"%d" % args.cas)
    if args.noreply:
        words.append(b"noreply")
    return _finish(ctx, ctx.client.request(b" ".join(words), value))


def cmd_delete(ctx, args):
    return _finish(ctx, ctx.client.request(b"delete " + args.key))


def cmd_arith(ctx, args):
    return _finish(ctx, ctx.client.request(b"%s %s %d" % (args.command.encode(), args.key, args.delta)))


def cmd_touch(ctx, args):
    return _finish(ctx, ctx.client.request(b"touch %s %d" % (args.key, args.ttl)))


def cmd_flush(ctx, args):
    line = b"flush_all" if args.delay is None else b"flush_all %d" % args.delay
    return _finish(ctx, ctx.client.request(line))


def cmd_stats(ctx, args):
    line = b" ".join([b"stats"] + [os.fsencode(w) for w in args.sub])
    reply = ctx.client.request(line)
    if ctx.raw or reply.startswith(ERRORS) or not reply.startswith((b"STAT ", b"END")):
        return _finish(ctx, reply)
    ctx.say(*render.stats_table(parse_stats(reply)))
    return OK


def cmd_version(ctx, args):
    reply = ctx.client.request(b"version")
    if not ctx.raw and reply.startswith(b"VERSION "):
        ctx.say(reply[8:].decode("utf-8", "replace").strip())
        return OK
    return _finish(ctx, reply)


def cmd_send(ctx, args):
    line = b" ".join(os.fsencode(w) for w in args.words)
    if line.split()[0] in STORAGE:
        raise UsageError("send: a storage command needs its data; use set KEY VALUE instead")
    return _finish(ctx, ctx.client.request(line))


def cmd_dump(ctx, args):
    a = ctx.args
    if args.output is None and _is_tty(ctx.out):
        raise UsageError("dump: refusing to write a binary dump to a terminal; use -o FILE or redirect stdout")
    try:
        out = open(args.output, "wb") if args.output else ctx.out
    except OSError as e:
        raise UsageError(f"dump: cannot write {args.output}: {e.strerror}") from None
    try:
        summary = dump(a.host, a.port, out, a.timeout, a.connect_timeout, progress=args.progress)
    finally:
        if out is not ctx.out:
            out.close()
    if summary.skipped and args.progress is not False and _is_tty(ctx.err):
        ctx.warn(f"{summary.skipped:,} items expired or were deleted while the dump ran")
    return OK


def cmd_load(ctx, args):
    a = ctx.args
    if args.file is None or args.file == "-":
        if _is_tty(ctx.stdin):
            raise UsageError("load: give a dump FILE, or pipe one on stdin")
        inp = ctx.stdin
    else:
        try:
            inp = open(args.file, "rb")
        except OSError as e:
            raise UsageError(f"load: cannot read {args.file}: {e.strerror}") from None
    try:
        summary = load(a.host, a.port, inp, args.noreply, a.timeout, a.connect_timeout, progress=args.progress)
    except DumpFormatError as e:
        loaded = getattr(e, "loaded", 0)
        ctx.warn(f"error: {args.file or 'stdin'} is not a usable dump: {e}; {loaded:,} items before it were loaded")
        return FAILED
    finally:
        if inp is not ctx.stdin:
            inp.close()
    if summary.failures:
        ctx.warn(f"error: {summary.failures:,} items were not stored")
        for key, reply in summary.failed:
            what = "" if key is None else render.key_text(key) + ": "
            ctx.warn(f"  {what}{reply.decode('utf-8', 'replace')}")
        return FAILED
    return OK
