"""The protocol session as a stream machine: the same bytes give the same
replies however they are cut, and however much output a feed may return.

After h11's tests of its readers: every storage command (and get, and a mixed
pipeline) is fed whole, fed byte by byte (nothing until the last byte, then
exactly the reply), and fed with the next command glued on. Then hypothesis
builds random pipelines from a small grammar of valid and invalid commands and
cuts them at random points; and the output limit (the reactor's backpressure)
must only delay replies, never change them.

The command-by-command spec is in test_handlers.py.
"""

import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from commands import retrieval  # noqa: E402
from handlers import Server, Session, Settings  # noqa: E402
from store import Store  # noqa: E402

NOW = 1_700_000_000.0
ITEM_SIZE_MAX = 1024

from replies import BAD_CHUNK, END, ERROR, STORED, TOO_LARGE, VERSION, value  # noqa: E402


# fsync changes nothing in the bytes a session answers (the store's own tests
# cover durability); skipping it keeps hundreds of fresh stores fast.
pytestmark = pytest.mark.usefixtures("no_fsync")


def fixed_clock():
    return NOW


def new_session(data_dir):
    """A session on a fresh store in data_dir; the caller closes the store."""
    store = Store(str(data_dir), item_size_max=ITEM_SIZE_MAX, clock=fixed_clock)
    return Session(Server(store, Settings(), clock=fixed_clock)), store


@pytest.fixture
def make_session(tmp_path):
    """Factory of sessions, each on its own fresh store; stores closed at teardown."""
    stores = []

    def make():
        session, store = new_session(tmp_path / ("data%d" % len(stores)))
        stores.append(store)
        return session

    yield make
    for store in stores:
        store.close()


@pytest.fixture
def session(make_session):
    return make_session()


def feed_bytewise(session, data):
    """Feed one byte at a time; the reply returned after each byte."""
    return [session.feed(data[i : i + 1]) for i in range(len(data))]


# == h11's three ways, for each storage command ==================================

# (setup, command, reply, what `get k` answers afterwards). "%(cas)d" in a
# command is the cas unique k has after the setup.
SET_K = b"set k 5 0 3\r\nold\r\n"
STORAGE_CASES = {
    "set": (b"", b"set k 5 0 5\r\nhello\r\n", STORED, value(b"k", b"hello", 5)),
    "set-over-old": (SET_K, b"set k 0 0 3\r\nnew\r\n", STORED, value(b"k", b"new")),
    "set-empty-value": (b"", b"set k 0 0 0\r\n\r\n", STORED, value(b"k", b"")),
    "set-crlf-in-value": (b"", b"set k 0 0 6\r\n\r\n\r\n\r\n\r\n", STORED, value(b"k", b"\r\n\r\n\r\n")),
    "set-bare-newline-line": (b"", b"set k 0 0 1\nx\r\n", STORED, value(b"k", b"x")),
    "set-noreply": (b"", b"set k 0 0 1 noreply\r\nx\r\n", b"", value(b"k", b"x")),
    "add": (b"", b"add k 0 0 3\r\nnew\r\n", STORED, value(b"k", b"new")),
    "add-existing": (SET_K, b"add k 0 0 3\r\nnew\r\n", b"NOT_STORED\r\n", value(b"k", b"old", 5)),
    "replace": (SET_K, b"replace k 0 0 3\r\nnew\r\n", STORED, value(b"k", b"new")),
    "replace-missing": (b"", b"replace k 0 0 3\r\nnew\r\n", b"NOT_STORED\r\n", b""),
    "append": (SET_K, b"append k 0 0 3\r\nnew\r\n", STORED, value(b"k", b"oldnew", 5)),
    "prepend": (SET_K, b"prepend k 0 0 3\r\nnew\r\n", STORED, value(b"k", b"newold", 5)),
    "cas": (SET_K, b"cas k 0 0 3 %(cas)d\r\nnew\r\n", STORED, value(b"k", b"new")),
    "cas-stale": (SET_K, b"cas k 0 0 3 999999\r\nnew\r\n", b"EXISTS\r\n", value(b"k", b"old", 5)),
    "cas-missing": (b"", b"cas k 0 0 3 1\r\nnew\r\n", b"NOT_FOUND\r\n", b""),
    "bad-data-chunk": (SET_K, b"set k 0 0 3\r\nnewXY", BAD_CHUNK, value(b"k", b"old", 5)),
}


