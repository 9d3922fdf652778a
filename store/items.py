"""The items: memcached's storage semantics (set/add/replace/append/prepend/cas,
delete, touch, incr/decr, flush_all, expiry) over the file-per-key directory,
with the in-memory cache in front.

Every change is written through to the item's file before it is acknowledged.
Nothing here knows the wire protocol: callers pass keys, numbers and values,
and get results back. The options the meta commands need (compare-cas in any
mode, invalidation to "stale", an explicit new cas, vivify on a miss) are
options of the same few calls, not a second path.

Item state besides the value (store/record.py's `state` bits and `atime`) is
part of the record. Two parts of it change on every read, the "fetched" bit and
the last-access time: those are kept in memory (`_accessed`) and reach the
disk with the item's next write, or at a clean close, so a `get` never writes.
"""

import collections
import enum
import logging
import os
import re
import time

from . import record
from .cache import LRUCache
from .clock import Clock
from .durability import ALWAYS, EVERYSEC, NO, Durability, PendingWrite
from .errors import DiskFull, ReadError, StoreError
from .files import DataDir, key_hash
from .inplace import KEPT_FILES
from .restore import restore_from_spares
from .state import PersistentState
from .throttle import Throttle

log = logging.getLogger("memcached-lite.store")

# memcached: an exptime above 30 days is an absolute unix time.
REALTIME_MAXDELTA = 60 * 60 * 24 * 30
MAX_U64 = (1 << 64) - 1
# memcached keeps an item in a chunk of key + value + 59 bytes of header (+4
# when flags are non-zero); an item whose chunk passes -I is refused.
ITEM_OVERHEAD = 59
# What an enumeration reads of a record: the largest header and a key.
_HEADER_AND_KEY = record.HEADER_SIZE + 250
# Items whose access state (fetched, last access) waits in memory for a write;
# past this many the oldest are forgotten (their record keeps the older state).
ACCESSED_MAX = 10_000
# memcached's ITEM_UPDATE_INTERVAL: a read moves an item's last access (and
# its place in the memory LRU) only if that is this many seconds old, or the
# item was never read; so a key read again and again costs a lookup and a
# reply, not an LRU move and access bookkeeping each time
BUMP_INTERVAL = 60
# --disk-policy: past --max-disk, refuse the write (memcached's -M) or evict
REFUSE, EVICT = "refuse", "evict"
DISK_POLICIES = (REFUSE, EVICT)
# Overwrites of small records go in place into a slot under everysec and no
# (store/inplace.py); False sends every write through the exchange, the
# fallback path (the tests of that path set it).
IN_PLACE = True
# Evicting for one write looks at this many buckets at most, and evicts at most
# this many files: a write never waits for a walk of the whole dir.
EVICT_BUCKETS = 256
EVICT_FILES = 64


class Result(enum.Enum):
    """What a storage command did; the values are memcached's reply words."""

    STORED = "STORED"
    NOT_STORED = "NOT_STORED"
    EXISTS = "EXISTS"
    NOT_FOUND = "NOT_FOUND"

    __hash__ = object.__hash__  # a member is its own key: Enum's hash is a Python call


class Mode(enum.Enum):
    """The six storage commands."""

    SET = "set"
    ADD = "add"
    REPLACE = "replace"
    APPEND = "append"
    PREPEND = "prepend"
    CAS = "cas"

    __hash__ = object.__hash__


class NonNumeric(Exception):
    """incr/decr on a value that is not a decimal number."""


class Item:
    """One item as the store holds it; exptime is absolute (0 never).

    `state` holds record.py's bits (STALE, TOKEN_SENT, FETCHED, KEY_BINARY),
    `atime` the time of the last access.
    """

    __slots__ = ("key", "flags", "exptime", "cas", "stored", "value", "size", "disk", "state", "atime")

    def __init__(self, key, flags, exptime, cas, stored, value, state=0, atime=None):
        self.key = key
        self.flags = flags
        self.exptime = exptime
        self.cas = cas
        self.stored = stored
        self.value = value
        self.size = record.HEADER_SIZE + len(key) + len(value)  # its cost in the cache
        self.disk = self.size  # its file's size (bytes, the quota): two slots are more
        self.state = state
        self.atime = stored if atime is None else atime

    def has(self, bit):
        return bool(self.state & bit)


class Arithmetic:
    """What `Store.arithmetic` did: result is STORED (the number changed),
    NOT_FOUND, EXISTS (cas mismatch) or NOT_STORED; `created` when a miss was
    vivified; item is the item after the change."""

    __slots__ = ("result", "value", "item", "created", "exptime_before")

    def __init__(self, result, value=None, item=None, created=False, exptime_before=0):
        self.result = result
        self.value = value
        self.item = item
        self.created = created
        self.exptime_before = exptime_before  # the item's, before this change


class ItemHead(collections.namedtuple("ItemHead", "key flags exptime cas stored value_len state atime")):
    """What a record's header says of an item, without its value; `state`
    holds record.py's bits (FETCHED...), `atime` the last access."""

    __slots__ = ()


def absolute_expiry(exptime, now):
    """memcached's rule: 0 never, negative already, up to 30 days relative, else a unix time."""
    if exptime == 0:
        return 0
    if exptime < 0:
        return -1
    if exptime <= REALTIME_MAXDELTA:
        return int(now) + exptime
    return exptime


# strtoull as memcached's safe_strtoull uses it on a value: leading white space,
# an optional sign, digits, then white space or the end.
_NUMBER = re.compile(rb"[ \t\n\v\f\r]*([+-]?)([0-9]+)(?:[ \t\n\v\f\r\0]|$)")


