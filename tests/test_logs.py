"""logs.py: the log's set-up from the command line, in process (no server):
the level of the `memcached-lite` loggers at each -v, where lines go
(stderr or --log-file, reopened by SIGHUP's work), and what a line looks like
(text, or --log-format json). The root logger's handlers are put back after
each test.
"""

import json
import logging
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import handlers  # noqa: E402
import logs  # noqa: E402
import options  # noqa: E402
from store import Store  # noqa: E402

log = logging.getLogger("memcached-lite")


@pytest.fixture
def configure():
    """configure(argv): logs.configure_logging of that command line; the
    root's handlers and the server logger's level restored afterwards."""
    root = logging.getLogger()
    saved = list(root.handlers), log.level
    made = []

    def configure_(argv):
        args = options.parse_args(argv)
        handler = logs.configure_logging(args)
        made.append(handler)
        return args, handler

    yield configure_
    for h in made:
        root.removeHandler(h)
        h.close()
    for h in saved[0]:
        root.addHandler(h)
    log.setLevel(saved[1])


@pytest.mark.parametrize("argv, level", [([], logging.INFO), (["-v"], logging.DEBUG), (["-vv"], logging.DEBUG)])
def test_the_server_loggers_log_at_debug_from_v_on(configure, argv, level):
    configure(argv)
    assert log.level == level
    assert logging.getLogger("memcached-lite.protocol").getEffectiveLevel() == level


@pytest.mark.parametrize("argv, verbosity", [([], 0), (["-v"], 1), (["-vv"], 2), (["-vvv"], 3)])
def test_each_v_is_one_more_level_of_verbosity_for_the_protocol(argv, verbosity):
    assert options.make_settings(options.parse_args(argv)).verbosity == verbosity


@pytest.mark.parametrize("argv, logged", [(["-v"], False), (["-vv"], True)])
def test_vv_adds_each_command_line_to_the_log(configure, tmp_path, argv, logged):
    args, handler = configure(argv + ["--log-file", str(tmp_path / "log")])
    store = Store(str(tmp_path / "data"))
    try:
        session = handlers.Session(handlers.Server(store, options.make_settings(args)))
        session.feed(b"version\r\n")
    finally:
        store.close()
    handler.flush()
    assert ("<b'version'" in (tmp_path / "log").read_text()) is logged


def test_the_log_goes_to_stderr_as_one_handler_on_the_root(configure):
    _, handler = configure([])
    assert logging.getLogger().handlers == [handler]
    assert isinstance(handler, logging.StreamHandler) and handler.stream is sys.stderr


def test_a_text_line_has_a_timestamp_the_level_and_the_message(configure, tmp_path):
    path = tmp_path / "log"
    _, handler = configure(["--log-file", str(path)])
    log.info("hello %s", "there")
    handler.flush()
    (line,) = path.read_text().splitlines()
    assert line.endswith(" INFO hello there")
    assert line[:4].isdigit()  # the asctime's year


def test_a_json_line_is_one_object_with_the_peer_when_it_is_about_one(configure, tmp_path):
    path = tmp_path / "log"
    _, handler = configure(["--log-file", str(path), "--log-format", "json", "-v"])
    log.debug("connection from %s", "1.2.3.4:5", extra={"peer": "1.2.3.4:5"})
    log.info("no peer")
    handler.flush()
    first, second = map(json.loads, path.read_text().splitlines())
    assert {k: first[k] for k in ("level", "logger", "message", "peer")} == {
        "level": "debug", "logger": "memcached-lite", "message": "connection from 1.2.3.4:5", "peer": "1.2.3.4:5",
    }
    assert first["time"].endswith("+00:00")
    assert "peer" not in second


def test_a_json_line_carries_the_exception(configure, tmp_path):
    path = tmp_path / "log"
    _, handler = configure(["--log-file", str(path), "--log-format", "json"])
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed")
    handler.flush()
    (entry,) = map(json.loads, path.read_text().splitlines())
    assert "ValueError: boom" in entry["exception"]


def test_reopening_the_log_file_writes_to_a_new_file_after_a_rotation(configure, tmp_path):
    path = tmp_path / "log"
    _, handler = configure(["--log-file", str(path)])
    log.info("before")
    path.rename(tmp_path / "log.1")  # what logrotate does
    logs.reopen_log(handler)
    log.info("after")
    handler.flush()
    assert "before" in (tmp_path / "log.1").read_text()
    assert "after" in path.read_text() and "before" not in path.read_text()
    assert "SIGHUP: log file %s reopened" % path in path.read_text()


def test_reopening_without_a_log_file_says_so(configure, capsys):
    _, handler = configure([])
    logs.reopen_log(handler)
    assert capsys.readouterr().err.endswith(" INFO SIGHUP: no --log-file to reopen\n")
