"""Compiler-style diagnostics: ``file:line:col: error[RULE]: message`` plus the source line
and a caret underline.  Every stage reports problems through these types, so the CLI can
print them uniformly and map them to exit codes."""
from __future__ import annotations

import enum
from .frozen import frozen_dataclass
from .model import Span

EXIT_OK = 0
EXIT_FAILED = 1  # the input was understood and the check failed
EXIT_USAGE = 2  # usage error, or input that cannot be read or parsed


class Severity(enum.Enum):
    ERROR = "error"
    WARNING = "warning"
    NOTE = "note"


@frozen_dataclass
class Diagnostic:
    """One problem or warning, located in the source when it has a place there."""

    severity: Severity
    message: str
    span: Span | None = None
    rule: str | None = None  # stable lint id, e.g. "SEVM101"
    rule_name: str | None = None  # its readable name, e.g. "debug-allowed"
    # True for problems that make the input unreadable/unparseable (exit 2, not 1)
    fatal_input: bool = False
    notes: tuple[str, ...] = ()

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR


def error(message: str, span: Span | None = None, *, fatal_input: bool = False,
          notes: tuple[str, ...] = ()) -> Diagnostic:
    return Diagnostic(Severity.ERROR, message, span, fatal_input=fatal_input, notes=notes)


def warning(rule: str, message: str, span: Span | None = None) -> Diagnostic:
    return Diagnostic(Severity.WARNING, message, span, rule=rule)


class DiagnosticError(Exception):
    """Raised by library functions that cannot produce a result; carries diagnostics."""

    def __init__(self, diagnostics: list[Diagnostic] | Diagnostic):
        if isinstance(diagnostics, Diagnostic):
            diagnostics = [diagnostics]
        self.diagnostics = list(diagnostics)
        super().__init__("; ".join(d.message for d in self.diagnostics))

    @property
    def exit_code(self) -> int:
        return exit_code(self.diagnostics)


def exit_code(diagnostics: list[Diagnostic]) -> int:
    errors = [d for d in diagnostics if d.is_error]
    if any(d.fatal_input for d in errors):
        return EXIT_USAGE
    return EXIT_FAILED if errors else EXIT_OK


class SourceCache:
    """Source texts by file name, for printing the offending line.  (Not a dataclass: every
    command creates this class at start-up, ~1 ms for a dataclass.)"""

    def __init__(self, texts: dict[str, str] | None = None):
        self.texts: dict[str, str] = {} if texts is None else texts

    def line(self, file: str, line: int) -> str | None:
        text = self.texts.get(file)
        if text is None:
            return None
        # Positions count only "\n" (the grammar's newline); str.splitlines() would also
        # break at \f, \x85, U+2028 and a bare \r and show the wrong line.
        lines = text.split("\n")
        return lines[line - 1].rstrip("\r") if 0 < line <= len(lines) else None


# A hostile manifest can make one problem per line; nobody reads past the first few
# hundred, and printing them all (with source excerpts) would be megabytes of output.
MAX_DIAGNOSTICS = 200


def cap_for_display(diagnostics: list[Diagnostic]) -> list[Diagnostic]:
    """What a command prints: at most MAX_DIAGNOSTICS, errors first (fatal ones above
    all), in position order, then the notes of what was left out."""
    left = [d for d in diagnostics if _is_left_out_note(d)]
    found = [d for d in diagnostics if not _is_left_out_note(d)]
    if len(found) > MAX_DIAGNOSTICS:
        ranked = sorted(found, key=lambda d: (not d.fatal_input, not d.is_error))
        left.append(left_out_note(len(found) - MAX_DIAGNOSTICS))
        found = ranked[:MAX_DIAGNOSTICS]
    return sorted(found, key=by_position) + left


def left_out_note(count: int) -> Diagnostic:
    return Diagnostic(Severity.NOTE, f"{count} more diagnostics not shown")


def _is_left_out_note(d: Diagnostic) -> bool:
    return d.span is None and d.severity is Severity.NOTE and d.message.endswith(" not shown")


def by_position(d: Diagnostic):
    """Sort key: file, line, column (diagnostics without a place first)."""
    span = d.span
    return (span.file, span.line, span.column) if span else ("", 0, 0)


def escape_unprintable(text: str, escapes: dict[str, str] | None = None) -> str:
    """``text`` with what a terminal or a CI log would act on (control and format
    characters, line separators, bytes that are not UTF-8) written as manifest escapes:
    a file name holding "\n::error ..." must not become a line of its own in a log."""
    escapes = _CONTROL_ESCAPES if escapes is None else escapes
    if text.isprintable() and not any(c in text for c in escapes):
        return text
    out = []
    for ch in text:
        code = ord(ch)
        if ch in escapes:
            out.append(escapes[ch])
        elif ch.isprintable() or ch == " ":
            out.append(ch)
        elif 0xDC80 <= code <= 0xDCFF:  # a byte that is not UTF-8 (surrogateescape)
            out.append(f"\\x{code - 0xDC00:02x}")
        elif code < 0x80:
            out.append(f"\\x{code:02x}")
        else:
            out.append(f"\\u{{{code:x}}}")
    return "".join(out)


_CONTROL_ESCAPES = {"\n": "\\n", "\t": "\\t"}


def format_diagnostic(d: Diagnostic, sources: SourceCache | None = None) -> str:
    rule = " ".join(x for x in (d.rule, d.rule_name) if x)
    head = d.severity.value + (f"[{rule}]" if rule else "")
    location = (f"{escape_unprintable(d.span.file)}:{d.span.line}:{d.span.column}: "
                if d.span else "")
    out = [f"{location}{head}: {d.message}"]
    if d.span and sources is not None:
        src = sources.line(d.span.file, d.span.line)
        if src is not None:
            out.append(_excerpt(src, d.span))
    out.extend(f"  note: {n}" for n in d.notes)
    return "\n".join(out)


_BLANKED = {c: " " for c in [*range(32), 127, 0x85, 0x2028, 0x2029]}


def _excerpt(src: str, span: Span) -> str:
    # Tabs and other control characters (a bare CR would end the terminal line) are shown
    # as one space each, so the caret stays under the right column.
    shown = src.translate(_BLANKED)
    start = max(span.column - 1, 0)
    if span.end_line == span.line and span.end_column > span.column:
        width = span.end_column - span.column
    else:
        width = max(len(shown) - start, 1)
    width = max(1, min(width, max(len(shown) - start, 1)))
    gutter = f"{span.line:>5} | "
    return f"{gutter}{shown}\n{' ' * (len(gutter) - 2)}| {' ' * start}^{'~' * (width - 1)}"
