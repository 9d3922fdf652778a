"""The meta commands, mg ms md ma me mn, as memcached 1.6.18's proto_text.c
reads and answers them: `parse` reads the flags (memcached's
_meta_flag_preparse), and a reply's flags are written in the order the
request gave them, each by its formatter in one table per command.

Nothing here stores anything itself: each command calls the store methods
its classic counterpart calls, with the meta options; `ms` is a storage
command (commands.storage) whose reply this module writes."""

import base64

from store import Mode, NonNumeric, Result, absolute_expiry, parse_u64, record

from .base import (
    BAD_FORMAT, INT32_MAX, KEY_MAX_LENGTH, NON_NUMERIC, TOO_LARGE, compared_cas, shown_cas, slab_class, strtol32,
    strtoul32,
)
from .storage import StorageRequest, refuse_too_large

# memcached refuses a meta command of more than 20 tokens, counting its own
# terminal one: 19 words
MAX_WORDS = 19
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

    def set_reply(self, session, result):
        """An ms's reply, once its data block was stored (or not)."""
        if result is Result.STORED and "q" in self.flags:
            return
        answer = Answer(self.key, self.binary, None, 0)
        if result is Result.STORED:
            item = session.store.peek(self.key)
            answer.cas = 0 if item is None else shown_cas(session, item.cas)
        session.out.append(b" ".join([_MS_CODES[result]] + answer.flags_for(self.order, _MS_FLAGS)) + b"\r\n")

    def echo(self):
        """The O and k flags of a reply that carries no item."""
        parts = Answer(self.key, self.binary, None, 0).flags_for(self.order, _ECHO_FLAGS)
        return b"".join(b" " + part for part in parts)


def parse(words, start):
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
            parse_token, error = _NUMBER_FLAGS[flag]
            value = parse_token(word[1:])
            if value is None:
                if error is not None:
                    bad_format = error
                req.error = bad_format
        elif flag == "M":
            if len(word) != 2:
                bad_format = req.error = b"CLIENT_ERROR incorrect length for M token\r\n"
            value = word[1:2]
        elif flag == "b":
            decoded = base64_key(req.key)
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


def base64_key(token):
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


def meta_key(key, binary):
    # memcached marks an encoded key with a "b" flag after it
    return b"k" + (base64.b64encode(key) + b" b" if binary else key)


# -- reply flags: one formatter per flag, in the order the request sent them --


class Answer:
    """What a reply's flags are made of: the key as the reply names it, the
    item (mg) and its cas, and the expiry as the flags before have left it
    (T and N change it, R may win a recache token: memcached reads them in
    order, so a `t` before a `T` shows the old time)."""

    __slots__ = ("key", "binary", "item", "cas", "expiry", "now", "flags", "created", "had_token", "won")

    def __init__(self, key, binary, item, cas, expiry=0, now=0, flags=None, created=False):
        self.key = key
        self.binary = binary
        self.item = item
        self.cas = cas
        self.expiry = expiry
        self.now = now
        self.flags = flags
        self.created = created
        self.had_token = False
        self.won = False

    def flags_for(self, order, formatters):
        """The reply's flag words for the request's `order`."""
        parts = []
        for flag, word in order:
            formatter = formatters.get(flag)
            if formatter is not None:
                part = formatter(self, word)
                if part is not None:
                    parts.append(part)
        return parts


def _opaque(a, word):
    return word


def _key(a, word):
    return meta_key(a.key, a.binary)


def _cas(a, word):
    return b"c%d" % a.cas


def _ttl(a, word):
    return b"t-1" if a.expiry == 0 else b"t%d" % (a.expiry - int(a.now))


def _touch(a, word):
    a.expiry = absolute_expiry(a.flags["T"], a.now)


def _vivified(a, word):
    if a.created:
        a.expiry = absolute_expiry(a.flags["N"], a.now)
        a.won = True


def _recache(a, word):
    if not a.had_token and not a.created and a.expiry != 0 and a.expiry < absolute_expiry(a.flags["R"], a.now):
        a.won = True


def _size(a, word):
    return b"s%d" % len(a.item.value)


def _client_flags(a, word):
    return b"f%d" % a.item.flags


def _last_access(a, word):
    return b"l%d" % max(0, int(a.now - a.item.atime))


def _fetched(a, word):
    return b"h1" if a.item.has(record.FETCHED) else b"h0"


