"""Writes in place: the kept descriptors of two-slot files and the rule for
which slot an overwrite may go to (docs/ARCHITECTURE.md, "Writes in place").

A file written by the exchange path (record.py's two slots: slot 0 the
record, slot 1 zeros) keeps its descriptor here, with what the store knows
of its two slots: which holds the newest record, and for each slot the
number of barriers begun when it was written (`w`; None: no record of
ours). The next overwrite of that key is then one `pwrite` into a slot, no
rename, as long as `target` allows it.

The rule, with S barriers begun and P the number of the newest that passed:
a slot written at w is *durable* if w < P (a barrier begun after it passed)
and *covered* if w < S (a barrier begun after it, passed or in flight).
Never written over: the newest durable record (what a power loss falls back
to) and the newest covered one (what the barrier in flight makes the state
everysec promises). A write goes to the other slot; if both are protected,
`target` says None and the write takes the exchange. Under `--fsync no` no
barrier begins, nothing is protected, the writes alternate slots.

Bounded: at most `limit` descriptors, the least recently written closed
first; a file leaving its key's path (an exchange over it, a delete, a
quarantine) has its descriptor closed first (`drop`), so a write never goes
through a descriptor to a file that is no longer the key's.
"""

import collections

# Kept descriptors at most (the server gives fewer when the open-files limit
# is lower: process.kept_files); one per hot key.
KEPT_FILES = 16384


class Kept:
    """One kept file: its descriptor, slot size, the slot of the newest
    record, and the barrier count each slot was written at."""

    __slots__ = ("fd", "cap", "cur", "w")

    def __init__(self, fd, cap, w):
        self.fd = fd
        self.cap = cap
        self.cur = 0
        self.w = [w, None]


class KeptFiles:
    """The kept descriptors of one data dir, an LRU by path, and the barrier
    counts the slot rule reads."""

    def __init__(self, fs, limit=KEPT_FILES):
        self.fs = fs
        self.limit = limit
        self._files = collections.OrderedDict()
        self.started = 0  # barriers begun
        self.passed = 0  # the number of the newest barrier that passed
        self._open = []  # numbers of the barriers begun, not passed nor failed
        self.writes = 0  # writes made in place

    def __len__(self):
        return len(self._files)

    def get(self, path):
        return self._files.get(path)

    def keep(self, path, fd, cap):
        """`fd` is the file now at path, just written by the exchange path
        (slot 0 its record, slot 1 zeros)."""
        if self.limit <= 0:
            self.fs.close(fd)
            return
        files = self._files
        old = files.pop(path, None)
        if old is not None:
            self._close(old)
        files[path] = Kept(fd, cap, self.started)
        while len(files) > self.limit:
            self._close(files.popitem(last=False)[1])

    def drop(self, path):
        """The file at path is about to leave it (or be replaced)."""
        kept = self._files.pop(path, None)
        if kept is not None:
            self._close(kept)

    def close_all(self):
        while self._files:
            self._close(self._files.popitem()[1])

    def _close(self, kept):
        try:
            self.fs.close(kept.fd)
        except OSError:
            pass

    def target(self, kept):
        """The slot an overwrite may go to now, or None (the exchange)."""
        started, passed = self.started, self.passed
        cur = kept.cur
        other = 1 - cur
        wc, wo = kept.w[cur], kept.w[other]
        protected = set()
        # the newest durable record, and the newest covered one
        for bound in (passed, started):
            if wc is not None and wc < bound:
                protected.add(cur)
            elif wo is not None and wo < bound:
                protected.add(other)
        if other not in protected:
            return other
        if cur not in protected:
            return cur
        return None

    def wrote(self, path, kept, slot):
        """A record went into `slot` in place: it is the newest now."""
        kept.cur = slot
        kept.w[slot] = self.started
        self.writes += 1
        self._files.move_to_end(path)

    def failed(self, path, kept, slot):
        """A write into `slot` failed: the slot holds no record of ours (its
        bytes may be torn); the newest record stays where it was."""
        kept.w[slot] = None

    # -- the barriers (Durability's hooks, through DataDir) ----------------

    def barrier_started(self):
        self.started += 1
        self._open.append(self.started)

    def barrier_passed(self):
        # the one that passes is the newest begun: a barrier in the loop runs
        # to its end before the helper's is looked at again
        if self._open:
            self.passed = max(self.passed, self._open.pop())

    def barrier_failed(self):
        if self._open:
            self._open.pop()
