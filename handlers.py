"""memcached's text protocol, sans-I/O: a Session per connection turns the bytes
a client sent into the bytes it must get back. It never touches a socket.

The session is a two-state machine, as memcached's own connection is:

    LINE    waiting for a command line ending in "\\n" (a "\\r" before it is
            dropped). Each complete line is handled at once; pipelined
            clients may send many in one read.
    DATA    a storage command's line was accepted and exactly <bytes>+2 more
            bytes (the value and its "\\r\\n") are awaited.

A storage command whose item is too large is answered at once and its data
block is then counted off and dropped as it arrives (DATA with nowhere to
keep it), so even a declared size of 2 GB costs no memory and the stream
stays in step. A line that reaches 2048 bytes without an end closes the
connection, as in memcached, except for get/gets whose key lists may be long.

What each command does to the items is the store's business; this module
parses, validates, counts, and formats replies exactly as memcached 1.6 does.
The meta commands (mg ms md ma me mn) have their own section near the end:
their flag parsing and reply formatting; `ms` shares the DATA state and
`_complete_storage` with the classic storage commands, and every meta command
calls the same store methods as its classic counterpart.
"""

import base64
import hmac
import logging
import os
import re
import resource
import time
import urllib.parse

from store import (
    Mode, NonNumeric, Result, StoreError, absolute_expiry, parse_c_integer, parse_u64, record,
)
from store import DiskFull

log = logging.getLogger("memcached-lite.protocol")

VERSION = "1.6.18-lite"
KEY_MAX_LENGTH = 250
# memcached closes a connection whose line has no end within this many bytes...
MAX_LINE = 2048
# ...unless it is a get, whose key list may be long; this bounds its memory.
MAX_GET_LINE = 8 << 20
# Keys a multi-get looks up before the other connections get a turn (when the
# reactor sets limits): a few times a typical multi-get.
KEYS_PER_TURN = 1000
INT32_MAX = (1 << 31) - 1
MEMLIMIT_MIN_MB = 8

LINE, DATA = "LINE", "DATA"
FAILED = object()  # a store change that could not be persisted
AUTH = object()  # DATA: the authentication `set`'s "<user> <password>"

ERROR = b"ERROR\r\n"
BAD_FORMAT = b"CLIENT_ERROR bad command line format\r\n"
BAD_CHUNK = b"CLIENT_ERROR bad data chunk\r\n"
BAD_EXPTIME = b"CLIENT_ERROR invalid exptime argument\r\n"
BAD_DELTA = b"CLIENT_ERROR invalid numeric delta argument\r\n"
NON_NUMERIC = b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n"
TOO_LARGE = b"SERVER_ERROR object too large for cache\r\n"
NO_MEMORY = b"SERVER_ERROR out of memory storing object\r\n"  # --max-disk reached
BAD_AUTH_FORMAT = b"CLIENT_ERROR bad authentication token format\r\n"
DELETE_USAGE = b"CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n"
END = b"END\r\n"
BADCLASS = b"BADCLASS invalid class id\r\n"
INFINITY = float("inf")
NOTSTARTED = b"NOTSTARTED no items to crawl\r\n"

_STORAGE_MODES = {
    b"set": Mode.SET,
    b"add": Mode.ADD,
    b"replace": Mode.REPLACE,
    b"append": Mode.APPEND,
    b"prepend": Mode.PREPEND,
    b"cas": Mode.CAS,
}
_CAS_COUNTERS = {Result.STORED: "cas_hits", Result.EXISTS: "cas_badval", Result.NOT_FOUND: "cas_misses"}


# -- numbers as memcached's safe_strto* functions read them ----------------


def strtoul32(token):
    """safe_strtoul: an unsigned long (64 bits here) stored into 32 bits."""
    n = parse_u64(token)
    return None if n is None else n & 0xFFFFFFFF


def strtol32(token):
    """safe_strtol: a long (64 bits here) stored into a signed 32-bit int."""
    n = parse_c_integer(token)
    if n is None or not -(1 << 63) <= n < (1 << 63):
        return None
    n &= 0xFFFFFFFF
    return n - (1 << 32) if n > INT32_MAX else n


class Deferred:
    """A command's reply that waits for the store's batch (`--fsync always`):
    the reply itself once the batch is durable, `SERVER_ERROR <reason>` if
    making it durable failed (even under noreply, as for any failed write)."""

    __slots__ = ("batch", "reply")

    def __init__(self, batch, reply):
        self.batch = batch
        self.reply = reply

    def __len__(self):
        return len(self.reply)

    def render(self):
        if not self.batch.committed:
            raise RuntimeError("a reply released before its batch was committed")
        if self.batch.error is None:
            return self.reply
        return b"SERVER_ERROR " + self.batch.error.encode("utf-8", "replace") + b"\r\n"


def _render(parts):
    return b"".join(p if isinstance(p, bytes) else p.render() for p in parts)


# -- lru_crawler metadump: what memcached would say of an item --------------


# the bytes memcached's uriencode leaves as they are
_URI_SAFE = re.compile(rb"[A-Za-z0-9._~-]*")
# memcached accepts class ids 1..63 in `lru_crawler metadump 1,2,...`
MAX_SLAB_CLASS_ID = 63


def metadump_classes(token):
    """The class ids of `lru_crawler metadump <token>`: None for every class
    (`all`, `hash`), a set for a comma list, BADCLASS for a bad one."""
    if token in (b"all", b"hash"):
        return None
    classes = set()
    for part in token.split(b","):
        if not part:
            continue  # strtok skips empty fields
        n = strtoul32(part)
        if n is None or not 1 <= n <= MAX_SLAB_CLASS_ID:
            return BADCLASS
        classes.add(n)
    return classes


def _uriencode(key):
    if _URI_SAFE.fullmatch(key):
        return key  # most keys: no copy, no per-byte work
    return urllib.parse.quote_from_bytes(key, safe="").encode("ascii")


def metadump_line(head, size, classes=None):
    """memcached 1.6.18's metadump line for one item of memcached's `size`
    (Store.item_total), or None if its slab class is not asked for."""
    cls = _slab_class(size)
    if classes is not None and cls not in classes:
        return None
    return b"key=%s exp=%d la=%d cas=%d fetch=%s cls=%d size=%d\n" % (
        _uriencode(head.key),
        head.exptime if head.exptime else -1,
        int(head.atime),
        head.cas,
        b"yes" if head.state & record.FETCHED else b"no",
        cls,
        size,
    )


# -- what all sessions of one server share ---------------------------------


class Settings:
    """The server's knobs that the protocol needs to know."""

    def __init__(self, max_connections=1024, port=11211, listen="127.0.0.1"):
        self.max_connections = max_connections
        self.port = port
        self.listen = listen
        # issue 7's observability and safety switches (-D, -X, -Y, --max-disk)
        self.prefix_delimiter = b":"  # -D: where a key's prefix ends for `stats detail`
        self.detail_enabled = False  # `stats detail on`, or -D
        self.dump_enabled = True  # -X turns off key dumps (`stats cachedump`, metadump)
        self.auth_file = None  # -Y: memcached's ASCII authentication
        self.verbosity = 0
        self.shutdown_enabled = False  # -A
        self.flush_enabled = True  # -F turns it off
        self.idle_timeout = 0  # -o idle_timeout=N; 0: never
        # -Z and its certificates, shown by `stats settings` as memcached does
        self.tls_enabled = False
        self.tls_cert = None
        self.tls_key = None
        self.tls_ca = None
        self.tls_verify_mode = 0
        # what `stats` names in memcached's `libevent` row: the reactor's
        # selector class (the protocol knows no I/O of its own)
        self.event_loop = "selectors"


class Counters:
    """memcached's general counters that the protocol keeps."""

    NAMES = (
        "curr_connections total_connections cmd_get cmd_set cmd_flush cmd_touch "
        "get_hits get_misses delete_misses delete_hits incr_misses incr_hits "
        "decr_misses decr_hits cas_misses cas_hits cas_badval touch_hits touch_misses "
        "store_too_large persist_errors sync_errors bytes_read bytes_written "
        "rejected_connections idle_kicks"
    ).split()
    NAMES += ("cmd_meta", "store_no_memory", "auth_cmds", "auth_errors", "conn_yields")

    def __init__(self):
        for name in self.NAMES:
            setattr(self, name, 0)

    def bump(self, name):
        setattr(self, name, getattr(self, name) + 1)

    def reset(self):
        # memcached's "stats reset" leaves the connection gauges alone
        for name in self.NAMES:
            if name != "curr_connections":
                setattr(self, name, 0)


