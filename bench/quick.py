"""A quick throughput check: memcached-lite next to real memcached, same box,
same client. Not the full benchmark (that is issue 8's), just sets and gets
per second with one connection and with many, one request in flight each.

    python bench/quick.py [--ops 20000] [--conns 50]

Starts both servers itself on free loopback ports (memcached only if the
binary is installed), with a fresh data dir, and stops them by PID.
"""

import argparse
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port, proc, deadline=10.0):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError("server exited early")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError("server did not start")


def run_load(port, conns, requests, expect):
    """Send each request on one of `conns` connections, one in flight per
    connection; return the elapsed seconds."""
    sel = selectors.DefaultSelector()
    socks = []
    for i in range(conns):
        s = socket.create_connection(("127.0.0.1", port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        socks.append(s)
    per = [requests[i::conns] for i in range(conns)]
    state = {}
    start = time.perf_counter()
    for i, s in enumerate(socks):
        if per[i]:
            s.sendall(per[i][0])
            state[s] = [i, 1, b""]
            sel.register(s, selectors.EVENT_READ)
    while state:
        for key, _ in sel.select():
            s = key.fileobj
            st = state[s]
            st[2] += s.recv(65536)
            if not st[2].endswith(expect):
                continue
            st[2] = b""
            reqs = per[st[0]]
            if st[1] == len(reqs):
                sel.unregister(s)
                del state[s]
            else:
                s.sendall(reqs[st[1]])
                st[1] += 1
    elapsed = time.perf_counter() - start
    for s in socks:
        s.close()
    return elapsed


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench(name, argv, port, ops, conns):
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_listening(port, proc)
        value = b"x" * 100
        sets = [b"set key:%d 0 0 100\r\n%s\r\n" % (i, value) for i in range(ops)]
        gets = [b"get key:%d\r\n" % i for i in range(ops)]
        rows = []
        for label, reqs, expect in (("set", sets, b"\r\n"), ("get", gets, b"END\r\n")):
            for c in (1, conns):
                cpu0 = cpu_seconds(proc.pid)
                t = run_load(port, c, reqs, expect)
                cpu = cpu_seconds(proc.pid) - cpu0
                rows.append((name, label, c, ops / t, cpu / ops * 1e6))
        return rows
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--ops", type=int, default=20000)
    p.add_argument("--conns", type=int, default=50)
    args = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as data:
        port = free_port()
        argv = [sys.executable, "-m", "reactor", "-p", str(port), "--data-dir", data]
        rows += bench("memcached-lite", argv, port, args.ops, args.conns)
    if shutil.which("memcached"):
        port = free_port()
        argv = ["memcached", "-u", "root", "-l", "127.0.0.1", "-p", str(port), "-t", "1", "-U", "0"]
        rows += bench("memcached -t 1", argv, port, args.ops, args.conns)
    else:
        print("(memcached not installed: only memcached-lite measured)")
    print(f"{'server':16} {'op':4} {'conns':>5} {'ops/s':>9} {'server CPU us/op':>17}")
    for name, op, c, rate, cpu in rows:
        print(f"{name:16} {op:4} {c:>5} {rate:>9.0f} {cpu:>17.1f}")


if __name__ == "__main__":
    main()