def parse_c_integer(data):
    """The signed number C's strtol family reads at the start of data, or None.

    As memcached's safe_strto* accept it: the digits may be followed only by
    white space (or the end), never by other characters.
    """
    if data.isdigit() and len(data) < 19:
        return int(data)  # the common case: plain digits, far from any limit
    m = _NUMBER.match(data)
    if m is None:
        return None
    digits = m.group(2).lstrip(b"0") or b"0"
    # Past 20 digits every caller refuses it (ERANGE); 21 keep it out of range
    # without asking int() for thousands of digits.
    n = int(digits[:21])
    return -n if m.group(1) == b"-" else n


def parse_u64(data):
    """The number memcached's safe_strtoull reads in data, or None.

    strtoull negates "-n" modulo 2**64; memcached refuses the result only when
    it is negative as a signed number, so "-1" is refused and
    "-9223372036854775809" reads as 2**63 - 1.
    """
    n = parse_c_integer(data)
    if n is None or n > MAX_U64 or -n > MAX_U64:
        return None  # ERANGE
    if n < 0:
        n += 1 << 64
        if n >= 1 << 63:
            return None
    return n


class Store:
    """All items of one data directory. Every file operation goes through
    `fs` (store/filesystem.py; None: the real file system, OSFileSystem)."""

    def __init__(
        self,
        data_dir,
        memory_limit=64 << 20,
        item_size_max=1 << 20,
        clock=None,
        fsync=EVERYSEC,
        fsync_method="auto",
        max_disk=None,
        disk_policy=REFUSE,
        background_sync=False,
        fresh_spares=0,
        fs=None,
        kept_files=KEPT_FILES,
    ):
        # unix time that a step of the wall clock does not move (store/clock.py)
        self.clock = clock or Clock()
        # the log hub of `watch` (commands/watch.Watchers) while a watcher
        # takes an item stream: told of each lookup, and of each eviction
        self.watch = None
        # the same time as a plain function, for the read path (a third
        # cheaper a call than the Clock's __call__)
        self._now = self.clock.now if isinstance(self.clock, Clock) else self.clock
        self.max_disk = max_disk  # bytes of item records, like `bytes`; None: no quota
        self.disk_policy = disk_policy
        self.evictions = 0  # files removed to stay under max_disk
        self.evicted_unfetched = 0  # ...of items never read since their write
        self._evict_cursor = 0  # the next bucket the evict policy samples
        self.walks = 0  # background walks started (lru_crawler_starts)
        self.items_checked = 0  # files the walks read (crawler_items_checked)
        self.item_size_max = item_size_max
        self.dir = DataDir(data_dir, fs, kept_files)
        self.fs = self.dir.fs  # every file operation goes through it (store/filesystem.py)
        self.durability = None
        try:
            self.durability = Durability(fsync, fsync_method, self.dir.path, background=background_sync, fs=self.fs)
            self.durability.barrier_started = self.dir.barrier_started
            self.durability.barrier_passed = self.dir.barrier_passed
            self.durability.barrier_failed = self.dir.barrier_failed
            # always keeps the exchange: a failed batch must leave every old value
            self.dir.in_place = IN_PLACE and fsync != ALWAYS
            self.dir.barrier = self.durability.sync_now
            if fsync == EVERYSEC and self.durability.barrier.needs_paths:
                self.dir.displaced = self.durability.displaced
            self.state = PersistentState(self.dir)
            restored, highest = restore_from_spares(self.dir)  # before tmp/ is cleared
            self.state.observe_seq(highest)
            self.restored = len(restored)
            self.dir.clear_tmp()
            if restored or self.dir.removed_temp_files:
                self._start_up_barrier(restored)
            self.dir.spares.reuse_at_once = fsync == NO
            self.dir.spares.fresh_max = fresh_spares  # made by idle_tick()
            if max_disk is not None:
                # spares are disk beyond the items' quota: keep them a fraction of it
                self.dir.spares.ready_bytes = min(self.dir.spares.ready_bytes, max_disk // 8)
        except Exception:
            if self.durability is not None:
                self.durability.close()
            self.dir.close()
            raise
        self.cache = LRUCache(memory_limit)
        self.curr_items = 0
        self.bytes = 0
        self.total_items = 0
        self.get_expired = 0
        self.get_flushed = 0
        self.reclaimed = 0
        self.expired_unfetched = 0  # reclaimed by the walk as expired, never read since their write
        self.quarantined = 0
        self.read_errors = 0  # records that could not be read (EIO...): misses
        self.loaded = 0
        # the log lines of faults that come with every command (store/throttle.py)
        self.throttle = Throttle()
        self._barrier_failures = 0  # everysec barriers failed since the last that passed
        # Buckets up to _counted are in curr_items/bytes; the start-up scan
        # moves it forward, and a write counts itself only behind it.
        self._counted = ""
        self._scan = self._walk(first=True)
        self._scan_wanted = False
        # key -> item whose fetched bit / last access changed since its write
        # (an OrderedDict: dropping the oldest of a plain dict again and again
        # makes next(iter()) walk the holes its deletions leave)
        self._accessed = collections.OrderedDict()

    def _start_up_barrier(self, restored):
        """Make start-up's repair durable before the first write, at every
        level: else a second power loss could keep a later write and lose a
        restore's rename or tmp/'s clean-up (metadata reordered, or nothing
        ever synced under `no`), bringing back a record from before the
        first (docs/POWER_LOSS.md). A failure is logged: the dir is then no
        less durable than before the restart."""
        dirs = {self.dir.tmp} | {os.path.dirname(path) for path in restored}
        try:
            self.durability.sync(restored, sorted(dirs))
        except OSError as e:
            log.error("the barrier after start-up's repair of %s failed: %s", self.dir.path, e)

    # -- reading ----------------------------------------------------------

    def get(self, key, bump=True):
        """The live item for key, or None; counts expired and flushed misses.

        `bump` marks it fetched and accessed now, as memcached's LRU bump does
        (in memory; see the module docstring). A record that cannot be read
        is a miss (counted in read_errors and logged by _read)."""
        try:
            item = self._live(key, counting=True)
        except ReadError:
            return None
        if item is not None and bump:
            self.bump(item)
        return item

    def get_each(self, keys, start=0):
        """get() of keys[start:] in turn, lazily: the live item or None for
        each, so a caller that stops early leaves the rest unread."""
        hits = self.hits
        for i in range(start, len(keys)):
            key = keys[i]
            # the usual key (in memory and alive) without get()'s five calls
            hit = hits((key,))
            yield self.get(key) if hit is None else hit[0]

    def hits(self, keys):
        """The items of `keys` if every one is in memory and alive, no batch
        is open and no watcher follows item streams, each bumped as a read
        bumps it: a get's usual case, answered without get()'s calls. Else
        None, and get() is the way (an item it bumped stays bumped: the
        second bump within BUMP_INTERVAL changes nothing). `keys`: one or more."""
        memory = self.cache.items
        if keys[0] not in memory:
            return None  # (the usual miss, asked of the disk: said at once)
        state = self.state
        if self.durability.batch is not None or self.watch is not None or state.pending_flush is not None:
            return None
        now = self._now()
        dead_cas = state.dead_below_cas  # (state.is_flushed's answer when no flush is pending)
        dead_before = state.dead_before
        found = []
        for key in keys:
            item = memory.get(key)
            if item is None or item.cas < dead_cas or item.stored < dead_before:
                return None
            exptime = item.exptime
            if exptime and exptime <= now:
                return None
            if now - item.atime >= BUMP_INTERVAL or not item.state & record.FETCHED:
                memory.move_to_end(key)
                self.bump(item, now)
            found.append(item)
        return found

    def peek(self, key):
        """The live item for key, or None, leaving its access state alone (an
        unreadable record is None, as for get)."""
        try:
            return self._live(key, log=False)
        except ReadError:
            return None

    def lookup(self, key):
        """The live item for key, or None, as a command's lookup (what a
        watcher of fetchers sees: a set's own lookup, as memcached's)."""
        try:
            return self._live(key)
        except ReadError:
            return None

    def _was_fetched(self, key, state):
        """Whether the item was read since its write: its record's FETCHED
        bit, or one a read set that waits in memory to be written."""
        if state & record.FETCHED:
            return True
        waiting = self._accessed.get(key)
        return waiting is not None and bool(waiting.state & record.FETCHED)

    def bump(self, item, now=None):
        """Mark an item fetched and accessed now, without a write; an item
        fetched before keeps its last access for BUMP_INTERVAL, as memcached's."""
        now = self.clock() if now is None else now
        if item.state & record.FETCHED and now - item.atime < BUMP_INTERVAL:
            return
        item.state |= record.FETCHED
        item.atime = now
        accessed = self._accessed
        # (an item already waiting keeps its place: the bound is on memory,
        # and moving it on every read would cost each get a pop)
        if item.key not in accessed:
            accessed[item.key] = item
            if len(accessed) > ACCESSED_MAX:
                accessed.popitem(last=False)

    def _live(self, key, counting=False, log=True):
        batch = self.durability.batch
        pending = None if batch is None else batch.writes.get(key)
        if pending is not None:
            # a change of the open batch: what this command answers depends
            # on it, so its reply waits for the batch (and fails with it)
            self.durability.used = batch
            item = pending.item
            if item is None:
                if log and self.watch is not None:
                    self.watch.item_get(key, "not_found")
                return None  # deleted in this batch
        else:
            item = self.cache.get(key)
            if item is None:
                item = self._read(key)
                if item is None:
                    if log and self.watch is not None:
                        self.watch.item_get(key, "not_found")
                    return None
        now = self._now()
        exptime = item.exptime
        if (not exptime or exptime > now) and not self.state.is_flushed(item.cas, item.stored, now):
            if log and self.watch is not None:
                self.watch.item_get(key, "found", item)
            return item  # alive: the common case, without _death's call
        death = self._death(exptime, item.cas, item.stored, now)
        if log and self.watch is not None:
            self.watch.item_get(key, death)
        if counting:
            if death == "expired":
                self.get_expired += 1
            else:
                self.get_flushed += 1
        self._reclaim(key, item.disk)
        return None

    def _pending(self, key):
        # under `always`, a change made this iteration is not in the files yet
        batch = self.durability.batch
        return None if batch is None else batch.writes.get(key)

    def _death(self, exptime, cas, stored, now):
        """Why an item is dead ("expired", "flushed"), or None if it lives."""
        if exptime and exptime <= now:
            return "expired"
        if self.state.is_flushed(cas, stored, now):
            return "flushed"
        return None

    def _reclaim(self, key, size):
        # A dead item's file: dead by rule whether or not its removal is
        # durable, so it goes at once, outside any batch (unless the batch
        # holds the dead write). If it cannot go now, the walk retries later.
        try:
            if self._pending(key) is not None:
                self._unlink(key, size)
                return
            bucket, path = self.dir.locate(key)
            self.cache.discard(key)
            self._accessed.pop(key, None)
            if self._remove(path, size):
                self._account(bucket, -1, -size)
        except StoreError:
            self._scan_wanted = True

    def _read(self, key):
        _, path = self.dir.locate(key)
        try:
            data = self.dir.read(path)
        except OSError as e:
            self._read_failed(path, e)
            raise ReadError(f"cannot read: {e.strerror or e}") from e
        if data is None:
            return None
        try:
            r, size, _, _ = record.decode_file(data, key.__eq__)
        except record.CorruptRecord as e:
            self._quarantine(path, len(data), e)
            return None
        if r.key != key:
            self._quarantine(path, len(data), "key does not match its file name")
            return None
        accessed = self._accessed.get(key)
        if accessed is not None and accessed.cas == r.cas:
            item = accessed  # left memory with access state not yet written
        else:
            item = Item(key, r.flags, r.exptime, r.cas, r.stored, r.value, r.state, r.atime)
            item.disk = size  # the file's: a version 1 record shorter, two slots longer
        self.cache.put(item)
        return item

    def _read_failed(self, path, e):
        # Not quarantined: an EIO may be transient (a cable, a controller
        # reset) and the record intact; moving it aside would lose it for
        # good, while a miss costs the client one re-set, whose new file
        # replaces a really bad one. Never served: a miss, never guessed bytes.
        self.read_errors += 1
        self.throttle.log(("read", e.errno), log, logging.ERROR, "cannot read %s: %s (a miss)", path, e)

    def _quarantine(self, path, size, why):
        try:
            self.dir.quarantine(path)
        except OSError as e:
            log.error("corrupt record %s (%s) cannot be moved aside: %s", path, why, e)
            return
        log.error("quarantined corrupt record %s: %s", path, why)
        self.quarantined += 1
        self._account(_bucket_of(path), -1, -size)

    # -- writing ----------------------------------------------------------

    @staticmethod
    def item_total(key_len, value_len, flags):
        """memcached's size of such an item (ITEM_ntotal: header, key, value)."""
        return key_len + value_len + ITEM_OVERHEAD + (4 if flags else 0)

    def item_fits(self, key_len, value_len, flags):
        """Whether memcached would find room for such an item under -I."""
        return self.item_total(key_len, value_len, flags) <= self.item_size_max

    def store(
        self, mode, key, flags, exptime, value, cas_unique=0,
        *, invalidate=False, new_cas=None, vivify=None, state=0,
    ):
        """memcached's storage commands; returns a Result, raises StoreError.

        cas_unique is the cas `cas` compares; append/prepend compare it too
        when it is not 0 (as memcached does for `ms ... C<cas> MA`). The meta
        options: `invalidate` lets a CAS with an older cas store the value as
        stale (keeping the expiry, `ms ... C I`); `new_cas` is the stored
        item's cas instead of the next one (`E`); `vivify` is the relative
        exptime with which an append/prepend to a missing key creates it
        (`ms ... MA N`); `state` is the new item's record state bits.
        """
        if mode is Mode.SET:
            return self._write(key, flags, exptime, value, new_cas=new_cas, state=state)
        old = self._live(key)
        if mode is Mode.ADD:
            if old is not None:
                self.cache.get(key)  # memcached bumps the item it refused to replace
                return Result.NOT_STORED
            return self._write(key, flags, exptime, value, new_cas=new_cas, state=state)
        if old is None:
            if vivify is not None and mode in (Mode.APPEND, Mode.PREPEND):
                return self._write(key, flags, vivify, value, new_cas=new_cas, state=state)
            return Result.NOT_FOUND if mode is Mode.CAS else Result.NOT_STORED
        if mode is Mode.CAS:
            if old.cas == cas_unique:
                return self._write(key, flags, exptime, value, old, new_cas=new_cas, state=state)
            if invalidate and cas_unique < old.cas:
                # memcached keeps the old expiry, marks it stale, and keeps the
                # token a client may already hold for recaching it
                state |= record.STALE | (old.state & record.TOKEN_SENT)
                self._write_item(key, flags, old.exptime, value, old, cas=new_cas, state=state)
                return Result.STORED
            return Result.EXISTS
        if mode is Mode.REPLACE:
            return self._write(key, flags, exptime, value, old, new_cas=new_cas, state=state)
        if cas_unique and old.cas != cas_unique:
            return Result.EXISTS
        # append/prepend keep the old item's flags and expiry
        if not self.item_fits(len(key), len(old.value) + len(value), old.flags):
            return Result.NOT_STORED
        value = old.value + value if mode is Mode.APPEND else value + old.value
        self._write_item(key, old.flags, old.exptime, value, old, cas=new_cas, state=state)
        return Result.STORED

    def _write(self, key, flags, exptime, value, old=None, new_cas=None, state=0):
        absolute = absolute_expiry(exptime, self.clock())
        self._write_item(key, flags, absolute, value, old, cas=new_cas, state=state)
        return Result.STORED

    def mark(self, item, exptime=None, state=None, new_cas=False):
        """Rewrite a live item's meta data in place: a new absolute exptime,
        new state bits, and (new_cas True, or a number) a new cas; the value,
        flags and (unless asked) cas stay. For `mg ... T` / a recache win and
        `md ... I`. Returns the new item."""
        if new_cas is True:
            cas = None
        elif new_cas is False:
            cas = item.cas
        else:
            cas = new_cas
        return self._write_item(
            item.key, item.flags, item.exptime if exptime is None else exptime, item.value, item,
            cas=cas, linked=False, state=item.state if state is None else state, atime=item.atime,
        )

    def _write_item(self, key, flags, exptime, value, old=None, cas=None, linked=True, state=0, atime=None):
        """Write an item: a new cas unless one is given (touch keeps it);
        `linked` counts it in total_items as memcached counts a new item
        (touch and an incr that fits in place make none)."""
        bucket, path = self.dir.locate(key)
        old_size = old.disk if old is not None else self._file_size(key, path)
        if self.max_disk is not None:
            self._make_room(path, self._new_size(key, value) - (old_size or 0))
        if cas is None:
            cas = self.state.next_cas()
        else:
            self.state.observe(cas)
        item = Item(key, flags, exptime, cas, self.clock(), value, state, atime)
        # the store-wide write sequence orders this record after every earlier
        # one of the key, whatever their cas (start-up restore: restore.py)
        fields = (key, flags, exptime, cas, item.stored, value, item.state, item.atime, self.state.next_seq())
        durability = self.durability
        try:
            if durability.level == ALWAYS:
                # a whole-file record: no write in place under always (files.write)
                tmp = self.dir.write_temp([record.encode(*fields), key, value], os.path.basename(path))
            else:
                # in place into a slot, or a new file by the exchange
                changed, item.disk = self.dir.write(path, fields, old_size)
                durability.written(path, changed)
        except OSError as e:
            self.throttle.log(("write", e.errno), log, logging.ERROR, "write of %r failed: %s", key, e)
            raise StoreError(f"{e.strerror or e}") from e
        self.cache.put(item)
        self._accessed.pop(key, None)  # the new record holds the access state
        if linked:
            self.total_items += 1
        items_delta = 1 if old_size is None else 0
        bytes_delta = item.disk - (old_size or 0)
        self._account(bucket, items_delta, bytes_delta)
        if durability.level == ALWAYS:
            self._join_batch(key, PendingWrite(key, path, tmp, item, bucket, items_delta, bytes_delta, old_size))
        return item

    def _new_size(self, key, value):
        # the file a write makes (under always a whole-file record, not two slots)
        if self.durability.level == ALWAYS:
            return record.HEADER_SIZE + len(key) + len(value)
        return record.file_size(len(key), len(value))

    def _join_batch(self, key, change):
        """Put a write or a delete in the open batch, in place of the key's
        earlier change there (whose counts add to this one's: undone together)."""
        batch = self.durability.open_batch()
        replaced = batch.writes.pop(key, None)
        if replaced is not None:
            if replaced.tmp is not None:
                self.dir.abandon(replaced.tmp)
            change.items_delta += replaced.items_delta
            change.bytes_delta += replaced.bytes_delta
            change.old_size = replaced.old_size  # the file on disk is still that one
        batch.writes[key] = change
        batch.changes += 1
        self.durability.used = batch

    def _make_room(self, path, growth):
        """--max-disk: raise DiskFull unless `growth` more bytes fit, after
        evicting under the evict policy. Until the start-up scan is done,
        `bytes` counts only the buckets behind it, so the quota holds from
        then on and, before, against what has been counted."""
        if growth <= 0 or self.bytes + growth <= self.max_disk:
            return
        if self.disk_policy == EVICT:
            for _ in range(EVICT_FILES):
                if not self._evict_one(path):
                    break
                if self.bytes + growth <= self.max_disk:
                    return
        raise DiskFull()

    def _evict_one(self, keep):
        """Remove the least recently written file (oldest mtime) of the next
        non-empty bucket (up to EVICT_BUCKETS looked at), never `keep`;
        False if there was none. Without an index of all keys, the order is
        approximate, as Redis's sampled LRU: a bucket at a time."""
        for _ in range(EVICT_BUCKETS):
            # the next bucket folder that exists: a sparse store has few, and
            # stepping through 65,536 names would rarely reach one
            cursor = self._evict_cursor
            top, sub = cursor >> 8, cursor & 255
            later = [b for b in self.dir.sub_buckets("%02x" % top) if b >= sub]
            if not later:
                self._evict_cursor = ((top + 1) % 256) << 8
                continue
            self._evict_cursor = ((top << 8) + later[0] + 1) % 65536
            bucket = "%02x/%02x" % (top, later[0])
            victims = []
            for file_path, size in self.dir.bucket_files(bucket):
                if file_path == keep:
                    continue
                try:
                    victims.append((self.fs.stat(file_path).st_mtime, file_path, size))
                except FileNotFoundError:
                    continue
            if not victims:
                continue
            _, victim, size = min(victims)
            try:
                data = self.dir.read(victim)
                h, size, _, _ = record.decode_file(data or b"")
            except (OSError, record.CorruptRecord):
                continue  # the walk quarantines it
            key = h.key
            pending = self._pending(key)
            if pending is not None and pending.item is None:
                continue  # deleted in the open batch: its file goes at the commit
            fetched = self._was_fetched(key, h.state)
            self._unlink(key, size)
            if self.watch is not None:
                now = self._now()
                self.watch.eviction(key, h.exptime, fetched, h.atime or h.stored, len(h.value), now)
            self.evictions += 1
            if not fetched:
                self.evicted_unfetched += 1
            return True
        return False

    @property
    def walking(self):
        """A background walk over the buckets is running."""
        return self._scan is not None

    def _file_size(self, key, path):
        """The size the counts hold for the key's item, or None if none."""
        pending = self._pending(key)
        if pending is not None:
            return None if pending.item is None else pending.item.disk
        cached = self.cache.get(key)
        if cached is not None:
            return cached.disk
        return self.dir.size(path)

    def delete(self, key, cas_unique=None, invalidate=False, exptime=None, new_cas=None, keep_empty=False):
        """Remove a live item; True if there was one, False if not.

        The meta options: with cas_unique, only an item of that cas is touched
        (Result.EXISTS otherwise); `invalidate` keeps the item but marks it
        stale with a new cas (`new_cas`, or the next one) and clears its
        recache token, and `exptime` (relative) gives it a new expiry;
        `keep_empty` (`md ... x`) leaves the item with an empty value (flags,
        expiry kept, a new cas) instead of removing it.
        """
        item = self._live(key)
        if item is None:
            return False
        if cas_unique is not None and item.cas != cas_unique:
            return Result.EXISTS
        if invalidate:
            state = (item.state | record.STALE) & ~record.TOKEN_SENT
            absolute = None if exptime is None else absolute_expiry(exptime, self.clock())
            self.mark(item, absolute, state, True if new_cas is None else new_cas)
            return True
        if keep_empty:
            self._write_item(key, item.flags, item.exptime, b"", item, cas=new_cas)
            return True
        self._unlink(key, item.disk)
        return True

    def discard(self, key):
        """Remove the key's file whatever it holds (memcached drops the old
        value of a set that failed for size)."""
        bucket, path = self.dir.locate(key)
        size = self._file_size(key, path)
        if size is not None:
            self._unlink(key, size)

    def touch(self, key, exptime):
        """Give a live item a new expiry; return it, or None if there is none.
        A touch is an access, as in memcached (fetched, last access now)."""
        item = self._live(key)
        if item is None:
            return None
        self.bump(item)
        return self.mark(item, absolute_expiry(exptime, self.clock()))

    def incr_decr(self, key, delta, incr):
        """Add or subtract delta; return the new number, or None if there is no item.

        incr wraps at 2**64, decr stops at 0, and a shorter result is padded with
        spaces to the old length, all as memcached does. Raises NonNumeric.
        """
        return self.arithmetic(key, delta, incr).value

    def arithmetic(self, key, delta, incr, cas_unique=None, exptime=None, vivify=None, new_cas=None):
        """incr/decr with the meta options; returns an Arithmetic. Raises NonNumeric.

        With cas_unique only an item of that cas changes (EXISTS otherwise);
        `exptime` (relative) is set with the change; `vivify` is
        (initial number, relative exptime) for creating a missing item, whose
        value is then the initial number, not changed by delta; `new_cas` is
        the new cas instead of the next one.
        """
        item = self._live(key)
        now = self.clock()
        if item is None:
            if vivify is None:
                return Arithmetic(Result.NOT_FOUND)
            initial, life = vivify
            self._write(key, 0, life, b"%d" % initial, new_cas=new_cas)
            return Arithmetic(Result.STORED, initial, self.peek(key), created=True)
        if cas_unique is not None and item.cas != cas_unique:
            return Arithmetic(Result.EXISTS)
        n = parse_u64(item.value) if item.value else None
        if n is None:
            raise NonNumeric()
        n = (n + delta) & MAX_U64 if incr else max(0, n - delta)
        digits = b"%d" % n
        in_place = len(digits) <= len(item.value)
        if in_place:
            digits = digits.ljust(len(item.value))
        absolute = item.exptime if exptime is None else absolute_expiry(exptime, now)
        # memcached changes a number that fits in place in the same item (its
        # state stays); a longer one is a new item
        state, atime = (item.state, item.atime) if in_place else (0, None)
        new = self._write_item(
            key, item.flags, absolute, digits, item, cas=new_cas, linked=not in_place, state=state, atime=atime
        )
        return Arithmetic(Result.STORED, n, new, exptime_before=item.exptime)

    def _unlink(self, key, size):
        """Delete the key's item (of `size` in the counts). Under `always` the
        file is removed by the commit, after the batch's first barrier, so a
        failed commit leaves it; readers see the delete at once."""
        bucket, path = self.dir.locate(key)
        self.cache.discard(key)
        self._accessed.pop(key, None)
        if self.durability.level == ALWAYS:
            pending = self._pending(key)
            if pending is not None and pending.item is None:
                return  # already deleted in this batch (its file is still there)
            if pending is not None:
                size = pending.item.disk  # what the counts hold for it now
            self._account(bucket, -1, -size)
            self._join_batch(key, PendingWrite(key, path, None, None, bucket, -1, -size, size))
            return
        if self._remove(path, size):
            self._account(bucket, -1, -size)
            self.durability.removed([os.path.dirname(path)])

    def _remove(self, path, size):
        try:
            return self.dir.remove(path, size)
        except OSError as e:
            self.throttle.log(("remove", e.errno), log, logging.ERROR, "cannot remove %s: %s", path, e)
            raise StoreError(f"cannot remove: {e.strerror or e}") from e

    def _account(self, bucket, items, nbytes):
        if bucket <= self._counted:
            self.curr_items += items
            self.bytes += nbytes

    # -- durability ---------------------------------------------------------

    @property
    def batch(self):
        """The open batch of writes under `always`, or None."""
        return self.durability.batch

    def commit(self):
        """Make the open batch durable (`always`): barrier (the temp files),
        renames and unlinks, barrier (the folders).

        Afterwards `batch.error` says whether it failed. What had not reached
        the files when it failed is forgotten, its counts undone: after a
        failed first barrier every old file, deleted ones included, stays.
        """
        durability = self.durability
        batch = durability.batch
        if batch is None:
            return None
        durability.batch = None
        batch.committed = True
        changes = list(batch.writes.values())
        writes = [c for c in changes if c.tmp is not None]
        done = set()
        try:
            if writes:
                durability.sync([w.tmp for w in writes], [self.dir.tmp])
            for change in changes:
                if change.tmp is not None:
                    batch.dirs.update(self.dir.install(change.tmp, change.path, change.old_size))
                else:
                    self.dir.remove(change.path, change.old_size)
                    batch.dirs.add(os.path.dirname(change.path))
                done.add(change.key)
            durability.sync((), batch.dirs)
        except OSError as e:
            batch.error = e.strerror or str(e)
            self.throttle.log(("commit", e.errno), log, logging.ERROR,
                              "commit of %d changes failed: %s; their commands are answered with it", len(changes), e)
            for change in changes:
                if change.key not in done:
                    self._forget(change)
        return batch

    def _forget(self, change):
        # a change that never reached the files: readers go back to them
        if change.tmp is not None:
            self.dir.abandon(change.tmp)
        self.cache.discard(change.key)
        self._accessed.pop(change.key, None)
        self._account(change.bucket, -change.items_delta, -change.bytes_delta)

    def seconds_to_sync(self):
        """How long until sync_if_due has work (everysec), or None."""
        return self.durability.seconds_to_sync()

    def sync_if_due(self):
        """everysec's timer; raises StoreError if the barrier failed (its
        writes wait for the next tick's, which is logged when it passes)."""
        try:
            passed = self.durability.sync_if_due()
        except OSError as e:
            self._barrier_failures += 1
            self.throttle.log(("sync", e.errno), log, logging.ERROR,
                              "periodic sync failed: %s; retried at the next tick", e)
            raise StoreError(f"sync failed: {e.strerror or e}") from e
        if passed and self._barrier_failures:
            # Linux's fsync-gate: a failed writeback may have dropped the
            # dirty pages it could not write (marked clean), and the retry
            # that passes now does not write them again (docs/POWER_LOSS.md)
            log.error("periodic sync passed again after %d failed; the writes those covered are "
                      "readable but may not be durable (a failed writeback can drop them)",
                      self._barrier_failures)
            self._barrier_failures = 0
        return passed

    # -- flush_all and the walk over every file -----------------------------

    def flush_all(self, exptime=0):
        """Kill every item now, or when exptime (memcached's rules) comes; the
        files go in the background."""
        now = self.clock()
        if exptime > 0:
            self.state.flush(now, absolute_expiry(exptime, now))
        else:
            self.state.flush(now)
            self.cache.clear()
        self._scan_wanted = True

    def has_work(self):
        """True while background work (the start-up count, reclaiming) is pending."""
        if self._scan is None and self._scan_wanted:
            pending = self.state.pending_flush
            if pending is None or pending <= self.clock():
                self._scan_wanted = False
                self._scan = self._walk(first=False)
        return self._scan is not None

    def tick(self, budget=0.005):
        """Do background work for about budget seconds; False when none is left."""
        # the walk counts files on disk: pending writes must be in them first
        self.commit()
        if not self.has_work():
            return False
        deadline = time.monotonic() + budget
        for _ in self._scan:
            if time.monotonic() >= deadline:
                return True
        self._scan = None
        return self.has_work()

    def has_idle_work(self):
        """True while there is work for moments when no client waits (the
        empty spares of store/spares.py)."""
        return self.dir.spares.wants_fresh()

    def idle_tick(self, budget=0.002):
        """Do idle work for about budget seconds."""
        self.dir.spares.make_fresh(budget)

    def _walk(self, first):
        """Visit every bucket: count what is there (first pass) and reclaim dead files.

        Yields after each bucket so the caller can stop between any two.
        """
        self.walks += 1
        for top in range(256):
            top_name = "%02x" % top
            if not self.dir.has_top(top_name):
                if first:
                    self._counted = top_name + "/ff"
                continue
            for sub in range(256):
                bucket = "%s/%02x" % (top_name, sub)
                self._walk_bucket(bucket, first)
                if first:
                    self._counted = bucket
                yield
        if first:
            self._counted = "~"  # every bucket, including ones made from now on
            log.info("start-up scan done: %d items, %d bytes", self.curr_items, self.bytes)

    def _walk_bucket(self, bucket, first):
        now = self.clock()
        try:
            files = self.dir.bucket_files(bucket)
        except OSError as e:
            # (a failing disk fails every bucket of a walk: rate-limited)
            self.throttle.log(("list", e.errno), log, logging.ERROR, "cannot list bucket %s: %s", bucket, e)
            return
        for path, size in files:
            self.items_checked += 1
            # Within the first pass this bucket is not counted yet, so the
            # _account calls below are no-ops there, as they must be.
            try:
                data = self.dir.read(path)
            except IsADirectoryError as e:
                # a directory is not an item: set it aside
                self._quarantine(path, size, e)
                continue
            except OSError as e:
                # an unreadable record (EIO) stays, counted as the file on
                # disk it is: a later read or walk may succeed (_read_failed)
                self._read_failed(path, e)
                if first:
                    self.curr_items += 1
                    self.bytes += size
                continue
            if data is None:
                continue
            name = os.path.basename(path)
            try:
                r = record.decode_file(data, lambda k: key_hash(k) == name)[0]
                if key_hash(r.key) != name:
                    raise record.CorruptRecord("key does not match its file name")
            except record.CorruptRecord as e:
                self._quarantine(path, size, e)
                continue
            key, exptime, cas, stored = r.key, r.exptime, r.cas, r.stored
            death = self._death(exptime, cas, stored, now)
            if death is None:
                if first:
                    self.curr_items += 1
                    self.bytes += size
                    self.loaded += 1
                continue
            self.cache.discard(key)
            try:
                removed = self.dir.remove(path, size)
            except OSError as e:
                self.throttle.log(("remove", e.errno), log, logging.ERROR, "cannot remove %s: %s", path, e)
                continue
            if removed:
                self.reclaimed += 1
                # memcached's crawler counts the expired, not the flushed
                if death == "expired" and not self._was_fetched(key, r.state):
                    self.expired_unfetched += 1
                self._account(bucket, -1, -size)

    def reset_stats(self):
        """`stats reset`: zero the counters the store keeps."""
        self.total_items = 0
        self.get_expired = 0
        self.get_flushed = 0
        self.reclaimed = 0
        self.expired_unfetched = 0
        self.evicted_unfetched = 0

    @property
    def scan_done(self):
        return self._counted == "~"

    # -- enumerating the live items (lru_crawler metadump) ------------------

    def live_heads(self):
        """Every live item's header, one bucket at a time, in hash order.

        Yields a list of ItemHead per bucket (often empty), so a caller can
        stop between any two buckets and go on later: only one bucket is
        ever held in memory, and no index of keys is needed. An item that
        lives throughout appears exactly once (its bucket is fixed by its
        key); one written or deleted meanwhile may or may not appear.
        Read-only: a file that is not a valid record is skipped and left to
        the background walk, which quarantines it. The access state of an
        item read since its last write (kept in memory) is the one given.
        """
        for top in range(256):
            top_name = "%02x" % top
            # the listing reads files: the open batch's changes must be in
            # them first (its replies still wait for the end of the iteration)
            self.commit()
            if not self.dir.has_top(top_name):
                yield []
                continue
            for sub in range(256):
                self.commit()
                yield self._live_heads_in("%s/%02x" % (top_name, sub))

    def _live_heads_in(self, bucket):
        try:
            files = self.dir.bucket_heads(bucket, _HEADER_AND_KEY)
        except OSError as e:
            self.throttle.log(("list", e.errno), log, logging.ERROR, "cannot list bucket %s: %s", bucket, e)
            return []
        now = self.clock()
        heads = []
        for path, size, head in files:
            try:
                h = record.decode_header(head)
                key = bytes(head[h.size : h.size + h.key_len])
                if size == h.size + h.key_len + h.value_len and len(key) == h.key_len:
                    h = ItemHead(key, h.flags, h.exptime, h.cas, h.stored, h.value_len, h.state, h.atime)
                else:
                    h = self._slotted_head(path)
            except record.CorruptRecord:
                h = self._slotted_head(path)
            if h is None:
                continue
            key = h.key
            if key_hash(key) != os.path.basename(path) or self._death(h.exptime, h.cas, h.stored, now):
                continue
            state, atime = h.state, h.atime
            accessed = self._accessed.get(key)
            if accessed is not None and accessed.cas == h.cas:
                state, atime = accessed.state, accessed.atime
            heads.append(h._replace(state=state, atime=atime))
        return heads

    def _slotted_head(self, path):
        # a two-slot file (or a torn one): the winning slot's record, read
        # whole (a slot is at most record.SLOT_MAX); None if there is none
        name = os.path.basename(path)
        try:
            data = self.dir.read(path)
            r = record.decode_file(data or b"", lambda k: key_hash(k) == name)[0]
        except (OSError, record.CorruptRecord):
            return None
        return ItemHead(r.key, r.flags, r.exptime, r.cas, r.stored, len(r.value), r.state, r.atime)

    def save_access_state(self):
        """Write the fetched bit and last access of the items read since their
        last write (a clean close does this). A write that fails is logged;
        only that access state is lost."""
        accessed, self._accessed = self._accessed, collections.OrderedDict()
        for key, item in accessed.items():
            try:
                live = self._live(key)
                if live is None or live.cas != item.cas:
                    continue  # changed or gone since: its record is newer
                self.mark(item)
            except StoreError as e:
                # (a read-only disk fails every one: a line a minute, not one a key)
                self.throttle.log("access state", log, logging.ERROR,
                                  "could not save the access state of %r: %s", key, e)

    def close(self):
        """Save the access state, commit, make everything durable, save the
        state, release the dir."""
        try:
            self.save_access_state()
            self.commit()
            if self.durability.level != ALWAYS:
                self.durability.sync_if_due(force=True)
            self.dir.spares.drain(held_too=True)  # everything is durable now
        except OSError as e:
            log.error("final sync failed: %s", e)
        finally:
            self.durability.close()
            try:
                self.state.close()
            except StoreError as e:
                # (a full or read-only disk) the reservation saved before
                # stands: a restart skips some cas values, never reuses one
                log.error("%s at close: the saved cas reservation stands", e)
            finally:
                self.dir.close()


def _bucket_of(path):
    # the folders it lies in, not its name: a stray file's name can be anything
    parts = path.rsplit("/", 3)
    return parts[-3] + "/" + parts[-2]