class Server:
    """The state shared by every session: store, settings, counters, clock."""

    def __init__(self, store, settings=None, clock=time.time):
        self.store = store
        self.settings = settings or Settings()
        self.counters = Counters()
        self.clock = clock
        self.sessions = set()  # the open connections' sessions, for `stats conns`
        self.listener = None  # (fd, address) of the listening socket, set by the reactor
        self.prefixes = PrefixStats()  # `stats detail`
        self.auth = None  # the -Y file's (user, password) pairs, or None: no auth
        self.conn_structs = 1  # memcached's connection_structures: the most at once, listener included
        self.started = clock()
        # set by the reactor: request_stop(graceful) ends the loop (`shutdown`)
        self.request_stop = None

    def has_background_work(self):
        """Whether the store has housekeeping for the loop's idle moments."""
        return self.store.has_work()

    def background(self, budget):
        """Give the store's housekeeping about `budget` seconds."""
        self.store.tick(budget)

    def has_idle_work(self):
        """Whether the store has work for moments when no client waits."""
        return self.store.has_idle_work()

    def idle_background(self, budget):
        """Give the store's idle work about `budget` seconds."""
        self.store.idle_tick(budget)

    def commit(self):
        """Make the writes of this loop iteration durable (`--fsync always`);
        afterwards the sessions holding replies may release them."""
        return self.store.commit()

    def seconds_to_sync(self):
        """How long the loop may sleep before sync_if_due has work, or None."""
        return self.store.seconds_to_sync()

    def sync_if_due(self):
        """`--fsync everysec`'s timer: a barrier about once a second."""
        try:
            self.store.sync_if_due()
        except StoreError:
            self.counters.sync_errors += 1

    def close(self):
        self.store.close()

    def general_stats(self):
        c, s, st = self.counters, self.store, self.settings
        now = self.clock()
        usage = resource.getrusage(resource.RUSAGE_SELF)
        rows = [
            ("pid", os.getpid()),
            ("uptime", int(now - self.started)),
            ("time", int(now)),
            ("version", VERSION),
            ("pointer_size", 64),
            ("rusage_user", "%.6f" % usage.ru_utime),
            ("rusage_system", "%.6f" % usage.ru_stime),
            ("max_connections", st.max_connections),
            ("curr_connections", c.curr_connections),
            ("total_connections", c.total_connections),
            ("rejected_connections", c.rejected_connections),
            ("cmd_get", c.cmd_get),
            ("cmd_set", c.cmd_set),
            ("cmd_flush", c.cmd_flush),
            ("cmd_touch", c.cmd_touch),
            ("get_hits", c.get_hits),
            ("get_misses", c.get_misses),
            ("get_expired", s.get_expired),
            ("get_flushed", s.get_flushed),
            ("delete_misses", c.delete_misses),
            ("delete_hits", c.delete_hits),
            ("incr_misses", c.incr_misses),
            ("incr_hits", c.incr_hits),
            ("decr_misses", c.decr_misses),
            ("decr_hits", c.decr_hits),
            ("cas_misses", c.cas_misses),
            ("cas_hits", c.cas_hits),
            ("cas_badval", c.cas_badval),
            ("touch_hits", c.touch_hits),
            ("touch_misses", c.touch_misses),
            ("idle_kicks", c.idle_kicks),
            ("store_too_large", c.store_too_large),
            ("bytes_read", c.bytes_read),
            ("bytes_written", c.bytes_written),
            ("limit_maxbytes", s.cache.limit),
            ("threads", 1),
            ("bytes", s.bytes),
            ("curr_items", s.curr_items),
            ("total_items", s.total_items),
            # leaving memory loses nothing (the item stays on disk): only files
            # removed under --disk-policy evict count
            ("evictions", s.evictions),
            ("reclaimed", s.reclaimed),
            ("cache_items", len(s.cache)),
            ("cache_bytes", s.cache.used),
            ("cache_evictions", s.cache.evictions),
            ("persist_errors", c.persist_errors),
            ("items_loaded", s.loaded),
            ("files_quarantined", s.quarantined),
            ("files_restored", s.restored),
            # replaced records' files kept to be written over (store/spares.py)
            ("spare_files", len(s.dir.spares)),
            ("spare_writes", s.dir.spares.reused),
            ("spare_files_made", s.dir.spares.made),
            ("startup_scan_done", int(s.scan_done)),
            ("fsync_level", s.durability.level),
            ("fsync_calls", s.durability.calls),
            ("fsync_seconds", "%.6f" % s.durability.seconds),
            ("fsync_errors", s.durability.errors),
            ("sync_errors", c.sync_errors),
        ]
        return in_memcached_order(rows + self._more_general_stats(), GENERAL_STATS_ORDER)

    def settings_stats(self):
        st, s = self.settings, self.store
        rows = [
            ("maxbytes", s.cache.limit),
            ("maxconns", st.max_connections),
            ("tcpport", st.port),
            ("udpport", 0),
            ("inter", st.listen),
            ("verbosity", st.verbosity),
            ("evictions", "on"),
            ("cas_enabled", "yes"),
            ("item_size_max", s.item_size_max),
            ("flush_enabled", "yes" if st.flush_enabled else "no"),
            ("shutdown_command", "yes" if st.shutdown_enabled else "no"),
            ("idle_timeout", st.idle_timeout),
            ("ssl_enabled", "yes" if st.tls_enabled else "no"),
            ("ssl_chain_cert", st.tls_cert or "(null)"),
            ("ssl_key", st.tls_key or "(null)"),
            ("ssl_verify_mode", st.tls_verify_mode),
            ("ssl_ca_cert", st.tls_ca or "NULL"),
            ("data_dir", s.dir.path),
            ("fsync", s.durability.level),
            ("fsync_method", s.durability.method),
        ]
        return in_memcached_order(rows + self._more_settings_stats(), SETTINGS_STATS_ORDER)

    # -- issue 7: the rest of memcached's stats, auth -------------------------

    def _more_general_stats(self):
        """memcached 1.6's general stats besides the ones above, where they mean
        something here. Those whose mechanism does not exist here but which
        tools read are 0 or constant, each said so below."""
        c, s = self.counters, self.store
        buffered = [len(session._buf) for session in self.sessions if session._buf]
        return [
            # not libevent: the loop is Python's selectors, named as such
            ("libevent", self.settings.event_loop),
            ("connection_structures", self.conn_structs),
            # replies are bytes objects, not memcached's response objects: no pool
            ("response_obj_oom", 0),
            ("response_obj_count", 0),
            ("response_obj_bytes", 0),
            # the sessions' input buffers hold what is not parsed yet
            ("read_buf_count", len(buffered)),
            ("read_buf_bytes", sum(buffered)),
            ("read_buf_bytes_free", 0),
            ("read_buf_oom", 0),
            ("cmd_meta", c.cmd_meta),
            ("store_no_memory", c.store_no_memory),
            ("auth_cmds", c.auth_cmds),
            ("auth_errors", c.auth_errors),
            # over -c a connection is answered and closed (maxconns_fast): the
            # listener is never disabled
            ("accepting_conns", 1),
            ("listen_disabled_num", 0),
            ("time_in_listen_disabled_us", 0),
            ("conn_yields", c.conn_yields),
            # the "hash table" is the data dir's 65,536 buckets (two hex bytes of
            # the key's hash), on disk: no memory, never expanded
            ("hash_power_level", 16),
            ("hash_bytes", 0),
            ("hash_is_expanding", 0),
            # the background walk over the buckets is our LRU crawler: it
            # checks every file and reclaims dead ones
            ("lru_crawler_running", int(s.walking)),
            ("lru_crawler_starts", s.walks),
            ("crawler_reclaimed", s.reclaimed),
            ("crawler_items_checked", s.items_checked),
        ]

    def _more_settings_stats(self):
        st, s = self.settings, self.store
        return [
            ("domain_socket", "NULL"),
            ("num_threads", 1),
            ("stat_key_prefix", st.prefix_delimiter.decode("latin-1")),
            ("detail_enabled", "yes" if st.detail_enabled else "no"),
            ("binding_protocol", "ascii"),
            ("auth_enabled_sasl", "no"),
            # memcached shows the -Y file's path here
            ("auth_enabled_ascii", st.auth_file if self.auth is not None else "no"),
            ("maxconns_fast", "yes"),
            ("hashpower_init", 16),
            ("dump_enabled", "yes" if st.dump_enabled else "no"),
            ("hash_algorithm", "blake2b"),
            ("track_sizes", "no"),
            ("max_disk", s.max_disk or 0),
            ("disk_policy", s.disk_policy),
        ]

    def load_auth(self, path):
        """Read -Y's file of `user:password` lines and require authentication;
        raises AuthFileError (the old entries stay, as memcached keeps them
        when a reload fails)."""
        self.auth = load_auth_file(path)
        self.settings.auth_file = path

    def reload_auth(self):
        """Read the -Y file again (memcached does on SIGHUP); True if it
        loaded, False (logged, the old entries kept) if not, None without -Y."""
        if self.settings.auth_file is None:
            return None
        try:
            self.load_auth(self.settings.auth_file)
        except AuthFileError as e:
            log.error("auth file not reloaded, the old one stays: %s", e)
            return False
        log.info("auth file %s reloaded: %d users", self.settings.auth_file, len(self.auth))
        return True

    def check_auth(self, user, password):
        """Whether the pair is in the -Y file (compared in constant time)."""
        found = False
        for u, p in self.auth or ():
            found |= hmac.compare_digest(u, user) & hmac.compare_digest(p, password)
        return found


