"""store/faultfs.py: the in-memory file system with power loss. First the
os-like behaviour the store relies on, then the durability model (what a
crash keeps), the background barrier, and injected faults. Seeds are fixed;
"may" is shown by a seed that does it among a fixed range of seeds."""

import errno
import os

import pytest

from store.faultfs import FIRST_FD, REORDERED, SECTOR, FaultFS
from store.syncer import HelperGone

W = os.O_WRONLY | os.O_CREAT
SEEDS = range(64)


def put(fs, path, data, sync=False, flags=W | os.O_TRUNC):
    fd = fs.open(path, flags, 0o644)
    try:
        fs.write(fd, data)
        if sync:
            fs.fsync(fd)
    finally:
        fs.close(fd)


def sync_dir(fs, path):
    fd = fs.open(path, os.O_RDONLY | os.O_DIRECTORY)
    fs.fsync(fd)
    fs.close(fd)


def syncfs(fs):
    fd = fs.open("/", os.O_RDONLY | os.O_DIRECTORY)
    fs.syncfs(fd)
    fs.close(fd)


def outcomes(fs, path, seeds=SEEDS):
    """What `path` holds after a crash, over the seeds (None: missing)."""
    return {fs.crash(seed).read_file(path) for seed in seeds}


def states(fs, seeds=SEEDS):
    return {tuple(sorted(fs.crash(seed).files().items())) for seed in seeds}


@pytest.fixture
def fs():
    fs = FaultFS()
    fs.makedirs("/d/tmp")
    syncfs(fs)
    return fs


# -- os-like behaviour -------------------------------------------------------


def test_opening_a_missing_file_without_o_creat_is_file_not_found(fs):
    with pytest.raises(FileNotFoundError):
        fs.open("/d/nope", os.O_RDONLY)


def test_creating_in_a_missing_directory_is_file_not_found(fs):
    with pytest.raises(FileNotFoundError):
        fs.open("/d/none/a", W)


def test_o_excl_on_an_existing_file_is_file_exists(fs):
    put(fs, "/d/a", b"x")
    with pytest.raises(FileExistsError):
        fs.open("/d/a", W | os.O_EXCL)


def test_opening_a_directory_for_writing_is_is_a_directory(fs):
    with pytest.raises(IsADirectoryError):
        fs.open("/d", os.O_WRONLY)


def test_o_directory_on_a_file_is_not_a_directory(fs):
    put(fs, "/d/a", b"x")
    with pytest.raises(NotADirectoryError):
        fs.open("/d/a", os.O_RDONLY | os.O_DIRECTORY)


def test_a_path_through_a_file_is_not_a_directory(fs):
    put(fs, "/d/a", b"x")
    with pytest.raises(NotADirectoryError):
        fs.stat("/d/a/b")


def test_o_trunc_empties_the_file(fs):
    put(fs, "/d/a", b"hello")
    fs.close(fs.open("/d/a", os.O_WRONLY | os.O_TRUNC))
    assert fs.read_file("/d/a") == b""


def test_o_append_writes_at_the_end(fs):
    put(fs, "/d/a", b"hello")
    fd = fs.open("/d/a", os.O_WRONLY | os.O_APPEND)
    fs.write(fd, b" world")
    fs.close(fd)
    assert fs.read_file("/d/a") == b"hello world"


def test_writes_and_reads_move_the_offset(fs):
    fd = fs.open("/d/a", os.O_RDWR | os.O_CREAT)
    assert fs.writev(fd, [b"ab", memoryview(b"cd")]) == 4
    fs.close(fd)
    fd = fs.open("/d/a", os.O_RDONLY)
    assert (fs.read(fd, 3), fs.read(fd, 3), fs.read(fd, 3)) == (b"abc", b"d", b"")
    fs.close(fd)


def test_a_write_on_a_read_only_fd_is_a_bad_descriptor(fs):
    put(fs, "/d/a", b"x")
    fd = fs.open("/d/a", os.O_RDONLY)
    with pytest.raises(OSError) as e:
        fs.write(fd, b"y")
    assert e.value.errno == errno.EBADF


def test_fds_are_not_real_descriptors(fs):
    fd = fs.open("/d", os.O_RDONLY | os.O_DIRECTORY)
    assert fd >= FIRST_FD
    fs.close(fd)
    with pytest.raises(OSError) as e:
        fs.close(fd)
    assert e.value.errno == errno.EBADF


