"""everysec's barrier off the loop: a small helper process that runs syncfs(2)
on the data dir's file system when asked, so the single-threaded server goes
on serving while the disk catches up (a syncfs after a second of writes can
take a tenth of a second or more, and every client would wait for it).

syncfs flushes the whole file system whoever calls it, so a barrier made by
the helper covers every write the server finished before asking. The helper
reads one byte per request on its stdin and answers one line, the errno (0:
done); it exits when its stdin closes, so it never outlives the server, even
one killed with kill -9.

The helper is a fresh interpreter running _HELPER. Where the server may not
execute its own interpreter (-u nobody, with Python installed under /root's
pyenv: the exec is EACCES, and its standard library unreadable), the helper
is the server forked without an exec (`Forked`), running the same loop.
"""

import ctypes
import gc
import logging
import os
import select
import signal
import subprocess
import sys
import time

log = logging.getLogger("memcached-lite")

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


# looked up before any fork: the forked helper imports and resolves nothing
_LIBC = ctypes.CDLL(None, use_errno=True)
_SYNCFS = getattr(_LIBC, "syncfs", None)


def _forked_helper(path, requests, answers):
    """The helper's loop in a forked server (never returns): the server's
    signal handlers and descriptors (its sockets, store files, the loop's)
    let go first, no garbage collection (it would write to every page the
    server shares with it), then _HELPER's loop on the two pipes."""
    status = 1
    try:
        gc.disable()
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1):
            signal.signal(signum, signal.SIG_DFL)
        os.setsid()  # as start_new_session: a Ctrl-C is the server's
        os.dup2(requests, 0)
        os.dup2(answers, 1)
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))
        os.nice(19)
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        while os.read(0, 1):
            code = 0 if _SYNCFS(fd) == 0 else ctypes.get_errno()
            os.write(1, b"%d\n" % code)
        status = 0
    finally:
        os._exit(status)


class Forked:
    """The forked helper, as much of a subprocess.Popen as BackgroundSyncer
    uses: pid, stdin, stdout, returncode, kill, send_signal, wait."""

    def __init__(self, path):
        if _SYNCFS is None:
            raise OSError("no syncfs in the C library")
        requests_r, requests_w = os.pipe()
        answers_r, answers_w = os.pipe()
        try:
            pid = os.fork()
        except OSError:
            for fd in (requests_r, requests_w, answers_r, answers_w):
                os.close(fd)
            raise
        if pid == 0:
            _forked_helper(path, requests_r, answers_w)
        os.close(requests_r)
        os.close(answers_w)
        self.pid = pid
        self.stdin = open(requests_w, "wb")
        self.stdout = open(answers_r, "rb", buffering=0)
        self.returncode = None

    def poll(self):
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout=None):
        end = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if end is None:
                self.returncode = os.waitstatus_to_exitcode(os.waitpid(self.pid, 0)[1])
            elif time.monotonic() >= end:
                raise subprocess.TimeoutExpired(f"sync helper {self.pid}", timeout)
            else:
                time.sleep(0.01)  # a bounded wait for a child's exit
        return self.returncode

    def send_signal(self, signum):
        if self.returncode is None:
            os.kill(self.pid, signum)

    def kill(self):
        self.send_signal(signal.SIGKILL)


def spawn_helper(path):
    """The helper process: a fresh interpreter, or the server forked when
    its interpreter may not be executed (logged once per helper started)."""
    try:
        return subprocess.Popen(
            [sys.executable, "-c", _HELPER, path],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            close_fds=True,
            # not in the terminal's process group: a Ctrl-C is the server's
            # to handle (it stops cleanly and then closes the helper's stdin)
            start_new_session=True,
        )
    except (PermissionError, FileNotFoundError) as e:
        log.info("the sync helper is the server forked: it may not run %s (%s, uid %d)",
                 sys.executable, e.strerror, os.geteuid())
        return Forked(path)


class HelperGone(OSError):
    """The helper process died: the caller starts another one (or, after too
    many, goes back to barriers of its own)."""


class BackgroundSyncer:
    """One helper process; at most one barrier in flight."""

    def __init__(self, path):
        self._proc = spawn_helper(path)
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
