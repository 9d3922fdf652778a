"""A file system in memory that can lose power: the store's file-system
interface (docs/POWER_LOSS.md, store/filesystem.py's contract) over a model
that knows, for every file and directory, what the running system sees and
what the disk holds, and that builds, for a seed, a state the disk could hold
after a power loss. For tests only; no real file is touched.

The model (docs/POWER_LOSS.md says why, and where ext4 is kinder):

- Two layers. The page cache is what every call sees: a tree of directories
  (name -> inode number) and files (bytes). The disk holds, per file, its
  durable bytes (and so its durable size) and, per directory, its durable
  entries. Every change of a directory (create, mkdir, rename/replace,
  exchange, link, unlink) is also appended to a log of unsynced metadata
  operations, in order, as are size changes (for the history only: sizes are
  chosen per file at a crash).
- Barriers. fsync/fdatasync of a file make its bytes and size durable, not
  its name. fsync of a directory makes its entries durable (only that
  directory's half of a rename between two). syncfs(fd) and sync() make
  everything durable. The everysec helper (background_syncer) makes durable
  what was done before its start(), once the test lets the barrier pass.
- A power loss (crash(seed)) keeps the durable state plus a seeded choice of
  the unsynced work:
    metadata "ordered" (default; ext4's journal): a prefix of the log, in
        order;
    metadata "reordered" (conservative): each logged operation kept or lost
        on its own, applied in order, skipping any whose source entry is not
        there (a rename of a name whose creation was lost);
    data: each 512-byte sector of a file that differs from its durable bytes
        is old or new on its own (a torn write), and its size is the old or
        the new one (zeros where the kept size outruns the kept bytes);
    auto_da_alloc (default False): when True, a rename/replace over an
        existing file carries the renamed file's bytes with it: wherever the
        rename survives, so do the bytes it had then (ext4's auto_da_alloc).
  Files and directories no surviving name reaches are gone (fsck would put
  them in lost+found); a directory reached by two names keeps the first. The
  state is itself a FaultFS, all of it durable, with the same options: a
  store can be opened on it, written and crashed again.
- Faults: fail(op, errno, when, times, short) makes any method raise
  OSError(errno) (ENOSPC, EIO, EROFS, ...), when(path) says for which paths;
  a write can first come up short. The helper can be made to fail, hang or
  die (background_fails/background_hangs/background_dies).

Paths are absolute; fds are numbers from 10000 on, so a call that bypasses
the interface (os.close on one) fails loudly instead of touching a real fd.
"""

import errno
import itertools
import os
import random
import stat as statmode
import time

from .syncer import HelperGone

SECTOR = 512
ORDERED, REORDERED = "ordered", "reordered"
METADATA_MODES = (ORDERED, REORDERED)
FIRST_FD = 10000
ROOT = 1


def _error(code, path=None):
    # OSError(code, ...) is built as its subclass (FileNotFoundError, ...)
    if path is None:
        return OSError(code, os.strerror(code))
    return OSError(code, os.strerror(code), path)


class Stat:
    """What stat/fstat/DirEntry.stat return: the fields the store reads."""

    __slots__ = ("st_mode", "st_ino", "st_nlink", "st_size", "st_mtime")

    def __init__(self, node):
        self.st_mode = node.mode
        self.st_ino = node.ino
        self.st_nlink = node.nlink
        self.st_size = node.size
        self.st_mtime = node.mtime

    @property
    def st_mtime_ns(self):
        return int(self.st_mtime * 1e9)


class Inode:
    """A regular file: its bytes in the page cache, and its bytes on disk."""

    kind = "file"

    def __init__(self, ino, now, mode=0o644):
        self.ino = ino
        self.mode = statmode.S_IFREG | (mode & 0o7777)
        self.nlink = 0
        self.mtime = now
        self.data = bytearray()
        self.version = 0  # bumped by every change of data
        self.durable = b""
        self.durable_version = 0

    @property
    def size(self):
        return len(self.data)

    @property
    def dirty(self):
        return self.version != self.durable_version

    def make_durable(self, version, data):
        """The disk now holds `data` (as of `version`), unless it holds newer."""
        if version > self.durable_version:
            self.durable, self.durable_version = bytes(data), version

    def sync(self):
        self.durable, self.durable_version = bytes(self.data), self.version


