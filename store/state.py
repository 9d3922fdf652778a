"""State that must outlive the process besides the items: the high-water
marks of the cas counter and of the write sequence, and the flush epoch.

cas values are handed out from a block reserved on disk before any of them is
used, so after a crash the next process starts above everything that could
have been handed out: no cas unique is ever given to two writes. The write
sequence (every record's `seq`, store/record.py) is reserved the same way:
it only grows, across restarts and crashes, and no client moves it, so it
orders a key's records by when they were written where a cas, which `ms
... E<cas>` sets, cannot (store/restore.py).

`flush_all` is not a loop over files but a rule persisted here: items whose
cas is below `dead_below_cas` are dead (an immediate flush), and so are items
stored before `dead_before` once that time has come (a delayed flush).

A delayed flush that has come kills by time only items whose cas is below
`dead_before_cas`, the next cas when it came (or when a later process found
it come): every later write, in this process or the next, is at or above it
(but a client's cas from 2**63 up, which the counter never follows, is always
judged by its time). Times are of the process that wrote them
(store/clock.py), so after a restart with the wall clock stepped back, a new
write's `stored` may be before `dead_before`: without the cas bound it would
be dead as it is written.
"""

import json

from .errors import DataDirError, StoreError

CAS_BLOCK = 1 << 20
SEQ_BLOCK = 1 << 20
OBSERVE_MAX = 1 << 63


class PersistentState:
    """The cas and write sequence allocators and the flush epoch, saved in
    <data-dir>/state."""

    def __init__(self, datadir):
        self._dir = datadir
        raw = datadir.read_small_file("state")
        try:
            saved = json.loads(raw) if raw else {}
            self._next_cas = max(1, int(saved.get("cas_reserved", 1)))
            # (a state file from before the sequence: no record on disk has one)
            self._next_seq = max(1, int(saved.get("seq_reserved", 1)))
            self.dead_below_cas = int(saved.get("dead_below_cas", 0))
            self.dead_before = float(saved.get("dead_before", 0.0))
            # (a state file from before the bound: every item on disk is below it)
            self.dead_before_cas = int(saved.get("dead_before_cas", self._next_cas))
            pending = saved.get("pending_flush")  # a time, or None
            self.pending_flush = None if pending is None else float(pending)
        except (ValueError, TypeError, AttributeError) as e:
            raise DataDirError(f"{datadir.path}/state is unreadable: {e}") from e
        self._reserved = self._next_cas
        self._seq_reserved = self._next_seq
        self._save()

    def next_cas(self):
        cas = self._next_cas
        if cas >= self._reserved:
            # on disk first: a block is used only once it is reserved there
            self._reserve()
        self._next_cas = cas + 1
        return cas

    def next_seq(self):
        """The write sequence number of the next record written."""
        seq = self._next_seq
        if seq >= self._seq_reserved:
            self._reserve()
        self._next_seq = seq + 1
        return seq

    def _reserve(self):
        # a new block of both counters in one write of the file, whichever
        # ran out: a write takes one of each, so they run out together
        self._save(
            cas_reserved=max(self._reserved, self._next_cas + CAS_BLOCK),
            seq_reserved=max(self._seq_reserved, self._next_seq + SEQ_BLOCK),
        )

    def observe_seq(self, seq):
        """A record's seq found on disk (start-up): the sequence continues
        past it, whatever the state file said (one lost or older than the
        records). Raises StoreError if the reservation cannot be saved."""
        if seq >= self._next_seq:
            if seq + 1 > self._seq_reserved:
                self._save(seq_reserved=seq + 1 + SEQ_BLOCK)
            self._next_seq = seq + 1

    def observe(self, cas):
        """A cas the client chose (meta E): the counter moves past it, so no
        later write is handed the same cas and a later flush_all covers it.
        Values from 2**63 up are left alone, so the counter never nears the
        64-bit end. Raises StoreError if the reservation cannot be saved."""
        if self._next_cas <= cas < OBSERVE_MAX:
            if cas + 1 > self._reserved:
                self._save(cas_reserved=cas + 1 + CAS_BLOCK)
            self._next_cas = cas + 1

    def flush(self, now, when=None):
        """Record a flush_all: now, or at `when` (an absolute time)."""
        self._settle(now)
        if when is not None and when > now:
            # replaces a pending one, as memcached does
            self._save(pending_flush=when)
        elif when is not None:
            # a time already past: items stored before it are dead
            self._save(dead_before=max(self.dead_before, when), dead_before_cas=self._next_cas, pending_flush=None)
        else:
            self._save(dead_below_cas=self._next_cas, pending_flush=None)

    def is_flushed(self, cas, stored, now):
        if cas < self.dead_below_cas or (
            stored < self.dead_before and (cas < self.dead_before_cas or cas >= OBSERVE_MAX)
        ):
            return True
        pending = self.pending_flush
        if pending is not None and pending <= now:
            self._settle(now)
            return stored < pending
        return False

    def _settle(self, now):
        # A delayed flush whose time has come becomes a plain rule on `stored`.
        # Saved with the next change: until then the saved pending_flush says
        # the same thing.
        if self.pending_flush is not None and self.pending_flush <= now:
            self.dead_before = max(self.dead_before, self.pending_flush)
            self.dead_before_cas = self._next_cas
            self.pending_flush = None

    def close(self):
        self._save(cas_reserved=self._next_cas, seq_reserved=self._next_seq)

    def _save(self, **changes):
        """Write the state with `changes` applied; only once that succeeded do
        they take effect in memory."""
        state = {
            "cas_reserved": self._reserved,
            "seq_reserved": self._seq_reserved,
            "dead_below_cas": self.dead_below_cas,
            "dead_before": self.dead_before,
            "dead_before_cas": self.dead_before_cas,
            "pending_flush": self.pending_flush,
        }
        state.update(changes)
        try:
            self._dir.write_small_file("state", json.dumps(state).encode())
        except OSError as e:
            raise StoreError(f"cannot save state: {e.strerror or e}") from e
        self._reserved = state["cas_reserved"]
        self._seq_reserved = state["seq_reserved"]
        self.dead_below_cas = state["dead_below_cas"]
        self.dead_before = state["dead_before"]
        self.dead_before_cas = state["dead_before_cas"]
        self.pending_flush = state["pending_flush"]
