"""The commands that change an item without a data block: delete, incr,
decr, touch, and flush_all."""

from store import NonNumeric, parse_u64

from .base import BAD_EXPTIME, BAD_FORMAT, KEY_MAX_LENGTH, NON_NUMERIC, OK, hit_or_miss, reply, strtol32

BAD_DELTA = b"CLIENT_ERROR invalid numeric delta argument\r\n"
DELETE_USAGE = b"CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n"


def delete(session, words):
    """delete <key> [0] [noreply]"""
    # memcached looks for noreply only after the key: `delete noreply`
    # deletes the key "noreply"
    noreply = len(words) > 2 and words[-1] == b"noreply"
    if len(words) > 2:
        hold_is_zero = words[2] == b"0"
        valid = (len(words) == 3 and (hold_is_zero or noreply)) or (
            len(words) == 4 and hold_is_zero and noreply
        )
        if not valid:
            return reply(session, noreply, DELETE_USAGE)
    key = words[1]
    if len(key) > KEY_MAX_LENGTH:
        return reply(session, noreply, BAD_FORMAT)
    settings = session.server.settings
    if settings.detail_enabled:
        session.server.prefixes.record(key, settings.prefix_delimiter, 3)
    deleted = session.store.delete(key)
    hit_or_miss(session, noreply, "delete", b"DELETED\r\n" if deleted else None)


def arithmetic(session, words):
    """incr|decr <key> <delta> [noreply]"""
    incr = words[0] == b"incr"
    noreply = words[-1] == b"noreply"
    key = words[1]
    if len(key) > KEY_MAX_LENGTH:
        return reply(session, noreply, BAD_FORMAT)
    delta = parse_u64(words[2])
    if delta is None:
        return reply(session, noreply, BAD_DELTA)
    try:
        value = session.store.incr_decr(key, delta, incr)
    except NonNumeric:
        return reply(session, noreply, NON_NUMERIC)
    hit_or_miss(session, noreply, "incr" if incr else "decr", None if value is None else b"%d\r\n" % value)


def touch(session, words):
    """touch <key> <exptime> [noreply]"""
    noreply = words[-1] == b"noreply"
    key = words[1]
    if len(key) > KEY_MAX_LENGTH:
        return reply(session, noreply, BAD_FORMAT)
    exptime = strtol32(words[2])
    if exptime is None:
        return reply(session, noreply, BAD_EXPTIME)
    session.counters.cmd_touch += 1
    item = session.store.touch(key, exptime)
    hit_or_miss(session, noreply, "touch", None if item is None else b"TOUCHED\r\n")


def flush_all(session, words):
    """flush_all [delay] [noreply]"""
    noreply = words[-1] == b"noreply"
    if not session.server.settings.flush_enabled:
        session.counters.cmd_flush += 1  # memcached counts the refused ones too
        return reply(session, noreply, b"CLIENT_ERROR flush_all not allowed\r\n")
    delay = 0
    if len(words) != (2 if noreply else 1):
        delay = strtol32(words[1])
        if delay is None:
            return reply(session, noreply, BAD_EXPTIME)
    session.counters.cmd_flush += 1
    session.store.flush_all(delay)
    reply(session, noreply, OK)


COMMANDS = {
    b"delete": (delete, 2, 4),
    b"incr": (arithmetic, 3, 4),
    b"decr": (arithmetic, 3, 4),
    b"touch": (touch, 3, 4),
    b"flush_all": (flush_all, 1, 3),
}
