"""memcached's commands, by family: each module holds plain functions
`fn(session, words)` and a `COMMANDS` table of them; `COMMANDS` here is their
union, the one table the session dispatches through (name -> (function,
fewest words, most words or None), as memcached counts them).

| module | commands |
| --- | --- |
| storage | set add replace append prepend cas (and ms's data, one path) |
| retrieval | get gets gat gats |
| modify | delete incr decr touch flush_all |
| admin | version quit shutdown verbosity cache_memlimit |
| stats | stats and every group of it |
| dumps | lru_crawler metadump, stats cachedump |
| meta | mg ms md ma me mn |
| auth | -Y: what an unauthenticated connection may send |
| binary | the binary protocol: its own table, `OPCODES` (opcode -> shape check, `fn(session, request)`) |

A command touches only this part of the session (handlers.Session):

    session.out          the list the command appends its reply bytes to
    session.server       the shared state: settings, counters, prefixes, auth, sessions
    session.store        the items (store.Store)
    session.counters     the server's counters (memcached's stats)
    session.room         reply bytes the command may still make (a multi-get pauses at it)
    session.closing      set true to close the connection after this reply
    session.authenticated  set true by a successful -Y login
    session.expect(pending)   go to DATA: pending.need bytes, then pending.complete(session, block)
    session.swallow(n)        go to SWALLOW: the next n bytes are read and dropped
    session.resume_later(work, end_turn)  resumable work: work.step(session) runs
                              next (after the other clients if end_turn)

A `store.StoreError` a command raises is made into its `SERVER_ERROR` reply
by the session, in one place; a command never catches one to reply itself.
This package imports neither `handlers` nor `reactor`.
"""

from . import admin, auth, binary, dumps, meta, modify, retrieval, stats, storage, watch

COMMANDS = {}
for _family in (storage, retrieval, modify, admin, stats, dumps, meta, watch):
    COMMANDS.update(_family.COMMANDS)

__all__ = ["COMMANDS", "admin", "auth", "binary", "dumps", "meta", "modify", "retrieval", "stats", "storage", "watch"]
