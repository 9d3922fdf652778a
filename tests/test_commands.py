"""The commands package's one table (`commands.COMMANDS`): what "adding a
command" in docs/ARCHITECTURE.md promises. A function and a table row are all
a command needs; the session answers ERROR, before the function runs, to a
line whose word count is outside the row's fewest and most.

Sans-I/O: a Session fed bytes; the table is patched for one test at a time
(a copy, so the real one is never changed).
"""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import commands  # noqa: E402
import handlers  # noqa: E402
from commands import admin, auth, dumps, meta, modify, retrieval, stats, storage, watch  # noqa: E402
from commands.base import BAD_FORMAT, KEY_MAX_LENGTH  # noqa: E402

from replies import ERROR  # noqa: E402
from sessions import set_cmd, store  # noqa: E402,F401

pytestmark = pytest.mark.usefixtures("no_fsync")

FAMILIES = (storage, retrieval, modify, admin, stats, dumps, meta, watch)


def exists(session, words):
    """exists <key>: the docs' example, as written there."""
    if len(words[1]) > KEY_MAX_LENGTH:
        return session.out.append(BAD_FORMAT)
    session.counters.cmd_get += 1
    found = session.store.get(words[1]) is not None
    session.out.append(b"EXISTS\r\n" if found else b"NOT_FOUND\r\n")


@pytest.fixture
def with_exists(monkeypatch):
    """The session's table with one more row: b"exists": (exists, 2, 2)."""
    table = dict(commands.COMMANDS)
    table[b"exists"] = (exists, 2, 2)
    monkeypatch.setattr(handlers, "COMMANDS", table)
    return table


def test_a_function_and_its_table_row_make_a_command(session, with_exists):
    session.feed(set_cmd(b"k", b"v"))
    assert session.feed(b"exists k\r\nexists other\r\n") == b"EXISTS\r\nNOT_FOUND\r\n"


def test_an_added_command_is_counted_as_one_command_of_the_turn(session, with_exists):
    assert session.feed(b"exists a\r\nexists b\r\nexists c\r\n", max_commands=2) == b"NOT_FOUND\r\n" * 2
    assert session.stopped_early


@pytest.mark.parametrize("line", [b"exists", b"exists a b"])
def test_an_added_command_with_a_word_count_outside_its_row_is_error(session, with_exists, line):
    assert session.feed(line + b"\r\n") == ERROR
    assert session.server.counters.cmd_get == 0  # the function never ran


def test_without_its_row_the_function_is_no_command(session):
    assert session.feed(b"exists k\r\n") == ERROR


def test_the_table_is_the_union_of_the_families_tables():
    union = {}
    for family in FAMILIES:
        assert not union.keys() & family.COMMANDS.keys()  # no family shadows another
        union.update(family.COMMANDS)
    assert commands.COMMANDS == union


def test_the_auth_family_has_no_row_it_takes_the_line_before_the_table():
    assert not hasattr(auth, "COMMANDS")


@pytest.mark.parametrize("name, row", commands.COMMANDS.items(), ids=[n.decode() for n in commands.COMMANDS])
def test_every_row_names_a_function_and_sane_word_counts(name, row):
    function, least, most = row
    assert callable(function)
    assert least >= 1 and (most is None or most >= least)


def _too_few_and_too_many():
    for name, (_, least, most) in commands.COMMANDS.items():
        if least > 1:
            yield pytest.param(b" ".join([name] + [b"x"] * (least - 2)), id=name.decode() + "-too-few")
        if most is not None:
            yield pytest.param(b" ".join([name] + [b"x"] * most), id=name.decode() + "-too-many")


@pytest.mark.parametrize("line", list(_too_few_and_too_many()))
def test_a_word_count_outside_the_row_is_error(session, line):
    assert session.feed(line + b"\r\n") == ERROR
    assert not session.closing
