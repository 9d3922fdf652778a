"""The items: memcached's storage semantics (set/add/replace/append/prepend/cas,
delete, touch, incr/decr, flush_all, expiry) over the file-per-key directory,
with the in-memory cache in front.

Every change is written through to the item's file before it is acknowledged.
Nothing here knows the wire protocol: callers pass keys, numbers and values,
and get results back.
"""

import collections
import enum
import logging
import re
import time

from . import record
from .cache import LRUCache
from .errors import StoreError
from .files import DataDir
from .state import PersistentState

log = logging.getLogger("memcached-lite.store")

# memcached: an exptime above 30 days is an absolute unix time.
REALTIME_MAXDELTA = 60 * 60 * 24 * 30
MAX_U64 = (1 << 64) - 1
# memcached keeps an item in a chunk of key + value + 59 bytes of header (+4
# when flags are non-zero); an item whose chunk passes -I is refused.
ITEM_OVERHEAD = 59
# The bytes a scan reads to learn a record's header and key.
_HEAD_AND_KEY = record.HEADER_SIZE + 250


class Result(enum.Enum):
    """What a storage command did; the values are memcached's reply words."""

    STORED = "STORED"
    NOT_STORED = "NOT_STORED"
    EXISTS = "EXISTS"
    NOT_FOUND = "NOT_FOUND"


class Mode(enum.Enum):
    """The six storage commands."""

    SET = "set"
    ADD = "add"
    REPLACE = "replace"
    APPEND = "append"
    PREPEND = "prepend"
    CAS = "cas"


class NonNumeric(Exception):
    """incr/decr on a value that is not a decimal number."""


class Item:
    """One item as the store holds it; exptime is absolute (0 never)."""

    __slots__ = ("key", "flags", "exptime", "cas", "stored", "value", "size")

    def __init__(self, key, flags, exptime, cas, stored, value):
        self.key = key
        self.flags = flags
        self.exptime = exptime
        self.cas = cas
        self.stored = stored
        self.value = value
        self.size = record.HEADER_SIZE + len(key) + len(value)


