"""How the store's writes reach the disk: the three `--fsync` levels, the
barrier that makes what was written durable, and the batch that groups the
writes of one loop iteration under `always` (group commit).

    always     a write goes to a temporary file and waits in the open Batch;
               at the end of the loop iteration the batch is committed:
               barrier (the temporary files' data), rename every file into
               place, barrier (the renames, unlinks and new folders). Only
               then are the replies of that iteration released.
    everysec   a write is renamed into place at once (a process crash or
               kill -9 loses nothing acknowledged) and a barrier runs about
               once a second, so a power loss costs at most about a second.
    no         the kernel writes back when it likes (about 30 s on Linux).

Some facts about barriers that this relies on:

- A file renamed over another before its data is on disk can be found empty
  or torn after a power loss, so under `always` the data is made durable
  before the rename, and the rename (a change to the folder) after it.
- syncfs(2) makes everything written to one file system durable in a single
  call, whatever the number of files and folders. With one folder per bucket,
  a batch of N writes touches about N folders, and N fsyncs of files and N of
  folders cost N journal commits on ext4 (measured: flat, no gain from
  batching), while two syncfs calls cost about the same for 1 write or 50.
  So syncfs is the default where the C library has it (Linux); the portable
  fallback fsyncs each file and each changed folder once per batch.
- syncfs also flushes other programs' writes to the same file system, so a
  data dir on a busy shared disk waits for them too; `--fsync-method fsync`
  avoids that at the price of one fsync per file.
- Linux reports a writeback error from syncfs since 5.8; before, only fsync
  reports it reliably.
"""

import logging
import os
import time

from .filesystem import OSFileSystem
from .files import fsync_dir
from .syncer import HelperGone
from .syscalls import HAVE_SYNCFS, syncfs  # noqa: F401  (bench/durability.py's, the same calls)

ALWAYS, EVERYSEC, NO = "always", "everysec", "no"
LEVELS = (ALWAYS, EVERYSEC, NO)
METHODS = ("auto", "syncfs", "fsync")
EVERYSEC_INTERVAL = 1.0
# A barrier slower than this holds every client up: say so, as Redis does.
SLOW_BARRIER = 0.5
# The helper's barrier still running after this long: said once, as no other
# barrier starts until it ends.
STUCK_BARRIER = 30.0
# How often the loop looks whether the helper's barrier is done.
BACKGROUND_POLL = 0.01

log = logging.getLogger("memcached-lite.store")



class SyncfsBarrier:
    """One syncfs(2) of the data dir's file system makes every write durable."""

    name = "syncfs"
    needs_paths = False

    def __init__(self, path, fs=None):
        self.fs = fs if fs is not None else OSFileSystem()
        self._fd = self.fs.open(path, os.O_RDONLY | os.O_DIRECTORY)

    def sync(self, files, dirs):
        self.fs.syncfs(self._fd)

    def close(self):
        if self._fd is not None:
            self.fs.close(self._fd)
            self._fd = None


class FsyncBarrier:
    """The portable barrier: fdatasync each file, fsync each changed folder."""

    name = "fsync"
    needs_paths = True

    def __init__(self, path, fs=None):
        self.fs = fs if fs is not None else OSFileSystem()

    def sync(self, files, dirs):
        fs = self.fs
        for path in files:
            fd = fs.open(path, os.O_RDONLY)
            try:
                fs.fdatasync(fd)
            finally:
                fs.close(fd)
        for path in dirs:
            fsync_dir(fs, path)

    def close(self):
        pass


def make_barrier(method, path, fs=None):
    """The barrier for `--fsync-method`: auto is syncfs where it exists."""
    fs = fs if fs is not None else OSFileSystem()
    if method not in METHODS:
        raise ValueError(f"unknown fsync method {method!r}")
    if method == "syncfs" and not fs.has_syncfs:
        raise ValueError("syncfs is not available on this system")
    if method == "fsync" or not fs.has_syncfs:
        return FsyncBarrier(path, fs)
    return SyncfsBarrier(path, fs)


class PendingWrite:
    """One change of a batch: a write waiting in its temp file, or (tmp and
    item None) a delete whose file the commit removes."""

    __slots__ = ("key", "path", "tmp", "item", "bucket", "items_delta", "bytes_delta", "old_size")

    def __init__(self, key, path, tmp, item, bucket, items_delta, bytes_delta, old_size=None):
        self.key = key
        self.old_size = old_size  # of the file on disk the commit replaces (None: none)
        self.path = path
        self.tmp = tmp
        self.item = item
        self.bucket = bucket
        self.items_delta = items_delta  # what the change did to the counts,
        self.bytes_delta = bytes_delta  # undone if the batch fails


class Batch:
    """The writes and deletes of one loop iteration under `always`.

    Readers find a key's pending change here until the batch is committed.
    `changes` counts the changes that joined (for the log); whether a command
    depends on the batch is `Durability.used`'s business. `error` is the
    reason the commit failed, or None once it succeeded.
    """

    def __init__(self):
        self.writes = {}  # key -> PendingWrite (the key's last change)
        self.dirs = set()  # folders whose entries changed (for FsyncBarrier)
        self.changes = 0
        self.committed = False
        self.error = None


