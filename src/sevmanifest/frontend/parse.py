"""Stage 1: text -> syntax tree (``ast.Document``) with source spans.

The LALR parser is built from ``grammar/sevm.lark`` once and cached on disk by Lark
(keyed by the grammar's content).  Lark's parse errors are translated into plain words.
"""
from __future__ import annotations

import hashlib
import os
import re
import sys
import threading
from functools import lru_cache
from pathlib import Path


def _import_lark_without_regex() -> None:
    """Lark imports the third-party ``regex`` module whenever it is installed, only to
    support Unicode-category patterns (``\\p{...}``) and its ``regex=True`` option.  This
    grammar uses neither, and importing ``regex`` costs more start-up time than the rest of
    ``sevm check``, so it is hidden while Lark loads (an import of None fails, and Lark falls
    back to ``re``); afterwards anyone may import it as usual."""
    if "lark" in sys.modules or "regex" in sys.modules:
        return
    sys.modules["regex"] = None  # type: ignore[assignment]
    try:
        import lark  # noqa: F401
    finally:
        del sys.modules["regex"]


_import_lark_without_regex()

from lark import Lark, Token, Transformer, Tree  # noqa: E402
from lark.exceptions import (UnexpectedCharacters, UnexpectedEOF,  # noqa: E402
                             UnexpectedInput, UnexpectedToken)

from ..diagnostics import Diagnostic, error
from ..model import Span
from ..resources import grammar_path
from . import ast
from .errors import describe_unexpected
from .strings import decode_string

# Token types that carry a value; every other token is a keyword or punctuation.
_WORD_TOKENS = {"GUEST_TYPE", "ON_OFF", "ALLOW_DENY", "VMM", "POLICY_FIELD", "DISK_FORMAT",
                "NET", "CONSOLE"}
_KEYED_BY_FIRST_TOKEN = {"policy_field"}  # the setting's key is the POLICY_FIELD token
_VALUE_TOKENS = frozenset(_WORD_TOKENS | {"STRING"})  # never an option name ("sha256")


@lru_cache(maxsize=1)
def parser() -> Lark:
    """The parser.  It builds ``ast`` nodes as it reduces each rule (Lark's tree-less LALR
    mode, ``_BUILDER`` its transformer): no parse tree is built to be walked again.  A
    manifest of the benchmark's fleet took 4.6% fewer instructions to lock (7.45 -> 7.10 M,
    callgrind)."""
    text = grammar_path().read_text(encoding="utf-8")
    options = dict(parser="lalr", lexer="contextual", keep_all_tokens=True,
                   maybe_placeholders=False, transformer=_BUILDER)
    cache = _cache_file(text)
    if cache is not None:
        try:
            return Lark(text, cache=str(cache), **options)
        except OSError:
            pass  # an unwritable cache directory only costs start-up time
    return Lark(text, **options)


def _cache_file(grammar: str) -> Path | None:
    import lark

    from ..cachedir import default_cache_dir
    key = hashlib.sha256(f"{lark.__version__}\0{grammar}".encode()).hexdigest()[:20]
    directory = default_cache_dir()
    if directory is None:
        return None
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return directory / f"grammar-{key}.lark-cache"


def parse_text(text: str, file: str) -> tuple[ast.Document | None, list[Diagnostic]]:
    """Parse one manifest.  Returns the document, or None and the diagnostics."""
    if not text.endswith("\n"):
        text += "\n"  # statements end at a newline; the last one may lack it
    if "\r" in text:
        lone = _lone_carriage_return(text, file)
        if lone is not None:
            return None, [lone]
    lark = parser()
    with _PARSING:  # one parse at a time: the builder holds this parse's state
        _BUILDER.begin(file, text, _keyword_terminals())
        try:
            items = lark.parse(text)
        except UnexpectedInput as exc:
            return None, [_syntax_error(exc, text, file)]
        comments, diagnostics, glued = _BUILDER.end()
    if glued:
        return None, [_glued_keyword(min(glued, key=lambda t: t.start_pos), text, file)]
    comments = tuple(sorted(comments, key=lambda c: (c.line, c.column)))
    return ast.Document(file, tuple(items), comments), diagnostics