def prepare(session, case):
    setup, command, reply, after = STORAGE_CASES[case]
    session.feed(setup)
    item = session.store.get(b"k")
    if b"%(cas)d" in command:
        command = command % {b"cas": item.cas}
    return command, reply, after + END


@pytest.mark.parametrize("case", STORAGE_CASES)
def test_a_storage_command_fed_whole_is_answered(session, case):
    command, reply, after = prepare(session, case)
    assert session.feed(command) == reply
    assert session.feed(b"get k\r\n") == after


@pytest.mark.parametrize("case", STORAGE_CASES)
def test_a_storage_command_fed_byte_by_byte_is_answered_at_its_last_byte(session, case):
    command, reply, after = prepare(session, case)
    replies = feed_bytewise(session, command)
    assert replies[:-1] == [b""] * (len(command) - 1)
    assert replies[-1] == reply
    assert session.feed(b"get k\r\n") == after


@pytest.mark.parametrize("case", STORAGE_CASES)
def test_a_storage_command_with_the_next_command_glued_on_answers_both_in_order(session, case):
    command, reply, after = prepare(session, case)
    assert session.feed(command + b"get k\r\n") == reply + after


@pytest.mark.parametrize("case", STORAGE_CASES)
def test_a_storage_command_split_anywhere_in_two_is_answered_the_same(make_session, case):
    for cut in range(1, len(STORAGE_CASES[case][1])):
        session = make_session()
        command, reply, after = prepare(session, case)
        assert session.feed(command[:cut]) + session.feed(command[cut:] + b"get k\r\n") == reply + after


# -- an item too large: answered once its line is read (memcached waits until its
# data is swallowed; same bytes), the data then dropped

TOO_LARGE_LINE = b"set k 0 0 2000\r\n"
TOO_LARGE_DATA = b"x" * 2000 + b"\r\n"


def test_a_too_large_item_fed_whole_is_answered_once(session):
    assert session.feed(TOO_LARGE_LINE + TOO_LARGE_DATA) == TOO_LARGE


def test_a_too_large_item_fed_byte_by_byte_is_answered_at_the_end_of_its_line_only(session):
    replies = feed_bytewise(session, TOO_LARGE_LINE + TOO_LARGE_DATA)
    end_of_line = len(TOO_LARGE_LINE) - 1
    assert replies[end_of_line] == TOO_LARGE
    assert set(replies[:end_of_line] + replies[end_of_line + 1 :]) == {b""}
    assert session.feed(b"get k\r\n") == END


def test_a_too_large_item_with_the_next_command_glued_on_answers_both(session):
    assert session.feed(TOO_LARGE_LINE + TOO_LARGE_DATA + b"version\r\n") == TOO_LARGE + VERSION


# == get, and a mixed pipeline, the same three ways ================================

GET_SETUP = b"set a 1 0 1\r\nA\r\nset c 3 0 3\r\nCCC\r\n"
GET_COMMAND = b"get a b c\r\n"
GET_REPLY = value(b"a", b"A", 1) + value(b"c", b"CCC", 3) + END


def test_get_fed_whole_is_answered(session):
    session.feed(GET_SETUP)
    assert session.feed(GET_COMMAND) == GET_REPLY


def test_get_fed_byte_by_byte_is_answered_at_its_last_byte(session):
    session.feed(GET_SETUP)
    replies = feed_bytewise(session, GET_COMMAND)
    assert replies == [b""] * (len(GET_COMMAND) - 1) + [GET_REPLY]


