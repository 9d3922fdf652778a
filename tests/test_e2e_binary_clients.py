"""End to end: real binary-protocol clients against a real server process,
python-binary-memcached (bmemcached) with SASL PLAIN under -S, and pylibmc
with binary=True under the default -B auto. Each drives set/get/multi-get/
delete/incr/cas/flush (touch: pylibmc; bmemcached has none) and a restart that keeps the data."""

import pytest

bmemcached = pytest.importorskip("bmemcached")


@pytest.fixture
def sasl_server(start_mclite, tmp_path):
    pwdb = tmp_path / "pwdb"
    pwdb.write_text("alice:secret\n")
    return start_mclite(extra_args=["-S", "--sasl-file", str(pwdb)])


def address(server):
    host, port = server.address
    return f"{host}:{port}"


def test_bmemcached_with_sasl_drives_the_usual_commands(sasl_server):
    c = bmemcached.Client([address(sasl_server)], "alice", "secret")
    try:
        assert c.set("k", "v")
        assert c.get("k") == "v"
        assert c.set_multi({"a": 1, "b": 2}) is not None
        assert c.get_multi(["a", "b", "missing"]) == {"a": 1, "b": 2}
        assert c.add("k", "other") is False
        assert c.replace("k", "w")
        c.set("n", 10)
        assert c.incr("n", 5) == 15
        assert c.decr("n", 20) == 0
        value, cas = c.gets("k")
        assert value == "w"
        assert c.cas("k", "x", cas)
        assert not c.cas("k", "y", cas)
        assert c.delete("a")
        assert c.get("a") is None
        assert c.flush_all()
        assert c.get("k") is None
    finally:
        c.disconnect_all()


def test_bmemcached_with_a_wrong_password_is_refused(sasl_server):
    c = bmemcached.Client([address(sasl_server)], "alice", "wrong")
    try:
        with pytest.raises(Exception):
            c.set("k", "v")
            assert c.get("k") == "v"
    finally:
        c.disconnect_all()


def test_bmemcached_data_survives_a_restart(sasl_server):
    c = bmemcached.Client([address(sasl_server)], "alice", "secret")
    c.set("kept", "value")
    c.disconnect_all()
    sasl_server.restart()
    c = bmemcached.Client([address(sasl_server)], "alice", "secret")
    try:
        assert c.get("kept") == "value"
    finally:
        c.disconnect_all()


def test_pylibmc_binary_drives_the_usual_commands(start_mclite):
    pylibmc = pytest.importorskip("pylibmc")
    server = start_mclite()
    c = pylibmc.Client([address(server)], binary=True, behaviors={"cas": True})
    c.set("k", b"v")
    assert c.get("k") == b"v"
    c.set_multi({"a": b"1", "b": b"2"})
    assert c.get_multi(["a", "b", "missing"]) == {"a": b"1", "b": b"2"}
    c.set("n", 10)
    assert c.incr("n", 5) == 15
    assert c.decr("n", 20) == 0
    value, cas = c.gets("k")
    assert c.cas("k", b"x", cas)
    assert not c.cas("k", b"y", cas)
    assert c.touch("k", 100)
    assert c.delete("a")
    assert c.get("a") is None
    c.flush_all()
    assert c.get("k") is None
    c.set("kept", b"value")
    c.disconnect_all()
    server.restart()
    c = pylibmc.Client([address(server)], binary=True, behaviors={"cas": True})
    assert c.get("kept") == b"value"


def test_bmemcached_under_fsync_always_gets_its_replies(start_mclite):
    server = start_mclite(extra_args=["--fsync", "always"])
    c = bmemcached.Client([address(server)])
    try:
        assert c.set_multi({"a": "1", "b": "2"}) is not None
        assert c.get_multi(["a", "b"]) == {"a": "1", "b": "2"}
        c.set("n", 1)
        assert c.incr("n", 1) == 2
        assert c.delete("a")
    finally:
        c.disconnect_all()


def test_sighup_reads_the_sasl_file_again(start_mclite, tmp_path):
    import os
    import signal

    pwdb = tmp_path / "pwdb"
    pwdb.write_text("alice:secret\n")
    server = start_mclite(extra_args=["-S", "--sasl-file", str(pwdb)])
    pwdb.write_text("alice:changed\n")
    os.kill(server.pid, signal.SIGHUP)
    with server._stderr_cond:  # the reload is logged once done
        assert server._stderr_cond.wait_for(lambda: any("reloaded" in line for line in server._stderr_lines), 10)
    c = bmemcached.Client([address(server)], "alice", "changed")
    try:
        assert c.set("k", "v")
    finally:
        c.disconnect_all()
