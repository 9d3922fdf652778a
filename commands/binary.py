"""memcached's binary protocol (doc/protocol-binary.txt, protocol_binary.h,
proto_bin.c of 1.6.18): the packet header, the status codes and their
messages, and the table of opcodes, each a function `fn(session, request)`
run once the request's header, extras and key have arrived (the framing is
handlers.Session's BIN_HEADER state). A write's value arrives through the
session's DATA state, as a text command's does, and goes through the same
`StorageRequest` (one storage path with text and meta); incr/decr, delete,
touch, flush and the counters are the text commands' store calls.

Quiet opcodes (getq, setq, ...) run as their loud twin with `quiet` set:
their success is not answered (a getq/getkq hit is), their errors are, as in
memcached's write_bin_response / write_bin_error.
"""

import struct

from store import Mode, NonNumeric, Result

from .auth import check
from .base import KEY_MAX_LENGTH, VERSION, compared_cas, shown_cas
from .stats import general_stats, items_rows, settings_stats, slabs_rows
from .storage import StorageRequest, drop_old_value

REQUEST_MAGIC = 0x80
RESPONSE_MAGIC = 0x81
HEADER = struct.Struct(">BBHBBHIIQ")  # magic opcode keylen extlen datatype vbucket/status bodylen opaque cas
HEADER_SIZE = HEADER.size  # 24

# -- protocol_binary.h's status codes, with memcached's messages ----------
SUCCESS = 0x00
KEY_ENOENT = 0x01
KEY_EEXISTS = 0x02
E2BIG = 0x03
EINVAL = 0x04
NOT_STORED = 0x05
DELTA_BADVAL = 0x06
AUTH_ERROR = 0x20
AUTH_CONTINUE = 0x21
UNKNOWN_COMMAND = 0x81
ENOMEM = 0x82

MESSAGES = {
    ENOMEM: b"Out of memory",
    UNKNOWN_COMMAND: b"Unknown command",
    KEY_ENOENT: b"Not found",
    EINVAL: b"Invalid arguments",
    KEY_EEXISTS: b"Data exists for key.",
    E2BIG: b"Too large.",
    DELTA_BADVAL: b"Non-numeric server-side value for incr or decr",
    NOT_STORED: b"Not stored.",
    AUTH_ERROR: b"Auth failure.",
}

# -- the opcodes --------------------------------------------------------------
GET, SET, ADD, REPLACE, DELETE, INCREMENT, DECREMENT, QUIT, FLUSH = range(0x00, 0x09)
GETQ, NOOP, VERSION_OP, GETK, GETKQ, APPEND, PREPEND, STAT = range(0x09, 0x11)
SETQ, ADDQ, REPLACEQ, DELETEQ, INCREMENTQ, DECREMENTQ, QUITQ, FLUSHQ, APPENDQ, PREPENDQ = range(0x11, 0x1B)
VERBOSITY, TOUCH, GAT, GATQ = range(0x1B, 0x1F)
SASL_LIST_MECHS, SASL_AUTH, SASL_STEP = 0x20, 0x21, 0x22
GATK, GATKQ = 0x23, 0x24

# a quiet opcode -> its loud twin (memcached's dispatch_bin_command)
QUIET = {
    SETQ: SET, ADDQ: ADD, REPLACEQ: REPLACE, DELETEQ: DELETE, INCREMENTQ: INCREMENT,
    DECREMENTQ: DECREMENT, QUITQ: QUIT, FLUSHQ: FLUSH, APPENDQ: APPEND, PREPENDQ: PREPEND,
    GETQ: GET, GETKQ: GETK, GATQ: GAT, GATKQ: GATK,
}
# what an unauthenticated connection may send under -S
BEFORE_AUTH = frozenset((SASL_LIST_MECHS, SASL_AUTH, SASL_STEP, VERSION_OP))
MECHANISMS = b"PLAIN"
MAX_SASL_MECH_LEN = 32  # memcached's
NO_CREATE = 0xFFFFFFFF  # an incr/decr expiration: do not create a missing item


class Request:
    """One request's header, extras and key; `command` is the opcode with
    the quiet variants folded into their twins, `quiet` says which."""

    __slots__ = ("opcode", "command", "quiet", "keylen", "extlen", "bodylen", "opaque", "cas", "extras", "key")

    def __init__(self, header):
        _, self.opcode, self.keylen, self.extlen, _, _, self.bodylen, self.opaque, self.cas = header
        self.command = QUIET.get(self.opcode, self.opcode)
        self.quiet = self.command != self.opcode
        self.extras = self.key = b""

    @property
    def vlen(self):
        """The value's length: what the body holds after extras and key."""
        return self.bodylen - self.keylen - self.extlen


