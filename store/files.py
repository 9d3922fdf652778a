"""The data directory: where each key's file lives, and how it is written, read
and removed without ever leaving a torn file or touching a path outside the dir.

    <data-dir>/FORMAT          "memcached-lite <version>": refuses foreign dirs
                               (format 1-3 dirs are adopted: see _check_format)
    <data-dir>/lock            flock'd by the one server using the dir
    <data-dir>/state           persisted counters (see state.py)
    <data-dir>/tmp/            files being written, and spares (the inodes of
                               replaced records, written over by later writes:
                               spares.py); at start-up a spare may restore an
                               item torn by a power loss, then all are removed
    <data-dir>/items/ab/cd/abcd…  one record per key, named by the key's hash
                               (two slots, written in place:
                               store/inplace.py)
    <data-dir>/quarantine/     corrupt records moved aside, never served

A file's name is a hash of the key, so no key, whatever its bytes, can name a
path of its own choosing, and a lookup needs no index of all keys.
"""

import errno
import fcntl
import hashlib
import itertools
import logging
import os

from . import record
from .errors import DataDirError
from .filesystem import OSFileSystem
from .inplace import KEPT_FILES, KeptFiles
from .spares import FREE, FULL_DISK, SYNC, SparePool

log = logging.getLogger("memcached-lite.store")

FORMAT_VERSION = 4
_FORMAT_LINE = f"memcached-lite {FORMAT_VERSION}\n"
# Dirs of these older formats are adopted: their records are still read (and
# each is rewritten in format 4 by its key's next write), and FORMAT is
# rewritten at once, so an older server (which would quarantine the new
# records it cannot read) refuses the dir from then on.
_ADOPTED_FORMAT_LINES = ("memcached-lite 1\n", "memcached-lite 2\n", "memcached-lite 3\n")


def key_hash(key):
    """The hex name of a key's file."""
    return hashlib.blake2b(key, digest_size=16).hexdigest()


