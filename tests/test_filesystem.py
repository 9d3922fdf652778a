"""store/filesystem.py: OSFileSystem does what the os call of each name does,
and a Store makes every file operation through the fs it was opened with."""

import builtins
import collections
import errno
import fcntl
import io
import os
import sys

import pytest

from store import ALWAYS, EVERYSEC, NO, Mode, Store
from store import syscalls
from store.filesystem import OSFileSystem
from store.syncer import BackgroundSyncer

# The agreed interface (issue 17 item 1): every implementation has all of it.
CONTRACT = (
    "open", "close", "read", "write", "writev", "pwrite", "fstat", "ftruncate", "fsync",
    "fdatasync", "syncfs", "flock",
    "stat", "replace", "rename", "exchange", "link", "unlink", "mkdir",
    "makedirs", "listdir", "scandir", "isdir", "exists", "read_file", "read_head",
    "sync", "background_syncer",
)  # fmt: skip


@pytest.fixture
def fs():
    return OSFileSystem()


def make_file(path, data=b"data"):
    with open(path, "wb") as f:
        f.write(data)
    return str(path)


def test_it_offers_every_call_of_the_contract(fs):
    assert [name for name in CONTRACT if not callable(getattr(fs, name, None))] == []
    assert isinstance(fs.has_syncfs, bool)


# == fd level ===================================================================