def test_get_with_the_next_command_glued_on_answers_both_in_order(session):
    session.feed(GET_SETUP)
    assert session.feed(GET_COMMAND + b"version\r\n") == GET_REPLY + VERSION


def test_a_get_line_ended_by_the_next_feed_lets_a_short_command_after_it_run(session):
    # the feed that ends a long get line must look for the next command's
    # end from its own start, not from how far the unended line was searched
    session.feed(b"set " + b"k" * 40 + b" 0 0 1\r\nv\r\n")
    assert session.feed(b"get " + b"k" * 40) == b""
    assert session.feed(b"\r\nmn\r\n") == value(b"k" * 40, b"v") + END + b"MN\r\n"


# Each command with the reply it must get, in a stream where each depends on
# the ones before it.
PIPELINE = [
    (b"set a 0 0 1\r\n1\r\n", STORED),
    (b"get a\r\n", value(b"a", b"1") + END),
    (b"incr a 41\r\n", b"42\r\n"),
    (b"bogus\r\n", ERROR),
    (b"add a 0 0 1\r\nx\r\n", b"NOT_STORED\r\n"),
    (b"append a 0 0 2 noreply\r\n!!\r\n", b""),
    (b"\r\n", ERROR),
    (b"set b 0 0 3\r\nabcde\r\n", BAD_CHUNK + ERROR),
    (b"set big 0 0 2000\r\n" + b"z" * 2000 + b"\r\n", TOO_LARGE),
    (b"gat 100 a b big\r\n", value(b"a", b"42!!") + END),
    (b"delete a 0\r\n", b"DELETED\r\n"),
    (b"touch a 10\r\n", b"NOT_FOUND\r\n"),
    (b"get a\n", END),
    (b"version\r\n", VERSION),
]
PIPELINE_BYTES = b"".join(command for command, _ in PIPELINE)
PIPELINE_REPLY = b"".join(reply for _, reply in PIPELINE)


def test_a_pipeline_fed_whole_is_answered_in_order(session):
    assert session.feed(PIPELINE_BYTES) == PIPELINE_REPLY


def test_a_pipeline_fed_byte_by_byte_answers_each_command_at_its_last_byte(session):
    replies = feed_bytewise(session, PIPELINE_BYTES)
    expected = []
    for command, reply in PIPELINE:
        if command.startswith(b"set big"):
            # too large: answered when its line is read, then nothing while the data is swallowed
            line = command.index(b"\n") + 1
            expected += [b""] * (line - 1) + [reply] + [b""] * (len(command) - line)
        elif command.startswith(b"set b "):
            # the bad chunk is found at the 5th data byte, the stray "\r\n" is an empty line
            expected += [b""] * (len(command) - 3) + [BAD_CHUNK, b"", ERROR]
        else:
            expected += [b""] * (len(command) - 1) + [reply]
    assert replies == expected


def test_a_pipeline_with_the_next_command_glued_on_answers_all_in_order(session):
    assert session.feed(PIPELINE_BYTES + b"get b\r\n") == PIPELINE_REPLY + END


def test_pipelined_plain_gets_all_hits_are_answered_each_with_its_end(session):
    session.feed(b"set a 0 0 1\r\n1\r\nset b 3 0 2\r\n22\r\n")
    replies = session.feed(b"get a\r\nget a b\r\nget b\r\n")
    assert replies == value(b"a", b"1") + END + value(b"a", b"1") + value(b"b", b"22", 3) + END + value(b"b", b"22", 3) + END


def test_pipelined_plain_gets_with_a_miss_among_them_answer_each_line_in_order(session):
    session.feed(b"set a 0 0 1\r\n1\r\n")
    replies = session.feed(b"get a\r\nget nope\r\nget a nope a\r\nget a\r\n")
    assert replies == value(b"a", b"1") + END + END + value(b"a", b"1") * 2 + END + value(b"a", b"1") + END