# memcached 1.6.18's `stats` and `stats settings` names in the order it sends
# them; rows of ours that memcached lacks keep their order after these.
GENERAL_STATS_ORDER = (
    "pid uptime time version libevent pointer_size rusage_user rusage_system max_connections "
    "curr_connections total_connections rejected_connections connection_structures response_obj_oom "
    "response_obj_count response_obj_bytes read_buf_count read_buf_bytes read_buf_bytes_free "
    "read_buf_oom reserved_fds cmd_get cmd_set cmd_flush cmd_touch cmd_meta get_hits get_misses "
    "get_expired get_flushed delete_misses delete_hits incr_misses incr_hits decr_misses decr_hits "
    "cas_misses cas_hits cas_badval touch_hits touch_misses store_too_large store_no_memory auth_cmds "
    "auth_errors idle_kicks bytes_read bytes_written limit_maxbytes accepting_conns listen_disabled_num "
    "time_in_listen_disabled_us threads conn_yields hash_power_level hash_bytes hash_is_expanding "
    "slab_reassign_rescues slab_reassign_chunk_rescues slab_reassign_evictions_nomem "
    "slab_reassign_inline_reclaim slab_reassign_busy_items slab_reassign_busy_deletes "
    "slab_reassign_running slabs_moved lru_crawler_running lru_crawler_starts lru_maintainer_juggles "
    "malloc_fails log_worker_dropped log_worker_written log_watcher_skipped log_watcher_sent "
    "log_watchers unexpected_napi_ids round_robin_fallback bytes curr_items total_items "
    "slab_global_page_pool expired_unfetched evicted_unfetched evicted_active evictions reclaimed "
    "crawler_reclaimed crawler_items_checked lrutail_reflocked moves_to_cold moves_to_warm "
    "moves_within_lru direct_reclaims lru_bumps_dropped"
).split()
SETTINGS_STATS_ORDER = (
    "maxbytes maxconns tcpport udpport inter verbosity oldest evictions domain_socket umask "
    "shutdown_command growth_factor chunk_size num_threads num_threads_per_udp stat_key_prefix "
    "detail_enabled reqs_per_event cas_enabled tcp_backlog binding_protocol auth_enabled_sasl "
    "auth_enabled_ascii item_size_max maxconns_fast hashpower_init slab_reassign slab_automove "
    "slab_automove_ratio slab_automove_window slab_chunk_max lru_crawler lru_crawler_sleep "
    "lru_crawler_tocrawl tail_repair_time flush_enabled dump_enabled hash_algorithm "
    "lru_maintainer_thread lru_segmented hot_lru_pct warm_lru_pct hot_max_factor warm_max_factor "
    "temp_lru temporary_ttl idle_timeout watcher_logbuf_size worker_logbuf_size read_buf_mem_limit "
    "track_sizes inline_ascii_response ext_item_size ext_item_age ext_low_ttl ext_recache_rate "
    "ext_wbuf_size ext_compact_under ext_drop_under ext_max_sleep ext_max_frag "
    "slab_automove_freeratio ext_drop_unread ssl_enabled ssl_chain_cert ssl_key ssl_verify_mode "
    "ssl_keyformat ssl_ciphers ssl_ca_cert ssl_wbuf_size ssl_session_cache ssl_kernel_tls "
    "ssl_min_version num_napi_ids memory_file"
).split()


def in_memcached_order(rows, order):
    """rows sorted by memcached's order of their names; names memcached does
    not send keep their order, after all of memcached's."""
    rank = {name: i for i, name in enumerate(order)}
    end = len(order)
    return sorted(rows, key=lambda row: rank.get(row[0], end))


class PrefixStats:
    """memcached's `stats detail`: get, hit, set and delete counts per key
    prefix (the key up to the -D delimiter; keys without one are not counted).
    At most MAX prefixes are kept: memcached's table has no bound, but here
    a client inventing prefixes must not grow the server without one."""

    MAX = 10_000

    def __init__(self):
        self._counts = {}  # prefix -> [gets, hits, sets, deletes]

    def record(self, key, delimiter, column, hit=False):
        """Count one get (column 0, with hit), set (2) or delete (3) of key."""
        end = key.find(delimiter)
        if end < 0:
            return
        prefix = key[:end]
        counts = self._counts.get(prefix)
        if counts is None:
            if len(self._counts) >= self.MAX:
                return
            counts = self._counts[prefix] = [0, 0, 0, 0]
        counts[column] += 1
        if hit:
            counts[1] += 1

    def dump(self):
        return b"".join(
            b"PREFIX %s get %d hit %d set %d del %d\r\n" % (prefix, *counts)
            for prefix, counts in self._counts.items()
        ) + END

    def clear(self):
        self._counts.clear()


class AuthFileError(Exception):
    """The -Y file cannot be read, or a line of it is not `user:password`."""


def load_auth_file(path):
    """The (user, password) pairs of a file of `user:password` lines, as
    memcached's authfile_load reads them: the user ends at the first ':', the
    password at the line's end (a '\\r' before it dropped). Blank lines are
    skipped; memcached's limit of 8 entries is not imitated."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise AuthFileError(f"cannot read the auth file {path}: {e.strerror}") from e
    entries = []
    for number, line in enumerate(data.split(b"\n"), 1):
        line = line.rstrip(b"\r")
        if not line:
            continue
        user, colon, password = line.partition(b":")
        if not colon or not user:
            raise AuthFileError(f"{path} line {number}: not user:password")
        entries.append((user, password))
    if not entries:
        raise AuthFileError(f"{path} holds no user:password line")
    return entries


def _address(addr):
    """A socket address as memcached's `stats conns` shows it."""
    if addr is None:
        return "unknown"
    host, port = addr[0], addr[1]
    return f"tcp6:[{host}]:{port}" if ":" in host else f"tcp:{host}:{port}"


# -- one connection's protocol ----------------------------------------------