class Dir:
    """A directory: its entries (name -> inode number) in the page cache and
    on disk."""

    kind = "dir"

    def __init__(self, ino, now, mode=0o755):
        self.ino = ino
        self.mode = statmode.S_IFDIR | (mode & 0o7777)
        self.nlink = 0
        self.mtime = now
        self.entries = {}
        self.version = 0
        self.durable = {}
        self.durable_version = 0

    size = 4096

    @property
    def dirty(self):
        return self.version != self.durable_version

    def make_durable(self, version, entries):
        if version > self.durable_version:
            self.durable, self.durable_version = dict(entries), version

    def sync(self):
        self.durable, self.durable_version = dict(self.entries), self.version


class Part:
    """One directory's share of a logged operation: the entries it needs to
    find (name -> inode) and the ones it sets (name -> inode, None: removed)."""

    __slots__ = ("dir", "needs", "sets")

    def __init__(self, dir_ino):
        self.dir = dir_ino
        self.needs = {}
        self.sets = {}


class Op:
    """One unsynced metadata operation, as the log keeps it."""

    __slots__ = ("seq", "kind", "paths", "parts", "size_of", "flush")

    def __init__(self, seq, kind, paths, parts=(), size_of=None, flush=None):
        self.seq = seq
        self.kind = kind
        self.paths = paths
        self.parts = list(parts)
        self.size_of = size_of  # a size change: (inode number, new size)
        # auto_da_alloc: (target directory, inode number, version, bytes):
        # the renamed file's bytes, durable wherever its new name is
        self.flush = flush

    @property
    def done(self):
        return not self.parts and self.size_of is None

    def __repr__(self):
        extra = f" size={self.size_of[1]}" if self.size_of else ""
        return f"#{self.seq} {self.kind} {' -> '.join(self.paths)}{extra}"


class OpLog:
    """The unsynced metadata operations, in the order they were made; each
    barrier takes away what it made durable."""

    def __init__(self):
        self.ops = []

    def __len__(self):
        return len(self.ops)

    def __iter__(self):
        return iter(self.ops)

    def append(self, op):
        self.ops.append(op)

    def resize(self, seq, ino, size, path):
        # consecutive size changes of one file are one entry: appends stay cheap
        last = self.ops[-1] if self.ops else None
        if last is not None and last.size_of is not None and last.size_of[0] == ino and not last.parts:
            last.size_of = (ino, size)
        else:
            self.ops.append(Op(seq, "resize", (path,), size_of=(ino, size)))

    def dir_synced(self, dir_ino):
        """A directory's entries are durable: its parts leave the log. Returns
        the auto_da_alloc flushes of the operations that set its entries."""
        flushes = []
        for op in self.ops:
            kept = [p for p in op.parts if p.dir != dir_ino]
            if len(kept) != len(op.parts) and op.flush is not None and op.flush[0] == dir_ino:
                flushes.append(op.flush)
            op.parts = kept
        self._prune()
        return flushes

    def file_synced(self, ino):
        for op in self.ops:
            if op.size_of is not None and op.size_of[0] == ino:
                op.size_of = None
        self._prune()

    def covered(self, seq):
        """Everything up to `seq` is durable (a background barrier passed)."""
        flushes = [op.flush for op in self.ops if op.seq <= seq and op.flush is not None]
        self.ops = [op for op in self.ops if op.seq > seq]
        return flushes

    def clear(self):
        self.ops = []

    def inodes(self):
        for op in self.ops:
            for part in op.parts:
                yield part.dir
                yield from part.needs.values()
                yield from (i for i in part.sets.values() if i is not None)

    def _prune(self):
        self.ops = [op for op in self.ops if not op.done]


class OpenFile:
    """An fd: the inode it reaches (whatever its names become), its offset."""

    __slots__ = ("ino", "path", "readable", "writable", "append", "offset")

    def __init__(self, ino, path, flags):
        access = flags & 3
        self.ino = ino
        self.path = path
        self.readable = access in (os.O_RDONLY, os.O_RDWR)
        self.writable = access in (os.O_WRONLY, os.O_RDWR)
        self.append = bool(flags & os.O_APPEND)
        self.offset = 0