class DataDir:
    """One data directory, locked for this process while it is open; every
    file operation goes through `fs` (store/filesystem.py)."""

    def __init__(self, path, fs=None, kept_files=KEPT_FILES):
        self.fs = fs = fs if fs is not None else OSFileSystem()
        # read(path): the file's bytes, or None if there is none. The fs's
        # own function, not a method calling it: one call less on a get miss.
        self.read = fs.read_file
        self.path = os.path.abspath(path)
        self.items = os.path.join(self.path, "items")
        self.tmp = os.path.join(self.path, "tmp")
        self.quarantine_dir = os.path.join(self.path, "quarantine")
        try:
            self._make_dir(self.path)
        except OSError as e:
            raise DataDirError(f"cannot create data dir {self.path}: {e.strerror}") from e
        self._lock_fd = self._lock()
        try:
            self._check_format()
            for folder in (self.tmp, self.items, self.quarantine_dir):
                self._make_dir(folder)
        except BaseException:
            self.close()
            raise
        self._names = itertools.count()
        self._pid = os.getpid()
        self._known_dirs = set()
        self.spares = SparePool(self.tmp, self._pid, fs=fs)
        # kept descriptors of two-slot files; `in_place` (the Store's: not
        # under always) lets an overwrite go into a slot (store/inplace.py)
        self.kept = KeptFiles(fs, kept_files)
        self.in_place = False
        # barrier(): makes everything written so far durable (the Store's
        # Durability.sync_now); run before a full disk frees the held spares
        self.barrier = None
        # displaced(path, spare): the file at an item's path now lives at
        # `spare` in tmp/ (an overwrite's exchange, a delete's rename); set
        # only where a barrier covers files by path (Durability.displaced)
        self.displaced = None
        self.removed_temp_files = 0
        # how records reached their key's path (stats' writes_*): by the
        # exchange (the old file kept in tmp/), or by a plain rename (no old
        # file: a first write; or one freed by the rename); in place: kept.writes
        self.exchanged = 0
        self.renamed = 0

    # -- whole-directory housekeeping ------------------------------------

    def _make_dir(self, path):
        """Make a folder (and any missing parents) durably: each folder made
        has its entry fsync'd in its parent, so a power loss cannot take it
        under --fsync-method fsync (syncfs would cover it; fsync of a file
        inside does not). Once per folder, at start-up: nothing when it exists."""
        fs = self.fs
        made = []
        top = path
        while not fs.isdir(top):
            made.append(top)
            parent = os.path.dirname(top)
            if parent == top:
                break
            top = parent
        if not made:
            return
        fs.makedirs(path, exist_ok=True)
        for folder in reversed(made):  # the outermost first: its parent exists on disk
            try:
                fsync_dir(fs, os.path.dirname(folder))
            except PermissionError:
                pass  # a parent we may not open (made by the operator): as durable as before

    def _lock(self):
        fs = self.fs
        lock_path = os.path.join(self.path, "lock")
        try:
            fd = fs.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise DataDirError(f"cannot open {lock_path}: {e.strerror}") from e
        try:
            fs.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = fs.read(fd, 32).decode("ascii", "replace").strip() or "?"
            fs.close(fd)
            raise DataDirError(
                f"data dir {self.path} is in use by another server (pid {holder})"
            ) from None
        fs.ftruncate(fd, 0)
        fs.write(fd, f"{os.getpid()}\n".encode())
        return fd

    def _check_format(self):
        fs = self.fs
        raw = fs.read_file(os.path.join(self.path, "FORMAT"))
        if raw is None:
            # never adopt a folder that holds something else (a mistyped --data-dir)
            if set(fs.listdir(self.path)) - {"lock", "tmp"}:
                raise DataDirError(
                    f"{self.path} is not empty and has no FORMAT file: not a memcached-lite data dir"
                ) from None
            self._make_dir(self.tmp)
            self.write_small_file("FORMAT", _FORMAT_LINE.encode())
            return
        found = raw.decode("utf-8", "replace")
        if found in _ADOPTED_FORMAT_LINES:
            log.warning("data dir %s of format %s adopted as format %d: its records are read as they are "
                        "and each is rewritten in format %d by its next write",
                        self.path, found.split()[-1], FORMAT_VERSION, FORMAT_VERSION)
            self._make_dir(self.tmp)
            self.write_small_file("FORMAT", _FORMAT_LINE.encode())
            return
        if found != _FORMAT_LINE:
            raise DataDirError(
                f"data dir {self.path} has format {found.strip()!r}; "
                f"this server reads {_FORMAT_LINE.strip()!r}"
            )

    def leftovers(self):
        """The files a crash left in tmp/: spares, and temp files written but
        not renamed (read them before clear_tmp)."""
        with self.fs.scandir(self.tmp) as it:
            return [e.path for e in it]

    def clear_tmp(self):
        """Remove what a crash left in tmp/ (temp files, spares); once, at
        start-up, before the first write."""
        self.removed_temp_files = self._clear_tmp()

    def _clear_tmp(self):
        fs = self.fs
        removed = 0
        with fs.scandir(self.tmp) as it:
            for entry in it:
                try:
                    fs.unlink(entry.path)
                    removed += 1
                except OSError:
                    pass
        return removed

    def barrier_started(self):
        self.spares.barrier_started()
        self.kept.barrier_started()

    def barrier_passed(self):
        self.spares.barrier_passed()
        self.kept.barrier_passed()

    def barrier_failed(self):
        self.kept.barrier_failed()

    def close(self):
        kept = getattr(self, "kept", None)
        if kept is not None:
            kept.close_all()
        if self._lock_fd is not None:
            self.fs.close(self._lock_fd)  # closing releases the flock
            self._lock_fd = None

    def write_small_file(self, name, data):
        """Atomically replace <data-dir>/<name> with data, durably."""
        fs = self.fs
        tmp = os.path.join(self.tmp, f"{name}.tmp")
        fd = fs.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        try:
            while data:
                data = data[fs.write(fd, data):]
            fs.fsync(fd)
        finally:
            fs.close(fd)
        fs.replace(tmp, os.path.join(self.path, name))
        fsync_dir(fs, self.path)

    def read_small_file(self, name):
        return self.fs.read_file(os.path.join(self.path, name))

    # -- one item's file --------------------------------------------------

    def locate(self, key):
        """Return (bucket, path) for a key; bucket is "ab/cd"."""
        h = key_hash(key)
        bucket = h[:2] + "/" + h[2:4]
        return bucket, f"{self.items}/{bucket}/{h}"

    def read_head(self, path, n):
        """The first n bytes of the file, or None if there is none."""
        return self.fs.read_head(path, n)

    def size(self, path):
        """The file's size, or None if there is none."""
        try:
            return self.fs.stat(path).st_size
        except FileNotFoundError:
            return None

    def write(self, path, fields, old_size=None):
        """Write an item's record (everysec, no) so that a crash leaves the
        old record or the new one, never a torn one served: in place into a
        slot of the key's kept file if the slot rule allows it
        (store/inplace.py), else a new file swapped in (`write_parts`), a
        two-slot file whose descriptor is then kept if the record fits a
        slot. `fields`: key, flags, exptime, cas, stored, value, state,
        atime, seq (record.encode's); `old_size` the size of the file replaced (None: none).
        Returns (the folders whose entries changed, the file's size). Raises
        OSError (disk full...) with the old record still the item's."""
        key, value = fields[0], fields[5]
        kept = self.kept
        if self.in_place:
            k = kept.get(path)
            if k is not None and self.fs.fstat(k.fd).st_nlink == 0:
                kept.drop(path)  # removed behind our back (by hand): a new file
                k = None
            if k is not None and record.SLOT_HEADER_SIZE + len(key) + len(value) <= k.cap:
                slot = kept.target(k)
                if slot is not None:
                    data = record.encode(*fields, k.cap) + key + value
                    try:
                        n = self.fs.pwrite(k.fd, data, slot * k.cap)
                        if n != len(data):
                            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                    except BaseException:
                        kept.failed(path, k, slot)
                        raise
                    kept.wrote(path, k, slot)
                    return [], 2 * k.cap
        cap = record.slot_cap(len(key), len(value))
        if cap is None:
            parts = [record.encode(*fields), key, value]
            return self.write_parts(path, parts, old_size), sum(map(len, parts))
        head = record.encode(*fields, cap)
        parts = [head, key, value, bytes(2 * cap - len(head) - len(key) - len(value))]
        if kept.limit <= 0:
            return self.write_parts(path, parts, old_size), 2 * cap
        tmp, fd = self.write_temp(parts, path.rpartition("/")[2], keep=True)
        try:
            changed = self.install(tmp, path, old_size)
        except BaseException:
            self.fs.close(fd)
            self.abandon(tmp)
            raise
        kept.keep(path, fd, cap)
        return changed, 2 * cap

    def write_parts(self, path, parts, old_size=None):
        """Write parts to path atomically: the old file or the new, never a torn one.

        `old_size` is the size of the file being replaced (None: there is
        none). Returns the folders whose entries changed. Raises OSError (disk
        full, permissions...) with the temp file removed.
        """
        tmp = self.write_temp(parts, path.rpartition("/")[2])
        try:
            return self.install(tmp, path, old_size)
        except BaseException:
            self.abandon(tmp)
            raise

    def write_temp(self, parts, name=None, keep=False):
        """Write parts to a file in tmp/ (a spare written over, or a new
        file) and return its path; `name` is the item's file name, whose own
        old record is never written over. Raises OSError with nothing left
        behind; on a full disk the spares are freed and the write tried again
        once. With `keep`, (path, an fd open for writing) instead: the
        caller closes it."""
        had_spares = len(self.spares) > 0
        try:
            return self._write_temp(parts, name, keep)
        except OSError as e:
            if e.errno not in FULL_DISK or not had_spares:
                raise
        self._free_spares()
        return self._write_temp(parts, name, keep)

    def _free_spares(self):
        # A held spare is the record a power loss now would fall back to (its
        # item's new record is not durable yet): a barrier first makes the
        # new records durable and the held spares ready, then all can go. If
        # the barrier fails, the held ones stay: only the ready ones are freed.
        spares = self.spares
        if spares.held and self.barrier is not None:
            try:
                self.barrier()
            except OSError as e:
                log.error("the disk is full and the barrier before freeing the spares failed: %s; "
                          "%d spares stay, the fallbacks of writes not yet durable", e, spares.held)
        spares.drain()

    def _write_temp(self, parts, name, keep=False):
        fs = self.fs
        spare = self.spares.take(name)
        if spare is not None:
            spare = spare[0]
            try:
                fd = fs.open(spare, os.O_WRONLY)
            except FileNotFoundError:
                spare = None  # removed by hand: make a new one
            except OSError:
                self.spares.untake()  # still a spare, for when the disk is back
                raise
        if spare is None:
            self.spares.missed()
            tmp = os.path.join(self.tmp, f"{self._pid}.{next(self._names)}")
            fd = fs.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        else:
            tmp = spare
        total = sum(map(len, parts))
        try:
            try:
                written = fs.writev(fd, parts)
                if written != total:  # short writes happen on full disks
                    rest = b"".join(parts)[written:]
                    while rest:
                        n = fs.write(fd, rest)
                        rest = rest[n:]
                # the rest of the spare's old record (fstat: far cheaper
                # than an ftruncate that changes nothing)
                if spare is not None and fs.fstat(fd).st_size > total:
                    fs.ftruncate(fd, total)
            except BaseException:
                fs.close(fd)
                raise
            if not keep:
                fs.close(fd)
        except BaseException:
            _unlink_quietly(fs, tmp)
            raise
        if spare is not None:
            self.spares.lent(tmp, name, total)
        return (tmp, fd) if keep else tmp

    def abandon(self, tmp):
        """Give up a temp file that will not be installed (a spare too:
        spares.py)."""
        self.spares.abandoned(tmp)
        _unlink_quietly(self.fs, tmp)

    def install(self, tmp, path, old_size=None):
        """Rename a temp file onto an item's path (making its bucket if
        needed); returns the folders whose entries changed. The file it
        replaces (of `old_size`; None: none) is displaced into tmp/: a spare,
        or (over spares.MAX_RECORD) held until the next barrier, then freed;
        under `--fsync no` a big one is freed by the rename at once."""
        self.kept.drop(path)  # its descriptor is no longer the key's file's
        parent = path.rpartition("/")[0]
        changed = [parent]
        if parent not in self._known_dirs:
            changed += self._make_bucket(parent)
        spares = self.spares
        name = path.rpartition("/")[2]
        what = None
        if spares.keeps(old_size):
            what, stale = self._leaving(name)
            if what is not FREE and self._swap(tmp, path, old_size, stale):
                self.exchanged += 1
                return changed
        if what is not FREE:
            # a plain rename (no old file to keep): the key's old records in
            # tmp/ are no fallback of this write (spares.py: supersede)
            if spares.must_sync(name):
                self._sync_first()
            spares.supersede(name)
            spares.supersede_big(name)
        # (FREE: the rename frees a file that may hold a superseded record;
        # the key's own records in tmp/ stay its fallback)
        try:
            self.fs.replace(tmp, path)
        except FileNotFoundError:
            # the bucket dir was removed under us (e.g. by hand); make it again
            self._known_dirs.discard(parent)
            changed += self._make_bucket(parent)
            self.fs.replace(tmp, path)
        spares.installed(tmp)
        self.renamed += 1
        return changed

    def _leaving(self, name):
        # what to do with the file leaving name's path (spares.py: leaving)
        what, stale = self.spares.leaving(name)
        if what is SYNC:
            self._sync_first()
        return what, stale

    def _sync_first(self):
        # a barrier before a rename that could otherwise let a superseded
        # record be restored (spares.py); none without a Durability
        if self.barrier is not None:
            self.barrier()

    def _swap(self, tmp, path, old_size, stale=None):
        # The new record takes the item's name and the old one takes the
        # temp's, in one step: the old inode is not freed, and is the item's
        # fallback until the next barrier. False: nothing was done.
        spares = self.spares
        fs = self.fs
        try:
            swapped = fs.exchange(tmp, path)
        except FileNotFoundError:
            return False  # no old file after all
        if swapped:
            spares.installed(tmp)
            spare = tmp
        else:
            # no renameat2 here: a second name for the old file, then the rename
            spare = spares.new_name()
            try:
                fs.link(path, spare)
            except OSError:
                return False
            try:
                fs.replace(tmp, path)
            except BaseException:
                _unlink_quietly(fs, spare)  # a name of the live file: never written over
                raise
            spares.installed(tmp)
        if self.displaced is not None:
            self.displaced(path, spare)
        name = path.rpartition("/")[2]
        if spares.wants(old_size):
            spares.released(spare, name, old_size, stale)
        else:
            spares.released_big(spare, name, stale)  # unlinked after the next barrier
        return True

    def _make_bucket(self, parent):
        # the folders that gained an entry: the new folders' parents
        changed = []
        for folder in (os.path.dirname(parent), parent):
            try:
                self.fs.mkdir(folder)
                changed.append(os.path.dirname(folder))
            except FileExistsError:
                pass
        self._known_dirs.add(parent)
        return changed

    def remove(self, path, size=None):
        """Remove a file (of `size`, if known: then it may be kept as a
        spare); True if there was one."""
        spares = self.spares
        self.kept.drop(path)
        try:
            name = os.path.basename(path)
            what = stale = None
            if spares.wants(size):
                what, stale = self._leaving(name)
            if what is not None and what is not FREE:
                spare = spares.new_name()
                self.fs.rename(path, spare)
                if self.displaced is not None:
                    self.displaced(path, spare)
                spares.released(spare, name, size, stale)
            else:
                self.fs.unlink(path)
            return True
        except FileNotFoundError:
            return False

    def quarantine(self, path):
        """Move a corrupt file aside, so it is never served and can be inspected."""
        target = os.path.join(self.quarantine_dir, os.path.basename(path))
        self.kept.drop(path)
        try:
            self.fs.replace(path, target)
        except FileNotFoundError:
            pass

    # -- walking every item, a bucket at a time ---------------------------

    def sub_buckets(self, top):
        """The numbers of the bucket folders under items/<top>, sorted."""
        try:
            names = self.fs.listdir(os.path.join(self.items, top))
        except FileNotFoundError:
            return []
        out = []
        for name in names:
            if len(name) != 2:
                continue  # not a bucket: the walk sets such things aside
            try:
                out.append(int(name, 16))
            except ValueError:
                continue
        return sorted(out)

    def has_top(self, top):
        return self.fs.isdir(os.path.join(self.items, top))

    def bucket_files(self, bucket):
        """[(path, size)] of the item files in one bucket."""
        out = []
        try:
            with self.fs.scandir(os.path.join(self.items, bucket)) as it:
                for entry in it:
                    try:
                        out.append((entry.path, entry.stat().st_size))
                    except FileNotFoundError:
                        pass
        except FileNotFoundError:
            pass
        return out

    def bucket_heads(self, bucket, n):
        """[(path, size, first n bytes)] of the files in one bucket, for a walk
        that needs only the records' headers. Read-only and forgiving: a file
        that vanished or cannot be read is left out (the background walk is
        the one that quarantines)."""
        fs = self.fs
        out = []
        try:
            it = fs.scandir(os.path.join(self.items, bucket))
        except FileNotFoundError:
            return out
        with it:
            for entry in it:
                # read on an fd: half the cost of a file object for a few hundred bytes
                try:
                    fd = fs.open(entry.path, os.O_RDONLY)
                except OSError:
                    continue
                try:
                    out.append((entry.path, fs.fstat(fd).st_size, fs.read(fd, n)))
                except OSError:
                    pass
                finally:
                    fs.close(fd)
        return out


def _unlink_quietly(fs, path):
    try:
        fs.unlink(path)
    except OSError:
        pass


def fsync_dir(fs, path):
    """Make a folder's entries (a rename, a new file) durable, through fs."""
    fd = fs.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fs.fsync(fd)
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.ENOTSUP):  # some file systems refuse
            raise
    finally:
        fs.close(fd)
