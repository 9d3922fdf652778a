"""The soak: mixed load on a real server while it is killed and restarted,
then every acknowledged write checked.

    python tools/soak.py --minutes M [--fsync always|everysec] [--seed S]
        [--connections N] [--kill-every A,B] [--stop-for S --stops N] [--no-kills]

Many connections (one thread each, each owning its own keys) send classic
and meta commands, one at a time or pipelined, small values and big ones;
every reply is checked against a model of what the key must hold. Meanwhile
the server (`python -m reactor` on its own port and data dir) is SIGKILLed at
random moments and started again on the same data dir; with --stop-for it is
also stopped (SIGSTOP) that long and continued, and then no connection may
have been dropped and every reply must have come.

What a command whose reply never came did (its connection died with the
server) is unknown: the key may hold its value or the one before, and the
next read settles which. kill -9 is not a power loss (the page cache
survives it), so at every level every acknowledged write must be there: the
end is one more kill -9 and restart, then every key is read back.

Also watched, every quarter second: the server's RSS, its open descriptors
(/proc/<pid>/fd) and the files in <data-dir>/tmp/; each must stay under its
bound. The summary goes to stdout; the exit status is 1 on any violation.
Standard library only.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LISTENING = "listening on 127.0.0.1:{port}"
START_TIMEOUT = 60.0
SAMPLE_EVERY = 0.25
KEYS_PER_CONNECTION = 200
BIG_VALUE = (64 << 10, 512 << 10)  # one write in BIG_SHARE is this big
BIG_SHARE = 0.03
SMALL_VALUE = (1, 2000)
APPEND_LIMIT = 900 << 10  # appends stop short of the 1 MB item limit
PIPELINE_SHARE = 0.4
PIPELINE_DEPTH = (2, 24)
KEPT_FILES = 16384  # store/inplace.py's bound on the item files kept open

# A key's state in the model: ABSENT, or a value as a tuple of parts, each
# (seq, length), which make_value turns into bytes.
ABSENT = None

# command -> (weight, what it does to the key)
COMMANDS = {
    "set": (20, "write"),
    "ms": (15, "write"),
    "append": (8, "append"),
    "delete": (4, "delete"),
    "md": (3, "delete"),
    "get": (20, "read"),
    "gets": (8, "read"),
    "mg": (15, "read"),
}


def make_value(key, parts):
    """The bytes of a value: each part says whose write it was, then filler."""
    out = []
    for seq, length in parts:
        head = b"%s|%d|" % (key, seq)
        out.append((head + bytes([97 + seq % 26]) * length)[:length])
    return b"".join(out)


def value_length(parts):
    return sum(length for _, length in parts)


class Violation(Exception):
    """A reply or a read-back that the model says cannot be."""


class ConnectionLost(Exception):
    """The server went away mid-exchange."""


# -- the server ------------------------------------------------------------


class Server:
    """One `python -m reactor` process at a time on a fixed port and data dir;
    `generation` counts the kills, so a connection can tell whether the
    server it lost was killed."""

    def __init__(self, port, data_dir, log_file, fsync, extra_args=()):
        self.port = port
        self.data_dir = Path(data_dir)
        self.log_file = Path(log_file)
        self.argv = [
            sys.executable, "-m", "reactor", "--port", str(port), "--listen", "127.0.0.1",
            "--data-dir", str(self.data_dir), "--fsync", fsync, "--log-file", str(self.log_file),
            *extra_args,
        ]
        self.proc = None
        self.generation = 0
        self.kills = 0
        self.restarts = 0
        self.stops = 0
        self.start_seconds = []
        self.up = threading.Event()

    @property
    def pid(self):
        return self.proc.pid if self.proc is not None else None

    def start(self):
        began = time.monotonic()
        # the log is appended to across restarts; the listening line to wait
        # for is the one after this offset
        offset = self.log_file.stat().st_size if self.log_file.exists() else 0
        self.proc = subprocess.Popen(
            self.argv, cwd=str(ROOT), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )
        marker = LISTENING.format(port=self.port)
        deadline = began + START_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited with {self.proc.returncode} at start; see {self.log_file}")
            if self.log_file.exists():
                with open(self.log_file, "rb") as f:
                    f.seek(offset)
                    if marker.encode() in f.read():
                        break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server did not listen within {START_TIMEOUT} s; see {self.log_file}")
            time.sleep(0.02)  # polling a file; readiness is the line in it
        self.start_seconds.append(time.monotonic() - began)
        self.up.set()

    def kill9(self):
        """SIGKILL and wait until the process is gone: nothing it was sent
        can take effect after this returns."""
        self.up.clear()
        self.generation += 1
        self.proc.kill()
        self.proc.wait()
        self.kills += 1

    def restart(self):
        self.start()
        self.restarts += 1

    def stop_for(self, seconds):
        os.kill(self.proc.pid, signal.SIGSTOP)
        try:
            time.sleep(seconds)
        finally:
            os.kill(self.proc.pid, signal.SIGCONT)
        self.stops += 1

    def terminate(self):
        """A clean stop; returns the exit status."""
        self.up.clear()
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


# -- one connection's load -------------------------------------------------


class KeyState:
    __slots__ = ("acked", "maybe")

    def __init__(self):
        self.acked = ABSENT  # what the last acknowledged command left
        self.maybe = []  # states of commands sent after it whose reply never came

    def candidates(self):
        return [self.acked, *self.maybe]

    @property
    def known(self):
        return not self.maybe


class Wire:
    """A blocking socket with a read buffer; every failure is ConnectionLost."""

    def __init__(self, port, timeout):
        try:
            self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        except OSError as e:
            raise ConnectionLost(str(e)) from e
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()

    def send(self, data):
        try:
            self.sock.sendall(data)
        except OSError as e:
            raise ConnectionLost(str(e)) from e

    def _fill(self):
        try:
            chunk = self.sock.recv(1 << 18)
        except OSError as e:  # a timeout too: the server stopped answering
            raise ConnectionLost(str(e)) from e
        if not chunk:
            raise ConnectionLost("closed")
        self.buf += chunk

    def line(self):
        while True:
            at = self.buf.find(b"\r\n")
            if at >= 0:
                line = bytes(self.buf[:at])
                del self.buf[: at + 2]
                return line
            self._fill()

    def exactly(self, n):
        while len(self.buf) < n + 2:
            self._fill()
        data = bytes(self.buf[:n])
        if self.buf[n : n + 2] != b"\r\n":
            raise Violation(f"a value of {n} bytes not followed by CRLF")
        del self.buf[: n + 2]
        return data

    def close(self):
        self.sock.close()


class Worker(threading.Thread):
    """One connection: random commands on its own keys, every reply checked."""

    def __init__(self, index, server, seed, stop, report, io_timeout):
        super().__init__(daemon=True, name=f"soak-{index}")
        self.rng = random.Random(seed * 1000 + index)
        self.server = server
        self.stop = stop
        self.report = report
        self.io_timeout = io_timeout
        self.keys = [b"soak:%d:%d" % (index, i) for i in range(KEYS_PER_CONNECTION)]
        self.model = {key: KeyState() for key in self.keys}
        self.seq = 0
        self.ops = 0
        self.acked_writes = 0
        self.reads_checked = 0
        self.lost = 0  # commands whose reply never came
        self.unexpected_drops = 0
        self.error = None
        names = list(COMMANDS)
        self._names, self._weights = names, [COMMANDS[n][0] for n in names]

    # -- building commands

    def _value(self):
        self.seq += 1
        low, high = BIG_VALUE if self.rng.random() < BIG_SHARE else SMALL_VALUE
        return (self.seq, self.rng.randint(low, high))

    def _command(self, key):
        """(bytes to send, command name, the key's state if it takes effect)."""
        state = self.model[key]
        name = self.rng.choices(self._names, self._weights)[0]
        kind = COMMANDS[name][1]
        # what an append or delete replies depends on the key's state: only
        # where the model knows it
        if kind in ("append", "delete") and not state.known:
            name, kind = "set", "write"
        if kind == "append" and (state.acked is ABSENT or value_length(state.acked) > APPEND_LIMIT):
            name, kind = "set", "write"
        if kind == "write":
            part = self._value()
            data = make_value(key, (part,))
            head = b"set %s 0 0 %d\r\n" % (key, len(data)) if name == "set" else b"ms %s %d\r\n" % (key, len(data))
            return head + data + b"\r\n", name, (part,)
        if kind == "append":
            self.seq += 1
            part = (self.seq, self.rng.randint(1, 100))
            data = make_value(key, (part,))
            return b"append %s 0 0 %d\r\n%s\r\n" % (key, len(data), data), name, state.acked + (part,)
        if kind == "delete":
            return (b"delete %s\r\n" if name == "delete" else b"md %s\r\n") % key, name, ABSENT
        return {"get": b"get %s\r\n", "gets": b"gets %s\r\n", "mg": b"mg %s v\r\n"}[name] % key, name, None

    # -- reading replies

    def _read_value(self, wire, name, key):
        """A read's reply: the bytes, or ABSENT for a miss."""
        line = wire.line()
        if name == "mg":
            if line == b"EN":
                return ABSENT
            m = re.fullmatch(rb"VA (\d+)", line)
            if not m:
                raise Violation(f"mg {key!r}: {line!r}")
            return wire.exactly(int(m.group(1)))
        if line == b"END":
            return ABSENT
        pattern = rb"VALUE %s 0 (\d+)" % re.escape(key) + (rb" \d+" if name == "gets" else b"")
        m = re.fullmatch(pattern, line)
        if not m:
            raise Violation(f"{name} {key!r}: {line!r}")
        data = wire.exactly(int(m.group(1)))
        end = wire.line()
        if end != b"END":
            raise Violation(f"{name} {key!r}: {end!r} after the value")
        return data

    def _check_read(self, key, got):
        state = self.model[key]
        for candidate in state.candidates():
            expected = ABSENT if candidate is ABSENT else make_value(key, candidate)
            if got == expected:
                # the server that could have applied the rest is dead: settled
                state.acked, state.maybe = candidate, []
                self.reads_checked += 1
                return
        raise Violation(
            f"{key!r} read {'nothing' if got is ABSENT else f'{len(got)} bytes {got[:40]!r}'}; "
            f"acknowledged {_describe(state.acked)}, maybe {[_describe(s) for s in state.maybe]}"
        )

    def _expect(self, name, state):
        """The reply a write, append or delete must get, the key's state known."""
        if name == "set":
            return b"STORED"
        if name == "ms":
            return b"HD"
        if name == "append":
            return b"STORED"
        present = state.acked is not ABSENT
        if name == "delete":
            return b"DELETED" if present else b"NOT_FOUND"
        return b"HD" if present else b"NF"

    def _exchange(self, wire, keys):
        sent = [(key, *self._command(key)) for key in keys]
        wire.send(b"".join(data for _, data, _, _ in sent))
        self.ops += len(sent)
        done = 0
        try:
            for key, _, name, after in sent:
                if COMMANDS[name][1] == "read":
                    self._check_read(key, self._read_value(wire, name, key))
                else:
                    state = self.model[key]
                    expected = self._expect(name, state)
                    line = wire.line()
                    if line != expected:
                        raise Violation(f"{name} {key!r}: {line!r}, expected {expected!r}")
                    state.acked, state.maybe = after, []
                    if after is not ABSENT:
                        self.acked_writes += 1
                done += 1
        except ConnectionLost:
            for key, _, name, after in sent[done:]:
                self.lost += 1
                if COMMANDS[name][1] != "read":
                    self.model[key].maybe.append(after)
            raise

    def _connect(self):
        while not self.stop.is_set():
            self.server.up.wait(1.0)
            generation = self.server.generation
            try:
                return Wire(self.server.port, self.io_timeout), generation
            except ConnectionLost:
                time.sleep(0.02)  # the server is between a kill and its restart
        return None, None

    def run(self):
        try:
            wire, generation = self._connect()
            while wire is not None and not self.stop.is_set():
                pipelined = self.rng.random() < PIPELINE_SHARE
                depth = self.rng.randint(*PIPELINE_DEPTH) if pipelined else 1
                try:
                    self._exchange(wire, self.rng.sample(self.keys, depth))
                except ConnectionLost as e:
                    wire.close()
                    if generation == self.server.generation:
                        self.unexpected_drops += 1
                        self.report(f"{self.name}: connection lost without a kill: {e}")
                    wire, generation = self._connect()
            if wire is not None:
                wire.close()
        except Violation as e:
            self.error = str(e)
            self.report(f"{self.name}: VIOLATION {e}")
        except Exception as e:  # a bug of the soak itself: said, and fails the run
            self.error = f"{type(e).__name__}: {e}"
            self.report(f"{self.name}: crashed: {self.error}")

    def check_all(self, port, io_timeout):
        """Read back every key (pipelined, from a fresh connection)."""
        wire = Wire(port, io_timeout)
        try:
            for at in range(0, len(self.keys), 50):
                chunk = self.keys[at : at + 50]
                wire.send(b"".join(b"mg %s v\r\n" % key for key in chunk))
                for key in chunk:
                    self._check_read(key, self._read_value(wire, "mg", key))
        finally:
            wire.close()
        return len(self.keys)


def _describe(state):
    return "absent" if state is ABSENT else f"{value_length(state)} bytes {state[:2]}"


# -- watching the process --------------------------------------------------


class Sampler(threading.Thread):
    """RSS, open descriptors and tmp/ files, a few times a second."""

    def __init__(self, server, stop):
        super().__init__(daemon=True, name="soak-sampler")
        self.server, self.stop = server, stop
        self.max_rss = 0
        self.max_fds = 0
        self.max_kept = 0
        self.max_tmp = 0

    def sample(self):
        pid = self.server.pid
        if pid is None or not self.server.up.is_set():
            return
        try:
            with open(f"/proc/{pid}/status") as f:
                rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) * 1024
            fds = os.listdir(f"/proc/{pid}/fd")
        except (OSError, StopIteration):
            return  # between a kill and its restart
        # the item files whose descriptors the store keeps for writes in
        # place (store/inplace.py) are bounded on their own: the rest is
        # what a leak would grow
        items = str(self.server.data_dir / "items") + "/"
        kept = others = 0
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue  # closed since the listing (or the server was killed): not open now
            if target.startswith(items):
                kept += 1
            else:
                others += 1
        self.max_kept = max(self.max_kept, kept)
        fds = others
        try:
            tmp = len(os.listdir(self.server.data_dir / "tmp"))
        except OSError:
            tmp = 0
        self.max_rss = max(self.max_rss, rss)
        self.max_fds = max(self.max_fds, fds)
        self.max_tmp = max(self.max_tmp, tmp)

    def run(self):
        while not self.stop.wait(SAMPLE_EVERY):
            self.sample()