def _syntax_error(exc: UnexpectedInput, text: str, file: str) -> Diagnostic:
    message, line, column, width = describe_unexpected(exc, text, parser())
    real = _foreign(file)
    if real is not None and (line, column) == _first_token(text):
        # Not a manifest at all (`import "/proc/self/environ"`, a planted link to a key):
        # quoting its first line would print someone's secrets into a CI log.  No span, so
        # no excerpt; an import is located at its `import` line by the caller (resolve).
        links = f" (a link to {real})" if real != os.path.abspath(file) else ""
        return error(f"{file}{links} is not a manifest: it does not begin with import, "
                     "template or vm and is no .sevm file; none of its text is shown",
                     fatal_input=True)
    span = Span(file, line, column, line, column + max(width, 1))
    return error(message, span, fatal_input=True)


# (a pattern string: compiled on the first syntax error, not at every start-up)
_LEADING_BLANKS = r"(?:[ \t]*(?:#[^\n]*)?\r?\n)*([ \t]*)"


def _first_token(text: str) -> tuple[int, int]:
    """(line, column) of the first thing in ``text`` that is not a blank line or comment."""
    match = re.match(_LEADING_BLANKS, text)
    return text.count("\n", 0, match.start(1)) + 1, len(match.group(1)) + 1


def _lone_carriage_return(text: str, file: str) -> Diagnostic | None:
    """A carriage return without a line feed, also inside a comment or a string, where the
    grammar would take it: a terminal returns to the start of the line there, so a comment
    could hide the statement after it from a reviewer ("debug allow  #\rdebug deny")."""
    at = text.find("\r")
    while at != -1 and text.startswith("\r\n", at):
        at = text.find("\r", at + 2)
    if at == -1:
        return None
    line_start = text.rfind("\n", 0, at) + 1
    line, column = text.count("\n", 0, at) + 1, at - line_start + 1
    return error("a carriage return without a line feed: lines must end with \\n or \\r\\n",
                 Span(file, line, column, line, column + 1), fatal_input=True)


def _foreign(file: str) -> str | None:
    """The real path of a file whose real name does not say it is a manifest; None for a
    .sevm file and for stdin (the user's own)."""
    if file == "-":
        return None
    real = os.path.realpath(file)
    return None if real.endswith(".sevm") else real


def _glued_keyword(token: Token, text: str, file: str) -> Diagnostic:
    """Keywords are words: Lark's keyword terminals have no word boundary, so "typesev-es"
    and "vcpus4" would otherwise read as "type sev-es" and "vcpus 4"."""
    word = _GLUED.match(text, token.start_pos).group(0)
    span = Span(file, token.line, token.column, token.line, token.column + len(word))
    return error(f"unknown word {word!r}: write a space after {str(token)!r}", span,
                 fatal_input=True)


_GLUED = re.compile(r"[\w-]+")


@lru_cache(maxsize=1)
def _keyword_terminals() -> frozenset[str]:
    return frozenset(t.name for t in parser().terminals if t.pattern.type == "str"
                     and t.pattern.value[0].isalpha())


def _is_glued(token: Token, text: str) -> bool:
    end = token.end_pos
    return end < len(text) and (text[end].isalnum() or text[end] in "_-")


def _span(file: str, first: Token, last: Token) -> Span:
    return Span(file, first.line, first.column, last.end_line, last.end_column)


