"""The in-memory cache in front of the files: least recently used items leave
memory (never the disk) once their total size passes the limit set by -m."""

from collections import OrderedDict


class LRUCache:
    """A byte-bounded LRU map from key to item; item.size is its cost."""

    def __init__(self, limit_bytes):
        self.limit = limit_bytes
        self.used = 0
        self.evictions = 0
        # key -> item, least recently used first; a reader that does its own
        # lookups (Store.get_each) moves what it reads to the end itself
        self.items = OrderedDict()

    def get(self, key):
        item = self.items.get(key)
        if item is not None:
            self.items.move_to_end(key)
        return item

    def put(self, item):
        old = self.items.pop(item.key, None)
        if old is not None:
            self.used -= old.size
        if item.size > self.limit:
            return
        self.items[item.key] = item
        self.used += item.size
        self._shrink()

    def discard(self, key):
        old = self.items.pop(key, None)
        if old is not None:
            self.used -= old.size

    def clear(self):
        self.items.clear()
        self.used = 0

    def resize(self, limit_bytes):
        self.limit = limit_bytes
        self._shrink()

    def _shrink(self):
        while self.used > self.limit and self.items:
            _, gone = self.items.popitem(last=False)
            self.used -= gone.size
            self.evictions += 1

    def oldest(self):
        """The least recently used item in memory, or None."""
        return next(iter(self.items.values()), None)

    def __len__(self):
        return len(self.items)

    def __contains__(self, key):
        return key in self.items
