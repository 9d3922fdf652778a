"""`python -m cli`: parse the command line, then run one command (exit 0 done,
1 a miss, 2 an error) or, without one, the interactive shell."""

import sys

from . import commands
from .client import Client, ClientError
from .shell import Shell


def one_shot(args):
    client = None

    def connect():
        nonlocal client
        if client is None:
            client = Client(args.host, args.port, args.timeout, args.connect_timeout)
        return client

    try:
        return args.handler(commands.Context(connect, args), args)
    except commands.UsageError as e:
        print(f"error: {e}", file=sys.stderr)
    except ClientError as e:
        print(f"error: {e}", file=sys.stderr)
    finally:
        if client is not None:
            client.close()
    return commands.FAILED


def main(argv=None, prog="python -m cli"):
    parser = commands.build_parser(prog)
    try:
        args = commands.use_socket(parser.parse_args(argv))
    except commands.UsageError as e:
        print(f"error: {e} (see --help)", file=sys.stderr)
        return commands.FAILED
    except commands.HelpShown as e:
        return e.args[0]
    try:
        if args.command in (None, "shell"):
            return Shell(args, parser).run()
        return one_shot(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader of our stdout went away (`| head`): not an error to report
        sys.stderr.close()
        return commands.FAILED


def console_script():
    """The `memcached-lite-cli` entry point."""
    sys.exit(main(prog="memcached-lite-cli"))


if __name__ == "__main__":
    sys.exit(main())
