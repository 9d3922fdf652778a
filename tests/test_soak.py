"""tools/soak.py: its model catches what a server must never do, and a
20-second slice of the soak (kills and restarts under load) passes."""

import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
import soak  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def a_worker():
    return soak.Worker(0, server=None, seed=1, stop=None, report=print, io_timeout=1.0)


def test_a_read_of_the_acknowledged_value_passes():
    worker = a_worker()
    key = worker.keys[0]
    worker.model[key].acked = ((1, 10),)
    worker._check_read(key, soak.make_value(key, ((1, 10),)))
    assert worker.reads_checked == 1


def test_a_lost_acknowledged_write_is_a_violation():
    worker = a_worker()
    key = worker.keys[0]
    worker.model[key].acked = ((1, 10),)
    with pytest.raises(soak.Violation):
        worker._check_read(key, soak.ABSENT)


def test_an_older_value_is_a_violation():
    worker = a_worker()
    key = worker.keys[0]
    worker.model[key].acked = ((2, 10),)
    with pytest.raises(soak.Violation):
        worker._check_read(key, soak.make_value(key, ((1, 10),)))


def test_a_write_whose_reply_never_came_may_or_may_not_have_happened():
    worker = a_worker()
    key = worker.keys[0]
    worker.model[key].acked = ((1, 10),)
    worker.model[key].maybe = [((2, 10),)]
    worker._check_read(key, soak.make_value(key, ((2, 10),)))
    assert worker.model[key].acked == ((2, 10),) and worker.model[key].known


def test_the_read_that_settles_an_unknown_write_keeps_the_older_value():
    worker = a_worker()
    key = worker.keys[0]
    worker.model[key].acked = ((1, 10),)
    worker.model[key].maybe = [((2, 10),)]
    worker._check_read(key, soak.make_value(key, ((1, 10),)))
    assert worker.model[key].acked == ((1, 10),) and worker.model[key].known


def test_a_value_says_whose_write_it_was():
    value = soak.make_value(b"k", ((7, 20), (8, 5)))
    assert len(value) == 25 and value.startswith(b"k|7|") and value[20:].startswith(b"k|8|")


@pytest.mark.timeout(120)
def test_a_twenty_second_slice_survives_its_kills():
    run = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "soak.py"), "--minutes", "0.33", "--seed", "17",
         "--connections", "6", "--kill-every", "3,6"],
        capture_output=True, text=True, timeout=110,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "violations: 0" in run.stdout
    kills = int(next(line for line in run.stdout.splitlines() if line.strip().startswith("kills:")).split(":")[1])
    assert kills >= 2