class _Builder(Transformer):
    """Turns each rule Lark reduces into ``ast`` nodes (Lark calls the method named after
    the rule with its children).  Collects comments, string-escape errors and keywords
    glued to the next word.  One instance is bound into the parser; ``begin`` and ``end``
    bracket each parse, under ``_PARSING``."""

    def __init__(self):
        super().__init__(visit_tokens=False)
        self.begin("", "", frozenset())

    def begin(self, file: str, text: str, keywords: frozenset[str]) -> None:
        self.file = file
        self.text = text
        self.keywords = keywords
        self.comments: list[ast.Comment] = []
        self.diagnostics: list[Diagnostic] = []
        self.glued: list[Token] = []

    def end(self) -> tuple[list[ast.Comment], list[Diagnostic], list[Token]]:
        """This parse's comments, diagnostics and glued keywords; the builder lets go of
        the parsed text."""
        found = self.comments, self.diagnostics, self.glued
        self.begin("", "", frozenset())
        return found

    def __getattr__(self, rule: str):
        # Lark looks up one method per rule; a statement without its own builds a setting
        key = None if rule.startswith("_") else _statement_key(rule)
        if key is None:  # Lark then keeps the rule as a Tree: pin and disk_format, and the
            raise AttributeError(rule)  # _inlined rules, which it merges into their parents
        return lambda children: self._setting(key, children)

    # ---- helpers ------------------------------------------------------------------
    def _tokens(self, children) -> list[Token]:
        out = []
        for child in children:
            if isinstance(child, Token):
                kind = child.type
                if kind != "_NL":
                    out.append(child)
                    if kind in self.keywords and _is_glued(child, self.text):
                        self.glued.append(child)
                elif "#" in child:  # most newlines carry no comment
                    self._collect_comments(child)
            elif isinstance(child, Tree):
                out += self._tokens(child.children)
        return out

    def _collect_comments(self, token: Token) -> None:
        line = token.line
        column = token.column
        for raw in token.value.split("\n"):
            stripped = raw.lstrip(" \t")
            if stripped.startswith("#"):
                col = column + (len(raw) - len(stripped))
                self.comments.append(ast.Comment(line, col, stripped.rstrip("\r")))
            line += 1
            column = 1

    def _value(self, token: Token) -> ast.Value:
        span = Span(self.file, token.line, token.column, token.end_line, token.end_column)
        kind = token.type
        text = token.value  # the token's text as a plain str
        if kind == "STRING":
            data, problems = decode_string(text, span)
            if problems:
                self.diagnostics.extend(problems)
            return ast.Value("string", data, text, span)
        if kind == "INT":
            return ast.Value("int", self._number(text, span), text, span)
        if kind == "SIZE":
            digits, unit = _SIZE.fullmatch("".join(text.split())).groups()
            size = self._number(digits, span) * _UNITS[unit[0]]
            return ast.Value("size", size, digits + unit, span)
        if kind == "VERSION":
            major, minor = (self._number(part, span) for part in text.split("."))
            return ast.Value("version", (major, minor), text, span)
        return ast.Value("word", text, text, span)

    def _number(self, text: str, span: Span) -> int:
        # Python refuses to convert decimal strings of more than 4300 digits (and every
        # setting's range ends far below 100 digits), so longer literals stop here.
        digits = text.replace("_", "")
        count = len(digits) - 2 if digits[:2] in ("0x", "0X") else len(digits)
        if count > MAX_NUMBER_DIGITS:
            self.diagnostics.append(error(f"number too long: {count} digits (at most "
                                          f"{MAX_NUMBER_DIGITS})", span, fatal_input=True))
            return 0
        if digits[:2] in ("0x", "0X"):
            return int(digits[2:], 16)
        return int(digits, 10)  # base 10, not 0: a leading zero ("08") is decimal, not an error

    def _setting(self, key: str | None, children, *, options=("sha256", "format")):
        tokens = self._tokens(children)
        first, last = tokens[0], tokens[-1]
        if key is None:  # keyed by its first token (policy fields)
            key = first.value
        span = Span(self.file, first.line, first.column, last.end_line, last.end_column)
        values, opts, pending = [], [], None
        for token in tokens[1:]:
            kind = token.type
            if kind == "COMMA":
                continue
            if kind not in _VALUE_TOKENS and token.value in options:
                pending = token.value
                continue
            value = self._value(token)
            if pending:
                opts.append((pending, value))
                pending = None
            else:
                values.append(value)
        key_span = Span(self.file, first.line, first.column, first.end_line, first.end_column)
        return ast.Setting(key, self._bounded(key, values), tuple(opts), span, key_span)

    def _bounded(self, key: str, values) -> tuple[ast.Value, ...]:
        # every list value is one matrix dimension (or one QEMU argument); bounding the
        # length bounds the work and the number of diagnostics a list can cause
        if len(values) > MAX_LIST_VALUES:
            self.diagnostics.append(error(f"{key} lists more than {MAX_LIST_VALUES} values",
                                          values[MAX_LIST_VALUES].span, fatal_input=True))
        return tuple(values[:MAX_LIST_VALUES])

    # ---- top level -----------------------------------------------------------------
    def start(self, children):
        self._tokens([c for c in children if isinstance(c, Token)])
        return [c for c in children if isinstance(c, (ast.Import, ast.Decl))]

    def import_stmt(self, children):
        tokens = self._tokens(children)
        value = self._value(tokens[1])
        return ast.Import(_text(value), _span(self.file, tokens[0], tokens[-1]), value.text)

    def _decl(self, kind: str, children):
        head = [c for c in children if isinstance(c, Token) and c.type != "_NL"]
        self._tokens([c for c in children if isinstance(c, Token)])  # comments
        name = self._value(head[1])
        # (the nodes are named tuples too: only the plain tuple extends() builds is wanted)
        extends = next((c for c in children if type(c) is tuple and c[0] == "extends"), None)
        body = tuple(c for c in children if isinstance(c, (ast.Setting, ast.Block)))
        closing = head[-1]
        return ast.Decl(kind, _text(name), name.span, extends[1] if extends else None,
                        extends[2] if extends else None, body,
                        _span(self.file, head[0], closing), closing.line,
                        name.text, extends[3] if extends else "")

    def vm_decl(self, children):
        return self._decl("vm", children)

    def template_decl(self, children):
        return self._decl("template", children)

    def extends(self, children):
        tokens = self._tokens(children)
        value = self._value(tokens[1])
        return ("extends", _text(value), value.span, value.text)

    # ---- blocks --------------------------------------------------------------------
    def _block(self, key: str, children):
        head = [c for c in children if isinstance(c, Token) and c.type != "_NL"]
        self._tokens([c for c in children if isinstance(c, Token)])
        settings = tuple(c for c in children if isinstance(c, ast.Setting))
        return ast.Block(key, settings, _span(self.file, head[0], head[-1]), head[-1].line)

    def host_block(self, children):
        return self._block("host", children)

    def policy_block(self, children):
        return self._block("policy", children)

    def launch_block(self, children):
        return self._block("launch", children)

    # ---- settings ------------------------------------------------------------------
    def policy_field(self, children):
        return self._setting(None, children)

    def policy_raw(self, children):
        return self._setting("policy", children)

    def cpu_stmt(self, children):
        keyword = self._tokens(children)[0]  # also collects the trailing comment
        values = tuple(c for c in children if isinstance(c, ast.Value))
        end = values[-1].span
        span = Span(self.file, keyword.line, keyword.column, end.end_line, end.end_column)
        return ast.Setting("cpu", self._bounded("cpu", values), (), span,
                           _span(self.file, keyword, keyword))

    def cpu_name(self, children):
        value = self._value(self._tokens(children)[0])
        return ast.Value("cpu", ("name", _text(value)), value.text, value.span)

    def cpu_fms(self, children):
        tokens = self._tokens(children)
        numbers = [self._value(t) for t in tokens if t.type == "INT"]
        text = "family {} model {} stepping {}".format(*(n.text for n in numbers))
        payload = ("fms", tuple(n.value for n in numbers))
        return ast.Value("cpu", payload, text, _span(self.file, tokens[0], tokens[-1]))

    def cpu_signature(self, children):
        tokens = self._tokens(children)
        number = self._value(tokens[1])
        return ast.Value("cpu", ("signature", number.value), f"signature {number.text}",
                         _span(self.file, tokens[0], tokens[-1]))


