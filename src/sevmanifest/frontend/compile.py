"""The front end as one call: ``compile_file(path) -> Compilation``."""
from __future__ import annotations

import os

from ..diagnostics import (MAX_DIAGNOSTICS, Diagnostic, SourceCache, by_position, error,
                           left_out_note)
from ..model import Manifest, Span
from . import ast
from .lint import lint
from .lower import lower_vm
from .resolve import Loaded, load, resolve

__all__ = ["MAX_DIAGNOSTICS", "Compilation", "compile_file", "compile_text"]


class Compilation:
    """The front end's result: the manifest (None when it could not be built), every
    diagnostic, the source texts (for carets) and the syntax trees by file name."""

    def __init__(self, manifest: Manifest | None, diagnostics: list[Diagnostic],
                 sources: SourceCache, documents: dict[str, ast.Document]):
        self.manifest = manifest
        self.diagnostics = diagnostics
        self.sources = sources
        self.documents = documents

    @property
    def ok(self) -> bool:
        return self.manifest is not None and not any(d.is_error for d in self.diagnostics)


def compile_file(path: str | os.PathLike, *, lint_rules: bool = True) -> Compilation:
    """Compile the manifest at ``path`` (a ``str`` or ``os.PathLike``; ``-`` reads standard
    input)."""
    path = os.fspath(path)  # the model and every diagnostic name files as str
    gone = _working_directory_gone(path)
    if gone is not None:
        return Compilation(None, [gone], SourceCache({}), {})
    return _compile(load(path), path, lint_rules)


def _working_directory_gone(path: str) -> Diagnostic | None:
    """Relative paths resolve against the working directory; when it was removed, every
    ``os.path.abspath`` on the way would raise FileNotFoundError."""
    if os.path.isabs(path):
        return None
    try:
        os.getcwd()
    except FileNotFoundError:
        return error(f"cannot read {path}: the working directory no longer exists",
                     fatal_input=True)
    return None


def compile_text(text: str, path: str | os.PathLike = "<string>", *,
                 lint_rules: bool = True) -> Compilation:
    """Compile manifest text; imports and artefact paths are relative to ``path``."""
    path = os.fspath(path)
    return _compile(load(path, text=text), path, lint_rules)


def _compile(loaded: Loaded, path: str, lint_rules: bool) -> Compilation:
    result = Compilation(None, list(loaded.diagnostics), SourceCache(dict(loaded.sources)),
                         dict(loaded.documents))
    if loaded.root is None or any(d.fatal_input for d in result.diagnostics):
        result.diagnostics = _capped(result.diagnostics)
        return result
    resolved, problems = resolve(loaded)
    result.diagnostics.extend(problems)
    vms = []
    for item in resolved:
        vm, vm_problems = lower_vm(item, path)
        result.diagnostics.extend(vm_problems)
        if vm is not None:
            vms.append(vm)
            if lint_rules:
                result.diagnostics.extend(lint(vm))
    if not loaded.root.items:
        result.diagnostics.append(error("empty manifest: it declares no vm, template or import",
                                        Span(path, 1, 1, 1, 1)))
    result.manifest = Manifest(path, tuple(vms))
    result.diagnostics = _capped(sorted(result.diagnostics, key=by_position))
    return result


def _capped(diagnostics: list[Diagnostic]) -> list[Diagnostic]:
    """At most MAX_DIAGNOSTICS errors (fatal ones first: they set the exit status), then a
    note with the number left out.  Warnings are all kept (a few per vm): the lint
    configuration may raise one to an error or disable others, so which to show is decided
    after it (``cap_for_display``)."""
    errors = [d for d in diagnostics if d.is_error]
    if len(errors) <= MAX_DIAGNOSTICS:
        return diagnostics
    kept = sorted(errors, key=lambda d: not d.fatal_input)[:MAX_DIAGNOSTICS]
    rest = [d for d in diagnostics if not d.is_error]
    return sorted(kept + rest, key=by_position) + [left_out_note(len(errors) - MAX_DIAGNOSTICS)]

