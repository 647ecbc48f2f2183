"""The syntax tree: what a manifest says, with source spans, before any meaning is given.

Settings are kept generic (a key, comma-separated values, trailing options) so that the
resolver can merge them and the formatter can print them without a case per setting;
the grammar has already checked each setting's shape.

Nodes are named tuples, not dataclasses: they exist only where Lark is loaded (which imports
``typing`` anyway), are never changed after the parse, and creating seven frozen dataclasses
cost ~9 ms of every parse's start-up against ~2 ms for these (``sevm check`` of an edited
manifest is start-up more than anything).
"""
from __future__ import annotations

from typing import NamedTuple

from ..model import Span


class Value(NamedTuple):
    kind: str  # "string" | "int" | "size" | "word" | "version" | "cpu"
    value: object  # bytes | int | str | (major, minor) | ("name"|"fms"|"signature", payload)
    text: str  # canonical source text of this value
    span: Span


class Setting(NamedTuple):
    key: str
    values: tuple[Value, ...]
    options: tuple[tuple[str, Value], ...]  # e.g. ("sha256", Value) or ("format", Value)
    span: Span  # keyword to end of the statement
    key_span: Span

    def option(self, name: str) -> Value | None:
        return next((v for k, v in self.options if k == name), None)


class Block(NamedTuple):
    key: str  # "host" | "policy" | "launch"
    settings: tuple[Setting, ...]
    span: Span
    end_line: int  # line of the closing brace (the formatter puts trailing comments there)


class Decl(NamedTuple):
    kind: str  # "vm" | "template"
    name: str
    name_span: Span
    extends: str | None
    extends_span: Span | None
    body: tuple[Setting | Block, ...]
    span: Span
    end_line: int
    name_text: str = ""  # the name and parent as written (quotes and escapes included)
    extends_text: str = ""


class Import(NamedTuple):
    path: str
    span: Span
    text: str = ""  # the path literal as written


class Comment(NamedTuple):
    line: int
    column: int
    text: str  # including the leading '#'


class Document(NamedTuple):
    file: str
    items: tuple[Import | Decl, ...]
    comments: tuple[Comment, ...]
