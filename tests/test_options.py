"""The command line (options.py): parsed in process, no server started."""

import pytest

import options
from store import WATCHDOG


def test_the_default_listens_on_loopback_only():
    assert options.parse_args([]).listen == "127.0.0.1"


def test_the_fsync_watchdog_defaults_to_the_stores():
    assert options.parse_args([]).fsync_watchdog == WATCHDOG


def test_the_fsync_watchdog_is_an_extended_option():
    assert options.parse_args(["-o", "fsync_watchdog=0.5"]).fsync_watchdog == 0.5


def test_a_fsync_watchdog_of_zero_is_refused(capsys):
    with pytest.raises(SystemExit) as e:
        options.parse_args(["-o", "fsync_watchdog=0"])
    assert e.value.code == options.FAILURE
    assert "fsync_watchdog must be a positive number" in capsys.readouterr().err


# -- -B, -S, --sasl-file (the binary protocol and SASL) ------------------------


def protocol_of(argv):
    return options.make_settings(options.parse_args(argv)).protocol


def test_the_protocol_is_auto_negotiated_by_default():
    assert protocol_of([]) == "auto"


@pytest.mark.parametrize("value", ["auto", "binary", "ascii"])
def test_B_takes_memcached_s_three_protocols(value):
    assert protocol_of(["-B", value]) == value


def test_B_refuses_another_with_memcached_s_message(capsys):
    with pytest.raises(SystemExit):
        options.parse_args(["-B", "udp"])
    assert "Invalid value for binding protocol: udp" in capsys.readouterr().err


def test_S_makes_the_port_binary_only():
    assert protocol_of(["-S"]) == "binary"


def test_S_with_B_ascii_is_refused_as_memcached_refuses_it(capsys):
    with pytest.raises(SystemExit):
        options.parse_args(["-S", "-B", "ascii"])
    assert "You cannot allow the ASCII protocol while using SASL." in capsys.readouterr().err


def test_the_sasl_file_defaults_to_MEMCACHED_SASL_PWDB(tmp_path, monkeypatch):
    path = tmp_path / "pwdb"
    path.write_text("alice:secret\n")
    monkeypatch.setenv("MEMCACHED_SASL_PWDB", str(path))
    assert options.parse_args(["-S"]).sasl_file == str(path)


def test_an_unreadable_sasl_file_is_refused(tmp_path):
    with pytest.raises(SystemExit):
        options.parse_args(["-S", "--sasl-file", str(tmp_path / "none")])


# -- memcached's command lines, run unchanged -----------------------------------


def test_U_0_is_accepted_as_memcached_s_udp_off():
    assert options.parse_args(["-U", "0"]).udp_port == 0


def test_a_udp_port_fails_as_memcached_s_failure_to_bind_it(capsys):
    with pytest.raises(SystemExit) as e:
        options.parse_args(["-U", "11211"])
    assert e.value.code == options.EX_OSERR
    assert "failed to listen on UDP port 11211: memcached-lite serves no UDP" in capsys.readouterr().err


def test_a_udp_port_under_s_is_accepted_as_memcached_binds_no_port_then(tmp_path):
    assert options.parse_args(["-s", str(tmp_path / "m.sock"), "-U", "11211"]).udp_port == 11211


def test_U_alone_names_the_tcp_port_too_as_memcached():
    with pytest.raises(SystemExit) as e:
        options.parse_args(["-U", "70000"])
    assert e.value.code == options.EX_USAGE  # memcached: "ERROR: Invalid port number 70000."


@pytest.mark.parametrize(
    "flags", [["-t", "4"], ["--threads", "4"], ["-f", "1.5"], ["-n", "64"], ["-L"], ["-M"], ["--napi-ids", "2"]]
)
def test_memcached_s_options_of_mechanisms_not_here_are_accepted_and_named(flags):
    assert options.parse_args(flags).not_applicable == [
        next(f for f, _, _ in options.NOT_APPLICABLE if flags[0] in f)[0] + (" " + flags[1] if len(flags) > 1 else "")
    ]


def test_memcached_s_suboptions_of_mechanisms_not_here_are_accepted_and_named():
    args = options.parse_args(["-o", "modern,slab_chunk_max=512", "-o", "lru_crawler,idle_timeout=5"])
    assert args.not_applicable == ["-o modern", "-o slab_chunk_max=512", "-o lru_crawler"]
    assert args.idle_timeout == 5


