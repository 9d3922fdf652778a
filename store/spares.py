"""Spare files: the inodes of replaced and deleted records, kept in tmp/ and
written over for later writes instead of creating a file for each write and
freeing one.

Why: on ext4 a file create and the free of the file it replaces are most of a
write's cost (on a file system without a journal, ext4 even scans past every
inode freed in the last minute to find a free one: ~150 µs per create at a
few thousand writes a second). Writing into a spare costs a `pwrite`; the
record's old inode is kept with a `link` into tmp/ before the rename.

Safety: a spare is written over in place, so until a barrier makes its new
record durable, a power loss may leave the item's file holding the spare's
previous bytes. Three rules keep that harmless:

- a released spare is *held* until a barrier has passed since its release: it
  holds the key's previous record, the one a power loss falls back to
  (`Store` restores it at start-up when the item's file does not verify);
- a spare is never written for the key whose record it last held, so stale
  bytes in an item's file are another key's record, which fails the check
  that a record's key hashes to its file name;
- under `always` the batch's first barrier covers the spares' new bytes
  before any rename, so nothing of this is needed there;
- a key installed with no old file (a plain rename: the key was absent)
  first has every idle spare still holding one of its records removed
  (`supersede`). Such a torn file's only correct fallback is no item at
  all, and start-up restores the newest intact record of the key it finds
  in tmp/: after a plain install there is none to find. (A spare ready
  again holds a superseded record: restoring it once the install that
  replaced it is durable would bring back a value older than a durable
  write or delete.) The removals come before the rename in the metadata
  log, so they survive wherever it does when metadata is ordered, as ext4's
  journal orders it (docs/POWER_LOSS.md);
- a record too big to recycle (over MAX_RECORD) is still displaced by an
  exchange, not freed by the rename: the new record (in a spare, or a new
  file) is not durable yet, and the old one is the key's fallback. It is
  *held* as a spare is (`released_big`), and unlinked instead of made ready
  once a barrier has passed since; `supersede` of its key removes it too.
  Under `--fsync no` (reuse_at_once: no barrier passes until a clean stop)
  such a record is freed at once, as the rename did. Disk: the held big
  records count until the barrier after their release frees them, about
  one second of big overwrites at everysec (docs/POWER_LOSS.md).
- a ready spare written over for another key may still hold, on disk, the
  record it was booked for until a barrier begun after the write passes
  (the write is in the page cache only). So the pool remembers, for the
  file now at that key's path, the name of the record it may still hold
  (its *stale* name); if the file comes back to tmp/ before that barrier
  has passed, it is booked under both names and `supersede` of either
  removes it. Where the stale name's plain install came first, bringing
  the file back to tmp/ would follow that install in the metadata log, so
  the overwrite or delete frees the file instead (`FREE`, a rename or
  unlink over it); and where the stale mark dates from before the barrier
  in flight, the file is the item's fallback once that barrier passes but
  may hold the other record until then: a barrier first (`SYNC`, rare).
  A write that is abandoned (never installed) frees its spare: its bytes
  are no record anyone had and may not be durable.

Empty spares made in advance: a write that finds no ready spare creates its
file (the slow path this module exists to avoid), and right after a fill of
new keys, or a restart, every write does, until the barriers have passed
that make the old inodes spares. So each such write also asks the loop's
idle moments for two empty spares (up to `fresh_max`): made while nothing
else is waiting, they make the next burst of writes cheap. An empty file
holds no record, so it is no key's fallback and needs no barrier.
"""

import collections
import errno
import logging
import os
import time

from .filesystem import OSFileSystem

log = logging.getLogger("memcached-lite.store")

# Spares kept ready at most (by their records' size, rounded up to blocks):
# about one second of writes at the rates a single Python process reaches.
READY_BYTES = 64 << 20
# Records larger than this are not recycled: displaced, held until the next
# barrier passes, then freed (released_big).
MAX_RECORD = 64 << 10
_BLOCK = 4096
# Empty spares the idle loop may keep ready (the server's; a Store makes none
# unless told), and how long it stops making them after a failure or a drain.
FRESH_SPARES = 8192
FRESH_PER_MISS = 2
FRESH_BACKOFF = 60.0

FULL_DISK = (errno.ENOSPC, errno.EDQUOT)

