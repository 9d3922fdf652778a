"""A one-line progress display for dump and load: items, bytes, rate, and a
bar when the total is known. It draws only on a terminal, so a dump piped
into a file or a script's log stays quiet."""

import sys
import time

_REDRAW_EVERY = 0.1  # seconds: fast enough to look alive, cheap for 100k items
_BAR_WIDTH = 24


def _size(n):
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


class Progress:
    """Progress of one transfer, drawn on `stream` (stderr) if it is a tty.

    `enabled` forces it on or off; `update()` is cheap to call per item.
    """

    def __init__(self, verb, total=None, stream=None, enabled=None, clock=time.monotonic):
        self.verb = verb
        self.total = total
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.clock = clock
        self.started = clock()
        self._drawn = 0.0
        self.items = 0
        self.bytes = 0

    def update(self, items, nbytes):
        self.items = items
        self.bytes = nbytes
        if not self.enabled:
            return
        now = self.clock()
        if now - self._drawn >= _REDRAW_EVERY:
            self._drawn = now
            self.stream.write("\r" + self.line(now) + "\x1b[K")
            self.stream.flush()

    def line(self, now=None):
        elapsed = max((now if now is not None else self.clock()) - self.started, 1e-9)
        rate = self.items / elapsed
        parts = [f"{self.verb}"]
        if self.total and self.items > self.total:
            self.total = None  # an estimate proved low (a server still counting its items)
        if self.total:
            done = min(self.items / self.total, 1.0)
            filled = int(done * _BAR_WIDTH)
            parts.append("[" + "#" * filled + "-" * (_BAR_WIDTH - filled) + "]")
            parts.append(f"{self.items:,}/{self.total:,} items")
            parts.append(f"{done:.0%}")
        else:
            parts.append(f"{self.items:,} items")
        parts.append(_size(self.bytes))
        parts.append(f"{rate:,.0f} items/s")
        return "  ".join(parts)

    def finish(self, summary):
        """Replace the bar with a closing line (on a terminal only)."""
        if not self.enabled:
            return
        elapsed = self.clock() - self.started
        rate = self.items / elapsed if elapsed > 0 else 0.0
        self.stream.write(
            f"\r{summary}: {self.items:,} items, {_size(self.bytes)} in {elapsed:.1f} s "
            f"({rate:,.0f} items/s)\x1b[K\n"
        )
        self.stream.flush()