_ECHO_FLAGS = {"O": _opaque, "k": _key}
_MS_FLAGS = {**_ECHO_FLAGS, "c": _cas}
_MA_FLAGS = {**_MS_FLAGS, "t": _ttl, "T": _touch, "N": _vivified}
_MG_FLAGS = {
    **_MA_FLAGS, "R": _recache, "s": _size, "f": _client_flags, "l": _last_access, "h": _fetched,
}


# -- the commands ----------------------------------------------------------


def meta_get(session, words):
    """mg <key> <flag>*"""
    out = session.out
    key = words[1]
    if len(key) > KEY_MAX_LENGTH:
        return out.append(BAD_FORMAT)
    if len(words) > MAX_WORDS:
        return out.append(b"CLIENT_ERROR options flags are too long\r\n")
    req = parse(words, 2)
    if req.error is None and not req.opaque_fits():
        req.error = OPAQUE_TOO_LONG
    if req.error is not None:
        return out.append(req.error)
    f = req.flags
    store = session.store
    kind = "touch" if "T" in f else "get"
    item = store.get(req.key, False)
    created = False
    if item is None and "N" in f:
        # vivify: an empty item whose recache token this client wins
        life = f[req.last_of("N", "T")]
        store.store(Mode.ADD, req.key, 0, life, b"", new_cas=f.get("E"), state=record.TOKEN_SENT)
        item = store.peek(req.key)
        created = True
    counters = session.counters
    counters.bump("cmd_" + kind)
    if item is None:
        counters.bump(kind + "_misses")
        if "q" not in f:
            out.append(b"EN" + req.echo() + b"\r\n")
        return
    counters.bump(kind + "_hits")
    a = Answer(item.key, item.has(record.KEY_BINARY), item, shown_cas(session, item.cas),
               0 if created else item.exptime, store.clock(), f, created)
    a.had_token = not created and item.has(record.TOKEN_SENT)
    parts = [b"VA %d" % len(item.value) if "v" in f else b"HD"] + a.flags_for(req.order, _MG_FLAGS)
    won = a.won
    if a.had_token:
        parts.append(b"Z")
    if item.has(record.STALE):
        parts.append(b"X")
        won = won or not a.had_token
    if won:
        parts.append(b"W")
    if not created and ("T" in f or won):
        state = item.state | (record.TOKEN_SENT if won else 0)
        item = store.mark(item, a.expiry if "T" in f else None, state)
    if "u" not in f:
        store.bump(item)
    out.append(b" ".join(parts) + b"\r\n")
    if "v" in f:
        out.extend((item.value, b"\r\n"))


def meta_set(session, words):
    """ms <key> <datalen> <flag>*"""
    out = session.out
    key = words[1]
    if len(key) > KEY_MAX_LENGTH or len(words) == 2:
        return out.append(BAD_FORMAT)
    if len(words) > MAX_WORDS:
        return out.append(b"CLIENT_ERROR options flags too long\r\n")
    length = strtol32(words[2])
    if length is None or not 0 <= length <= INT32_MAX - 2:
        return out.append(BAD_FORMAT)
    req = parse(words, 3)
    f = req.flags
    mode = _MS_MODES.get(f.get("M", b"S"))
    if req.error is None and mode is None:
        req.error = b"CLIENT_ERROR invalid mode for ms M token\r\n"
    if req.error is None and not req.opaque_fits():
        req.error = OPAQUE_TOO_LONG
    if req.error is not None:
        # whatever the answer, the data block is read and dropped
        session.swallow(length + 2)
        return out.append(req.error)
    cas_unique = 0
    if "C" in f and mode is not Mode.ADD:
        cas_unique = f["C"]
        if mode in (Mode.SET, Mode.REPLACE):
            mode = Mode.CAS  # memcached: replace with a cas is a cas
    client_flags = f.get("F", 0)
    if not session.store.item_fits(len(req.key), length, client_flags):
        refuse_too_large(session, length, req.key, mode, req.key)  # the old value goes in every mode, as memcached's
        return out.append(TOO_LARGE)
    req.store_options = {
        "invalidate": "I" in f and mode is Mode.CAS,
        "new_cas": f.get("E"),
        "vivify": f.get("N"),
        "state": record.KEY_BINARY if req.binary else 0,
    }
    session.expect(StorageRequest(length, mode, req.key, client_flags, f.get("T", 0), cas_unique, "q" in f, req))


