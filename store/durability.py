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

from .files import fsync_dir
from .filesystem import OSFileSystem
from .syncer import HelperGone
from .syscalls import HAVE_SYNCFS, syncfs  # noqa: F401  (bench/durability.py's, the same calls)

ALWAYS, EVERYSEC, NO = "always", "everysec", "no"
LEVELS = (ALWAYS, EVERYSEC, NO)
METHODS = ("auto", "syncfs", "fsync")
EVERYSEC_INTERVAL = 1.0
# A barrier slower than this holds every client up: say so, as Redis does.
SLOW_BARRIER = 0.5
# The helper's barrier unanswered this long is given up: the helper is
# SIGKILLed and another started. A healthy syncfs after a second of writes
# takes 50-150 ms here and a disk busy with other work a second or two, so 5 s
# is far past any barrier that is still coming; and until it is given up no
# barrier runs at all, so this is how long past everysec's second a stopped or
# hung helper may leave writes not durable. `-o fsync_watchdog=` changes it.
WATCHDOG = 5.0
# Two polls of the helper further apart than this mean the loop itself was not
# running (the server stopped by SIGSTOP, a debugger, a VM pause): that time is
# not held against the helper's barrier (the loop polls every BACKGROUND_POLL).
LOOP_GAP = 1.0
# A helper that died or was given up is replaced, up to this many times in
# RESTART_WINDOW seconds; one more failure and the barrier goes back to the
# loop for good (a helper that cannot live would otherwise be forked forever).
MAX_RESTARTS = 3
RESTART_WINDOW = 60.0
# What `stats` says of the helper (fsync_helper): running; restarting (a new
# one whose first barrier has not passed yet); none (the barrier runs in the
# loop); off (the level is not everysec).
HELPER_RUNNING, HELPER_RESTARTING, HELPER_NONE, HELPER_OFF = "running", "restarting", "none", "off"
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
    """The level in force, its barrier, the open batch, the everysec helper
    and its watchdog, and the counters `stats` shows (barrier calls, seconds
    spent in them, failures, helper restarts, how long writes have waited
    for a barrier)."""

    def __init__(self, level, method, path, clock=None, background=False, fs=None, helper=None):
        if level not in LEVELS:
            raise ValueError(f"unknown fsync level {level!r}")
        self.fs = fs if fs is not None else OSFileSystem()
        self.level = level
        self.barrier = make_barrier(method, path, self.fs)
        self._clock = clock or (lambda: time.monotonic())
        # everysec's timer barrier runs in a helper process (syncer.py) when
        # asked for and possible; the others stay in the loop. `helper(path)`
        # starts one (the file system's own unless a test passes a fake).
        self._path = path
        self._make_helper = helper if helper is not None else self.fs.background_syncer
        self.syncer = None
        self._helper_state = HELPER_RUNNING
        self.watchdog = WATCHDOG  # seconds a helper barrier may take
        self.restarts = 0  # helpers started in place of a failed one
        self._failures = []  # clock() of the helper's recent failures
        self._waited = 0.0  # the barrier in flight's time, the loop's gaps left out
        self._last_poll = None
        if background and level == EVERYSEC and not self.barrier.needs_paths:
            try:
                self.syncer = self._make_helper(path)
            except OSError as e:
                log.warning("no sync helper (%s): the everysec barrier runs in the loop", e)
        # told when a barrier starts, when it has passed, and when one begun
        # will never pass (the data dir: its spare pool and kept files)
        self.barrier_started = _nothing
        self.barrier_passed = _nothing
        self.barrier_failed = _nothing
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
        # clock() of the oldest write no barrier covers yet, and of the oldest
        # the barrier in flight covers (fsync_unsynced_seconds); None: none
        self._unsynced_since = None
        self._in_flight_since = None
        self._next_sync = self._clock() + EVERYSEC_INTERVAL

    @property
    def method(self):
        return self.barrier.name

    @property
    def helper_state(self):
        """fsync_helper: running, restarting, none or off."""
        if self.level != EVERYSEC:
            return HELPER_OFF
        return HELPER_NONE if self.syncer is None else self._helper_state

    def unsynced_seconds(self):
        """How long the oldest write no passed barrier covers has waited (0:
        everything written is durable): what a power loss now could cost."""
        oldest = _older(self._unsynced_since, self._in_flight_since)
        return 0.0 if oldest is None else max(0.0, self._clock() - oldest)

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
            self.barrier_failed()
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
        if self._unsynced_since is None:
            self._unsynced_since = self._clock()
        if self.barrier.needs_paths and self.level == EVERYSEC:
            self._dirty_files.add(path)
            self._dirty_dirs.update(dirs)

    def displaced(self, path, spare):
        """The file at an item's path moved to `spare` in tmp/ (everysec
        with a barrier by paths): if its record was written since the last
        barrier, the next one must fsync it where it now is. Otherwise the
        barrier would pass over it, and the spare pool, which takes a passed
        barrier to cover every write before it, would book the file as
        holding that record while on disk it may still hold an older one."""
        dirty = self._dirty_files
        if path in dirty:
            dirty.add(spare)

    def removed(self, dirs):
        """A file was unlinked (everysec and no)."""
        self.dirty = True
        if self._unsynced_since is None:
            self._unsynced_since = self._clock()
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
        helper, the timer only starts a barrier; a later call sees it end
        (or the watchdog give it up)."""
        syncer = self.syncer
        # (the helper's test written out: this runs once a loop iteration)
        passed = syncer is not None and syncer.running and self._finish_background(wait=force)
        if syncer is not None and syncer.running:
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
            self._start_in_helper()
            return passed
        self.sync_now()
        return True

    def sync_now(self):
        """A barrier in the loop, now, over everything written so far (the
        timer's, a clean stop's, or a full disk's before it frees the held
        spares); raises OSError, and then its writes wait for the next one.
        Covers what a helper barrier in flight covers too."""
        files, dirs = self._dirty_files, self._dirty_dirs
        self._dirty_files, self._dirty_dirs = set(), set()
        self._cover()
        try:
            if self.level != EVERYSEC and self.barrier.needs_paths:
                # `no` keeps no list of what it wrote (it would only grow),
                # nor `always` outside its batches (a full disk's barrier)
                start = time.perf_counter()
                self.barrier_started()
                try:
                    self.fs.sync()
                except OSError:
                    self.barrier_failed()
                    raise
                self.calls += 1
                self.seconds += time.perf_counter() - start
                self.barrier_passed()
            else:
                exists = self.fs.exists
                self.sync([f for f in files if exists(f)], dirs)
        except OSError:
            # still not durable: try again at the next tick
            self._uncover()
            self._dirty_files |= files
            self._dirty_dirs |= dirs
            raise
        self._in_flight_since = None

    def _cover(self):
        # a barrier begins: the writes so far are its to make durable
        self.dirty = False
        self._in_flight_since = _older(self._in_flight_since, self._unsynced_since)
        self._unsynced_since = None

    def _uncover(self):
        # the barrier failed or was lost: its writes wait for the next one
        self.dirty = True
        self._unsynced_since = _older(self._unsynced_since, self._in_flight_since)
        self._in_flight_since = None

    def _start_in_helper(self):
        self._cover()
        self.barrier_started()
        try:
            self.syncer.start()
        except HelperGone as e:
            self._replace_helper(str(e))
            return
        self._waited, self._last_poll = 0.0, self._clock()

    def _finish_background(self, wait):
        # True if the helper's barrier has just passed; raises OSError if it failed
        syncer = self.syncer
        if syncer is None or not syncer.running:
            return False
        started = syncer.started
        try:
            code = syncer.poll(max(0.0, self.watchdog - self._waited) if wait else 0.0)
        except HelperGone as e:
            self._replace_helper(str(e))
            return False
        if code is None:
            if wait or self._helper_waited() >= self.watchdog:
                self._give_up(syncer)
            return False
        self._count(time.perf_counter() - started, "the replies did not wait (it ran in the helper)")
        if code:
            self.errors += 1
            self.barrier_failed()
            self._uncover()
            raise OSError(code, os.strerror(code))
        self._in_flight_since = None
        self._helper_state = HELPER_RUNNING
        self.barrier_passed()
        return True

    def _helper_waited(self):
        # the barrier in flight's time so far, without the loop's own gaps:
        # a server stopped for 10 s did not see its helper for 10 s, and the
        # helper (not stopped) has most likely answered meanwhile
        now = self._clock()
        gap, self._last_poll = now - self._last_poll, now
        if gap <= LOOP_GAP:
            self._waited += gap
        return self._waited

    def _give_up(self, syncer):
        # the barrier in flight is never counted as passed: the spares it
        # would free stay held, and its writes wait for the new helper's
        since = time.strftime("%H:%M:%S", time.localtime(time.time() - self.unsynced_seconds()))
        log.warning("the sync helper (pid %d) has not answered its barrier in %.1f s: killed; "
                    "the writes since %s are not durable yet", syncer.pid, self._waited, since)
        self._replace_helper(f"the sync helper (pid {syncer.pid}) was given up")

    def _replace_helper(self, why):
        """The helper died or was given up: start another, whose barrier is
        due at once; after MAX_RESTARTS in RESTART_WINDOW, the loop's."""
        self.barrier_failed()  # the one in flight never passes
        self._uncover()
        self.syncer.kill()
        self.syncer = None
        now = self._clock()
        self._next_sync = now
        self._failures = [t for t in self._failures if now - t < RESTART_WINDOW] + [now]
        if len(self._failures) > MAX_RESTARTS:
            log.warning("%s, %d times in %.0f s: the everysec barrier runs in the loop from now on",
                        why, len(self._failures), RESTART_WINDOW)
            return
        try:
            self.syncer = self._make_helper(self._path)
        except OSError as e:
            log.warning("%s, and no new one starts (%s): the everysec barrier runs in the loop from now on", why, e)
            return
        self.restarts += 1
        self._helper_state = HELPER_RESTARTING
        log.warning("%s; a new one (pid %d) makes the barrier now", why, self.syncer.pid)

    def close(self):
        if self.syncer is not None:
            self.syncer.close()
            self.syncer = None
        self.barrier.close()


def _older(a, b):
    """The earlier of two clock() readings, either of which may be None."""
    if a is None:
        return b
    return a if b is None or a <= b else b


def _nothing():
    pass