def test_ftruncate_shrinks_and_extends_with_zeros(fs):
    put(fs, "/d/a", b"abcdef")
    fd = fs.open("/d/a", os.O_RDWR)
    fs.ftruncate(fd, 2)
    fs.ftruncate(fd, 4)
    assert fs.fstat(fd).st_size == 4
    fs.close(fd)
    assert fs.read_file("/d/a") == b"ab\0\0"


def test_stat_gives_the_size_and_the_mtime_from_the_clock():
    now = [1000.0]
    fs = FaultFS(clock=lambda: now[0])
    now[0] = 2000.0
    put(fs, "/a", b"xyz")
    st = fs.stat("/a")
    assert (st.st_size, st.st_mtime) == (3, 2000.0)


def test_an_unlinked_open_file_stays_readable_through_its_fd(fs):
    put(fs, "/d/a", b"still here")
    fd = fs.open("/d/a", os.O_RDONLY)
    fs.unlink("/d/a")
    assert not fs.exists("/d/a")
    assert fs.fstat(fd).st_nlink == 0
    assert fs.read(fd, 100) == b"still here"
    fs.close(fd)


def test_link_counts_follow_links_and_unlinks(fs):
    put(fs, "/d/a", b"x")
    fs.link("/d/a", "/d/b")
    assert fs.stat("/d/b").st_nlink == 2
    fs.unlink("/d/a")
    assert fs.stat("/d/b").st_nlink == 1


def test_link_onto_an_existing_name_is_file_exists(fs):
    put(fs, "/d/a", b"x")
    put(fs, "/d/b", b"y")
    with pytest.raises(FileExistsError):
        fs.link("/d/a", "/d/b")


def test_replace_puts_the_file_over_the_old_one(fs):
    put(fs, "/d/a", b"new")
    put(fs, "/d/b", b"old")
    fs.replace("/d/a", "/d/b")
    assert (fs.read_file("/d/a"), fs.read_file("/d/b")) == (None, b"new")


def test_renaming_over_a_non_empty_directory_is_not_empty(fs):
    fs.mkdir("/d/x")
    fs.mkdir("/d/y")
    put(fs, "/d/y/f", b"")
    with pytest.raises(OSError) as e:
        fs.rename("/d/x", "/d/y")
    assert e.value.errno == errno.ENOTEMPTY


def test_unlinking_a_directory_is_is_a_directory(fs):
    with pytest.raises(IsADirectoryError):
        fs.unlink("/d/tmp")


def test_exchange_swaps_two_names(fs):
    put(fs, "/d/a", b"A")
    put(fs, "/d/tmp/b", b"B")
    assert fs.exchange("/d/a", "/d/tmp/b") is True
    assert (fs.read_file("/d/a"), fs.read_file("/d/tmp/b")) == (b"B", b"A")


def test_exchange_says_false_where_it_is_not_supported():
    fs = FaultFS(has_exchange=False)
    put(fs, "/a", b"A")
    put(fs, "/b", b"B")
    assert fs.exchange("/a", "/b") is False
    assert fs.read_file("/a") == b"A"


def test_exchange_of_a_missing_name_is_file_not_found(fs):
    put(fs, "/d/a", b"A")
    with pytest.raises(FileNotFoundError):
        fs.exchange("/d/a", "/d/b")


def test_makedirs_of_an_existing_directory_needs_exist_ok(fs):
    fs.makedirs("/d/tmp", exist_ok=True)
    with pytest.raises(FileExistsError):
        fs.makedirs("/d/tmp")


def test_mkdir_of_an_existing_name_is_file_exists(fs):
    with pytest.raises(FileExistsError):
        fs.mkdir("/d/tmp")


def test_scandir_lists_entries_with_their_kind_and_stat(fs):
    put(fs, "/d/a", b"12345")
    with fs.scandir("/d") as it:
        entries = {e.name: e for e in it}
    assert sorted(entries) == ["a", "tmp"]
    assert entries["a"].is_file() and not entries["a"].is_dir()
    assert entries["tmp"].is_dir()
    assert entries["a"].path == "/d/a"
    assert entries["a"].stat().st_size == 5
    assert sorted(fs.listdir("/d")) == ["a", "tmp"]