def test_an_unknown_suboption_is_still_refused(capsys):
    with pytest.raises(SystemExit) as e:
        options.parse_args(["-o", "no_such_thing"])
    assert e.value.code == options.FAILURE
    assert 'Illegal suboption "no_such_thing"' in capsys.readouterr().err


def test_a_docker_memcached_command_line_parses_unchanged():
    args = options.parse_args(["-U", "0", "-t", "4", "-m", "256", "-o", "modern"])
    assert (args.memory_limit, args.not_applicable) == (256, ["-t 4", "-o modern"])


def test_help_lists_the_options_that_do_not_apply_apart(capsys):
    with pytest.raises(SystemExit):
        options.parse_args(["--help"])
    out = capsys.readouterr().out
    assert "memcached's options that do not apply here" in out
    assert out.index("--data-dir") < out.index("do not apply here") < out.index("--threads")


def test_R_sets_the_requests_a_connection_runs_a_turn():
    assert options.make_settings(options.parse_args(["-R", "5"])).reqs_per_event == 5


def test_R_0_is_refused_with_memcached_s_message(capsys):
    with pytest.raises(SystemExit):
        options.parse_args(["-R", "0"])
    assert "Number of requests per event must be greater than 0" in capsys.readouterr().err


def test_b_sets_the_listen_backlog_stats_settings_shows():
    assert options.make_settings(options.parse_args(["-b", "64"])).tcp_backlog == 64


def test_V_prints_the_version_as_memcached_and_exits_0(capsys):
    with pytest.raises(SystemExit) as e:
        options.parse_args(["-V"])
    assert e.value.code == 0
    assert capsys.readouterr().out == "memcached 1.6.18-lite\n"


# -- -s and -a: the unix socket -------------------------------------------------


def test_there_is_no_unix_socket_unless_s_is_given():
    settings = options.make_settings(options.parse_args([]))
    assert (settings.domain_socket, settings.unix_mask) == (None, 0o700)


@pytest.mark.parametrize("flags", [["-s", "/tmp/m.sock", "-a", "0770"], ["--unix-socket=/tmp/m.sock", "--unix-mask=0770"]])
def test_s_and_a_have_memcached_s_long_spellings_too(flags):
    settings = options.make_settings(options.parse_args(flags))
    assert (settings.domain_socket, settings.unix_mask) == ("/tmp/m.sock", 0o770)


@pytest.mark.parametrize("text, mode", [("0770", 0o770), ("770", 0o770), ("0", 0), ("1777", 0o1777), (" 22", 0o22)])
def test_a_reads_its_mode_in_octal_as_memcached_s_strtol(text, mode):
    assert options.parse_args(["-a", text]).unix_mask == mode


@pytest.mark.parametrize("text", ["9", "0x1ff", "rwx", "-1", ""])
def test_a_refuses_what_is_no_octal_number_memcached_would_make_mode_0(text, capsys):
    with pytest.raises(SystemExit) as e:
        options.parse_args(["-a", text])
    assert e.value.code == options.FAILURE
    assert "-a takes an octal mode such as 0770" in capsys.readouterr().err


def test_an_empty_s_path_is_refused(capsys):
    with pytest.raises(SystemExit):
        options.parse_args(["-s", ""])
    assert "-s needs the path of the socket file" in capsys.readouterr().err


def test_a_path_longer_than_sun_path_holds_is_refused_not_cut_short_as_memcached_does(capsys):
    options.parse_args(["-s", "/" + "a" * (options.UNIX_PATH_MAX - 1)])
    with pytest.raises(SystemExit) as e:
        options.parse_args(["-s", "/" + "a" * options.UNIX_PATH_MAX])
    assert e.value.code == options.FAILURE
    assert "a unix socket's path is at most 107 bytes" in capsys.readouterr().err