def meta_delete(session, words):
    """md <key> <flag>*"""
    req = _request(session, words)
    if req is None:
        return
    f = req.flags
    invalidate = "I" in f
    done = session.store.delete(
        req.key, compared_cas(session, f.get("C")), invalidate=invalidate,
        exptime=f.get("T") if invalidate else None, new_cas=f.get("E"), keep_empty="x" in f,
    )
    if done is Result.EXISTS or not done:
        session.counters.delete_misses += 1
        code = b"EX" if done is Result.EXISTS else b"NF"
    else:
        if not invalidate:
            session.counters.delete_hits += 1
        if "q" in f:
            return
        code = b"HD"
    session.out.append(code + req.echo() + b"\r\n")


def meta_arithmetic(session, words):
    """ma <key> <flag>*"""
    req = _request(session, words)
    if req is None:
        return
    out = session.out
    f = req.flags
    incr = _MA_MODES.get(f.get("M", b"I"))
    if incr is None:
        return out.append(b"CLIENT_ERROR invalid mode for ma M token\r\n")
    vivify = None
    if "N" in f:
        vivify = (f.get("J", 0), f[req.last_of("N", "T")])
    store = session.store
    try:
        cas = compared_cas(session, f.get("C") or None)
        done = store.arithmetic(req.key, f.get("D", 1), incr, cas, f.get("T"), vivify, f.get("E"))
    except NonNumeric:
        return out.append(NON_NUMERIC)
    # memcached finds a too long opaque only while replying, after the change
    if not req.opaque_fits():
        return out.append(OPAQUE_TOO_LONG)
    name = "incr" if incr else "decr"
    if done.result is not Result.STORED:
        if done.result is Result.NOT_FOUND:
            session.counters.bump(name + "_misses")
        code = b"NF" if done.result is Result.NOT_FOUND else b"EX"
        return out.append(code + req.echo() + b"\r\n")
    if not done.created:
        session.counters.bump(name + "_hits")
        if "q" in f:
            return
    digits = b"%d" % done.value
    a = Answer(req.key, req.binary, done.item, shown_cas(session, done.item.cas), done.exptime_before, store.clock(), f,
               done.created)
    parts = [b"VA %d" % len(digits) if "v" in f else b"HD"] + a.flags_for(req.order, _MA_FLAGS)
    line = b" ".join(parts) + b"\r\n"
    out.append(line + digits + b"\r\n" if "v" in f else line)


def _request(session, words):
    """md and ma: the checks they share, then the parsed request (or None,
    the error already answered)."""
    out = session.out
    if len(words[1]) > KEY_MAX_LENGTH:
        return out.append(BAD_FORMAT)
    if len(words) > MAX_WORDS:
        return out.append(b"CLIENT_ERROR options flags too long\r\n")
    req = parse(words, 2)
    if req.error is not None:
        return out.append(b"CLIENT_ERROR invalid or duplicate flag\r\n")
    if not req.opaque_fits() and words[0] == b"md":
        return out.append(OPAQUE_TOO_LONG)
    return req


def meta_debug(session, words):
    """me <key> [b]"""
    out = session.out
    session.counters.cmd_meta += 1  # memcached 1.6.18 counts cmd_meta for `me` alone
    if len(words) < 2 or len(words[1]) > KEY_MAX_LENGTH:
        return out.append(BAD_FORMAT)
    key = words[1]
    if len(words) > 2 and words[2] == b"b":
        key = base64_key(key)
        if key is None:
            return out.append(BAD_FORMAT)
    store = session.store
    item = store.peek(key)
    if item is None:
        return out.append(b"EN\r\n")
    now = store.clock()
    size = store.item_total(len(item.key), len(item.value), item.flags)
    shown = base64.b64encode(item.key) if item.has(record.KEY_BINARY) else item.key
    out.append(
        b"ME %s exp=%d la=%d cas=%d fetch=%s cls=%d size=%d\r\n" % (
            shown,
            -1 if item.exptime == 0 else int(now) - item.exptime,
            max(0, int(now - item.atime)),
            item.cas,
            b"yes" if item.has(record.FETCHED) else b"no",
            slab_class(size),
            size,
        )
    )


def meta_noop(session, words):
    """mn: the end of a pipeline of quiet commands."""
    session.out.append(b"MN\r\n")


COMMANDS = {
    b"mg": (meta_get, 2, None),
    b"ms": (meta_set, 2, None),
    b"md": (meta_delete, 2, None),
    b"ma": (meta_arithmetic, 2, None),
    b"me": (meta_debug, 1, None),
    b"mn": (meta_noop, 1, None),
}
