"""The store's exceptions."""


class DataDirError(Exception):
    """The data directory cannot be used (in use, foreign format, unreadable)."""


class StoreError(Exception):
    """A change could not be made durable (disk full, permissions...); the
    message is the reason a client is given."""


class ReadError(StoreError):
    """A record's file could not be read (EIO...): a retrieval makes it a
    miss; a change that needs the old value first fails with it."""


class DiskFull(StoreError):
    """A write would take the data dir past --max-disk (and, under the evict
    policy, nothing could be evicted to make room): memcached's -M answer."""

    def __init__(self):
        super().__init__("out of memory storing object")
