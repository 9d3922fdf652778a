"""Side by side on one machine: memcached-lite, real memcached (`-t 1`), the
reference loop (bench/refloop.py, a bare CPython selectors server with a dict:
the ceiling of a pure-Python read path) and the write-through loop (the same
with `--data`: a set's least file work, a spare written and exchanged: the
ceiling of today's write technique), all driven by the same C load
generator (bench/loadgen.c, built with `cc` at run time); then the durable
write path and start-up (bench/durability.py's measurements), and the
targets of issue 18, each met or missed with its measured figure.

    python bench/compare.py [--sections throughput,durability,startup]
        [--rounds 3] [--seconds 5] [--warmup 1] [--keys 10000]
        [--workloads get100,get100x16,get90,get90x16,set1k,mget10,latency]
        [--levels always,everysec,no] [--conns 1,8,50] [--write-sizes 1024]
        [--skip-startup] [--startup-items 100000,1000000]
        [--servers lite,ref,memcached] [--against REV]
        [--no-pin] [--dir /tmp] [--json results.json]

Throughput: each server on a free loopback port (memcached-lite with a fresh
data dir and `--fsync everysec`), filled with the same 10,000 keys of 100
bytes (`key:N`; set1k overwrites its own 10,000 keys of 1 KB, `big:N`, filled
too), then every workload on every server, round after round, the order of
the servers rotated each round. Each table shows the median round of each
server (by ops/s; by p99 for `latency`) and the range over the rounds. The
servers run on one CPU and the generator on another (`--no-pin`: where the
scheduler puts them; on a 2-vCPU VM that alone moves one-connection figures
3x, by whether the two happen to share a CPU).

`--against REV` adds memcached-lite as of commit REV (a `git archive` of it
in the run's temp dir) as one more server of the same rounds: an A/B of a
change, each round measuring both moments apart, where two separate runs of
this VM move 10-20%. `--servers lite --against HEAD~1` runs only those two.

Markdown on stdout (progress on stderr); how to read it: bench/README.md.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import loadgen  # bench/loadgen.py, beside this file
from durability import (
    ROOT,
    connect_when_up,
    free_port,
    int_list,
    machine_info,
    parse_levels,
    print_machine,
    spawn_process,
    spawn_server,
    startup_section,
    stop_server,
    stop_spawned,
    write_path_section,
    write_path_variants,
)

LITE, REF, WT, SHAPE, MEMCACHED = (
    "memcached-lite", "reference loop", "write-through loop", "shape loop", "memcached -t 1"
)
SECTIONS = ("throughput", "durability", "startup")
SERVERS = {"lite": LITE, "ref": REF, "wt": WT, "shape": SHAPE, "memcached": MEMCACHED}
VALUE = 100  # bytes, the values of the key:N set
BIG = 1024  # bytes, set1k's values (big:N)
MEMORY_BUDGET_MIB = 64  # the server's default -m, which bench_startup runs with
RSS_ALLOWANCE_MIB = 40
GEN_BUSY = 90  # gen CPU % of a core above which the generator may have been the limit
CROWDED = 10  # % of the window a process waited for a CPU above which the machine was not quiet

WORKLOADS = {
    "get100": dict(
        title="100% get, 100-byte values, 50 connections, 1 request in flight each",
        workload="get", conns=50, depth=1, value_size=VALUE,
    ),
    "get100x16": dict(
        title="100% get, 100-byte values, 50 connections, 16 requests in flight each",
        workload="get", conns=50, depth=16, value_size=VALUE,
    ),
    "get90": dict(
        title="90% get / 10% set, 100-byte values, 50 connections, 1 request in flight each",
        workload="get90", conns=50, depth=1, value_size=VALUE,
    ),
    "get90x16": dict(
        title="90% get / 10% set, 100-byte values, 50 connections, 16 requests in flight each",
        workload="get90", conns=50, depth=16, value_size=VALUE,
    ),
    "set1k": dict(
        title="100% set of 1 KB values (overwrites), 50 connections, 1 in flight each",
        workload="set", conns=50, depth=1, value_size=BIG, key_prefix="big:",
    ),
    "mget10": dict(
        title="get of 10 random keys, 100-byte values, 50 connections, 1 in flight each",
        workload="mget", mget=10, conns=50, depth=1, value_size=VALUE,
    ),
    "latency": dict(
        title="get90 on one connection, requests back to back (1 in flight)",
        workload="get90", conns=1, depth=1, value_size=VALUE,
    ),
}


# -- the three servers ------------------------------------------------------------


def checkout(rev, base):
    """(label, folder): the tree of commit `rev` of this repository, unpacked in base."""
    done = subprocess.run(
        ["git", "-C", ROOT, "rev-parse", "--short", rev + "^{commit}"], capture_output=True, text=True
    )
    if done.returncode != 0:
        raise SystemExit(f"--against {rev}: not a commit of {ROOT}: {done.stderr.strip()}")
    sha = done.stdout.strip()
    where = os.path.join(base, "against-" + sha)
    os.makedirs(where)
    archive = subprocess.Popen(["git", "-C", ROOT, "archive", sha], stdout=subprocess.PIPE)
    unpacked = subprocess.run(["tar", "-x", "-C", where], stdin=archive.stdout)
    archive.stdout.close()
    if archive.wait() != 0 or unpacked.returncode != 0:
        raise SystemExit(f"--against {rev}: git archive | tar failed")
    return f"memcached-lite @{sha}", where


def start_servers(base, cpus, which=tuple(SERVERS.values()), against=None):
    """{name: (proc, port)}, each accepting, on `cpus`: those of `which`
    (memcached left out if not installed), and memcached-lite of the
    (label, folder) `against` next to this tree's."""
    servers = {}

    def lite(name, tree, log_name):
        port = free_port()
        data = tempfile.mkdtemp(prefix="lite-", dir=base)
        log_path = os.path.join(base, log_name)
        servers[name] = (spawn_server(data, port, ["--fsync", "everysec"], log_path, cpus=cpus, cwd=tree), port)

    lite(LITE, ROOT, "lite.log")
    if against is not None:
        lite(against[0], against[1], "against.log")
    binary = shutil.which("memcached")
    if MEMCACHED in which and binary:
        port = free_port()
        argv = [binary, "-t", "1", "-U", "0", "-l", "127.0.0.1", "-p", str(port)]
        if os.geteuid() == 0:
            argv += ["-u", "root"]
        servers[MEMCACHED] = (spawn_process(argv, os.path.join(base, "memcached.log"), cpus), port)
    elif MEMCACHED in which:
        print("  .. memcached is not installed (apt-get install memcached): its column stays empty", file=sys.stderr)
    for name, extra in ((REF, []), (WT, ["--data", tempfile.mkdtemp(prefix="wt-", dir=base)])):
        if name in which:
            port = free_port()
            argv = [sys.executable, os.path.join(ROOT, "bench", "refloop.py"), "--port", str(port)] + extra
            log_name = "refloop.log" if name == REF else "wtloop.log"
            servers[name] = (spawn_process(argv, os.path.join(base, log_name), cpus), port)
    if SHAPE in which:
        port = free_port()
        argv = [sys.executable, os.path.join(ROOT, "bench", "shapeloop.py"), "--port", str(port)]
        servers[SHAPE] = (spawn_process(argv, os.path.join(base, "shapeloop.log"), cpus), port)
    for proc, port in servers.values():
        connect_when_up(port, proc).close()
    return servers


