"""tools/powerloss.py, the crash-state campaign, in a small slice: seeded
random histories through the protocol over FaultFS, a few hundred power cuts
per level, every crash state checked against the level's promise. Seeds are
fixed, so each run is the same run; the long campaign is run by hand
(docs/POWER_LOSS.md)."""

import sys
from pathlib import Path

import pytest

from store import ALWAYS, EVERYSEC, NO
from store import durability as durability_mod
from store.faultfs import ORDERED, REORDERED
from store.inplace import KeptFiles

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
import powerloss  # noqa: E402

SEED = 1


@pytest.mark.parametrize("metadata", [ORDERED, REORDERED])
def test_always_serves_exactly_what_was_acknowledged_in_every_crash_state(metadata):
    summary = powerloss.campaign(ALWAYS, 150, SEED, metadata)
    assert summary.states == 150 and summary.adopted > 0 and summary.restarts > 0
    assert summary.violations == []


@pytest.mark.parametrize("metadata", [ORDERED, REORDERED])
def test_no_serves_only_states_each_key_really_had(metadata):
    summary = powerloss.campaign(NO, 150, SEED, metadata)
    assert summary.states == 150
    assert summary.violations == []


@pytest.mark.parametrize("metadata", [ORDERED, REORDERED])
def test_everysec_keeps_each_key_at_its_last_barrier_or_newer(metadata):
    summary = powerloss.campaign(EVERYSEC, 150, SEED, metadata)
    assert summary.states == 150
    assert summary.violations == []


@pytest.fixture
def folders_barrier_skipped(monkeypatch):
    """A broken store: under `always` a commit's replies are released before
    its renames are durable (its second barrier, the folders', is skipped)."""
    real_sync = durability_mod.Durability.sync

    def sync(self, files=(), dirs=()):
        if files:  # a commit's barriers: the temp files' data, then the folders
            real_sync(self, files, dirs)

    monkeypatch.setattr(durability_mod.Durability, "sync", sync)


def test_the_campaign_catches_a_store_that_acknowledges_before_its_renames_are_durable(folders_barrier_skipped):
    summary = powerloss.campaign(ALWAYS, 60, SEED)
    assert any("is missing" in v or "is an older state" in v for v in summary.violations)


@pytest.fixture
def current_slot_overwritten(monkeypatch):
    """A broken store: an overwrite in place goes into the slot holding the
    key's current record (durable or covered by the barrier in flight)."""
    monkeypatch.setattr(KeptFiles, "target", lambda self, kept: kept.cur)


def test_the_campaign_catches_a_store_that_writes_over_the_current_slot_in_place(current_slot_overwritten):
    summary = powerloss.campaign(EVERYSEC, 600, SEED)
    assert any("is missing" in v or "older" in v for v in summary.violations)


@pytest.fixture
def delayed_flush_forgotten(monkeypatch):
    """A broken store: a restarted server forgets a pending flush_all <delay>."""
    from store import state as state_mod

    real_init = state_mod.PersistentState.__init__

    def init(self, datadir):
        real_init(self, datadir)
        self.pending_flush = None

    monkeypatch.setattr(state_mod.PersistentState, "__init__", init)


def test_the_campaign_catches_a_store_that_forgets_a_delayed_flush(delayed_flush_forgotten):
    found = powerloss.campaign(ALWAYS, 150, SEED).violations
    assert any("flush_all due at" in v and "is lost" in v for v in found)


@pytest.fixture
def start_up_miscounts_bytes(monkeypatch):
    """A broken store: start-up's walk counts each record a byte too big."""
    from store import files as files_mod

    real = files_mod.DataDir.bucket_files
    monkeypatch.setattr(files_mod.DataDir, "bucket_files",
                        lambda self, bucket: [(path, size + 1) for path, size in real(self, bucket)])


def test_the_campaign_catches_a_store_whose_bytes_disagree_with_what_it_serves(start_up_miscounts_bytes):
    found = powerloss.campaign(ALWAYS, 60, SEED).violations
    assert any(": bytes " in v for v in found)


def test_a_seed_gives_the_same_campaign_every_time():
    one, two = (powerloss.campaign(EVERYSEC, 60, 7, REORDERED) for _ in range(2))
    assert (one.histories, one.cuts, one.violations) == (two.histories, two.cuts, two.violations)


def test_a_violation_names_the_history_that_reproduces_it(folders_barrier_skipped):
    found = powerloss.campaign(ALWAYS, 60, SEED).violations
    history = int(found[-1].split(",")[0].removeprefix("history "))
    again = powerloss.campaign(ALWAYS, 60, SEED, history=history)
    assert found[-1] in again.violations


def test_the_command_exits_zero_when_every_crash_state_keeps_the_promise(capsys):
    assert powerloss.main(["--level", "always", "--states", "40", "--seed", "3"]) == 0
    assert capsys.readouterr().out.startswith("always   (ordered): 2 histories, 40 cuts, 40 crash states")


def test_the_command_exits_non_zero_on_a_violation_and_prints_its_history(capsys, folders_barrier_skipped):
    assert powerloss.main(["--level", "always", "--states", "60", "--seed", str(SEED)]) == 1
    out = capsys.readouterr().out
    assert "history " in out and "crash seed " in out and "--level always --metadata ordered" in out