class Fault:
    """An injected error: the next `times` calls of `op` on a path `when`
    accepts raise OSError(code) (times None: every one). With `short`, the
    first such write writes only `short` bytes and returns that count."""

    def __init__(self, op, code, when, times, short):
        self.op = op
        self.code = code
        self.when = when
        self.left = times
        self.short = short
        self.hits = 0

    @property
    def spent(self):
        return self.left is not None and self.left <= 0 and self.short is None


class DirEntry:
    """What scandir yields: os.DirEntry's name, path, is_dir, is_file, stat."""

    def __init__(self, fs, path, name, node):
        self._fs = fs
        self.name = name
        self.path = path
        self._kind = node.kind
        self._ino = node.ino
        self._stat = None

    def is_dir(self, follow_symlinks=True):
        return self._kind == "dir"

    def is_file(self, follow_symlinks=True):
        return self._kind == "file"

    def is_symlink(self):
        return False

    def inode(self):
        return self._ino

    def stat(self, follow_symlinks=True):
        if self._stat is None:
            self._stat = self._fs.stat(self.path)
        return self._stat

    def __repr__(self):
        return f"<DirEntry {self.name!r}>"


class Scandir:
    """scandir's iterator and context manager, over the entries listed at
    the call."""

    def __init__(self, entries):
        self._it = iter(entries)

    def __iter__(self):
        return self

    def __next__(self):
        return next(self._it)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self._it = iter(())


class FaultSyncer:
    """background_syncer(path): store/syncer.BackgroundSyncer's interface.
    start() snapshots what is in the page cache; the barrier passes (the
    snapshot becomes durable) only when the test says so: fs.finish_background()
    or poll(wait=...). A hung one answers no poll, however long it waits (as
    the real one's poll returns None when its wait runs out); kill() ends it,
    as the watchdog does, and the next background_syncer() is a new one."""

    _pids = itertools.count(1_000_000)  # fake, for the watchdog's log lines

    def __init__(self, fs, path):
        self._fs = fs
        self.path = path
        self.started = None
        self.state = "ok"  # "hung": never passes; "dead": HelperGone
        self.fail_next = 0  # errno the next barrier reports (0: none)
        self.barriers = 0
        self._snapshot = None
        self._answer = None
        self.closed = False
        self.pid = next(self._pids)

    @property
    def running(self):
        return self.started is not None

    def start(self):
        if self.state == "dead" or self.closed:
            raise HelperGone("the sync helper is gone: (FaultFS) it died")
        self._snapshot = self._fs._snapshot()
        self._answer = None
        self.started = time.perf_counter()
        for hook in self._fs.background_hooks:
            hook()

    def finish(self):
        """The barrier in flight ends now (unless hung); True if it did."""
        if self.started is None or self._answer is not None or self.state != "ok":
            return False
        code, self.fail_next = self.fail_next, 0
        if code == 0:
            self._fs._apply(self._snapshot)
        self._snapshot = None
        self._answer = code
        self.barriers += 1
        return True

    def poll(self, wait=False):
        if self.started is None:
            return None
        if self.state == "dead":
            self.started = None
            raise HelperGone("the sync helper exited (FaultFS)")
        if self._answer is None:
            if not wait:
                return None
            if self.state == "hung":
                return None
            self.finish()
        code, self._answer = self._answer, None
        self.started = None
        return code

    def kill(self):
        """The watchdog's SIGKILL: the barrier in flight is lost, never passed."""
        self.state = "dead"
        self.close()

    def close(self):
        self.closed = True
        self.started = None


