"""Plain-words syntax errors from Lark's exceptions.

Lark reports the set of terminals it could have accepted; we name each one the way a
user thinks of it ("a size such as 4GiB") and quote what was found instead.
"""
from __future__ import annotations

import re

from lark import Lark
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

_DESCRIPTIONS = {
    "STRING": "a quoted string (\"…\")",
    "INT": "a number such as 4 or 0x1f",
    "SIZE": "a size such as 4GiB",
    "VERSION": "a version such as 0.24",
    "GUEST_TYPE": "sev or sev-es",
    "ON_OFF": "on or off",
    "ALLOW_DENY": "allow or deny",
    "VMM": "qemu, ec2 or gce",
    "POLICY_FIELD": "a policy field (debug, key-sharing, send, send-outside-domain, send-to-non-sev)",
    "DISK_FORMAT": "qcow2 or raw",
    "NET": "user or none",
    "CONSOLE": "serial or none",
    "_NL": "the end of the line",
    "$END": "the end of the file",
}
_WORD = re.compile(r"[A-Za-z0-9_.\-]+")
# the grammar's STRING (a pattern string: compiled on the first syntax error only)
_STRING = r'"(?:[^"\\\n]|\\[^\n])*+"'


def describe_unexpected(exc: UnexpectedInput, text: str, parser: Lark) -> tuple[str, int, int, int]:
    """(message, line, column, width) for a Lark parse error."""
    if isinstance(exc, UnexpectedEOF):
        line = text.count("\n")
        return ("unexpected end of file: a block is not closed with '}'", max(line, 1), 1, 1)
    if isinstance(exc, UnexpectedToken):
        expected = set(exc.expected) | set(getattr(exc, "accepts", None) or ())
        token = exc.token
        glued = _glued(text, token, parser)
        if glued is not None:
            return glued
        if token.type == "$END":
            return ("unexpected end of file: a block is not closed with '}'", exc.line, exc.column, 1)
        found, width = _found_token(token), _width(token)
        if token.type != "_NL" and not str(token).startswith('"'):
            # the lexer may have matched a keyword at the front of a longer word: "vm" of
            # "vmdk", "4" of "4GB"; quote the whole word
            found, width = _found_text(text, token.start_pos), _word_width(text, token.start_pos)
        return (_message(expected, found, parser), token.line, token.column, width)
    assert isinstance(exc, UnexpectedCharacters)
    pos = exc.pos_in_stream
    start = _word_start(text, pos)
    found = _found_text(text, start)
    column = exc.column - (pos - start)
    width = _word_width(text, start)
    if text.startswith('"', pos) and not re.compile(_STRING).match(text, pos):
        end = text.find("\n", pos)
        escaped = " (\\\" is a quote inside it)" if text.find('"', pos + 1, end) != -1 else ""
        return (f"unterminated string: a string must end with '\"' on the same line{escaped}",
                exc.line, exc.column, 1)
    if start < pos:  # a keyword matched the front of a longer word ("types")
        return (f"unknown word {found}{_suggest(found, parser)}", exc.line, column, width)
    return (_message(set(exc.allowed or ()), found, parser), exc.line, column, width)


def _glued(text: str, token, parser: Lark) -> tuple[str, int, int, int] | None:
    """``firmware2 "x"``: the lexer took the keyword and then the "2"; say so, as the
    check after a successful parse does ("write a space after ...")."""
    pos = token.start_pos
    if pos is None or not _WORD.match(text, pos):
        return None
    start = _word_start(text, pos)
    head = text[start:pos]
    if start == pos or head not in {t.pattern.value for t in parser.terminals
                                    if t.pattern.type == "str"}:
        return None
    word = _WORD.match(text, start).group(0)
    return (f"unknown word {word!r}: write a space after {head!r}", token.line,
            token.column - (pos - start), len(word))


