"""Operating it, end to end with real processes: memcached-tool (the Perl
script the Debian memcached package ships) reads our stats, a pymemcache
client authenticates under -Y, --max-disk refuses as memcached's -M, and
`stats conns` shows the real sockets.

memcached-tool's `dump` needs `lru_crawler metadump`, which this branch
does not have; that test is an expected failure until it does.
"""

import shutil
import subprocess
from pathlib import Path

import pytest
from pymemcache.client.base import Client
from pymemcache.exceptions import MemcacheClientError, MemcacheServerError

pytestmark = pytest.mark.timeout(60)

TOOL = Path("/usr/share/memcached/scripts/memcached-tool")


def tool(server, *args):
    if not TOOL.exists() or shutil.which("perl") is None:
        pytest.skip("memcached-tool (Debian package memcached) or perl is not installed")
    done = subprocess.run(
        ["perl", str(TOOL), "127.0.0.1:%d" % server.port, *args], capture_output=True, timeout=20
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.decode()


@pytest.fixture(scope="module")
def filled(mclite):
    c = Client(mclite.address)
    for i in range(3):
        c.set("tool:%d" % i, b"value", noreply=False)
    c.get("tool:0")
    c.close()
    return mclite


def test_memcached_tool_display_shows_the_one_class(filled):
    lines = tool(filled).splitlines()
    assert lines[0].split()[:4] == ["#", "Item_Size", "Max_age", "Pages"]
    row = lines[1].split()
    assert row[0] == "1" and int(row[4]) >= 3  # class 1 holds the items


def test_memcached_tool_stats_lists_the_general_stats(filled):
    fields = dict(line.split()[:2] for line in tool(filled, "stats").splitlines()[1:])
    assert int(fields["curr_items"]) >= 3
    assert int(fields["get_hits"]) >= 1
    assert fields["threads"] == "1"


def test_memcached_tool_settings_lists_the_settings(filled):
    fields = dict(line.split()[:2] for line in tool(filled, "settings").splitlines()[1:])
    assert fields["dump_enabled"] == "yes"
    assert fields["item_size_max"] == "1048576"


def test_memcached_tool_sizes_says_disabled_as_memcached(filled):
    assert "sizes_status" in tool(filled, "sizes")


def test_memcached_tool_dump_writes_the_items_as_add_commands(filled):
    assert "add tool:0 0 " in tool(filled, "dump")


# -- -Y with a real client ------------------------------------------------------------


@pytest.fixture(scope="module")
def guarded(module_servers, tmp_path_factory):
    auth = tmp_path_factory.mktemp("auth") / "users"
    auth.write_text("alice:secret\n")
    return module_servers.mclite(["-Y", str(auth)])


def test_pymemcache_authenticates_with_the_auth_set_then_works(guarded):
    c = Client(guarded.address)
    assert c.set("auth", b"alice secret", noreply=False) is True
    assert c.set("k", b"v", noreply=False) is True
    assert c.get("k") == b"v"
    c.close()


def test_pymemcache_without_authenticating_gets_unauthenticated(guarded):
    c = Client(guarded.address)
    with pytest.raises(MemcacheClientError, match="unauthenticated"):
        c.get("k")
    c.close()


def test_pymemcache_with_a_wrong_password_gets_authentication_failure(guarded):
    c = Client(guarded.address)
    with pytest.raises(MemcacheClientError, match="authentication failure"):
        c.set("auth", b"alice wrong", noreply=False)
    c.close()


def test_a_bad_auth_file_stops_the_server_at_start(spawn_mclite, tmp_path):
    bad = tmp_path / "users"
    bad.write_text("no colon\n")
    server = spawn_mclite(tmp_path / "data", ["-Y", str(bad)])
    assert server.wait_exit() == 1  # memcached's status for a bad -Y file
    assert "not user:password" in server.stderr_text()


# -- --max-disk and stats conns ----------------------------------------------------------


def test_max_disk_refuses_a_write_as_memcached_M(start_mclite):
    server = start_mclite(extra_args=["--max-disk", "2k"])
    c = Client(server.address)
    assert c.set("a", b"x" * 500, noreply=False) is True
    with pytest.raises(MemcacheServerError, match="out of memory storing object"):
        c.set("b", b"x" * 600, noreply=False)
    assert c.stats()[b"store_no_memory"] == 1
    c.close()


def test_stats_conns_shows_the_listener_and_each_connection(mclite, connect):
    idle = connect(mclite)
    idle.exchange(b"version\r\n")
    asking = connect(mclite)
    reply = asking.exchange(b"stats conns\r\n", until=b"END\r\n").decode()
    states = [line.split()[2] for line in reply.splitlines() if ":state " in line]
    assert "conn_listening" in states and "conn_parse_cmd" in states and "conn_read" in states
    assert "tcp:127.0.0.1:%d" % mclite.port in reply
