"""-Y: memcached's ASCII authentication. Until a connection authenticates,
every line goes to `unauthenticated`, which reads only
`set <any> <any> <any> <size>` with `<user> <password>` as its data
(memcached's try_read_command_asciiauth); the -Y file's reading and the
constant-time check live here too."""

import hmac

from .base import strtoul32

BAD_AUTH_FORMAT = b"CLIENT_ERROR bad authentication token format\r\n"
# memcached would wait for a longer token in a buffer it cannot grow
MAX_TOKEN = 2048


class AuthFileError(Exception):
    """The -Y file cannot be read, or a line of it is not `user:password`."""


def load_auth_file(path):
    """The (user, password) pairs of a file of `user:password` lines, as
    memcached's authfile_load reads them: the user ends at the first ':', the
    password at the line's end (a '\\r' before it dropped). Blank lines are
    skipped; memcached's limit of 8 entries is not imitated."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise AuthFileError(f"cannot read the auth file {path}: {e.strerror}") from e
    entries = []
    for number, line in enumerate(data.split(b"\n"), 1):
        line = line.rstrip(b"\r")
        if not line:
            continue
        user, colon, password = line.partition(b":")
        if not colon or not user:
            raise AuthFileError(f"{path} line {number}: not user:password")
        entries.append((user, password))
    if not entries:
        raise AuthFileError(f"{path} holds no user:password line")
    return entries


def check(entries, user, password):
    """Whether the pair is among the -Y file's entries (compared in constant time)."""
    found = False
    for u, p in entries or ():
        found |= hmac.compare_digest(u, user) & hmac.compare_digest(p, password)
    return found


class AuthRequest:
    """The authentication `set` waiting for its "<user> <password>" block."""

    __slots__ = ("need",)

    def __init__(self, size):
        self.need = size + 2

    def complete(self, session, block):
        out = session.out
        if not block.endswith(b"\r\n"):
            return out.append(b"CLIENT_ERROR bad command line termination\r\n")
        tokens = [w for w in block[:-2].split(b"\0")[0].split(b" ") if w]
        if len(tokens) < 2:
            return out.append(BAD_AUTH_FORMAT)
        session.counters.auth_cmds += 1
        if check(session.server.auth, tokens[0], tokens[1]):
            session.authenticated = True
            # the reply is STORED even under noreply, as memcached's
            return out.append(b"STORED\r\n")
        session.counters.auth_errors += 1
        out.append(b"CLIENT_ERROR authentication failure\r\n")


def unauthenticated(session, words):
    """Any line before the connection authenticated; the connection stays open."""
    size = strtoul32(words[4]) if len(words) >= 5 and words[0] == b"set" else None
    if size is None:
        return session.out.append(b"CLIENT_ERROR unauthenticated\r\n")
    if size > MAX_TOKEN:
        session.swallow(size + 2)
        return session.out.append(BAD_AUTH_FORMAT)
    session.expect(AuthRequest(size))
