"""What durability costs: the write path at each `--fsync` level, the file
system's own floor for the same work, and start-up time and memory with many
items on disk.

    python bench/durability.py [--levels always,everysec,no] [--conns 1,8,50]
        [--seconds 5] [--value-size 100,1024] [--keys 10000]
        [--generator c|python] [--skip-floor] [--skip-startup]
        [--startup-items 100000,1000000] [--dir /tmp]

It prints Markdown tables (paste-able into the README) and the machine.

1. Durable write path. For each level (plus `always` with `--fsync-method
   fsync`) and each connection count, a server is started on a fresh data dir,
   every key of the key set is written once (the fill pass, untimed), then
   classic `set k 0 0 N` requests, one in flight per connection, cycle over
   the keys: the figures are for OVERWRITES of existing keys. After a warm-up
   the completions of a fixed window are counted.
   - ops/s, p50/p99: the rate, and the time from a request's send to its
     `STORED` (for `always`, this includes waiting for the batch's barriers).
   - srv CPU µs/op and srv CPU %: the server's utime+stime (/proc/<pid>/stat)
     over the window. Near 100 % means the server is CPU-bound (it is single
     threaded); well below means it waits, for the disk or for the clients.
   - srv waits for CPU %: the share of the window the server was runnable but
     not running (run_delay in /proc/<pid>/schedstat): other processes on the
     same cores. CPU % + this near 100 means CPU-bound on a busy machine; the
     rest of the window it was blocked (barriers, the journal) or idle.
   - gen CPU µs/op and gen CPU %: the same for the load generator processes
     (getrusage in each). If gen CPU % of one process is far from 100 %, the
     generator was not the limit. The generator is bench/loadgen.c (one C
     process, epoll; built with `cc` at run time, see bench/loadgen.py) unless
     `--generator python` (or no `cc`) picks the Python one below.
   - barriers/op: fsync_calls from `stats`, per op. Under `always` it is 2 /
     (writes per batch), so it shows how many writes each group commit took.
2. File-system floor, same folder, same process layout as the store
   (tmp/ + items/ab/cd/<hash>), records of the same size, overwrites, in one
   pure-Python loop with no sockets: what the disk allows each strategy. Read
   the server's row as a fraction of the matching floor row:
   `no`/`everysec` ~ "write+rename"; `always` at 1 conn ~ "syncfs x2, batch
   1"; `always` at 50 conns ~ "syncfs x2, batch 50"; `always --fsync-method
   fsync` ~ the "fdatasync each" rows.
3. Start-up: a data dir with N items (generated once with the store package
   and cached under /tmp/mclite-bench-<N>, a READY marker says it is whole),
   a server with the default -m 64 and `--fsync everysec`: time from spawn to
   the first answered `get`, time until `stats` says `startup_scan_done 1`,
   and VmRSS/VmHWM at both moments. RSS must not grow with N: the store keeps
   no index of keys, only the -m bounded cache. The page cache state matters
   (a dir just generated is warm; one reused from an earlier run may be not).

syncfs flushes the whole file system, so other programs writing to the same
disk (other engineers' test runs here) slow the `always` rows and the syncfs
floor rows; run it on a quiet machine for figures to publish.
"""

import argparse
import collections
import hashlib
import multiprocessing
import os
import platform
import resource
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import loadgen  # noqa: E402  (bench/loadgen.py, beside this file)
from store import Store, record  # noqa: E402  (the path above comes first)
from store.durability import HAVE_SYNCFS, make_barrier, syncfs  # noqa: E402  (the same calls the server makes)
from store.files import fsync_dir  # noqa: E402
from store.filesystem import OSFileSystem  # noqa: E402
from store.syscalls import Exchange  # noqa: E402

_OS = OSFileSystem()  # fsync_dir's file system: the real one

CLK_TCK = os.sysconf("SC_CLK_TCK")
WARMUP = 1.0
# Connections one generator process drives; above this a second process helps
# only if a core is free, and on 2 cores the server needs one.
CONNS_PER_PROC = 25
FILL_PIPELINE = 100
SPAWNED = []  # every server process, so the last finally can kill stragglers


