"""Sharding with twemproxy (nutcracker), end to end.

Three memcached-lite processes on loopback, one nutcracker in front of them
with the configuration `tools/cluster.py` writes (ketama, md5), pymemcache
talking to the proxy. What is shown: keys spread over the instances; the
commands twemproxy proxies answer as one server does; the ones it does not
proxy; and what happens when an instance dies, with `auto_eject_hosts` on
(its keys are remapped, the rest keep working, it rejoins with its data from
disk) and off (its keys fail until it is back).

Every nutcracker runs on free ports with its own config and log under
tmp_path, never the system service, and is stopped by pid. Ejection is
observed by driving requests under a deadline, never by sleeping.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pymemcache.client.base import Client
from pymemcache.exceptions import MemcacheError

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
from cluster import twemproxy_config  # noqa: E402  (tools/ is not a package)

NUTCRACKER = shutil.which("nutcracker") or (
    "/usr/sbin/nutcracker" if os.access("/usr/sbin/nutcracker", os.X_OK) else None
)
pytestmark = pytest.mark.skipif(
    NUTCRACKER is None, reason="twemproxy is not installed (apt-get install nutcracker; .ci/run does)"
)

N_INSTANCES = 3
# Short, so a test that waits for an ejected instance to rejoin waits
# well under a second; the documented default is 2000.
RETRY_MS = 300
DEADLINE = 15.0  # seconds any bounded wait may take before the test fails


class Nutcracker:
    """One nutcracker process on free loopback ports, stopped by pid."""

    def __init__(self, tmp_path: Path, config: str, listen_port: int, stats_port: int) -> None:
        self.config_path = tmp_path / "nutcracker.yml"
        self.config_path.write_text(config)
        self.log_path = tmp_path / "nutcracker.log"
        self.port, self.stats_port = listen_port, stats_port
        self.proc = None

    @property
    def address(self):
        return ("127.0.0.1", self.port)

    def start(self) -> "Nutcracker":
        self.proc = subprocess.Popen(
            [NUTCRACKER, "-c", str(self.config_path), "-s", str(self.stats_port), "-a", "127.0.0.1",
             "-o", str(self.log_path), "-v", "6"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + DEADLINE
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"nutcracker exited with {self.proc.returncode}:\n{self.log()}")
            try:
                # the stats port answering means both listeners are bound
                if self.stats()["service"] == "nutcracker":
                    socket.create_connection(self.address, timeout=1.0).close()
                    return self
            except (OSError, ValueError):
                pass
            assert time.monotonic() < deadline, f"nutcracker never listened:\n{self.log()}"
            time.sleep(0.01)  # polling interval only

    def stats(self) -> dict:
        with socket.create_connection(("127.0.0.1", self.stats_port), timeout=2.0) as s:
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    return json.loads(data)
                data += chunk

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


def client(address) -> Client:
    # default_noreply=False: a set through the proxy is acknowledged, so a
    # test knows what was stored
    return Client(address, connect_timeout=5, timeout=5, default_noreply=False)


class Pool:
    """Instances, the proxy in front of them, clients for both."""

    def __init__(self, instances, proxy: Nutcracker) -> None:
        self.instances = instances
        self.proxy = proxy
        self.via_proxy = client(proxy.address)
        self._direct = {}

    def direct(self, instance) -> Client:
        # keyed by pid too: a restarted instance needs a fresh connection
        key = (instance.port, instance.pid)
        c = self._direct.get(key)
        if c is None:
            c = self._direct[key] = client(instance.address)
        return c

    def owner(self, key: str):
        """The one live instance that holds ``key`` (asked directly, not via the proxy)."""
        holders = [i for i in self.instances if i.alive() and self.direct(i).get(key) is not None]
        assert len(holders) == 1, f"{key!r} is held by {holders}"
        return holders[0]

    def curr_items(self, instance) -> int:
        return int(self.direct(instance).stats()[b"curr_items"])

    def close(self) -> None:
        self.via_proxy.close()
        for c in self._direct.values():
            c.close()


@pytest.fixture
def make_pool(start_mclite, free_port, tmp_path):
    """``make_pool(auto_eject_hosts=True)``: three instances behind nutcracker."""
    made = []

    def make(auto_eject_hosts: bool = True) -> Pool:
        instances = [start_mclite() for _ in range(N_INSTANCES)]
        config = twemproxy_config(
            [("127.0.0.1", i.port, f"mcl-{n}") for n, i in enumerate(instances)],
            listen=f"127.0.0.1:{free_port()}",
            auto_eject_hosts=auto_eject_hosts,
            server_retry_timeout_ms=RETRY_MS,
        )
        listen_port = int(config.split("listen: 127.0.0.1:")[1].split()[0])
        proxy = Nutcracker(tmp_path, config, listen_port, free_port())
        made.append(proxy)
        proxy.start()
        pool = Pool(instances, proxy)
        made.append(pool)
        return pool

    yield make
    for thing in reversed(made):
        if isinstance(thing, Pool):
            thing.close()
        else:
            thing.stop()


@pytest.fixture
def pool(make_pool) -> Pool:
    return make_pool()


KEYS = [f"user:{i}" for i in range(300)]


def fill(pool: Pool, keys=KEYS, prefix: bytes = b"v-"):
    for key in keys:
        assert pool.via_proxy.set(key, prefix + key.encode()) is True


def keys_by_owner(pool: Pool, keys=KEYS):
    out = {i.port: [] for i in pool.instances}
    for key in keys:
        out[pool.owner(key).port].append(key)
    return out


def until(what: str, attempt, deadline: float = DEADLINE):
    """Call ``attempt()`` until it returns something true; its result."""
    end = time.monotonic() + deadline
    while True:
        result = attempt()
        if result:
            return result
        assert time.monotonic() < end, f"never saw: {what}"
        time.sleep(0.01)  # pacing the retries; the assertion is on results


# --------------------------------------------------------------------------
# configuration, distribution, commands


def test_the_generated_configuration_passes_nutcrackers_own_check(tmp_path):
    path = tmp_path / "pool.yml"
    path.write_text(twemproxy_config([("127.0.0.1", 11311 + i, f"mcl-{i}") for i in range(3)]))
    done = subprocess.run([NUTCRACKER, "-t", "-c", str(path)], capture_output=True, text=True, timeout=10)
    assert done.returncode == 0, done.stderr
    assert "syntax is ok" in done.stdout + done.stderr


def test_keys_spread_over_every_instance(pool):
    fill(pool)
    counts = [pool.curr_items(i) for i in pool.instances]
    assert sum(counts) == len(KEYS), counts
    # ketama over 3 equal weights: each gets about a third; a fifth is far
    # outside chance for 300 keys and far inside a broken distribution
    assert all(c >= len(KEYS) // 5 for c in counts), counts


def script(c: Client):
    """The same operations against one server or the proxy; every result."""
    keys = [f"s:{i}" for i in range(30)]
    out = [c.set(k, k.encode(), expire=600) for k in keys]
    out.append(c.get_many(keys))
    out.append(c.get_many(keys + ["s:missing", "s:also-missing"]))
    out += [c.add("s:0", b"no"), c.add("s:new", b"yes"), c.replace("s:nope", b"x"), c.replace("s:1", b"r")]
    out += [c.append("s:2", b">"), c.prepend("s:2", b"<"), c.get("s:2")]
    value, token = c.gets("s:3")
    out.append(value)
    out += [c.cas("s:3", b"first", token), c.cas("s:3", b"second", token), c.cas("s:absent", b"x", b"1")]
    out.append(c.get("s:3"))
    out += [c.set("n", b"41"), c.incr("n", 1), c.decr("n", 40), c.decr("n", 5), c.incr("missing", 1)]
    out += [c.touch("s:4", 100), c.touch("s:absent", 100)]
    out += [c.delete("s:5"), c.delete("s:5"), c.get("s:5")]
    out.append(c.set("s:flags", b"f", flags=77))
    out.append(c.gets_many(["s:flags"])["s:flags"][0])
    out.append(c.version().startswith(b"1.6"))
    return out


def test_the_proxied_commands_answer_as_one_server_does(pool, start_mclite):
    single = client(start_mclite().address)
    try:
        assert script(pool.via_proxy) == script(single)
    finally:
        single.close()


def test_a_multi_get_through_the_proxy_gathers_keys_from_every_instance(pool):
    fill(pool)
    assert all(keys_by_owner(pool).values()), "every instance holds some of the keys"
    assert pool.via_proxy.get_many(KEYS) == {k: b"v-" + k.encode() for k in KEYS}


def test_cas_tokens_through_the_proxy_are_the_owning_instances(pool):
    fill(pool, ["cas:a"])
    _, via_proxy = pool.via_proxy.gets("cas:a")
    _, direct = pool.direct(pool.owner("cas:a")).gets("cas:a")
    assert via_proxy == direct


NOT_PROXIED = {
    "stats": b"stats\r\n",
    "flush_all": b"flush_all\r\n",
    "verbosity": b"verbosity 1\r\n",
    "gat": b"gat 100 k\r\n",
    "gats": b"gats 100 k\r\n",
    "cache_memlimit": b"cache_memlimit 64\r\n",
    "meta-get": b"mg k v\r\n",
    "meta-noop": b"mn\r\n",
    "shutdown": b"shutdown\r\n",
}


@pytest.mark.parametrize("line", list(NOT_PROXIED.values()), ids=list(NOT_PROXIED))
def test_twemproxy_closes_the_connection_on_a_command_it_does_not_proxy(pool, connect, line):
    conn = connect(pool.proxy.address)
    conn.send(line)
    assert conn.read_until_closed() == b""


def test_a_set_with_noreply_through_the_proxy_is_stored(pool, connect):
    conn = connect(pool.proxy.address)
    conn.send(b"set quiet 0 0 2 noreply\r\nok\r\n")
    assert conn.exchange(b"get quiet\r\n", until=b"END\r\n") == b"VALUE quiet 0 2\r\nok\r\nEND\r\n"


# --------------------------------------------------------------------------
# an instance dies


def get_or_error(c: Client, key: str):
    """``("value", v)``, or ``("error", exc)`` for what the proxy answers
    about a dead instance (SERVER_ERROR Connection refused, or a closed
    connection)."""
    try:
        return ("value", c.get(key))
    except (MemcacheError, OSError) as e:
        c.close()  # pymemcache reconnects on the next call
        return ("error", e)


def test_with_ejection_a_dead_instances_keys_are_remapped_and_the_rest_keep_working(pool):
    fill(pool)
    owners = keys_by_owner(pool)
    victim = pool.instances[1]
    lost, kept = owners[victim.port], [k for k in KEYS if k not in owners[victim.port]]
    victim.kill9()

    # The first requests after the kill may fail (twemproxy does not retry;
    # it ejects after server_failure_limit failures). Then its keys map to
    # the live instances, which do not have them: a miss, not an error.
    until("a dead instance's key answered as a miss",
          lambda: get_or_error(pool.via_proxy, lost[0]) == ("value", None))
    # While ejected, its keys can be written again, and land on the others.
    assert pool.via_proxy.set(lost[0], b"rewritten") is True
    assert pool.owner(lost[0]) is not victim
    # The other instances' keys never moved.
    assert pool.via_proxy.get_many(kept) == {k: b"v-" + k.encode() for k in kept}


def test_a_restarted_instance_rejoins_with_its_data_from_disk(pool):
    if not pool.instances[0].persistent:
        pytest.skip("persistence is ours: memcached forgets everything on restart")
    fill(pool)
    victim = pool.instances[2]
    its_keys = keys_by_owner(pool)[victim.port]
    victim.kill9()
    until("the dead instance ejected", lambda: get_or_error(pool.via_proxy, its_keys[0]) == ("value", None))

    victim.restart()  # same port, same data dir
    # After server_retry_timeout twemproxy puts it back on the ring.
    until("the restarted instance serving its key again",
          lambda: get_or_error(pool.via_proxy, its_keys[0]) == ("value", b"v-" + its_keys[0].encode()))
    assert pool.via_proxy.get_many(its_keys) == {k: b"v-" + k.encode() for k in its_keys}
    # the start-up count runs in slices after the restart: poll it
    until("curr_items counting its items again", lambda: pool.curr_items(victim) == len(its_keys))


def test_a_key_rewritten_while_its_instance_was_ejected_reads_the_old_value_when_it_returns(pool):
    # The price of auto_eject_hosts with a store that keeps its data: the
    # returning instance still has the old value, and the ring sends the
    # key back to it. (memcached comes back empty, so it only misses.)
    if not pool.instances[0].persistent:
        pytest.skip("persistence is ours: memcached forgets everything on restart")
    fill(pool)
    victim = pool.instances[0]
    its_keys = keys_by_owner(pool)[victim.port]
    key, probe = its_keys[0], its_keys[1]
    victim.kill9()
    until("the dead instance ejected", lambda: get_or_error(pool.via_proxy, key) == ("value", None))
    assert pool.via_proxy.set(key, b"new") is True

    victim.restart()
    until("the restarted instance back on the ring",
          lambda: get_or_error(pool.via_proxy, probe) == ("value", b"v-" + probe.encode()))
    assert pool.via_proxy.get(key) == b"v-" + key.encode()


def test_without_ejection_a_dead_instances_keys_fail_until_it_is_back(make_pool):
    pool = make_pool(auto_eject_hosts=False)
    fill(pool)
    owners = keys_by_owner(pool)
    victim = pool.instances[1]
    lost, kept = owners[victim.port], [k for k in KEYS if k not in owners[victim.port]]
    victim.kill9()

    # Never remapped: every request for its keys is an error, never a miss.
    for key in lost[:20]:
        kind, result = get_or_error(pool.via_proxy, key)
        assert kind == "error", (key, result)
    assert pool.via_proxy.get_many(kept) == {k: b"v-" + k.encode() for k in kept}

    victim.restart()
    if victim.persistent:
        until("the restarted instance serving its key",
              lambda: get_or_error(pool.via_proxy, lost[0]) == ("value", b"v-" + lost[0].encode()))
        assert pool.via_proxy.get_many(lost) == {k: b"v-" + k.encode() for k in lost}


def cli(*args, stdin=None):
    """The bundled client, as an operator runs it."""
    root = Path(__file__).resolve().parent.parent
    return subprocess.run([sys.executable, "-m", "cli", *args], cwd=str(root), input=stdin,
                          capture_output=True, timeout=60)


def test_a_dump_of_one_instance_loads_through_the_proxy_onto_the_pool(pool, start_mclite):
    # docs/SCALING.md's way to move data onto a new ring: dump an instance
    # directly, load the dump through twemproxy (which refuses `stats`; load
    # must not need it), and every key lands on its owner, flags and TTL kept
    old = start_mclite()
    for i in range(40):
        assert cli("-p", str(old.port), "set", f"moved:{i}", f"v{i}", "--flags", str(i),
                   "--ttl", "3600").returncode == 0
    dumped = cli("-p", str(old.port), "dump")
    assert dumped.returncode == 0
    loaded = cli("-p", str(pool.proxy.port), "load", stdin=dumped.stdout)
    assert loaded.returncode == 0, loaded.stderr
    for i in range(40):
        key = f"moved:{i}"
        owner = pool.direct(pool.owner(key))
        assert owner.get(key) == f"v{i}".encode()
        assert owner.raw_command(f"mg {key} f t".encode(), b"\r\n").startswith(b"HD f%d t" % i)
