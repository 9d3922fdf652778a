"""A/B of a change in CPU instructions per request, not in time: the server
runs under valgrind's callgrind, a client drives a fixed sequence of
requests, and the instructions the server ran for them (Ir, counted from a
zeroed counter to a dump) are divided by the requests. A count does not
move with the machine's load or its frequency, so it tells a 2% change on a
VM whose timed rounds move 10% (bench/compare.py stays the measure of
speed; this says where it went and whether a change cost anything).

    python bench/instructions.py [--against REV] [--references] [--requests 3000] [--windows 5]
        [--workloads get1,set1k,get50,mget10,getp16] [--json out.json]

Each workload is deterministic on the client side (the same keys, the same
order); get50 writes one get on each of 50 connections and then reads the
50 replies, so the loop serves several connections per select, as under
the get100 benchmark (how many it finds at once can vary a little);
getp16 writes 16 gets in one send on one connection and reads the 16
replies, a pipelining client's stream (get100-p16's shape at one
connection).
Servers run `--fsync everysec` on a fresh data dir filled with the same
keys (2,000 of 100 bytes, 500 of 1 KB: compare.py's shape, fewer, as a
set under callgrind takes some milliseconds).
"""

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

from compare import checkout
from durability import ROOT, connect_when_up, free_port, read_until, stop_server

KEYS = 2000
BIG_KEYS = 500
VALUE = b"v" * 100
BIG = b"b" * 1024


def fill(sock, reference=False):
    out = b"".join(b"set key:%d 0 0 %d noreply\r\n%s\r\n" % (i, len(VALUE), VALUE) for i in range(KEYS))
    out += b"".join(b"set big:%d 0 0 %d noreply\r\n%s\r\n" % (i, len(BIG), BIG) for i in range(BIG_KEYS))
    # (the reference loop knows neither noreply nor mn: it answers every set,
    # and the mn with ERROR, after the sets' replies)
    sock.sendall(out + b"mn\r\n")
    read_until(sock, b"ERROR\r\n" if reference else b"MN\r\n")


def get1(socks, n):
    s = socks[0]
    for i in range(n):
        s.sendall(b"get key:%d\r\n" % (i * 7 % KEYS))
        read_until(s, b"END\r\n")
    return n


def set1k(socks, n):
    s = socks[0]
    for i in range(n):
        s.sendall(b"set big:%d 0 0 %d\r\n%s\r\n" % (i % BIG_KEYS, len(BIG), BIG))
        read_until(s, b"STORED\r\n")
    return n