class CrashBuilder:
    """Builds, from a FaultFS and a seed, one state its disk could hold after
    a power loss now (the rules are the module's docstring's)."""

    def __init__(self, fs, seed):
        self.fs = fs
        self.rng = random.Random(seed)

    def build(self):
        fs = self.fs
        entries = {ino: dict(n.durable) for ino, n in fs._nodes.items() if n.kind == "dir"}
        carried = {}  # inode -> (version, bytes) a surviving rename carried
        for op in self._surviving_ops():
            for part in op.parts:
                table = entries[part.dir]
                for name, ino in part.sets.items():
                    if ino is None:
                        table.pop(name, None)
                    else:
                        table[name] = ino
            if op.flush is not None and any(p.dir == op.flush[0] for p in op.parts):
                _, ino, version, data = op.flush
                if version > carried.get(ino, (-1, b""))[0]:
                    carried[ino] = (version, data)
        return self._reachable(entries, carried)

    def _surviving_ops(self):
        ops = list(self.fs._log)
        if self.fs.metadata == ORDERED:
            return ops[: self.rng.randint(0, len(ops))]
        kept = [op for op in ops if self.rng.random() < 0.5]
        return self._applicable(kept)

    def _applicable(self, kept):
        # reordered: an operation whose source entry is not there is skipped
        entries = {ino: dict(n.durable) for ino, n in self.fs._nodes.items() if n.kind == "dir"}
        out = []
        for op in kept:
            if all(entries[p.dir].get(name) == ino for p in op.parts for name, ino in p.needs.items()):
                for p in op.parts:
                    for name, ino in p.sets.items():
                        if ino is None:
                            entries[p.dir].pop(name, None)
                        else:
                            entries[p.dir][name] = ino
                out.append(op)
        return out

    def _reachable(self, entries, carried):
        old = self.fs
        new = FaultFS(
            metadata=old.metadata,
            auto_da_alloc=old.auto_da_alloc,
            has_syncfs=old.has_syncfs,
            has_exchange=old.has_exchange,
            clock=old._clock,
        )
        root = new._nodes[ROOT]
        root.mode = old._nodes[ROOT].mode
        todo = [(ROOT, root)]
        seen_dirs = {ROOT}
        files = {}
        while todo:
            ino, dir_ = todo.pop(0)
            for name in sorted(entries[ino]):
                child_ino = entries[ino][name]
                child = old._nodes[child_ino]
                if child.kind == "dir":
                    if child_ino in seen_dirs:
                        continue  # reached by a second name: fsck keeps one
                    seen_dirs.add(child_ino)
                    copy = Dir(child_ino, child.mtime, child.mode)
                    todo.append((child_ino, copy))
                else:
                    copy = files.get(child_ino)
                    if copy is None:
                        copy = files[child_ino] = Inode(child_ino, child.mtime, child.mode)
                        base = child.durable
                        if child_ino in carried and carried[child_ino][0] > child.durable_version:
                            base = carried[child_ino][1]
                        copy.data = bytearray(self._torn(base, bytes(child.data)))
                copy.nlink += 1
                dir_.entries[name] = child_ino
                new._nodes[child_ino] = copy
        for node in new._nodes.values():
            node.sync()
        new._inos = itertools.count(max(new._nodes) + 1)
        return new

    def _torn(self, old, new):
        """The bytes of a file whose disk held `old` and page cache `new`:
        each differing sector old or new, the size old or new."""
        if old == new:
            return new
        size = len(new) if len(old) == len(new) else self.rng.choice((len(old), len(new)))
        out = bytearray()
        for start in range(0, max(len(old), len(new)), SECTOR):
            was, now = old[start : start + SECTOR], new[start : start + SECTOR]
            pick = now if was == now or self.rng.random() < 0.5 else was
            out += pick.ljust(SECTOR, b"\0")
        return bytes(out[:size]).ljust(size, b"\0")


