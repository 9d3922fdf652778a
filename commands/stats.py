"""`stats` and every group of it: the general stats and `stats settings` (rows
built here, then put in memcached 1.6.18's order by `in_memcached_order`: the
order is data, not code, so a new stat is a row anywhere in its list),
`stats reset`, items, slabs, sizes, conns, detail (the per-prefix counts of
`PrefixStats`) and cachedump (in the dumps family)."""

import os
import resource

from .base import END, ERROR, VERSION
from .dumps import cachedump


def general_stats(server):
    """memcached's `stats` rows, as (name, value), in memcached's order."""
    c, s, st = server.counters, server.store, server.settings
    now = server.clock()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    buffered = [n for n in (session.buffered for session in server.sessions) if n]
    rows = [
        ("pid", os.getpid()),
        ("uptime", int(now - server.started)),
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
        # `watch`'s lines: made, dropped for a full watcher, sent; watchers now
        ("log_worker_dropped", 0),
        ("log_worker_written", server.watchers.written),
        ("log_watcher_skipped", server.watchers.skipped),
        ("log_watcher_sent", server.watchers.sent),
        ("log_watchers", len(server.watchers.watchers)),
        ("bytes", s.bytes),
        ("curr_items", s.curr_items),
        ("total_items", s.total_items),
        # leaving memory loses nothing (the item stays on disk): only files
        # removed under --disk-policy evict count
        ("evictions", s.evictions),
        ("expired_unfetched", s.expired_unfetched),
        ("evicted_unfetched", s.evicted_unfetched),
        # memcached's segmented LRU's: an evicted item hit recently; there is
        # no such LRU here
        ("evicted_active", 0),
        ("reclaimed", s.reclaimed),
        ("cache_items", len(s.cache)),
        ("cache_bytes", s.cache.used),
        ("cache_evictions", s.cache.evictions),
        ("persist_errors", c.persist_errors),
        ("items_loaded", s.loaded),
        ("files_quarantined", s.quarantined),
        # records that could not be read (EIO...): answered as misses, kept
        ("read_errors", s.read_errors),
        ("files_restored", s.restored),
        # replaced records' files kept to be written over (store/spares.py)
        ("spare_files", len(s.dir.spares)),
        ("spare_writes", s.dir.spares.reused),
        ("spare_files_made", s.dir.spares.made),
        # how item records reached their files: a pwrite into a slot of the
        # key's kept file (the fast path), an exchange with a spare or new
        # file (the old one kept in tmp/), a plain rename (no old file)
        ("writes_in_place", s.dir.kept.writes),
        ("writes_exchanged", s.dir.exchanged),
        ("writes_renamed", s.dir.renamed),
        ("startup_scan_done", int(s.scan_done)),
        ("fsync_level", s.durability.level),
        ("fsync_calls", s.durability.calls),
        ("fsync_seconds", "%.6f" % s.durability.seconds),
        ("fsync_errors", s.durability.errors),
        # everysec's helper: running, restarting, none (barriers in the
        # loop), off; and how long the oldest write not yet covered by a
        # passed barrier has waited, what a power loss now would cost
        ("fsync_helper", s.durability.helper_state),
        ("fsync_helper_restarts", s.durability.restarts),
        ("fsync_unsynced_seconds", "%.3f" % s.durability.unsynced_seconds()),
        ("sync_errors", c.sync_errors),
        # memcached 1.6's general stats besides the ones above, where they
        # mean something here. Those whose mechanism does not exist here but
        # which tools read are 0 or constant, each said so below.
        # not libevent: the loop is Python's selectors, named as such
        ("libevent", st.event_loop),
        ("connection_structures", server.conn_structs),
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
    return in_memcached_order(rows, GENERAL_STATS_ORDER)


def settings_stats(server):
    """memcached's `stats settings` rows, in memcached's order."""
    st, s = server.settings, server.store
    rows = [
        ("maxbytes", s.cache.limit),
        ("maxconns", st.max_connections),
        ("tcpport", st.port),
        ("udpport", 0),
        ("inter", st.listen or "NULL"),  # memcached's: -l as given, NULL without
        ("verbosity", st.verbosity),
        ("evictions", "on"),
        ("cas_enabled", "yes" if st.cas_enabled else "no"),
        ("item_size_max", s.item_size_max),
        ("flush_enabled", "yes" if st.flush_enabled else "no"),
        ("shutdown_command", "yes" if st.shutdown_enabled else "no"),
        ("idle_timeout", st.idle_timeout),
        ("watcher_logbuf_size", st.watcher_logbuf_size),
        ("ssl_enabled", "yes" if st.tls_enabled else "no"),
        ("ssl_chain_cert", st.tls_cert or "(null)"),
        ("ssl_key", st.tls_key or "(null)"),
        ("ssl_verify_mode", st.tls_verify_mode),
        ("ssl_ca_cert", st.tls_ca or "NULL"),
        ("data_dir", s.dir.path),
        ("fsync", s.durability.level),
        ("fsync_method", s.durability.method),
        ("fsync_watchdog", "%g" % s.durability.watchdog),
        ("domain_socket", st.domain_socket or "NULL"),
        ("umask", "%o" % st.unix_mask),
        ("num_threads", 1),
        ("tcp_backlog", st.tcp_backlog),
        ("reqs_per_event", st.reqs_per_event),
        ("stat_key_prefix", st.prefix_delimiter.decode("latin-1")),
        ("detail_enabled", "yes" if st.detail_enabled else "no"),
        ("binding_protocol", BINDING_PROTOCOLS[st.protocol]),
        ("auth_enabled_sasl", "yes" if server.sasl is not None else "no"),
        # memcached shows the -Y file's path here
        ("auth_enabled_ascii", st.auth_file if server.auth is not None else "no"),
        ("maxconns_fast", "yes"),
        ("hashpower_init", 16),
        ("dump_enabled", "yes" if st.dump_enabled else "no"),
        ("hash_algorithm", "blake2b"),
        ("track_sizes", "no"),
        ("max_disk", s.max_disk or 0),
        ("disk_policy", s.disk_policy),
    ]
    return in_memcached_order(rows, SETTINGS_STATS_ORDER)


# -B's value -> what memcached's `stats settings` calls it
BINDING_PROTOCOLS = {"auto": "auto-negotiate", "ascii": "ascii", "binary": "binary"}

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


# -- the command and its groups ----------------------------------------------


def stats(session, words):
    """stats [group ...]"""
    group = _GROUPS.get(words[1] if len(words) > 1 else None)
    if group is None:
        return session.out.append(ERROR)
    group(session, words)


def _lines(session, rows):
    session.out.append(
        b"".join(b"STAT %s %s\r\n" % (name.encode(), str(value).encode()) for name, value in rows) + END
    )


def _general(session, words):
    _lines(session, general_stats(session.server))


def _settings(session, words):
    _lines(session, settings_stats(session.server))


def _reset(session, words):
    session.counters.reset()
    session.store.reset_stats()
    session.server.prefixes.clear()
    session.out.append(b"RESET\r\n")


def _items(session, words):
    rows = items_rows(session)
    if not rows:
        return session.out.append(END)
    _lines(session, rows)


def items_rows(session):
    """`stats items`' rows (none while the cache is empty)."""
    # One class: items are files, not slab chunks. Where memcached's
    # segmented LRU has counters of its own, everything is "cold".
    s, c = session.store, session.counters
    if not s.curr_items:
        return []
    oldest = s.cache.oldest()
    age = 0 if oldest is None else max(0, int(s.clock() - oldest.atime))
    values = {
        "number": s.curr_items, "number_cold": s.curr_items, "age": age, "mem_requested": s.bytes,
        "evicted": s.evictions, "outofmemory": c.store_no_memory, "reclaimed": s.reclaimed,
        "crawler_reclaimed": s.reclaimed, "crawler_items_checked": s.items_checked,
        "expired_unfetched": s.expired_unfetched, "evicted_unfetched": s.evicted_unfetched,
        "hits_to_cold": c.get_hits,
    }
    return [("items:1:" + name, values.get(name, 0)) for name in ITEMS_NAMES]


def _slabs(session, words):
    _lines(session, slabs_rows(session))


def slabs_rows(session):
    """`stats slabs`' rows."""
    # One honest class: a chunk is a file, as large as -I allows, one per
    # "page"; nothing is allocated ahead, so nothing is free.
    s, c = session.store, session.counters
    rows = []
    if s.curr_items:
        n = s.curr_items
        rows = [
            ("1:chunk_size", s.item_size_max), ("1:chunks_per_page", 1), ("1:total_pages", n),
            ("1:total_chunks", n), ("1:used_chunks", n), ("1:free_chunks", 0), ("1:free_chunks_end", 0),
        ] + [("1:" + name, getattr(c, name)) for name in _SLAB_COUNTERS]
    rows += [("active_slabs", 1 if s.curr_items else 0), ("total_malloced", s.bytes)]
    return rows


def _sizes(session, words):
    # memcached's answer without -o track_sizes: there is no size histogram
    _lines(session, [("sizes_status", "disabled")])


def _conns(session, words):
    server = session.server
    now = server.clock()
    # every listener (process sets `listeners` for -l's list; `listener` alone
    # is the one of a server given it), then the clients, in fd order as memcached
    listeners = getattr(server, "listeners", None) or ([server.listener] if server.listener is not None else [])
    rows = []
    for fd, addr in sorted(listeners):
        rows += [
            ("%d:addr" % fd, _address(addr)),
            ("%d:state" % fd, "conn_listening"),
            ("%d:secs_since_last_cmd" % fd, int(now - server.started)),
        ]
    for other in sorted((s for s in server.sessions if s.fd is not None), key=lambda s: s.fd):
        fd = other.fd
        rows += [
            ("%d:addr" % fd, _address(other.addr)),
            ("%d:listen_addr" % fd, _address(other.listen_addr)),
            ("%d:state" % fd, "conn_parse_cmd" if other is session else other.conn_state),
            ("%d:secs_since_last_cmd" % fd, int(now - other.last_command)),
        ]
    _lines(session, rows)


def _address(addr):
    """A socket address as memcached's `stats conns` shows it."""
    if addr is None:
        return "unknown"
    if isinstance(addr, str):
        # a unix socket: the listener's path; a client has no name, and
        # memcached, which keeps no peer address for one, shows "?:<AF 0>"
        return "unix:" + addr if addr else "?:<AF 0>"
    host, port = addr[0], addr[1]
    return f"tcp6:[{host}]:{port}" if ":" in host else f"tcp:{host}:{port}"


def _detail(session, words):
    settings = session.server.settings
    what = words[2] if len(words) > 2 else None
    if what == b"on" or what == b"off":
        settings.detail_enabled = what == b"on"
        session.out.append(b"OK\r\n")
    elif what == b"dump":
        # memcached 1.6.18 dumps prefixes under -X too: they are counts, not keys
        session.out.append(session.server.prefixes.dump())
    else:
        session.out.append(b"CLIENT_ERROR usage: stats detail on|off|dump\r\n")


# `stats <group>` -> its function (None: plain `stats`)
_GROUPS = {
    None: _general,
    b"settings": _settings,
    b"reset": _reset,
    b"items": _items,
    b"slabs": _slabs,
    b"sizes": _sizes,
    b"conns": _conns,
    b"detail": _detail,
    b"cachedump": cachedump,
}
# memcached 1.6.18's `stats items` names for a class, in its order
ITEMS_NAMES = (
    "number number_hot number_warm number_cold age_hot age_warm age mem_requested evicted "
    "evicted_nonzero evicted_time outofmemory tailrepairs reclaimed expired_unfetched "
    "evicted_unfetched evicted_active crawler_reclaimed crawler_items_checked lrutail_reflocked "
    "moves_to_cold moves_to_warm moves_within_lru direct_reclaims hits_to_hot hits_to_warm "
    "hits_to_cold hits_to_temp"
).split()
# the per-class counters of `stats slabs`, which here are the general ones
_SLAB_COUNTERS = "get_hits cmd_set delete_hits incr_hits decr_hits cas_hits cas_badval touch_hits".split()

COMMANDS = {
    b"stats": (stats, 1, None),
}
