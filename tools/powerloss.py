"""The crash-state campaign (issue 17): seeded random workloads run through the
real protocol, sans-I/O (handlers.Session objects on one handlers.Server over
one Store on store/faultfs.FaultFS), the power cut at random points, and the
promise of the --fsync level checked on a fresh store opened on every crash
state (docs/POWER_LOSS.md). Also the helpers tests/test_powerloss.py shares.

    python tools/powerloss.py --level always|everysec|no|all --states N --seed S
                              [--metadata ordered|reordered] [--auto-da-alloc]
                              [--history H]

prints one summary line per level (histories, cuts, crash states, violations)
and each violation with the seed of its history (`--history H` runs that one
alone, cut for cut the same); exits 1 on any violation.

A history is a run of loop iterations as reactor.py makes them: a few
sessions are fed commands (concurrent connections in one iteration), then the
server commits, the sessions release their held replies (under `always` a
reply released is the acknowledgement), sync_if_due runs (everysec's helper
barrier starts, or is seen to end), and the store's background walk or idle
work gets a small budget. The fake helper's barrier passes at seeded moments,
the clocks move, the server is sometimes restarted cleanly, and a crash state
is sometimes adopted: the power comes back, the server runs on it, and its
power is cut again later.

The oracle keeps, per key, every state the protocol gave it (value, flags,
exptime; read with Store.peek after each command), when each was
acknowledged, and which barrier covered it. After a cut, every key is read
through a session's get on the crash state, and must be:
    always    the last acknowledged state, or a later unacknowledged one;
    everysec  the state at the start of the last barrier that passed, or a later one;
    no        some state the key had (or absent), before an earlier power loss too;
at every level never older than an acknowledged flush_all, None if each
allowed state is dead by now (expired, flushed) is also allowed, the store
opens (no crash at start-up), tmp/ is empty, curr_items is the number of
keys served and bytes the size of their files, an acknowledged delayed
flush_all (and no flush_all sent since) is still pending or, its time come,
leaves nothing stored before it, and a new write's cas is above every cas handed out before.
"""

import argparse
import contextlib
import logging
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from handlers import Server, Session, Settings  # noqa: E402
from store import ALWAYS, EVERYSEC, LEVELS, Store  # noqa: E402
from store.faultfs import METADATA_MODES, ORDERED, FaultFS  # noqa: E402

DATA = "/data"
NOW = 1_000_000.0
# the calls before which the power may be cut, inside a commit as well as after it
CUT_BEFORE = ("replace", "rename", "exchange", "link", "unlink", "mkdir", "fsync", "fdatasync", "syncfs")
# ...and, in the campaign, inside a write into a spare too; the chance of a
# cut before each: most often before a barrier (where what is in flight is
# largest), less often before each step of a write
CUT_CHANCE = dict.fromkeys(("fsync", "fdatasync", "syncfs"), 0.2)
CUT_CHANCE.update(dict.fromkeys(("replace", "rename", "exchange", "link", "unlink", "mkdir"), 0.08))
CUT_CHANCE.update(dict.fromkeys(("open", "writev", "write", "ftruncate"), 0.03))


# -- what tests/test_powerloss.py shares -----------------------------------------


def clock():
    return NOW


def open_store(fs, level=ALWAYS, method="auto", clock=clock, opened=None, **options):
    """A store on fs as a restarted server opens it: its start-up walk done
    (opened(store) is called before it)."""
    store = Store(DATA, fsync=level, fsync_method=method, fs=fs, clock=clock, **options)
    if opened is not None:
        opened(store)
    while store.tick():  # the start-up walk
        pass
    return store


def data_dir_made_durable(metadata=ORDERED, **fs_options):
    """A FaultFS whose data dir exists and is on disk, as an operator makes it."""
    fs = FaultFS(metadata=metadata, **fs_options)
    fs.makedirs(DATA)
    fs.sync()
    return fs


def served(store, keys):
    """{key: value} of the keys the store serves."""
    out = {}
    for key in keys:
        item = store.get(key, bump=False)
        if item is not None:
            out[key] = item.value
    return out