class FaultFS:
    """The store's file system in memory, with power loss and injected faults
    (the module's docstring states the model).

    metadata       "ordered" (ext4's journal) or "reordered" (conservative)
    auto_da_alloc  a rename over a file carries the renamed file's bytes
    has_syncfs     the has_syncfs attribute the store reads
    has_exchange   False: exchange() says it is not supported here
    clock          st_mtime's source (time.time)
    """

    def __init__(self, metadata=ORDERED, auto_da_alloc=False, has_syncfs=True, has_exchange=True, clock=time.time):
        if metadata not in METADATA_MODES:
            raise ValueError(f"unknown metadata mode {metadata!r}: one of {METADATA_MODES}")
        self.metadata = metadata
        self.auto_da_alloc = auto_da_alloc
        self.has_syncfs = has_syncfs
        self.has_exchange = has_exchange
        self._clock = clock
        root = Dir(ROOT, clock())
        root.nlink = 1
        self._nodes = {ROOT: root}
        self._inos = itertools.count(ROOT + 1)
        self._fds = {}
        self._next_fd = itertools.count(FIRST_FD)
        self._log = OpLog()
        self._seq = itertools.count(1)
        self._last_seq = 0
        self._faults = []
        self._syncers = []
        # called as each helper's barrier starts (its snapshot taken): the
        # tests' oracles note there what that barrier will cover
        self.background_hooks = []
        self.flocks = []  # (path, operation) of every flock call
        self.calls = {}  # method name -> how many times it was called

    # -- power loss ----------------------------------------------------------

    def crash(self, seed):
        """A new FaultFS: a state this one's disk could hold after a power
        loss now, chosen by `seed` (the same seed, the same state)."""
        return CrashBuilder(self, seed).build()

    def pending(self):
        """The unsynced metadata operations, oldest first (for a history)."""
        return [repr(op) for op in self._log]

    def files(self):
        """{path: bytes} of every file the page cache reaches."""
        return {path: bytes(node.data) for path, node in self._walk() if node.kind == "file"}

    def dirs(self):
        """The paths of every directory the page cache reaches, root included."""
        return [path for path, node in self._walk() if node.kind == "dir"]

    @property
    def open_fds(self):
        return len(self._fds)

    # -- faults --------------------------------------------------------------

    def fail(self, op, code, when=lambda path: True, times=1, short=None):
        """The next `times` calls of method `op` (None: all) on a path that
        `when(path)` accepts raise OSError(code). `when` gets the call's first
        path (for an fd, the path it was opened by). `short` (write, writev):
        the first such call writes only that many bytes and returns the
        count; the errors come on the calls after it. read_file and read_head
        also obey faults on "read". Returns the Fault (its .hits)."""
        if not callable(getattr(self, op, None)) or op.startswith("_"):
            raise ValueError(f"FaultFS has no method {op!r}")
        if short is not None and op not in ("write", "writev", "pwrite"):
            raise ValueError("short applies to write, writev and pwrite only")
        fault = Fault(op, code, when, times, short or None)
        self._faults.append(fault)
        return fault

    def clear_faults(self):
        self._faults = []

    def background_fails(self, code):
        """The next barrier of every helper made so far reports errno `code`
        (and makes nothing durable)."""
        for s in self._syncers:
            s.fail_next = code

    def background_hangs(self):
        """Every helper made so far never finishes a barrier again."""
        for s in self._syncers:
            s.state = "hung"

    def background_dies(self):
        """Every helper made so far is gone: start and poll raise HelperGone."""
        for s in self._syncers:
            s.state = "dead"

    def finish_background(self):
        """The helpers' barriers in flight pass now; how many did."""
        passed = sum(s.finish() for s in self._syncers)
        self._collect()
        return passed

    def _fault(self, op, path):
        self.calls[op] = self.calls.get(op, 0) + 1
        for fault in self._faults:
            if fault.op != op or fault.spent or not fault.when(path):
                continue
            fault.hits += 1
            if fault.short is not None:
                short, fault.short = fault.short, None
                return short
            if fault.left is not None:
                fault.left -= 1
            raise _error(fault.code, path)
        return None

    # -- paths ---------------------------------------------------------------

    @staticmethod
    def _names(path):
        path = os.fspath(path)
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        return [n for n in os.path.normpath(path).split("/") if n and n != "."]

    def _resolve(self, path):
        node = self._nodes[ROOT]
        for name in self._names(path):
            if node.kind != "dir":
                raise _error(errno.ENOTDIR, path)
            ino = node.entries.get(name)
            if ino is None:
                raise _error(errno.ENOENT, path)
            node = self._nodes[ino]
        return node

    def _find(self, path):
        try:
            return self._resolve(path)
        except (FileNotFoundError, NotADirectoryError):
            return None

    def _parent(self, path):
        """The directory that holds `path`, and the name in it."""
        names = self._names(path)
        if not names:
            raise _error(errno.EBUSY, path)
        parent = self._resolve("/" + "/".join(names[:-1]))
        if parent.kind != "dir":
            raise _error(errno.ENOTDIR, path)
        return parent, names[-1]

    def _walk(self):
        todo = [("/", self._nodes[ROOT])]
        while todo:
            path, node = todo.pop(0)
            yield path, node
            if node.kind == "dir":
                for name in sorted(node.entries):
                    todo.append((os.path.join(path, name), self._nodes[node.entries[name]]))

    # -- the log of metadata changes ----------------------------------------

    def _change(self, kind, paths, sets, needs=(), flush=None):
        """Apply entry changes [(dir, name, ino or None)] to the page cache
        and log them as one operation."""
        seq = self._last_seq = next(self._seq)
        parts = {}
        for dir_, name, ino in needs:
            parts.setdefault(dir_.ino, Part(dir_.ino)).needs[name] = ino
        now = self._clock()
        for dir_, name, ino in sets:
            old = dir_.entries.get(name)
            if old is not None:
                self._nodes[old].nlink -= 1
            if ino is None:
                dir_.entries.pop(name, None)
            else:
                dir_.entries[name] = ino
                self._nodes[ino].nlink += 1
            dir_.version += 1
            dir_.mtime = now
            parts.setdefault(dir_.ino, Part(dir_.ino)).sets[name] = ino
        self._log.append(Op(seq, kind, tuple(paths), parts.values(), flush=flush))

    def _new_node(self, cls, mode):
        node = cls(next(self._inos), self._clock(), mode)
        self._nodes[node.ino] = node
        return node

    def _collect(self):
        # an inode no name, fd or pending operation reaches (in memory or on
        # disk) can never come back
        live = {ROOT}
        live.update(f.ino for f in self._fds.values())
        live.update(self._log.inodes())
        for node in self._nodes.values():
            if node.kind == "dir":
                live.update(node.entries.values())
                live.update(node.durable.values())
        for ino in list(self._nodes):
            if ino not in live:
                del self._nodes[ino]

    # -- fd level ------------------------------------------------------------

    def _open_file(self, fd):
        try:
            return self._fds[fd]
        except (KeyError, TypeError):
            raise _error(errno.EBADF) from None

    def open(self, path, flags, mode=0o666):
        self._fault("open", path)
        writable = flags & 3 in (os.O_WRONLY, os.O_RDWR)
        node = self._find(path)
        if node is None:
            if not flags & os.O_CREAT:
                self._resolve(path)  # raises the right error
            parent, name = self._parent(path)
            node = self._new_node(Inode, mode)
            self._change("create", (path,), [(parent, name, node.ino)])
        elif flags & os.O_CREAT and flags & os.O_EXCL:
            raise _error(errno.EEXIST, path)
        if node.kind == "dir":
            if writable or flags & os.O_CREAT:
                raise _error(errno.EISDIR, path)
        elif flags & os.O_DIRECTORY:
            raise _error(errno.ENOTDIR, path)
        fd = next(self._next_fd)
        self._fds[fd] = OpenFile(node.ino, os.fspath(path), flags)
        if flags & os.O_TRUNC and writable and node.size:
            self._resize(node, 0, path)
        return fd

    def close(self, fd):
        f = self._open_file(fd)
        self._fault("close", f.path)
        del self._fds[fd]

    def read(self, fd, n):
        f = self._open_file(fd)
        self._fault("read", f.path)
        node = self._nodes[f.ino]
        if node.kind == "dir":
            raise _error(errno.EISDIR, f.path)
        if not f.readable:
            raise _error(errno.EBADF, f.path)
        data = bytes(node.data[f.offset : f.offset + n])
        f.offset += len(data)
        return data

    def write(self, fd, data):
        return self._write("write", fd, bytes(data))

    def writev(self, fd, buffers):
        return self._write("writev", fd, b"".join(bytes(b) for b in buffers))

    def pwrite(self, fd, data, offset):
        """os.pwrite: at `offset`, the fd's offset left alone. Over durable
        bytes its sectors tear at a crash as any unsynced write's do."""
        return self._write("pwrite", fd, bytes(data), offset)

    def _write(self, op, fd, data, offset=None):
        f = self._open_file(fd)
        limit = self._fault(op, f.path)
        if not f.writable:
            raise _error(errno.EBADF, f.path)
        if limit is not None:
            data = data[:limit]
        node = self._nodes[f.ino]
        at = offset if offset is not None else node.size if f.append else f.offset
        old_size = node.size
        if at > old_size:
            node.data.extend(bytes(at - old_size))
        node.data[at : at + len(data)] = data
        node.version += 1
        node.mtime = self._clock()
        if offset is None:
            f.offset = at + len(data)
        if node.size != old_size:
            self._log.resize(self._next_seq(), node.ino, node.size, f.path)
        return len(data)

    def _next_seq(self):
        self._last_seq = next(self._seq)
        return self._last_seq

    def _resize(self, node, length, path):
        if length < node.size:
            del node.data[length:]
        else:
            node.data.extend(bytes(length - node.size))
        node.version += 1
        node.mtime = self._clock()
        self._log.append(Op(self._next_seq(), "truncate", (os.fspath(path),), size_of=(node.ino, length)))

    def fstat(self, fd):
        f = self._open_file(fd)
        self._fault("fstat", f.path)
        return Stat(self._nodes[f.ino])

    def ftruncate(self, fd, length):
        f = self._open_file(fd)
        self._fault("ftruncate", f.path)
        if not f.writable or length < 0:
            raise _error(errno.EINVAL, f.path)
        self._resize(self._nodes[f.ino], length, f.path)

    def fsync(self, fd):
        """A file: its bytes and size are durable (not its name). A
        directory: its entries are durable."""
        f = self._open_file(fd)
        self._fault("fsync", f.path)
        self._sync_node(self._nodes[f.ino])

    def fdatasync(self, fd):
        f = self._open_file(fd)
        self._fault("fdatasync", f.path)
        self._sync_node(self._nodes[f.ino])

    def _sync_node(self, node):
        node.sync()
        if node.kind == "file":
            self._log.file_synced(node.ino)
        else:
            self._apply_flushes(self._log.dir_synced(node.ino))

    def _apply_flushes(self, flushes):
        for _, ino, version, data in flushes:
            node = self._nodes.get(ino)
            if node is not None:
                node.make_durable(version, data)

    def syncfs(self, fd):
        """Everything is durable."""
        f = self._open_file(fd)
        self._fault("syncfs", f.path)
        self._sync_all()

    def flock(self, fd, operation):
        f = self._open_file(fd)
        self._fault("flock", f.path)
        self.flocks.append((f.path, operation))

    # -- path level ----------------------------------------------------------

    def stat(self, path):
        self._fault("stat", path)
        return Stat(self._resolve(path))

    def replace(self, src, dst):
        self._fault("replace", src)
        self._rename("replace", src, dst)

    def rename(self, src, dst):
        self._fault("rename", src)
        self._rename("rename", src, dst)

    def _rename(self, kind, src, dst):
        src_dir, src_name = self._parent(src)
        node = self._resolve(src)
        dst_dir, dst_name = self._parent(dst)
        if dst_dir.ino == src_dir.ino and dst_name == src_name:
            return
        target = self._find(dst)
        if target is not None:
            if target.ino == node.ino:
                return  # two names of one file: POSIX does nothing
            if node.kind == "dir" and target.kind != "dir":
                raise _error(errno.ENOTDIR, dst)
            if node.kind != "dir" and target.kind == "dir":
                raise _error(errno.EISDIR, dst)
            if target.kind == "dir" and target.entries:
                raise _error(errno.ENOTEMPTY, dst)
        if node.kind == "dir" and self._names(dst)[: len(self._names(src))] == self._names(src):
            raise _error(errno.EINVAL, dst)
        flush = None
        if self.auto_da_alloc and target is not None and node.kind == "file":
            flush = (dst_dir.ino, node.ino, node.version, bytes(node.data))
        self._change(
            kind,
            (src, dst),
            [(src_dir, src_name, None), (dst_dir, dst_name, node.ino)],
            needs=[(src_dir, src_name, node.ino)],
            flush=flush,
        )

    def exchange(self, a, b):
        """Swap two names (renameat2 RENAME_EXCHANGE); False if this FaultFS
        was made without it."""
        self._fault("exchange", a)
        if not self.has_exchange:
            return False
        a_dir, a_name = self._parent(a)
        b_dir, b_name = self._parent(b)
        a_node, b_node = self._resolve(a), self._resolve(b)
        if a_node.ino == b_node.ino:
            return True
        self._change(
            "exchange",
            (a, b),
            [(a_dir, a_name, b_node.ino), (b_dir, b_name, a_node.ino)],
            needs=[(a_dir, a_name, a_node.ino), (b_dir, b_name, b_node.ino)],
        )
        return True

    def link(self, src, dst):
        self._fault("link", src)
        node = self._resolve(src)
        if node.kind == "dir":
            raise _error(errno.EPERM, src)
        dst_dir, dst_name = self._parent(dst)
        if dst_name in dst_dir.entries:
            raise _error(errno.EEXIST, dst)
        src_dir, src_name = self._parent(src)
        self._change("link", (src, dst), [(dst_dir, dst_name, node.ino)], needs=[(src_dir, src_name, node.ino)])

    def unlink(self, path):
        self._fault("unlink", path)
        node = self._resolve(path)
        if node.kind == "dir":
            raise _error(errno.EISDIR, path)
        parent, name = self._parent(path)
        self._change("unlink", (path,), [(parent, name, None)], needs=[(parent, name, node.ino)])

    def rmdir(self, path):
        self._fault("rmdir", path)
        node = self._resolve(path)
        if node.kind != "dir":
            raise _error(errno.ENOTDIR, path)
        if node.entries:
            raise _error(errno.ENOTEMPTY, path)
        parent, name = self._parent(path)
        self._change("rmdir", (path,), [(parent, name, None)], needs=[(parent, name, node.ino)])

    def mkdir(self, path, mode=0o777):
        self._fault("mkdir", path)
        self._mkdir(path, mode)

    def _mkdir(self, path, mode=0o777):
        parent, name = self._parent(path)
        if name in parent.entries:
            raise _error(errno.EEXIST, path)
        node = self._new_node(Dir, mode)
        self._change("mkdir", (path,), [(parent, name, node.ino)])

    def makedirs(self, path, exist_ok=False):
        self._fault("makedirs", path)
        names = self._names(path)
        for depth in range(1, len(names) + 1):
            sub = "/" + "/".join(names[:depth])
            node = self._find(sub)
            if node is None:
                self._mkdir(sub)
            elif depth == len(names):
                if not exist_ok or node.kind != "dir":
                    raise _error(errno.EEXIST, path)
            elif node.kind != "dir":
                raise _error(errno.ENOTDIR, path)

    def listdir(self, path):
        self._fault("listdir", path)
        node = self._resolve(path)
        if node.kind != "dir":
            raise _error(errno.ENOTDIR, path)
        return list(node.entries)

    def scandir(self, path):
        self._fault("scandir", path)
        node = self._resolve(path)
        if node.kind != "dir":
            raise _error(errno.ENOTDIR, path)
        path = os.fspath(path)
        return Scandir(
            [DirEntry(self, os.path.join(path, name), name, self._nodes[ino]) for name, ino in node.entries.items()]
        )

    def isdir(self, path):
        self._fault("isdir", path)
        node = self._find(path)
        return node is not None and node.kind == "dir"

    def exists(self, path):
        self._fault("exists", path)
        return self._find(path) is not None

    def read_file(self, path):
        self._fault("read_file", path)
        return self._read_path(path, None)

    def read_head(self, path, n):
        self._fault("read_head", path)
        return self._read_path(path, n)

    def _read_path(self, path, n):
        self._fault("read", path)
        try:
            node = self._resolve(path)
        except FileNotFoundError:
            return None
        if node.kind == "dir":
            raise _error(errno.EISDIR, path)
        return bytes(node.data if n is None else node.data[:n])

    # -- process level -------------------------------------------------------

    def sync(self):
        self._fault("sync", "/")
        self._sync_all()

    def _sync_all(self):
        for node in self._nodes.values():
            node.sync()
        self._log.clear()
        self._collect()

    def background_syncer(self, path):
        self._fault("background_syncer", path)
        self._resolve(path)
        syncer = FaultSyncer(self, os.fspath(path))
        self._syncers.append(syncer)
        return syncer

    def _snapshot(self):
        """What a barrier started now covers: the dirty files and directories
        as they are, and the log up to now."""
        return (
            self._last_seq,
            {ino: (n.version, bytes(n.data) if n.kind == "file" else dict(n.entries))
             for ino, n in self._nodes.items() if n.dirty},
        )

    def _apply(self, snapshot):
        seq, nodes = snapshot
        for ino, (version, content) in nodes.items():
            node = self._nodes.get(ino)
            if node is not None:
                node.make_durable(version, content)
        self._apply_flushes(self._log.covered(seq))