def _suggest(found: str, parser: Lark) -> str:
    bare = found.strip('"')  # itself a word of the language elsewhere ("vmm" before a vm)
    words = [t.pattern.value for t in parser.terminals
             if t.pattern.type == "str" and t.pattern.value != bare]
    close = _close(bare, words, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _message(expected: set[str], found: str, parser: Lark) -> str:
    keywords = sorted(_keyword(name, parser) for name in expected if _keyword(name, parser))
    words = [_DESCRIPTIONS[n] for n in sorted(expected) if n in _DESCRIPTIONS and n != "_NL"]
    if len(keywords) > 3:  # the start of a statement: name the settings, suggest the closest
        bare = found.strip('"')
        close = _close(bare, keywords, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        listed = ", ".join(k for k in keywords if k not in "{},")
        closing = " or '}'" if "}" in keywords else ""
        if not found.startswith('"'):  # not a word: the string "x", '{', the end of the line
            return f"expected a setting (one of: {listed}{closing}), found {found}"
        return f"unknown setting {found}{hint} (expected one of: {listed}{closing})"
    wanted = words + [f"'{k}'" for k in keywords]
    if "_NL" in expected:
        wanted.append(_DESCRIPTIONS["_NL"])
    what = _join(wanted) if wanted else "something else"
    choices = keywords + [w for name in expected for w in _alternatives(name, parser)]
    close = _close(found.strip('"'), choices, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close and found.startswith('"') else ""
    if found.startswith("the string ") and found[11:].strip('"') in choices:
        hint = f"; write {found[11:].strip(chr(34))} without quotes"
    return f"expected {what}, found {found}{hint}"


def _alternatives(terminal: str, parser: Lark) -> list[str]:
    """The words of an enumerated terminal such as GUEST_TYPE: /(sev-es|sev)(?!…)/."""
    for term in parser.terminals:
        if term.name == terminal and term.pattern.type == "re":
            match = re.match(r"\(([a-z0-9|-]+)\)\(\?!", term.pattern.value)
            return match.group(1).split("|") if match else []
    return []


def _keyword(terminal: str, parser: Lark) -> str | None:
    """The literal text of an anonymous keyword or punctuation terminal, else None."""
    if terminal in _DESCRIPTIONS:
        return None
    for term in parser.terminals:
        if term.name == terminal and term.pattern.type == "str":
            return term.pattern.value
    return None


def _width(token) -> int:
    """The columns a token takes on its line: a newline token runs to its first line end
    (it may hold blank lines, comments and the next line's indentation)."""
    text = str(token)
    return text.find("\n") + 1 if token.type == "_NL" else len(text)


def _found_token(token) -> str:
    if token.type == "_NL":
        return "the end of the line"
    if str(token).startswith('"'):
        return f"the string {_short(str(token))}"  # not to be confused with a quoted word
    return f'"{_short(str(token))}"'


def _found_text(text: str, pos: int) -> str:
    if pos >= len(text):
        return "the end of the file"
    if text[pos] in "\r\n":
        return "the end of the line"
    if text[pos] == '"':
        end = text.find('"', pos + 1, text.find("\n", pos) if "\n" in text[pos:] else len(text))
        return "the string " + (_short(text[pos:end + 1]) if end > pos
                                else _short(text[pos:text.find("\n", pos)]))
    match = _WORD.match(text, pos)
    return f'"{_short(match.group(0))}"' if match else repr(_short(text[pos]))


def _word_width(text: str, pos: int) -> int:
    match = _WORD.match(text, pos)
    return len(match.group(0)) if match else 1


def _word_start(text: str, pos: int) -> int:
    # Lark may fail in the middle of a word ("typo" matched "type" up to 'o'): show the word
    while pos > 0 and pos <= len(text) and _WORD.match(text[pos - 1]) and _WORD.match(text, pos):
        pos -= 1
    return pos


def _short(s: str, limit: int = 40) -> str:
    return s if len(s) <= limit else s[:limit] + "…"


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]


def _close(word: str, choices, n: int, cutoff: float) -> list[str]:
    import difflib  # only on the error path: keeps start-up lean
    return difflib.get_close_matches(word, choices, n=n, cutoff=cutoff)
