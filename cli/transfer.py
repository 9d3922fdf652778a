"""Dump a server's items to a file and load them back, over the wire only.

Dump: one connection streams `lru_crawler metadump hash` (keys and expiry
times, ended by END), read by a thread; a second connection fetches the
values with multi-key `get`s, several requests in flight. Each item is
written as it arrives. Memory holds the keys listed but not yet fetched:
with memcached-lite, whose listing is the slower side, a few batches; with
memcached, which lists faster than values can be fetched, up to every key. Remaining
TTLs are computed against the server's own clock (`stats` time), so a client
with a skewed clock dumps the right TTLs.

Load: replays the file as `set`s, pipelined: with replies read a batch at a
time (every failure named), or with `noreply` and a `version` barrier every
few thousand items (faster; failures are only counted).
"""

import collections
import queue
import socket
import threading
import time
import urllib.parse

from .client import ERRORS, Client, ClientError, ProtocolError, parse_values
from .dump import DumpFormatError, Reader, Writer
from .progress import Progress

# a get asks for at most this many keys, or this many bytes of items (from
# metadump's size=), so a batch of large values stays a few MB
GET_BATCH_KEYS = 100
GET_BATCH_BYTES = 1 << 20
# get requests in flight: their lines (25 KB at most each) stay far below the
# socket buffers, so sending never waits on a server that waits on us
GET_WINDOW = 4
SET_BATCH_ITEMS = 100
SET_BATCH_BYTES = 1 << 20
NOREPLY_BARRIER_ITEMS = 5000
REALTIME_MAXDELTA = 60 * 60 * 24 * 30  # memcached: a larger exptime is a unix time
BUSY_RETRIES = 50  # memcached answers BUSY while its crawler runs another job
BUSY_PAUSE = 0.1

Summary = collections.namedtuple("Summary", "items bytes seconds skipped failures failed")


class TransferError(ClientError):
    """A dump or load could not go on; the message says why."""


def _metadump_entries(meta):
    """(key, exp, size) per metadump line; retries memcached's BUSY.

    `metadump hash` walks memcached's hash table; `all` walks its LRUs, and
    misses items that our own gets move between LRUs meanwhile (measured: a
    dozen of 100,000). A memcached too old for `hash` says BADCLASS: then
    `all` it is."""
    which = b"hash"
    attempt = 0
    while True:
        lines = meta.metadump(which)
        try:
            first = next(lines, None)
        except ProtocolError as e:
            if str(e).startswith("BADCLASS") and which == b"hash":
                which = b"all"
                continue
            if str(e).startswith("BUSY") and attempt < BUSY_RETRIES:
                attempt += 1
                time.sleep(BUSY_PAUSE)  # wait for memcached's crawler to be free
                continue
            raise TransferError(f"the server cannot list its keys: {e}") from None
        break
    if first is None:
        return
    for line in _chain(first, lines):
        fields = dict(word.split(b"=", 1) for word in line.split(b" ") if b"=" in word)
        try:
            key = urllib.parse.unquote_to_bytes(fields[b"key"])
            exp = int(fields[b"exp"])
            size = int(fields.get(b"size", b"0"))
        except (KeyError, ValueError):
            raise TransferError(f"unreadable metadump line: {line[:100]!r}") from None
        yield key, exp, size


def _chain(first, rest):
    yield first
    yield from rest


def _batches(entries):
    batch, size = {}, 0
    for key, exp, item_size in entries:
        batch[key] = exp
        size += item_size
        if len(batch) >= GET_BATCH_KEYS or size >= GET_BATCH_BYTES:
            yield batch
            batch, size = {}, 0
    if batch:
        yield batch


def dump(host, port, out, timeout=10.0, connect_timeout=3.0, progress=None):
    """Write every live item of host:port to the binary file object out."""
    started = time.monotonic()
    data = Client(host, port, timeout, connect_timeout)
    meta = None
    producer = None
    try:
        stats = data.stats()
        now = int(stats.get("time", b"%d" % time.time()))
        total = int(stats.get("curr_items", b"0")) or None
        bar = Progress("dump", total, enabled=progress)
        writer = Writer(out, now)
        skipped = 0
        meta = Client(host, port, timeout, connect_timeout)
        inflight = collections.deque()

        def receive():
            nonlocal skipped
            batch = inflight.popleft()
            reply = data.read_reply(b"get")
            if reply.startswith(ERRORS):
                raise TransferError(f"get failed: {reply.decode('utf-8', 'replace').strip()}")
            hits = 0
            for value in parse_values(reply):
                exp = batch.get(value.key)
                if exp is None:
                    continue
                hits += 1
                ttl = 0 if exp == -1 else exp - now
                if exp != -1 and ttl <= 0:
                    skipped += 1  # dies as the dump runs: nothing to restore
                    continue
                writer.item(value.key, value.flags, ttl, value.value)
            skipped += len(batch) - hits  # deleted or expired since metadump listed it
            bar.update(writer.items, writer.bytes)

        # A thread reads the metadump while this one fetches values: memcached's
        # hash walk holds item locks until its output is read, so a get
        # waiting on one connection while the other is not drained would
        # deadlock; our server, for its part, pauses a dump nobody reads.
        batches = queue.Queue()

        def produce():
            try:
                for batch in _batches(_metadump_entries(meta)):
                    batches.put(batch)
                batches.put(None)
            except Exception as e:  # whatever stops this thread must reach the main one
                batches.put(e if isinstance(e, ClientError) else TransferError(f"listing the keys failed: {e!r}"))

        producer = threading.Thread(target=produce, name="metadump", daemon=True)
        producer.start()
        while True:
            batch = batches.get()
            if batch is None:
                break
            if isinstance(batch, Exception):
                raise batch
            data.send(b"get " + b" ".join(batch) + b"\r\n")
            inflight.append(batch)
            if len(inflight) >= GET_WINDOW:
                receive()
        while inflight:
            receive()
        writer.close()
        bar.finish("dumped")
        return Summary(writer.items, writer.bytes, time.monotonic() - started, skipped, 0, [])
    finally:
        data.close()
        if meta is not None:
            try:
                # wakes the producer thread if an error left it blocked in recv
                # (close alone does not interrupt a recv in another thread)
                meta.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            meta.close()
            if producer is not None:
                producer.join(timeout)


