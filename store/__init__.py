"""The items and their files: a file-per-key directory store with an in-memory
cache in front, memcached's storage semantics, expiry, cas and flush epoch.
Knows no protocol."""

from .clock import Clock
from .durability import ALWAYS, EVERYSEC, LEVELS, METHODS, NO, WATCHDOG
from .errors import DataDirError, DiskFull, StoreError
from .items import (
    DISK_POLICIES,
    Arithmetic,
    Item,
    Mode,
    NonNumeric,
    Result,
    Store,
    absolute_expiry,
    parse_c_integer,
    parse_u64,
)
from .inplace import KEPT_FILES
from .spares import FRESH_SPARES

__all__ = [
    "ALWAYS",
    "DISK_POLICIES",
    "EVERYSEC",
    "FRESH_SPARES",
    "KEPT_FILES",
    "LEVELS",
    "METHODS",
    "NO",
    "Arithmetic",
    "Clock",
    "DataDirError",
    "DiskFull",
    "Item",
    "Mode",
    "NonNumeric",
    "Result",
    "Store",
    "StoreError",
    "WATCHDOG",
    "absolute_expiry",
    "parse_c_integer",
    "parse_u64",
]