def test_pipelined_plain_gets_count_each_line_and_key(session):
    session.feed(b"set a 0 0 1\r\n1\r\n")
    session.feed(b"get a\r\nget a a\r\nget a\r\n")
    rows = dict(line.split(b" ")[1:3] for line in session.feed(b"stats\r\n").split(b"\r\n") if line.startswith(b"STAT "))
    assert (rows[b"cmd_get"], rows[b"get_hits"]) == (b"4", b"4")


def test_a_pipeline_cut_anywhere_in_two_is_answered_the_same(tmp_path):
    # every cut point, each on a fresh store (the pipeline changes the items)
    step = 23  # the 2000-byte value is uniform: sample it, but cut at every line end
    cuts = sorted(set(range(1, len(PIPELINE_BYTES), step)) | {i + 1 for i, b in enumerate(PIPELINE_BYTES) if b == 10})
    for cut in cuts:
        session, store = new_session(tmp_path / ("d%d" % cut))
        try:
            assert session.feed(PIPELINE_BYTES[:cut]) + session.feed(PIPELINE_BYTES[cut:]) == PIPELINE_REPLY
        finally:
            store.close()


# == random pipelines =============================================================

# mostly valid choices, so that items exist and commands hit them; errors now and then
KEYS = st.sampled_from([b"a", b"b", b"n"] * 4 + [b"k" * 250, b"k" * 251])
EOL = st.sampled_from([b"\r\n", b"\r\n", b"\r\n", b"\n"])
NOREPLY = st.sampled_from([b"", b"", b" noreply"])
FLAGS = st.sampled_from([b"0"] * 6 + [b"7", b"4294967296", b"+3", b"-1", b"x"])
EXPTIMES = st.sampled_from([b"0"] * 6 + [b"100", b"-1", b"2147483648", b"9999999999", b"abc"])
DELTAS = st.sampled_from([b"1"] * 3 + [b"100", b"18446744073709551615", b"-1", b"x"])
VALUES = st.one_of(
    st.binary(max_size=12),
    st.sampled_from([b"0", b"7", b"99", b"100", b"18446744073709551615", b"abc", b" 5"]),
)


@st.composite
def storage_commands(draw):
    verb = draw(st.sampled_from([b"set", b"add", b"replace", b"append", b"prepend", b"cas"]))
    key, flags, exptime = draw(KEYS), draw(FLAGS), draw(EXPTIMES)
    kind = draw(st.sampled_from(["ok"] * 12 + ["bad-length", "bad-end", "too-large", "negative"]))
    data = draw(VALUES)
    length = len(data)
    end = b"\r\n"
    if kind == "bad-length":
        length = max(0, length + draw(st.sampled_from([-2, -1, 1, 2])))
    elif kind == "bad-end":
        end = draw(st.sampled_from([b"XY", b"\n", b"\r"]))
    elif kind == "too-large":
        data = b"z" * 1100
        length = len(data)
    line = b"%s %s %s %s %s" % (verb, key, flags, exptime, b"-1" if kind == "negative" else b"%d" % length)
    if verb == b"cas":
        line += b" " + draw(st.sampled_from([b"1", b"2", b"3", b"4", b"999", b"x"]))
    return line + draw(NOREPLY) + draw(EOL) + data + end


def _not_stats(line):
    words = line.split(b"\0")[0].split()
    return not words or words[0] != b"stats"


@st.composite
def other_commands(draw):
    keys = b" ".join(draw(st.lists(KEYS, min_size=0, max_size=3)))
    options = [
        b"get " + keys,
        b"gets " + keys,
        b"gat " + draw(EXPTIMES) + b" " + keys,
        b"gats " + draw(EXPTIMES) + b" " + keys,
        b"delete " + draw(KEYS) + draw(st.sampled_from([b"", b" 0", b" 1"])) + draw(NOREPLY),
        draw(st.sampled_from([b"incr ", b"decr "])) + draw(KEYS) + b" " + draw(DELTAS) + draw(NOREPLY),
        b"touch " + draw(KEYS) + b" " + draw(EXPTIMES) + draw(NOREPLY),
        b"flush_all" + draw(st.sampled_from([b"", b" 0", b" 10", b" x"])) + draw(NOREPLY),
        b"version",
        b"verbosity " + draw(st.sampled_from([b"1", b"x", b""])) + draw(NOREPLY),
        b"cache_memlimit " + draw(st.sampled_from([b"64", b"0", b"x"])),
        b"stats reset",
        b"stats nonsense",
        b"",
        b"bogus " + keys,
        # (not a `stats` line: its bytes_written and read_buf_bytes depend on
        # how the stream was fed, which is what these tests vary)
        draw(st.binary(max_size=20).map(lambda b: b.replace(b"\n", b"")).filter(_not_stats)),
    ]
    line = draw(st.sampled_from(options))
    return line + draw(EOL)


