"""Replies made readable: values with their flags and cas, `stats` as an
aligned table, everything else as the server's words. `--raw` bypasses all
of this and prints the reply bytes as they came."""

from .client import ERRORS

_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t", '"': '\\"', "\\": "\\\\"}


def quoted(data):
    """Bytes as a double-quoted string a person can read and copy: UTF-8
    text as itself, line ends and other control bytes escaped, any byte that
    is not UTF-8 as \\xNN."""
    text = data.decode("utf-8", "surrogateescape")
    out = []
    for ch in text:
        code = ord(ch)
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8
            out.append("\\x%02x" % (code - 0xDC00))
        elif code < 0x20 or code == 0x7F or not ch.isprintable():
            out.append("\\x%02x" % code if code < 0x100 else "\\u%04x" % code)
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def key_text(key):
    text = key.decode("utf-8", "surrogateescape")
    if text.isprintable() and text.isascii():
        return text
    return quoted(key)


def values(found, asked):
    """Lines for a get: each asked key with its value, flags and cas, or
    "(not found)"; a key asked twice is shown once."""
    by_key = {v.key: v for v in found}
    lines = []
    for key in dict.fromkeys(asked):
        v = by_key.get(key)
        if v is None:
            lines.append(f"{key_text(key)}: (not found)")
            continue
        cas = "" if v.cas is None else f", cas {v.cas}"
        lines.append(f"{key_text(key)}: {quoted(v.value)}  (flags {v.flags}{cas}, {len(v.value)} bytes)")
    return lines


def stats_table(rows):
    """`name  value` lines, the values aligned in one column."""
    if not rows:
        return ["(no statistics)"]
    width = max(len(name) for name in rows)
    return [f"{name.ljust(width)}  {value.decode('utf-8', 'replace')}" for name, value in rows.items()]


def reply_lines(reply):
    """A reply as text lines, line ends dropped."""
    return reply.decode("utf-8", "replace").replace("\r\n", "\n").rstrip("\n").split("\n")


def is_error(reply):
    return reply.startswith(ERRORS)