def cut_before(fs, names, cut):
    """Call cut(where) before each call of fs's methods `names`."""
    for name in names:
        real = getattr(fs, name)

        def call(*args, _name=name, _real=real, **kw):
            cut(f"before {_name}{args[:2]}")
            return _real(*args, **kw)

        setattr(fs, name, call)


# -- the clocks ----------------------------------------------------------------


class VirtualTime:
    """The campaign's clocks, so a seed gives the same history every time: the
    wall clock (the store's, for expiry and flush_all) moves only when told,
    and time.monotonic (everysec's timer, the walk's budgets) by `step` at
    every read too, so a budget of a few ms covers a few buckets."""

    def __init__(self, wall=1_700_000_000.0, monotonic=10_000.0, step=1e-4):
        self.now = wall
        self.mono = monotonic
        self.step = step
        self._frozen = 0

    def wall(self):
        return self.now

    def monotonic(self):
        if not self._frozen:
            self.mono += self.step
        return self.mono

    def advance(self, seconds):
        self.now += seconds
        self.mono += seconds

    @contextlib.contextmanager
    def frozen(self):
        """Checks read the clocks without moving the history's."""
        self._frozen += 1
        try:
            yield
        finally:
            self._frozen -= 1

    @contextlib.contextmanager
    def installed(self):
        real = time.monotonic
        time.monotonic = self.monotonic
        try:
            yield self
        finally:
            time.monotonic = real


# -- the oracle ----------------------------------------------------------------


class Entry:
    """One state a key had: (value, flags, exptime) or None (absent), the
    step it began at, and the step it was acknowledged at (None: not yet)."""

    __slots__ = ("key", "state", "step", "acked", "cas", "stored")

    def __init__(self, key, state, step, acked=None, cas=0, stored=0.0):
        self.key = key
        self.state = state
        self.step = step
        self.acked = acked
        self.cas = cas
        self.stored = stored


class Flush:
    """One flush_all the history sent: its step, its due time (None: at
    once), whether its OK came back."""

    __slots__ = ("step", "due", "acked")

    def __init__(self, step, due):
        self.step = step
        self.due = due
        self.acked = False


class Oracle:
    """Per key, the states the protocol gave it, and what each level allows
    after a cut."""

    def __init__(self):
        self.step = 0
        self.keys = {}  # key -> [Entry]
        self.covered = 0  # everysec: the start step of the last barrier that passed
        self.barrier_began = None
        self.epochs = {}  # key -> the step of its state at the last acknowledged flush_all
        self.flushes = []  # every flush_all sent, in order (Flush)
        self.before = {}  # key -> its states before a crash state was adopted (for describe)
        self.max_cas = 0

    def key(self, key):
        if key not in self.keys:
            self.keys[key] = [Entry(key, None, 0, acked=0)]
        return self.keys[key]

    def record(self, key, item, force=False, acked=False):
        """The key's state now (an Item or None); a new Entry if it changed."""
        entries = self.key(key)
        state = None if item is None else (item.value, item.flags, item.exptime)
        if not force and entries[-1].state == state:
            return None
        self.step += 1
        entry = Entry(key, state, self.step, self.step if acked else None)
        if item is not None:
            entry.cas, entry.stored = item.cas, item.stored
            self.max_cas = max(self.max_cas, item.cas)
        entries.append(entry)
        return entry

    def acknowledge(self, entries):
        self.step += 1
        for entry in entries:
            entry.acked = self.step

    def everything_durable(self):
        """A clean stop: every state so far is acknowledged and on disk."""
        self.step += 1
        for entries in self.keys.values():
            for entry in entries:
                if entry.acked is None:
                    entry.acked = self.step
        self.covered = self.step

    def reset(self, items):
        """A crash state adopted: what it served is each key's one state."""
        self.step += 1
        for key, entries in self.keys.items():
            self.before.setdefault(key, []).extend(entries)
        self.keys = {}
        for key, item in items.items():
            self.key(key)[0] = Entry(key, None, self.step, self.step)
            self.record(key, item, force=True, acked=True)
        self.covered = self.step
        self.barrier_began = None
        self.epochs = {}
        self.flushes = []

    def flushed(self, entries):
        """An acknowledged flush_all (at once): no key goes back before it."""
        for entry in entries:
            self.epochs[entry.key] = entry.step

    def flush_sent(self, due):
        """A flush_all run by the store (due: its time, None: at once)."""
        flush = Flush(self.step, due)
        self.flushes.append(flush)
        return flush

    def fired_delayed_flush(self, now):
        """The due time of the last flush_all sent, if it was a delayed one,
        acknowledged (the store writes its rule durably before the OK), and
        its time has come: every item stored before it is dead, at every
        level. None otherwise (a later flush_all, even unacknowledged, may
        have replaced it: nothing to check)."""
        if not self.flushes:
            return None
        last = self.flushes[-1]
        if last.acked and last.due is not None and last.due <= now:
            return last.due
        return None

    def pending_delayed_flush(self, now):
        """The due time of the last flush_all sent if it was a delayed one,
        acknowledged, whose time has not come: a crash state must still
        hold it pending. None otherwise."""
        if not self.flushes:
            return None
        last = self.flushes[-1]
        if last.acked and last.due is not None and last.due > now:
            return last.due
        return None

    def allowed(self, key, level):
        """The Entries the key may be at after a cut now."""
        entries = self.key(key)
        epoch = self.epochs.get(key, 0)
        first = max((i for i, e in enumerate(entries) if e.step <= epoch), default=0)
        if level == ALWAYS:
            since = max(i for i, e in enumerate(entries) if e.acked is not None)
        elif level == EVERYSEC:
            since = max((i for i, e in enumerate(entries) if e.step <= self.covered), default=0)
        else:
            # `no`: any state the key had, those before a power loss too,
            # unless a flush_all was acknowledged since
            before = [] if key in self.epochs else self.before.get(key, [])
            return before + entries[first:]
        return entries[max(first, since) :]


