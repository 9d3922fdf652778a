"""The running server's clock: unix time that a step of the wall clock does
not move.

Expiry, delayed flushes, `stored` and last-access times and `stats time`
are all read from one `Clock`, made when the store opens. It reads the wall
clock once, then counts forward on the monotonic clock:

    now = wall time at start + (monotonic now - monotonic at start)

so an NTP step or an operator's `date -s` while the server runs neither
expires items early nor keeps them alive longer, and a `flush_all <delay>`
fires after its seconds, not at a step. This is memcached's `current_time`
(CLOCK_MONOTONIC since start) plus `process_started` (the wall time at start)
by another name.

Where memcached-lite differs is persistence: records, the flush epoch and a
pending delayed flush are saved as absolute unix times of this clock, since
they must mean something to the next process. A restart makes a new Clock,
which reads the wall clock again: after a real change of the wall clock the
next process sees the new time (items due by it are expired; memcached never
meets this case, it keeps nothing across a restart).
"""

import time


class Clock:
    """A time.time for the running server that follows the monotonic clock
    from the wall time at its creation; `wall` and `monotonic` are
    injectable, for tests."""

    __slots__ = ("_monotonic", "_offset", "started", "now")

    def __init__(self, wall=time.time, monotonic=time.monotonic):
        self._monotonic = monotonic
        monotonic_start = monotonic()
        self.started = wall()  # the wall time at start (memcached's process_started)
        # started + (monotonic() - monotonic_start) in one addition: it is
        # read several times a command
        offset = self._offset = self.started - monotonic_start

        def now():
            return offset + monotonic()

        # the same time as calling the Clock, as a plain function: the store
        # keeps this one, a third cheaper a call than an instance's __call__
        self.now = now

    def __call__(self):
        return self._offset + self._monotonic()