class Session:
    """One client connection's protocol state: feed it bytes, get reply bytes.

    After `closing` turns true (quit, or a line too long) the reactor sends
    what was returned and closes the connection; later input is ignored.

    Under `--fsync always`, while the store has an open batch, feed() returns
    nothing and `holding` is true: the replies wait until the reactor has
    committed the batch and calls release(), so no reply (not even a read of
    a value written in the batch) leaves before what it depends on is durable.
    """

    def __init__(self, server):
        self.server = server
        self.store = server.store
        self.counters = server.counters
        self.closing = False
        self._buf = bytearray()
        self._state = LINE
        self._need = 0  # DATA: bytes still to come, value plus "\r\n"
        self._pending = None  # DATA: the storage command, or None to drop the data
        self._out = []
        self._room = INFINITY  # reply bytes the current command may still make
        self._retrieval = None  # a get paused at a limit: (keys, next index, with_cas, exptime)
        self._metadump = None  # a metadump under way: (live_heads generator, classes)
        self._held = []  # replies waiting for the store's batch
        self._searched = 0  # bytes of the unended line known to hold no "\n"
        self._turn_over = False  # a multi-get paused after KEYS_PER_TURN keys
        # feed() stopped at a limit with work left (commands or a paused get)
        self.stopped_early = False
        self.commands = 0  # command lines run so far: the idle timer's clock, `stats conns`
        self.counters.curr_connections += 1
        self.counters.total_connections += 1
        # `stats conns`: the socket's description, filled in by attach()
        self.fd = None
        self.addr = None
        self.listen_addr = None
        self._unsent = None
        self.last_command = server.clock()
        self.authenticated = server.auth is None
        server.sessions.add(self)
        server.conn_structs = max(server.conn_structs, len(server.sessions) + 1)

    def attach(self, fd, addr, listen_addr, unsent=None):
        """What the reactor tells about the socket, for `stats conns`: its file
        descriptor, peer and local address, and unsent() the bytes of replies
        the kernel has not taken yet."""
        self.fd, self.addr, self.listen_addr, self._unsent = fd, addr, listen_addr, unsent

    def close(self):
        """The connection is gone."""
        self.counters.curr_connections -= 1
        self.server.sessions.discard(self)

    @property
    def state(self):
        """LINE or DATA (for the reactor's -vvv log)."""
        return self._state

    @property
    def awaiting_command(self):
        """Between commands, with nothing left to run: where memcached's
        idle_timeout may close a connection (never in a value's data)."""
        return self._state is LINE and self._retrieval is None and not self.stopped_early

    @property
    def holding(self):
        """Replies wait for the store's batch to be committed."""
        return bool(self._held)

    def release(self):
        """The held replies, once the reactor committed the store's batch;
        each command refused because its batch failed counts a persist error."""
        held = self._held
        self.counters.persist_errors += sum(
            1 for p in held if isinstance(p, Deferred) and p.batch.error is not None
        )
        reply = _render(held)
        held.clear()
        self.counters.bytes_written += len(reply)
        return reply

    def feed(self, data=b"", limit=None, max_commands=None):
        """Take bytes from the client, return the replies they complete.

        Stops early once the replies reach about `limit` bytes (a multi-get
        pauses between two keys) or after `max_commands` commands; the rest
        stays buffered for the next call, and `stopped_early` says so. The
        reactor uses the first for backpressure, the second for fairness.
        """
        self.counters.bytes_read += len(data)
        if self.closing:
            return b""
        buf = self._buf
        if self._state is DATA and self._pending is None and not buf:
            # dropping an oversized value: never buffer what is thrown away
            take = min(len(data), self._need)
            self._need -= take
            data = data[take:]
            if self._need == 0:
                self._state = LINE
        buf += data
        out = self._out
        durability = self.store.durability
        size_limit = INFINITY if limit is None else limit
        command_limit = INFINITY if max_commands is None else max_commands
        size = 0
        pos = 0
        commands = 0
        deferred = False
        searched, self._searched = self._searched, 0
        self.stopped_early = False
        self.last_command = self.server.clock()
        # plain `get` lines skip _command's dispatch (they are most of a
        # cache's traffic); anything that needs more goes the general way
        plain = self.authenticated and self.server.settings.verbosity <= 1
        while not self.closing:
            if size >= size_limit or commands >= command_limit or self._turn_over:
                self._turn_over = False
                self.stopped_early = True
                if commands >= command_limit:
                    self.counters.conn_yields += 1  # memcached's reqs_per_event yield
                break
            before = len(out)
            batch = durability.batch
            changes = 0 if batch is None else batch.changes
            self._room = size_limit - size
            if self._retrieval is not None:
                keys, start, with_cas, exptime = self._retrieval
                self._retrieval = None
                self._retrieve_keys(keys, with_cas, exptime, start)
            elif self._metadump is not None:
                # a bucket of the dump counts as a command, so a dump of a
                # million items takes turns with the other clients
                commands += 1
                self._metadump_bucket()
            elif self._state is LINE:
                if plain and batch is None and buf.startswith(b"get ", pos):
                    ran = self._plain_gets(buf, pos, command_limit - commands, size_limit - size)
                    if ran is not None:
                        searched = 0  # it was of the line just run
                        pos, n, made = ran
                        commands += n
                        size += made
                        if pos == len(buf) and self._retrieval is None:
                            break  # all run: no need to look for another line
                        continue
                nl = buf.find(b"\n", pos + searched)
                searched = 0
                if nl < 0:
                    # a line still without its end: the next feed searches
                    # only what arrives, so a long line trickling in costs
                    # O(bytes), not O(bytes^2)
                    self._searched = len(buf) - pos
                    self._check_unended_line(buf, pos)
                    break
                end = nl - 1 if nl > pos and buf[nl - 1] == 13 else nl
                line = bytes(buf[pos:end])
                pos = nl + 1
                commands += 1
                self._command(line)
                if self._state is DATA and self._pending is not None and len(buf) - pos >= self._need:
                    # a storage command's data came with its line: one turn of the loop for both
                    pos = self._run_data(buf, pos)
            else:
                if self._pending is None:
                    take = min(len(buf) - pos, self._need)
                    pos += take
                    self._need -= take
                    if self._need:
                        break
                    self._state = LINE
                    continue
                if len(buf) - pos < self._need:
                    break
                pos = self._run_data(buf, pos)
            joined = durability.batch
            if joined is not None and (joined is not batch or joined.changes != changes):
                pass  # it changed (or read a change of) the open batch
            elif batch is not None and batch.changes != changes:
                joined = batch  # the same, and the batch was committed meanwhile
            else:
                joined = None
            if joined is not None:
                # the command's reply is known only once that batch is durable
                out[before:] = [Deferred(joined, b"".join(out[before:]))]
                deferred = True
            if limit is not None:
                size += sum(map(len, out[before:]))
            if (
                pos == len(buf)
                and self._state is LINE
                and self._retrieval is None
                and self._metadump is None
                and commands < command_limit
                and size < size_limit
            ):
                break  # all run, and no limit reached: nothing for another turn to do
        del buf[:pos]
        if deferred or self._held or durability.batch is not None:
            if out:
                self._held.extend(out)
                out.clear()
            return b""
        reply = b"".join(out)
        out.clear()
        self.counters.bytes_written += len(reply)
        return reply

    def _run_data(self, buf, pos):
        # the storage command's whole data block is in buf at pos
        block = bytes(buf[pos : pos + self._need])
        self._state = LINE
        self._complete_storage(block)
        return pos + len(block)

    def _plain_gets(self, buf, pos, commands, room):
        """Run the `get <key>...` lines at buf[pos:] (single spaces, no NUL,
        keys of legal length), up to `commands` lines and `room` reply bytes,
        with the same retrieval as _get; (new pos, lines run, reply bytes),
        or None if the first line is not that plain."""
        ran = made = 0
        while ran < commands and made < room and buf.startswith(b"get ", pos):
            nl = buf.find(b"\n", pos)
            if nl < 0:
                break
            end = nl - 1 if buf[nl - 1] == 13 else nl
            line = bytes(buf[pos + 4 : end])
            keys = line.split(b" ")
            if (
                b"" in keys
                or b"\0" in line
                or (len(line) > KEY_MAX_LENGTH and max(map(len, keys)) > KEY_MAX_LENGTH)
            ):
                break
            pos = nl + 1
            ran += 1
            self.commands += 1
            self._room = room - made
            made += self._retrieve_keys(keys, False, None)
            if self._retrieval is not None:
                break  # paused at a limit: feed() takes it from here
        if not ran:
            return None
        return pos, ran, made

    def _check_unended_line(self, buf, pos):
        pending = len(buf) - pos
        if pending <= MAX_LINE:
            return
        head = bytes(buf[pos : pos + 100]).lstrip(b" ")
        if pending > MAX_GET_LINE or not (head.startswith(b"get ") or head.startswith(b"gets ")):
            log.info("closing a connection: command line longer than %d bytes", MAX_LINE)
            self.closing = True

    # -- dispatch ---------------------------------------------------------

    def _command(self, line):
        self.commands += 1
        if b"\0" in line:
            line = line[: line.index(b"\0")]  # memcached reads the line as a C string
        words = line.split(b" ")
        if b"" in words:
            words = [w for w in words if w]
        if not self.authenticated:
            return self._unauthenticated(words)
        if self.server.settings.verbosity > 1:
            log.debug("<%s", line[:200])
        if not words or len(words[0]) < 2:
            self._out.append(ERROR)
            return
        entry = _COMMANDS.get(words[0])
        if entry is None:
            if words[-1].startswith(b"HTTP/"):
                self.closing = True  # memcached's defence against cross-protocol requests
            else:
                self._out.append(ERROR)
            return
        handler, least, most = entry
        if len(words) < least or (most is not None and len(words) > most):
            self._out.append(ERROR)
            return
        handler(self, words)

    def _reply(self, noreply, reply):
        if not noreply:
            self._out.append(reply)

    # -- storage commands: one path for all six ---------------------------

    def _storage(self, words):
        mode = _STORAGE_MODES[words[0]]
        noreply = words[-1] == b"noreply"
        key = words[1]
        if len(key) > KEY_MAX_LENGTH:
            return self._reply(noreply, BAD_FORMAT)
        flags = strtoul32(words[2])
        exptime = strtol32(words[3])
        length = strtol32(words[4])
        cas_unique = 0
        if mode is Mode.CAS:
            cas_unique = parse_u64(words[5])
        if None in (flags, exptime, length, cas_unique) or not 0 <= length <= INT32_MAX - 2:
            return self._reply(noreply, BAD_FORMAT)
        self._state = DATA
        self._need = length + 2
        if self.server.settings.detail_enabled:
            self.server.prefixes.record(key, self.server.settings.prefix_delimiter, 2)
        if not self.store.item_fits(len(key), length, flags):
            self.counters.store_too_large += 1
            self._pending = None  # the data will be read and dropped
            if mode is Mode.SET:
                self._drop_old_value(key)
            return self._reply(noreply, TOO_LARGE)
        self._pending = (mode, key, flags, exptime, cas_unique, noreply, None)

    def _drop_old_value(self, key):
        # memcached drops the old value of a set refused for size, so a client
        # never reads a stale one; if the disk refuses, the one reply stays
        # the size error and the failure is logged and counted
        try:
            self.store.discard(key)
        except StoreError as e:
            self.counters.persist_errors += 1
            log.error("could not drop the old value of %r: %s", key, e)

    def _complete_storage(self, block):
        # `meta` is an ms's MetaRequest (None for the classic commands)
        if self._pending[0] is AUTH:
            return self._complete_auth(block)
        mode, key, flags, exptime, cas_unique, noreply, meta = self._pending
        self._pending = None
        self.counters.cmd_set += 1
        if not block.endswith(b"\r\n"):
            # ms always reports errors, q or not
            return self._reply(noreply and meta is None, BAD_CHUNK)
        options = {} if meta is None else meta.store_options
        result = self._persist(self.store.store, mode, key, flags, exptime, block[:-2], cas_unique, **options)
        if result is FAILED:
            if mode is Mode.SET and self._out[-1] == NO_MEMORY:
                self._drop_old_value(key)  # as memcached: no stale value after a refused set
            return
        if mode is Mode.CAS:
            self.counters.bump(_CAS_COUNTERS[result])
        if meta is not None:
            return self._meta_set_reply(meta, result)
        self._reply(noreply, _RESULT_LINES[result])

    def _persist(self, change, *args, **options):
        """Run a store call; FAILED if the disk failed it (a write not made
        durable, a file unreadable), and the client told so (never STORED)."""
        try:
            return change(*args, **options)
        except StoreError as e:
            return self._failed(e)

    def _failed(self, e):
        if isinstance(e, DiskFull):
            self.counters.store_no_memory += 1  # --max-disk, as memcached's -M
        else:
            self.counters.persist_errors += 1
        # like memcached's out_errstring, shown even under noreply
        self._out.append(b"SERVER_ERROR " + str(e).encode("utf-8", "replace") + b"\r\n")
        return FAILED

    # -- retrieval ----------------------------------------------------------

    def _get(self, words):
        self._retrieve(words[1:], with_cas=words[0] == b"gets", exptime=None)

    def _gat(self, words):
        exptime = strtol32(words[1])
        if exptime is None:
            self._out.append(BAD_EXPTIME)
            return
        self._retrieve(words[2:], with_cas=words[0] == b"gats", exptime=exptime)

    def _retrieve(self, keys, with_cas, exptime):
        if keys and max(map(len, keys)) > KEY_MAX_LENGTH:
            self._out.append(BAD_FORMAT)
            return
        self._retrieve_keys(keys, with_cas, exptime)

    def _retrieve_keys(self, keys, with_cas, exptime, start=0):
        """Answer a get/gets/gat/gats key list from `start`; returns the reply
        bytes it made."""
        # A long key list pauses once the reply passes the room feed() gives
        # it, so `get k k k ...` of a large item cannot make the server hold
        # gigabytes of replies; and after KEYS_PER_TURN keys, so a list of a
        # million misses cannot hold up the other clients for seconds.
        store = self.store
        detail = self.server.settings.detail_enabled
        room = self._room
        # at most KEYS_PER_TURN keys once a limit is set
        count = len(keys)
        stop = count if room == INFINITY else min(count, start + KEYS_PER_TURN)
        parts = []
        made = hits = 0
        i = start
        paused = False
        if exptime is None:
            items = store.get_each(keys, start)
        else:
            items = (store.touch(keys[j], exptime) for j in range(start, count))
        try:
            for item in items:
                key = keys[i]
                i += 1
                if detail:
                    self.server.prefixes.record(key, self.server.settings.prefix_delimiter, 0, item is not None)
                if item is not None:
                    hits += 1
                    value = item.value
                    size = len(value)
                    if size < 4096:
                        # one part to join, not three
                        if with_cas:
                            part = b"VALUE %s %d %d %d\r\n%s\r\n" % (key, item.flags, size, item.cas, value)
                        else:
                            part = b"VALUE %s %d %d\r\n%s\r\n" % (key, item.flags, size, value)
                        parts.append(part)
                        made += len(part)
                    else:
                        # a large value is copied once, by the join
                        if with_cas:
                            head = b"VALUE %s %d %d %d\r\n" % (key, item.flags, size, item.cas)
                        else:
                            head = b"VALUE %s %d %d\r\n" % (key, item.flags, size)
                        parts += (head, value, b"\r\n")
                        made += len(head) + size + 2
                if (made >= room or i == stop) and i < count:
                    self._retrieval = (keys, i, with_cas, exptime)
                    self._turn_over = True
                    paused = True
                    break
        except StoreError as e:
            self._count_retrievals(exptime, i - start, hits)
            self._failed(e)
            return 0  # the SERVER_ERROR stands in for the rest of the reply
        if not paused:
            parts.append(END)
            made += len(END)
        self._count_retrievals(exptime, i - start, hits)
        self._out.extend(parts)
        return made

    def _count_retrievals(self, exptime, asked, hits):
        # memcached counts gat/gats as touches, not gets
        c = self.counters
        if exptime is None:
            c.cmd_get += asked
            c.get_hits += hits
            c.get_misses += asked - hits
        else:
            c.cmd_touch += asked
            c.touch_hits += hits
            c.touch_misses += asked - hits

    # -- other item commands ---------------------------------------------

    def _delete(self, words):
        # memcached looks for noreply only after the key: `delete noreply`
        # deletes the key "noreply"
        noreply = len(words) > 2 and words[-1] == b"noreply"
        if len(words) > 2:
            hold_is_zero = words[2] == b"0"
            valid = (len(words) == 3 and (hold_is_zero or noreply)) or (
                len(words) == 4 and hold_is_zero and noreply
            )
            if not valid:
                return self._reply(noreply, DELETE_USAGE)
        key = words[1]
        if len(key) > KEY_MAX_LENGTH:
            return self._reply(noreply, BAD_FORMAT)
        if self.server.settings.detail_enabled:
            self.server.prefixes.record(key, self.server.settings.prefix_delimiter, 3)
        deleted = self._persist(self.store.delete, key)
        if deleted is not FAILED:
            self._hit_or_miss(noreply, "delete", b"DELETED\r\n" if deleted else None)

    def _arithmetic(self, words):
        incr = words[0] == b"incr"
        noreply = words[-1] == b"noreply"
        key = words[1]
        if len(key) > KEY_MAX_LENGTH:
            return self._reply(noreply, BAD_FORMAT)
        delta = parse_u64(words[2])
        if delta is None:
            return self._reply(noreply, BAD_DELTA)
        try:
            value = self._persist(self.store.incr_decr, key, delta, incr)
        except NonNumeric:
            return self._reply(noreply, NON_NUMERIC)
        if value is not FAILED:
            reply = None if value is None else b"%d\r\n" % value
            self._hit_or_miss(noreply, "incr" if incr else "decr", reply)

    def _touch(self, words):
        noreply = words[-1] == b"noreply"
        key = words[1]
        if len(key) > KEY_MAX_LENGTH:
            return self._reply(noreply, BAD_FORMAT)
        exptime = strtol32(words[2])
        if exptime is None:
            return self._reply(noreply, BAD_EXPTIME)
        self.counters.cmd_touch += 1
        item = self._persist(self.store.touch, key, exptime)
        if item is not FAILED:
            self._hit_or_miss(noreply, "touch", None if item is None else b"TOUCHED\r\n")

    def _hit_or_miss(self, noreply, counter, reply):
        """Count `<counter>_hits` and send reply, or, when reply is None,
        count `<counter>_misses` and send NOT_FOUND."""
        if reply is None:
            self.counters.bump(counter + "_misses")
            reply = b"NOT_FOUND\r\n"
        else:
            self.counters.bump(counter + "_hits")
        self._reply(noreply, reply)

    def _flush_all(self, words):
        noreply = words[-1] == b"noreply"
        if not self.server.settings.flush_enabled:
            self.counters.cmd_flush += 1  # memcached counts the refused ones too
            return self._reply(noreply, b"CLIENT_ERROR flush_all not allowed\r\n")
        delay = 0
        if len(words) != (2 if noreply else 1):
            delay = strtol32(words[1])
            if delay is None:
                return self._reply(noreply, BAD_EXPTIME)
        self.counters.cmd_flush += 1
        if self._persist(self.store.flush_all, delay) is FAILED:
            return
        self._reply(noreply, b"OK\r\n")

    # -- lru_crawler metadump ---------------------------------------------

    def _lru_crawler(self, words):
        # memcached 1.6.18 also knows crawl, tocrawl, sleep, enable and
        # disable; they steer its slab crawler thread, which we do not have
        if len(words) != 3 or words[1] != b"metadump":
            self._out.append(ERROR)
            return
        if not self.server.settings.dump_enabled:
            self._out.append(b"ERROR metadump not allowed\r\n")
            return
        classes = metadump_classes(words[2])
        if classes is BADCLASS:
            self._out.append(BADCLASS)
        elif classes is not None and not classes:
            self._out.append(NOTSTARTED)
        else:
            # answered a bucket at a time by feed(), which pauses between
            # buckets at its limits; ended with END, as memcached's issue 667
            # asks, so a client knows the dump is whole without a timeout
            self._metadump = (self.store.live_heads(), classes)

    def _metadump_bucket(self):
        heads, classes = self._metadump
        try:
            bucket = next(heads)
        except StopIteration:
            self._metadump = None
            self._out.append(END)
            return
        total = self.store.item_total
        lines = [metadump_line(h, total(len(h.key), h.value_len, h.flags), classes) for h in bucket]
        lines = [line for line in lines if line is not None]
        if lines:
            self._out.append(b"".join(lines))

    # -- server commands --------------------------------------------------

    def _version(self, words):
        self._out.append(b"VERSION " + VERSION.encode() + b"\r\n")

    def _quit(self, words):
        self.closing = True

    def _shutdown(self, words):
        # memcached's replies: the refusal without -A, and with it no reply
        # at all (the connection closes while the server stops)
        if not self.server.settings.shutdown_enabled or self.server.request_stop is None:
            self._out.append(b"ERROR: shutdown not enabled\r\n")
            return
        if len(words) == 1 or (len(words) == 2 and words[1] == b"graceful"):
            log.info("shutdown%s requested by a client", " graceful" if len(words) == 2 else "")
            self.closing = True
            self.server.request_stop(graceful=len(words) == 2)
            return
        self._out.append(b"CLIENT_ERROR invalid shutdown mode\r\n")

    def _verbosity(self, words):
        noreply = words[-1] == b"noreply"
        level = strtoul32(words[1])
        if level is None:
            return self._reply(noreply, BAD_FORMAT)
        self.server.settings.verbosity = min(level, 2)
        # as memcached's -v: 1 logs connections, 2 every command
        logging.getLogger("memcached-lite").setLevel(logging.DEBUG if level else logging.INFO)
        self._reply(noreply, b"OK\r\n")

    def _cache_memlimit(self, words):
        noreply = words[-1] == b"noreply"
        megabytes = strtoul32(words[1])
        if megabytes is None:
            return self._reply(noreply, ERROR)
        if megabytes < MEMLIMIT_MIN_MB:
            return self._reply(noreply, b"MEMLIMIT_TOO_SMALL cannot set maxbytes to less than 8m\r\n")
        if megabytes > 1000000000:
            return self._reply(noreply, b"MEMLIMIT_ADJUST_FAILED input value is megabytes not bytes\r\n")
        self.store.cache.resize(megabytes << 20)
        self._reply(noreply, b"OK\r\n")

    def _stats(self, words):
        sub = words[1] if len(words) > 1 else None
        if sub is None:
            rows = self.server.general_stats()
        elif sub == b"settings":
            rows = self.server.settings_stats()
        elif sub == b"reset":
            self.counters.reset()
            self.store.reset_stats()
            self.server.prefixes.clear()
            self._out.append(b"RESET\r\n")
            return
        else:
            group = _STATS_GROUPS.get(sub)
            if group is None:
                self._out.append(ERROR)
            else:
                group(self, words)
            return
        self._out.append(
            b"".join(b"STAT %s %s\r\n" % (name.encode(), str(value).encode()) for name, value in rows)
            + END
        )

    # -- the other stats groups (issue 7) ------------------------------------

    def _stat_lines(self, rows):
        self._out.append(
            b"".join(b"STAT %s %s\r\n" % (name.encode(), str(value).encode()) for name, value in rows) + END
        )

    def _stats_items(self, words):
        # One class: items are files, not slab chunks. Where memcached's
        # segmented LRU has counters of its own, everything is "cold".
        s, c = self.store, self.counters
        if not s.curr_items:
            return self._out.append(END)
        oldest = s.cache.oldest()
        age = 0 if oldest is None else max(0, int(self.store.clock() - oldest.atime))
        values = {
            "number": s.curr_items, "number_cold": s.curr_items, "age": age, "mem_requested": s.bytes,
            "evicted": s.evictions, "outofmemory": c.store_no_memory, "reclaimed": s.reclaimed,
            "crawler_reclaimed": s.reclaimed, "crawler_items_checked": s.items_checked,
            "hits_to_cold": c.get_hits,
        }
        self._stat_lines(("items:1:" + name, values.get(name, 0)) for name in _ITEMS_NAMES)

    def _stats_slabs(self, words):
        # One honest class: a chunk is a file, as large as -I allows, one per
        # "page"; nothing is allocated ahead, so nothing is free.
        s, c = self.store, self.counters
        rows = []
        if s.curr_items:
            n = s.curr_items
            rows = [
                ("1:chunk_size", s.item_size_max), ("1:chunks_per_page", 1), ("1:total_pages", n),
                ("1:total_chunks", n), ("1:used_chunks", n), ("1:free_chunks", 0), ("1:free_chunks_end", 0),
            ] + [("1:" + name, getattr(c, name)) for name in _SLAB_COUNTERS]
        rows += [("active_slabs", 1 if s.curr_items else 0), ("total_malloced", s.bytes)]
        self._stat_lines(rows)

    def _stats_sizes(self, words):
        # memcached's answer without -o track_sizes: there is no size histogram
        self._stat_lines([("sizes_status", "disabled")])

    def _stats_conns(self, words):
        now = self.server.clock()
        rows = []
        if self.server.listener is not None:
            fd, addr = self.server.listener
            rows += [
                ("%d:addr" % fd, _address(addr)),
                ("%d:state" % fd, "conn_listening"),
                ("%d:secs_since_last_cmd" % fd, int(now - self.server.started)),
            ]
        for session in sorted((s for s in self.server.sessions if s.fd is not None), key=lambda s: s.fd):
            fd = session.fd
            rows += [
                ("%d:addr" % fd, _address(session.addr)),
                ("%d:listen_addr" % fd, _address(session.listen_addr)),
                ("%d:state" % fd, session._conn_state(self)),
                ("%d:secs_since_last_cmd" % fd, int(now - session.last_command)),
            ]
        self._stat_lines(rows)

    def _conn_state(self, asking):
        """memcached's name for what this connection is doing."""
        if self is asking:
            return "conn_parse_cmd"
        if self.closing:
            return "conn_closing"
        if self._state is DATA:
            return "conn_nread"
        if self._unsent is not None and self._unsent():
            return "conn_mwrite"
        return "conn_read" if self.commands or self._buf else "conn_new_cmd"

    def _stats_detail(self, words):
        settings = self.server.settings
        what = words[2] if len(words) > 2 else None
        if what == b"on" or what == b"off":
            settings.detail_enabled = what == b"on"
            self._out.append(b"OK\r\n")
        elif what == b"dump":
            # memcached 1.6.18 dumps prefixes under -X too: they are counts, not keys
            self._out.append(self.server.prefixes.dump())
        else:
            self._out.append(b"CLIENT_ERROR usage: stats detail on|off|dump\r\n")

    def _stats_cachedump(self, words):
        if len(words) < 4:
            return self._out.append(b"CLIENT_ERROR bad command line\r\n")
        if not self.server.settings.dump_enabled:
            return self._out.append(b"CLIENT_ERROR stats cachedump not allowed\r\n")
        class_id, limit = strtoul32(words[2]), strtoul32(words[3])
        if class_id is None or limit is None:
            return self._out.append(BAD_FORMAT)
        if class_id >= SLAB_CLASSES_MAX:
            return self._out.append(b"CLIENT_ERROR Illegal slab id\r\n")
        lines = []
        if class_id == 1:
            # memcached's: limit 0 is everything that fits in 2 MB of reply
            size = 0
            heads = (h for bucket in self.store.live_heads() for h in bucket)
            for h in heads:
                line = b"ITEM %s [%d b; %d s]\r\n" % (h.key, h.value_len, max(h.exptime, 0))
                size += len(line)
                if size > CACHEDUMP_MAX:
                    break
                lines.append(line)
                if len(lines) == limit:
                    break
        self._out.append(b"".join(lines) + END)

    # -- -Y: memcached's ASCII authentication --------------------------------

    def _unauthenticated(self, words):
        """Before a client authenticates, only `set <any> <any> <any> <size>`
        with `<user> <password>` as its data is read (memcached's
        try_read_command_asciiauth); every other line is refused, and the
        connection stays open."""
        size = strtoul32(words[4]) if len(words) >= 5 and words[0] == b"set" else None
        if size is None:
            return self._out.append(b"CLIENT_ERROR unauthenticated\r\n")
        self._state = DATA
        self._need = size + 2
        if size > MAX_LINE:
            # memcached would wait for it in a buffer it cannot grow; drop it
            self._pending = None
            return self._out.append(BAD_AUTH_FORMAT)
        self._pending = (AUTH,)

    def _complete_auth(self, block):
        self._pending = None
        if not block.endswith(b"\r\n"):
            return self._out.append(b"CLIENT_ERROR bad command line termination\r\n")
        tokens = [w for w in block[:-2].split(b"\0")[0].split(b" ") if w]
        if len(tokens) < 2:
            return self._out.append(BAD_AUTH_FORMAT)
        self.counters.auth_cmds += 1
        if self.server.check_auth(tokens[0], tokens[1]):
            self.authenticated = True
            # the reply is STORED even under noreply, as memcached's
            return self._out.append(b"STORED\r\n")
        self.counters.auth_errors += 1
        self._out.append(b"CLIENT_ERROR authentication failure\r\n")

    # == meta commands ==========================================================
    #
    # mg ms md ma me mn as memcached 1.6.18's proto_text.c reads and answers
    # them: the flags are read by _meta_parse (memcached's _meta_flag_preparse)
    # and the reply flags are written in the order the request gave them.
    # Nothing here stores anything itself: each command calls the store
    # methods its classic counterpart calls, with the meta options.

    def _meta_get(self, words):
        key = words[1]
        if len(key) > KEY_MAX_LENGTH:
            return self._out.append(BAD_FORMAT)
        if len(words) > META_MAX_WORDS:
            return self._out.append(b"CLIENT_ERROR options flags are too long\r\n")
        req = _meta_parse(words, 2)
        if req.error is None and not req.opaque_fits():
            req.error = OPAQUE_TOO_LONG
        if req.error is not None:
            return self._out.append(req.error)
        f = req.flags
        kind = "touch" if "T" in f else "get"
        item = self._persist(self.store.get, req.key, False)
        if item is FAILED:
            return
        created = False
        if item is None and "N" in f:
            # vivify: an empty item whose recache token this client wins
            life = f[req.last_of("N", "T")]
            state = record.TOKEN_SENT
            if self._persist(self.store.store, Mode.ADD, req.key, 0, life, b"", new_cas=f.get("E"), state=state) is FAILED:
                return
            item = self.store.peek(req.key)
            created = True
        self.counters.bump("cmd_" + kind)
        if item is None:
            self.counters.bump(kind + "_misses")
            if "q" not in f:
                self._out.append(b"EN" + self._meta_echo(req, req.key, req.binary) + b"\r\n")
            return
        self.counters.bump(kind + "_hits")
        now = self.store.clock()
        expiry = 0 if created else item.exptime
        had_token = not created and item.has(record.TOKEN_SENT)
        won = False
        parts = [b"VA %d" % len(item.value) if "v" in f else b"HD"]
        for flag, word in req.order:
            if flag == "T":
                expiry = absolute_expiry(f["T"], now)
            elif flag == "N":
                if created:
                    expiry = absolute_expiry(f["N"], now)
                    won = True
            elif flag == "R":
                if not had_token and not created and expiry != 0 and expiry < absolute_expiry(f["R"], now):
                    won = True
            elif flag == "s":
                parts.append(b"s%d" % len(item.value))
            elif flag == "t":
                parts.append(_meta_ttl(expiry, now))
            elif flag == "c":
                parts.append(b"c%d" % item.cas)
            elif flag == "f":
                parts.append(b"f%d" % item.flags)
            elif flag == "l":
                parts.append(b"l%d" % max(0, int(now - item.atime)))
            elif flag == "h":
                parts.append(b"h1" if item.has(record.FETCHED) else b"h0")
            elif flag == "O":
                parts.append(word)
            elif flag == "k":
                parts.append(_meta_key(item.key, item.has(record.KEY_BINARY)))
        if had_token:
            parts.append(b"Z")
        if item.has(record.STALE):
            parts.append(b"X")
            won = won or not had_token
        if won:
            parts.append(b"W")
        if not created and ("T" in f or won):
            state = item.state | (record.TOKEN_SENT if won else 0)
            item = self._persist(self.store.mark, item, expiry if "T" in f else None, state)
            if item is FAILED:
                return
        if "u" not in f:
            self.store.bump(item)
        self._out.append(b" ".join(parts) + b"\r\n")
        if "v" in f:
            self._out.extend((item.value, b"\r\n"))

    def _meta_set(self, words):
        key = words[1]
        if len(key) > KEY_MAX_LENGTH or len(words) == 2:
            return self._out.append(BAD_FORMAT)
        if len(words) > META_MAX_WORDS:
            return self._out.append(b"CLIENT_ERROR options flags too long\r\n")
        length = strtol32(words[2])
        if length is None or not 0 <= length <= INT32_MAX - 2:
            return self._out.append(BAD_FORMAT)
        req = _meta_parse(words, 3)
        f = req.flags
        mode = _MS_MODES.get(f.get("M", b"S"))
        if req.error is None and mode is None:
            req.error = b"CLIENT_ERROR invalid mode for ms M token\r\n"
        if req.error is None and not req.opaque_fits():
            req.error = OPAQUE_TOO_LONG
        # from here on, whatever the answer, the data block is read and dropped
        self._state = DATA
        self._need = length + 2
        self._pending = None
        if req.error is not None:
            return self._out.append(req.error)
        cas_unique = 0
        if "C" in f and mode is not Mode.ADD:
            cas_unique = f["C"]
            if mode in (Mode.SET, Mode.REPLACE):
                mode = Mode.CAS  # memcached: replace with a cas is a cas
        client_flags = f.get("F", 0)
        if not self.store.item_fits(len(req.key), length, client_flags):
            self.counters.store_too_large += 1
            self._drop_old_value(req.key)  # in every mode, as memcached's ms does
            return self._out.append(TOO_LARGE)
        req.store_options = {
            "invalidate": "I" in f and mode is Mode.CAS,
            "new_cas": f.get("E"),
            "vivify": f.get("N"),
            "state": record.KEY_BINARY if req.binary else 0,
        }
        self._pending = (mode, req.key, client_flags, f.get("T", 0), cas_unique, "q" in f, req)

    def _meta_set_reply(self, req, result):
        if result is Result.STORED and "q" in req.flags:
            return
        cas = 0
        if result is Result.STORED:
            item = self.store.peek(req.key)
            cas = 0 if item is None else item.cas
        parts = [_MS_CODES[result]]
        for flag, word in req.order:
            if flag == "O":
                parts.append(word)
            elif flag == "k":
                parts.append(_meta_key(req.key, req.binary))
            elif flag == "c":
                parts.append(b"c%d" % cas)
        self._out.append(b" ".join(parts) + b"\r\n")

    def _meta_delete(self, words):
        req = self._meta_request(words)
        if req is None:
            return
        f = req.flags
        invalidate = "I" in f
        done = self._persist(
            self.store.delete, req.key, f.get("C"), invalidate=invalidate,
            exptime=f.get("T") if invalidate else None, new_cas=f.get("E"), keep_empty="x" in f,
        )
        if done is FAILED:
            return
        if done is Result.EXISTS or not done:
            self.counters.delete_misses += 1
            code = b"EX" if done is Result.EXISTS else b"NF"
        else:
            if not invalidate:
                self.counters.delete_hits += 1
            if "q" in f:
                return
            code = b"HD"
        self._out.append(code + self._meta_echo(req, req.key, req.binary) + b"\r\n")

    def _meta_arithmetic(self, words):
        req = self._meta_request(words)
        if req is None:
            return
        f = req.flags
        incr = _MA_MODES.get(f.get("M", b"I"))
        if incr is None:
            return self._out.append(b"CLIENT_ERROR invalid mode for ma M token\r\n")
        vivify = None
        if "N" in f:
            vivify = (f.get("J", 0), f[req.last_of("N", "T")])
        try:
            done = self._persist(
                self.store.arithmetic, req.key, f.get("D", 1), incr, f.get("C") or None,
                f.get("T"), vivify, f.get("E"),
            )
        except NonNumeric:
            return self._out.append(NON_NUMERIC)
        if done is FAILED:
            return
        # memcached finds a too long opaque only while replying, after the change
        if not req.opaque_fits():
            return self._out.append(OPAQUE_TOO_LONG)
        name = "incr" if incr else "decr"
        if done.result is not Result.STORED:
            if done.result is Result.NOT_FOUND:
                self.counters.bump(name + "_misses")
            code = b"NF" if done.result is Result.NOT_FOUND else b"EX"
            return self._out.append(code + self._meta_echo(req, req.key, req.binary) + b"\r\n")
        if not done.created:
            self.counters.bump(name + "_hits")
            if "q" in f:
                return
        digits = b"%d" % done.value
        now = self.store.clock()
        expiry = done.exptime_before
        parts = [b"VA %d" % len(digits) if "v" in f else b"HD"]
        for flag, word in req.order:
            if flag == "T":
                expiry = absolute_expiry(f["T"], now)
            elif flag == "N":
                if done.created:
                    expiry = absolute_expiry(f["N"], now)
            elif flag == "c":
                parts.append(b"c%d" % done.item.cas)
            elif flag == "t":
                parts.append(_meta_ttl(expiry, now))
            elif flag == "O":
                parts.append(word)
            elif flag == "k":
                parts.append(_meta_key(req.key, req.binary))
        line = b" ".join(parts) + b"\r\n"
        self._out.append(line + digits + b"\r\n" if "v" in f else line)

    def _meta_request(self, words):
        """md and ma: the checks they share, then the parsed request (or None,
        the error already answered)."""
        if len(words[1]) > KEY_MAX_LENGTH:
            return self._out.append(BAD_FORMAT)
        if len(words) > META_MAX_WORDS:
            return self._out.append(b"CLIENT_ERROR options flags too long\r\n")
        req = _meta_parse(words, 2)
        if req.error is not None:
            return self._out.append(b"CLIENT_ERROR invalid or duplicate flag\r\n")
        if not req.opaque_fits() and words[0] == b"md":
            return self._out.append(OPAQUE_TOO_LONG)
        return req

    def _meta_debug(self, words):
        self.counters.cmd_meta += 1  # memcached 1.6.18 counts cmd_meta for `me` alone
        if len(words) < 2 or len(words[1]) > KEY_MAX_LENGTH:
            return self._out.append(BAD_FORMAT)
        key = words[1]
        if len(words) > 2 and words[2] == b"b":
            key = _base64_key(key)
            if key is None:
                return self._out.append(BAD_FORMAT)
        item = self._persist(self.store.peek, key)
        if item is FAILED:
            return
        if item is None:
            return self._out.append(b"EN\r\n")
        now = self.store.clock()
        size = self.store.item_total(len(item.key), len(item.value), item.flags)
        shown = base64.b64encode(item.key) if item.has(record.KEY_BINARY) else item.key
        self._out.append(
            b"ME %s exp=%d la=%d cas=%d fetch=%s cls=%d size=%d\r\n" % (
                shown,
                -1 if item.exptime == 0 else int(now) - item.exptime,
                max(0, int(now - item.atime)),
                item.cas,
                b"yes" if item.has(record.FETCHED) else b"no",
                _slab_class(size),
                size,
            )
        )

    def _meta_noop(self, words):
        self._out.append(b"MN\r\n")

    def _meta_echo(self, req, key, binary):
        """The O and k flags of a reply that carries no item."""
        echo = b""
        for flag, word in req.order:
            if flag == "O":
                echo += b" " + word
            elif flag == "k":
                echo += b" " + _meta_key(key, binary)
        return echo


