"""Differential, the command line: each command line is given to the real
memcached 1.6.18 and to memcached-lite (--data-dir a temporary one, a free
port). A valid one starts both (each answers `version` on its port); a
refused one is refused by both with the same exit status (memcached's: 1
for getopt's refusals and its `return 1`s, 64 EX_USAGE for the others, 67
for an unknown -u user, 71 EX_OSERR for a port it cannot bind); -p 0 and
-p -1 start both, found through memcached's MEMCACHED_PORT_FILENAME (no
port, or the kernel's pick). Needs memcached; skips without it.
"""

import socket
import time

import pytest

pytestmark = pytest.mark.timeout(120)

STARTS = [
    [],
    ["-C"],
    ["--disable-cas"],
    ["-k"],
    ["-R", "5"],
    ["--max-reqs-per-event=5"],
    ["-b", "10"],
    ["-b", "0"],  # listen()'s own minimum
    ["-c100", "-m32"],
    ["-I", "2m"],
    ["-t", "2", "-o", "modern"],
    ["-t", "2", "--napi-ids=2"],  # memcached: no more NAPI ids than threads
    ["-D", "ab"],
    ["--verbose=2"],
    ["-o", "idle_timeout=-1"],  # memcached's compare is unsigned: it never fires
    ["-o", "idle_timeout=abc"],  # atoi: 0
    ["-o", "ssl_verify_mode=1"],  # no CA needed to start
    ["-m", "-1"],  # (size_t)-1 MiB: no bound
    ["-m", "100000000"],
    ["-b", "abc"],  # atoi: 0, listen()'s minimum
    ["-I", "512k"],
    ["-I", "1536k"],  # a multiple of slab_chunk_max's 512k
    ["-I", "32m"],  # half of -m 64
    ["-I", "2m", "-o", "slab_chunk_max=16384"],
    ["-I", "100k", "-o", "slab_chunk_max=16"],
    ["-t", "4", "-N", "4"],
    ["-L"],
    ["-o", "drop_privileges,no_chunked_items,resp_obj_mem_limit,inline_ascii_resp"],
    ["-o", "slab_sizes=100-200-300"],
    ["-o", "worker_logbuf_size=64"],  # memcached's fall-through: a slab size too, and a valid one
    ["-o", "hashpower=16,slab_automove,hash_algorithm=xxh3,lru_crawler_tocrawl=10"],
    ["-o", "ssl_min_version=3,ext_page_size=4"],
    ["-P", "/nonexistent-dir/memcached.pid"],  # a pid file it cannot write is only logged
    ["-r"],
    ["extra", "words"],  # no options: getopt passes over them
    # -l's list, after the fixtures' own -l 127.0.0.1 (memcached joins them)
    ["-l", "127.0.0.2"],
    ["-l", "127.0.0.2;127.0.0.3"],
    ["-l", "tag[ab]:127.0.0.2"],
    ["-l", "127.0.0.2:-1"],
]

REFUSED = [
    ["-x"],
    ["--memory=64"],  # an ambiguous abbreviation: --memory-limit or --memory-file
    ["-p"],
    ["-R", "0"],
    ["-c", "0"],
    ["-c", "abc"],
    ["-m", "0"],
    ["-I", "512"],
    ["-I", "2000m"],
    ["-B", "foo"],
    ["-S", "-B", "ascii"],
    ["-o", "bogus=1"],
    ["-o", "ssl_verify_mode=7"],
    ["-p", "70000"],
    ["-u", "no-such-user"],
    ["-D", ""],
    ["-Z"],
    ["-Z", "-p", "0"],  # no TCP port for SSL
    ["-m", "0"],
    ["-m", "abc"],  # atoi: 0, then -I is more than half of it
    ["-I", "33m"],  # more than half of -m 64
    ["-I", "1025m", "-m", "4096"],
    ["-I", "2g"],  # no g: atoi's 2 bytes
    ["-I", "100k"],  # below slab_chunk_max's 512k
    ["-I", "600k"],  # not a multiple of it
    ["-t", "2", "-N", "3"],  # more NAPI ids than threads
    ["-N", "5"],  # more than the threads (the fixture gives memcached -t 1; our default is its 4)
    ["-N", "0"],
    ["-t", "0"],
    ["-t", "abc"],
    ["-f", "1"],
    ["-n", "0"],
    ["-c", "-5"],
    ["-c", "2000000"],  # past fs.nr_open: the open-files limit cannot be set (71)
    ["-R", "abc"],
    ["-p", "65536"],
    ["-p", "-5"],  # getaddrinfo refuses it: 71
    ["-o", "idle_timeout"],
    ["-o", "ssl_verify_mode=abc"],
    ["-o", "hashpower=11"],
    ["-o", "hash_algorithm=md5"],
    ["-o", "slab_automove=3"],
    ["-o", "tail_repair_time=9"],
    ["-o", "hot_lru_pct=80"],
    ["-o", "ssl_min_version=4"],
    ["-o", "ext_threads=abc"],
    ["-o", "lru_crawler_tocrawl=x"],
    ["-o", "slab_sizes=100-200-1048576"],
    ["-o", "worker_logbuf_size=16"],
    ["-o", "watcher_logbuf_size=8k"],  # safe_strtoul: no units
    ["-o", "watcher_logbuf_size"],
    ["-o", "hot_lru_pct=50,warm_lru_pct=40"],
    ["-o", "no_lru_maintainer,temporary_ttl=10"],
    ["-o", "lru_segmented"],
    ["-o", "inline_ascii_response"],
    ["-o", "ext_path=/tmp/mclite-never:64m,ext_page_size=4"],  # refused before the file is opened
    ["-l", "127.0.0.2:abc"],
    ["-l", "tag[toolongtag]:127.0.0.2"],
    ["-l", "[::1"],
    ["-l", "notls:127.0.0.2"],
]