def test_read_file_and_read_head_give_none_for_a_missing_file(fs):
    put(fs, "/d/a", b"abcdef")
    assert fs.read_head("/d/a", 3) == b"abc"
    assert fs.read_file("/d/nope") is None
    assert fs.read_head("/d/nope", 3) is None


def test_isdir_and_exists_never_raise(fs):
    put(fs, "/d/a", b"")
    assert fs.isdir("/d") and not fs.isdir("/d/a") and not fs.isdir("/d/a/b")
    assert fs.exists("/d/a") and not fs.exists("/nope/x")


def test_flock_is_recorded(fs):
    import fcntl

    fd = fs.open("/d/lock", os.O_RDWR | os.O_CREAT)
    fs.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    assert fs.flocks == [("/d/lock", fcntl.LOCK_EX | fcntl.LOCK_NB)]


# -- what a crash keeps --------------------------------------------------------


def test_a_write_not_synced_may_be_lost_at_a_crash(fs):
    put(fs, "/d/a", b"old", sync=True)
    sync_dir(fs, "/d")
    put(fs, "/d/a", b"new")
    assert outcomes(fs, "/d/a") >= {b"old", b"new"}


def test_a_crash_with_nothing_unsynced_keeps_everything(fs):
    put(fs, "/d/a", b"v", sync=True)
    sync_dir(fs, "/d")
    assert outcomes(fs, "/d/a") == {b"v"}


def test_an_unsynced_create_may_be_lost(fs):
    put(fs, "/d/a", b"v", sync=True)
    assert outcomes(fs, "/d/a") == {None, b"v"}


def test_an_fsynced_file_keeps_its_data_but_its_new_name_may_be_lost(fs):
    put(fs, "/d/tmp/a", b"data", sync=True)
    sync_dir(fs, "/d/tmp")
    fs.rename("/d/tmp/a", "/d/b")
    crashed = [fs.crash(seed) for seed in SEEDS]
    found = {(c.read_file("/d/tmp/a"), c.read_file("/d/b")) for c in crashed}
    assert found == {(b"data", None), (None, b"data")}


def test_a_directory_fsync_keeps_the_rename(fs):
    put(fs, "/d/a", b"old", sync=True)
    put(fs, "/d/tmp/n", b"new", sync=True)
    sync_dir(fs, "/d/tmp")
    sync_dir(fs, "/d")
    fs.replace("/d/tmp/n", "/d/a")
    sync_dir(fs, "/d")
    assert outcomes(fs, "/d/a") == {b"new"}


def test_a_directory_fsync_keeps_only_its_own_half_of_a_rename(fs):
    # conservative: ext4 would commit both halves in one transaction
    put(fs, "/d/tmp/a", b"x", sync=True)
    sync_dir(fs, "/d/tmp")
    fs.rename("/d/tmp/a", "/d/b")
    sync_dir(fs, "/d")
    found = {(c.read_file("/d/tmp/a"), c.read_file("/d/b")) for c in map(fs.crash, SEEDS)}
    assert found == {(b"x", b"x"), (None, b"x")}


def test_a_directory_fsync_does_not_make_its_files_data_durable(fs):
    put(fs, "/d/a", b"v")
    sync_dir(fs, "/d")
    assert outcomes(fs, "/d/a") == {b"", b"\0", b"v"}


def test_syncfs_keeps_everything(fs):
    put(fs, "/d/tmp/a", b"a")
    fs.rename("/d/tmp/a", "/d/a")
    fs.mkdir("/d/sub")
    put(fs, "/d/sub/b", b"b" * 3000)
    fs.unlink("/d/a")
    syncfs(fs)
    assert states(fs) == {(("/d/sub/b", b"b" * 3000),)}


def test_sync_keeps_everything(fs):
    put(fs, "/d/a", b"a")
    fs.sync()
    assert outcomes(fs, "/d/a") == {b"a"}


def test_an_unsynced_unlink_may_be_undone(fs):
    put(fs, "/d/a", b"v", sync=True)
    sync_dir(fs, "/d")
    fs.unlink("/d/a")
    assert outcomes(fs, "/d/a") == {None, b"v"}


def test_an_unsynced_exchange_is_all_or_nothing(fs):
    put(fs, "/d/a", b"A", sync=True)
    put(fs, "/d/b", b"B", sync=True)
    sync_dir(fs, "/d")
    fs.exchange("/d/a", "/d/b")
    found = {(c.read_file("/d/a"), c.read_file("/d/b")) for c in map(fs.crash, SEEDS)}
    assert found == {(b"A", b"B"), (b"B", b"A")}


