"""The retrieval commands: get gets gat gats. A long key list pauses at the
session's limits and goes on as resumable work (`Retrieval`); the session's
plain-get fast path calls `get_hits`, and `retrieve_keys` for any line that
is not all hits."""

from store import StoreError

from .base import BAD_EXPTIME, BAD_FORMAT, END, INFINITY, KEY_MAX_LENGTH, shown_cas, strtol32

# Keys a multi-get looks up before the other connections get a turn (when the
# reactor sets limits): a few times a typical multi-get.
KEYS_PER_TURN = 1000
# A value this large is sent as its own part (copied once, by the join)
SMALL_VALUE = 4096
# The most one small hit adds to a reply: its VALUE line and its value
HIT_MAX = len(b"VALUE  4294967295 4096\r\n\r\n") + KEY_MAX_LENGTH + SMALL_VALUE
END_SIZE = len(END)


class Retrieval:
    """A key list paused at a limit: the keys from `start` on are still to be
    answered, in the next turn."""

    __slots__ = ("keys", "start", "with_cas", "exptime")
    COUNTS = 0  # a resumed key list is the same command, not another

    def __init__(self, keys, start, with_cas, exptime):
        self.keys = keys
        self.start = start
        self.with_cas = with_cas
        self.exptime = exptime

    def step(self, session):
        retrieve_keys(session, self.keys, self.with_cas, self.exptime, self.start)


def get(session, words):
    """get|gets <key>*"""
    retrieve(session, words[1:], words[0] == b"gets", None)


def gat(session, words):
    """gat|gats <exptime> <key>*: get and touch."""
    exptime = strtol32(words[1])
    if exptime is None:
        return session.out.append(BAD_EXPTIME)
    retrieve(session, words[2:], words[0] == b"gats", exptime)


def retrieve(session, keys, with_cas, exptime):
    if keys and max(map(len, keys)) > KEY_MAX_LENGTH:
        return session.out.append(BAD_FORMAT)
    retrieve_keys(session, keys, with_cas, exptime)


def get_hits(session, keys, room, counts=None):
    """A plain `get` key list, or a pipelined run of them (`keys` all their
    keys, `counts` how many each line has), answered at once when every key
    is in memory and alive with a small value and the replies cannot reach
    `room` (so none could pause): the usual get without retrieve_keys'
    general way, a run of them in one store call. The reply bytes it made,
    or None with nothing answered (retrieve_keys then answers them; a key
    bumped here stays bumped)."""
    ends = END_SIZE if counts is None else len(counts) * END_SIZE
    if len(keys) * HIT_MAX + ends >= room or len(keys) > KEYS_PER_TURN or session.server.settings.detail_enabled:
        return None
    items = session.store.hits(keys)
    if items is None:
        return None
    parts = []
    made = ends
    for item in items:
        value = item.value
        if len(value) >= SMALL_VALUE:
            return None
        part = b"VALUE %s %d %d\r\n%s\r\n" % (item.key, item.flags, len(value), value)
        made += len(part)
        parts.append(part)
    if counts is None:
        parts.append(END)
    else:  # (an END after each line's values)
        lined = []
        i = 0
        for n in counts:
            lined += parts[i : i + n]
            lined.append(END)
            i += n
        parts = lined
    session.out.extend(parts)
    c = session.counters
    c.cmd_get += len(keys)
    c.get_hits += len(keys)
    return made


def retrieve_keys(session, keys, with_cas, exptime, start=0):
    """Answer a get/gets/gat/gats key list from `start`; returns the reply
    bytes it made."""
    # A long key list pauses once the reply passes the room the session gives
    # it, so `get k k k ...` of a large item cannot make the server hold
    # gigabytes of replies; and after KEYS_PER_TURN keys, so a list of a
    # million misses cannot hold up the other clients for seconds.
    store = session.store
    server = session.server
    detail = server.settings.detail_enabled
    room = session.room
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
                server.prefixes.record(key, server.settings.prefix_delimiter, 0, item is not None)
            if item is not None:
                hits += 1
                value = item.value
                size = len(value)
                if size < SMALL_VALUE:
                    # one part to join, not three
                    if with_cas:
                        cas = shown_cas(session, item.cas)
                        part = b"VALUE %s %d %d %d\r\n%s\r\n" % (key, item.flags, size, cas, value)
                    else:
                        part = b"VALUE %s %d %d\r\n%s\r\n" % (key, item.flags, size, value)
                    parts.append(part)
                    made += len(part)
                else:
                    # a large value is copied once, by the join
                    if with_cas:
                        head = b"VALUE %s %d %d %d\r\n" % (key, item.flags, size, shown_cas(session, item.cas))
                    else:
                        head = b"VALUE %s %d %d\r\n" % (key, item.flags, size)
                    parts += (head, value, b"\r\n")
                    made += len(head) + size + 2
            if (made >= room or i == stop) and i < count:
                session.resume_later(Retrieval(keys, i, with_cas, exptime), end_turn=True)
                paused = True
                break
    except StoreError:
        # the SERVER_ERROR the session makes of it stands in for the rest of the reply
        _count(session.counters, exptime, i - start, hits)
        raise
    if not paused:
        parts.append(END)
        made += len(END)
    if exptime is None:
        # _count's get case written out: it runs once a get line
        c = session.counters
        c.cmd_get += i - start
        c.get_hits += hits
        c.get_misses += i - start - hits
    else:
        _count(session.counters, exptime, i - start, hits)
    session.out.extend(parts)
    return made


def _count(c, exptime, asked, hits):
    # memcached counts gat/gats as touches, not gets
    if exptime is None:
        c.cmd_get += asked
        c.get_hits += hits
        c.get_misses += asked - hits
    else:
        c.cmd_touch += asked
        c.touch_hits += hits
        c.touch_misses += asked - hits


COMMANDS = {
    b"get": (get, 2, None),
    b"gets": (get, 2, None),
    b"gat": (gat, 2, None),
    b"gats": (gat, 2, None),
}
