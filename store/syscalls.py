"""The two Linux calls the standard library lacks, through ctypes: syncfs(2)
(the barrier of `--fsync always`) and renameat2(2) with RENAME_EXCHANGE (a
write swaps its new record with the item's old one in one step, and the old
one becomes a spare). Each is None-safe: where the C library lacks it, the
caller falls back."""

import ctypes
import errno
import os

AT_FDCWD = -100
RENAME_EXCHANGE = 2


def _libc_function(name, argtypes):
    try:
        # the interpreter's own symbols include the C library's (and finding
        # libc by name would run ldconfig in a subprocess)
        function = getattr(ctypes.CDLL(None, use_errno=True), name)
    except (OSError, AttributeError):
        return None
    function.argtypes = argtypes
    function.restype = ctypes.c_int
    return function


_SYNCFS = _libc_function("syncfs", [ctypes.c_int])
HAVE_SYNCFS = _SYNCFS is not None
_RENAMEAT2 = _libc_function("renameat2", [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint])


def _raise_errno():
    code = ctypes.get_errno()
    raise OSError(code, os.strerror(code))


def syncfs(fd):
    """syncfs(2) on the file system holding fd; raises OSError."""
    if _SYNCFS(fd) != 0:
        _raise_errno()


class Exchange:
    """Swap two existing paths atomically (renameat2 RENAME_EXCHANGE), or
    say it cannot: `available` turns false on a C library or file system
    without it, and callers go back to link + rename."""

    def __init__(self):
        self.available = _RENAMEAT2 is not None

    def __call__(self, a, b):
        """Swap a and b; raises OSError (FileNotFoundError if either is
        missing). False if exchanges are not possible here."""
        if not self.available:
            return False
        if _RENAMEAT2(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE) == 0:
            return True
        code = ctypes.get_errno()
        if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
            self.available = False
            return False
        raise OSError(code, os.strerror(code), a)
