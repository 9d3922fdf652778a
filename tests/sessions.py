"""What the sans-I/O session tests share: a small store (memcached's smallest
-I, so the too-large tests stay small) and helpers that drive a Session."""

import re

import pytest

from replies import END
from store import Store

ITEM_SIZE_MAX = 1024


@pytest.fixture
def store(tmp_path, clock):
    s = Store(str(tmp_path / "data"), item_size_max=ITEM_SIZE_MAX, clock=clock)
    yield s
    s.close()


def set_cmd(key, data, flags=0, exptime=0, verb=b"set"):
    return b"%s %s %d %d %d\r\n%s\r\n" % (verb, key, flags, exptime, len(data), data)


def cas_of(session, key):
    reply = session.feed(b"gets " + key + b"\r\n")
    m = re.match(rb"VALUE \S+ \d+ \d+ (\d+)\r\n", reply)
    assert m, reply
    return int(m.group(1))


def stats(session, sub=b""):
    reply = session.feed(b"stats" + (b" " + sub if sub else b"") + b"\r\n")
    assert reply.endswith(END), reply
    rows = {}
    for line in reply[: -len(END)].split(b"\r\n")[:-1]:
        stat, name, val = line.split(b" ", 2)
        assert stat == b"STAT"
        rows[name.decode()] = val.decode()
    return rows
