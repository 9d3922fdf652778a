"""Throughput through twemproxy with 1, 2 and 3 memcached-lite instances.

    python bench/proxy.py [--ops 20000] [--procs 2] [--conns 25] [--instances 1,2,3]

For each pool size: start the instances (tools/cluster.py, fresh data dirs
in a temporary folder) and a nutcracker in front of them on free loopback
ports, then run `--procs` client processes with `--conns` connections each,
one request in flight per connection (bench/quick.py's load loop), first
sets of new keys, then gets of them. Also one instance without the proxy,
for the proxy's own cost. Reports ops/s and the CPU that the instances, the
proxy and the clients used per operation: on a machine with few cores the
Python clients compete with the servers for them, so read the CPU columns
before the ops/s. A benchmark to run by hand, not a test.
"""

import argparse
import multiprocessing
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
sys.path.insert(0, os.path.join(ROOT, "bench"))
from cluster import start_instances, twemproxy_config  # noqa: E402
from quick import cpu_seconds, free_port, run_load  # noqa: E402


def start_nutcracker(workdir, instances):
    port, stats_port = free_port(), free_port()
    config = os.path.join(workdir, "nutcracker.yml")
    with open(config, "w") as f:
        f.write(twemproxy_config([(i.host, i.port, i.name) for i in instances], listen=f"127.0.0.1:{port}"))
    proc = subprocess.Popen(
        [shutil.which("nutcracker") or "/usr/sbin/nutcracker", "-c", config, "-s", str(stats_port),
         "-a", "127.0.0.1", "-o", os.path.join(workdir, "nutcracker.log")],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return proc, port
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("nutcracker did not start; see " + os.path.join(workdir, "nutcracker.log"))
            time.sleep(0.02)


def start_pool(n, data_root, attempts=5):
    """n instances on consecutive ports from a free one; the ports after it
    may be taken, so try a few bases."""
    for attempt in range(attempts):
        try:
            return start_instances(n, free_port(), os.path.join(data_root, str(attempt)))
        except RuntimeError:
            if attempt == attempts - 1:
                raise


def _client(args):
    port, conns, requests, expect, barrier = args
    barrier.wait()
    start = time.perf_counter()  # CLOCK_MONOTONIC: comparable across processes
    run_load(port, conns, requests, expect)
    end = time.perf_counter()
    usage = os.times()
    return start, end, usage.user + usage.system


def drive(port, requests, expect, procs, conns):
    """ops/s over all client processes, and their CPU seconds."""
    barrier = multiprocessing.Manager().Barrier(procs)
    shares = [requests[i::procs] for i in range(procs)]
    with multiprocessing.get_context("fork").Pool(procs) as pool:
        results = pool.map(_client, [(port, conns, s, expect, barrier) for s in shares])
    start = min(r[0] for r in results)
    end = max(r[1] for r in results)
    return len(requests) / (end - start), sum(r[2] for r in results)


def measure(label, port, server_pids, args, key_prefix):
    value = b"x" * 100
    sets = [b"set %s:%d 0 0 100\r\n%s\r\n" % (key_prefix, i, value) for i in range(args.ops)]
    gets = [b"get %s:%d\r\n" % (key_prefix, i) for i in range(args.ops)]
    rows = []
    for op, reqs, expect in (("set", sets, b"\r\n"), ("get", gets, b"END\r\n")):
        cpu0 = {pid: cpu_seconds(pid) for pid in server_pids}
        rate, client_cpu = drive(port, reqs, expect, args.procs, args.conns)
        cpu = {pid: cpu_seconds(pid) - cpu0[pid] for pid in server_pids}
        rows.append((label, op, rate, cpu, client_cpu / args.ops * 1e6))
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ops", type=int, default=20000)
    p.add_argument("--procs", type=int, default=2, help="client processes")
    p.add_argument("--conns", type=int, default=25, help="connections per client process")
    p.add_argument("--instances", default="1,2,3")
    args = p.parse_args()
    print(f"{os.cpu_count()} CPUs; {args.procs} client processes x {args.conns} connections; "
          f"{args.ops} ops of each kind; 100-byte values", flush=True)
    header = f"{'setup':22} {'op':4} {'ops/s':>8} {'instances CPU us/op':>20} {'proxy':>6} {'clients':>8}"
    rows_out = []
    for n in [int(x) for x in args.instances.split(",")]:
        with tempfile.TemporaryDirectory() as work:
            instances = start_pool(n, os.path.join(work, "data"))
            nc = None
            try:
                nc, port = start_nutcracker(work, instances)
                pids = [i.proc.pid for i in instances]
                for label, op, rate, cpu, client_us in measure(f"{n} behind twemproxy", port, pids + [nc.pid],
                                                               args, b"k%d" % n):
                    inst = sum(cpu[pid] for pid in pids) / args.ops * 1e6
                    rows_out.append((label, op, rate, inst, cpu[nc.pid] / args.ops * 1e6, client_us))
            finally:
                if nc is not None:
                    nc.send_signal(signal.SIGTERM)
                    nc.wait(10)
                for inst in instances:
                    inst.stop()
    # The proxy's own cost: one fresh instance (its folders not yet made,
    # as for the pools above), no proxy.
    with tempfile.TemporaryDirectory() as work:
        (inst,) = start_pool(1, os.path.join(work, "data"))
        try:
            for label, op, rate, cpu, client_us in measure("1 direct (no proxy)", inst.port, [inst.proc.pid],
                                                           args, b"d"):
                rows_out.append((label, op, rate, cpu[inst.proc.pid] / args.ops * 1e6, 0.0, client_us))
        finally:
            inst.stop()
    print(header)
    for label, op, rate, inst, proxy, client_us in rows_out:
        print(f"{label:22} {op:4} {rate:>8.0f} {inst:>20.0f} {proxy:>6.0f} {client_us:>8.0f}")


if __name__ == "__main__":
    main()