# -- one history ---------------------------------------------------------------

SESSIONS = 3
KEYS = 10  # the keys overwritten again and again (the spares recycle)
NEW_KEYS = 8  # keys a history may add later
STORAGE = (b"set", b"add", b"replace", b"append", b"prepend")
BIG = 64 << 10  # spares.MAX_RECORD: a record above it is never recycled (held, then freed)
PROBE = b"probe:cas"


class History:
    """One seeded history of one level, its cuts and their checks."""

    def __init__(self, seed, level, metadata=ORDERED, auto_da_alloc=False, states=25, iterations=60,
                 method="auto"):
        self.seed = seed
        self.level = level
        self.method = method  # --fsync-method: syncfs (auto) or fsync of each path written
        self.rng = random.Random(seed)
        self.budget = states
        self.iterations = iterations
        self.time = VirtualTime()
        self.fs_options = dict(metadata=metadata, auto_da_alloc=auto_da_alloc)
        self.oracle = Oracle()
        self.serial = 0
        self.cuts = 0
        self.states = 0
        self.broken = 0  # crash states with a violation
        self.violations = []
        self.restarts = 0
        self.adopted = 0
        self.store = None
        self.log = []  # what happened, for --trace
        self.pending = []  # crash states cut, to check once the change in flight is known

    # -- running -------------------------------------------------------------

    def run(self):
        with self.time.installed():
            fs = data_dir_made_durable(**self.fs_options, clock=self.time.wall)
            self._start(self._open(fs), fs)
            for _ in range(self.iterations):
                if self.states >= self.budget:
                    break
                self._iteration()
            self._settle()
        return self

    def _open(self, fs, opened=None):
        return open_store(
            fs,
            opened=opened,
            level=self.level,
            method=self.method,
            clock=self.time.wall,
            background_sync=self.level == EVERYSEC,
            fresh_spares=4,
        )

    def _start(self, store, fs, hook=True):
        """Serve from `store` (on `fs`, its cuts hooked unless they are): new sessions."""
        self.store, self.fs = store, fs
        self.server = Server(store, Settings(), clock=self.time.wall)
        self.sessions = [Session(self.server) for _ in range(SESSIONS)]
        if hook:
            for name, chance in CUT_CHANCE.items():
                cut_before(fs, (name,), lambda where, chance=chance: self._maybe_cut(where, chance))
        if self._barrier_began not in fs.background_hooks:  # (a clean restart reuses the fs)
            fs.background_hooks.append(self._barrier_began)

    def _barrier_began(self):
        self.oracle.barrier_began = self.oracle.step
        self.log.append(f"step {self.oracle.step}: helper barrier starts")

    def _iteration(self):
        rng, oracle, server = self.rng, self.oracle, self.server
        # concurrent connections in one loop iteration: each fed a few
        # commands, the feeds interleaved
        fed = []
        for session in rng.sample(self.sessions, rng.randint(1, SESSIONS)):
            fed += [session] * rng.randint(1, 3)
        rng.shuffle(fed)
        owed = {session: [] for session in self.sessions}  # (entries, flush) a held reply acknowledges
        for session in fed:
            line, keys, noreply, flush = self._command()
            reply = session.feed(line)
            if flush:
                flush = oracle.flush_sent(self.store.state.pending_flush if flush == "later" else None)
            self.log.append(f"step {oracle.step} s{self.sessions.index(session)}: {line[:50]!r} -> {reply[:40]!r}")
            entries = [e for e in (self._observe(k, force=bool(flush)) for k in keys) if e is not None]
            self._settle()
            self._check_reply(reply)
            if noreply:
                continue
            if session.holding:
                owed[session].append((entries, flush))
            elif reply:
                self._acknowledged(entries, flush)
        server.commit()
        for session in self.sessions:
            if session.holding:
                self._check_reply(session.release())
                for entries, flush in owed[session]:
                    self._acknowledged(entries, flush)
        self._settle()
        server.sync_if_due()
        if rng.random() < 0.4 and self.fs.finish_background() and oracle.barrier_began is not None:
            oracle.covered = oracle.barrier_began
            self.log.append(f"step {oracle.step}: the barrier begun at step {oracle.covered} passes")
        if server.has_background_work():
            server.background(0.003)
        elif server.has_idle_work():
            server.idle_background(0.002)
        self.time.advance(rng.choice((0.0, 0.05, 0.3, 0.6, 1.2)))
        for key in list(oracle.keys):  # what time did: expiry, a delayed flush
            entry = self._observe(key)
            if entry is not None:
                entry.acked = entry.step
                self.log.append(f"step {entry.step}: time made {key!r} {'missing' if entry.state is None else entry.state[0][:20]}")
        self._settle()
        if rng.random() < 0.3:
            self._cut("after the iteration", adopt=rng.random() < 0.25)
        if rng.random() < 0.03:
            self._restart()

    def _acknowledged(self, entries, flush):
        self.oracle.acknowledge(entries)
        if flush:
            flush.acked = True
            if flush.due is None:
                self.oracle.flushed(entries)

    def _restart(self):
        """A clean stop and start, no power loss: start-up restore on the way."""
        self.store.close()
        self.oracle.everything_durable()
        self.log.append(f"step {self.oracle.step}: clean restart")
        self.restarts += 1
        for session in self.sessions:
            session.close()
        self._start(self._open(self.fs), self.fs, hook=False)
        self._settle()

    def _check_reply(self, reply):
        if b"SERVER_ERROR" in reply:
            self.violations.append(f"history {self.seed}: a reply failed: {reply[:120]!r}")

    def _observe(self, key, force=False):
        store = self.store
        used = store.durability.used
        try:
            item = store.peek(key)
        finally:
            store.durability.used = used  # only the commands' own reads defer replies
        return self.oracle.record(key, item, force=force)

    # -- the commands ----------------------------------------------------------

    def _value(self, key, numeric=False):
        self.serial += 1
        if numeric:
            return b"%d" % (self.serial * 1000)
        r = self.rng.random()
        size = (
            self.rng.randint(5, 400) if r < 0.5
            else self.rng.randint(400, 4000) if r < 0.9
            else self.rng.randint(4000, 20000) if r < 0.97
            else self.rng.randint(BIG + 1, BIG + 30000)
        )
        head = b"%s:%d:" % (key, self.serial)
        return (head + bytes([97 + self.serial % 26]) * size)[: max(size, len(head))]

    def _key(self):
        used = len(self.oracle.keys)
        if used < KEYS or (used < KEYS + NEW_KEYS and self.rng.random() < 0.05):
            return b"k%d" % used  # a new key
        return b"k%d" % self.rng.randrange(used)

    def _command(self):
        """(line, keys it may change, noreply, flush: None, "now" or "later")."""
        rng = self.rng
        key = self._key()
        noreply = rng.random() < 0.12
        nr = b" noreply" if noreply else b""
        kind = rng.choices(
            ("set", "storage", "number", "delete", "incr", "touch", "flush", "ms", "md", "get"),
            (30, 14, 5, 10, 6, 5, 2, 6, 3, 6),
        )[0]
        if kind in ("set", "storage", "number"):
            verb = b"set" if kind != "storage" else rng.choice(STORAGE)
            data = self._value(key, numeric=kind == "number")
            if verb in (b"append", b"prepend"):
                data = data[: rng.choice((3, 40, 700))]
            exptime = rng.choice((0,) * 8 + (2, 5))
            flags = rng.choice((0, 0, 1, 77))
            return b"%s %s %d %d %d%s\r\n%s\r\n" % (verb, key, flags, exptime, len(data), nr, data), [key], noreply, None
        if kind == "delete":
            return b"delete %s%s\r\n" % (key, nr), [key], noreply, None
        if kind == "incr":
            verb = rng.choice((b"incr", b"decr"))
            return b"%s %s %d%s\r\n" % (verb, key, rng.randint(1, 50), nr), [key], noreply, None
        if kind == "touch":
            return b"touch %s %d%s\r\n" % (key, rng.choice((0, 3, 3600)), nr), [key], noreply, None
        if kind == "flush":
            delay = rng.choice((0, 0, 1, 3))
            line = b"flush_all%s%s\r\n" % (b" %d" % delay if delay else b"", nr)
            return line, list(self.oracle.keys), noreply, "later" if delay else "now"
        if kind == "ms":
            data = self._value(key)
            q = rng.random() < 0.12
            return b"ms %s %d F5 T0%s\r\n%s\r\n" % (key, len(data), b" q" if q else b"", data), [key], q, None
        if kind == "md":
            q = rng.random() < 0.12
            return b"md %s%s\r\n" % (key, b" q" if q else b""), [key], q, None
        return b"get %s\r\n" % key, [], False, None

    # -- cuts and their checks -------------------------------------------------

    def _maybe_cut(self, where, chance):
        if self.states < self.budget and self.rng.random() < chance:
            self._cut(where)

    def _cut(self, where, adopt=False):
        """The power goes now: one crash state, checked once the change in
        flight is known (_settle); with `adopt` (between iterations only),
        served from afterwards."""
        if self.states >= self.budget:
            return
        self.cuts += 1
        self.states += 1
        seed = self.rng.randrange(1 << 30)
        label = f"history {self.seed}, cut {self.cuts} ({where}), crash seed {seed}"
        self.log.append(f"step {self.oracle.step}: cut {self.cuts} ({where[:100]})")
        oracle = self.oracle
        allowed = {key: oracle.allowed(key, self.level) for key in oracle.keys}
        self.pending.append((self.fs.crash(seed), label, allowed, oracle.step, oracle.max_cas, adopt))
        if adopt:
            self._settle()

    def _settle(self):
        """Check the crash states cut so far: a key may also be at any state
        it got since its cut (the outcome of the change in flight then)."""
        pending, self.pending = self.pending, []
        for state, label, allowed, step, max_cas, adopt in pending:
            for key, entries in self.oracle.keys.items():
                allowed[key] = allowed.get(key, entries[:1]) + [e for e in entries if e.step > step]
            with self.time.frozen():
                crashed, items, leftovers = None, {}, []
                try:
                    # tmp/ as start-up leaves it, before the walk makes new spares
                    crashed = self._open(state, opened=lambda s: leftovers.extend(state.listdir(DATA + "/tmp")))
                except Exception as e:  # start-up must survive any crash state
                    found = [f"{label}: start-up failed: {e!r}"]
                else:
                    try:
                        found, items = self._check(crashed, leftovers, allowed, max_cas, label)
                    except Exception as e:
                        found = [f"{label}: the check failed: {e!r}"]
            self.violations += found
            self.broken += bool(found)
            if adopt and crashed is not None and not found:
                self.adopted += 1
                for session in self.sessions:
                    session.close()
                self.oracle.max_cas = max(self.oracle.max_cas, items.pop(PROBE))
                self.oracle.reset(items)
                self._start(crashed, state)
                self.log.append(f"step {self.oracle.step}: the crash state adopted")

    def _check(self, store, leftovers, allowed, max_cas, label):
        """The violations in one crash state (`store` opened on it, leaving
        `leftovers` in tmp/), and the items it served."""
        oracle = self.oracle
        found = []
        if leftovers:
            found.append(f"{label}: tmp/ not cleaned at start-up: {sorted(leftovers)[:5]}")
        session = Session(Server(store, Settings(), clock=self.time.wall))
        now = self.time.wall()
        # a delayed flush_all acknowledged and come: no item stored before it
        # may be served, whatever the crash state's own rule says
        fired = oracle.fired_delayed_flush(now)
        pending = oracle.pending_delayed_flush(now)
        if pending is not None and store.state.pending_flush != pending:
            found.append(f"{label}: the acknowledged flush_all due at {pending} is lost "
                         f"(pending: {store.state.pending_flush})")
        items = {}
        for key in sorted(oracle.keys):
            reply = session.feed(b"get %s\r\n" % key)
            if reply == b"END\r\n":
                got = items[key] = None
            elif reply.startswith(b"VALUE "):
                head, _, rest = reply.partition(b"\r\n")
                _, _, flags, size = head.split(b" ")
                item = items[key] = store.peek(key)
                got = (rest[: int(size)], int(flags), item.exptime)
            else:
                found.append(f"{label}: get {key!r} answered {reply[:60]!r}")
                continue
            values = {e.state for e in allowed[key]}
            if any(self._maybe_dead(store, e, now) for e in allowed[key]):
                values.add(None)
            if fired is not None:
                values = {e.state for e in allowed[key] if e.state is None or e.stored >= fired} | {None}
            if got not in values:
                found.append(f"{label}: {key!r} is {describe(got, key, oracle, allowed[key])}; may be {shown(values)}")
                self.log.append(f"  {key!r} had: " + ", ".join(
                    f"{e.step}{'a' if e.acked else ''}:{'-' if e.state is None else e.state[0][:12]}"
                    for e in oracle.keys[key]))
        live = sum(v is not None for v in items.values())
        # (an adopted state's probe may come back: its delete was not durable)
        live += session.feed(b"get %s\r\n" % PROBE) != b"END\r\n"
        if store.curr_items != live:
            found.append(f"{label}: curr_items {store.curr_items}, {live} keys served")
        # `bytes` is the size of the files of what is served (a record's, or
        # a two-slot file's)
        served_bytes = sum(store.peek(k).disk for k, v in items.items() if v is not None)
        probe = store.peek(PROBE)
        served_bytes += 0 if probe is None else probe.disk
        if store.bytes != served_bytes:
            found.append(f"{label}: bytes {store.bytes}, {served_bytes} in the records served")
        # the cas counter never goes back: a new write's is above all before
        session.feed(b"set %s 0 0 1\r\nx\r\n" % PROBE)
        store.commit()
        session.release()
        cas = store.peek(PROBE).cas
        if cas <= max_cas:
            found.append(f"{label}: a new write's cas {cas} is not above {max_cas}, handed out before the cut")
        items[PROBE] = cas  # (the history's if it is adopted)
        session.feed(b"delete %s\r\n" % PROBE)
        store.commit()
        session.release()
        session.close()
        return found, items

    @staticmethod
    def _maybe_dead(store, entry, now):
        if entry.state is None:
            return False
        exptime = entry.state[2]
        return bool(exptime and exptime <= now) or store.state.is_flushed(entry.cas, entry.stored, now)