class Durability:
    """The level in force, its barrier, the open batch, and the counters
    `stats` shows (barrier calls, seconds spent in them, failures)."""

    def __init__(self, level, method, path, clock=None, background=False, fs=None):
        if level not in LEVELS:
            raise ValueError(f"unknown fsync level {level!r}")
        self.fs = fs if fs is not None else OSFileSystem()
        self.level = level
        self.barrier = make_barrier(method, path, self.fs)
        # everysec's timer barrier runs in a helper process (syncer.py) when
        # asked for and possible; the others stay in the loop
        self.syncer = None
        if background and level == EVERYSEC and not self.barrier.needs_paths:
            try:
                self.syncer = self.fs.background_syncer(path)
            except OSError as e:
                log.warning("no sync helper (%s): the everysec barrier runs in the loop", e)
        # told when a barrier starts and when it has passed (the spare pool)
        self.barrier_started = _nothing
        self.barrier_passed = _nothing
        self._stuck_told = False
        self._clock = clock or (lambda: time.monotonic())
        self.batch = None
        # the batch the running command wrote or read, set by the store
        # (Store._live, _join_batch): the protocol takes it after each
        # command, and that command's reply waits for the batch
        self.used = None
        self.calls = 0
        self.seconds = 0.0
        self.errors = 0
        # everysec: whether something was written since the last barrier,
        # and (FsyncBarrier only) what
        self.dirty = False
        self._dirty_files = set()
        self._dirty_dirs = set()
        self._next_sync = self._clock() + EVERYSEC_INTERVAL

    @property
    def method(self):
        return self.barrier.name

    # -- always --------------------------------------------------------------

    def open_batch(self):
        if self.batch is None:
            self.batch = Batch()
        return self.batch

    def sync(self, files=(), dirs=()):
        """One barrier, timed and counted; raises OSError."""
        start = time.perf_counter()
        self.barrier_started()
        try:
            self.barrier.sync(files, dirs)
        except OSError:
            self.errors += 1
            raise
        finally:
            self._count(time.perf_counter() - start, "every reply waited")
        self.barrier_passed()

    def _count(self, took, who_waited):
        self.calls += 1
        self.seconds += took
        if took > SLOW_BARRIER:
            log.warning("a %s barrier took %.2f s: the disk is slow, %s", self.method, took, who_waited)

    # -- everysec ------------------------------------------------------------

    def written(self, path, dirs):
        """A file was renamed into place (everysec and no: for `no` only the
        barrier at a clean stop, as Redis makes its last write durable then)."""
        self.dirty = True
        if self.barrier.needs_paths and self.level == EVERYSEC:
            self._dirty_files.add(path)
            self._dirty_dirs.update(dirs)

    def removed(self, dirs):
        """A file was unlinked (everysec and no)."""
        self.dirty = True
        if self.barrier.needs_paths and self.level == EVERYSEC:
            self._dirty_dirs.update(dirs)

    def seconds_to_sync(self):
        """How long the loop may sleep before sync_if_due has work; None if never."""
        if self.syncer is not None and self.syncer.running:
            return BACKGROUND_POLL
        if not self.dirty or self.level != EVERYSEC:
            return None
        return max(0.0, self._next_sync - self._clock())

    def sync_if_due(self, force=False):
        """everysec's timer: a barrier once a second while there are writes;
        `force` (a clean stop, any level) makes one now if anything was
        written. Returns True if a barrier passed (one of the helper's that
        finished, or one run here); raises OSError if it failed. With the
        helper, the timer only starts a barrier; a later call sees it end."""
        passed = self._finish_background(wait=force)
        if self.syncer is not None and self.syncer.running:
            # One barrier in flight at a time, even on a disk slower than the
            # timer: a second one asked for now would be answered by the
            # first's reply, and the spares released since it began would be
            # written over before their items' new records are durable.
            return passed
        now = self._clock()
        if not self.dirty:
            return passed
        if not force and (self.level != EVERYSEC or now < self._next_sync):
            return passed
        self._next_sync = now + EVERYSEC_INTERVAL
        if self.syncer is not None and not force:
            self.dirty = False
            self.barrier_started()
            try:
                self.syncer.start()
                return passed
            except HelperGone as e:
                self._lose_helper(e)
                self.dirty = True
        files, dirs = self._dirty_files, self._dirty_dirs
        self._dirty_files, self._dirty_dirs = set(), set()
        self.dirty = False
        try:
            if self.level == NO and self.barrier.needs_paths:
                # `no` keeps no list of what it wrote (it would only grow)
                start = time.perf_counter()
                self.barrier_started()
                self.fs.sync()
                self.calls += 1
                self.seconds += time.perf_counter() - start
                self.barrier_passed()
            else:
                exists = self.fs.exists
                self.sync([f for f in files if exists(f)], dirs)
        except OSError:
            # still not durable: try again at the next tick
            self.dirty = True
            self._dirty_files |= files
            self._dirty_dirs |= dirs
            raise
        return True

    def _finish_background(self, wait):
        # True if the helper's barrier has just passed; raises OSError if it failed
        syncer = self.syncer
        if syncer is None or not syncer.running:
            return False
        started = syncer.started
        try:
            code = syncer.poll(wait)
        except HelperGone as e:
            self._lose_helper(e)
            self.dirty = True  # unknown: the next barrier covers it again
            return False
        if code is None:
            took = time.perf_counter() - started
            if took > STUCK_BARRIER and not self._stuck_told:
                self._stuck_told = True
                log.warning("the sync helper's barrier has run for %.0f s: the disk may be stuck, "
                            "and the writes since are not durable yet", took)
            return False
        self._stuck_told = False
        self._count(time.perf_counter() - started, "the replies did not wait (it ran in the helper)")
        if code:
            self.errors += 1
            self.dirty = True
            raise OSError(code, os.strerror(code))
        self.barrier_passed()
        return True

    def _lose_helper(self, e):
        log.warning("%s; the everysec barrier runs in the loop from now on", e)
        self.syncer.close()
        self.syncer = None

    def close(self):
        if self.syncer is not None:
            self.syncer.close()
            self.syncer = None
        self.barrier.close()


def _nothing():
    pass
