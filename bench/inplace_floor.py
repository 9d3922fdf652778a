"""The bare file operations of one set, in a tight loop (issue 18's table):
what a record written by an exchange costs next to one written in place.

    python bench/inplace_floor.py [--keys 10000] [--folders 256] [--size 1100]
                                  [--seconds 2] [--dir DIR]

Each row overwrites `--keys` files of `--size` bytes spread over `--folders`
folders, key after key, for about `--seconds`, and prints the mean time of
one overwrite. No barrier anywhere (what everysec does per write). Rows:

    exchange         open a spare + pwrite + close + renameat2(RENAME_EXCHANGE)
                     (today's write: the displaced file is the next spare)
    exchange-kept    the same with the spares' descriptors kept open
    exchange-only    the RENAME_EXCHANGE alone (two files swapped back and forth)
    in-place         open + pwrite + close of the key's own file
    in-place-kept    pwrite on a descriptor kept open per key
    slots-kept       pwrite on a kept descriptor into the slot not holding the
                     current record (format 3: offsets 0 and C alternate)
    rename           a new temp file + write + close + rename (a new inode each)

stdlib only (renameat2 through store/syscalls.py's ctypes call). The data go
in a temp dir under `--dir` (default: the system's temp dir), removed at the end.
"""

import argparse
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from store.syscalls import Exchange  # noqa: E402


def _setup(root, keys, folders, size):
    paths = []
    for f in range(folders):
        os.makedirs(os.path.join(root, "items", "%02x" % f), exist_ok=True)
    os.makedirs(os.path.join(root, "tmp"), exist_ok=True)
    record = os.urandom(size)
    for k in range(keys):
        path = os.path.join(root, "items", "%02x" % (k % folders), "k%d" % k)
        with open(path, "wb") as f:
            f.write(record + bytes(_slot(size)))  # room for a second slot
        paths.append(path)
    return paths, record


def _slot(size):
    return -(-size // 512) * 512


def _timed(seconds, paths, step):
    n = 0
    i = 0
    deadline = time.perf_counter() + seconds
    start = time.perf_counter()
    while True:
        for _ in range(256):
            step(paths[i])
            i = (i + 1) % len(paths)
        n += 256
        now = time.perf_counter()
        if now >= deadline:
            return (now - start) / n


def run(args):
    root = tempfile.mkdtemp(prefix="inplace-floor-", dir=args.dir)
    try:
        paths, rec = _setup(root, args.keys, args.folders, args.size)
        exchange = Exchange()
        if not exchange.available:
            print("renameat2(RENAME_EXCHANGE) is not available here", file=sys.stderr)
        slot = _slot(args.size)
        rows = []

        spares = [os.path.join(root, "tmp", "s%d" % i) for i in range(2)]
        for s in spares:
            with open(s, "wb") as f:
                f.write(rec)
        state = {"spare": spares[0]}

        def exchange_step(path):
            spare = state["spare"]
            fd = os.open(spare, os.O_WRONLY)
            os.pwrite(fd, rec, 0)
            os.close(fd)
            exchange(spare, path)  # the displaced record is now at `spare`: the next one's

        rows.append(("exchange", _timed(args.seconds, paths, exchange_step)))

        kept = {}

        def exchange_kept_step(path):
            spare = state["spare"]
            fd = kept.get(spare)
            if fd is None:
                fd = kept[spare] = os.open(spare, os.O_WRONLY)
            os.pwrite(fd, rec, 0)
            exchange(spare, path)
            # the fds follow their inodes: the spare's is the key's now, and
            # the displaced inode (the next spare) has the key's old one, if any
            displaced = kept.pop(path, None)
            kept[path] = fd
            kept[spare] = displaced if displaced is not None else os.open(spare, os.O_WRONLY)

        rows.append(("exchange-kept", _timed(args.seconds, paths, exchange_kept_step)))
        for fd in kept.values():
            os.close(fd)
        kept.clear()

        def exchange_only_step(path):
            exchange(spares[1], path)

        rows.append(("exchange-only", _timed(args.seconds, paths, exchange_only_step)))

        def in_place_step(path):
            fd = os.open(path, os.O_WRONLY)
            os.pwrite(fd, rec, 0)
            os.close(fd)

        rows.append(("in-place", _timed(args.seconds, paths, in_place_step)))

        fds = {p: os.open(p, os.O_WRONLY) for p in paths}

        def in_place_kept_step(path):
            os.pwrite(fds[path], rec, 0)

        rows.append(("in-place-kept", _timed(args.seconds, paths, in_place_kept_step)))

        current = dict.fromkeys(paths, 0)

        def slots_kept_step(path):
            at = slot - current[path]  # the slot not holding the current record
            os.pwrite(fds[path], rec, at)
            current[path] = at

        rows.append(("slots-kept", _timed(args.seconds, paths, slots_kept_step)))
        for fd in fds.values():
            os.close(fd)

        names = iter(range(1 << 62))
        tmp = os.path.join(root, "tmp")

        def rename_step(path):
            t = os.path.join(tmp, "t%d" % next(names))
            fd = os.open(t, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            os.write(fd, rec)
            os.close(fd)
            os.rename(t, path)

        rows.append(("rename", _timed(min(args.seconds, 1.0), paths, rename_step)))
        return rows
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--keys", type=int, default=10_000)
    p.add_argument("--folders", type=int, default=256)
    p.add_argument("--size", type=int, default=1100, help="record bytes")
    p.add_argument("--seconds", type=float, default=2.0, help="per row")
    p.add_argument("--dir", default=None, help="where the temp dir goes")
    args = p.parse_args(argv)
    rows = run(args)
    print(f"{args.keys} keys over {args.folders} folders, {args.size}-byte records, no barrier")
    print(f"{'operation':<16} {'us per overwrite':>17}")
    for name, t in rows:
        print(f"{name:<16} {t * 1e6:>17.1f}")


if __name__ == "__main__":
    main()