# -- the machine ------------------------------------------------------------


def machine_info(path):
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return [
        ("nproc", str(len(os.sched_getaffinity(0)))),
        ("CPU", model),
        ("kernel", platform.release()),
        ("file system of " + path, fs_of(path)),
        ("python", platform.python_version()),
        ("load average at start", " ".join(f"{x:.2f}" for x in os.getloadavg())),
    ]


def fs_of(path):
    """The mount that holds path, from /proc/mounts (the longest prefix wins)."""
    path = os.path.realpath(path)
    best = ("", "?", "?")
    try:
        with open("/proc/mounts") as f:
            for line in f:
                dev, mnt, fstype, opts = line.split()[:4]
                mnt = mnt.replace("\\040", " ")
                inside = path == mnt or path.startswith(mnt.rstrip("/") + "/")
                if inside and len(mnt) >= len(best[0]):
                    best = (mnt, f"{fstype} on {dev} ({mnt})", opts)
    except OSError:
        pass
    return f"{best[1]}, {best[2]}"


# -- servers ------------------------------------------------------------------


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn_server(data_dir, port, extra=(), log_path=None, wrapper=(), cpus=None, cwd=ROOT):
    argv = [sys.executable, *wrapper, "-m", "reactor", "-p", str(port), "--data-dir", data_dir, *extra]
    return spawn_process(argv, log_path, cpus, cwd)


def on_cpus(cpus):
    """A preexec_fn that runs the child (all its future threads) on those CPUs; None for no pinning."""
    if not cpus:
        return None
    return lambda: os.sched_setaffinity(0, cpus)


def spawn_process(argv, log_path=None, cpus=None, cwd=ROOT):
    """Start a server (from the repo's root, or `cwd`: `-m reactor` imports
    from there), its output to log_path, on `cpus` if given; registered in
    SPAWNED for the last cleanup."""
    log = open(log_path or os.devnull, "wb")
    try:
        proc = subprocess.Popen(argv, cwd=cwd, stdout=log, stderr=log, preexec_fn=on_cpus(cpus))
    finally:
        log.close()
    SPAWNED.append(proc)
    return proc


