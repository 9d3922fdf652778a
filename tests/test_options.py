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
