"""Helpers shared by the sub-commands: loading manifests, printing diagnostics, picking VMs."""
from __future__ import annotations

import sys
from typing import Iterable

from ..diagnostics import Diagnostic, DiagnosticError, SourceCache, error, format_diagnostic
from ..model import VM, Manifest

_SOURCES = SourceCache()


def print_diagnostics(diagnostics: Iterable[Diagnostic], sources: SourceCache | None = None) -> None:
    for d in diagnostics:
        print(format_diagnostic(d, sources or _SOURCES), file=sys.stderr)


def load_manifest(path: str, *, quiet_warnings: bool = False) -> Manifest:
    """Compile one manifest; print its warnings; raise DiagnosticError on errors."""
    from ..frontend import compile_file
    result = compile_file(path)
    _SOURCES.texts.update(result.sources.texts)
    errors = [d for d in result.diagnostics if d.is_error]
    if errors or result.manifest is None:
        raise DiagnosticError(result.diagnostics)
    if not quiet_warnings:
        print_diagnostics(result.diagnostics)
    return result.manifest


def select_vms(manifest: Manifest, name: str | None) -> list[VM]:
    if name is None:
        return list(manifest.vms)
    for vm in manifest.vms:
        if vm.name == name:
            return [vm]
    known = ", ".join(vm.name for vm in manifest.vms) or "none"
    raise DiagnosticError(error(f"{manifest.file}: no vm named {name!r} (vms in this file: {known})",
                                fatal_input=True))
