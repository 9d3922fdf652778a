"""Log lines for faults that repeat with every command (a full disk, a file
system remounted read-only, a failing disk): the first of a kind is logged at
once, the next ones at most once per `interval` seconds with the number held
back, so a broken disk under load writes a few lines a minute, not one per
command. The counters in `stats` count every one."""

import time

# seconds between two lines of one kind of fault
INTERVAL = 60.0


class Throttle:
    """Rate-limited logging, one allowance per kind (a name and an errno,
    say): `log(kind, logger, level, msg, *args)` logs or counts it held back."""

    def __init__(self, interval=INTERVAL, clock=time.monotonic):
        self.interval = interval
        self.clock = clock
        self._kinds = {}  # kind -> [clock() of its last line, lines held back since]

    def log(self, kind, logger, level, msg, *args):
        """Log msg now if its kind is due; True if it was logged."""
        now = self.clock()
        seen = self._kinds.get(kind)
        if seen is not None and now - seen[0] < self.interval:
            seen[1] += 1
            return False
        held = 0 if seen is None else seen[1]
        if held:
            msg += " (and %d more like it in the last %.0f s)"
            args += (held, now - seen[0])
        self._kinds[kind] = [now, 0]
        logger.log(level, msg, *args)
        return True