def pinning():
    """(servers' CPUs, generator's CPUs): the first two CPUs this process may use, or (None, None)."""
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2:
        return None, None
    return {allowed[0]}, {allowed[1]}


def bench_throughput(binary, base, names, rounds, seconds, warmup, keys, pin, which=tuple(SERVERS.values()), against=None):
    """{workload: {server: [the JSON line of each round]}}."""
    srv_cpus, gen_cpus = pinning() if pin else (None, None)
    servers = start_servers(base, srv_cpus, which, against)
    try:
        for name, (proc, port) in servers.items():
            t = time.monotonic()
            loadgen.fill(binary, port, keys, VALUE, "key:")
            if "set1k" in names:
                loadgen.fill(binary, port, keys, BIG, "big:")
            print(f"  .. {name} filled in {time.monotonic() - t:.1f} s", file=sys.stderr, flush=True)
        order = list(servers)
        results = {w: {n: [] for n in order} for w in names}
        for rnd in range(rounds):
            shift = rnd % len(order)
            this_round = order[shift:] + order[:shift]
            for w in names:
                spec = {k: v for k, v in WORKLOADS[w].items() if k != "title"}
                for name in this_round:
                    proc, port = servers[name]
                    if proc.poll() is not None:
                        raise RuntimeError(f"{name} exited with status {proc.returncode}")
                    r = loadgen.run(
                        binary, port, cpus=gen_cpus, seconds=seconds, warmup=warmup, keys=keys,
                        server_pid=proc.pid, seed=rnd + 1, **spec,
                    )
                    results[w][name].append(r)
                    print(
                        f"  .. round {rnd + 1}/{rounds} {w} {name}: {r['ops_per_sec']:,.0f} ops/s, "
                        f"p99 {fmt_us(r['p99_us'])}, gen CPU {gen_pct(r):.0f}%",
                        file=sys.stderr, flush=True,
                    )
                    time.sleep(0.2)  # let the server finish what the closed connections left
        return results
    finally:
        for proc, _ in servers.values():
            stop_server(proc)