def test_the_default_data_dir_is_named_by_the_port(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert options.parse_args(["-p", "11299"]).data_dir == str(tmp_path / "memcached-lite" / "11299")


def test_the_default_data_dir_under_s_is_named_by_the_socket_path(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    args = options.parse_args(["-s", "/run/memcached/memcached.sock"])
    assert args.data_dir == str(tmp_path / "memcached-lite" / "unix%2Frun%2Fmemcached%2Fmemcached.sock")


def test_C_turns_cas_off_in_the_protocols_settings():
    assert options.make_settings(options.parse_args(["-C"])).cas_enabled is False
    assert options.make_settings(options.parse_args([])).cas_enabled is True


def test_k_is_honoured_not_only_named():
    args = options.parse_args(["-k"])
    assert args.lock_memory and args.not_applicable == []


def test_u_takes_a_user():
    assert options.parse_args(["-u", "nobody"]).user == "nobody"
    assert options.parse_args(["--user=nobody"]).user == "nobody"


def test_i_prints_the_license_and_exits_0(capsys):
    with pytest.raises(SystemExit) as e:
        options.parse_args(["-i"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("memcached-lite: ")
    assert "\nmemcached 1.6.18\n\nCopyright (c) 2003, Danga Interactive, Inc. <http://www.danga.com/>\n" in out
    assert out.endswith("OF THIS SOFTWARE, EVEN IF ADVISED OF THE POSSIBILITY OF SUCH DAMAGE.\n")


def test_i_prints_memcached_s_license_text_as_memcached_prints_it(capsys):
    with pytest.raises(SystemExit):
        options.parse_args(["-i"])
    out = capsys.readouterr().out
    assert out[out.index("\nmemcached 1.6.18\n") + 1:] == MEMCACHED_LICENSE


@pytest.mark.parametrize("argv", [["--napi-ids", "2"], ["--napi_ids", "2"], ["-N2"]])
def test_napi_ids_parses_in_memcached_s_spelling_and_ours(argv):
    assert options.parse_args(argv).not_applicable == ["-N 2"]


# memcached 1.6.18's longopts[] (memcached.c), but -s -a -W, and a value each
# takes; -h -i -V exit, so they are tried apart
MEMCACHED_LONGOPTS = {
    "enable-shutdown": None, "port": "11311", "udp-port": "0", "memory-limit": "32",
    "disable-evictions": None, "conn-limit": "10", "lock-memory": None, "enable-coredumps": None,
    "verbose": None, "daemon": None, "listen": "127.0.0.1", "user": "nobody", "pidfile": "/tmp/p",
    "slab-growth-factor": "1.5", "slab-min-size": "64", "threads": "2", "enable-largepages": None,
    "max-reqs-per-event": "5", "disable-cas": None, "listen-backlog": "10", "protocol": "ascii",
    "max-item-size": "2m", "enable-sasl": None, "disable-flush-all": None, "disable-dumping": None,
    "auth-file": None, "memory-file": "/tmp/m", "extended": "idle_timeout=5", "napi-ids": "2",
    "enable-ssl": None,
}


@pytest.mark.parametrize("name", MEMCACHED_LONGOPTS)
def test_every_memcached_long_option_parses_in_both_forms(name, tmp_path):
    value = MEMCACHED_LONGOPTS[name]
    if name == "auth-file":
        (tmp_path / "auth").write_text("u:p\n")
        value = str(tmp_path / "auth")
    extra = ["--tls-cert", "cert.pem"] if name == "enable-ssl" else []
    forms = [[f"--{name}"]] if value is None else [[f"--{name}", value], [f"--{name}={value}"]]
    for form in forms:
        options.parse_args(form + extra)


@pytest.mark.parametrize("name", ["help", "license", "version"])
def test_memcached_s_long_options_that_print_and_exit_0(name, capsys):
    with pytest.raises(SystemExit) as e:
        options.parse_args([f"--{name}"])
    assert e.value.code == 0


def test_verbose_with_a_value_is_one_level_more_as_memcached():
    assert options.parse_args(["--verbose=2", "-v"]).verbose == 2


def test_a_short_option_takes_its_value_glued_as_memcached():
    assert options.parse_args(["-p11311", "-m32", "-c10"]).port == 11311


# memcached 1.6.18's usage_license() output (`memcached -i`), its LICENSE file
# under a version line
MEMCACHED_LICENSE = (
    "memcached 1.6.18\n\nCopyright (c) 2003, Danga Interactive, Inc. <http://www.danga.com/>\n"
    "All rights reserved.\n\nRedistribution and use in source and binary forms, with or without\n"
    "modification, are permitted provided that the following conditions are\nmet:\n\n"
    "    * Redistributions of source code must retain the above copyright\n"
    "notice, this list of conditions and the following disclaimer.\n\n"
    "    * Redistributions in binary form must reproduce the above\n"
    "copyright notice, this list of conditions and the following disclaimer\n"
    "in the documentation and/or other materials provided with the\ndistribution.\n\n"
    "    * Neither the name of the Danga Interactive nor the names of its\n"
    "contributors may be used to endorse or promote products derived from\n"
    "this software without specific prior written permission.\n\n"
    "THIS SOFTWARE IS PROVIDED BY THE COPYRIGHT HOLDERS AND CONTRIBUTORS\n"
    "\"AS IS\" AND ANY EXPRESS OR IMPLIED WARRANTIES, INCLUDING, BUT NOT\n"
    "LIMITED TO, THE IMPLIED WARRANTIES OF MERCHANTABILITY AND FITNESS FOR\n"
    "A PARTICULAR PURPOSE ARE DISCLAIMED. IN NO EVENT SHALL THE COPYRIGHT\n"
    "OWNER OR CONTRIBUTORS BE LIABLE FOR ANY DIRECT, INDIRECT, INCIDENTAL,\n"
    "SPECIAL, EXEMPLARY, OR CONSEQUENTIAL DAMAGES (INCLUDING, BUT NOT\n"
    "LIMITED TO, PROCUREMENT OF SUBSTITUTE GOODS OR SERVICES; LOSS OF USE,\n"
    "DATA, OR PROFITS; OR BUSINESS INTERRUPTION) HOWEVER CAUSED AND ON ANY\n"
    "THEORY OF LIABILITY, WHETHER IN CONTRACT, STRICT LIABILITY, OR TORT\n"
    "(INCLUDING NEGLIGENCE OR OTHERWISE) ARISING IN ANY WAY OUT OF THE USE\n"
    "OF THIS SOFTWARE, EVEN IF ADVISED OF THE POSSIBILITY OF SUCH DAMAGE.\n"
)


# -- numbers as memcached reads them (atoi), and its value rules ----------------


@pytest.mark.parametrize("text, value", [
    ("11311", 11311), ("abc", 0), ("", 0), ("12ab", 12), (" 7", 7), ("-1", -1), ("+3", 3),
    ("4294967297", 1), ("99999999999999999999", -1),
])
def test_atoi_reads_numbers_as_c_s(text, value):
    assert options.atoi(text) == value


@pytest.mark.parametrize("text, size", [("1m", 1 << 20), ("512K", 512 << 10), ("2000", 2000), ("2g", 2), ("4096m", 0)])
def test_I_reads_its_size_as_memcached(text, size):
    assert options.item_size(text) == size


@pytest.mark.parametrize("argv, port", [(["-p", "0"], 0), (["-p", "abc"], 0), (["-p", "-1"], -1), (["-p", "1x"], 1)])
def test_p_takes_what_memcached_s_atoi_makes_of_it(argv, port):
    assert options.parse_args(argv).port == port


def test_the_default_data_dir_of_p_0_is_named_by_its_port(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert options.parse_args(["-p", "0"]).data_dir == str(tmp_path / "memcached-lite" / "0")


def test_m_minus_1_is_memcached_s_unbounded_size_t():
    assert options.parse_args(["-m", "-1"]).memory_bytes == (1 << 64) - (1 << 20)


def test_a_negative_idle_timeout_is_accepted_as_memcached_never_fires_it():
    assert options.parse_args(["-o", "idle_timeout=-1"]).idle_timeout == -1


def test_an_idle_timeout_that_is_no_number_is_0_as_memcached_s_atoi():
    assert options.parse_args(["-o", "idle_timeout=abc"]).idle_timeout == 0


def test_ssl_verify_mode_without_a_ca_is_accepted_as_memcached():
    assert options.parse_args(["-o", "ssl_verify_mode=1"]).tls_verify_mode == 1


@pytest.mark.parametrize("value, size", [
    (None, 256 * 1024), ("8", 8192), ("0", 0), (" +2 x", 2048),
    # memcached keeps it in an unsigned int, times 1024 there (each asked of memcached 1.6.18)
    ("4194304", 0), ("4194305", 1024), ("%d" % ((1 << 64) - 1), (1 << 32) - 1024),
])
def test_watcher_logbuf_size_is_kib_in_memcached_s_unsigned_int(value, size):
    argv = [] if value is None else ["-o", "watcher_logbuf_size=" + value]
    assert options.make_settings(options.parse_args(argv)).watcher_logbuf_size == size


def test_watcher_logbuf_size_is_honoured_not_named_as_ignored():
    assert options.parse_args(["-o", "watcher_logbuf_size=8"]).not_applicable == []


def test_s_and_stats_inter_null_without_l():
    assert options.make_settings(options.parse_args([])).listen is None
    assert options.make_settings(options.parse_args(["-l", "127.0.0.1"])).listen == "127.0.0.1"


@pytest.mark.parametrize("argv, message, status", [
    (["-o", "idle_timeout"], "Missing numeric argument for idle_timeout", options.FAILURE),
    (["-o", "ssl_verify_mode=abc"], "could not parse argument to ssl_verify_mode", options.FAILURE),
    (["-o", "ssl_verify_mode"], "Missing ssl_verify_mode argument", options.FAILURE),
    (["-o", "watcher_logbuf_size=-1"], "could not parse argument to watcher_logbuf_size", options.FAILURE),
    (["-o", "watcher_logbuf_size=8k"], "could not parse argument to watcher_logbuf_size", options.FAILURE),
    (["-o", "watcher_logbuf_size=%d" % (1 << 64)], "could not parse argument to watcher_logbuf_size",
     options.FAILURE),
    (["-o", "watcher_logbuf_size"], "Missing watcher_logbuf_size argument", options.FAILURE),
    (["-I", "33m"], "Cannot set item size limit higher than 1/2 of memory max.", options.EX_USAGE),
    (["-m", "0"], "Cannot set item size limit higher than 1/2 of memory max.", options.EX_USAGE),
    (["-m", "abc"], "Cannot set item size limit higher than 1/2 of memory max.", options.EX_USAGE),
    (["-I", "2g"], "Item max size cannot be less than 1024 bytes.", options.EX_USAGE),
    (["-I", "1025m", "-m", "4096"], "Cannot set item size limit higher than a gigabyte.", options.EX_USAGE),
    (["-I", "100k"], "slab_chunk_max (bytes: 524288) cannot be larger than -I (item_size_max 102400)",
     options.EX_USAGE),
    (["-I", "600k"], "-I (item_size_max: 614400) must be evenly divisible by slab_chunk_max (bytes: 524288)",
     options.EX_USAGE),
    (["-t", "2", "-N", "3"], "Number of napi_ids(3) cannot be greater than number of threads(2)", options.EX_USAGE),
    (["-N", "5"], "Number of napi_ids(5) cannot be greater than number of threads(4)", options.EX_USAGE),
    (["-N", "0"], "Maximum number of NAPI IDs must be greater than 0", options.FAILURE),
    (["-t", "0"], "Number of threads must be greater than 0", options.FAILURE),
    (["-f", "1"], "Factor must be greater than 1", options.FAILURE),
    (["-n", "abc"], "Chunk size must be greater than 0", options.FAILURE),
    (["-Z", "--tls-cert", "c.pem", "-p", "0"], "ERROR: You cannot enable SSL without a TCP port.", options.EX_USAGE),
    (["-S", "-U", "5"], "ERROR: Cannot enable UDP while using binary SASL authentication.", options.EX_USAGE),
])
def test_a_value_memcached_refuses_is_refused_with_its_message_and_status(argv, message, status, capsys):
    with pytest.raises(SystemExit) as e:
        options.parse_args(argv)
    assert e.value.code == status
    assert capsys.readouterr().err.endswith(f" {message}\n")


@pytest.mark.parametrize("argv", [
    ["-I", "512k"], ["-I", "1536k"], ["-I", "32m"], ["-I", "2m", "-o", "slab_chunk_max=16384"],
    ["-I", "100k", "-o", "slab_chunk_max=16"], ["-I", "1k", "-o", "slab_chunk_max=1024"],
    ["-t", "2", "-N", "2"], ["-b", "abc"], ["-m", "100000000"],
])
def test_a_value_memcached_accepts_is_accepted(argv):
    options.parse_args(argv)


# -- the values memcached refuses of the -o suboptions only named here -----------


@pytest.mark.parametrize("suboption, message", [
    ("hashpower", "Missing numeric argument for hashpower"),
    ("hashpower=11", "Initial hashtable multiplier of 11 is too low"),
    ("hashpower=33", "Initial hashtable multiplier of 33 is too high\nChoose a value based on"),
    ("slab_automove=3", "slab_automove must be between 0 and 2"),
    ("slab_automove_ratio=0", "slab_automove_ratio must be > 0 and < 1"),
    ("slab_automove_window=2", "slab_automove_window must be > 2"),
    ("tail_repair_time=9", "Cannot set tail_repair_time to less than 10 seconds"),
    ("hash_algorithm=md5", "Unknown hash_algorithm option (jenkins, murmur3, xxh3)"),
    ("lru_crawler_sleep=1000001", "LRU crawler sleep must be between 0 and 1 second"),
    ("lru_crawler_tocrawl=x", "lru_crawler_tocrawl takes a numeric 32bit value"),
    ("hot_lru_pct=80", "hot_lru_pct must be > 1 and < 80"),
    ("warm_lru_pct=0", "warm_lru_pct must be > 1 and < 80"),
    ("hot_max_factor=0", "hot_max_factor must be > 0"),
    ("temporary_ttl", "Missing temporary_ttl argument"),
    ("read_buf_mem_limit=abc", "could not parse argument to read_buf_mem_limit"),
    ("ssl_min_version=4", "Invalid ssl_min_version. Use help to see valid options."),
    ("ext_threads=abc", "could not parse argument to ext_threads"),
    ("ext_max_frag=x", "could not parse argument to ext_max_frag"),
    ("ext_path", "missing argument to ext_path, ie: ext_path=/d/file:5G"),
    ("ext_path=/tmp/e:64m,ext_page_size=4", "Must specify ext_page_size before any ext_path arguments"),
    ("ext_path=/tmp/e", "must supply size to ext_path, ie: ext_path=/f/e:64m (M|G|T|P supported)"),
])
def test_a_suboption_value_memcached_refuses_is_refused_with_its_message_and_1(suboption, message, capsys):
    with pytest.raises(SystemExit) as e:
        options.parse_args(["-o", suboption])
    assert e.value.code == options.FAILURE
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["-o", "slab_sizes=100-200-1048576"], "slab size 1048576 is out of valid range"),
    (["-o", "slab_sizes=100-100"], "slab size 100 cannot be lower than or equal to a previous class size"),
    (["-o", "slab_sizes=100-104"], "slab size 104 must be at least 8 bytes larger than previous class"),
    (["-o", "worker_logbuf_size=16"], "slab size 16 is out of valid range"),  # memcached's fall-through
    (["-o", "hot_lru_pct=50,warm_lru_pct=40"], "hot_lru_pct + warm_lru_pct cannot be more than 80% combined"),
    (["-o", "no_lru_maintainer,temporary_ttl=10"], "temporary_ttl requires lru_maintainer to be enabled"),
])
def test_a_suboption_combination_memcached_refuses_after_parsing_exits_64(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        options.parse_args(argv)
    assert e.value.code == options.EX_USAGE
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("suboption", [
    "hashpower=16", "slab_automove", "slab_automove=2", "hash_algorithm=xxh3", "lru_crawler_tocrawl=10 x",
    "slab_sizes=100-200-300", "worker_logbuf_size=64", "temporary_ttl=10", "drop_privileges",
    "no_drop_privileges", "no_chunked_items", "resp_obj_mem_limit", "inline_ascii_resp", "ssl_min_version=3",
    "ext_page_size=4", "slab_automove_freeratio=0.1",
])
def test_a_suboption_value_memcached_takes_is_taken(suboption):
    assert options.parse_args(["-o", suboption]).not_applicable == ["-o " + suboption]


@pytest.mark.parametrize("suboption", ["inline_ascii_response", "lru_segmented", "no_lru_segmented"])
def test_a_suboption_memcached_1_6_18_lacks_is_illegal(suboption, capsys):
    with pytest.raises(SystemExit) as e:
        options.parse_args(["-o", suboption])
    assert e.value.code == options.FAILURE
    assert "Illegal suboption" in capsys.readouterr().err


def test_l_given_twice_is_memcached_s_joined_list():
    args = options.parse_args(["-l", "127.0.0.1", "-l", "127.0.0.2", "-l", "127.0.0.2"])
    assert args.listen == args.inter == "127.0.0.1,127.0.0.2"  # one already in it is left out (strstr)


def test_words_that_are_no_option_are_ignored_as_memcached_s_getopt_passes_over_them():
    args = options.parse_args(["extra", "-p", "11311", "more"])
    assert (args.port, args.ignored) == (11311, ["extra", "more"])
