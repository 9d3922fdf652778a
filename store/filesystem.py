"""The store's one way to the file system: every file operation the store
makes (open, read, write, truncate, fsync, syncfs, rename, exchange, link,
unlink, mkdir, listing, the everysec helper) is a method of one object, handed
to the store when it is opened (`Store(path, fs=...)`), as LevelDB's `Env` and
RocksDB's `FileSystem` are. Nothing else in store/ calls os on a data-dir path.

`OSFileSystem` is the real one: the os functions themselves, bound as class
attributes, so a call costs one attribute load more than calling os directly.
Tests give the store another implementation (store/faultfs.py's `FaultFS`, an
in-memory model that can lose what was not made durable) or a subclass of this
one that records or fails calls.

The contract (agreed for issue 17; any implementation offers all of it):
paths are absolute str paths; signatures and errors are the os module's
(FileNotFoundError, FileExistsError, OSError with an errno) unless said below.

    fd level     open(path, flags, mode=0o666) -> fd, close, read(fd, n),
                 write(fd, data), writev(fd, buffers), pwrite(fd, data, offset),
                 fstat(fd), ftruncate,
                 fsync, fdatasync, syncfs(fd) (one file system's barrier),
                 flock(fd, operation)
    path level   stat, replace, rename, exchange(a, b) -> bool (False: no
                 RENAME_EXCHANGE here; callers fall back to link + replace),
                 link, unlink, mkdir, makedirs, listdir, scandir, isdir,
                 exists, read_file(path) / read_head(path, n) -> bytes, or
                 None if there is no such file
    process      sync(), has_syncfs, background_syncer(path) (an object with
                 the interface of store/syncer.BackgroundSyncer)
"""

import fcntl
import os

from . import syscalls
from .syncer import BackgroundSyncer


class OSFileSystem:
    """The real file system: plain os calls."""

    # -- fd level
    open = staticmethod(os.open)
    close = staticmethod(os.close)
    read = staticmethod(os.read)
    write = staticmethod(os.write)
    writev = staticmethod(os.writev)
    pwrite = staticmethod(os.pwrite)
    fstat = staticmethod(os.fstat)
    ftruncate = staticmethod(os.ftruncate)
    fsync = staticmethod(os.fsync)
    fdatasync = staticmethod(os.fdatasync)
    syncfs = staticmethod(syscalls.syncfs)
    flock = staticmethod(fcntl.flock)

    # -- path level
    stat = staticmethod(os.stat)
    replace = staticmethod(os.replace)
    rename = staticmethod(os.rename)
    link = staticmethod(os.link)
    unlink = staticmethod(os.unlink)
    mkdir = staticmethod(os.mkdir)
    makedirs = staticmethod(os.makedirs)
    listdir = staticmethod(os.listdir)
    scandir = staticmethod(os.scandir)
    isdir = staticmethod(os.path.isdir)
    exists = staticmethod(os.path.exists)

    # -- process level
    sync = staticmethod(os.sync)
    has_syncfs = syscalls.HAVE_SYNCFS

    def __init__(self):
        # one per file system object: it stops trying once renameat2 is refused
        self._exchange = syscalls.Exchange()
        if type(self).exchange is OSFileSystem.exchange:
            # every overwrite makes one: no frame of ours around it (a
            # subclass that defines its own exchange keeps it)
            self.exchange = self._exchange

    def exchange(self, a, b):
        """Swap two existing paths in one step; False if that is not possible here."""
        return self._exchange(a, b)

    @staticmethod
    def read_file(path):
        """The whole file's bytes, or None if there is none."""
        try:
            with open(path, "rb") as f:
                return f.read()
        except FileNotFoundError:
            return None

    @staticmethod
    def read_head(path, n):
        """The first n bytes of the file, or None if there is none."""
        try:
            with open(path, "rb") as f:
                return f.read(n)
        except FileNotFoundError:
            return None

    @staticmethod
    def background_syncer(path):
        """everysec's helper process, barriers of the file system holding path."""
        return BackgroundSyncer(path)
