"""The store's exceptions."""


class DataDirError(Exception):
    """The data directory cannot be used (in use, foreign format, unreadable)."""


class StoreError(Exception):
    """A change could not be made durable (disk full, permissions...); the
    message is the reason a client is given."""


class DiskFull(StoreError):
    """A write would take the data dir past --max-disk (and, under the evict
    policy, nothing could be evicted to make room): memcached's -M answer."""

    def __init__(self):
        super().__init__("out of memory storing object")