def describe(state, key, oracle, allowed):
    """What a served state that breaks the promise is, with a hint at the
    way it came (what the key went through since)."""
    entries = oracle.keys[key]
    first = entries.index(allowed[0]) if allowed and allowed[0] in entries else len(entries)
    if state is None:
        big = any(e.state is not None and len(e.state[0]) > BIG for e in entries[: first + 1])
        return "missing" + (" (a durable value over 64 KiB was overwritten)" if big else "")
    value = state[0]
    older = [i for i, e in enumerate(entries[:first]) if e.state == state]
    if older:
        passed = entries[older[-1] + 1 : first + 1]
        if any(e.state is None for e in passed):
            how = "back past a delete or flush"
        elif any(len(e.state[0]) > BIG for e in passed):
            how = "back past a value over 64 KiB"
        elif any(e.state[:2] == state[:2] for e in passed):
            how = "back past a touch"
        else:
            how = "older than allowed"
        return f"an older state, {how} ({value[:24]!r}..., flags {state[1]}, exptime {state[2]})"
    if any(e.state == state for e in oracle.before.get(key, ())):
        return f"a state from before the last power loss ({value[:24]!r}..., flags {state[1]})"
    owner = value.split(b":", 1)[0]
    if owner != key and owner in oracle.keys:
        return f"a value of {owner!r} ({value[:24]!r}...)"
    return f"a torn or unknown value ({value[:24]!r}..., {len(value)} bytes)"


