"""store/clock.py: the running server's time is the wall time at start plus
the monotonic time since, so a step of the wall clock does not move it; a new
Clock (a restart) reads the wall clock again."""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from store import Clock  # noqa: E402

HOUR = 3600.0
START = 1_700_000_000.0


class FakeTime:
    """A settable time source: the wall clock or the monotonic one."""

    def __init__(self, now):
        self.now = now

    def __call__(self):
        return self.now


def clocks():
    wall, monotonic = FakeTime(START), FakeTime(500.0)
    return wall, monotonic, Clock(wall=wall, monotonic=monotonic)


def test_a_clock_starts_at_the_wall_time():
    _, _, clock = clocks()
    assert clock() == START and clock.started == START


def test_a_clock_advances_with_the_monotonic_clock():
    _, monotonic, clock = clocks()
    monotonic.now += 10
    assert clock() == START + 10


def test_a_clock_ignores_the_wall_clock_stepped_forward():
    wall, monotonic, clock = clocks()
    wall.now += HOUR
    monotonic.now += 1
    assert clock() == START + 1


def test_a_clock_ignores_the_wall_clock_stepped_back():
    wall, monotonic, clock = clocks()
    monotonic.now += 5
    wall.now -= HOUR
    assert clock() == START + 5


def test_a_new_clock_reads_the_wall_clock_again():
    # a restart after a real change of the wall clock sees the new time
    wall, monotonic, _ = clocks()
    wall.now -= HOUR
    assert Clock(wall=wall, monotonic=monotonic)() == START - HOUR


def test_the_default_clock_starts_at_time_time():
    before = time.time()
    clock = Clock()
    assert before <= clock.started <= time.time()
