"""The key dumps: `lru_crawler metadump` (a bucket of the data dir per step,
as resumable work, so a dump of a million items takes turns with the other
clients and never builds its reply in memory) and `stats cachedump`."""

import re
import urllib.parse

from store import record

from .base import BAD_FORMAT, END, ERROR, slab_class, strtoul32

BADCLASS = b"BADCLASS invalid class id\r\n"
NOTSTARTED = b"NOTSTARTED no items to crawl\r\n"
# the bytes memcached's uriencode leaves as they are
_URI_SAFE = re.compile(rb"[A-Za-z0-9._~-]*")
# memcached accepts class ids 1..63 in `lru_crawler metadump 1,2,...`
MAX_SLAB_CLASS_ID = 63
SLAB_CLASSES_MAX = 64  # memcached's MAX_NUMBER_OF_SLAB_CLASSES: ids above are illegal
CACHEDUMP_MAX = 2 << 20  # memcached's cachedump stops at 2 MB of reply


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
    cls = slab_class(size)
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


class Metadump:
    """A metadump under way: the store's live_heads generator and the classes
    asked for. Each step answers one bucket."""

    __slots__ = ("heads", "classes")
    COUNTS = 1  # a bucket counts as a command, so a turn does at most 20 of them

    def __init__(self, heads, classes):
        self.heads = heads
        self.classes = classes

    def step(self, session):
        try:
            bucket = next(self.heads)
        except StopIteration:
            session.out.append(END)
            return
        session.resume_later(self, end_turn=False)
        total = session.store.item_total
        classes = self.classes
        lines = [metadump_line(h, total(len(h.key), h.value_len, h.flags), classes) for h in bucket]
        lines = [line for line in lines if line is not None]
        if lines:
            session.out.append(b"".join(lines))


def lru_crawler(session, words):
    """lru_crawler metadump all|hash|<class,...>"""
    # memcached 1.6.18 also knows crawl, tocrawl, sleep, enable and
    # disable; they steer its slab crawler thread, which we do not have
    if len(words) != 3 or words[1] != b"metadump":
        return session.out.append(ERROR)
    if not session.server.settings.dump_enabled:
        return session.out.append(b"ERROR metadump not allowed\r\n")
    classes = metadump_classes(words[2])
    if classes is BADCLASS:
        session.out.append(BADCLASS)
    elif classes is not None and not classes:
        session.out.append(NOTSTARTED)
    else:
        # ended with END, as memcached's issue 667 asks, so a client knows
        # the dump is whole without a timeout
        session.resume_later(Metadump(session.store.live_heads(), classes), end_turn=False)


def cachedump(session, words):
    """stats cachedump <class> <limit>: the one class's keys, as memcached's."""
    out = session.out
    if len(words) < 4:
        return out.append(b"CLIENT_ERROR bad command line\r\n")
    if not session.server.settings.dump_enabled:
        return out.append(b"CLIENT_ERROR stats cachedump not allowed\r\n")
    class_id, limit = strtoul32(words[2]), strtoul32(words[3])
    if class_id is None or limit is None:
        return out.append(BAD_FORMAT)
    if class_id >= SLAB_CLASSES_MAX:
        return out.append(b"CLIENT_ERROR Illegal slab id\r\n")
    lines = []
    if class_id == 1:
        # memcached's: limit 0 is everything that fits in 2 MB of reply
        size = 0
        heads = (h for bucket in session.store.live_heads() for h in bucket)
        for h in heads:
            line = b"ITEM %s [%d b; %d s]\r\n" % (h.key, h.value_len, max(h.exptime, 0))
            size += len(line)
            if size > CACHEDUMP_MAX:
                break
            lines.append(line)
            if len(lines) == limit:
                break
    out.append(b"".join(lines) + END)


COMMANDS = {
    b"lru_crawler": (lru_crawler, 2, None),
}