# a storage command's reply line for each Result
_RESULT_LINES = {result: result.value.encode() + b"\r\n" for result in Result}

# command -> (handler, fewest words, most words or None), as memcached counts them
_COMMANDS = {
    b"get": (Session._get, 2, None),
    b"gets": (Session._get, 2, None),
    b"gat": (Session._gat, 2, None),
    b"gats": (Session._gat, 2, None),
    b"set": (Session._storage, 5, 6),
    b"add": (Session._storage, 5, 6),
    b"replace": (Session._storage, 5, 6),
    b"append": (Session._storage, 5, 6),
    b"prepend": (Session._storage, 5, 6),
    b"cas": (Session._storage, 6, 7),
    b"delete": (Session._delete, 2, 4),
    b"incr": (Session._arithmetic, 3, 4),
    b"decr": (Session._arithmetic, 3, 4),
    b"touch": (Session._touch, 3, 4),
    b"flush_all": (Session._flush_all, 1, 3),
    b"version": (Session._version, 1, None),
    b"quit": (Session._quit, 1, None),
    b"verbosity": (Session._verbosity, 2, 3),
    b"cache_memlimit": (Session._cache_memlimit, 2, 3),
    b"stats": (Session._stats, 1, None),
    b"shutdown": (Session._shutdown, 1, None),
    b"lru_crawler": (Session._lru_crawler, 2, None),
    b"mg": (Session._meta_get, 2, None),
    b"ms": (Session._meta_set, 2, None),
    b"md": (Session._meta_delete, 2, None),
    b"ma": (Session._meta_arithmetic, 2, None),
    b"me": (Session._meta_debug, 1, None),
    b"mn": (Session._meta_noop, 1, None),
}