def stray_helpers(data_dir, server_pid):
    """everysec helper processes of this data dir not owned by the server."""
    strays = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if b"syncfs" in b" ".join(cmdline) and str(data_dir).encode() in cmdline:
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid != server_pid:
                strays.append(int(entry))
    return strays


def server_stat(port, names):
    """A few `stats` values (None where absent)."""
    wire = Wire(port, 10.0)
    try:
        wire.send(b"stats\r\n")
        found = {}
        while True:
            line = wire.line()
            if line == b"END":
                break
            _, name, value = line.decode().split(" ", 2)
            found[name] = value
    finally:
        wire.close()
    return {name: found.get(name) for name in names}


# -- the run ---------------------------------------------------------------


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, required=True, help="how long the load runs")
    p.add_argument("--fsync", choices=("always", "everysec", "no"), default="everysec")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--port", type=int, default=0, help="default: a free one")
    p.add_argument("--data-dir", default=None, help="default: a new temporary one, removed after a clean run")
    p.add_argument("--kill-every", default="3,12", help="seconds between kills, a random value in A,B")
    p.add_argument("--no-kills", action="store_true")
    p.add_argument("--stop-for", type=float, default=0.0, help="SIGSTOP the server this long (then SIGCONT)")
    p.add_argument("--stops", type=int, default=1, help="how many stops, at random moments (with --stop-for)")
    p.add_argument("--server-arg", action="append", default=[], help="passed to the server (repeatable)")
    p.add_argument("--max-rss-mb", type=float, default=512)
    p.add_argument("--max-fds", type=int, default=None, help="default: connections + 64 (the item files kept open for writes in place not counted: at most KEPT_FILES)")
    p.add_argument("--max-tmp", type=int, default=20000, help="files in tmp/ (spares are a bounded pool)")
    return p.parse_args(argv)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def faults(server, rng, args, stop, deadline, report):
    """Kills and stops at random moments until the deadline."""
    low, high = (float(x) for x in args.kill_every.split(","))
    stop_at = sorted(rng.uniform(0.2, 0.8) * (deadline - time.monotonic()) + time.monotonic()
                     for _ in range(args.stops)) if args.stop_for else []
    next_kill = None if args.no_kills else time.monotonic() + rng.uniform(low, high)
    while not stop.is_set():
        now = time.monotonic()
        if now >= deadline:
            return
        if stop_at and now >= stop_at[0]:
            stop_at.pop(0)
            report(f"SIGSTOP for {args.stop_for:g} s")
            server.stop_for(args.stop_for)
            report("SIGCONT")
            continue
        if next_kill is not None and now >= next_kill:
            server.kill9()
            server.restart()
            next_kill = time.monotonic() + rng.uniform(low, high)
            continue
        wake = min([deadline, *(stop_at[:1]), *([next_kill] if next_kill else [])])
        stop.wait(max(0.0, min(wake - now, 0.5)))