def test_open_creates_a_file_with_the_flags_and_mode_given(fs, tmp_path):
    fd = fs.open(str(tmp_path / "f"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    fs.close(fd)
    assert (tmp_path / "f").stat().st_mode & 0o777 == 0o600


def test_open_of_a_missing_file_raises_file_not_found(fs, tmp_path):
    with pytest.raises(FileNotFoundError):
        fs.open(str(tmp_path / "missing"), os.O_RDONLY)


def test_open_with_o_excl_of_an_existing_file_raises_file_exists(fs, tmp_path):
    path = make_file(tmp_path / "f")
    with pytest.raises(FileExistsError):
        fs.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL)


def test_close_releases_the_descriptor(fs, tmp_path):
    fd = fs.open(make_file(tmp_path / "f"), os.O_RDONLY)
    fs.close(fd)
    with pytest.raises(OSError) as e:
        os.fstat(fd)
    assert e.value.errno == errno.EBADF


def test_read_returns_up_to_n_bytes(fs, tmp_path):
    fd = fs.open(make_file(tmp_path / "f", b"abcdef"), os.O_RDONLY)
    try:
        assert fs.read(fd, 4) == b"abcd"
    finally:
        fs.close(fd)


def test_write_returns_the_bytes_written(fs, tmp_path):
    fd = fs.open(str(tmp_path / "f"), os.O_WRONLY | os.O_CREAT)
    try:
        assert fs.write(fd, b"hello") == 5
    finally:
        fs.close(fd)
    assert (tmp_path / "f").read_bytes() == b"hello"


def test_writev_writes_the_buffers_in_order(fs, tmp_path):
    fd = fs.open(str(tmp_path / "f"), os.O_WRONLY | os.O_CREAT)
    try:
        assert fs.writev(fd, [b"ab", b"cd", b"e"]) == 5
    finally:
        fs.close(fd)
    assert (tmp_path / "f").read_bytes() == b"abcde"


def test_fstat_gives_the_size_of_an_open_file(fs, tmp_path):
    fd = fs.open(make_file(tmp_path / "f", b"12345"), os.O_RDONLY)
    try:
        assert fs.fstat(fd).st_size == 5
    finally:
        fs.close(fd)


def test_ftruncate_cuts_a_file_to_the_length_given(fs, tmp_path):
    fd = fs.open(make_file(tmp_path / "f", b"12345"), os.O_WRONLY)
    try:
        fs.ftruncate(fd, 2)
    finally:
        fs.close(fd)
    assert (tmp_path / "f").read_bytes() == b"12"


@pytest.mark.parametrize("call", ["fsync", "fdatasync"])
def test_fsync_and_fdatasync_succeed_on_a_written_file(fs, tmp_path, call):
    fd = fs.open(make_file(tmp_path / "f"), os.O_WRONLY)
    try:
        assert getattr(fs, call)(fd) is None
    finally:
        fs.close(fd)


@pytest.mark.skipif(not syscalls.HAVE_SYNCFS, reason="no syncfs in this C library")
def test_syncfs_succeeds_on_a_folder(fs, tmp_path):
    fd = fs.open(str(tmp_path), os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert fs.syncfs(fd) is None
    finally:
        fs.close(fd)


def test_has_syncfs_says_whether_the_c_library_has_it(fs):
    assert fs.has_syncfs is syscalls.HAVE_SYNCFS


def test_flock_refuses_a_second_exclusive_lock(fs, tmp_path):
    path = make_file(tmp_path / "lock")
    first, second = fs.open(path, os.O_RDWR), fs.open(path, os.O_RDWR)
    try:
        fs.flock(first, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(BlockingIOError):
            fs.flock(second, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        fs.close(first)
        fs.close(second)


# == path level =================================================================


def test_stat_gives_size_and_mtime(fs, tmp_path):
    path = make_file(tmp_path / "f", b"123")
    st = fs.stat(path)
    assert (st.st_size, st.st_mtime) == (3, os.stat(path).st_mtime)


def test_stat_of_a_missing_file_raises_file_not_found(fs, tmp_path):
    with pytest.raises(FileNotFoundError):
        fs.stat(str(tmp_path / "missing"))


@pytest.mark.parametrize("call", ["replace", "rename"])
def test_replace_and_rename_move_a_file_over_another(fs, tmp_path, call):
    src, dst = make_file(tmp_path / "a", b"new"), make_file(tmp_path / "b", b"old")
    getattr(fs, call)(src, dst)
    assert not os.path.exists(src)
    assert (tmp_path / "b").read_bytes() == b"new"


def test_exchange_swaps_two_files_or_says_it_cannot(fs, tmp_path):
    a, b = make_file(tmp_path / "a", b"A"), make_file(tmp_path / "b", b"B")
    if fs.exchange(a, b):
        assert ((tmp_path / "a").read_bytes(), (tmp_path / "b").read_bytes()) == (b"B", b"A")
    else:  # no renameat2 here: nothing was done
        assert ((tmp_path / "a").read_bytes(), (tmp_path / "b").read_bytes()) == (b"A", b"B")


def test_exchange_with_a_missing_file_raises_file_not_found_or_says_it_cannot(fs, tmp_path):
    a = make_file(tmp_path / "a")
    try:
        assert fs.exchange(a, str(tmp_path / "missing")) is False
    except FileNotFoundError:
        pass


def test_a_subclass_keeps_its_own_exchange(tmp_path):
    class NoExchange(OSFileSystem):
        def exchange(self, a, b):
            return False

    a, b = make_file(tmp_path / "a", b"A"), make_file(tmp_path / "b", b"B")
    assert NoExchange().exchange(a, b) is False
    assert (tmp_path / "a").read_bytes() == b"A"


def test_link_gives_a_file_a_second_name(fs, tmp_path):
    a = make_file(tmp_path / "a", b"same")
    fs.link(a, str(tmp_path / "b"))
    assert os.stat(a).st_nlink == 2
    assert (tmp_path / "b").read_bytes() == b"same"


def test_unlink_removes_a_file(fs, tmp_path):
    fs.unlink(make_file(tmp_path / "f"))
    assert not (tmp_path / "f").exists()


def test_unlink_of_a_missing_file_raises_file_not_found(fs, tmp_path):
    with pytest.raises(FileNotFoundError):
        fs.unlink(str(tmp_path / "missing"))


def test_mkdir_makes_a_folder_and_refuses_an_existing_one(fs, tmp_path):
    fs.mkdir(str(tmp_path / "d"))
    assert (tmp_path / "d").is_dir()
    with pytest.raises(FileExistsError):
        fs.mkdir(str(tmp_path / "d"))


def test_makedirs_makes_the_parents_too(fs, tmp_path):
    fs.makedirs(str(tmp_path / "a" / "b"), exist_ok=True)
    fs.makedirs(str(tmp_path / "a" / "b"), exist_ok=True)
    assert (tmp_path / "a" / "b").is_dir()


def test_listdir_names_a_folders_entries(fs, tmp_path):
    make_file(tmp_path / "x")
    (tmp_path / "y").mkdir()
    assert sorted(fs.listdir(str(tmp_path))) == ["x", "y"]


def test_scandir_gives_entries_with_name_path_kind_and_size(fs, tmp_path):
    make_file(tmp_path / "f", b"1234")
    (tmp_path / "d").mkdir()
    with fs.scandir(str(tmp_path)) as it:
        entries = {e.name: (e.path, e.is_dir(), e.is_file(), e.stat().st_size if e.is_file() else None) for e in it}
    assert entries == {
        "f": (str(tmp_path / "f"), False, True, 4),
        "d": (str(tmp_path / "d"), True, False, None),
    }


def test_isdir_is_true_for_a_folder_only(fs, tmp_path):
    path = make_file(tmp_path / "f")
    assert (fs.isdir(str(tmp_path)), fs.isdir(path), fs.isdir(str(tmp_path / "missing"))) == (True, False, False)


def test_exists_is_true_for_an_existing_path_only(fs, tmp_path):
    path = make_file(tmp_path / "f")
    assert (fs.exists(path), fs.exists(str(tmp_path / "missing"))) == (True, False)


def test_read_file_returns_the_whole_file(fs, tmp_path):
    assert fs.read_file(make_file(tmp_path / "f", b"x" * 100_000)) == b"x" * 100_000


def test_read_file_of_a_missing_file_is_none(fs, tmp_path):
    assert fs.read_file(str(tmp_path / "missing")) is None


def test_read_head_returns_the_first_n_bytes(fs, tmp_path):
    assert fs.read_head(make_file(tmp_path / "f", b"abcdef"), 3) == b"abc"


def test_read_head_of_a_missing_file_is_none(fs, tmp_path):
    assert fs.read_head(str(tmp_path / "missing"), 3) is None


# == process level ==============================================================


def test_sync_succeeds(fs):
    assert fs.sync() is None


@pytest.mark.skipif(not syscalls.HAVE_SYNCFS, reason="the helper runs syncfs")
def test_background_syncer_makes_a_barrier_in_a_helper(fs, tmp_path):
    syncer = fs.background_syncer(str(tmp_path))
    try:
        assert isinstance(syncer, BackgroundSyncer)
        syncer.start()
        assert syncer.poll(wait=True) == 0
    finally:
        syncer.close()


# == the store goes through its fs ==============================================


def test_a_store_opened_without_an_fs_uses_the_os(tmp_path):
    store = Store(str(tmp_path / "data"))
    try:
        assert type(store.fs) is OSFileSystem
    finally:
        store.close()


def test_a_store_hands_its_fs_to_every_part(tmp_path):
    fs = OSFileSystem()
    store = Store(str(tmp_path / "data"), fs=fs, fsync_method="fsync")
    try:
        parts = (store.fs, store.dir.fs, store.dir.spares.fs, store.durability.fs, store.durability.barrier.fs)
        assert all(part is fs for part in parts)
    finally:
        store.close()


class RecordingFS(OSFileSystem):
    """The real file system, counting the calls of each name."""

    def __init__(self):
        super().__init__()
        self.calls = collections.Counter()
        for name in CONTRACT:
            setattr(self, name, self._recorded(name, getattr(self, name)))

    def _recorded(self, name, call):
        def recorded(*args, **kwargs):
            self.calls[name] += 1
            return call(*args, **kwargs)

        return recorded


# The os-level calls a store module might make around its fs; each is
# replaced by a guard that notes any call made from store/ (but from the
# modules that implement the real fs) and then does the real thing.
GUARDED = [(os, name) for name in (
    "open", "close", "read", "write", "writev", "pread", "pwrite", "fstat", "ftruncate",
    "fsync", "fdatasync", "sync", "stat", "lstat", "replace", "rename", "link", "unlink",
    "remove", "mkdir", "makedirs", "rmdir", "listdir", "scandir", "truncate", "utime",
)] + [(os.path, name) for name in ("exists", "isdir", "isfile", "getsize", "getmtime")] + [
    (builtins, "open"), (io, "open"), (fcntl, "flock"), (syscalls, "syncfs"), (syscalls, "_RENAMEAT2"),
]  # fmt: skip
STORE_DIR = os.path.dirname(os.path.abspath(syscalls.__file__))
FS_MODULES = {os.path.join(STORE_DIR, name) for name in ("filesystem.py", "syscalls.py", "syncer.py")}


@pytest.fixture
def bypasses(monkeypatch):
    """The os-level file calls made from store/ behind its fs's back."""
    found = []

    def guard(module, name, real):
        def guarded(*args, **kwargs):
            caller = sys._getframe(1).f_code.co_filename
            if os.path.dirname(caller) == STORE_DIR and caller not in FS_MODULES:
                found.append(f"{module.__name__}.{name} from {os.path.basename(caller)}:{sys._getframe(1).f_lineno}")
            return real(*args, **kwargs)

        return guarded

    for module, name in GUARDED:
        real = getattr(module, name, None)
        if real is not None:
            monkeypatch.setattr(module, name, guard(module, name, real))
    return found


def workload(store):
    """Sets, overwrites, big and small values, gets, deletes, appends, a
    flush, the idle loop's spares and the walks."""
    for i in range(40):
        value = b"v%d" % i * (300 if i % 7 == 0 else 3)
        store.store(Mode.SET, b"k%d" % (i % 9), 0, 0, value)
        store.commit()
    store.store(Mode.APPEND, b"k1", 0, 0, b"+")
    store.commit()
    store.idle_tick(1.0)
    store.sync_if_due()
    store.durability.sync_if_due(force=True)
    for i in range(12):
        store.get(b"k%d" % i)
    store.delete(b"k2")
    store.delete(b"k3")
    store.commit()
    list(store.live_heads())
    store.flush_all(0)
    store.store(Mode.SET, b"after", 0, 0, b"flush")
    store.commit()
    while store.tick():
        pass


CONFIGURATIONS = {
    # name: (Store keyword arguments, calls that must have been seen)
    "always": (dict(fsync=ALWAYS), {"syncfs"} if syscalls.HAVE_SYNCFS else {"fdatasync"}),
    "everysec, fsync method": (dict(fsync=EVERYSEC, fsync_method="fsync"), {"fdatasync"}),
    "everysec, helper": (
        dict(fsync=EVERYSEC, background_sync=True),
        {"background_syncer"} if syscalls.HAVE_SYNCFS else set(),
    ),
    "no, evicting": (dict(fsync=NO, max_disk=8192, disk_policy="evict"), {"stat"}),  # two-slot files: ~1 KiB each
}
EVERY_STORE_SEES = {
    "makedirs", "open", "flock", "ftruncate", "write", "writev", "fstat", "fsync", "close",
    "replace", "exchange", "unlink", "read_file", "scandir", "isdir", "listdir",
}  # fmt: skip


@pytest.mark.parametrize("name", CONFIGURATIONS)
def test_every_file_operation_of_a_store_goes_through_its_fs(tmp_path, clock, bypasses, name):
    kwargs, expected = CONFIGURATIONS[name]
    seen = collections.Counter()
    for _ in range(2):  # a restart: the second store reads what the first left
        fs = RecordingFS()
        store = Store(str(tmp_path / "data"), clock=clock, fs=fs, fresh_spares=4, **kwargs)
        try:
            while store.tick():
                pass
            workload(store)
        finally:
            store.close()
        seen.update(fs.calls)
    assert bypasses == []
    assert EVERY_STORE_SEES | expected <= set(seen)