def median_round(runs, workload):
    """The median round (the lower middle one of an even count)."""
    key = (lambda r: r["p99_us"]) if workload == "latency" else (lambda r: r["ops_per_sec"])
    ordered = sorted(runs, key=key)
    return ordered[(len(ordered) - 1) // 2]


# -- printing ---------------------------------------------------------------------


def fmt_us(us):
    if us is None:
        return "?"
    if us >= 1000:
        return f"{us / 1000:.2f} ms"
    return f"{us:.0f} µs" if us >= 100 else f"{us:.1f} µs"


def gen_pct(r):
    return r["gen_cpu_s"] / r["seconds"] * 100 if r["seconds"] else 0.0


def wait_pct(r, who):
    w = r.get(f"{who}_wait_s")
    return None if w is None or not r["seconds"] else w / r["seconds"] * 100


def disturbed(*runs):
    """True if the server or the generator of any of these runs waited for a CPU CROWDED % or more."""
    for r in runs:
        for who in ("server", "gen"):
            x = wait_pct(r, who) if r else None
            if x is not None and x >= CROWDED:
                return True
    return False


NOISY = " (a run it rests on was disturbed: waited for a CPU, see the (!) above)"


def ratio(a, b):
    return a / b if b else float("nan")


def short(name):
    """How a ratio's column names a server: ref, memcached, @<commit>."""
    return {REF: "ref", WT: "wt", SHAPE: "shape", MEMCACHED: "memcached"}.get(name, name.replace("memcached-lite ", ""))


def compared(per_server):
    """The servers memcached-lite is held against: the reference loop,
    memcached, then the --against build, those that ran."""
    rest = [n for n in per_server if n not in (LITE, REF, WT, SHAPE, MEMCACHED)]
    return [n for n in (REF, WT, SHAPE, MEMCACHED) if n in per_server] + rest


def print_throughput(results, rounds, seconds, warmup, keys, pin):
    srv_cpus, gen_cpus = pinning() if pin else (None, None)
    where = (
        f"the servers pinned to CPU {min(srv_cpus)}, the generator to CPU {min(gen_cpus)}"
        if srv_cpus else "not pinned (the scheduler places the server and the generator)"
    )
    print(
        f"\n## Throughput and latency\n\n{keys:,} keys, bench/loadgen.c (C, epoll, one process), "
        f"{warmup:g} s warm-up then a {seconds:g} s window per run, {rounds} round(s), the servers' order "
        "rotated each round. Each row is that server's **median round** (by ops/s; by p99 for `latency`); "
        f"\"ops/s over rounds\" is the range. memcached-lite runs with `--fsync everysec`; {where}."
    )
    busy = crowded = False
    for w, per_server in results.items():
        print(f"\n### {w}: {WORKLOADS[w]['title']}\n")
        print(
            "| server | ops/s | ops/s over rounds | p50 | p99 | p999 | srv CPU µs/op | srv CPU % "
            "| gen CPU µs/op | gen CPU % of a core | waited for a CPU % (srv / gen) | errors | misses |"
        )
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for name, runs in per_server.items():
            r = median_round(runs, w)
            rates = [x["ops_per_sec"] for x in runs]
            srv_us = r["server_cpu_us_per_op"]
            srv_pct = None if r["server_cpu_s"] is None else r["server_cpu_s"] / r["seconds"] * 100
            g = gen_pct(r)
            busy |= g >= GEN_BUSY
            waits = [wait_pct(r, "server"), wait_pct(r, "gen")]
            crowd = any(x is not None and x >= CROWDED for x in waits)
            crowded |= crowd
            waited = " / ".join("?" if x is None else f"{x:.0f}" for x in waits) + (" (!)" if crowd else "")
            print(
                f"| {name} | {r['ops_per_sec']:,.0f} | {min(rates):,.0f}–{max(rates):,.0f} "
                f"| {fmt_us(r['p50_us'])} | {fmt_us(r['p99_us'])} | {fmt_us(r['p999_us'])} "
                f"| {'?' if srv_us is None else format(srv_us, '.1f')} | {'?' if srv_pct is None else format(srv_pct, '.0f')} "
                f"| {r['gen_cpu_us_per_op']:.1f} | {g:.0f}{' (!)' if g >= GEN_BUSY else ''} | {waited} "
                f"| {sum(x['errors'] for x in runs)} | {sum(x['misses'] for x in runs)} |"
            )
        lite = median_round(per_server[LITE], w)
        said = [
            f"memcached-lite / {short(n)}: **{ratio(lite['ops_per_sec'], median_round(per_server[n], w)['ops_per_sec']):.2f}** ops/s"
            for n in compared(per_server)
        ]
        if REF in per_server:
            ref = median_round(per_server[REF], w)
            said.append(f"p99 memcached-lite / reference loop: {ratio(lite['p99_us'], ref['p99_us']):.2f}")
        if said:
            print("\n" + "; ".join(said) + ".")
        if w == "mget10":
            print("\n(an op is one `get` of 10 keys; misses count keys)")
    others = compared(next(iter(results.values()), {}))
    print("\n### Ratios (median rounds)\n")
    head = ["workload", "memcached-lite ops/s"] + [f"{n} ops/s" for n in others]
    head += [f"lite / {short(n)}" for n in others] + (["lite p99 / ref p99"] if REF in others else [])
    print("| " + " | ".join(head) + " |")
    print("| --- |" + " ---: |" * (len(head) - 1))
    for w, per_server in results.items():
        lite = median_round(per_server[LITE], w)
        theirs = [median_round(per_server[n], w) for n in others]
        cells = [w, f"{lite['ops_per_sec']:,.0f}"] + [f"{r['ops_per_sec']:,.0f}" for r in theirs]
        cells += [f"{ratio(lite['ops_per_sec'], r['ops_per_sec']):.2f}" for r in theirs]
        if REF in others:
            cells.append(f"{ratio(lite['p99_us'], median_round(per_server[REF], w)['p99_us']):.2f}")
        print("| " + " | ".join(cells) + " |")
    if busy:
        print(
            f"\n(!) in gen CPU: the generator used {GEN_BUSY}% of a core or more in that run, so that figure "
            "may be partly the generator's limit."
        )
    if crowded:
        print(
            f"\n(!) in waited for a CPU: the server or the generator spent {CROWDED}% of the window or more "
            "runnable but not running: other programs were using the cores, so that run's figures are low "
            "and noisy; rerun on a quiet machine before quoting them."
        )


# -- the targets -------------------------------------------------------------------


# issue 18's targets against the limits of this design, measured in the same
# run: (workload, the server held against, the figure, the goal): the read
# path against the dict loop, mixed and write work against the write-through
# loop (the same file work done plainly), and one against memcached
RATIO_TARGETS = (
    ("get100", REF, "ops_per_sec", 0.85),
    ("get100x16", REF, "ops_per_sec", 0.7),
    ("mget10", REF, "ops_per_sec", 0.7),
    ("get90", WT, "ops_per_sec", 1.0),
    ("get90x16", WT, "ops_per_sec", 1.0),
    ("set1k", WT, "ops_per_sec", 1.3),
    ("latency", WT, "p99_us", 1.0),
    ("get90x16", MEMCACHED, "ops_per_sec", 1.0),
)


def targets(tp, wp, floor, startup):
    """(target, measured, verdict) rows; a target whose run was left out says so."""
    rows = []
    absent = "not measured"

    def med(w, name):
        if tp is None or w not in tp or name not in tp[w]:
            return None
        return median_round(tp[w][name], w)

    def verdict(ok, *runs):
        return ("met" if ok else "**MISSED**") + (NOISY if disturbed(*runs) else "")

    for w, against, metric, goal in RATIO_TARGETS:
        name = f"{w}: lite {'≥' if metric == 'ops_per_sec' else 'p99 ≤'} {goal:g} × {against}"
        lite, theirs = med(w, LITE), med(w, against)
        if lite is None or theirs is None:
            rows.append((name, absent, "—"))
            continue
        x = ratio(lite[metric], theirs[metric])
        if metric == "ops_per_sec":
            text = f"{x:.2f} × ({lite[metric]:,.0f} vs {theirs[metric]:,.0f} ops/s)"
            ok = x >= goal
        else:
            text = f"p99 {fmt_us(lite[metric])} = {x:.2f} × {fmt_us(theirs[metric])}"
            ok = x <= goal
        rows.append((name, text, verdict(ok, lite, theirs)))

    def wp_row(label, conns):
        for r in (wp or ()):
            if r["label"] == label and r["conns"] == conns:
                return r
        return None

    name = "set1k at everysec, 50 conns: ≥ 80% of the file-system floor (write temp + rename, 1 KB)"
    every = wp_row("everysec", 50)
    base = next((r for r in (floor or ()) if r[0].startswith("write temp + rename")), None)
    if every and base:
        x = ratio(every["rate"], base[1])
        text = f"{x * 100:.0f}% ({every['rate']:,.0f} vs {base[1]:,.0f} writes/s)"
        lite = med("set1k", LITE)
        if lite:
            text += f"; the throughput section's set1k: {ratio(lite['ops_per_sec'], base[1]) * 100:.0f}% ({lite['ops_per_sec']:,.0f}/s)"
        rows.append((name, text, verdict(x >= 0.8)))
    else:
        rows.append((name, absent + " (needs the durability section, everysec at 50 conns)", "—"))

    name = "set1k at always: 50 conns ≥ 4 × 1 conn (group commit)"
    one, fifty = wp_row("always", 1), wp_row("always", 50)
    if one and fifty:
        x = ratio(fifty["rate"], one["rate"])
        text = f"{x:.1f} × ({fifty['rate']:,.0f} vs {one['rate']:,.0f} sets/s; {fifty['barriers'] / max(1, fifty['ops']):.3f} barriers/set at 50)"
        rows.append((name, text, verdict(x >= 4)))
    else:
        rows.append((name, absent + " (needs the durability section, always at 1 and 50 conns)", "—"))

    name = f"1M items on disk: first reply < 1 s, RSS ≤ -m {MEMORY_BUDGET_MIB} MiB + {RSS_ALLOWANCE_MIB} MiB"
    big = next((r for r in (startup or ()) if r["n"] == 1_000_000), None)
    if big:
        peak = max(big["mem_first"][0], big["mem_scan"][0], big["mem_scan"][1])
        ok = big["first"] < 1.0 and big["hit"] and peak <= MEMORY_BUDGET_MIB + RSS_ALLOWANCE_MIB
        text = f"first get answered after {big['first'] * 1e3:,.0f} ms{'' if big['hit'] else ' (a MISS)'}; peak RSS (VmHWM) {peak:.1f} MiB"
        rows.append((name, text, verdict(ok)))
    else:
        rows.append((name, absent + " (needs the startup section with 1000000 in --startup-items)", "—"))
    return rows


def print_targets(rows):
    print("\n## Targets (issue 18), all from this run\n")
    print("| target | measured | result |")
    print("| --- | --- | --- |")
    for target, measured, result in rows:
        print(f"| {target} | {measured} | {result} |")


# -- main ----------------------------------------------------------------------------


def versions(binary):
    out = []
    mc = shutil.which("memcached")
    if mc:
        done = subprocess.run([mc, "-V"], capture_output=True, text=True)
        out.append(("memcached", (done.stdout or done.stderr).strip()))
    done = subprocess.run([loadgen.compiler(), "--version"], capture_output=True, text=True)
    out.append(("cc", done.stdout.splitlines()[0] if done.stdout else "?"))
    out.append(("load generator", binary))
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sections", default=",".join(SECTIONS), help="what to run (default: throughput,durability,startup)")
    p.add_argument("--rounds", type=int, default=3, help="throughput rounds, the order rotated each (default: 3)")
    p.add_argument("--seconds", type=float, default=5.0, help="measured window of each run (default: 5)")
    p.add_argument("--warmup", type=float, default=1.0, help="warm-up before each throughput window (default: 1)")
    p.add_argument("--keys", type=int, default=10000, help="keys filled and used (default: 10000)")
    p.add_argument("--workloads", default=",".join(WORKLOADS), help=f"(default: {','.join(WORKLOADS)})")
    p.add_argument("--levels", default="always,everysec,no", help="durability: fsync levels (default: always,everysec,no)")
    p.add_argument("--conns", type=int_list, default=[1, 8, 50], help="durability: connection counts (default: 1,8,50)")
    p.add_argument("--write-sizes", type=int_list, default=[BIG], help="durability: value sizes (default: 1024)")
    p.add_argument("--skip-startup", action="store_true", help="leave the startup section out")
    p.add_argument(
        "--startup-items", type=int_list, default=[100000, 1000000],
        help="items on disk for start-up; dirs cached in /tmp/mclite-bench-<N>, the 1M one takes minutes to make once (default: 100000,1000000)",
    )
    p.add_argument(
        "--pin", action=argparse.BooleanOptionalAction, default=True,
        help="throughput: the servers on one CPU, the generator on another (default: on; --no-pin)",
    )
    p.add_argument(
        "--servers", default="lite,ref,wt,shape,memcached",
        help="throughput: which of lite,ref,wt,shape,memcached run (lite always; default: all five)",
    )
    p.add_argument(
        "--against", metavar="REV",
        help="throughput: also memcached-lite as of commit REV (git archive), in the same rounds: an A/B",
    )
    p.add_argument("--dir", default=tempfile.gettempdir(), help="where the data dirs go (default: the temp dir)")
    p.add_argument("--json", help="also write every run's raw figures here")
    args = p.parse_args()
    sections = [s for s in args.sections.split(",") if s]
    for s in sections:
        if s not in SECTIONS:
            p.error(f"unknown section {s!r} (of {', '.join(SECTIONS)})")
    if args.skip_startup and "startup" in sections:
        sections.remove("startup")
    names = [w for w in args.workloads.split(",") if w]
    for w in names:
        if w not in WORKLOADS:
            p.error(f"unknown workload {w!r} (of {', '.join(WORKLOADS)})")
    if args.rounds < 1:
        p.error("--rounds must be at least 1")
    levels = parse_levels(p, args.levels)
    which = []
    for name in args.servers.split(","):
        if name and name not in SERVERS:
            p.error(f"unknown server {name!r} (of {', '.join(SERVERS)})")
        if name:
            which.append(SERVERS[name])
    if LITE not in which:
        p.error("--servers: lite is the one measured; it cannot be left out")

    binary = loadgen.build()
    os.makedirs(args.dir, exist_ok=True)
    base = tempfile.mkdtemp(prefix="mclite-compare-", dir=args.dir)
    tp = wp = floor = startup = None
    raw = {}
    try:
        print_machine(machine_info(base) + versions(binary), "## Machine")
        print(f"\nCommand: `python bench/compare.py {' '.join(sys.argv[1:])}`".rstrip())
        sys.stdout.flush()
        against = checkout(args.against, base) if args.against else None
        if against:
            print(f"\nAgainst: {against[0]} (`--against {args.against}`), in the same rounds.")
        if "throughput" in sections:
            tp = bench_throughput(
                binary, base, names, args.rounds, args.seconds, args.warmup, args.keys, args.pin, which, against
            )
            print_throughput(tp, args.rounds, args.seconds, args.warmup, args.keys, args.pin)
            raw["throughput"] = tp
            sys.stdout.flush()
        if "durability" in sections:
            print("\n## Durable write path (memcached-lite alone; bench/durability.py's runs, driven by loadgen)")
            done = write_path_section(
                base, write_path_variants(levels), args.conns, args.seconds, args.write_sizes, args.keys, binary=binary
            )
            for size, (rows, fl) in done.items():
                raw.setdefault("write_path", {})[size] = [{k: v for k, v in r.items() if k != "samples"} for r in rows]
                raw.setdefault("floor", {})[size] = fl
            wp, floor = done.get(BIG, (None, None))
        if "startup" in sections:
            print("\n## Start-up (memcached-lite)")
            startup = raw["startup"] = startup_section(base, args.startup_items)
        print_targets(targets(tp, wp, floor, startup))
        print(f"\nLoad average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        if args.json:
            with open(args.json, "w") as f:
                json.dump(raw, f, indent=1, default=str)
    finally:
        stop_spawned()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