def run(args):
    seed = args.seed if args.seed is not None else random.randrange(1 << 31)
    rng = random.Random(seed)
    own_dir = args.data_dir is None
    work = Path(tempfile.mkdtemp(prefix="soak-")) if own_dir else Path(args.data_dir)
    data_dir, log_file = work / "data", work / "server.log"
    port = args.port or free_port()
    max_fds = args.max_fds or args.connections + 64
    server = Server(port, data_dir, log_file, args.fsync, args.server_arg)
    lock = threading.Lock()

    def report(message):
        with lock:
            print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)

    report(f"soak: seed {seed}, {args.minutes:g} min, fsync {args.fsync}, {args.connections} connections, "
           f"port {port}, data {data_dir}")
    server.start()
    stop = threading.Event()
    io_timeout = max(30.0, args.stop_for + 30.0)
    workers = [Worker(i, server, seed, stop, report, io_timeout) for i in range(args.connections)]
    sampler = Sampler(server, stop)
    began = time.monotonic()
    for thread in (*workers, sampler):
        thread.start()
    violations = []
    try:
        faults(server, rng, args, stop, began + args.minutes * 60, report)
    finally:
        stop.set()
        for worker in workers:
            worker.join(io_timeout + 10)
    ran = time.monotonic() - began
    violations += [f"{w.name}: {w.error}" for w in workers if w.error]
    violations += [f"{w.name}: {w.unexpected_drops} connection(s) lost without a kill"
                   for w in workers if w.unexpected_drops]
    figures = {}
    if server.proc.poll() is None:
        figures.update(server_stat(port, ("idle_kicks", "fsync_calls", "fsync_errors", "sync_errors",
                                          "fsync_helper", "fsync_helper_restarts",
                                          "fsync_unsynced_seconds")))
    # the end: one more kill -9, then every key read back from the new process
    server.kill9()
    server.restart()
    sampler.sample()
    checked = 0
    for worker in workers:
        try:
            checked += worker.check_all(port, io_timeout)
        except (Violation, ConnectionLost) as e:
            violations.append(f"read-back of {worker.name}: {e}")
    strays = stray_helpers(data_dir, server.pid)
    if strays:
        violations.append(f"sync helpers left behind by killed servers: {strays}")
    status = server.terminate()
    if status != 0:
        violations.append(f"the clean stop exited with {status}")
    log_text = log_file.read_text(errors="replace") if log_file.exists() else ""
    if "Traceback" in log_text:
        violations.append(f"a traceback in the server's log ({log_file})")
    warnings = [line for line in log_text.splitlines() if "WARNING" in line or "ERROR" in line]
    bounds = (("max RSS", sampler.max_rss, args.max_rss_mb * (1 << 20)),
              ("max fds", sampler.max_fds, max_fds), ("max tmp files", sampler.max_tmp, args.max_tmp),
              ("max kept item files", sampler.max_kept, KEPT_FILES))
    violations += [f"{name} {value} over its bound {bound:.0f}" for name, value, bound in bounds if value > bound]

    ops = sum(w.ops for w in workers)
    starts = server.start_seconds
    summary = [
        ("seed", seed), ("fsync", args.fsync), ("minutes", f"{ran / 60:.1f}"), ("connections", args.connections),
        ("ops", ops), ("ops/s", f"{ops / ran:.0f}"), ("kills", server.kills), ("restarts", server.restarts),
        ("stops", server.stops), ("commands without a reply (killed)", sum(w.lost for w in workers)),
        ("acknowledged writes", sum(w.acked_writes for w in workers)),
        ("reads checked", sum(w.reads_checked for w in workers)),
        ("keys checked after the last kill", checked),
        ("max RSS MB", f"{sampler.max_rss / (1 << 20):.1f}"), ("max fds", sampler.max_fds),
        ("max kept item files", sampler.max_kept),
        ("max tmp files", sampler.max_tmp),
        ("restart seconds (max)", f"{max(starts):.2f}"),
        ("log warnings/errors", len(warnings)),
        *((name, value) for name, value in figures.items() if value is not None),
        ("violations", len(violations)),
    ]
    print("\n".join(f"{name:>34}: {value}" for name, value in summary))
    for line in sorted(set(re.sub(r"^\S+ ", "", w) for w in warnings))[:10]:
        print(f"  log: {line[:200]}")
    for violation in violations:
        print(f"VIOLATION: {violation}")
    if violations:
        print(f"kept for inspection: {work}")
    elif own_dir:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if violations else 0


def main(argv=None):
    sys.exit(run(parse_args(argv)))


if __name__ == "__main__":
    main()
