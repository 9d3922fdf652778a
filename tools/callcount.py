"""Count the calls the server makes per request, in process, with
sys.setprofile: the loop runs in a thread of this process over a real
listening socket, a client sends one request at a time, and every call the
loop's thread makes is counted (Python functions and C functions apart).

    python tools/callcount.py [--requests N] [--fsync everysec|always|no] [--conns 50]

Run it from a tree's root (it imports that tree's `reactor` and `handlers`);
to compare with an older commit, run it in a checkout of that commit:

    git archive 66577ee | tar -x -C /tmp/base && (cd /tmp/base && python <this file>)

Each workload runs N and 2N requests; the figures are the difference divided
by N, so the loop's start and stop and the iterations around the window
cancel out. A call count is exact where a timing is noisy: it is how the
plain-get fast path is checked not to have grown. With `--conns C` each
request is written on C connections before their replies are read, so one
select reports several of them (as under bench/compare.py's get100) and the
figures are per request, the loop's per-iteration work shared among them.
"""

import argparse
import collections
import os
import socket
import sys
import tempfile
import threading

sys.path.insert(0, os.getcwd())

import handlers  # noqa: E402
import reactor  # noqa: E402
from store import Store  # noqa: E402

WORKLOADS = {
    # name: (set-up bytes, one request, its reply)
    "get hit": (b"set k 0 0 5\r\nhello\r\n", b"get k\r\n", b"VALUE k 0 5\r\nhello\r\nEND\r\n"),
    "get miss": (b"", b"get nothing\r\n", b"END\r\n"),
    "set": (b"", b"set k 0 0 5\r\nhello\r\n", b"STORED\r\n"),
}


class Counter:
    """A profile function: counts (kind, name) of every call event of one thread."""

    def __init__(self):
        self.on = False
        self.calls = collections.Counter()

    def __call__(self, frame, event, arg):
        if not self.on:
            return
        if event == "call":
            code = frame.f_code
            self.calls["py", f"{os.path.basename(code.co_filename)}:{code.co_name}"] += 1
        elif event == "c_call":
            self.calls["c", getattr(arg, "__qualname__", repr(arg))] += 1


def read_reply(sock, size):
    got = b""
    while len(got) < size:
        chunk = sock.recv(size - len(got))
        if not chunk:
            raise SystemExit("the server closed the connection")
        got += chunk
    return got


def measure(fsync, setup, request, reply, n, conns=1):
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(os.path.join(tmp, "data"), fsync=fsync)
        server = handlers.Server(store, handlers.Settings())
        listener = socket.create_server(("127.0.0.1", 0))
        loop = reactor.Reactor(server, listener)
        counter = Counter()
        thread = threading.Thread(target=lambda: (sys.setprofile(counter), loop.run()))
        thread.start()
        socks = [socket.create_connection(listener.getsockname()) for _ in range(conns)]
        for sock in socks:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if setup:
            socks[0].sendall(setup)
            socks[0].recv(4096)
        for _ in range(100):  # warm: connections accepted, caches filled
            for sock in socks:
                sock.sendall(request)
            for sock in socks:
                read_reply(sock, len(reply))
        counter.on = True
        for _ in range(n):
            for sock in socks:
                sock.sendall(request)
            for sock in socks:
                assert read_reply(sock, len(reply)) == reply
        counter.on = False
        for sock in socks:
            sock.close()
        loop.stop()
        thread.join(15)
        return counter.calls


def per_request(fsync, workload, n, conns=1):
    setup, request, reply = WORKLOADS[workload]
    once = measure(fsync, setup, request, reply, n, conns)
    twice = measure(fsync, setup, request, reply, 2 * n, conns)
    return {key: (twice[key] - once[key]) / (n * conns) for key in set(once) | set(twice)}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--fsync", default="everysec", choices=("always", "everysec", "no"))
    p.add_argument("--conns", type=int, default=1, help="connections, each sent the request before any reply is read")
    p.add_argument("--detail", action="store_true", help="list each function's calls per request")
    args = p.parse_args()
    for workload in WORKLOADS:
        counts = per_request(args.fsync, workload, args.requests, args.conns)
        py = sum(v for (kind, _), v in counts.items() if kind == "py")
        c = sum(v for (kind, _), v in counts.items() if kind == "c")
        print(f"{workload:9s} python calls/request {py:6.2f}   C calls/request {c:6.2f}")
        if args.detail:
            for (kind, name), v in sorted(counts.items(), key=lambda kv: (kv[0][0] != "py", -kv[1])):
                if abs(v) >= 0.01:
                    print(f"    {kind:2s} {v:6.2f} {name}")


if __name__ == "__main__":
    main()