def _statement_key(rule: str) -> str | None:
    """The setting a ``*_stmt`` rule without a method of its own builds ("kernel-hashes")."""
    return rule[: -len("_stmt")].replace("_", "-") if rule.endswith("_stmt") else None


def _text(value: ast.Value) -> str:
    """A string value as text (names and paths); bytes that are not UTF-8 are escaped."""
    data = value.value
    return data.decode("utf-8", "surrogateescape") if isinstance(data, bytes) else str(data)


_UNITS = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
# The shortest number that leaves a unit: "0x1BM" is 0x1B MiB (B is a hex digit).
_SIZE = re.compile(r"(.+?)(KiB|MiB|GiB|TiB|K|M|G|T)")
MAX_NUMBER_DIGITS = 100
MAX_LIST_VALUES = 512  # the most vCPUs (lower.MAX_VCPUS); no other list comes near it

_BUILDER = _Builder()
_PARSING = threading.Lock()  # (parsing holds the GIL throughout: the lock costs no speed)
# A fork while another thread parses would give the child a lock held for good (and a half
# built parse): forks wait for the parse to end (``sevm lock``'s workers parse).
os.register_at_fork(before=_PARSING.acquire, after_in_parent=_PARSING.release,
                    after_in_child=_PARSING.release)


__all__ = ["parse_text", "parser", "UnexpectedCharacters", "UnexpectedEOF", "UnexpectedToken"]