def renames_in_a_row(fs, n=6):
    for i in range(n):
        put(fs, f"/d/tmp/{i}", b"v", sync=True)
    sync_dir(fs, "/d/tmp")
    for i in range(n):
        fs.rename(f"/d/tmp/{i}", f"/d/{i}")
    return n


def kept_renames(crashed, n):
    return tuple(crashed.exists(f"/d/{i}") for i in range(n))


def test_ordered_mode_keeps_a_prefix_of_the_renames(fs):
    n = renames_in_a_row(fs)
    found = {kept_renames(fs.crash(seed), n) for seed in SEEDS}
    assert found == {tuple(i < k for i in range(n)) for k in range(n + 1)}


def test_reordered_mode_keeps_any_subset_of_the_renames():
    fs = FaultFS(metadata=REORDERED)
    fs.makedirs("/d/tmp")
    syncfs(fs)
    n = renames_in_a_row(fs, 4)
    found = {kept_renames(fs.crash(seed), n) for seed in range(200)}
    assert len(found) == 2**n


def test_reordered_mode_skips_a_rename_whose_source_was_lost():
    fs = FaultFS(metadata=REORDERED)
    fs.makedirs("/d")
    syncfs(fs)
    put(fs, "/d/t", b"v", sync=True)  # the create is not durable
    fs.rename("/d/t", "/d/a")
    for seed in SEEDS:
        crashed = fs.crash(seed)
        assert sorted(crashed.listdir("/d")) in ([], ["t"], ["a"])


def test_an_unknown_metadata_mode_is_refused():
    with pytest.raises(ValueError):
        FaultFS(metadata="journal")


def test_a_torn_write_mixes_old_and_new_512_byte_sectors(fs):
    old = b"".join(bytes([65 + i]) * SECTOR for i in range(4))
    put(fs, "/d/a", old, sync=True)
    sync_dir(fs, "/d")
    put(fs, "/d/a", old.lower(), flags=os.O_WRONLY)
    seen = set()
    for data in outcomes(fs, "/d/a", range(200)):
        sectors = [data[i : i + SECTOR] for i in range(0, len(data), SECTOR)]
        assert all(s in (old[i * SECTOR : (i + 1) * SECTOR], old.lower()[i * SECTOR : (i + 1) * SECTOR])
                   for i, s in enumerate(sectors))
        seen.add(data)
    assert len(seen) == 2**4


def test_pwrite_writes_at_the_offset_and_leaves_the_fds_offset(fs):
    put(fs, "/d/a", b"x" * 10)
    fd = fs.open("/d/a", os.O_RDWR)
    assert fs.pwrite(fd, b"ab", 4) == 2
    assert fs.read(fd, 3) == b"xxx"
    fs.close(fd)
    assert fs.read_file("/d/a") == b"xxxxabxxxx"


def test_a_pwrite_over_synced_data_tears_only_the_sectors_it_wrote(fs):
    # two slots of two sectors each, both durable; an unsynced pwrite into
    # the second: each of its sectors old or new, the first slot untouched
    old = b"".join(bytes([65 + i]) * SECTOR for i in range(4))
    put(fs, "/d/a", old, sync=True)
    sync_dir(fs, "/d")
    fd = fs.open("/d/a", os.O_WRONLY)
    fs.pwrite(fd, b"n" * (2 * SECTOR), 2 * SECTOR)
    fs.close(fd)
    seen = outcomes(fs, "/d/a", range(200))
    assert {d[: 2 * SECTOR] for d in seen} == {old[: 2 * SECTOR]}
    assert {d[2 * SECTOR :] for d in seen} == {
        a + b for a in (old[2 * SECTOR : 3 * SECTOR], b"n" * SECTOR) for b in (old[3 * SECTOR :], b"n" * SECTOR)
    }


def test_a_short_pwrite_can_be_injected(fs):
    put(fs, "/d/a", b"x" * 10)
    fs.fail("pwrite", errno.ENOSPC, short=3)
    fd = fs.open("/d/a", os.O_WRONLY)
    assert fs.pwrite(fd, b"abcdef", 0) == 3
    with pytest.raises(OSError):
        fs.pwrite(fd, b"abcdef", 0)
    fs.close(fd)


