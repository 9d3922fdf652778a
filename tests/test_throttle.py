"""store/throttle.py: a fault that repeats with every command is logged at
once, then at most once per interval with the number held back."""

import logging

from store.throttle import Throttle

log = logging.getLogger("memcached-lite.test-throttle")


def throttle():
    now = [100.0]
    return Throttle(interval=60.0, clock=lambda: now[0]), now


def lines(caplog):
    return [r.getMessage() for r in caplog.records if r.name == log.name]


def test_the_first_fault_of_a_kind_is_logged_at_once(caplog):
    t, _ = throttle()
    assert t.log("write", log, logging.ERROR, "write failed: %s", "EROFS")
    assert lines(caplog) == ["write failed: EROFS"]


def test_the_same_kind_within_the_interval_is_held_back(caplog):
    t, now = throttle()
    t.log("write", log, logging.ERROR, "write failed")
    now[0] += 59.0
    assert not t.log("write", log, logging.ERROR, "write failed")
    assert len(lines(caplog)) == 1


def test_after_the_interval_the_next_line_says_how_many_were_held_back(caplog):
    t, now = throttle()
    for _ in range(5):
        t.log("write", log, logging.ERROR, "write failed")
    now[0] += 60.0
    assert t.log("write", log, logging.ERROR, "write failed")
    assert lines(caplog)[-1] == "write failed (and 4 more like it in the last 60 s)"


def test_kinds_are_throttled_each_on_its_own(caplog):
    t, _ = throttle()
    t.log(("write", 30), log, logging.ERROR, "write failed")
    t.log(("read", 5), log, logging.ERROR, "read failed")
    assert lines(caplog) == ["write failed", "read failed"]