def get50(socks, n):
    rounds = max(1, n // len(socks))
    for r in range(rounds):
        for j, s in enumerate(socks):
            s.sendall(b"get key:%d\r\n" % ((r * 50 + j) * 7 % KEYS))
        for s in socks:
            read_until(s, b"END\r\n")
    return rounds * len(socks)


def mget10(socks, n):
    s = socks[0]
    for i in range(n):
        keys = b" ".join(b"key:%d" % ((i * 10 + k) * 7 % KEYS) for k in range(10))
        s.sendall(b"get " + keys + b"\r\n")
        read_until(s, b"END\r\n")
    return n


def getp16(socks, n):
    """16 gets pipelined in one write, as compare.py's -p16 workloads send them."""
    s = socks[0]
    batches = max(1, n // 16)
    for b in range(batches):
        s.sendall(b"".join(b"get key:%d\r\n" % ((b * 16 + k) * 7 % KEYS) for k in range(16)))
        buf = b""
        while buf.count(b"END\r\n") < 16:
            chunk = s.recv(65536)
            if not chunk:
                raise RuntimeError("server closed the connection")
            buf += chunk
    return batches * 16


WORKLOADS = {
    "get1": (get1, 1),
    "set1k": (set1k, 1),
    "get50": (get50, 50),
    "mget10": (mget10, 1),
    "getp16": (getp16, 1),
}


def callgrind(pid, *flags):
    subprocess.run(["callgrind_control", *flags, str(pid)], check=True, capture_output=True)


def dumped_ir(out_prefix, before):
    """The Ir total of the newest dump file not in `before`."""
    folder = os.path.dirname(out_prefix)
    new = sorted(set(os.listdir(folder)) - before)
    new = [f for f in new if f.startswith(os.path.basename(out_prefix))]
    for name in reversed(new):
        with open(os.path.join(folder, name)) as f:
            for line in f:
                if line.startswith(("summary:", "totals:")):
                    return int(line.split()[1]), set(os.listdir(folder))
    raise RuntimeError("no callgrind dump found")


def server_argv(tree, port, data):
    """memcached-lite's command line, or the reference loop's (`tree` one of REFERENCES)."""
    if tree == REFERENCES[0]:
        return [sys.executable, os.path.join(ROOT, "bench", "refloop.py"), "--port", str(port)]
    if tree == REFERENCES[1]:
        return [sys.executable, os.path.join(ROOT, "bench", "refloop.py"), "--port", str(port), "--data", data]
    if tree == REFERENCES[2]:
        return [sys.executable, os.path.join(ROOT, "bench", "shapeloop.py"), "--port", str(port)]
    return [sys.executable, "-m", "reactor", "-p", str(port), "--data-dir", data, "--fsync", "everysec"]


# the reference loops of compare.py, as `trees` of their own
REFERENCES = ("<reference loop>", "<write-through loop>", "<shape loop>")


def measure(tree, label, base, workloads, requests, windows=1):
    """{workload: Ir per request} of the server in `tree`."""
    data = os.path.join(base, label.replace(" ", "_").replace("@", "") + "-data")
    prefix = os.path.join(base, label.replace(" ", "_").replace("@", "") + ".cg")
    port = free_port()
    argv = [
        "valgrind", "--tool=callgrind", f"--callgrind-out-file={prefix}.%p", "--dump-instr=no",
        *server_argv(tree, port, data),
    ]
    proc = subprocess.Popen(argv, cwd=ROOT if tree in REFERENCES else tree, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results = {}
    try:
        first = connect_when_up(port, proc, deadline=300)
        first.settimeout(600)
        fill(first, reference=tree in REFERENCES)
        for name in workloads:
            fn, conns = WORKLOADS[name]
            socks = [first] + [connect_when_up(port, proc) for _ in range(conns - 1)]
            for s in socks:
                s.settimeout(600)
            fn(socks, 50)  # warm: the keys' files read, the caches full
            per_window = []
            for _ in range(windows):
                before = set(os.listdir(base))
                callgrind(proc.pid, "-z")
                done = fn(socks, requests)
                callgrind(proc.pid, "-d")
                time.sleep(0.2)  # (the dump is written by the server process)
                ir, _ = dumped_ir(prefix, before)
                per_window.append(ir / done)
            # background work (everysec's timer, the walk's slices) only adds
            # instructions to a window, so the least window is the request's cost
            results[name] = min(per_window)
            for s in socks[1:]:
                s.close()
            spread = ", ".join(f"{w:,.0f}" for w in per_window)
            print(f"  .. {label} {name}: {min(per_window):,.0f} Ir/request (windows: {spread})", file=sys.stderr)
        first.close()
    finally:
        stop_server(proc)
    return results


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--against", metavar="REV", help="also measure memcached-lite as of this commit")
    p.add_argument("--requests", type=int, default=3000)
    p.add_argument("--workloads", default=",".join(WORKLOADS))
    p.add_argument(
        "--windows", type=int, default=5,
        help="measured windows of --requests each per workload; the least is reported (default: 5)",
    )
    p.add_argument(
        "--references", action="store_true",
        help="also measure the reference loops as compare.py runs them: bench/refloop.py (the dict loop, and with --data the write-through loop) and bench/shapeloop.py",
    )
    p.add_argument("--json")
    args = p.parse_args()
    if shutil.which("valgrind") is None:
        raise SystemExit("needs valgrind (apt-get install valgrind)")
    workloads = args.workloads.split(",")
    base = tempfile.mkdtemp(prefix="mclite-ir-")
    try:
        trees = [("memcached-lite", ROOT)]
        if args.against:
            trees.append(checkout(args.against, base))
        if args.references:
            trees += [(name.strip("<>"), name) for name in REFERENCES]
        results = {label: measure(tree, label, base, workloads, args.requests, args.windows) for label, tree in trees}
    finally:
        shutil.rmtree(base, ignore_errors=True)
    labels = list(results)
    others = labels[1:]
    print("| workload | " + " | ".join(labels) + "".join(f" | {o} / this" for o in others) + " |")
    print("| --- " * (len(labels) + 1 + len(others)) + "|")
    for name in workloads:
        row = [f"{results[label][name]:,.0f}" for label in labels]
        row += [f"{results[o][name] / results[labels[0]][name]:.3f}" for o in others]
        print(f"| {name} | " + " | ".join(row) + " |")
    if others:
        print("\nratio: Ir of the other server / Ir of this tree's (above 1: this tree runs fewer instructions)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