def test_an_unsynced_size_change_is_old_or_new(fs):
    put(fs, "/d/a", b"x" * 100, sync=True)
    sync_dir(fs, "/d")
    fd = fs.open("/d/a", os.O_WRONLY)
    fs.ftruncate(fd, 10)
    fs.close(fd)
    assert {len(d) for d in outcomes(fs, "/d/a")} == {10, 100}


def test_an_unsynced_append_may_leave_zeros_where_the_size_outran_the_data(fs):
    put(fs, "/d/a", b"", sync=True)
    sync_dir(fs, "/d")
    put(fs, "/d/a", b"y" * 10, flags=os.O_WRONLY)
    assert outcomes(fs, "/d/a") == {b"", b"y" * 10, b"\0" * 10}


def test_an_fsync_after_a_torn_write_keeps_the_new_bytes(fs):
    put(fs, "/d/a", b"a" * 2000, sync=True)
    sync_dir(fs, "/d")
    put(fs, "/d/a", b"b" * 2000, sync=True, flags=os.O_WRONLY)
    assert outcomes(fs, "/d/a") == {b"b" * 2000}


def test_without_auto_da_alloc_a_file_renamed_over_another_may_come_back_empty(fs):
    put(fs, "/d/a", b"old", sync=True)
    sync_dir(fs, "/d")
    put(fs, "/d/n", b"new")
    fs.replace("/d/n", "/d/a")
    sync_dir(fs, "/d")
    assert b"" in outcomes(fs, "/d/a")


def test_auto_da_alloc_makes_a_replacing_rename_carry_the_data():
    fs = FaultFS(auto_da_alloc=True)
    fs.makedirs("/d")
    put(fs, "/d/a", b"old", sync=True)
    syncfs(fs)
    put(fs, "/d/n", b"new")
    fs.replace("/d/n", "/d/a")
    assert outcomes(fs, "/d/a") == {b"old", b"new"}
    sync_dir(fs, "/d")
    assert outcomes(fs, "/d/a") == {b"new"}


def test_auto_da_alloc_does_not_cover_a_rename_onto_a_new_name():
    fs = FaultFS(auto_da_alloc=True)
    fs.makedirs("/d")
    syncfs(fs)
    put(fs, "/d/n", b"new")
    fs.rename("/d/n", "/d/a")
    sync_dir(fs, "/d")
    assert outcomes(fs, "/d/a") == {b"", b"\0\0\0", b"new"}


def test_the_same_seed_gives_the_same_state(fs):
    renames_in_a_row(fs)
    put(fs, "/d/big", bytes(range(256)) * 40)
    assert fs.crash(7).files() == fs.crash(7).files()


def test_different_seeds_give_different_states(fs):
    put(fs, "/d/big", bytes(range(256)) * 40, sync=True)
    sync_dir(fs, "/d")
    put(fs, "/d/big", bytes(range(1, 256)) * 40, flags=os.O_WRONLY)
    renames_in_a_row(fs)
    assert len(states(fs, range(100))) > 90


def test_a_crash_state_is_all_durable(fs):
    renames_in_a_row(fs)
    put(fs, "/d/big", bytes(range(256)) * 40)
    crashed = fs.crash(3)
    assert crashed.pending() == []
    assert states(crashed, range(10)) == {tuple(sorted(crashed.files().items()))}


def test_a_crash_state_can_be_written_and_crashed_again(fs):
    put(fs, "/d/a", b"first")
    crashed = fs.crash(1)
    crashed.makedirs("/d", exist_ok=True)
    put(crashed, "/d/b", b"second", sync=True)
    sync_dir(crashed, "/d")
    assert outcomes(crashed, "/d/b") == {b"second"}
    assert len(outcomes(crashed, "/d/a")) == 1


def test_a_crash_state_keeps_the_options():
    fs = FaultFS(metadata=REORDERED, auto_da_alloc=True, has_exchange=False)
    crashed = fs.crash(0)
    assert (crashed.metadata, crashed.auto_da_alloc, crashed.has_exchange) == (REORDERED, True, False)


def test_a_crash_state_keeps_hard_links_as_one_file(fs):
    put(fs, "/d/a", b"x")
    fs.link("/d/a", "/d/b")
    syncfs(fs)
    crashed = fs.crash(0)
    assert crashed.stat("/d/a").st_ino == crashed.stat("/d/b").st_ino
    assert crashed.stat("/d/a").st_nlink == 2