def shown(values):
    return "{" + ", ".join("missing" if v is None else repr(v[0][:16]) for v in values) + "}"


# -- the campaign --------------------------------------------------------------


def history_seed(seed, level, i):
    return random.Random(f"{seed}:{level}:{i}").randrange(1 << 31)


class Summary:
    def __init__(self, level, metadata):
        self.level, self.metadata = level, metadata
        self.histories = self.cuts = self.states = self.broken = self.restarts = self.adopted = 0
        self.violations = []

    def add(self, history):
        self.histories += 1
        self.cuts += history.cuts
        self.states += history.states
        self.broken += history.broken
        self.restarts += history.restarts
        self.adopted += history.adopted
        self.violations += history.violations
        self.log = history.log

    def line(self):
        return (
            f"{self.level:8} ({self.metadata}): {self.histories} histories, {self.cuts} cuts, "
            f"{self.states} crash states ({self.adopted} adopted and crashed again), "
            f"{self.restarts} clean restarts; {self.states - self.broken} crash states kept the promise, "
            f"{len(self.violations)} violations in {self.broken}"
        )


def campaign(level, states, seed, metadata=ORDERED, auto_da_alloc=False, per_history=25, history=None,
             method="auto"):
    """Histories of `level` until `states` crash states were checked."""
    summary = Summary(level, metadata)
    i = 0
    while summary.states < states:
        h_seed = history if history is not None else history_seed(seed, level, i)
        budget = min(per_history, states - summary.states)
        summary.add(History(h_seed, level, metadata, auto_da_alloc, states=budget, method=method).run())
        i += 1
        if history is not None:
            break
    return summary


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--level", choices=LEVELS + ("all",), default="all")
    p.add_argument("--states", type=int, default=500, help="crash states per level")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--metadata", choices=METADATA_MODES, default=ORDERED)
    p.add_argument("--auto-da-alloc", action="store_true")
    p.add_argument("--fsync-method", choices=("auto", "syncfs", "fsync"), default="auto",
                   help="the store's barrier: syncfs (auto) or an fsync of each path written")
    p.add_argument("--history", type=int, help="run this one history seed (a violation names it)")
    p.add_argument("--show", type=int, default=20, help="violations printed per level")
    p.add_argument("--verbose", action="store_true", help="the store's log lines (restores, quarantines)")
    p.add_argument("--trace", action="store_true", help="with --history: what it did, step by step")
    args = p.parse_args(argv)
    if args.verbose:
        logging.getLogger("memcached-lite").setLevel(logging.INFO)
    levels = LEVELS if args.level == "all" else (args.level,)
    bad = 0
    for level in levels:
        s = campaign(level, args.states, args.seed, args.metadata, args.auto_da_alloc, history=args.history,
                     method=args.fsync_method)
        if args.trace:
            print("\n".join(s.log))
        print(s.line(), flush=True)
        for v in s.violations[: args.show]:
            print(f"  {level}: {v}  [--level {level} --metadata {args.metadata}"
                  f"{' --auto-da-alloc' if args.auto_da_alloc else ''}"
                  f"{' --fsync-method ' + args.fsync_method if args.fsync_method != 'auto' else ''}]")
        bad += len(s.violations)
    return 1 if bad else 0


if __name__ == "__main__":
    # the store's log lines (a restore, a quarantine: hundreds) only if asked
    logging.basicConfig(level=logging.INFO if "--verbose" in sys.argv else logging.CRITICAL, format="%(message)s")
    sys.exit(main())
