"""Differential, the command line: each command line is given to the real
memcached 1.6.18 and to memcached-lite (--data-dir a temporary one, a free
port). A valid one starts both (each answers `version` on its port); a
refused one is refused by both with the same exit status (memcached's: 1
for getopt's refusals and its `return 1`s, 64 EX_USAGE for the others, 67
for an unknown -u user). Needs memcached; skips without it.
"""

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
]

REFUSED = [
    ["-x"],
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
]


@pytest.mark.parametrize("argv", STARTS, ids=[" ".join(a) or "none" for a in STARTS])
def test_a_command_line_memcached_starts_on_starts_memcached_lite(argv, start_memcached, start_mclite, connect):
    for server in (start_memcached(argv), start_mclite(extra_args=argv)):
        assert connect(server).exchange(b"version\r\n").startswith(b"VERSION 1.6.18")


@pytest.mark.parametrize("argv", REFUSED, ids=[" ".join(a) or "empty" for a in REFUSED])
def test_a_command_line_memcached_refuses_is_refused_with_its_status(argv, spawn_memcached, spawn_mclite, tmp_path):
    theirs = spawn_memcached(argv)
    ours = spawn_mclite(tmp_path, argv)
    assert ours.wait_exit() == theirs.wait_exit()
