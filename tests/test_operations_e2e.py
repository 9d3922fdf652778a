"""Operating the server: limits, misbehaving clients, TLS, the safe-default
switches, signals, the pid file and the logs, all against real
`python -m reactor` processes.

Memory is the server's VmRSS read from /proc/<pid>/status. Nothing here sleeps
to pass: waits poll for a condition under a deadline, and the slow clients are
made slow by what they send, not by timers (the idle timeout is the one
place where time itself is the input: a 1 s timeout, and a bounded wait for
the connection to be closed).

What memcached 1.6.18 does, checked on loopback: over -c it accepts, writes
`ERROR Too many open connections`, closes and counts rejected_connections;
-o idle_timeout closes a connection waiting for a command (even one trickling
a command line) without a word and counts idle_kicks, but never one in the
middle of a value's data.
"""

import json
import os
import resource
import select
import signal
import socket
import ssl
import subprocess
import sys
import time

import pytest
from pymemcache.client.base import Client

VERSION_LINE = b"VERSION "

# what memcached cannot share: our log lines, and -c (memcached counts its own
# reserved descriptors against it, so a small -c refuses sooner there)
ours_only = pytest.mark.skipif(
    os.environ.get("MCLITE_TARGET", "mclite").strip().lower() == "memcached",
    reason="memcached-lite's own log lines or -c accounting",
)


# -- helpers ---------------------------------------------------------------------


