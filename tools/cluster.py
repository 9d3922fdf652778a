"""Start N memcached-lite instances, each on its own port and data dir, and
write the twemproxy (nutcracker) configuration that pools them.

    python tools/cluster.py 3 --base-port 11311 --data-root DIR \\
        [--nutcracker-config FILE] [--proxy-listen 127.0.0.1:22121] [--no-eject]

Instance i listens on base-port + i with its data in DIR/<port>/ and its log
in DIR/<port>.log. The configuration goes to FILE (or stdout); run
`nutcracker -c FILE` beside it. Ctrl-C or SIGTERM stops the instances.

This is only a launcher: it distributes nothing. Keys are placed by
twemproxy's ketama (or by a client's own hashing), exactly as for memcached.
Standard library only; `twemproxy_config` and `Instance` are importable (the
tests and bench/proxy.py use them, so the documented configuration is the
tested one).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

ROOT = Path(__file__).resolve().parent.parent


def twemproxy_config(
    servers: Sequence[Tuple[str, int, str]],
    listen: str = "127.0.0.1:22121",
    pool: str = "memcached_lite",
    auto_eject_hosts: bool = True,
    server_failure_limit: int = 1,
    server_retry_timeout_ms: int = 2000,
    timeout_ms: int = 1000,
) -> str:
    """A nutcracker YAML pool of memcached-lite instances, ketama-distributed.

    ``servers`` are ``(host, port, name)``. The name, not host:port, is what
    ketama hashes, so an instance moved to another address keeps its keys.
    """
    lines = [
        f"{pool}:",
        f"  listen: {listen}",
        # md5, not the fnv1a_64 of twemproxy's examples: twemproxy uses only
        # the low 32 bits of fnv1a_64, and sequential keys (k1, k2, ...)
        # then crowd onto one instance (measured: 260/540/200 of 1000).
        "  hash: md5",
        "  distribution: ketama",
        # memcached-lite writes each set to a file before answering; a few
        # hundred microseconds, but a cold disk can take far longer.
        f"  timeout: {timeout_ms}",
        "  backlog: 1024",
        "  preconnect: true",
        f"  auto_eject_hosts: {'true' if auto_eject_hosts else 'false'}",
        f"  server_failure_limit: {server_failure_limit}",
        f"  server_retry_timeout: {server_retry_timeout_ms}",
        "  servers:",
    ]
    lines += [f"   - {host}:{port}:1 {name}" for host, port, name in servers]
    return "\n".join(lines) + "\n"


class Instance:
    """One `python -m reactor` process with its own data dir and log file."""

    def __init__(self, port: int, data_dir: Path, log_path: Path, host: str = "127.0.0.1") -> None:
        self.host, self.port = host, port
        self.data_dir, self.log_path = Path(data_dir), Path(log_path)
        self.name = f"mcl-{port}"
        self.proc: Optional[subprocess.Popen] = None

    def start(self, timeout: float = 20.0) -> "Instance":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        start_offset = log.tell()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "reactor", "--port", str(self.port), "--listen", self.host,
                 "--data-dir", str(self.data_dir)],
                cwd=str(ROOT), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                env=dict(os.environ, PYTHONUNBUFFERED="1"),
            )
        finally:
            log.close()
        marker = f"listening on {self.host}:{self.port}".encode()
        deadline = time.monotonic() + timeout
        while marker not in self.log_path.read_bytes()[start_offset:]:
            if self.proc.poll() is not None:
                raise RuntimeError(f"instance on port {self.port} exited; see {self.log_path}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"instance on port {self.port} did not start; see {self.log_path}")
            time.sleep(0.02)  # polling the log; readiness is the listening line
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM by pid, then SIGKILL if it does not exit in time."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout)


def start_instances(n: int, base_port: int, data_root: Path, host: str = "127.0.0.1") -> List[Instance]:
    """Start n instances on base_port.. base_port+n-1; all or none."""
    data_root = Path(data_root)
    data_root.mkdir(parents=True, exist_ok=True)
    started: List[Instance] = []
    try:
        for i in range(n):
            port = base_port + i
            started.append(Instance(port, data_root / str(port), data_root / f"{port}.log", host).start())
    except BaseException:
        for inst in started:
            inst.stop()
        raise
    return started


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("n", type=int, help="number of instances")
    p.add_argument("--base-port", type=int, default=11311)
    p.add_argument("--data-root", type=Path, required=True, help="one data dir per instance goes under it")
    p.add_argument("--listen", default="127.0.0.1", help="interface the instances listen on")
    p.add_argument("--proxy-listen", default="127.0.0.1:22121", help="twemproxy's listen address")
    p.add_argument("--nutcracker-config", type=Path, help="write the YAML here (default: print it)")
    p.add_argument("--no-eject", action="store_true", help="auto_eject_hosts: false")
    args = p.parse_args(argv)
    if args.n < 1:
        p.error("n must be at least 1")
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    stopping = []
    # Until the handlers are set, a Ctrl-C is an ordinary KeyboardInterrupt
    # and start_instances stops what it started.
    instances = start_instances(args.n, args.base_port, args.data_root, args.listen)

    def on_signal(signum, frame):
        stopping.append(signum)

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, on_signal)
    try:
        config = twemproxy_config([(i.host, i.port, i.name) for i in instances],
                                  listen=args.proxy_listen, auto_eject_hosts=not args.no_eject)
        if args.nutcracker_config:
            args.nutcracker_config.write_text(config)
            print(f"wrote {args.nutcracker_config}; run: nutcracker -c {args.nutcracker_config}", flush=True)
        else:
            sys.stdout.write(config)
            sys.stdout.flush()
        for inst in instances:
            print(f"{inst.name}: {inst.host}:{inst.port} pid {inst.proc.pid} data {inst.data_dir}",
                  file=sys.stderr, flush=True)
        # The others keep running when one dies: a failure drill (kill one,
        # watch the proxy eject it) must not take the whole pool down.
        reported = set()
        while not stopping:
            for inst in instances:
                if inst.proc.poll() is not None and inst.port not in reported:
                    reported.add(inst.port)
                    print(f"{inst.name} exited with {inst.proc.returncode}; see {inst.log_path}",
                          file=sys.stderr, flush=True)
            time.sleep(0.5)  # wakes for Ctrl-C too: the handler only sets a flag
        return 0
    finally:
        for inst in instances:
            inst.stop()


if __name__ == "__main__":
    sys.exit(main())
