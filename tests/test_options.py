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


def test_a_udp_port_is_refused_with_a_clear_message(capsys):
    with pytest.raises(SystemExit) as e:
        options.parse_args(["-U", "11211"])
    assert e.value.code == options.EX_USAGE
    assert "serves no UDP" in capsys.readouterr().err


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
    assert "BSD" in capsys.readouterr().out


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