COMMANDS = st.one_of(storage_commands(), other_commands(), storage_commands())
RARE_ENDINGS = st.sampled_from([b"", b"", b"", b"", b"quit\r\n", b"GET / HTTP/1.1\r\n", b"version\r\n"])


@st.composite
def pipelines(draw):
    """(stream, cut points): commands from the grammar, cut into chunks."""
    stream = b"".join(draw(st.lists(COMMANDS, min_size=1, max_size=12)))
    # a quit or an HTTP line closes; put it anywhere, commands after it are ignored
    tail = b"".join(draw(st.lists(COMMANDS, max_size=3)))
    stream += draw(RARE_ENDINGS) + tail
    cuts = sorted(set(draw(st.lists(st.integers(0, len(stream)), max_size=12))))
    return stream, cuts


def chunks(stream, cuts):
    bounds = [0] + cuts + [len(stream)]
    return [stream[a:b] for a, b in zip(bounds, bounds[1:])]


def replies_whole(data_dir, stream):
    session, store = new_session(data_dir)
    try:
        return session.feed(stream), session.closing
    finally:
        store.close()


PROPERTY = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)


@PROPERTY
@given(pipelines())
def test_a_random_pipeline_cut_anywhere_gets_the_replies_it_gets_whole(pipeline):
    stream, cuts = pipeline
    with tempfile.TemporaryDirectory() as tmp:
        whole, closing = replies_whole(Path(tmp) / "whole", stream)
        session, store = new_session(Path(tmp) / "pieces")
        try:
            pieces = b"".join(session.feed(chunk) for chunk in chunks(stream, cuts))
            assert pieces == whole
            assert session.closing == closing
        finally:
            store.close()


@PROPERTY
@given(pipelines(), st.lists(st.integers(1, 200), min_size=1, max_size=5))
def test_a_random_pipeline_under_an_output_limit_gets_the_replies_it_gets_whole(pipeline, limits):
    stream, cuts = pipeline
    with tempfile.TemporaryDirectory() as tmp:
        whole, closing = replies_whole(Path(tmp) / "whole", stream)
        session, store = new_session(Path(tmp) / "limited")
        try:
            out = []
            calls = 0
            for i, chunk in enumerate(chunks(stream, cuts)):
                limit = limits[i % len(limits)]
                out.append(session.feed(chunk, limit=limit))
                while session.stopped_early:
                    calls += 1
                    assert calls < 10_000, "feed(b'') makes no progress"
                    out.append(session.feed(b"", limit=limit))
            assert b"".join(out) == whole
            assert session.closing == closing
        finally:
            store.close()


# == the output limit =============================================================


def test_feed_stops_once_the_replies_reach_the_limit(session):
    assert session.feed(b"version\r\n" * 5, limit=1) == VERSION
    assert session.stopped_early


def test_feed_returns_whole_replies_even_past_the_limit(session):
    session.feed(b"set a 0 0 5\r\nhello\r\n")
    assert session.feed(b"get a\r\nget a\r\n", limit=3) == value(b"a", b"hello") + END
    assert session.stopped_early


def test_feed_stops_at_the_first_reply_that_reaches_the_limit(session):
    assert session.feed(b"version\r\n" * 5, limit=len(VERSION) * 2 + 1) == VERSION * 3
    assert session.stopped_early


