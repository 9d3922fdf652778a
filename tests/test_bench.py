"""Smoke tests of the benchmark's parts (bench/compare.py's loadgen.c and
refloop.py): they build, they talk the protocol right, and their figures add
up. No speed is asserted here; speed is what bench/compare.py reports.

Skipped without a C compiler. A few tenths of a second of load per run.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
BENCH = REPO_ROOT / "bench"

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None, reason="no C compiler (cc)"),
]

KEYS = 300  # a small key set: filling our server with 10,000 would take seconds
RUN = dict(seconds=0.3, warmup=0.1, conns=4, depth=2, keys=KEYS)


def _bench_module(name):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def loadgen():
    return _bench_module("loadgen")


@pytest.fixture(scope="module")
def binary(loadgen, tmp_path_factory):
    """loadgen.c built afresh, in a folder of this test run's."""
    return loadgen.build(str(tmp_path_factory.mktemp("loadgen")))


def _start_refloop(*extra):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, str(BENCH / "refloop.py"), "--port", str(port), *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        for _ in range(500):
            if proc.poll() is not None:
                raise AssertionError(f"refloop exited: {proc.stderr.read().decode()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                threading.Event().wait(0.01)  # polling the port, not for correctness
        else:
            raise AssertionError("refloop never accepted a connection")
        yield proc, port
    finally:
        proc.kill()
        proc.wait(10)


@pytest.fixture(scope="module")
def refloop():
    """The reference loop on a free port; (process, port)."""
    yield from _start_refloop()


@pytest.fixture
def wtloop(tmp_path):
    """The write-through reference loop on a free port; (process, port, data folder)."""
    for proc, port in _start_refloop("--data", str(tmp_path)):
        yield proc, port, tmp_path


def _roundtrip(port, request, reply_end):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(request)
        got = b""
        while not got.endswith(reply_end):
            chunk = s.recv(65536)
            assert chunk, got
            got += chunk
        return got


def test_the_write_through_loop_answers_like_the_reference_loop(wtloop):
    proc, port, data = wtloop
    request = b"set a 0 0 1\r\nx\r\nset a 5 0 2\r\nyz\r\nget a b\r\n"
    assert _roundtrip(port, request, b"END\r\n") == b"STORED\r\nSTORED\r\nVALUE a 5 2\r\nyz\r\nEND\r\n"


def test_the_write_through_loop_writes_each_set_into_a_spare_and_exchanges_it(wtloop):
    proc, port, data = wtloop
    _roundtrip(port, b"set a 0 0 1\r\nx\r\nset a 0 0 2\r\nyz\r\nset a 0 0 3\r\nabc\r\nmn\r\n", b"ERROR\r\n")
    items = [p for p in data.glob("??/*")]
    spares = list((data / "tmp").iterdir())
    assert [p.read_bytes() for p in items] == [b"0 abc"]
    # one spare made, at the second write; the third wrote over it and swapped
    # the second's record into it: no inode made or freed per overwrite
    assert [p.read_bytes() for p in spares] == [b"0 yz"]


def test_loadgen_compiles_warnings_clean(tmp_path):
    cc = shutil.which("cc") or shutil.which("gcc")
    done = subprocess.run(
        [cc, "-O2", "-std=c99", "-Wall", "-Wextra", "-o", str(tmp_path / "loadgen"), str(BENCH / "loadgen.c")],
        capture_output=True, text=True,
    )
    assert done.returncode == 0 and done.stderr == "", done.stderr


def test_loadgen_reports_a_connection_failure(binary, free_port):
    done = subprocess.run([binary, "--port", str(free_port()), "--seconds", "0.1"], capture_output=True, text=True, timeout=10)
    assert done.returncode != 0
    assert "cannot connect" in done.stderr and done.stdout == ""


def check(result):
    assert result["ops"] > 0, result
    assert result["errors"] == 0 and result["misses"] == 0, result
    assert result["server_cpu_s"] is not None and result["gen_cpu_s"] >= 0, result
    assert 0 < result["p50_us"] <= result["p99_us"] <= result["p999_us"], result
    assert set(result) >= {
        "ops", "seconds", "ops_per_sec", "p50_us", "p99_us", "p999_us", "errors", "misses",
        "server_cpu_s", "gen_cpu_s", "server_cpu_us_per_op", "gen_cpu_us_per_op", "server_wait_s", "gen_wait_s",
    }


@pytest.mark.parametrize("workload", ["get90", "mget"])
def test_loadgen_on_the_reference_loop(loadgen, binary, refloop, workload):
    proc, port = refloop
    filled = loadgen.fill(binary, port, keys=KEYS, value_size=100)
    assert filled["filled"] == KEYS and filled["errors"] == 0
    check(loadgen.run(binary, port, workload=workload, server_pid=proc.pid, **RUN))


def test_loadgen_on_memcached_lite(loadgen, binary, mclite):
    filled = loadgen.fill(binary, mclite.port, keys=KEYS, value_size=100)
    assert filled["filled"] == KEYS and filled["errors"] == 0
    for workload in ("get90", "mget"):
        check(loadgen.run(binary, mclite.port, workload=workload, server_pid=mclite.pid, **RUN))


def test_loadgen_counts_misses_per_key(loadgen, binary, refloop):
    proc, port = refloop
    r = loadgen.run(binary, port, workload="mget", mget=3, key_prefix="never-set:", server_pid=proc.pid, **RUN)
    assert r["ops"] > 0 and r["errors"] == 0
    assert r["misses"] == 3 * r["ops"]  # misses count keys, in the window only


def test_loadgen_marks_the_window(loadgen, binary, refloop):
    proc, port = refloop
    marks = []
    r = loadgen.run(binary, port, on_mark=marks.append, workload="set", pattern="disjoint", **RUN)
    assert marks == ["start", "end"]
    assert r["ops"] > 0 and r["errors"] == 0 and r["server_cpu_s"] is None  # no --server-pid given


def test_loadgen_parses_replies_split_anywhere(binary):
    """A server that answers every get one byte per send: replies arrive in
    pieces at every possible split point."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    stop = threading.Event()

    def serve():
        conn, _ = listener.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buf = b""
        with conn:
            while not stop.is_set():
                try:
                    chunk = conn.recv(65536)
                except OSError:
                    return
                if not chunk:
                    return
                buf += chunk
                while b"\r\n" in buf:
                    line, buf = buf.split(b"\r\n", 1)
                    words = line.split()
                    out = b""
                    for i, k in enumerate(words[1:]):
                        if i % 2 == 0:  # every other key of an mget is a hit
                            out += b"VALUE %s 7 12 99\r\nab\r\ncd\r\nefgh\r\n" % k
                    out += b"END\r\n"
                    try:
                        for j in range(len(out)):
                            conn.sendall(out[j:j + 1])
                    except OSError:
                        return

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        done = subprocess.run(
            [binary, "--port", str(port), "--conns", "1", "--depth", "3", "--workload", "mget", "--mget", "4",
             "--seconds", "0.3", "--warmup", "0.05"],
            capture_output=True, text=True, timeout=20,
        )
    finally:
        stop.set()
        listener.close()
    assert done.returncode == 0, done.stderr
    r = json.loads(done.stdout)
    assert r["ops"] > 0 and r["errors"] == 0
    assert r["misses"] == 2 * r["ops"]  # two of the four keys of each get


# -- the reference loop's protocol ------------------------------------------------


@pytest.fixture
def ref(refloop, connect):
    return connect(("127.0.0.1", refloop[1]))


def test_refloop_set_get_and_miss(ref):
    assert ref.exchange(b"set rl:a 5 0 3\r\nabc\r\n") == b"STORED\r\n"
    assert ref.exchange(b"get rl:a\r\n", b"END\r\n") == b"VALUE rl:a 5 3\r\nabc\r\nEND\r\n"
    assert ref.exchange(b"get rl:nothing\r\n", b"END\r\n") == b"END\r\n"
    assert ref.exchange(b"set rl:a 0 0 0\r\n\r\n") == b"STORED\r\n"  # overwrite, empty value
    assert ref.exchange(b"get rl:a\r\n", b"END\r\n") == b"VALUE rl:a 0 0\r\n\r\nEND\r\n"


def test_refloop_multiget(ref):
    ref.send(b"set rl:m1 1 0 2\r\nm1\r\nset rl:m3 3 0 2\r\nm3\r\n")
    assert ref.read_until(b"STORED\r\n", 2) == b"STORED\r\n" * 2
    assert ref.exchange(b"get rl:m1 rl:m2 rl:m3\r\n", b"END\r\n") == (
        b"VALUE rl:m1 1 2\r\nm1\r\nVALUE rl:m3 3 2\r\nm3\r\nEND\r\n"
    )


def test_refloop_pipelined_in_one_send(ref):
    ref.send(
        b"set rl:p1 0 0 4\r\na\r\nb\r\n"  # a value holding \r\n: its length decides
        b"get rl:p1\r\n"
        b"bogus\r\n"
        b"set rl:p2 0 0 1\r\nz\r\n"
        b"get rl:p2 rl:p1\r\n"
    )
    assert ref.read_until(b"END\r\n", 2) == (
        b"STORED\r\nVALUE rl:p1 0 4\r\na\r\nb\r\nEND\r\nERROR\r\nSTORED\r\n"
        b"VALUE rl:p2 0 1\r\nz\r\nVALUE rl:p1 0 4\r\na\r\nb\r\nEND\r\n"
    )


def test_refloop_requests_split_byte_by_byte(ref):
    ref.send_bytewise(b"set rl:s 9 0 10\r\n0123\r\n6789\r\nget rl:s\r\n")
    assert ref.read_until(b"END\r\n") == b"STORED\r\nVALUE rl:s 9 10\r\n0123\r\n6789\r\nEND\r\n"
    ref.send(b"set rl:s 0 0 5\r\nab")  # the data line cut short, then the rest
    ref.send(b"cde\r\nget rl:s\r\n")
    assert ref.read_until(b"END\r\n") == b"STORED\r\nVALUE rl:s 0 5\r\nabcde\r\nEND\r\n"


needs_history = pytest.mark.skipif(
    shutil.which("git") is None or not (REPO_ROOT / ".git").exists(), reason="needs git and this repository's history"
)


@pytest.fixture
def compare(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))  # compare.py imports its neighbours
    return _bench_module("compare")


def _git(*args):
    return subprocess.run(["git", "-C", str(REPO_ROOT), *args], capture_output=True, check=True).stdout


@needs_history
def test_compare_against_unpacks_that_commit_s_tree(compare, tmp_path):
    label, tree = compare.checkout("HEAD", str(tmp_path))
    assert label == "memcached-lite @" + _git("rev-parse", "--short", "HEAD").decode().strip()
    assert (Path(tree) / "reactor.py").read_bytes() == _git("show", "HEAD:reactor.py")


@needs_history
def test_compare_against_refuses_what_is_not_a_commit(compare, tmp_path):
    with pytest.raises(SystemExit, match="not a commit"):
        compare.checkout("no-such-revision", str(tmp_path))