def parse_header(buf, pos):
    """The Request whose 24-byte header is at buf[pos:] (its magic unchecked)."""
    return Request(HEADER.unpack_from(buf, pos))


def packet(request, status=SUCCESS, extras=b"", key=b"", value=b"", cas=0):
    """A response packet to `request` (its opcode, as sent, and opaque echoed)."""
    head = HEADER.pack(
        RESPONSE_MAGIC, request.opcode, len(key), len(extras), 0, status,
        len(extras) + len(key) + len(value), request.opaque, cas,
    )
    return head + extras + key + value


def error(session, request, status, message=None, swallow=0, close=False):
    """memcached's write_bin_error: an error is answered even to a quiet
    command; the next `swallow` bytes are dropped, or the connection closes."""
    session.out.append(packet(request, status, value=MESSAGES[status] if message is None else message))
    if close:
        session.closing = True
    elif swallow > 0:
        session.swallow(swallow)


def server_error(request, message):
    """The packet a StoreError becomes (memcached's out_of_memory: ENOMEM
    with the text protocol's message, its SERVER_ERROR prefix stripped)."""
    return packet(request, ENOMEM, value=message.encode("utf-8", "replace"))


def success(session, request, extras=b"", key=b"", value=b"", cas=0):
    """memcached's write_bin_response: nothing for a quiet command."""
    if not request.quiet or request.command in (GET, GETK):
        session.out.append(packet(request, SUCCESS, extras, key, value, cas))


# -- the framing's entry point ------------------------------------------------


def dispatch(session, request):
    """Run a request whose header, extras and key have arrived; its checks in
    memcached's order (dispatch_bin_command)."""
    extlen, keylen, bodylen = request.extlen, request.keylen, request.bodylen
    if keylen + extlen > bodylen:
        return error(session, request, UNKNOWN_COMMAND, close=True)
    if not session.authenticated and request.command not in BEFORE_AUTH:
        return error(session, request, AUTH_ERROR, close=True)
    if keylen > KEY_MAX_LENGTH:
        return error(session, request, EINVAL, close=True)
    entry = OPCODES.get(request.command)
    if entry is None:
        return error(session, request, UNKNOWN_COMMAND, swallow=bodylen)
    valid, handler = entry
    if not valid(extlen, keylen, bodylen):
        return error(session, request, EINVAL, close=True)  # handle_binary_protocol_error
    handler(session, request)


# -- the commands ---------------------------------------------------------------


def get_or_touch(session, request):
    """get getk getq getkq, touch, gat gatk gatq gatkq."""
    command, key = request.command, request.key
    touching = command in (TOUCH, GAT, GATK)
    store, counters, server = session.store, session.counters, session.server
    if touching:
        (exptime,) = struct.unpack(">I", request.extras)
        item = store.touch(key, exptime)
        counters.cmd_touch += 1
        counters.bump("touch_hits" if item is not None else "touch_misses")
    else:
        item = store.get(key)
        counters.cmd_get += 1
        counters.bump("get_hits" if item is not None else "get_misses")
    if server.settings.detail_enabled:
        server.prefixes.record(key, server.settings.prefix_delimiter, 0, item is not None)
    with_key = command in (GETK, GATK)
    if item is None:
        if request.quiet:
            return
        if with_key:
            return session.out.append(packet(request, KEY_ENOENT, key=key))
        return error(session, request, KEY_ENOENT)
    value = b"" if command == TOUCH else item.value
    session.out.append(
        packet(
            request, extras=struct.pack(">I", item.flags), key=key if with_key else b"", value=value,
            cas=shown_cas(session, item.cas),
        )
    )


class Reply:
    """The storage path's `meta` hook for a binary write: no store options,
    and the result made a status (complete_update_bin)."""

    __slots__ = ("request", "store_options")

    def __init__(self, request):
        self.request = request
        self.store_options = {}

    def set_reply(self, session, result):
        request = self.request
        if result is Result.STORED:
            # the stored item's cas, even if its exptime is already past
            # (memcached answers one); the cache holds what was just written
            store = session.store
            item = store.cache.items.get(request.key) or store.peek(request.key)
            return success(session, request, cas=0 if item is None else shown_cas(session, item.cas))
        if result is Result.EXISTS:
            status = KEY_EEXISTS
        elif result is Result.NOT_FOUND:
            status = KEY_ENOENT
        elif request.command == ADD:
            status = KEY_EEXISTS
        elif request.command == REPLACE:
            status = KEY_ENOENT
        else:
            status = NOT_STORED
        error(session, request, status)


