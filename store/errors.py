"""The store's exceptions."""


class DataDirError(Exception):
    """The data directory cannot be used (in use, foreign format, unreadable)."""


class StoreError(Exception):
    """A change could not be made durable (disk full, permissions...); the
    message is the reason a client is given."""