# `stats <group>` -> handler, besides the general stats, settings and reset
_STATS_GROUPS = {
    b"items": Session._stats_items,
    b"slabs": Session._stats_slabs,
    b"sizes": Session._stats_sizes,
    b"conns": Session._stats_conns,
    b"detail": Session._stats_detail,
    b"cachedump": Session._stats_cachedump,
}
# memcached 1.6.18's `stats items` names for a class, in its order
_ITEMS_NAMES = (
    "number number_hot number_warm number_cold age_hot age_warm age mem_requested evicted "
    "evicted_nonzero evicted_time outofmemory tailrepairs reclaimed expired_unfetched "
    "evicted_unfetched evicted_active crawler_reclaimed crawler_items_checked lrutail_reflocked "
    "moves_to_cold moves_to_warm moves_within_lru direct_reclaims hits_to_hot hits_to_warm "
    "hits_to_cold hits_to_temp"
).split()
# the per-class counters of `stats slabs`, which here are the general ones
_SLAB_COUNTERS = "get_hits cmd_set delete_hits incr_hits decr_hits cas_hits cas_badval touch_hits".split()
SLAB_CLASSES_MAX = 64  # memcached's MAX_NUMBER_OF_SLAB_CLASSES: ids above are illegal
CACHEDUMP_MAX = 2 << 20  # memcached's cachedump stops at 2 MB of reply


