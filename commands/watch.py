"""`watch`: memcached 1.6.18's log-stream command, its refusals so far.

Only the replies that need no log streams are here: `-W` refuses the
command (`CLIENT_ERROR watch commands not allowed`), a stream name
memcached does not know is `ERROR`. The watchers themselves (the streams,
their bounded buffers, the reactor's flush) are not written yet, so a
valid `watch` still gets `ERROR`, as it did before this module: never an
`OK` that would promise lines that never come.
"""

from .base import ERROR

# memcached 1.6.18's process_watch_command accepts these names
STREAMS = frozenset(
    b"rawcmds evictions fetchers mutations sysevents connevents proxyreqs proxyevents proxyuser".split()
)


def watch(session, words):
    if not session.server.settings.watch_enabled:
        return session.out.append(b"CLIENT_ERROR watch commands not allowed\r\n")
    # (no streams attachable yet: every other case is ERROR, see the docstring)
    session.out.append(ERROR)


COMMANDS = {b"watch": (watch, 1, None)}