def rss_kib(pid):
    """The process's resident memory, from the kernel."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS line")


def wait_for(condition, seconds=10.0, what="the condition"):
    deadline = time.monotonic() + seconds
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)  # polling interval only


def stats(conn, sub=b""):
    reply = conn.exchange(b"stats " + sub + b"\r\n", until=b"END\r\n")
    return {
        parts[1].decode(): parts[2].decode()
        for parts in (line.split(b" ", 2) for line in reply.split(b"\r\n"))
        if parts[0] == b"STAT"
    }


def closed_within(sock, seconds):
    """True once the peer closed the connection (EOF or reset) within `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        if select.select([sock], [], [], min(0.1, seconds))[0]:
            try:
                if sock.recv(4096) == b"":
                    return True
            except ConnectionResetError:
                return True
        if time.monotonic() >= deadline:
            return False


@pytest.fixture
def many_descriptors():
    """Room for over a thousand sockets in the test process."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 4096 if hard == resource.RLIM_INFINITY else min(4096, hard)
    if want < 1100:
        pytest.skip(f"the hard open-files limit ({hard}) is too low for 1,000 connections")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


# -- connection limit ------------------------------------------------------------


@ours_only
def test_a_connection_over_c_gets_memcacheds_error_and_is_counted(start_mclite, connect):
    server = start_mclite(extra_args=["-c", "3"])
    first, second, third = connect(server), connect(server), connect(server)
    for conn in (first, second, third):
        conn.assert_in_step()
    extra = connect(server)
    assert extra.read_until_closed() == b"ERROR Too many open connections\r\n"
    first.assert_in_step()  # the others are still served
    third.close()
    wait_for(lambda: stats(first)["curr_connections"] == "2", what="the closed connection to be gone")
    assert stats(first)["rejected_connections"] == "1"


def test_a_thousand_connections_keep_the_servers_memory_bounded_and_all_are_answered(
    many_descriptors, start_mclite, connect
):
    server = start_mclite(extra_args=["-c", "1100"])
    probe = connect(server)
    probe.assert_in_step()
    before = rss_kib(server.pid)
    socks = []
    try:
        for _ in range(1000):
            s = socket.create_connection(server.address, timeout=10)
            socks.append(s)
        for s in socks:  # every one is served, not just accepted
            s.sendall(b"version\r\n")
        for s in socks:
            assert s.recv(64).startswith(VERSION_LINE)
        assert stats(probe)["curr_connections"] == "1001"
        grown = rss_kib(server.pid) - before
        probe.assert_in_step()
    finally:
        for s in socks:
            s.close()
    # measured: about 1.2 MiB for 1,000 idle connections (a Connection, a
    # Session and their buffers each); 32 MiB would be 32 KiB a connection
    assert grown < 32 * 1024, f"1,000 connections cost {grown} KiB"


# -- slow and non-reading clients -------------------------------------------------


def test_a_client_trickling_a_set_a_byte_at_a_time_does_not_slow_the_others(start_mclite, connect):
    server = start_mclite()
    slow, other = connect(server), connect(server)
    other.exchange(b"set o 0 0 2\r\nok\r\n")
    request = b"set slow 0 0 5\r\nhello\r\n"
    for i in range(len(request)):
        slow.send(request[i : i + 1])
        # after every byte the other client gets its answer at once
        assert other.exchange(b"get o\r\n", until=b"END\r\n") == b"VALUE o 0 2\r\nok\r\nEND\r\n"
    assert slow.read_until() == b"STORED\r\n"
    assert other.exchange(b"get slow\r\n", until=b"END\r\n") == b"VALUE slow 0 5\r\nhello\r\nEND\r\n"


def test_a_client_that_never_reads_stops_being_served_and_the_servers_memory_stays_bounded(start_mclite, connect):
    server = start_mclite()
    writer = connect(server)
    size = 1000 * 1000
    writer.exchange(b"set big 0 0 %d\r\n%s\r\n" % (size, b"x" * size))
    before = rss_kib(server.pid)
    hog = socket.socket()
    hog.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    hog.connect(server.address)
    try:
        count = 300  # 300 MB of replies if the server queued them all
        hog.sendall(b"get big\r\n" * count)
        previous = [None]

        def stalled():
            # the server stops running the hog's gets once its queue is full
            done = int(stats(writer)["cmd_get"])
            settled = done == previous[0] and done > 0
            previous[0] = done
            return settled

        wait_for(stalled, what="the hog's gets to stop")
        assert int(stats(writer)["cmd_get"]) < count
        grown = rss_kib(server.pid) - before
        writer.assert_in_step()  # everyone else is still served
    finally:
        hog.close()
    # the queue stops at 4 MiB plus a reply; the kernel's socket buffers
    # are not the server's memory
    assert grown < 32 * 1024, f"a non-reading client cost {grown} KiB"


# -- idle timeout -----------------------------------------------------------------


def test_an_idle_connection_is_closed_after_idle_timeout_and_counted(start_mclite, connect):
    server = start_mclite(extra_args=["-o", "idle_timeout=1"])
    idle, busy = connect(server), connect(server)
    idle.assert_in_step()
    # the busy client runs commands back to back until the idle one is gone
    deadline = time.monotonic() + 10
    while not closed_within(idle.sock, 0):
        assert time.monotonic() < deadline, "the idle connection was never closed"
        busy.assert_in_step()
    busy.assert_in_step()
    assert stats(busy)["idle_kicks"] == "1"


def test_idle_timeout_closes_a_client_trickling_a_command_line(start_mclite, connect):
    server = start_mclite(extra_args=["-o", "idle_timeout=1"])
    slow = connect(server)
    deadline = time.monotonic() + 10
    closed = False
    while not closed:
        assert time.monotonic() < deadline, "a line that never ends kept its connection"
        try:
            slow.send(b"a")  # bytes, but never a command
        except (BrokenPipeError, ConnectionResetError):
            break
        closed = closed_within(slow.sock, 0.2)


def test_idle_timeout_never_closes_a_connection_in_the_middle_of_a_value(start_mclite, connect):
    server = start_mclite(extra_args=["-o", "idle_timeout=1"])
    idle, midway = connect(server), connect(server)
    midway.send(b"set k 0 0 5\r\nhe")
    # both have been quiet as long; the timer looks at them in the same pass
    assert closed_within(idle.sock, 10)
    assert midway.exchange(b"llo\r\n") == b"STORED\r\n"


# -- TLS ---------------------------------------------------------------------------


def tls_args(certs, *more):
    cert, key = certs
    return ["-Z", "--tls-cert", str(cert), "--tls-key", str(key), *more]


def client_context(certs, with_cert=False):
    cert, key = certs
    ctx = ssl.create_default_context(cafile=str(cert))
    if with_cert:
        ctx.load_cert_chain(str(cert), str(key))
    return ctx


def tls_socket(server, ctx, rcvbuf=None):
    raw = socket.socket()
    if rcvbuf:
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    raw.settimeout(10)
    raw.connect(server.address)
    return ctx.wrap_socket(raw, server_hostname="127.0.0.1")


def read_exactly(sock, n):
    out = bytearray()
    while len(out) < n:
        chunk = sock.recv(min(1 << 20, n - len(out)))
        assert chunk, f"closed after {len(out)} of {n} bytes"
        out += chunk
    return bytes(out)


@pytest.fixture(params=["everysec", "always"])
def tls_server(request, certs, start_mclite):
    return start_mclite(extra_args=tls_args(certs, "--fsync", request.param))


def test_pymemcache_sets_and_gets_over_tls(tls_server, certs):
    client = Client(tls_server.address, tls_context=client_context(certs), timeout=10)
    try:
        assert client.set("greeting", b"hello")
        assert client.get("greeting") == b"hello"
        assert client.delete("greeting") and client.get("greeting") is None
    finally:
        client.close()


def test_pymemcache_multi_get_over_tls(tls_server, certs):
    client = Client(tls_server.address, tls_context=client_context(certs), timeout=10)
    try:
        values = {f"k{i}": str(i).encode() * 10 for i in range(100)}
        assert client.set_many(values) == []
        assert client.get_many(list(values) + ["missing"]) == values
    finally:
        client.close()


def test_a_1mb_value_round_trips_over_tls_with_pymemcache(tls_server, certs):
    client = Client(tls_server.address, tls_context=client_context(certs), timeout=10)
    value = os.urandom(1000 * 1000)
    try:
        assert client.set("big", value)
        assert client.get("big") == value
    finally:
        client.close()


def test_a_slow_tls_reader_gets_every_byte_of_large_replies(certs, start_mclite):
    # a small receive buffer makes the server's ssl writes stop halfway
    # (SSLWantWrite) and resume: what arrives must still be whole and in order
    server = start_mclite(extra_args=tls_args(certs))
    value = os.urandom(1000 * 1000)
    with tls_socket(server, client_context(certs), rcvbuf=32 * 1024) as s:
        s.sendall(b"set big 0 0 %d\r\n%s\r\n" % (len(value), value))
        assert read_exactly(s, 8) == b"STORED\r\n"
        count = 8
        s.sendall(b"get big\r\nversion\r\n" * count)
        reply = b"VALUE big 0 %d\r\n%s\r\nEND\r\n" % (len(value), value)
        for _ in range(count):
            assert read_exactly(s, len(reply)) == reply
            assert read_exactly(s, 21) == b"VERSION 1.6.18-lite\r\n"


def test_garbage_instead_of_a_handshake_closes_that_connection_only(certs, start_mclite, connect):
    server = start_mclite(extra_args=tls_args(certs, "-v"))
    good = tls_socket(server, client_context(certs))
    try:
        garbage = connect(server)
        garbage.send(b"\x16\x03\x01\x00\x05" + os.urandom(4000))
        received = garbage.read_until_closed()
        assert received == b"" or received.startswith(b"\x15\x03")  # nothing but a TLS alert
        good.sendall(b"version\r\n")
        assert read_exactly(good, 21) == b"VERSION 1.6.18-lite\r\n"
    finally:
        good.close()
    wait_for(lambda: "TLS handshake with" in server.stderr_text(), what="the failed handshake in the log")


def test_a_plain_text_client_on_the_tls_port_is_closed_without_a_reply(certs, start_mclite, connect):
    server = start_mclite(extra_args=tls_args(certs))
    plain = connect(server)
    plain.send(b"version\r\n")
    assert plain.read_until_closed() == b""
    client = Client(server.address, tls_context=client_context(certs), timeout=10)
    try:
        assert client.version().startswith(b"1.6.18")
    finally:
        client.close()


def test_idle_timeout_closes_a_client_that_never_finishes_its_tls_handshake(certs, start_mclite, connect):
    server = start_mclite(extra_args=tls_args(certs, "-o", "idle_timeout=1"))
    stuck = connect(server)
    stuck.send(b"\x16\x03\x01")  # the first bytes of a ClientHello, and no more
    assert closed_within(stuck.sock, 10)
    client = Client(server.address, tls_context=client_context(certs), timeout=10)
    try:
        assert client.version().startswith(b"1.6.18")
    finally:
        client.close()


def test_memcacheds_o_spellings_configure_tls_too(certs, start_mclite):
    cert, key = certs
    server = start_mclite(extra_args=["-Z", "-o", f"ssl_chain_cert={cert},ssl_key={key}"])
    client = Client(server.address, tls_context=client_context(certs), timeout=10)
    try:
        assert client.set("k", b"v") and client.get("k") == b"v"
    finally:
        client.close()


def test_ssl_verify_mode_2_requires_a_client_certificate(certs, start_mclite):
    cert, _ = certs
    # the self-signed certificate is its own CA, and the client presents it
    server = start_mclite(extra_args=tls_args(certs, "--tls-ca", str(cert), "-o", "ssl_verify_mode=2"))
    with tls_socket(server, client_context(certs, with_cert=True)) as s:
        s.sendall(b"version\r\n")
        assert read_exactly(s, 21) == b"VERSION 1.6.18-lite\r\n"
    refused = b""
    try:
        with tls_socket(server, client_context(certs)) as s:
            # under TLS 1.3 the refusal arrives after the client's handshake
            s.sendall(b"version\r\n")
            refused = s.recv(100)
    except (ssl.SSLError, ConnectionError):
        pass
    assert refused == b""


# -- the safe-default switches ----------------------------------------------------------


def test_shutdown_is_refused_without_A(start_mclite, connect):
    server = start_mclite()
    conn = connect(server)
    assert conn.exchange(b"shutdown graceful\r\n") == b"ERROR: shutdown not enabled\r\n"
    conn.assert_in_step()


def test_flush_all_is_refused_under_F_and_the_items_stay(start_mclite, connect):
    server = start_mclite(extra_args=["-F"])
    conn = connect(server)
    conn.exchange(b"set k 0 0 1\r\nv\r\n")
    assert conn.exchange(b"flush_all\r\n") == b"CLIENT_ERROR flush_all not allowed\r\n"
    assert conn.exchange(b"get k\r\n", until=b"END\r\n") == b"VALUE k 0 1\r\nv\r\nEND\r\n"


@pytest.mark.parametrize("command", [b"shutdown", b"shutdown graceful"])
def test_shutdown_with_A_stops_the_server_cleanly_and_keeps_the_items(start_mclite, connect, command):
    server = start_mclite(extra_args=["-A", "--fsync", "always"])
    conn = connect(server)
    conn.exchange(b"set k 0 0 1\r\nv\r\n")
    conn.send(command + b"\r\n")
    assert conn.read_until_closed() == b""
    assert server.wait_exit() == 0
    server.restart()
    assert connect(server).exchange(b"get k\r\n", until=b"END\r\n") == b"VALUE k 0 1\r\nv\r\nEND\r\n"


def test_sigusr1_stops_the_server_gracefully(start_mclite, connect):
    server = start_mclite()
    connect(server).exchange(b"set k 0 0 1\r\nv\r\n")
    server.stop(signal.SIGUSR1)  # asserts exit status 0


def test_the_pid_file_holds_the_pid_while_running_and_is_removed_at_exit(start_mclite, tmp_path):
    pidfile = tmp_path / "mclite.pid"
    server = start_mclite(extra_args=["-P", str(pidfile)])
    assert pidfile.read_text() == f"{server.pid}\n"
    server.stop()
    assert not pidfile.exists()


# -- logs ------------------------------------------------------------------------------


def test_sighup_reopens_the_log_file_so_it_can_be_rotated(spawn_mclite, tmp_path, connect):
    log = tmp_path / "mclite.log"
    server = spawn_mclite(tmp_path / "data", extra_args=["--log-file", str(log), "-v"])
    server.port = None
    wait_for(lambda: log.exists() and "listening on" in log.read_text(), what="the start-up line in the log")
    server.port = int(log.read_text().split("listening on 127.0.0.1:")[1].split()[0].rstrip(","))
    rotated = tmp_path / "mclite.log.1"
    log.rename(rotated)
    os.kill(server.pid, signal.SIGHUP)
    wait_for(lambda: log.exists() and "reopened" in log.read_text(), what="the reopened log")
    connect(server).assert_in_step()
    wait_for(lambda: "connection from" in log.read_text(), what="new lines in the new file")
    assert "connection from" not in rotated.read_text().split("listening on")[1]


@ours_only
def test_sighup_without_a_log_file_is_logged_and_changes_nothing(start_mclite, connect):
    server = start_mclite()
    os.kill(server.pid, signal.SIGHUP)
    wait_for(lambda: "SIGHUP: no --log-file" in server.stderr_text(), what="the SIGHUP line")
    connect(server).assert_in_step()


@ours_only
def test_sighup_reads_the_auth_file_again(start_mclite, connect, tmp_path):
    users = tmp_path / "users"
    users.write_text("alice:secret\n")
    server = start_mclite(extra_args=["-Y", str(users)])
    users.write_text("bob:hunter2\n")
    os.kill(server.pid, signal.SIGHUP)
    wait_for(lambda: "auth file" in server.stderr_text() and "reloaded" in server.stderr_text(),
             what="the reload line")
    c = connect(server)
    assert c.exchange(b"set auth 0 0 11\r\nbob hunter2\r\n") == b"STORED\r\n"
    c = connect(server)
    assert c.exchange(b"set auth 0 0 12\r\nalice secret\r\n") == b"CLIENT_ERROR authentication failure\r\n"


def test_json_logs_are_one_object_a_line_with_time_level_message_and_peer(start_mclite, connect):
    server = start_mclite(extra_args=["--log-format", "json", "-v"])
    connect(server).assert_in_step()
    wait_for(lambda: "connection from" in server.stderr_text(), what="the connection line")
    entries = [json.loads(line) for line in server.stderr_text().splitlines()]
    assert all({"time", "level", "message"} <= entry.keys() for entry in entries)
    connection = next(e for e in entries if e["message"].startswith("connection from"))
    assert connection["peer"].startswith("127.0.0.1:") and connection["level"] == "debug"


@ours_only
def test_vv_logs_commands_and_replies_with_timestamps(start_mclite, connect):
    server = start_mclite(extra_args=["-vv"])
    connect(server).assert_in_step()
    wait_for(lambda: "b'VERSION 1.6.18-lite" in server.stderr_text(), what="the reply in the log")
    lines = server.stderr_text().splitlines()
    command = next(line for line in lines if "<b'version'" in line)
    assert time.strftime("%Y-") in command[:5]  # every line starts with its time


def test_vvv_logs_the_line_and_data_states_and_batch_commits(start_mclite, connect):
    server = start_mclite(extra_args=["-vvv", "--fsync", "always"])
    conn = connect(server)
    conn.send(b"set k 0 0 5\r\n")
    wait_for(lambda: "LINE -> DATA" in server.stderr_text(), what="the LINE -> DATA line")
    assert conn.exchange(b"hello\r\n") == b"STORED\r\n"
    wait_for(lambda: "DATA -> LINE" in server.stderr_text(), what="the DATA -> LINE line")
    wait_for(lambda: "batch committed: 1 changes" in server.stderr_text(), what="the batch line")


# -- memcached's own command lines -------------------------------------------------


@ours_only
def test_memcached_s_docker_command_line_starts_it_and_is_logged_once(start_mclite, connect):
    server = start_mclite(extra_args=["-U", "0", "-t", "4", "-m", "256", "-o", "modern"])
    conn = connect(server)
    conn.assert_in_step()
    assert stats(conn)["limit_maxbytes"] == str(256 << 20)
    line = "memcached options that do not apply here, accepted and ignored: -t 4 -o modern"
    wait_for(lambda: line in server.stderr_text(), what="the start-up line naming them")
    assert server.stderr_text().count("do not apply here") == 1


@ours_only
def test_R_makes_a_pipelining_connection_yield_after_that_many_commands(start_mclite, connect):
    server = start_mclite(extra_args=["-R", "2", "-b", "64"])
    conn = connect(server)
    conn.send(b"version\r\n" * 60)
    conn.read_until(b"\r\n", count=60)
    settings = stats(conn, b"settings")
    assert (settings["reqs_per_event"], settings["tcp_backlog"]) == ("2", "64")
    assert int(stats(conn)["conn_yields"]) >= 1


@ours_only
def test_r_raises_the_core_file_limit_to_the_hard_one(start_mclite, connect):
    before = resource.getrlimit(resource.RLIMIT_CORE)
    resource.setrlimit(resource.RLIMIT_CORE, (0, before[1]))  # the server inherits a soft limit of 0
    try:
        server = start_mclite(extra_args=["-r"])
    finally:
        resource.setrlimit(resource.RLIMIT_CORE, before)
    connect(server).assert_in_step()
    with open("/proc/%d/limits" % server.pid) as f:
        line = next(line for line in f if line.startswith("Max core file size"))
    soft, hard = line.split()[4:6]
    assert soft == hard


@ours_only
def test_d_returns_at_once_and_leaves_a_daemon_serving_that_P_names(tmp_path, free_port):
    port, pidfile = free_port(), tmp_path / "mclite.pid"
    argv = [sys.executable, "-m", "reactor", "-d", "-P", str(pidfile), "-p", str(port), "--data-dir", "data"]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root)
    # a relative --data-dir means the directory -d was started in, not the daemon's /
    done = subprocess.run(argv, cwd=str(tmp_path), env=env, timeout=30)
    assert done.returncode == 0
    wait_for(pidfile.exists, what="the daemon's pid file")
    wait_for(lambda: pidfile.read_text().endswith("\n"), what="the pid written")
    pid = int(pidfile.read_text())
    try:
        assert pid != os.getpid()
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"set k 0 0 1\r\nv\r\n")
            assert s.recv(100) == b"STORED\r\n"
        assert (tmp_path / "data").is_dir()
    finally:
        os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not pidfile.exists(), what="the pid file removed at the clean exit")


def _status_field(pid, name):
    with open("/proc/%d/status" % pid) as f:
        return next(line.split()[1:] for line in f if line.startswith(name + ":"))


@ours_only
@pytest.mark.skipif(os.geteuid() != 0, reason="-u switches users only as root")
def test_u_runs_the_server_as_that_user_after_binding(start_mclite, connect):
    import pwd
    import shutil
    import tempfile

    data_dir = tempfile.mkdtemp(prefix="mclite-u-")  # outside pytest's root-only tmp tree
    try:
        os.chown(data_dir, pwd.getpwnam("nobody").pw_uid, -1)
        server = start_mclite(data_dir=data_dir, extra_args=["-u", "nobody"])
        assert connect(server).exchange(b"set k 0 0 1\r\nv\r\n") == b"STORED\r\n"
        assert _status_field(server.pid, "Uid") == [str(pwd.getpwnam("nobody").pw_uid)] * 4
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


@ours_only
@pytest.mark.skipif(os.geteuid() != 0, reason="-u switches users only as root")
def test_under_u_the_everysec_helper_runs_as_that_user_and_makes_the_barriers(start_mclite, connect):
    # the user may not run the interpreter (Python under /root): the helper is then the server forked
    import pwd
    import shutil
    import tempfile

    data_dir = tempfile.mkdtemp(prefix="mclite-u-")
    try:
        nobody = pwd.getpwnam("nobody").pw_uid
        os.chown(data_dir, nobody, -1)
        server = start_mclite(data_dir=data_dir, extra_args=["-u", "nobody", "--fsync", "everysec"])
        c = connect(server)
        assert c.exchange(b"set k 0 0 1\r\nv\r\n") == b"STORED\r\n"
        assert stats(c)["fsync_helper"] == "running"
        wait_for(lambda: int(stats(c)["fsync_calls"]) >= 1, what="the helper's barrier")
        with open(f"/proc/{server.pid}/task/{server.pid}/children") as f:
            [helper] = f.read().split()
        assert _status_field(int(helper), "Uid") == [str(nobody)] * 4
        assert "no sync helper" not in server.stderr_text()
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


@ours_only
@pytest.mark.skipif(os.geteuid() != 0, reason="an unlimited mlockall needs root")
def test_k_locks_the_servers_memory(start_mclite, connect):
    server = start_mclite(extra_args=["-k"])
    connect(server).assert_in_step()
    assert int(_status_field(server.pid, "VmLck")[0]) > 0