def test_an_unlinked_file_that_can_never_come_back_is_forgotten(fs):
    put(fs, "/d/a", b"x")
    fs.unlink("/d/a")
    syncfs(fs)
    assert len(fs._nodes) == 3  # /, /d, /d/tmp


# -- the background barrier --------------------------------------------------


def test_the_background_barrier_covers_only_what_was_written_before_it_started(fs):
    syncer = fs.background_syncer("/d")
    put(fs, "/d/before", b"b")
    syncer.start()
    put(fs, "/d/after", b"a")
    fs.finish_background()
    assert syncer.poll() == 0
    for crashed in map(fs.crash, SEEDS):
        assert crashed.read_file("/d/before") == b"b"
    assert None in outcomes(fs, "/d/after")


def test_the_background_barrier_does_not_pass_until_the_test_says_so(fs):
    syncer = fs.background_syncer("/d")
    put(fs, "/d/a", b"v")
    syncer.start()
    assert syncer.running and syncer.poll() is None
    assert None in outcomes(fs, "/d/a")


def test_poll_wait_passes_the_background_barrier(fs):
    syncer = fs.background_syncer("/d")
    put(fs, "/d/a", b"v")
    syncer.start()
    assert syncer.poll(wait=True) == 0
    assert not syncer.running
    assert outcomes(fs, "/d/a") == {b"v"}


def test_poll_without_a_barrier_in_flight_is_none(fs):
    assert fs.background_syncer("/d").poll() is None


def test_a_later_fsync_is_not_undone_by_an_older_background_snapshot(fs):
    syncer = fs.background_syncer("/d")
    put(fs, "/d/a", b"one", sync=True)
    sync_dir(fs, "/d")
    put(fs, "/d/a", b"two")
    syncer.start()
    put(fs, "/d/a", b"six", sync=True)
    fs.finish_background()
    assert outcomes(fs, "/d/a") == {b"six"}


def test_a_failing_background_barrier_reports_its_errno_and_keeps_nothing(fs):
    syncer = fs.background_syncer("/d")
    put(fs, "/d/a", b"v")
    fs.background_fails(errno.EIO)
    syncer.start()
    fs.finish_background()
    assert syncer.poll() == errno.EIO
    assert None in outcomes(fs, "/d/a")
    syncer.start()
    fs.finish_background()
    assert syncer.poll() == 0


def test_a_hung_background_barrier_never_passes(fs):
    syncer = fs.background_syncer("/d")
    put(fs, "/d/a", b"v")
    syncer.start()
    fs.background_hangs()
    assert fs.finish_background() == 0
    assert syncer.poll() is None
    assert syncer.poll(wait=5.0) is None


def test_a_killed_helper_is_gone_and_the_next_one_works(fs):
    syncer = fs.background_syncer("/d")
    put(fs, "/d/a", b"v")
    syncer.start()
    fs.background_hangs()
    syncer.kill()
    with pytest.raises(HelperGone):
        syncer.start()
    again = fs.background_syncer("/d")
    again.start()
    fs.finish_background()
    assert again.poll() == 0


def test_a_dead_helper_raises_helper_gone(fs):
    syncer = fs.background_syncer("/d")
    syncer.start()
    fs.background_dies()
    with pytest.raises(HelperGone):
        syncer.poll()
    with pytest.raises(HelperGone):
        syncer.start()


def test_a_helper_made_after_a_death_works(fs):
    fs.background_syncer("/d")
    fs.background_dies()
    syncer = fs.background_syncer("/d")
    syncer.start()
    assert syncer.poll(wait=True) == 0


# -- injected faults -----------------------------------------------------------


def test_an_injected_enospc_is_raised_once(fs):
    fs.fail("write", errno.ENOSPC)
    fd = fs.open("/d/a", W)
    with pytest.raises(OSError) as e:
        fs.write(fd, b"x")
    assert e.value.errno == errno.ENOSPC
    assert fs.write(fd, b"y") == 1
    fs.close(fd)


def test_a_short_write_comes_before_the_enospc(fs):
    fault = fs.fail("writev", errno.ENOSPC, short=3)
    fd = fs.open("/d/a", W)
    assert fs.writev(fd, [b"abcdef"]) == 3
    with pytest.raises(OSError) as e:
        fs.writev(fd, [b"def"])
    assert e.value.errno == errno.ENOSPC
    fs.close(fd)
    assert fs.read_file("/d/a") == b"abc"
    assert fault.hits == 2


