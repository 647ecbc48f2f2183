"""The syntax tree: what a manifest says, with source spans, before any meaning is given.

Settings are kept generic (a key, comma-separated values, trailing options) so that the
resolver can merge them and the formatter can print them without a case per setting;
the grammar has already checked each setting's shape.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..model import Span


@dataclass(frozen=True)
class Value:
    kind: str  # "string" | "int" | "size" | "word" | "version" | "cpu"
    value: object  # bytes | int | str | (major, minor) | ("name"|"fms"|"signature", payload)
    text: str  # canonical source text of this value
    span: Span


@dataclass(frozen=True)
class Setting:
    key: str
    values: tuple[Value, ...]
    options: tuple[tuple[str, Value], ...]  # e.g. ("sha256", Value) or ("format", Value)
    span: Span  # keyword to end of the statement
    key_span: Span

    def option(self, name: str) -> Value | None:
        return next((v for k, v in self.options if k == name), None)


@dataclass(frozen=True)
class Block:
    key: str  # "host" | "policy" | "launch"
    settings: tuple[Setting, ...]
    span: Span
    end_line: int  # line of the closing brace (the formatter puts trailing comments there)


@dataclass(frozen=True)
class Decl:
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


@dataclass(frozen=True)
class Import:
    path: str
    span: Span
    text: str = ""  # the path literal as written


@dataclass(frozen=True)
class Comment:
    line: int
    column: int
    text: str  # including the leading '#'


@dataclass(frozen=True)
class Document:
    file: str
    items: tuple[Import | Decl, ...]
    comments: tuple[Comment, ...]
