"""The command line (options.py): parsed in process, no server started."""

import options


def test_the_default_listens_on_loopback_only():
    assert options.parse_args([]).listen == "127.0.0.1"
