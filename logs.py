"""The server's log: one handler on the root logger, stderr or --log-file
(reopened on SIGHUP, for logrotate), text lines with a timestamp or, with
--log-format json, one JSON object a line. The `memcached-lite` loggers log
at DEBUG under -v; what each -v level adds is said in docs/ARCHITECTURE.md
("Logging").
"""

import datetime
import json
import logging
import sys

log = logging.getLogger("memcached-lite")


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time (UTC, ISO 8601), level, logger, message,
    and the connection's peer where the line is about one."""

    FIELDS = ("peer",)

    def format(self, record):
        entry = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for field in self.FIELDS:
            if hasattr(record, field):
                entry[field] = getattr(record, field)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


class ReopenableFileHandler(logging.FileHandler):
    """A log file that SIGHUP reopens, so logrotate can move it away."""

    def reopen(self):
        self.acquire()
        try:
            if self.stream is not None:
                self.stream.close()
            self.stream = open(self.baseFilename, self.mode, encoding=self.encoding)
        finally:
            self.release()


# --log-format: how a line looks
FORMATTERS = {
    "text": lambda: logging.Formatter("%(asctime)s %(levelname)s %(message)s"),
    "json": JsonFormatter,
}


def configure_logging(args):
    """Timestamped lines to stderr or --log-file; the handler, for SIGHUP."""
    if args.log_file:
        handler = ReopenableFileHandler(args.log_file, encoding="utf-8")
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(FORMATTERS[args.log_format]())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    log.setLevel(logging.DEBUG if args.verbose else logging.INFO)
    return handler


def reopen_log(handler):
    """SIGHUP's work, run by the loop: reopen --log-file (logged either way)."""
    if isinstance(handler, ReopenableFileHandler):
        handler.reopen()
        log.info("SIGHUP: log file %s reopened", handler.baseFilename)
    else:
        log.info("SIGHUP: no --log-file to reopen")
