"""everysec's barrier off the loop: a small helper process that runs syncfs(2)
on the data dir's file system when asked, so the single-threaded server goes
on serving while the disk catches up (a syncfs after a second of writes can
take a tenth of a second or more, and every client would wait for it).

syncfs flushes the whole file system whoever calls it, so a barrier made by
the helper covers every write the server finished before asking. The helper
reads one byte per request on its stdin and answers one line, the errno (0:
done); it exits when its stdin closes, so it never outlives the server, even
one killed with kill -9.
"""

import os
import select
import signal
import subprocess
import sys
import time

# The helper's whole program: syncfs through ctypes, as store/syscalls.py.
_HELPER = r"""
import ctypes, os, sys
os.nice(19)  # the serving loop comes first; the disk does the waiting
fd = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECTORY)
syncfs = ctypes.CDLL(None, use_errno=True).syncfs
while sys.stdin.buffer.read(1):
    code = 0 if syncfs(fd) == 0 else ctypes.get_errno()
    sys.stdout.write("%d\n" % code)
    sys.stdout.flush()
"""


class HelperGone(OSError):
    """The helper process died: the caller starts another one (or, after too
    many, goes back to barriers of its own)."""


class BackgroundSyncer:
    """One helper process; at most one barrier in flight."""

    def __init__(self, path):
        self._proc = subprocess.Popen(
            [sys.executable, "-c", _HELPER, path],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            close_fds=True,
            # not in the terminal's process group: a Ctrl-C is the server's
            # to handle (it stops cleanly and then closes the helper's stdin)
            start_new_session=True,
        )
        os.set_blocking(self._proc.stdout.fileno(), False)
        self._answer = b""
        self.started = None  # perf_counter() of the barrier in flight, or None

    @property
    def running(self):
        return self.started is not None

    @property
    def pid(self):
        return self._proc.pid

    def start(self):
        """Ask for a barrier; raises HelperGone."""
        try:
            self._proc.stdin.write(b"s")
            self._proc.stdin.flush()
        except (BrokenPipeError, OSError) as e:
            raise HelperGone(f"the sync helper is gone: {e}") from e
        self.started = time.perf_counter()

    def poll(self, wait=0.0):
        """None while the barrier runs; else its errno (0: durable). `wait`:
        how many seconds to wait for the answer (a clean stop waits; a stopped
        or hung helper must not hold it forever). Raises HelperGone."""
        if self.started is None:
            return None
        fd = self._proc.stdout.fileno()
        end = time.monotonic() + wait
        while not self._answer.endswith(b"\n"):
            left = end - time.monotonic()
            if left > 0 and not select.select([fd], [], [], left)[0]:
                return None
            try:
                chunk = os.read(fd, 64)
            except BlockingIOError:
                return None
            if not chunk:
                self.started = None
                raise HelperGone("the sync helper exited")
            self._answer += chunk
        code, self._answer = int(self._answer), b""
        self.started = None
        return code

    def kill(self):
        """SIGKILL and reap the helper, whatever its state (SIGKILL ends a
        stopped process too): the watchdog's way out of a hung barrier."""
        self.started = None
        self._proc.kill()  # nothing once it has been reaped
        self._proc.wait()
        for pipe in (self._proc.stdin, self._proc.stdout):
            try:
                pipe.close()
            except OSError:
                pass

    def close(self):
        try:
            self._proc.stdin.close()
        except OSError:
            pass
        try:
            # a helper stopped (SIGSTOP) while idle would read the closed pipe
            # only when continued: the stop must not wait out the timeout
            self._proc.send_signal(signal.SIGCONT)
        except OSError:
            pass
        try:
            self._proc.wait(5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._proc.stdout.close()
