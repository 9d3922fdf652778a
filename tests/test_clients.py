"""Real clients of other languages against a real server (issue 19, item 7).

Each client is a small program under tests/clients/<lang>/ that drives one
library through set/get, multi-get, delete, incr/decr, cas, touch, expiry and
flush, printing "ok <check>" per check (the first failure prints "FAIL
<check>: why" and stops). A second test has the program write a key; the
server is killed with SIGKILL, started again on the same data dir, and a
third run of the program reads the key back. Real memcached forgets
everything on a restart, so there the key is read back with no restart:
memcached is the proof that the programs and their expectations are right.

Every test runs against both servers, the binary-protocol and SASL clients
too.

The tools come from Debian (php-cli, php-memcached, libcache-memcached-fast-perl,
golang-go, golang-github-bradfitz-gomemcache-dev, sasl2-bin for real
memcached's SASL password db), npm (tests/clients/node: ``npm ci``) and PyPI
(pylibmc, python-binary-memcached); .ci/run installs them. A test whose tool is
missing skips, saying which.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

import pytest

CLIENTS = Path(__file__).resolve().parent / "clients"
NODE_DIR = CLIENTS / "node"
GOMEMCACHE_SRC = Path("/usr/share/gocode/src/github.com/bradfitz/gomemcache/memcache")
RUN_TIMEOUT = 30.0  # seconds one client program may take (its own I/O timeouts are 2 s)
USER, PASSWORD = "clientuser", "client-secret"

COMMON_CHECKS = ("set_get", "get_multi", "delete", "incr_decr", "cas", "touch", "expiry", "flush")


# --------------------------------------------------------------------------
# which tools are here


def _runs(argv: Sequence[str]) -> bool:
    try:
        return subprocess.run(list(argv), capture_output=True, timeout=RUN_TIMEOUT).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _missing_php() -> Optional[str]:
    if shutil.which("php") is None:
        return "php is not installed (apt-get install php-cli php-memcached)"
    if not _runs(["php", "-r", "exit(class_exists('Memcached') ? 0 : 1);"]):
        return "php's memcached extension is not installed (apt-get install php-memcached)"
    return None


def _missing_perl() -> Optional[str]:
    if not _runs(["perl", "-MCache::Memcached::Fast", "-e", "1"]):
        return "Cache::Memcached::Fast is not installed (apt-get install libcache-memcached-fast-perl)"
    return None


def _missing_node(package: str) -> Callable[[], Optional[str]]:
    def missing() -> Optional[str]:
        if shutil.which("node") is None:
            return "node is not installed"
        if not (NODE_DIR / "node_modules" / package).is_dir():
            return f"npm package {package} is not installed (run `npm ci` in {NODE_DIR})"
        return None

    return missing


def _missing_go() -> Optional[str]:
    if shutil.which("go") is None:
        return "go is not installed (apt-get install golang-go)"
    if not GOMEMCACHE_SRC.is_dir():
        return "gomemcache is not installed (apt-get install golang-github-bradfitz-gomemcache-dev)"
    return None


def _missing_module(module: str, package: str) -> Callable[[], Optional[str]]:
    def missing() -> Optional[str]:
        if importlib.util.find_spec(module) is None:
            return f"{package} is not installed (pip install {package})"
        return None

    return missing


# --------------------------------------------------------------------------
# the clients


@dataclass(frozen=True)
class Client:
    """One client library: how to run its program, what it speaks and checks."""

    name: str
    protocol: str  # "text", "binary" or "binary+sasl"
    command: Tuple[str, ...]  # "{go}" stands for the built Go program
    missing: Callable[[], Optional[str]]
    checks: Tuple[str, ...]

    @property
    def sasl(self) -> bool:
        return self.protocol == "binary+sasl"

    def argv(self, port: int, phase: str, go_binary: Optional[Path]) -> List[str]:
        argv = [str(go_binary) if part == "{go}" else part for part in self.command]
        argv += ["127.0.0.1", str(port), phase]
        return argv + [USER, PASSWORD] if self.sasl else argv


def _in(lang: str, script: str) -> str:
    return str(CLIENTS / lang / script)


TABLE = [
    Client("php-memcached-text", "text", ("php", _in("php", "client.php")), _missing_php, COMMON_CHECKS),
    Client("php-memcached-binary-sasl", "binary+sasl", ("php", _in("php", "client.php")), _missing_php,
           ("sasl_refuses_a_wrong_password",) + COMMON_CHECKS),
    Client("perl-cache-memcached-fast", "text", ("perl", _in("perl", "client.pl")), _missing_perl, COMMON_CHECKS),
    Client("node-memcached", "text", ("node", _in("node", "memcached_text.js")), _missing_node("memcached"),
           COMMON_CHECKS),
    # memjs 1.3 has no cas (and no multi-get: its program runs gets in flight at once)
    Client("node-memjs-sasl", "binary+sasl", ("node", _in("node", "memjs_sasl.js")), _missing_node("memjs"),
           ("sasl_refuses_a_wrong_password",) + tuple(c for c in COMMON_CHECKS if c != "cas")),
    Client("go-gomemcache", "text", ("{go}",), _missing_go, COMMON_CHECKS),
    Client("pylibmc-binary", "binary", (sys.executable, _in("python", "pylibmc_binary.py")),
           _missing_module("pylibmc", "pylibmc"), COMMON_CHECKS),
    # bmemcached has no touch
    Client("python-binary-memcached-sasl", "binary+sasl", (sys.executable, _in("python", "bmemcached_sasl.py")),
           _missing_module("bmemcached", "python-binary-memcached"),
           ("sasl_refuses_a_wrong_password",) + tuple(c for c in COMMON_CHECKS if c != "touch")),
]


def _cases():
    for client in TABLE:
        for server in ("memcached", "lite"):
            yield pytest.param(client, server, id=f"{client.name}-{server}")


# --------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="session")
def go_client(tmp_path_factory) -> Optional[Path]:
    """The Go program, built once, offline, in GOPATH mode against Debian's
    gomemcache (None when go or gomemcache is missing)."""
    if _missing_go() is not None:
        return None
    out = tmp_path_factory.mktemp("go") / "client"
    env = dict(os.environ, GO111MODULE="off", GOPATH="/usr/share/gocode", GOFLAGS="",
               GOCACHE=str(out.parent / "cache"), GOPROXY="off")
    done = subprocess.run(["go", "build", "-o", str(out), _in("go", "client.go")], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"go build failed:\n{done.stderr}"
    return out


@pytest.fixture
def sasl_pwdb(tmp_path) -> Path:
    """memcached-lite's SASL password file: memcached's format, user:password."""
    path = tmp_path / "memcached-sasl-pwdb"
    path.write_text(f"{USER}:{PASSWORD}\n")
    return path


@pytest.fixture
def sasl_conf(tmp_path) -> Path:
    """Real memcached's SASL setup (Debian builds it without MEMCACHED_SASL_PWDB):
    a memcached.conf for cyrus-sasl (PLAIN over a sasldb) in a dir that
    SASL_CONF_PATH names, the user made with saslpasswd2."""
    if shutil.which("saslpasswd2") is None:
        pytest.skip("saslpasswd2 is not installed (apt-get install sasl2-bin)")
    conf = tmp_path / "sasl"
    conf.mkdir()
    db = conf / "sasldb2"
    (conf / "memcached.conf").write_text(f"mech_list: plain\nsasldb_path: {db}\n")
    subprocess.run(["saslpasswd2", "-p", "-a", "memcached", "-c", "-f", str(db), USER],
                   input=PASSWORD.encode(), check=True, capture_output=True, timeout=RUN_TIMEOUT)
    return conf


@pytest.fixture
def server_of(request, start_memcached, start_mclite):
    """server_of(kind, sasl): real memcached or memcached-lite, with -S (SASL)
    when asked; stopped at the end of the test."""

    def start(kind: str, sasl: bool):
        if kind == "memcached":
            if not sasl:
                return start_memcached()
            conf = request.getfixturevalue("sasl_conf")
            return start_memcached(["-S"], env={"SASL_CONF_PATH": str(conf)},
                                   sasl=(USER.encode(), PASSWORD.encode()))
        if not sasl:
            return start_mclite()
        pwdb = request.getfixturevalue("sasl_pwdb")
        return start_mclite(extra_args=["-S"], env={"MEMCACHED_SASL_PWDB": str(pwdb)})

    return start


@pytest.fixture
def run_program(request) -> Callable[[Sequence[str]], Tuple[List[str], str]]:
    """run_program(argv): run one client program under a timeout, return (its
    stdout lines, a description for failures)."""
    return functools.partial(_run, timeout=RUN_TIMEOUT)


def _run(argv: Sequence[str], timeout: float) -> Tuple[List[str], str]:
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, cwd=str(CLIENTS))
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"{argv} did not finish in {timeout}s; stdout so far: {e.stdout!r}")
    return done.stdout.splitlines(), f"{argv} exited {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"


def restart_after_kill9(server) -> None:
    """A crash and a restart on the same data dir and port."""
    server.kill9()
    server.restart()


# --------------------------------------------------------------------------
# tests


@pytest.mark.parametrize("client,kind", _cases())
def test_client_drives_every_operation(client, kind, server_of, go_client, run_program):
    missing = client.missing()
    if missing:
        pytest.skip(missing)
    server = server_of(kind, client.sasl)

    lines, what = run_program(client.argv(server.port, "checks", go_client))
    assert lines == [f"ok {c}" for c in client.checks], what


@pytest.mark.timeout(2 * RUN_TIMEOUT + 30)  # two runs, each under its own timeout, and a restart
@pytest.mark.parametrize("client,kind", _cases())
def test_client_reads_its_data_after_a_kill9_and_restart(client, kind, server_of, go_client, run_program):
    missing = client.missing()
    if missing:
        pytest.skip(missing)
    """Against real memcached (which forgets everything on a restart) the
    program writes and reads back with no restart between: that checks the
    program."""
    server = server_of(kind, client.sasl)

    lines, what = run_program(client.argv(server.port, "write", go_client))
    assert lines == ["ok persist_written"], what
    if server.persistent:
        restart_after_kill9(server)
    lines, what = run_program(client.argv(server.port, "reread", go_client))
    assert lines == ["ok restart_keeps_data"], what


def _session_cases():
    for protocol in ("default", "text"):
        for kind in ("memcached", "lite"):
            # (Debian's php-memcached keeps sessions over the binary protocol by default)
            yield pytest.param(protocol, kind, id=f"{protocol}-{kind}")


@pytest.mark.timeout(2 * RUN_TIMEOUT + 30)
@pytest.mark.parametrize("protocol,kind", _session_cases())
def test_php_session_survives_a_kill9_and_restart(protocol, kind, server_of, run_program):
    """PHP's own session handler (session.save_handler = memcached) with the
    package's default settings ("default": memcached.sess_binary_protocol is On
    in Debian's php-memcached) or with sess_binary_protocol off ("text")."""
    missing = _missing_php()
    if missing:
        pytest.skip(missing)
    server = server_of(kind, False)
    php = ["php", "-d", "session.save_handler=memcached", "-d", f"session.save_path=127.0.0.1:{server.port}"]
    if protocol == "text":
        php += ["-d", "memcached.sess_binary_protocol=0"]
    script = _in("php", "session.php")

    lines, what = run_program(php + [script, "write"])
    assert lines == ["ok session_written"], what
    if server.persistent:
        restart_after_kill9(server)
    lines, what = run_program(php + [script, "read"])
    assert lines == ["ok session_kept"], what
