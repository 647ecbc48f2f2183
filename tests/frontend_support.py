"""Helpers for the front-end tests: compiling snippets, asserting located diagnostics,
running the CLI, and the outcome rules every fuzz case must satisfy."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from sevmanifest.diagnostics import Diagnostic, Severity, cap_for_display, format_diagnostic
from sevmanifest.frontend import Compilation, compile_file, compile_text
from sevmanifest.frontend.compile import MAX_DIAGNOSTICS
from sevmanifest.frontend.fmt import format_document
from sevmanifest.frontend.parse import parse_text
from sevmanifest.frontend.source import read_source

REPO = Path(__file__).resolve().parent.parent
PIN = "ab" * 32  # a well-formed sha256 pin (no file behind it: the front end never reads it)

# The smallest vm that compiles without errors (warnings aside).
MINIMAL = 'vm "a" {\n    firmware "fw.fd"\n}\n'


def vm(*lines: str, name: str = "a", head: str = "") -> str:
    """A vm with firmware plus ``lines`` (each one statement or block line)."""
    body = "".join(f"    {line}\n" for line in ("firmware \"fw.fd\"",) + lines)
    return f'{head}vm "{name}" {{\n{body}}}\n'


def write(directory: Path, name: str, content: str | bytes) -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        content = content.encode("utf-8")
    path.write_bytes(content)
    return path


def compile_files(directory: Path, files: dict[str, str | bytes], root: str = "m.sevm") -> Compilation:
    """Write ``files`` under ``directory`` and compile ``root``."""
    for name, content in files.items():
        write(directory, name, content)
    return compile_file(str(directory / root))


def errors(result: Compilation) -> list[Diagnostic]:
    return [d for d in result.diagnostics if d.is_error]


def warnings(result: Compilation) -> list[Diagnostic]:
    return [d for d in result.diagnostics if d.severity is Severity.WARNING]


def find(result: Compilation, fragment: str, *, severity: str = "error") -> Diagnostic:
    """The one diagnostic of ``severity`` whose message contains ``fragment``."""
    found = [d for d in result.diagnostics
             if d.severity.value == severity and fragment in d.message]
    shown = "\n".join(format_diagnostic(d, result.sources) for d in result.diagnostics)
    assert len(found) == 1, f"{len(found)} {severity}s with {fragment!r} in:\n{shown}"
    return found[0]


def assert_diag(result: Compilation, fragment: str, line: int, column: int, *,
                severity: str = "error", file: str | None = None, end_column: int | None = None,
                fatal: bool | None = None) -> Diagnostic:
    """Exactly one diagnostic with ``fragment``, at ``line:column`` (of ``file``)."""
    d = find(result, fragment, severity=severity)
    assert d.span is not None, d
    assert (d.span.line, d.span.column) == (line, column), format_diagnostic(d, result.sources)
    if file is not None:
        assert d.span.file == file, d.span
    if end_column is not None:
        assert d.span.end_column == end_column, format_diagnostic(d, result.sources)
    if fatal is not None:
        assert d.fatal_input is fatal, d
    text = format_diagnostic(d, result.sources)
    assert text.startswith(f"{d.span.file}:{line}:{column}: {severity}"), text
    return d


def fmt(text: str, path: str = "m.sevm") -> str:
    document, problems = parse_text(text, path)
    assert document is not None and not any(p.is_error for p in problems), problems
    return format_document(document, text)


def sevm(*args: str, cwd: Path | None = None, stdin: bytes | None = None,
         timeout: float = 60) -> subprocess.CompletedProcess:
    """Run the CLI as ``python -m sevmanifest`` (the interpreter running the tests)."""
    return subprocess.run([sys.executable, "-m", "sevmanifest", *args], cwd=cwd, input=stdin,
                          capture_output=True, timeout=timeout, env=_env())


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("SEVM_DEBUG", None)  # the CLI must never show a traceback, debug or not
    env["PYTHONIOENCODING"] = "utf-8"
    return env


# ---- the outcome rule of every fuzz case --------------------------------------------
_POSITION = re.compile(r":\d+:\d+")


def check_outcome(result: Compilation) -> None:
    """A result or located diagnostics: never an exception (the caller got here), every
    diagnostic printable and located inside its file, output bounded."""
    assert isinstance(result, Compilation)
    if result.manifest is None:
        assert errors(result), "no manifest and no error"
    assert len(errors(result)) <= MAX_DIAGNOSTICS  # warnings: a few per vm, all kept
    assert len(cap_for_display(result.diagnostics)) <= MAX_DIAGNOSTICS + 2  # what is printed
    for d in result.diagnostics:
        text = format_diagnostic(d, result.sources)
        if d.severity is Severity.NOTE:
            continue
        assert d.span is not None, f"diagnostic without a location: {text}"
        assert d.span.line >= 1 and d.span.column >= 1, text
        assert text.startswith(f"{d.span.file}:{d.span.line}:{d.span.column}: "), text
        source = result.sources.texts.get(d.span.file)
        if source is not None:
            assert d.span.line <= source.count("\n") + 1, text
            assert d.span.column <= len(source.split("\n")[d.span.line - 1]) + 2, text
            assert f"\n{d.span.line:>5} | " in text, f"no source excerpt: {text}"
    assert "Traceback" not in "".join(d.message for d in result.diagnostics)


def check_fmt_keeps_meaning(path: str) -> bool:
    """When the root manifest parses: formatting is idempotent, and the formatted text
    compiles to an equal model with the same diagnostics (positions aside).  Returns
    whether the file parsed."""
    text, problem = read_source(path)
    if problem is not None:
        return False
    document, problems = parse_text(text, path)
    if document is None or any(p.is_error for p in problems):
        return False
    formatted = format_document(document, text)
    again, problems2 = parse_text(formatted, path)
    assert again is not None and not problems2, (formatted, problems2)
    assert format_document(again, formatted) == formatted, "fmt is not idempotent"
    before, after = compile_text(text, path), compile_text(formatted, path)
    assert before.manifest == after.manifest, "fmt changed the compiled model"
    assert _messages(before) == _messages(after), "fmt changed the diagnostics"
    return True


def _messages(result: Compilation) -> list[tuple]:
    return sorted((d.severity.value, d.rule or "", _POSITION.sub(":L:C", d.message))
                  for d in result.diagnostics)