# -- meta commands: flag parsing and small formatting helpers ----------------

# memcached refuses a meta command of more than 20 tokens, counting its own
# terminal one: 19 words
META_MAX_WORDS = 19
OPAQUE_MAX = 32  # an O token's length, its "O" included
BAD_TOKEN = b"CLIENT_ERROR bad token in command line format\r\n"
OPAQUE_TOO_LONG = b"CLIENT_ERROR opaque token too long\r\n"
_MS_MODES = {b"S": Mode.SET, b"E": Mode.ADD, b"A": Mode.APPEND, b"P": Mode.PREPEND, b"R": Mode.REPLACE}
_MA_MODES = {b"I": True, b"+": True, b"D": False, b"-": False}
_MS_CODES = {Result.STORED: b"HD", Result.EXISTS: b"EX", Result.NOT_FOUND: b"NF", Result.NOT_STORED: b"NS"}
# base64 digit values; "=" counts as a digit worth 0 (and as padding)
_BASE64_VALUES = {c: i for i, c in enumerate(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")}
_BASE64_VALUES[ord("=")] = 0

# the flags _meta_flag_preparse knows, with how each one's token is read
# (None: no token) and the error a bad token gets; E (a new cas) and x (md:
# keep an empty item) are memcached's later additions
_NUMBER_FLAGS = {
    "N": (strtol32, BAD_TOKEN),
    "T": (strtol32, BAD_TOKEN),
    "R": (strtol32, BAD_TOKEN),
    # memcached leaves the error text alone for a bad F: the last one, or its default
    "F": (strtoul32, None),
    "C": (parse_u64, BAD_TOKEN),
    "E": (parse_u64, BAD_TOKEN),
    "J": (parse_u64, b"CLIENT_ERROR invalid numeric initial value\r\n"),
    "D": (parse_u64, b"CLIENT_ERROR invalid numeric delta value\r\n"),
}
_PLAIN_FLAGS = frozenset("bIxlOPLkstcfvhuqM")


class MetaRequest:
    """A meta command's key and flags as memcached's _meta_flag_preparse reads
    them: `flags` maps a flag letter to its number (or mode byte, or True),
    `order` is [(letter, word)] as sent, for replies that echo in order."""

    __slots__ = ("key", "binary", "flags", "order", "error", "store_options")

    def __init__(self, key):
        self.key = key
        self.binary = False
        self.flags = {}
        self.order = []
        self.error = None  # the reply line, when the request is refused
        self.store_options = None

    def opaque_fits(self):
        return all(len(word) <= OPAQUE_MAX for flag, word in self.order if flag == "O")

    def last_of(self, *letters):
        """Of the given flags present, the one sent last."""
        return [flag for flag, _ in self.order if flag in letters][-1]


def _meta_parse(words, start):
    """Read the flags words[start:]; a duplicate or unknown flag stops at once,
    a bad token is remembered and the rest still read, as in memcached."""
    req = MetaRequest(words[1])
    bad_format = BAD_FORMAT
    for word in words[start:]:
        first = word[0]
        flag = chr(first)
        if first >= 127 or flag in req.flags:
            req.error = b"CLIENT_ERROR duplicate flag\r\n"
            return req
        if flag in _NUMBER_FLAGS:
            parse, error = _NUMBER_FLAGS[flag]
            value = parse(word[1:])
            if value is None:
                if error is not None:
                    bad_format = error
                req.error = bad_format
        elif flag == "M":
            if len(word) != 2:
                bad_format = req.error = b"CLIENT_ERROR incorrect length for M token\r\n"
            value = word[1:2]
        elif flag == "b":
            decoded = _base64_key(req.key)
            if decoded is None:
                bad_format = req.error = b"CLIENT_ERROR error decoding key\r\n"
            else:
                req.key, req.binary = decoded, True
            value = True
        elif flag in _PLAIN_FLAGS:
            value = True
        else:
            req.error = b"CLIENT_ERROR invalid flag\r\n"
            return req
        req.flags[flag] = value
        req.order.append((flag, word))
    return req


def _base64_key(token):
    """The key a base64 token stands for, or None, decoded as memcached's
    base64_decode does: bytes outside the alphabet are skipped, the rest must
    be whole quartets, and decoding stops after the first one with padding."""
    digits = [c for c in token if c in _BASE64_VALUES]
    if not digits or len(digits) % 4:
        return None
    out = bytearray()
    for i in range(0, len(digits), 4):
        quartet = digits[i : i + 4]
        a, b, c, d = (_BASE64_VALUES[x] for x in quartet)
        out += bytes(((a << 2 | b >> 4) & 0xFF, (b << 4 | c >> 2) & 0xFF, (c << 6 | d) & 0xFF))
        pad = quartet.count(61)  # "="
        if pad:
            if pad > 2:
                return None
            del out[-pad:]
            break
    return bytes(out) or None


def _meta_key(key, binary):
    # memcached marks an encoded key with a "b" flag after it
    return b"k" + (base64.b64encode(key) + b" b" if binary else key)


def _meta_ttl(exptime, now):
    return b"t-1" if exptime == 0 else b"t%d" % (exptime - int(now))


def _slab_sizes(factor=1.25, smallest=96, chunk_max=512 * 1024):
    # memcached's slabs_init with its defaults (-n 48, -f 1.25, 512 KB chunks)
    sizes, size = [], smallest
    while size < chunk_max / factor:
        size += -size % 8
        sizes.append(size)
        size = int(size * factor)
    return sizes + [chunk_max]


_SLAB_SIZES = _slab_sizes()


def _slab_class(total):
    """memcached's slab class id for an item of `total` bytes (`me`'s cls);
    larger items are chunked in the largest class."""
    for i, size in enumerate(_SLAB_SIZES):
        if total <= size:
            return i + 1
    return len(_SLAB_SIZES)