def test_a_later_empty_feed_continues_where_it_stopped(session):
    session.feed(b"version\r\n" * 5, limit=len(VERSION) * 2)
    assert session.feed(b"", limit=len(VERSION) * 2) == VERSION * 2
    assert session.stopped_early
    assert session.feed(b"") == VERSION
    assert not session.stopped_early


def test_a_feed_within_the_limit_does_not_stop_early(session):
    assert session.feed(b"version\r\nversion", limit=1000) == VERSION
    assert not session.stopped_early


def test_new_input_while_stopped_is_answered_after_the_buffered_commands(session):
    session.feed(b"version\r\nset a 0 0 1\r\nx\r\nget a\r\n", limit=1)
    assert session.stopped_early
    assert session.feed(b"delete a\r\n") == STORED + value(b"a", b"x") + END + b"DELETED\r\n"


def test_the_limit_may_stop_between_a_storage_line_and_its_data(session):
    out = session.feed(b"version\r\nset a 0 0 1\r\nx\r\nget a\r\n", limit=1)
    while session.stopped_early:
        out += session.feed(b"", limit=1)
    assert out == VERSION + STORED + value(b"a", b"x") + END


def test_the_limit_does_not_disturb_the_swallowing_of_a_too_large_item(session):
    stream = b"version\r\n" + TOO_LARGE_LINE + TOO_LARGE_DATA + b"version\r\n"
    out = session.feed(stream, limit=1)
    while session.stopped_early:
        out += session.feed(b"", limit=1)
    assert out == VERSION + TOO_LARGE + VERSION


@pytest.mark.parametrize("limit", [1, 5, 17, 64, 200, 10_000])
def test_the_pipeline_under_any_limit_totals_the_same_output(session, limit):
    out = session.feed(PIPELINE_BYTES, limit=limit)
    while session.stopped_early:
        out += session.feed(b"", limit=limit)
    assert out == PIPELINE_REPLY


def test_a_quit_under_the_limit_still_closes(session):
    out = session.feed(b"version\r\nversion\r\nquit\r\nversion\r\n", limit=1)
    while session.stopped_early:
        out += session.feed(b"", limit=1)
    assert out == VERSION * 2
    assert session.closing


# -- a long multi-get under the limit -----------------------------------------


def test_a_multi_get_of_many_misses_gives_the_others_a_turn_and_resumes(session):
    keys = [b"miss%d" % i for i in range(retrieval.KEYS_PER_TURN * 2 + 5)]
    session.feed(b"set miss7 0 0 1\r\nx\r\n")
    out = session.feed(b"get " + b" ".join(keys) + b"\r\n", limit=1 << 20)
    assert session.stopped_early  # after KEYS_PER_TURN keys, not at the limit
    turns = 1
    while session.stopped_early:
        out += session.feed(b"", limit=1 << 20)
        turns += 1
    assert turns == 3
    assert out == value(b"miss7", b"x") + END


def test_a_multi_get_pauses_between_keys_at_the_limit_and_resumes(session):
    data = b"v" * 500
    session.feed(b"set big 0 0 500\r\n" + data + b"\r\n")
    request = b"get " + b" ".join([b"big"] * 40) + b"\r\nversion\r\n"
    first = session.feed(request, limit=2000)
    # about the limit, not the 20 KB the whole reply holds
    assert len(first) < 2000 + 600
    assert session.stopped_early
    out = first
    while session.stopped_early:
        out += session.feed(b"", limit=2000)
    assert out == (b"VALUE big 0 500\r\n" + data + b"\r\n") * 40 + END + VERSION


def test_feed_runs_at_most_max_commands_then_says_it_stopped_early(session):
    assert session.feed(b"version\r\n" * 5, max_commands=2) == VERSION * 2
    assert session.stopped_early
    assert session.feed(b"", max_commands=2) == VERSION * 2
    assert session.feed(b"", max_commands=2) == VERSION
    assert not session.stopped_early
