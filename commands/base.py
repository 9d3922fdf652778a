"""What every command family shares: memcached's reply lines, its number
parsing (the safe_strto* functions), the key length rule, and the two reply
helpers that honour `noreply` and count hits and misses."""

from store import parse_c_integer, parse_u64

VERSION = "1.6.18-lite"
KEY_MAX_LENGTH = 250
INT32_MAX = (1 << 31) - 1
INFINITY = float("inf")

ERROR = b"ERROR\r\n"
END = b"END\r\n"
OK = b"OK\r\n"
BAD_FORMAT = b"CLIENT_ERROR bad command line format\r\n"
BAD_CHUNK = b"CLIENT_ERROR bad data chunk\r\n"
BAD_EXPTIME = b"CLIENT_ERROR invalid exptime argument\r\n"
NON_NUMERIC = b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n"
TOO_LARGE = b"SERVER_ERROR object too large for cache\r\n"


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


def reply(session, noreply, line):
    """Send line unless the command asked for noreply."""
    if not noreply:
        session.out.append(line)


def hit_or_miss(session, noreply, counter, line):
    """Count `<counter>_hits` and send line, or, when line is None, count
    `<counter>_misses` and send NOT_FOUND."""
    if line is None:
        session.counters.bump(counter + "_misses")
        line = b"NOT_FOUND\r\n"
    else:
        session.counters.bump(counter + "_hits")
    reply(session, noreply, line)


# -- memcached's slab classes, which `me` and the dumps report --------------


def _slab_sizes(factor=1.25, smallest=96, chunk_max=512 * 1024):
    # memcached's slabs_init with its defaults (-n 48, -f 1.25, 512 KB chunks)
    sizes, size = [], smallest
    while size < chunk_max / factor:
        size += -size % 8
        sizes.append(size)
        size = int(size * factor)
    return sizes + [chunk_max]


SLAB_SIZES = _slab_sizes()


def slab_class(total):
    """memcached's slab class id for an item of `total` bytes (`me`'s cls);
    larger items are chunked in the largest class."""
    for i, size in enumerate(SLAB_SIZES):
        if total <= size:
            return i + 1
    return len(SLAB_SIZES)


def shown_cas(session, cas):
    """The cas a reply shows: the item's, or 0 under -C (memcached's
    --disable-cas); the store keeps its own for restarts either way."""
    return cas if session.server.settings.cas_enabled else 0


# a cas no item has (the store's are positive): -C's non-zero request cas
NO_MATCH = -1


def compared_cas(session, cas):
    """The cas a delete or an arithmetic compares (None: none): the
    request's, or under -C what memcached's all-zero cas make of it: 0
    matches every item, any other none."""
    if session.server.settings.cas_enabled or cas is None:
        return cas
    return None if cas == 0 else NO_MATCH