# ports of no TCP listener (-p 0, atoi's 0) or of the kernel's choice (-p -1)
PORTS = [["-p", "0"], ["-p", "abc"], ["-p", "-1"]]


@pytest.mark.parametrize("argv", STARTS, ids=[" ".join(a) or "none" for a in STARTS])
def test_a_command_line_memcached_starts_on_starts_memcached_lite(argv, start_memcached, start_mclite, connect):
    for server in (start_memcached(argv), start_mclite(extra_args=argv)):
        assert connect(server).exchange(b"version\r\n").startswith(b"VERSION 1.6.18")


@pytest.mark.parametrize("argv", REFUSED, ids=[" ".join(a) or "empty" for a in REFUSED])
def test_a_command_line_memcached_refuses_is_refused_with_its_status(argv, spawn_memcached, spawn_mclite, tmp_path):
    theirs = spawn_memcached(argv)
    ours = spawn_mclite(tmp_path, argv)
    assert ours.wait_exit() == theirs.wait_exit()


def port_file(path, server):
    """MEMCACHED_PORT_FILENAME's contents once the server has written it (it
    renames it into place complete); fails if the server exits first."""
    deadline = time.monotonic() + 20
    while not path.exists():
        assert server.alive(), f"{server!r} exited: {server.stderr_text()}"
        assert time.monotonic() < deadline, f"{server!r} wrote no {path}"
        time.sleep(0.01)  # polling for a file another process writes
    return path.read_text()


@pytest.mark.parametrize("argv", PORTS, ids=[" ".join(a) for a in PORTS])
def test_p_0_listens_nowhere_and_p_minus_1_on_a_port_the_kernel_picks_as_memcached(
    argv, spawn_memcached, spawn_mclite, connect, tmp_path
):
    for name in ("memcached", "mclite"):
        path = tmp_path / f"{name}.port"
        env = {"MEMCACHED_PORT_FILENAME": str(path)}
        if name == "memcached":
            server = spawn_memcached(argv, env=env)
        else:
            server = spawn_mclite(tmp_path / "data", argv, env=env)
        written = port_file(path, server)
        if argv[1] == "-1":
            kind, _, port = written.partition(": ")
            assert kind == "TCP INET"
            assert connect(("127.0.0.1", int(port))).exchange(b"version\r\n").startswith(b"VERSION 1.6.18")
        else:
            assert written == ""
            assert server.alive()


def test_a_udp_port_that_cannot_be_bound_fails_both_with_71(spawn_memcached, spawn_mclite, tmp_path):
    # memcached-lite has no UDP: any -U fails as memcached's failed bind does
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        argv = ["-U", str(taken.getsockname()[1])]
        assert spawn_mclite(tmp_path, argv).wait_exit() == spawn_memcached(argv).wait_exit() == 71


@pytest.mark.parametrize("argv", [[], ["-l", "127.0.0.2;127.0.0.3"]], ids=["one -l", "-l twice"])
def test_stats_settings_inter_is_memcached_s(argv, start_memcached, start_mclite, connect):
    shown = []
    for server in (start_memcached(argv), start_mclite(extra_args=argv)):
        c = connect(server)
        c.send(b"stats settings\r\n")
        rows = c.read_until(b"END\r\n").decode()
        shown.append(next(line for line in rows.splitlines() if line.startswith("STAT inter ")))
    assert shown[0] == shown[1]