def test_a_fault_hits_only_the_paths_when_accepts(fs):
    fs.fail("fsync", errno.EIO, when=lambda path: path.startswith("/d/tmp/"), times=None)
    put(fs, "/d/a", b"x", sync=True)
    for _ in range(2):
        with pytest.raises(OSError) as e:
            put(fs, "/d/tmp/a", b"x", sync=True)
        assert e.value.errno == errno.EIO


def test_an_injected_eio_on_read_reaches_read_file_too(fs):
    put(fs, "/d/a", b"x")
    fs.fail("read", errno.EIO, times=2)
    fd = fs.open("/d/a", os.O_RDONLY)
    with pytest.raises(OSError):
        fs.read(fd, 1)
    fs.close(fd)
    with pytest.raises(OSError):
        fs.read_file("/d/a")
    assert fs.read_file("/d/a") == b"x"


def test_erofs_on_every_open_after_start(fs):
    fs.fail("open", errno.EROFS, times=None)
    for _ in range(3):
        with pytest.raises(OSError) as e:
            fs.open("/d/a", W)
        assert e.value.errno == errno.EROFS


def test_a_failed_rename_changes_nothing(fs):
    put(fs, "/d/a", b"x")
    fs.fail("replace", errno.EIO)
    with pytest.raises(OSError):
        fs.replace("/d/a", "/d/b")
    assert fs.exists("/d/a") and not fs.exists("/d/b")


def test_a_fault_on_an_unknown_method_is_refused(fs):
    with pytest.raises(ValueError):
        fs.fail("wirte", errno.EIO)


def test_clear_faults_removes_them(fs):
    fs.fail("open", errno.EIO, times=None)
    fs.clear_faults()
    fs.close(fs.open("/d/a", W))


# -- the same answers as the real file system ----------------------------------


def _script(root, fs):
    """A few calls and what each gave (a value or an error's name)."""
    j = lambda *p: os.path.join(root, *p)  # noqa: E731
    calls = [
        lambda: fs.mkdir(j("x")),
        lambda: fs.mkdir(j("x")),
        lambda: fs.open(j("x", "a"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644),
        lambda: fs.open(j("x", "a"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644),
        lambda: fs.open(j("x"), os.O_WRONLY),
        lambda: fs.open(j("x", "a"), os.O_RDONLY | os.O_DIRECTORY),
        lambda: fs.open(j("y", "a"), os.O_RDONLY),
        lambda: fs.unlink(j("x")),
        lambda: fs.rename(j("x", "a"), j("x", "a", "b")),
        lambda: fs.link(j("x", "a"), j("x", "b")),
        lambda: fs.link(j("x", "a"), j("x", "b")),
        lambda: fs.replace(j("x", "a"), j("x", "b")),
        lambda: fs.stat(j("x", "b")).st_nlink,
        lambda: fs.mkdir(j("z")),
        lambda: fs.rename(j("z"), j("x")),
        lambda: fs.rename(j("x", "b"), j("z")),
        lambda: fs.rename(j("z"), j("x", "b")),
        lambda: fs.makedirs(j("x", "b", "c"), exist_ok=True),
        lambda: fs.unlink(j("nope")),
        lambda: sorted(fs.listdir(j("x"))),
    ]
    out = []
    for call in calls:
        try:
            result = call()
            if type(result) is int and result > 2:  # an fd
                fs.close(result)
                result = "fd"
            out.append(result)
        except OSError as e:
            out.append(type(e).__name__ + ":" + errno.errorcode[e.errno])
    return out


class _Os:
    """The real calls under the same names, for the comparison."""

    mkdir, open, unlink, rename, replace, link, stat, listdir = (
        staticmethod(os.mkdir), staticmethod(os.open), staticmethod(os.unlink), staticmethod(os.rename),
        staticmethod(os.replace), staticmethod(os.link), staticmethod(os.stat), staticmethod(os.listdir),
    )
    makedirs, close = staticmethod(os.makedirs), staticmethod(os.close)


def test_the_errors_are_those_of_the_real_file_system(tmp_path):
    real = _script(str(tmp_path), _Os)
    fake = _script("/r", _prepared(FaultFS(), "/r"))
    assert fake == real


def _prepared(fs, root):
    fs.makedirs(root)
    return fs