def stop_server(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc in SPAWNED:
        SPAWNED.remove(proc)


def connect_when_up(port, proc, deadline=60.0):
    """A connected socket as soon as the server accepts; raises if it died."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited early with status {proc.returncode}")
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=30)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return s
        except OSError:
            time.sleep(0.002)
    raise RuntimeError("server did not start")


def read_until(sock, end):
    buf = b""
    while not buf.endswith(end):
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError("server closed the connection")
        buf += chunk
    return buf


def stats(sock):
    sock.sendall(b"stats\r\n")
    out = {}
    for line in read_until(sock, b"END\r\n").split(b"\r\n"):
        parts = line.split(b" ", 2)
        if len(parts) == 3 and parts[0] == b"STAT":
            out[parts[1].decode()] = parts[2].decode()
    return out


def cpu_seconds(pid):
    """(utime, stime) of a process, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def run_delay(pid):
    """Seconds the process has spent runnable but waiting for a CPU
    (/proc/<pid>/schedstat), or None where the kernel does not keep it."""
    try:
        with open(f"/proc/{pid}/schedstat") as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return None


def proc_memory(pid):
    """(VmRSS, VmHWM) in MiB."""
    found = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            name, _, rest = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                found[name] = int(rest.split()[0]) / 1024
    return found.get("VmRSS", 0.0), found.get("VmHWM", 0.0)


# -- the Python load generator (--generator python) -------------------------


def set_request(key, value):
    return b"set %s 0 0 %d\r\n%s\r\n" % (key, len(value), value)


def bench_key(i):
    return b"bench:%07d" % i


def fill(sock, nkeys, value):
    """Write every key once, pipelined, so the timed run overwrites."""
    for start in range(0, nkeys, FILL_PIPELINE):
        batch = [set_request(bench_key(i), value) for i in range(start, min(nkeys, start + FILL_PIPELINE))]
        sock.sendall(b"".join(batch))
        want = b"STORED\r\n" * len(batch)
        got = b""
        while len(got) < len(want):
            chunk = sock.recv(65536)
            if not chunk:
                raise RuntimeError("server closed the connection during the fill")
            got += chunk
        if got != want:
            raise RuntimeError(f"fill: unexpected replies {got[:80]!r}")


def generator(port, conn_ids, total_conns, nkeys, value, pipe):
    """One process's selectors loop: its connections, one request in flight
    each, from the moment the parent says go until the window ends.

    Reports (completions in the window, their latencies, errors, CPU seconds
    of this process in the window)."""
    try:
        socks = []
        for _ in conn_ids:
            s = socket.create_connection(("127.0.0.1", port))
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.setblocking(False)
            socks.append(s)
        # disjoint key slices, so two connections never overwrite the same
        # key in one batch (the store would coalesce them)
        reqs = [[set_request(bench_key(k), value) for k in range(c, nkeys, total_conns)] for c in conn_ids]
        pipe.send("ready")
        t_start, t_end = pipe.recv()
        sel = selectors.DefaultSelector()
        # per connection: [sock, its requests, next index, send time, reply so far]
        state = []
        for s, r in zip(socks, reqs):
            st = [s, r, 0, 0.0, b""]
            state.append(st)
            sel.register(s, selectors.EVENT_READ, st)
        clock = time.monotonic
        for st in state:
            send(st, clock())
        lat = []
        errors = 0
        done = 0
        cpu0 = cpu1 = None
        while True:
            now = clock()
            if cpu0 is None and now >= t_start:
                cpu0 = _self_cpu()
            if now >= t_end:
                cpu1 = _self_cpu()
                break
            timeout = (t_start if cpu0 is None else t_end) - now
            for key, _ in sel.select(min(timeout, 0.05)):
                st = key.data
                chunk = st[0].recv(65536)
                if not chunk:
                    raise RuntimeError("server closed a connection")
                buf = st[4] + chunk
                if not buf.endswith(b"\r\n"):
                    st[4] = buf
                    continue
                st[4] = b""
                now = clock()
                if t_start <= now < t_end:
                    if buf == b"STORED\r\n":
                        done += 1
                        lat.append(now - st[3])
                    else:
                        errors += 1
                if now < t_end:
                    send(st, now)
        if cpu0 is None:
            cpu0 = cpu1
        for s in socks:
            s.close()
        pipe.send((done, lat, errors, cpu1 - cpu0))
    except Exception as e:  # the parent must hear of it, not hang on recv
        pipe.send(("error", repr(e)))
        raise


def send(st, now):
    s, reqs, i = st[0], st[1], st[2]
    data = reqs[i]
    st[2] = (i + 1) % len(reqs)
    st[3] = now
    n = s.send(data)
    if n != len(data):
        # one request in flight never fills an empty socket buffer, but be exact
        s.setblocking(True)
        s.sendall(data[n:])
        s.setblocking(False)


def _self_cpu():
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime


def run_load(port, server_pid, conns, nkeys, value, seconds, procs, sample=None):
    """Drive `conns` connections from `procs` processes; the window's figures.
    sample() is called at the window's start and end (the server's stats)."""
    ctx = multiprocessing.get_context("fork")
    ids = list(range(conns))
    parts = [ids[i::procs] for i in range(procs) if ids[i::procs]]
    workers = []
    try:
        for part in parts:
            parent_end, child_end = ctx.Pipe()
            p = ctx.Process(target=generator, args=(port, part, conns, nkeys, value, child_end), daemon=True)
            p.start()
            workers.append((p, parent_end))
        for p, pipe in workers:
            msg = pipe.recv()
            if msg != "ready":
                raise RuntimeError(f"generator failed: {msg}")
        t_start = time.monotonic() + WARMUP
        t_end = t_start + seconds
        for p, pipe in workers:
            pipe.send((t_start, t_end))
        time.sleep(max(0.0, t_start - time.monotonic()))
        srv0 = cpu_seconds(server_pid)
        wait0 = run_delay(server_pid)
        s0 = sample() if sample else None
        time.sleep(max(0.0, t_end - time.monotonic()))
        srv1 = cpu_seconds(server_pid)
        wait1 = run_delay(server_pid)
        s1 = sample() if sample else None
        done, lat, errors, gen_cpu = 0, [], 0, 0.0
        for p, pipe in workers:
            if not pipe.poll(60):
                raise RuntimeError("generator did not report")
            msg = pipe.recv()
            if msg[0] == "error":
                raise RuntimeError(f"generator failed: {msg[1]}")
            done += msg[0]
            lat += msg[1]
            errors += msg[2]
            gen_cpu += msg[3]
        for p, _ in workers:
            p.join(10)
    finally:
        for p, _ in workers:
            if p.is_alive():
                p.kill()
                p.join()
    return {
        "ops": done,
        "rate": done / seconds,
        "p50": percentile(lat, 0.50),
        "p99": percentile(lat, 0.99),
        "errors": errors,
        "srv_cpu": sum(srv1) - sum(srv0),
        "srv_sys": srv1[1] - srv0[1],
        "srv_wait": None if wait0 is None or wait1 is None else wait1 - wait0,
        "gen_cpu": gen_cpu,
        "procs": len(parts),
        "seconds": seconds,
        "samples": (s0, s1),
    }


def run_loadgen(binary, port, server_pid, conns, nkeys, value_size, seconds, sample):
    """The same run as run_load, driven by bench/loadgen.c: classic sets, one
    in flight per connection, each connection cycling over its own slice of
    the keys (--pattern disjoint). sample() is called at the window's start
    and end (loadgen's marks)."""
    samples, waits = {}, {}

    def on_mark(what):
        waits[what] = run_delay(server_pid)
        samples[what] = sample()

    r = loadgen.run(
        binary, port, on_mark, workload="set", conns=conns, depth=1, keys=nkeys, value_size=value_size,
        pattern="disjoint", seconds=seconds, warmup=WARMUP, server_pid=server_pid,
    )
    wait0, wait1 = waits.get("start"), waits.get("end")
    return {
        "ops": r["ops"],
        "rate": r["ops_per_sec"],
        "p50": r["p50_us"] / 1e6,
        "p99": r["p99_us"] / 1e6,
        "errors": r["errors"],
        "srv_cpu": r["server_cpu_s"],
        "srv_sys": r["server_sys_s"],
        "srv_wait": None if wait0 is None or wait1 is None else wait1 - wait0,
        "gen_cpu": r["gen_cpu_s"],
        "procs": 1,
        "seconds": r["seconds"],
        "samples": (samples["start"], samples["end"]),
    }


def percentile(values, q):
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def bench_write_path(base, variants, conns_list, seconds, value_size, nkeys, procs_opt, loadgen_bin=None):
    """One server per (variant, conns) cell; with loadgen_bin (loadgen.build())
    the C generator drives the sets, else the Python one (procs_opt processes)."""
    value = b"v" * value_size
    rows = []
    for label, extra in variants:
        for conns in conns_list:
            data = tempfile.mkdtemp(prefix="wp-", dir=base)
            port = free_port()
            proc = spawn_server(data, port, extra, log_path=data + ".log")
            try:
                sock = connect_when_up(port, proc)
                if loadgen_bin:
                    loadgen.fill(loadgen_bin, port, nkeys, value_size)
                    r = run_loadgen(loadgen_bin, port, proc.pid, conns, nkeys, value_size, seconds, lambda: stats(sock))
                else:
                    fill(sock, nkeys, value)
                    procs = procs_opt or max(1, min(2, -(-conns // CONNS_PER_PROC)))
                    r = run_load(port, proc.pid, conns, nkeys, value, seconds, procs, lambda: stats(sock))
                sock.close()
            finally:
                stop_server(proc)
                shutil.rmtree(data, ignore_errors=True)
                try:
                    os.unlink(data + ".log")
                except OSError:
                    pass
            before, after = r["samples"]
            # the everysec timer's barriers are in fsync_calls too
            calls = int(after["fsync_calls"]) - int(before["fsync_calls"])
            r.update(label=label, conns=conns, barriers=calls)
            rows.append(r)
            print(f"  .. {label} {conns} conns: {r['rate']:.0f} sets/s", file=sys.stderr, flush=True)
    return rows


def print_write_path(rows, value_size, nkeys, seconds):
    print(f"\n### Durable write path: set, {value_size}-byte values, overwrites of {nkeys:,} keys, {seconds:g} s window\n")
    print("| fsync | conns | sets/s | p50 ms | p99 ms | srv CPU µs/op (sys) | srv CPU % | srv waits for CPU % | gen CPU µs/op | gen CPU % (procs) | barriers/op | errors |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        ops = max(r["ops"], 1)
        print(
            f"| {r['label']} | {r['conns']} | {r['rate']:,.0f} "
            f"| {r['p50'] * 1e3:.2f} | {r['p99'] * 1e3:.2f} "
            f"| {r['srv_cpu'] / ops * 1e6:,.0f} ({r['srv_sys'] / ops * 1e6:,.0f}) | {r['srv_cpu'] / r['seconds'] * 100:.0f} "
            f"| {'?' if r['srv_wait'] is None else format(r['srv_wait'] / r['seconds'] * 100, '.0f')} "
            f"| {r['gen_cpu'] / ops * 1e6:,.0f} | {r['gen_cpu'] / r['seconds'] / r['procs'] * 100:.0f} ({r['procs']}) "
            f"| {r['barriers'] / ops:.3f} | {r['errors']} |"
        )


# -- the file-system floor --------------------------------------------------


# per_op_in_place's slots: a record of up to this size per slot
IN_PLACE_SLOT = 4096


class Floor:
    """Files laid out as the store lays them out, written without a server."""

    def __init__(self, path, nkeys, value_size):
        self.path = path
        self.tmp = os.path.join(path, "tmp")
        os.makedirs(self.tmp)
        self.files = []
        value = b"v" * value_size
        for i in range(nkeys):
            key = bench_key(i)
            h = hashlib.blake2b(key, digest_size=16).hexdigest()
            folder = os.path.join(path, "items", h[:2], h[2:4])
            os.makedirs(folder, exist_ok=True)
            data = record.encode(key, 0, 0, i + 1, 0.0, value) + key + value
            self.files.append((os.path.join(folder, h), folder, data))
        self.n = 0
        self.slots = [0] * nkeys  # per_op_in_place: the slot each file had written last
        self.spares = collections.deque()
        self.barriers = {}  # method -> the store's barrier of that method
        self.exchange = Exchange()
        for target, _, data in self.files:  # the fill: what follows overwrites
            os.replace(self.write_temp(data), target)

    def close(self):
        for barrier in self.barriers.values():
            barrier.close()

    def write_temp(self, data, datasync=False):
        self.n += 1
        tmp = os.path.join(self.tmp, f"floor.{self.n}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(fd, data)
            if datasync:
                os.fdatasync(fd)
        finally:
            os.close(fd)
        return tmp

    def per_op(self, i, sync):
        target, folder, data = self.files[i]
        tmp = self.write_temp(data, datasync=sync)
        os.replace(tmp, target)
        if sync:
            fsync_dir(_OS, folder)

    def per_op_spare(self, i):
        """The server's way (store/spares.py): the record written over a
        spare, swapped with the old one by renameat2, the old one the next
        spare."""
        target, _, data = self.files[i]
        if self.spares:
            tmp = self.spares.popleft()
            fd = os.open(tmp, os.O_WRONLY)
            try:
                os.write(fd, data)
                if os.fstat(fd).st_size > len(data):
                    os.ftruncate(fd, len(data))
            finally:
                os.close(fd)
        else:
            tmp = self.write_temp(data)
        if self.exchange(tmp, target):
            self.spares.append(tmp)
        else:
            os.replace(tmp, target)

    def per_op_in_place(self, i):
        """What a record format of two slots per file would cost (not the
        server's way): open the item's file, pwrite the record over the slot
        not written last, close. No temp file, no rename."""
        target, _, data = self.files[i]
        self.slots[i] ^= 1
        fd = os.open(target, os.O_WRONLY)
        try:
            os.pwrite(fd, data, self.slots[i] * IN_PLACE_SLOT)
        finally:
            os.close(fd)

    def batch(self, start, size, method):
        """One group commit as store.commit() does it."""
        n = len(self.files)
        chosen = [self.files[(start + j) % n] for j in range(size)]
        tmps = [self.write_temp(data) for _, _, data in chosen]
        if method not in self.barriers:
            self.barriers[method] = make_barrier(method, self.path)  # the server's own
        barrier = self.barriers[method]
        barrier.sync(tmps, [self.tmp])
        folders = set()
        for tmp, (target, folder, _) in zip(tmps, chosen):
            os.replace(tmp, target)
            folders.add(folder)
        barrier.sync((), folders)


def timed(seconds, step, per_step):
    """Run step(i) until `seconds` pass; (ops/s, per-op latencies of each
    step, CPU µs/op)."""
    lat = []
    ops = 0
    t0 = os.times()
    start = time.monotonic()
    end = start + seconds
    i = 0
    now = start
    while now < end:
        step(i)
        i += per_step
        ops += per_step
        t = time.monotonic()
        lat.append(t - now)
        now = t
    elapsed = now - start
    t1 = os.times()
    cpu = (t1.user - t0.user) + (t1.system - t0.system)
    return ops / elapsed, lat, cpu / ops * 1e6, ops


def bench_floor(base, seconds, value_size, nkeys):
    path = tempfile.mkdtemp(prefix="floor-", dir=base)
    rows = []
    try:
        floor = Floor(path, nkeys, value_size)
        try:
            n = nkeys
            cases = [
                ("write temp + rename (no sync)", 1, lambda i: floor.per_op(i % n, False)),
                ("write + fdatasync + rename + fsync folder, per op", 1, lambda i: floor.per_op(i % n, True)),
                ("write over a spare + renameat2 exchange (no sync: the server's way)", 1,
                 lambda i: floor.per_op_spare(i % n)),
                ("pwrite into the other of two slots in place (no sync; not the server's way: a format it could have)", 1,
                 lambda i: floor.per_op_in_place(i % n)),
            ]
            if HAVE_SYNCFS:
                cases += [
                    ("write, syncfs, rename, syncfs: batch 1", 1, lambda i: floor.batch(i, 1, "syncfs")),
                    ("50 writes, syncfs, 50 renames, syncfs: batch 50", 50, lambda i: floor.batch(i, 50, "syncfs")),
                ]
            cases.append(
                ("50 writes, fdatasync each, renames, fsync each folder: batch 50", 50, lambda i: floor.batch(i, 50, "fsync"))
            )
            for label, per, step in cases:
                rate, lat, cpu, ops = timed(seconds, step, per)
                rows.append((label, rate, percentile(lat, 0.5), percentile(lat, 0.99), cpu, ops))
                print(f"  .. floor {label}: {rate:.0f} writes/s", file=sys.stderr, flush=True)
        finally:
            floor.close()
    finally:
        shutil.rmtree(path, ignore_errors=True)
    return rows


def print_floor(rows, value_size, nkeys, seconds):
    print(f"\n### File-system floor: one Python loop, no server, {value_size}-byte values, overwrites of {nkeys:,} files, {seconds:g} s each\n")
    print("| strategy | writes/s | p50 ms | p99 ms | CPU µs/write |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for label, rate, p50, p99, cpu, _ in rows:
        print(f"| {label} | {rate:,.0f} | {p50 * 1e3:.2f} | {p99 * 1e3:.2f} | {cpu:,.0f} |")
    print("\n(p50/p99 of a batch row: the time of one whole batch, which is what each of its writes waits)")


# -- start-up ------------------------------------------------------------------


def startup_dir(n, value_size):
    """A data dir with n items, generated once and cached; (path, generated now)."""
    top = f"/tmp/mclite-bench-{n}"
    data = os.path.join(top, "data")
    marker = os.path.join(top, "READY")
    want = f"items={n} value_size={value_size} format={record.VERSION}\n"
    try:
        with open(marker) as f:
            if f.read() == want:
                return data, False
    except FileNotFoundError:
        pass
    shutil.rmtree(top, ignore_errors=True)
    os.makedirs(top)
    print(f"  .. generating {n:,} items in {data} (once; cached)", file=sys.stderr, flush=True)
    t = time.monotonic()
    value = b"v" * value_size
    # The store makes the layout and hands out the cas values (so its state
    # file reserves them), but the records are written straight to their
    # paths: Store.store's temp file + rename costs twice the syscalls, and
    # the READY marker already covers a generation cut short.
    st = Store(data, memory_limit=1 << 20, fsync="no")
    try:
        made = set()
        now = time.time()
        for i in range(n):
            key = bench_key(i)
            _, path = st.dir.locate(key)
            folder = os.path.dirname(path)
            if folder not in made:
                os.makedirs(folder, exist_ok=True)
                made.add(folder)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                os.write(fd, record.encode(key, 0, 0, st.state.next_cas(), now, value) + key + value)
            finally:
                os.close(fd)
    finally:
        st.close()
    fd = os.open(data, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if HAVE_SYNCFS:
            syncfs(fd)  # so the measurement does not share the disk with writeback
        else:
            os.sync()
    finally:
        os.close(fd)
    with open(marker, "w") as f:
        f.write(want)
    print(f"  .. generated in {time.monotonic() - t:.0f} s", file=sys.stderr, flush=True)
    return data, True


def bench_startup(n, data, base):
    port = free_port()
    log_path = os.path.join(base, f"startup-{n}.log")
    t0 = time.monotonic()
    proc = spawn_server(data, port, log_path=log_path)
    try:
        sock = connect_when_up(port, proc)
        sock.sendall(b"get %s\r\n" % bench_key(max(0, n - 1)))
        reply = read_until(sock, b"END\r\n")
        t_first = time.monotonic() - t0
        mem_first = proc_memory(proc.pid)
        while True:
            s = stats(sock)
            if s["startup_scan_done"] == "1":
                break
            time.sleep(0.02)
        t_scan = time.monotonic() - t0
        mem_scan = proc_memory(proc.pid)
        sock.close()
    finally:
        stop_server(proc)
        try:
            os.unlink(log_path)
        except OSError:
            pass
    hit = reply.startswith(b"VALUE") if n else reply == b"END\r\n"
    return {
        "n": n,
        "first": t_first,
        "scan": t_scan,
        "mem_first": mem_first,
        "mem_scan": mem_scan,
        "curr_items": int(s["curr_items"]),
        "hit": hit,
    }


def print_startup(rows, generated):
    print("\n### Start-up: default -m 64, --fsync everysec\n")
    print("| items on disk | first get answered | scan done | VmRSS at first get | VmRSS after scan | VmHWM after scan | curr_items | dir |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for r in rows:
        print(
            f"| {r['n']:,} | {r['first'] * 1e3:,.0f} ms | {r['scan']:,.2f} s | {r['mem_first'][0]:.1f} MiB "
            f"| {r['mem_scan'][0]:.1f} MiB | {r['mem_scan'][1]:.1f} MiB | {r['curr_items']:,}"
            f"{'' if r['hit'] else ' (first get MISSED)'} | {generated.get(r['n'], 'empty')} |"
        )
    if len(rows) >= 2:
        lo, hi = rows[0], rows[-1]
        grow = hi["mem_scan"][1] - lo["mem_scan"][1]
        per = grow * (1 << 20) / max(1, hi["n"] - lo["n"])
        # an index of keys would cost 100+ bytes an item; below 10 is noise
        # (allocator pages, the interpreter's own caches)
        verdict = "flat, no per-item memory" if per < 10 else "GROWS with the number of items"
        print(f"\nVmHWM from {lo['n']:,} to {hi['n']:,} items: {grow:+.1f} MiB ({per:.2f} bytes per item): {verdict}.")


# -- main ------------------------------------------------------------------------


def int_list(text):
    return [int(x) for x in text.split(",") if x.strip()]


def write_path_variants(levels):
    """(label, server flags) of each write-path row: the levels, and `always`
    once more with --fsync-method fsync."""
    variants = [(level, ["--fsync", level]) for level in levels]
    if "always" in levels:
        variants.insert(levels.index("always") + 1, ("always, fsync method", ["--fsync", "always", "--fsync-method", "fsync"]))
    return variants


def parse_levels(p, text):
    levels = [x for x in text.split(",") if x]
    for level in levels:
        if level not in ("always", "everysec", "no"):
            p.error(f"unknown level {level!r}")
    return levels


def print_machine(info, heading="### Machine"):
    print(f"{heading}\n")
    print("| | |\n| --- | --- |")
    for k, v in info:
        print(f"| {k} | {v} |")


def write_path_section(base, variants, conns, seconds, sizes, nkeys, procs=0, binary=None, floor=True):
    """For each value size: the write-path table, then (floor=True) the
    floor's, printed as they come; {size: (write-path rows, floor rows or None)}."""
    out = {}
    for size in sizes:
        rows = bench_write_path(base, variants, conns, seconds, size, nkeys, procs, binary)
        print_write_path(rows, size, nkeys, seconds)
        sys.stdout.flush()
        floor_rows = None
        if floor:
            floor_rows = bench_floor(base, seconds, size, nkeys)
            print_floor(floor_rows, size, nkeys, seconds)
            sys.stdout.flush()
        out[size] = (rows, floor_rows)
    return out


def startup_section(base, items):
    """Start-up with an empty dir and with each count of items; printed; the rows."""
    rows = [bench_startup(0, os.path.join(base, "empty"), base)]
    generated = {}
    for n in items:
        data, now = startup_dir(n, 100)
        generated[n] = "generated just now (page cache warm)" if now else "cached from an earlier run"
        rows.append(bench_startup(n, data, base))
    print_startup(rows, generated)
    return rows


def stop_spawned():
    for proc in list(SPAWNED):
        stop_server(proc)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--levels", default="always,everysec,no", help="fsync levels (default: always,everysec,no)")
    p.add_argument("--conns", type=int_list, default=[1, 8, 50], help="connection counts (default: 1,8,50)")
    p.add_argument("--seconds", type=float, default=5.0, help="measured window per run (default: 5)")
    p.add_argument("--value-size", type=int_list, default=[100], help="value sizes, e.g. 100,1024 (default: 100)")
    p.add_argument("--keys", type=int, default=10000, help="key set the sets cycle over (default: 10000)")
    p.add_argument(
        "--generator", choices=("c", "python"), default="c" if loadgen.compiler() else "python",
        help="c: bench/loadgen.c, built with cc (the default where cc exists); python: the Python generator",
    )
    p.add_argument("--procs", type=int, default=0, help="Python generator processes (default: 1 per 25 conns, at most 2)")
    p.add_argument("--skip-floor", action="store_true", help="skip the file-system floor")
    p.add_argument("--skip-startup", action="store_true", help="skip the start-up measurement")
    p.add_argument("--startup-items", type=int_list, default=[100000, 1000000], help="(default: 100000,1000000)")
    p.add_argument("--dir", default=tempfile.gettempdir(), help="where the data dirs go (default: the temp dir)")
    args = p.parse_args()
    variants = write_path_variants(parse_levels(p, args.levels))
    binary = loadgen.build() if args.generator == "c" else None

    os.makedirs(args.dir, exist_ok=True)
    base = tempfile.mkdtemp(prefix="mclite-durability-", dir=args.dir)
    try:
        print_machine(machine_info(base))
        print(f"\nCommand: `python bench/durability.py {' '.join(sys.argv[1:])}`".rstrip())
        print(f"\nLoad generator: {'bench/loadgen.c (C, one process)' if binary else 'Python (multiprocessing)'}")
        sys.stdout.flush()
        write_path_section(
            base, variants, args.conns, args.seconds, args.value_size, args.keys, args.procs, binary, not args.skip_floor
        )
        if not args.skip_startup:
            startup_section(base, args.startup_items)
    finally:
        stop_spawned()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
