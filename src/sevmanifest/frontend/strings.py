"""Decoding string literals: exactly the escapes the language defines, nothing else.

The result is bytes because the kernel command line is measured byte for byte:
``\\xNN`` is one raw byte, ``\\u{...}`` a code point in UTF-8, everything else the
UTF-8 bytes of the source text.
"""
from __future__ import annotations

import re

from ..diagnostics import Diagnostic, error
from ..model import Span

_ESCAPE = re.compile(r"\\(x[0-9a-fA-F]{2}|u\{[0-9a-fA-F]{1,6}\}|.)", re.DOTALL)
_SIMPLE = {"\\": b"\\", '"': b'"', "n": b"\n", "t": b"\t"}
ALLOWED = r'\\ \" \n \t \xNN \u{...}'
MAX_ESCAPE_ERRORS = 10  # per string: one string of 100 000 bad escapes is one mistake


def decode_string(literal: str, span: Span) -> tuple[bytes, list[Diagnostic]]:
    """Decode a STRING token (with its quotes).  Bad escapes are reported at their column."""
    body = literal[1:-1]
    out = bytearray()
    problems: list[Diagnostic] = []
    pos = 0
    for match in _ESCAPE.finditer(body):
        out += body[pos:match.start()].encode("utf-8", "surrogatepass")
        pos = match.end()
        decoded = _escape(match.group(1))
        if decoded is None and len(problems) < MAX_ESCAPE_ERRORS:
            column = span.column + 1 + match.start()
            where = Span(span.file, span.line, column, span.line, column + len(match.group(0)))
            problems.append(error(f"invalid escape {match.group(0)!r} in string; strings accept "
                                  f"only {ALLOWED}", where, fatal_input=True))
        elif decoded is not None:
            out += decoded
    out += body[pos:].encode("utf-8", "surrogatepass")
    return bytes(out), problems


def _escape(code: str) -> bytes | None:
    if code in _SIMPLE:
        return _SIMPLE[code]
    if code.startswith("x") and len(code) == 3:
        return bytes([int(code[1:], 16)])
    if code.startswith("u{"):
        point = int(code[2:-1], 16)
        if point > 0x10FFFF or 0xD800 <= point <= 0xDFFF:
            return None
        return chr(point).encode("utf-8")
    return None


def unprintable(text: str, *, name: bool) -> str | None:
    """The first character of ``text`` a terminal, CI log or reviewer would not show as
    itself, described ("U+000A", "byte 0xff, which is not UTF-8"); None if there is none.
    Names (``name=True``) are printable text only.  Paths may also hold bytes that are not
    UTF-8, tabs and Unicode's other spaces: only control (but the tab), format (bidi
    overrides) and line separator characters are refused there."""
    for char in text:
        if char.isprintable() or char == " " or (char == "\t" and not name):
            continue
        code = ord(char)
        if 0xDC80 <= code <= 0xDCFF:  # a raw byte (decoded with surrogateescape)
            if name:
                return f"byte 0x{code - 0xDC00:02x}, which is not UTF-8"
            continue
        import unicodedata  # only here: rare, and not worth every start-up
        if name or unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp"):
            return f"U+{code:04X}"
    return None
