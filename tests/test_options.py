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
    assert e.value.code == 2
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
