"""Power loss under the store: a store over store/faultfs.FaultFS is written,
the power is cut (FaultFS.crash(seed)), and a new store opened on what the
disk held must keep the promise of its --fsync level (docs/POWER_LOSS.md).
Seeds are fixed; each test tries every seed in its range."""

import pytest

from store import ALWAYS, Mode, Store
from store.faultfs import REORDERED, FaultFS

DATA = "/data"
SEEDS = range(20)
NOW = 1_000_000.0


def clock():
    return NOW


def open_store(fs, level=ALWAYS, method="auto"):
    store = Store(DATA, fsync=level, fsync_method=method, fs=fs, clock=clock)
    while store.tick():  # the start-up walk
        pass
    return store


def acknowledged_set(store, key, value):
    """A set as a handler makes it under `always`: the write, then the
    batch's commit; the reply (acknowledgement) only if the commit worked."""
    assert store.store(Mode.SET, key, 0, 0, value).name == "STORED"
    batch = store.commit()
    assert batch is not None and batch.error is None


def served(store, keys):
    out = {}
    for key in keys:
        item = store.get(key, bump=False)
        if item is not None:
            out[key] = item.value
    return out


DATA_DIR_ENTRY_NOT_SYNCED = pytest.mark.xfail(
    strict=True,
    reason="finding: DataDir makes the data dir (makedirs) but never fsyncs its parent, so "
    "under --fsync-method fsync the dir's own entry is never durable and a power loss may "
    "take the whole dir (syncfs covers it; ext4's journal commit would too, in practice)",
)


@pytest.mark.parametrize("metadata", ["ordered", REORDERED])
@pytest.mark.parametrize("method", ["syncfs", pytest.param("fsync", marks=DATA_DIR_ENTRY_NOT_SYNCED)])
def test_always_keeps_every_acknowledged_set_at_a_power_loss(method, metadata):
    fs = FaultFS(metadata=metadata)
    store = open_store(fs, method=method)
    acked = {}
    for i in range(6):
        key, value = b"k%d" % (i % 3), b"v%d-" % i * (50 + 200 * i)  # overwrites: the spares recycle
        acknowledged_set(store, key, value)
        acked[key] = value
    for seed in SEEDS:
        crashed = open_store(fs.crash(seed), method=method)
        assert served(crashed, acked) == acked, f"seed {seed}"
        crashed.close()



def acknowledged_delete(store, key):
    store.delete(key)
    batch = store.commit()
    assert batch is not None and batch.error is None


def history():
    """Sets, overwrites growing and shrinking across sectors, deletes, and a
    key set again after its delete: (op, key, value)."""
    steps = []
    for i in range(12):
        key = b"k%d" % (i % 4)
        if i % 5 == 4:
            steps.append(("delete", key, None))
        else:
            steps.append(("set", key, bytes([97 + i]) * (10 + (i * 397) % 1500)))
    return steps


KEYS = sorted({key for _, key, _ in history()})
# the calls before which the power is cut, inside a commit as well as after it
CUT_BEFORE = ("replace", "rename", "exchange", "link", "unlink", "mkdir", "fsync", "fdatasync", "syncfs")


def data_dir_made_durable(metadata):
    # the data dir exists and its entry is on disk, as an operator makes it
    fs = FaultFS(metadata=metadata)
    fs.makedirs(DATA)
    fs.sync()
    return fs


class Cuts:
    """Power cuts taken while a history runs: before each of CUT_BEFORE's
    calls and after each acknowledgement, the crash state (one per seed)
    with what was acknowledged then and the change in flight."""

    def __init__(self, fs, seeds_per_cut=2):
        self.fs = fs
        self.seeds = seeds_per_cut
        self.acked = {}
        self.in_flight = None  # (key, value or None for a delete)
        self.taken = []  # (crash state, acknowledged, in flight, where)
        self._next_seed = 0
        for name in CUT_BEFORE:
            real = getattr(fs, name)
            setattr(fs, name, self._cutting(name, real))

    def _cutting(self, name, real):
        def call(*args, **kw):
            self.cut(f"before {name}{args[:2]}")
            return real(*args, **kw)

        return call

    def cut(self, where):
        for _ in range(self.seeds):
            seed, self._next_seed = self._next_seed, self._next_seed + 1
            self.taken.append((self.fs.crash(seed), dict(self.acked), self.in_flight, f"{where}, seed {seed}"))

    def run(self, store, steps):
        for op, key, value in steps:
            self.in_flight = (key, value)
            if op == "set":
                acknowledged_set(store, key, value)
                self.acked[key] = value
            else:
                acknowledged_delete(store, key)
                self.acked.pop(key, None)
            self.in_flight = None
            self.cut(f"after {op} {key!r}")


def allowed(acked, in_flight, key):
    """The values `key` may have after a cut under `always` (None: missing)."""
    values = {acked.get(key)}
    if in_flight is not None and in_flight[0] == key:
        values.add(in_flight[1])
    return values


def violations(cuts, method):
    found = []
    for state, acked, in_flight, where in cuts.taken:
        crashed = open_store(state, method=method)
        got = served(crashed, KEYS)
        for key in KEYS:
            if got.get(key) not in allowed(acked, in_flight, key):
                found.append(f"{where}: {key!r} is {got.get(key)!r:.30}")
        crashed.close()
    return found


@pytest.mark.parametrize("metadata", ["ordered", REORDERED])
@pytest.mark.parametrize("method", ["syncfs", "fsync"])
def test_always_keeps_exactly_what_was_acknowledged_at_every_cut(method, metadata):
    fs = data_dir_made_durable(metadata)
    store = open_store(fs, method=method)
    cuts = Cuts(fs)
    cuts.run(store, history())
    assert len(cuts.taken) > 100
    assert violations(cuts, method) == []


@pytest.mark.parametrize("method", ["syncfs", "fsync"])
def test_a_store_that_renames_before_its_data_is_durable_is_caught(method):
    # the model must see the bug these tests are for: here the commit's first
    # barrier (the temp files' data) is skipped
    fs = data_dir_made_durable("ordered")
    store = open_store(fs, method=method)
    barrier = store.durability.barrier
    real_sync, calls = barrier.sync, []

    def first_skipped(files, dirs):
        calls.append(files)
        if len(calls) % 2 == 0:  # a commit's barriers: data, then folders
            real_sync(files, dirs)

    barrier.sync = first_skipped
    cuts = Cuts(fs)
    cuts.run(store, history())
    assert violations(cuts, method) != []


def test_the_crash_states_of_a_history_are_many():
    fs = data_dir_made_durable(REORDERED)
    store = open_store(fs, method="fsync")
    for op, key, value in history()[:6]:
        assert store.store(Mode.SET, key, 0, 0, value or b"x" * 700).name == "STORED"
    store.commit()
    store.store(Mode.SET, b"k0", 0, 0, b"z" * 1400)  # in flight at the cut
    states = {tuple(sorted(fs.crash(seed).files().items())) for seed in range(50)}
    assert len(states) > 10
