"""The command line: `python -m cli [-H host] [-p port] [command words...]`.

With a command, sends it (a storage command takes its value as the last
argument) and prints the raw reply; exit 0, or 1 on a miss/NOT_STORED, 2 on an
error. Without one, an interactive shell: type protocol lines as you would in
telnet; a storage command's data is asked for on the next line.
"""

import argparse
import socket
import sys

from .client import STORAGE, Client, ConnectionClosed

MISSES = (b"END\r\n", b"NOT_FOUND\r\n", b"NOT_STORED\r\n", b"EXISTS\r\n")


def _exit_code(reply):
    if reply.startswith((b"ERROR", b"CLIENT_ERROR", b"SERVER_ERROR")):
        return 2
    if reply in MISSES:
        return 1
    return 0


def one_shot(client, words):
    words = [w.encode("utf-8", "surrogateescape") for w in words]
    data = None
    if words[0] in STORAGE:
        if len(words) < 3:
            print(f"usage: {words[0].decode()} KEY [FLAGS EXPTIME] VALUE", file=sys.stderr)
            return 2
        *head, data = words
        if len(head) == 2:  # `set KEY VALUE`: flags 0, no expiry
            head += [b"0", b"0"]
        line = b" ".join(head[:4] + [b"%d" % len(data)] + head[4:])
    else:
        line = b" ".join(words)
    reply = client.request(line, data)
    sys.stdout.buffer.write(reply)
    sys.stdout.flush()
    return _exit_code(reply)


def shell(client, prompt):
    interactive = sys.stdin.isatty()
    while True:
        try:
            line = input(prompt if interactive else "")
        except EOFError:
            return 0
        except KeyboardInterrupt:
            print()
            continue
        raw = line.encode("utf-8", "surrogateescape")
        words = raw.split()
        if not words:
            continue
        data = None
        if words[0] in STORAGE:
            try:
                data = input("" if not interactive else "data> ").encode("utf-8", "surrogateescape")
            except EOFError:
                return 0
        reply = client.request(raw, data)
        sys.stdout.buffer.write(reply)
        sys.stdout.flush()
        if words[0] == b"quit":
            return 0


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m cli", description="Talk to a memcached server.")
    p.add_argument("-H", "--host", default="127.0.0.1")
    p.add_argument("-p", "--port", type=int, default=11211)
    p.add_argument("-t", "--timeout", type=float, default=5.0)
    p.add_argument("command", nargs=argparse.REMAINDER, help="e.g. get KEY, set KEY VALUE, stats")
    args = p.parse_args(argv)
    try:
        client = Client(args.host, args.port, args.timeout)
    except OSError as e:
        print(f"cannot connect to {args.host}:{args.port}: {e.strerror or e}", file=sys.stderr)
        return 2
    try:
        if args.command:
            return one_shot(client, args.command)
        return shell(client, f"{args.host}:{args.port}> ")
    except (ConnectionClosed, socket.timeout, OSError) as e:
        print(f"connection to {args.host}:{args.port} lost: {e}", file=sys.stderr)
        return 2
    finally:
        client.close()


if __name__ == "__main__":
    sys.exit(main())
