"""The server commands: version, quit, shutdown, verbosity, cache_memlimit."""

import logging

from .base import BAD_FORMAT, ERROR, OK, VERSION, reply, strtoul32

log = logging.getLogger("memcached-lite.protocol")

MEMLIMIT_MIN_MB = 8


def version(session, words):
    session.out.append(b"VERSION " + VERSION.encode() + b"\r\n")


def quit(session, words):
    session.closing = True


def shutdown(session, words):
    """shutdown [graceful]: only with -A."""
    # memcached's replies: the refusal without -A, and with it no reply at
    # all (the connection closes while the server stops)
    server = session.server
    if not server.settings.shutdown_enabled or server.request_stop is None:
        return session.out.append(b"ERROR: shutdown not enabled\r\n")
    if len(words) == 1 or (len(words) == 2 and words[1] == b"graceful"):
        log.info("shutdown%s requested by a client", " graceful" if len(words) == 2 else "")
        session.closing = True
        server.request_stop(graceful=len(words) == 2)
        return
    session.out.append(b"CLIENT_ERROR invalid shutdown mode\r\n")


def verbosity(session, words):
    """verbosity <level> [noreply]"""
    noreply = words[-1] == b"noreply"
    level = strtoul32(words[1])
    if level is None:
        return reply(session, noreply, BAD_FORMAT)
    session.server.settings.verbosity = min(level, 2)
    # as memcached's -v: 1 logs connections, 2 every command
    logging.getLogger("memcached-lite").setLevel(logging.DEBUG if level else logging.INFO)
    reply(session, noreply, OK)


def cache_memlimit(session, words):
    """cache_memlimit <megabytes> [noreply]: the in-memory cache's -m."""
    noreply = words[-1] == b"noreply"
    megabytes = strtoul32(words[1])
    if megabytes is None:
        return reply(session, noreply, ERROR)
    if megabytes < MEMLIMIT_MIN_MB:
        return reply(session, noreply, b"MEMLIMIT_TOO_SMALL cannot set maxbytes to less than 8m\r\n")
    if megabytes > 1000000000:
        return reply(session, noreply, b"MEMLIMIT_ADJUST_FAILED input value is megabytes not bytes\r\n")
    session.store.cache.resize(megabytes << 20)
    reply(session, noreply, OK)


COMMANDS = {
    b"version": (version, 1, None),
    b"quit": (quit, 1, None),
    b"shutdown": (shutdown, 1, None),
    b"verbosity": (verbosity, 2, 3),
    b"cache_memlimit": (cache_memlimit, 2, 3),
}