# What an overwrite or a delete does with the file leaving a key's path
# (SparePool.leaving): keep it as a spare, free it, or run a barrier first.
KEEP = "keep"
FREE = "free"
SYNC = "sync"


def _blocks(size):
    return max(_BLOCK, -(-size // _BLOCK) * _BLOCK)


class SparePool:
    """The spares of one data dir's tmp/: ready to be written over, held
    until the next barrier, or lent to a write not yet renamed into place."""

    def __init__(self, tmp, pid, reuse_at_once=False, ready_bytes=READY_BYTES, fs=None):
        self.fs = fs if fs is not None else OSFileSystem()
        self.tmp = tmp
        self._pid = pid
        self._names = 0
        # `--fsync no` makes no barrier until a clean stop: its spares are
        # ready at once (a power loss there may lose any recent write anyway)
        self.reuse_at_once = reuse_at_once
        self.ready_bytes = ready_bytes
        self._ready = collections.deque()  # (path, name it last held, size)
        self._ready_size = 0
        self._held = []  # released since the last barrier began
        # displaced records over MAX_RECORD: fallbacks until a barrier passes, then unlinked
        self._big_held = []  # (path, name, stale name or None) released since the last barrier began
        self._big_in_flight = []  # released before the barrier under way
        self._big_names = {}  # name -> how many of them hold its record
        self._in_flight = []  # released before the barrier under way
        self._lent = {}  # path -> (name written into it, size, name it may still hold)
        self._taken = None  # the ready spare take() gave last
        # name -> how many idle spares (ready, held, in flight) hold its record
        self._holding = {}
        # item name -> the stale name of the file at its path (whose record
        # may still be on disk there), marked since the last barrier began
        # and before it (the barrier in flight); and the names
        # plain-installed in those two windows (supersede)
        self._stale = {}
        self._stale_early = {}
        self._plain = set()
        self._plain_early = set()
        self.reused = 0  # writes that went into a spare (stats: spare_writes)
        self.fresh_max = 0  # ready spares the idle loop fills up to, at most
        self._fresh_wanted = 0  # empty spares it may still make: FRESH_PER_MISS per miss
        self._fresh_paused_until = 0.0
        self.made = 0  # empty spares made (stats: spare_files_made)

    def __len__(self):
        return len(self._ready) + len(self._held) + len(self._in_flight) + self.held_big

    @property
    def held(self):
        """How many spares (and big records) are some item's fallback until
        a barrier passes."""
        return len(self._held) + len(self._in_flight) + self.held_big

    @property
    def held_big(self):
        """How many displaced records over MAX_RECORD wait for a barrier to
        be unlinked."""
        return len(self._big_held) + len(self._big_in_flight)

    def idle(self):
        """The paths of the spares not lent to a write (ready or held)."""
        return [spare[0] for spare in (*self._ready, *self._held, *self._in_flight)]

    def wants(self, size):
        """Whether a record of `size` is recycled as a spare once released."""
        return size is not None and size <= MAX_RECORD

    def keeps(self, size):
        """Whether an item's old record of `size` (None: there is none) is
        displaced into tmp/ by its install, rather than freed by a plain
        rename: any record, but under reuse_at_once only the recycled ones
        (no barrier would ever free the big ones)."""
        return size is not None and (size <= MAX_RECORD or not self.reuse_at_once)

    def new_name(self):
        self._names += 1
        return os.path.join(self.tmp, f"r{self._pid}.{self._names}")

    def take(self, avoid):
        """(path, size) of a ready spare whose last record is not `avoid`'s,
        or None."""
        ready = self._ready
        for _ in range(min(2, len(ready))):
            spare = ready.popleft()
            if spare[1] != avoid:
                self._ready_size -= _blocks(spare[2])
                self._taken = spare
                self._unhold(spare[1])
                return spare[0], spare[2]
            ready.append(spare)
        return None

    def untake(self):
        """The spare take() gave last could not be opened (a read-only or
        failing disk): ready again, so it is neither lost nor orphaned."""
        self._add_ready(*self._taken)

    def missed(self):
        """A write found no ready spare and made its own file."""
        self._fresh_wanted = min(self.fresh_max, self._fresh_wanted + FRESH_PER_MISS)

    def wants_fresh(self):
        """Whether the idle loop should make empty spares."""
        return (
            self._fresh_wanted > 0
            and len(self._ready) < self.fresh_max
            and self._ready_size + _BLOCK <= self.ready_bytes
            and time.monotonic() >= self._fresh_paused_until
        )

    def make_fresh(self, budget):
        """Make empty ready spares for about `budget` seconds, or until none
        is wanted; returns how many. A failure (a full disk) is logged and
        pauses this for FRESH_BACKOFF seconds."""
        fs = self.fs
        deadline = time.monotonic() + budget
        made = 0
        while self.wants_fresh():
            path = self.new_name()
            try:
                fs.close(fs.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
            except OSError as e:
                log.warning("cannot make a spare file in %s: %s; trying again in %.0f s", self.tmp, e, FRESH_BACKOFF)
                self._fresh_paused_until = time.monotonic() + FRESH_BACKOFF
                break
            self._add_ready(path, None, 0)
            self._fresh_wanted -= 1
            made += 1
            if time.monotonic() >= deadline:
                break
        self.made += made
        return made

    def lent(self, path, name, size):
        """The spare take() gave last now holds `name`'s new record (not
        durable yet: on disk it may still be the one it was booked for)."""
        was = None if self.reuse_at_once else self._taken[1]
        self._lent[path] = (name, size, was)
        self.reused += 1

    def installed(self, path):
        """A lent spare was renamed onto an item: it is that item's file now,
        marked with the name whose record it may still hold."""
        lent = self._lent.pop(path, None)
        if lent is not None and lent[2] is not None:
            self._stale[lent[0]] = lent[2]

    def abandoned(self, path):
        """A lent spare's write will not be installed: forgotten, and the
        caller frees it. Ready again, it would be booked under a name whose
        record it does not hold (its new bytes are not durable, and are no
        value the key had)."""
        self._lent.pop(path, None)

    def leaving(self, name):
        """The file at `name`'s path is about to leave it (an overwrite or a
        delete): (KEEP, FREE or SYNC, stale) where stale is what to pass to
        released() (see the module's docstring)."""
        stale = self._stale.pop(name, None)
        if stale is not None:
            return (FREE if stale in self._plain else KEEP), (stale, False)
        if not self._stale_early:
            return KEEP, None
        stale = self._stale_early.pop(name, None)
        if stale is None:
            return KEEP, None
        if stale in self._plain or stale in self._plain_early:
            # the barrier passed voids the mark; failed, it keeps it
            self._stale_early[name] = stale
            return SYNC, None
        return KEEP, (stale, True)

    def released(self, path, name, size, stale=None):
        """An item's old inode now lives at `path` (tmp/), holding `name`'s
        previous record (and, on disk, maybe another's: `stale`, from
        leaving())."""
        if self.reuse_at_once:
            self._add_ready(path, name, size)
        else:
            holding = self._holding
            holding[name] = holding.get(name, 0) + 1
            if stale is None:
                self._held.append((path, name, size))
            else:
                self._held.append((path, name, size, *stale))
                holding[stale[0]] = holding.get(stale[0], 0) + 1

    def must_sync(self, name):
        """Whether `name`'s plain install needs a barrier first: a spare in
        tmp/ may still hold its record on disk, marked before the barrier in
        flight began (so it is another item's fallback once that passes)."""
        if name not in self._holding:
            return False
        for spare in self._in_flight:
            if len(spare) > 3 and spare[3] == name:
                return True
        return any(len(spare) > 3 and spare[3] == name and spare[4] for spare in self._held)

    def supersede(self, name):
        """`name` is about to be installed with no old file (after a barrier
        if must_sync said so): remove the idle spares holding its records, so
        none is ever taken for its fallback (see the module's docstring).
        Returns how many were removed."""
        if not self.reuse_at_once:
            self._plain.add(name)
        if name not in self._holding:
            return 0
        del self._holding[name]
        fs = self.fs
        removed = 0
        kept = collections.deque()
        for spare in self._ready:
            if spare[1] == name:
                self._ready_size -= _blocks(spare[2])
                removed += _unlink(fs, spare[0])
            else:
                kept.append(spare)
        self._ready = kept
        for pool in (self._held, self._in_flight):
            mine = [spare for spare in pool if spare[1] == name or (len(spare) > 3 and spare[3] == name)]
            for spare in mine:
                pool.remove(spare)
                removed += _unlink(fs, spare[0])
                # the other name it was booked under
                if spare[1] != name:
                    self._unhold(spare[1])
                elif len(spare) > 3:
                    self._unhold(spare[3])
        return removed

    def released_big(self, path, name, stale=None):
        """An item's old record, too big to recycle, now lives at `path`
        (tmp/): held as the item's fallback until a barrier has passed since,
        then unlinked (`_big_passed`). `stale` (from leaving()): on disk it
        may still hold that name's record too, so it is booked under both."""
        other = None if stale is None else stale[0]
        self._big_held.append((path, name, other))
        names = self._big_names
        for n in (name, other):
            if n is not None:
                names[n] = names.get(n, 0) + 1

    def supersede_big(self, name):
        """As `supersede`, for the big records held: `name` is about to be
        installed with no old file, so its held big records are no one's
        fallback. Returns how many were removed."""
        if name not in self._big_names:
            return 0
        removed = 0
        for pool in (self._big_held, self._big_in_flight):
            mine = [spare for spare in pool if name in spare[1:]]
            for spare in mine:
                pool.remove(spare)
                self._big_forget(spare)
                removed += _unlink(self.fs, spare[0])
        return removed

    def _big_forget(self, spare):
        names = self._big_names
        for n in spare[1:]:
            if n is None:
                continue
            left = names.get(n, 0) - 1
            if left > 0:
                names[n] = left
            else:
                names.pop(n, None)

    def _big_started(self):
        self._big_in_flight += self._big_held
        self._big_held = []

    def _big_passed(self):
        # the barrier made their items' new records durable: free them
        passed, self._big_in_flight = self._big_in_flight, []
        for spare in passed:
            _unlink(self.fs, spare[0])
            self._big_forget(spare)

    def _drain_big(self):
        removed = 0
        for spare in (*self._big_held, *self._big_in_flight):
            removed += _unlink(self.fs, spare[0])
        self._big_held, self._big_in_flight, self._big_names = [], [], {}
        return removed

    def _unhold(self, name):
        holding = self._holding
        n = holding.get(name, 0) - 1
        if n > 0:
            holding[name] = n
        else:
            holding.pop(name, None)

    def barrier_started(self):
        """A barrier begins: what it makes durable includes every record
        renamed into place so far."""
        self._in_flight += self._held
        self._held = []
        self._big_started()
        if self._stale_early:  # a barrier that failed: its marks stay
            self._stale_early.update(self._stale)
            self._plain_early |= self._plain
        else:
            self._stale_early, self._plain_early = self._stale, self._plain
        self._stale, self._plain = {}, set()

    def barrier_passed(self):
        """The barrier that began last is done: the spares released before it
        began are no longer anyone's fallback."""
        passed, self._in_flight = self._in_flight, []
        self._stale_early, self._plain_early = {}, set()
        for spare in passed:
            if len(spare) > 3:  # its new record is durable now: it holds no other
                self._unhold(spare[3])
            self._to_ready(*spare[:3])
        self._big_passed()

    def _add_ready(self, path, name, size):
        holding = self._holding
        holding[name] = holding.get(name, 0) + 1
        self._to_ready(path, name, size)

    def _to_ready(self, path, name, size):
        # an idle spare (counted in _holding) becomes ready, or is freed
        if self._ready_size + _blocks(size) > self.ready_bytes:
            _unlink(self.fs, path)
            self._unhold(name)
            return
        self._ready.append((path, name, size))
        self._ready_size += _blocks(size)

    def drain(self, held_too=False):
        """Free the ready spares' blocks (a full disk; a clean stop, after its
        barrier, with held_too). Returns how many files were removed."""
        self._fresh_paused_until = time.monotonic() + FRESH_BACKOFF  # not at once again
        fs = self.fs
        removed = 0
        while self._ready:
            path, name, _ = self._ready.popleft()
            removed += _unlink(fs, path)
            self._unhold(name)
        self._ready_size = 0
        if held_too:
            for spare in (*self._held, *self._in_flight):
                removed += _unlink(fs, spare[0])
            self._held = []
            self._in_flight = []
            self._holding = {}
            removed += self._drain_big()
            self._stale, self._stale_early = {}, {}
        return removed


def _unlink(fs, path):
    try:
        fs.unlink(path)
        return 1
    except OSError:
        return 0