class BinaryValue(StorageRequest):
    """A write waiting for its value: `vlen` bytes, no "\\r\\n" after them."""

    __slots__ = ()

    def __init__(self, request, mode, flags, exptime):
        super().__init__(request.vlen, mode, request.key, flags, exptime, request.cas, False, Reply(request))
        self.need = request.vlen

    def complete(self, session, block):
        super().complete(session, block + b"\r\n")


_MODES = {SET: Mode.SET, ADD: Mode.ADD, REPLACE: Mode.REPLACE, APPEND: Mode.APPEND, PREPEND: Mode.PREPEND}


def update(session, request):
    """set add replace append prepend (a cas makes set/add/replace a cas)."""
    command, key, vlen = request.command, request.key, request.vlen
    if command in (APPEND, PREPEND):
        flags = exptime = 0
    else:
        flags, exptime = struct.unpack(">II", request.extras)
    mode = _MODES[command]
    if request.cas and mode in (Mode.SET, Mode.ADD, Mode.REPLACE):
        mode = Mode.CAS
    settings = session.server.settings
    if settings.detail_enabled:
        session.server.prefixes.record(key, settings.prefix_delimiter, 2)
    if not session.store.item_fits(len(key), vlen, flags):
        error(session, request, E2BIG, swallow=vlen)
        if command == SET:
            drop_old_value(session, key)  # no stale value after a refused set
        return
    session.expect(BinaryValue(request, mode, flags, exptime))


def delete(session, request):
    key = request.key
    settings = session.server.settings
    if settings.detail_enabled:
        session.server.prefixes.record(key, settings.prefix_delimiter, 3)
    done = session.store.delete(key, compared_cas(session, request.cas or None))
    if done is Result.EXISTS:
        return error(session, request, KEY_EEXISTS)
    if not done:
        session.counters.delete_misses += 1
        return error(session, request, KEY_ENOENT)
    session.counters.delete_hits += 1
    success(session, request)


def arithmetic(session, request):
    """increment decrement: delta, initial value, expiration (0xffffffff: do
    not create a missing item)."""
    delta, initial, exptime = struct.unpack(">QQI", request.extras)
    incr = request.command == INCREMENT
    name = "incr" if incr else "decr"
    vivify = None if exptime == NO_CREATE else (initial, exptime)
    try:
        cas = compared_cas(session, request.cas or None)
        done = session.store.arithmetic(request.key, delta, incr, cas, None, vivify)
    except NonNumeric:
        return error(session, request, DELTA_BADVAL)
    if done.result is Result.NOT_FOUND:
        session.counters.bump(name + "_misses")
        return error(session, request, KEY_ENOENT)
    if done.result is Result.EXISTS:
        return error(session, request, KEY_EEXISTS)
    if not done.created:
        session.counters.bump(name + "_hits")  # (memcached counts no miss for a created item)
    cas = 0 if done.item is None else shown_cas(session, done.item.cas)
    success(session, request, value=struct.pack(">Q", done.value), cas=cas)


def quit(session, request):
    success(session, request)
    session.closing = True


def flush(session, request):
    if not session.server.settings.flush_enabled:
        return error(session, request, AUTH_ERROR)
    delay = struct.unpack(">I", request.extras)[0] if request.extras else 0
    session.counters.cmd_flush += 1
    session.store.flush_all(delay)
    success(session, request)


def noop(session, request):
    success(session, request)


def version(session, request):
    success(session, request, value=VERSION.encode())