class ItemHead(collections.namedtuple("ItemHead", "key flags exptime cas stored value_len")):
    """What a record's header says of an item, without its value."""

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
    """All items of one data directory."""

    def __init__(self, data_dir, memory_limit=64 << 20, item_size_max=1 << 20, clock=time.time):
        self.clock = clock
        self.item_size_max = item_size_max
        self.dir = DataDir(data_dir)
        try:
            self.state = PersistentState(self.dir)
        except Exception:
            self.dir.close()
            raise
        self.cache = LRUCache(memory_limit)
        self.curr_items = 0
        self.bytes = 0
        self.total_items = 0
        self.get_expired = 0
        self.get_flushed = 0
        self.reclaimed = 0
        self.quarantined = 0
        self.loaded = 0
        # Buckets up to _counted are in curr_items/bytes; the start-up scan
        # moves it forward, and a write counts itself only behind it.
        self._counted = ""
        self._scan = self._walk(first=True)
        self._scan_wanted = False

    # -- reading ----------------------------------------------------------

    def get(self, key):
        """The live item for key, or None; counts expired and flushed misses."""
        return self._live(key, counting=True)

    def _live(self, key, counting=False):
        item = self.cache.get(key)
        if item is None:
            item = self._read(key)
            if item is None:
                return None
        death = self._death(item.exptime, item.cas, item.stored, self.clock())
        if death is None:
            return item
        if counting:
            if death == "expired":
                self.get_expired += 1
            else:
                self.get_flushed += 1
        self._reclaim(key, item.size)
        return None

    def _death(self, exptime, cas, stored, now):
        """Why an item is dead ("expired", "flushed"), or None if it lives."""
        if exptime and exptime <= now:
            return "expired"
        if self.state.is_flushed(cas, stored, now):
            return "flushed"
        return None

    def _reclaim(self, key, size):
        # a dead item's file; if it cannot go now, the walk retries later
        try:
            self._unlink(key, size)
        except StoreError:
            self._scan_wanted = True

    def _read(self, key):
        _, path = self.dir.locate(key)
        try:
            data = self.dir.read(path)
        except OSError as e:
            log.error("cannot read %s: %s", path, e)
            raise StoreError(f"cannot read: {e.strerror or e}") from e
        if data is None:
            return None
        try:
            k, flags, exptime, cas, stored, value = record.decode(data)
        except record.CorruptRecord as e:
            self._quarantine(path, len(data), e)
            return None
        if k != key:
            self._quarantine(path, len(data), "key does not match its file name")
            return None
        item = Item(key, flags, exptime, cas, stored, value)
        self.cache.put(item)
        return item

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

    def item_fits(self, key_len, value_len, flags):
        """Whether memcached would find room for such an item under -I."""
        overhead = ITEM_OVERHEAD + (4 if flags else 0)
        return key_len + value_len + overhead <= self.item_size_max

    def store(self, mode, key, flags, exptime, value, cas_unique=0):
        """memcached's storage commands; returns a Result, raises StoreError."""
        if mode is Mode.SET:
            return self._write(key, flags, exptime, value)
        old = self._live(key)
        if mode is Mode.ADD:
            if old is not None:
                self.cache.get(key)  # memcached bumps the item it refused to replace
                return Result.NOT_STORED
            return self._write(key, flags, exptime, value)
        if old is None:
            return Result.NOT_FOUND if mode is Mode.CAS else Result.NOT_STORED
        if mode is Mode.CAS:
            if old.cas != cas_unique:
                return Result.EXISTS
            return self._write(key, flags, exptime, value, old)
        if mode is Mode.REPLACE:
            return self._write(key, flags, exptime, value, old)
        # append/prepend keep the old item's flags and expiry
        if not self.item_fits(len(key), len(old.value) + len(value), old.flags):
            return Result.NOT_STORED
        value = old.value + value if mode is Mode.APPEND else value + old.value
        self._write_item(key, old.flags, old.exptime, value, old)
        return Result.STORED

    def _write(self, key, flags, exptime, value, old=None):
        self._write_item(key, flags, absolute_expiry(exptime, self.clock()), value, old)
        return Result.STORED

    def _write_item(self, key, flags, exptime, value, old=None, cas=None, linked=True):
        """Write an item: a new cas unless one is given (touch keeps it);
        `linked` counts it in total_items as memcached counts a new item
        (touch and an incr that fits in place make none)."""
        bucket, path = self.dir.locate(key)
        old_size = old.size if old is not None else self._file_size(key, path)
        if cas is None:
            cas = self.state.next_cas()
        item = Item(key, flags, exptime, cas, self.clock(), value)
        header = record.encode(key, flags, exptime, cas, item.stored, value)
        try:
            self.dir.write(path, [header, key, value])
        except OSError as e:
            log.error("write of %r failed: %s", key, e)
            raise StoreError(f"{e.strerror or e}") from e
        self.cache.put(item)
        if linked:
            self.total_items += 1
        if old_size is None:
            self._account(bucket, 1, item.size)
        else:
            self._account(bucket, 0, item.size - old_size)
        return item

    def _file_size(self, key, path):
        cached = self.cache.get(key)
        if cached is not None:
            return cached.size
        return self.dir.size(path)

    def delete(self, key):
        """Remove a live item; True if there was one."""
        item = self._live(key)
        if item is None:
            return False
        self._unlink(key, item.size)
        return True

    def discard(self, key):
        """Remove the key's file whatever it holds (memcached drops the old
        value of a set that failed for size)."""
        bucket, path = self.dir.locate(key)
        size = self._file_size(key, path)
        self.cache.discard(key)
        if size is not None and self._remove(path):
            self._account(bucket, -1, -size)

    def touch(self, key, exptime):
        """Give a live item a new expiry; return it, or None if there is none."""
        item = self._live(key)
        if item is None:
            return None
        absolute = absolute_expiry(exptime, self.clock())
        return self._write_item(key, item.flags, absolute, item.value, item, cas=item.cas, linked=False)

    def incr_decr(self, key, delta, incr):
        """Add or subtract delta; return the new number, or None if there is no item.

        incr wraps at 2**64, decr stops at 0, and a shorter result is padded with
        spaces to the old length, all as memcached does. Raises NonNumeric.
        """
        item = self._live(key)
        if item is None:
            return None
        n = parse_u64(item.value) if item.value else None
        if n is None:
            raise NonNumeric()
        n = (n + delta) & MAX_U64 if incr else max(0, n - delta)
        digits = b"%d" % n
        in_place = len(digits) <= len(item.value)
        if in_place:
            digits = digits.ljust(len(item.value))
        self._write_item(key, item.flags, item.exptime, digits, item, linked=not in_place)
        return n

    def _unlink(self, key, size):
        bucket, path = self.dir.locate(key)
        self.cache.discard(key)
        if self._remove(path):
            self._account(bucket, -1, -size)

    def _remove(self, path):
        try:
            return self.dir.remove(path)
        except OSError as e:
            log.error("cannot remove %s: %s", path, e)
            raise StoreError(f"cannot remove: {e.strerror or e}") from e

    def _account(self, bucket, items, nbytes):
        if bucket <= self._counted:
            self.curr_items += items
            self.bytes += nbytes

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
        if not self.has_work():
            return False
        deadline = time.monotonic() + budget
        for _ in self._scan:
            if time.monotonic() >= deadline:
                return True
        self._scan = None
        return self.has_work()

    def _walk(self, first):
        """Visit every bucket: count what is there (first pass) and reclaim dead files.

        Yields after each bucket so the caller can stop between any two.
        """
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
            log.error("cannot list bucket %s: %s", bucket, e)
            return
        for path, size in files:
            # Within the first pass this bucket is not counted yet, so the
            # _account calls below are no-ops there, as they must be.
            try:
                head = self.dir.read_head(path, _HEAD_AND_KEY)
            except OSError as e:
                # a directory, an unreadable file: not an item; set it aside
                self._quarantine(path, size, e)
                continue
            if head is None:
                continue
            try:
                key_len, _, exptime, cas, stored, value_len = record.decode_header(head)
                if size != record.HEADER_SIZE + key_len + value_len:
                    raise record.CorruptRecord("length mismatch")
            except record.CorruptRecord as e:
                self._quarantine(path, size, e)
                continue
            if self._death(exptime, cas, stored, now) is None:
                if first:
                    self.curr_items += 1
                    self.bytes += size
                    self.loaded += 1
                continue
            self.cache.discard(head[record.HEADER_SIZE : record.HEADER_SIZE + key_len])
            try:
                removed = self.dir.remove(path)
            except OSError as e:
                log.error("cannot remove %s: %s", path, e)
                continue
            if removed:
                self.reclaimed += 1
                self._account(bucket, -1, -size)

    def reset_stats(self):
        """`stats reset`: zero the counters the store keeps."""
        self.total_items = 0
        self.get_expired = 0
        self.get_flushed = 0
        self.reclaimed = 0

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
        the background walk, which quarantines it.
        """
        for top in range(256):
            top_name = "%02x" % top
            if not self.dir.has_top(top_name):
                yield []
                continue
            for sub in range(256):
                yield self._live_heads_in("%s/%02x" % (top_name, sub))

    def _live_heads_in(self, bucket):
        try:
            files = self.dir.bucket_heads(bucket, _HEAD_AND_KEY)
        except OSError as e:
            log.error("cannot list bucket %s: %s", bucket, e)
            return []
        now = self.clock()
        heads = []
        for path, size, head in files:
            try:
                key_len, flags, exptime, cas, stored, value_len = record.decode_header(head)
            except record.CorruptRecord:
                continue
            key = head[record.HEADER_SIZE : record.HEADER_SIZE + key_len]
            if size != record.HEADER_SIZE + key_len + value_len or len(key) != key_len:
                continue
            if self._death(exptime, cas, stored, now) is None:
                heads.append(ItemHead(key, flags, exptime, cas, stored, value_len))
        return heads

    def close(self):
        self.state.close()
        self.dir.close()


def _bucket_of(path):
    name = path.rsplit("/", 1)[-1]
    return name[:2] + "/" + name[2:4]
