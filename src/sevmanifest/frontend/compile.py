"""The front end as one call: ``compile_file(path) -> Compilation``."""
from __future__ import annotations


from ..diagnostics import Diagnostic, Severity, SourceCache, error
from ..model import Manifest, Span
from . import ast
from .lint import lint
from .lower import lower_vm
from .resolve import Loaded, load, resolve

# A hostile manifest can make one problem per line; nobody reads past the first few
# hundred, and printing them all (with source excerpts) would be megabytes of output.
MAX_DIAGNOSTICS = 200


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


def compile_file(path: str, *, lint_rules: bool = True) -> Compilation:
    """Compile the manifest at ``path`` (``-`` reads standard input)."""
    return _compile(load(path), path, lint_rules)


def compile_text(text: str, path: str = "<string>", *, lint_rules: bool = True) -> Compilation:
    """Compile manifest text; imports and artefact paths are relative to ``path``."""
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
    result.diagnostics = _capped(sorted(result.diagnostics, key=_order))
    return result


def _capped(diagnostics: list[Diagnostic]) -> list[Diagnostic]:
    """At most MAX_DIAGNOSTICS, errors first (fatal ones above all: they set the exit
    status), then a note with the number left out."""
    if len(diagnostics) <= MAX_DIAGNOSTICS:
        return diagnostics
    ranked = sorted(diagnostics, key=lambda d: (not d.fatal_input, not d.is_error))
    kept = sorted(ranked[:MAX_DIAGNOSTICS], key=_order)
    left = len(diagnostics) - MAX_DIAGNOSTICS
    return kept + [Diagnostic(Severity.NOTE, f"{left} more diagnostics not shown")]


def _order(d: Diagnostic):
    span = d.span
    return (span.file, span.line, span.column) if span else ("", 0, 0)
