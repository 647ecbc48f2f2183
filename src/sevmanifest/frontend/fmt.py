"""The canonical layout of a manifest, printed from its syntax tree.

Rules: four-space indentation; one space between a keyword and its values; lists joined
with ", "; one blank line between top-level declarations; at most one blank line kept
where the source had some; comments kept, on their own line or after a statement, as
written.  Values are printed from their source text, so formatting never changes what a
manifest means (the test suite checks that the compiled model is unchanged).
"""
from __future__ import annotations

from collections import deque

from . import ast

INDENT = "    "


class _Printer:
    def __init__(self, document: ast.Document, source: str):
        self.comments = deque(document.comments)  # sorted by position, consumed in order
        # split("\n"), not splitlines(): the parser counts only "\n" as a line break, and a
        # comment may contain \f, \x85 or U+2028
        self.blank = {i + 1 for i, line in enumerate(source.split("\n")) if not line.strip(" \t\r")}
        self.out: list[str] = []
        self.opened = False  # the last line opened a block: no blank line after it

    def _emit(self, depth: int, text: str, *, opens: bool = False) -> None:
        self.out.append(f"{INDENT * depth}{text}".rstrip())
        self.opened = opens

    def _blank_line(self) -> None:
        # (a trailing comment on the "{" line used to defeat an endswith("{") test)
        if self.out and self.out[-1] != "" and not self.opened:
            self.out.append("")

    def leading(self, line: int, depth: int, force_blank: bool = False) -> None:
        """Own-line comments before ``line``, with the blank lines the source had."""
        # the comments are sorted, so the first remaining one is the earliest (a min() over
        # all of them made formatting quadratic: 7 s for 17 000 comments)
        first = self.comments[0].line if self.comments and self.comments[0].line < line else line
        if force_blank or first - 1 in self.blank:
            self._blank_line()
        while self.comments and self.comments[0].line < line:
            comment = self.comments.popleft()
            if comment.line - 1 in self.blank and comment.line != first:
                self._blank_line()
            self._emit(depth, comment.text)
        if line - 1 in self.blank and first != line:
            self._blank_line()

    def trailing(self, line: int) -> str:
        if self.comments and self.comments[0].line == line:
            return "  " + self.comments.popleft().text
        return ""

    def opening(self, line: int, items) -> str:
        """The comment after a "{", unless a statement follows the "{" on its line: the
        comment trails that statement (`vm "a" { policy { debug allow  # why`)."""
        return "" if items and items[0].span.line == line else self.trailing(line)

    def setting(self, s: ast.Setting, depth: int) -> None:
        self.leading(s.span.line, depth)
        parts = [s.key]
        if s.values:
            parts.append(", ".join(v.text for v in s.values))
        parts.extend(f"{name} {value.text}" for name, value in s.options)
        self._emit(depth, " ".join(parts) + self.trailing(s.span.end_line))

    def block(self, b: ast.Block, depth: int) -> None:
        self.leading(b.span.line, depth)
        self._emit(depth, f"{b.key} {{" + self.opening(b.span.line, b.settings), opens=True)
        for s in b.settings:
            self.setting(s, depth + 1)
        self.close(b.end_line, depth)

    def close(self, end_line: int, depth: int) -> None:
        while self.comments and self.comments[0].line < end_line:
            self._emit(depth + 1, self.comments.popleft().text)
        self._emit(depth, "}" + self.trailing(end_line))

    def decl(self, d: ast.Decl, first: bool) -> None:
        self.leading(d.span.line, 0, force_blank=not first)
        head = f"{d.kind} {d.name_text}"
        if d.extends is not None:
            head += f" extends {d.extends_text}"
        self._emit(0, head + " {" + self.opening(d.span.line, d.body), opens=True)
        for item in d.body:
            (self.block if isinstance(item, ast.Block) else self.setting)(item, 1)
        self.close(d.end_line, 0)

    def document(self, document: ast.Document) -> str:
        previous = None
        for item in document.items:
            if isinstance(item, ast.Import):
                self.leading(item.span.line, 0, force_blank=isinstance(previous, ast.Decl))
                self._emit(0, f"import {item.text}" + self.trailing(item.span.line))
            else:
                self.decl(item, first=previous is None)
            previous = item
        if self.comments:
            self.leading(10**9, 0)
        while self.out and self.out[-1] == "":
            self.out.pop()
        return "\n".join(self.out) + "\n" if self.out else ""


def format_document(document: ast.Document, source: str) -> str:
    """The canonical text of ``document`` (parsed from ``source``)."""
    return _Printer(document, source).document(document)
