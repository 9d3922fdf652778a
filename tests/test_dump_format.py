"""The dump file format (cli/dump.py, docs/DUMP_FORMAT.md): what a writer
produces, byte for byte, and everything a reader refuses."""

import io
import sys
import zlib
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cli.dump import DumpFormatError, Reader, Writer  # noqa: E402

EVERY_BYTE = bytes(range(256))


def written(items, dumped_at=1_700_000_000):
    out = io.BytesIO()
    w = Writer(out, dumped_at)
    for item in items:
        w.item(*item)
    w.close()
    return out.getvalue()


def read(data):
    return list(Reader(io.BytesIO(data)))


def test_an_empty_dump_is_a_header_and_an_end_line():
    header = b"memcached-dump 1 1700000000\n"
    assert written([]) == header + b"E 0 %08x\n" % zlib.crc32(header)


def test_an_item_is_its_numbers_line_then_key_value_and_a_newline():
    data = written([(b"k", 5, 60, b"hello")])
    assert data.split(b"\n")[1:3] == [b"I 1 5 60 5", b"khello"]


def test_items_come_back_as_written():
    items = [(b"a", 0, 0, b""), (b"b", 4294967295, 3600, b"x" * 1000), (b"c", 1, 1, b"v")]
    assert read(written(items)) == items


def test_every_byte_value_survives_in_keys_and_values():
    items = [(b"\xff\x01~%", 0, 0, EVERY_BYTE), (b"k", 0, 0, b"\r\nE 0 00000000\n")]
    assert read(written(items)) == items


def test_the_header_gives_the_dump_time_and_version():
    r = Reader(io.BytesIO(written([], dumped_at=1234)))
    assert (r.version, r.dumped_at) == (1, 1234)


def test_a_file_cut_anywhere_is_refused():
    data = written([(b"key", 3, 0, b"value"), (b"k2", 0, 10, b"v2")])
    for cut in range(len(data)):
        with pytest.raises(DumpFormatError):
            read(data[:cut])


def test_a_changed_byte_in_a_value_fails_the_checksum():
    data = bytearray(written([(b"key", 0, 0, b"value")]))
    data[data.index(b"value")] ^= 1
    with pytest.raises(DumpFormatError, match="checksum"):
        read(bytes(data))


def test_a_newer_version_is_refused_by_name():
    with pytest.raises(DumpFormatError, match="version 2"):
        read(b"memcached-dump 2 0\nE 0 00000000\n")


def test_a_file_of_something_else_is_refused():
    with pytest.raises(DumpFormatError, match="not a memcached dump"):
        read(b"PNG\x89 whatever\n")


def test_an_item_count_that_does_not_match_is_refused():
    data = written([(b"k", 0, 0, b"v")])
    head, _, crc = data.rpartition(b"E 1 ")
    with pytest.raises(DumpFormatError, match="says 2 items"):
        read(head + b"E 2 " + crc)


def test_data_after_the_end_is_refused():
    with pytest.raises(DumpFormatError, match="after the end"):
        read(written([]) + b"x")


def test_a_bad_number_is_refused_with_its_offset():
    data = b"memcached-dump 1 0\nI 1 x 0 1\nkv\n"
    with pytest.raises(DumpFormatError) as e:
        read(data)
    assert e.value.offset == len(b"memcached-dump 1 0\n")


def test_flags_beyond_32_bits_are_refused():
    with pytest.raises(DumpFormatError, match="flags"):
        read(b"memcached-dump 1 0\nI 1 4294967296 0 1\nkv\n")


def test_a_key_longer_than_memcached_allows_is_refused():
    with pytest.raises(DumpFormatError, match="key length"):
        read(b"memcached-dump 1 0\nI 251 0 0 0\n" + b"k" * 251 + b"\n")


def test_the_writer_refuses_a_negative_ttl():
    with pytest.raises(ValueError):
        written([(b"k", 0, -1, b"v")])


def test_the_example_in_the_documentation_is_what_the_writer_writes():
    doc = (Path(__file__).resolve().parent.parent / "docs" / "DUMP_FORMAT.md").read_text()
    example = doc.split("one hour left; an empty\nvalue under `e`):\n\n```\n")[1].split("```")[0]
    expected = example.replace("\n", "").replace("\\n", "\n").encode()
    assert written([(b"greeting", 1, 3600, b"hello"), (b"e", 0, 0, b"")], dumped_at=1796107660) == expected
