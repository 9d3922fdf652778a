"""The storage commands, one path for all six (set add replace append prepend
cas) and for `ms`: the command line is checked here and becomes a
`StorageRequest`, the session's DATA state reads its data block, and
`StorageRequest.complete` hands the value to `Store.store`."""

import logging

from store import DiskFull, Mode, Result, StoreError, absolute_expiry, parse_u64

from .base import BAD_CHUNK, BAD_FORMAT, INT32_MAX, KEY_MAX_LENGTH, TOO_LARGE, reply, strtol32, strtoul32
from .watch import FETCHERS, MUTATIONS

log = logging.getLogger("memcached-lite.protocol")

MODES = {
    b"set": Mode.SET,
    b"add": Mode.ADD,
    b"replace": Mode.REPLACE,
    b"append": Mode.APPEND,
    b"prepend": Mode.PREPEND,
    b"cas": Mode.CAS,
}
_CAS_COUNTERS = {Result.STORED: "cas_hits", Result.EXISTS: "cas_badval", Result.NOT_FOUND: "cas_misses"}
# a storage command's reply line for each Result
RESULT_LINES = {result: result.value.encode() + b"\r\n" for result in Result}


class StorageRequest:
    """A storage command waiting for its data block: `need` bytes (the value
    and its "\\r\\n"), then `complete(session, block)`. `meta` is an ms's
    MetaRequest (None for the classic commands), whose reply it writes."""

    __slots__ = ("need", "mode", "key", "flags", "exptime", "cas_unique", "noreply", "meta")

    def __init__(self, length, mode, key, flags, exptime, cas_unique, noreply, meta=None):
        self.need = length + 2
        self.mode = mode
        self.key = key
        self.flags = flags
        self.exptime = exptime
        self.cas_unique = cas_unique
        self.noreply = noreply
        self.meta = meta

    def complete(self, session, block):
        session.counters.cmd_set += 1
        meta = self.meta
        if not block.endswith(b"\r\n"):
            # ms always reports errors, q or not
            return reply(session, self.noreply and meta is None, BAD_CHUNK)
        mode, key = self.mode, self.key
        options = {} if meta is None else meta.store_options
        if mode is Mode.SET and session.server.watchers.flags & FETCHERS:
            session.store.lookup(key)  # memcached's set looks its key up too (a watcher sees it)
        try:
            if mode is Mode.CAS and not session.server.settings.cas_enabled:
                # -C: no cas matches, as memcached's (cas, ms C<n>, a binary set with a cas);
                # its lookup is still a fetch a watcher sees, as memcached's
                result = Result.NOT_FOUND if session.store.lookup(key) is None else Result.EXISTS
            else:
                result = session.store.store(
                    mode, key, self.flags, self.exptime, block[:-2], self.cas_unique, **options
                )
        except DiskFull:
            if mode is Mode.SET:
                drop_old_value(session, key)  # as memcached: no stale value after a refused set
            raise
        watchers = session.server.watchers
        if watchers.flags & MUTATIONS:
            size = _stored_size(session, key, result, block, mode)
            watchers.item_store(key, result, mode, _ttl(session, self.exptime), size)
        if mode is Mode.CAS:
            session.counters.bump(_CAS_COUNTERS[result])
        if meta is not None:
            return meta.set_reply(session, result)
        reply(session, self.noreply, RESULT_LINES[result])


def _ttl(session, exptime):
    # memcached's item_store line: the new item's seconds left, 0 for none
    if not exptime:
        return 0
    now = session.store.clock()
    absolute = absolute_expiry(exptime, now)
    # (memcached's times are whole seconds: a relative exptime is its ttl)
    if absolute < 0:
        # dead at once: memcached's item has exptime 1 on its clock, which
        # reads uptime + 62 (process_started is 62 s before the start); %u
        return (1 - 62 - int(now - session.server.started)) & 0xFFFFFFFF
    return max(0, int(absolute) - int(now)) if absolute > 0 else 0


def _stored_size(session, key, result, block, mode):
    # the value's length as stored (an append's: the whole), else the new one's;
    # only an append's is looked up: a peek at a set of an item dead at once
    # (a negative exptime) would reclaim it, and the next get log not_found,
    # not memcached's expired
    if result is Result.STORED and mode in (Mode.APPEND, Mode.PREPEND):
        item = session.store.peek(key)
        if item is not None:
            return len(item.value)
    return len(block) - 2


def storage(session, words):
    """set add replace append prepend: <key> <flags> <exptime> <bytes> [noreply];
    cas: the same with <cas unique> before noreply."""
    mode = MODES[words[0]]
    noreply = words[-1] == b"noreply"
    key = words[1]
    if len(key) > KEY_MAX_LENGTH:
        return reply(session, noreply, BAD_FORMAT)
    flags = strtoul32(words[2])
    exptime = strtol32(words[3])
    length = strtol32(words[4])
    cas_unique = 0
    if mode is Mode.CAS:
        cas_unique = parse_u64(words[5])
    if None in (flags, exptime, length, cas_unique) or not 0 <= length <= INT32_MAX - 2:
        return reply(session, noreply, BAD_FORMAT)
    settings = session.server.settings
    if settings.detail_enabled:
        session.server.prefixes.record(key, settings.prefix_delimiter, 2)
    if not session.store.item_fits(len(key), length, flags):
        refuse_too_large(session, length, key if mode is Mode.SET else None, mode, key)
        return reply(session, noreply, TOO_LARGE)
    session.expect(StorageRequest(length, mode, key, flags, exptime, cas_unique, noreply))


def refuse_too_large(session, length, key=None, mode=None, named=None):
    """An item over -I: its data will be read and dropped (never buffered),
    and the old value of `key` (a set's) goes, as memcached's does; a
    watcher of mutations hears of `named`'s refusal (`mode`), then of the
    lookup that drops the old value."""
    session.counters.store_too_large += 1
    session.swallow(length + 2)
    if named is not None:
        session.server.watchers.too_large(named, mode)
    if key is not None:
        if session.server.watchers.flags & FETCHERS:
            session.store.lookup(key)  # memcached's item_get of the value it drops
        drop_old_value(session, key)


def drop_old_value(session, key):
    # memcached drops the old value of a set refused for size, so a client
    # never reads a stale one; if the disk refuses, the one reply stays
    # the size error and the failure is logged and counted
    try:
        session.store.discard(key)
    except StoreError as e:
        session.counters.persist_errors += 1
        log.error("could not drop the old value of %r: %s", key, e)


# command -> (function, fewest words, most words), as memcached counts them
COMMANDS = {
    b"set": (storage, 5, 6),
    b"add": (storage, 5, 6),
    b"replace": (storage, 5, 6),
    b"append": (storage, 5, 6),
    b"prepend": (storage, 5, 6),
    b"cas": (storage, 6, 7),
}