def _exptime(ttl, server_now):
    """The exptime of a set for `ttl` seconds left: relative up to 30 days,
    past that an absolute time on the server's clock (`server_now()`)."""
    if ttl == 0:
        return 0
    if ttl <= REALTIME_MAXDELTA:
        return ttl
    return server_now() + ttl


def _server_clock(host, port, timeout, connect_timeout):
    """A function giving the server's unix time, asked once, when a TTL
    first needs it, on a connection of its own: a proxy such as twemproxy
    refuses `stats` by closing the connection, and then the local clock
    stands in for the server's."""
    known = []

    def now():
        if not known:
            try:
                probe = Client(host, port, timeout, connect_timeout)
                try:
                    known.append(int(probe.stats()["time"]))
                finally:
                    probe.close()
            except (ClientError, KeyError, ValueError):
                known.append(int(time.time()))
        return known[0]

    return now


def load(host, port, inp, noreply=False, timeout=10.0, connect_timeout=3.0, progress=None):
    """Replay a dump read from the binary file object inp as sets.

    Raises DumpFormatError at the first damage, after storing what came
    before it (its `loaded` says how many items); the Summary counts the sets
    the server refused.
    """
    started = time.monotonic()
    client = Client(host, port, timeout, connect_timeout)
    try:
        reader = Reader(inp)
        server_now = _server_clock(host, port, timeout, connect_timeout)
        bar = Progress("load", None, enabled=progress)
        sent = 0
        nbytes = 0
        failures = 0
        failed = []  # (key, reply) of the first refusals, to show
        pending = []  # keys whose replies are owed (with replies)
        buf = []
        buf_size = 0
        since_barrier = 0
        suffix = b" noreply\r\n" if noreply else b"\r\n"

        def flush():
            nonlocal buf, buf_size, failures
            if buf:
                client.send(b"".join(buf))
                buf, buf_size = [], 0
            for key in pending:
                reply = client.read_line()
                if reply != b"STORED\r\n":
                    failures += 1
                    if len(failed) < 10:
                        failed.append((key, reply.strip()))
            pending.clear()

        def barrier():
            nonlocal failures
            flush()
            client.send(b"version\r\n")
            while True:
                line = client.read_line()
                if line.startswith(b"VERSION "):
                    return
                failures += 1
                if len(failed) < 10:
                    failed.append((None, line.strip()))

        items = iter(reader)
        while True:
            try:
                key, flags, ttl, value = next(items)
            except StopIteration:
                break
            except DumpFormatError as e:
                # what came before the damage is sent and stored, then the
                # damage is reported with how much was loaded
                barrier() if noreply else flush()
                e.loaded = sent - failures
                raise
            buf.append(b"set %s %d %d %d%s" % (key, flags, _exptime(ttl, server_now), len(value), suffix))
            buf.append(value)
            buf.append(b"\r\n")
            buf_size += len(value) + len(key) + 40
            sent += 1
            nbytes = reader.offset
            if noreply:
                since_barrier += 1
                if since_barrier >= NOREPLY_BARRIER_ITEMS:
                    barrier()
                    since_barrier = 0
                    bar.update(sent, nbytes)
                elif buf_size >= SET_BATCH_BYTES:
                    flush()
            else:
                pending.append(key)
                if len(pending) >= SET_BATCH_ITEMS or buf_size >= SET_BATCH_BYTES:
                    flush()
                    bar.update(sent, nbytes)
        if noreply:
            barrier()
        else:
            flush()
        nbytes = reader.offset
        bar.update(sent, nbytes)
        bar.finish("loaded")
        return Summary(sent - failures, nbytes, time.monotonic() - started, 0, failures, failed)
    finally:
        client.close()
