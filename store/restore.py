"""Start-up's repair of the items a power loss tore (everysec, no).

A write into a spare is not ordered before its rename, so after a power loss
an item's file may hold the spare's old bytes or a torn mix of old and new
sectors. The item's previous record is then one of the spares left in tmp/:
the one its install displaced (an exchange leaves it under the temp file's
name). Before tmp/ is cleared, `restore_from_spares` puts back the newest
intact record of each key whose file does not verify (a two-slot file
verifies if either slot holds a whole record of its key: the newer one is
served).

"The newest" is the displaced record only because a key installed with no
old file (nothing displaced: absent is then its correct state) has had all
its records taken out of tmp/ first (`SparePool.supersede`, with those a
spare written over within the barrier window may still hold on disk); a key whose
file is gone was deleted, and a spare never brings it back. The reasoning,
and what the crash tests prove of it: docs/POWER_LOSS.md, "What a torn file
falls back to".

Newest means written last: a key's records are ordered by `order`, the
store-wide write sequence each record carries (store/record.py, `seq`), never
by cas, which a client may move backwards (`ms <key> E<cas>`). Records of
version 1-3 (an adopted data dir) have seq 0, older than any written since;
among them the old order stands, cas then `stored`.
"""

import logging
import os

from . import record
from .files import key_hash

log = logging.getLogger("memcached-lite.store")


def order(r):
    """The rank of a record among its key's: the later written, the higher."""
    return (r.seq, r.cas, r.stored)


def restore_from_spares(data_dir):
    """Put back, in `data_dir` (a files.DataDir), each torn item's newest
    intact record found in tmp/; returns the item paths put back (the
    caller makes them durable with tmp/'s clean-up: `Store`) and the
    highest write sequence number seen in tmp/ (the sequence goes on past
    it)."""
    best = {}
    highest = 0
    for spare in data_dir.leftovers():
        for r in intact_records(data_dir, spare):
            highest = max(highest, r.seq)
            _, path = data_dir.locate(r.key)
            rank = order(r)
            if path not in best or rank > best[path][0]:
                best[path] = (rank, spare)
    fs = data_dir.fs
    restored = []
    moved = {}  # spare -> the item path it was put back at
    for path, (_, spare) in best.items():
        if not fs.exists(path) or intact_record(data_dir, path, os.path.basename(path)) is not None:
            continue
        source = spare
        if spare in moved:
            # the best record of two keys in one file (a two-slot spare whose
            # second slot still held its previous key's record): the first
            # key took the file, this one gets a copy of it
            source = _copy(fs, moved[spare], f"{spare}.{os.path.basename(path)}")
        fs.replace(source, path)
        moved.setdefault(spare, path)
        log.warning("restored %s from its previous record: it was torn (a power loss?)", path)
        restored.append(path)
    return restored, highest


def _copy(fs, path, copy):
    """Write the bytes of the file at `path` to a new file `copy`."""
    data = fs.read_file(path)
    fd = fs.open(copy, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        while data:
            data = data[fs.write(fd, data):]
    finally:
        fs.close(fd)
    return copy


def intact_record(data_dir, path, name=None):
    """The record in `path` if it reads whole (a two-slot file: its winning
    slot; given `name`, among those of the key of that file name), else
    None."""
    accept = None if name is None else (lambda key: key_hash(key) == name)
    try:
        data = data_dir.read(path)
        r = record.decode_file(data, accept)[0] if data is not None else None
    except (OSError, record.CorruptRecord):
        return None
    if r is None or (name is not None and key_hash(r.key) != name):
        return None
    return r


def intact_records(data_dir, path):
    """The records a file in tmp/ holds whole: a version 1/2 record, or
    each key's winning slot of a two-slot file (a recycled spare's second
    slot may still hold, on disk, its previous key's record: that key's,
    as a whole stale spare is today)."""
    try:
        data = data_dir.read(path)
    except OSError:
        return []
    if data is None:
        return []
    try:
        return [record.decode(data)]
    except record.CorruptRecord:
        pass
    winners = {}
    for r, rank, _ in record.decode_slots(data):
        if r.key not in winners or rank > winners[r.key][1]:
            winners[r.key] = (r, rank)
    return [r for r, _ in winners.values()]