def stat(session, request):
    """stat with a group key: "" settings items slabs sizes detail reset
    (memcached compares them as prefixes); others are Not found."""
    group = request.key
    server = session.server
    if not group:
        rows = general_stats(server)
    elif group.startswith(b"reset"):
        session.counters.reset()
        session.store.reset_stats()
        server.prefixes.clear()
        rows = []
    elif group.startswith(b"settings"):
        rows = settings_stats(server)
    elif group.startswith(b"detail"):
        what = group[6:]
        if what.startswith(b" dump"):
            rows = [("detailed", server.prefixes.dump().decode("latin-1"))]
        elif what.startswith(b" on") or what.startswith(b" off"):
            server.settings.detail_enabled = what.startswith(b" on")
            rows = []
        else:
            return error(session, request, KEY_ENOENT)
    elif group == b"items":
        rows = items_rows(session)
    elif group == b"slabs":
        rows = slabs_rows(session)
    elif group == b"sizes":
        rows = [("sizes_status", "disabled")]
    else:
        return error(session, request, KEY_ENOENT)
    parts = [packet(request, key=name.encode(), value=str(value).encode()) for name, value in rows]
    parts.append(packet(request))
    session.out.append(b"".join(parts))


def sasl_list_mechs(session, request):
    if session.server.sasl is None:
        return error(session, request, UNKNOWN_COMMAND, swallow=request.bodylen - request.keylen)
    success(session, request, value=MECHANISMS)


class SaslData:
    """An auth/step's data (the value) to be read before it is checked."""

    __slots__ = ("need", "request")

    def __init__(self, request):
        self.need = request.vlen
        self.request = request

    def complete(self, session, block):
        request = self.request
        session.authenticated = False  # memcached's init_sasl_conn: a new try starts afresh
        ok = False
        if request.command == SASL_AUTH and request.key == MECHANISMS:
            # PLAIN: authzid NUL user NUL password
            fields = block.split(b"\0")
            ok = len(fields) == 3 and check(session.server.sasl, fields[1], fields[2])
        # (PLAIN has no second step: a step is a failure, as one never started)
        counters = session.counters
        counters.auth_cmds += 1
        if ok:
            session.authenticated = True
            return success(session, request, value=b"Authenticated")
        counters.auth_errors += 1
        error(session, request, AUTH_ERROR)


def sasl_auth(session, request):
    """sasl auth and step: the mechanism is the key, its data the value."""
    if session.server.sasl is None:
        return error(session, request, UNKNOWN_COMMAND, swallow=request.bodylen - request.keylen)
    vlen = request.vlen
    if request.keylen > MAX_SASL_MECH_LEN:
        return error(session, request, EINVAL, swallow=vlen)
    if not session.store.item_fits(request.keylen, vlen, 0):
        # memcached reads the data into an item: one it cannot allocate is
        # refused and the data dropped, never buffered
        return error(session, request, ENOMEM, swallow=vlen)
    session.expect(SaslData(request))


def _none(extlen, keylen, bodylen):
    return extlen == 0 and keylen == 0 and bodylen == 0


# command -> (its packet's shape check, function), from dispatch_bin_command
OPCODES = {
    VERSION_OP: (_none, version),
    FLUSH: (lambda e, k, b: k == 0 and b == e and e in (0, 4), flush),
    NOOP: (_none, noop),
    SET: (lambda e, k, b: e == 8 and k != 0 and b >= k + 8, update),
    ADD: (lambda e, k, b: e == 8 and k != 0 and b >= k + 8, update),
    REPLACE: (lambda e, k, b: e == 8 and k != 0 and b >= k + 8, update),
    GET: (lambda e, k, b: e == 0 and b == k and k > 0, get_or_touch),
    GETK: (lambda e, k, b: e == 0 and b == k and k > 0, get_or_touch),
    DELETE: (lambda e, k, b: k > 0 and e == 0 and b == k, delete),
    INCREMENT: (lambda e, k, b: k > 0 and e == 20 and b == k + e, arithmetic),
    DECREMENT: (lambda e, k, b: k > 0 and e == 20 and b == k + e, arithmetic),
    APPEND: (lambda e, k, b: k > 0 and e == 0, update),
    PREPEND: (lambda e, k, b: k > 0 and e == 0, update),
    STAT: (lambda e, k, b: e == 0, stat),
    QUIT: (_none, quit),
    SASL_LIST_MECHS: (_none, sasl_list_mechs),
    SASL_AUTH: (lambda e, k, b: e == 0 and k != 0, sasl_auth),
    SASL_STEP: (lambda e, k, b: e == 0 and k != 0, sasl_auth),
    TOUCH: (lambda e, k, b: e == 4 and k != 0, get_or_touch),
    GAT: (lambda e, k, b: e == 4 and k != 0, get_or_touch),
    GATK: (lambda e, k, b: e == 4 and k != 0, get_or_touch),
}
