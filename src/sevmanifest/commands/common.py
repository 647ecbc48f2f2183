"""Helpers shared by the sub-commands: loading manifests, printing diagnostics, picking VMs."""
from __future__ import annotations

import sys
from collections.abc import Iterable

from ..diagnostics import (Diagnostic, DiagnosticError, SourceCache, cap_for_display, error,
                           format_diagnostic)
from ..model import VM, Manifest

_SOURCES = SourceCache()
READ_ENTRY = object()  # _compiled(): look the cache entry up (none was read before)
# lock.guard bounds one vm at 10,000 variants; many vms extending one template could still
# expand a small manifest to millions (60 × 10,000 took 38 s and 1.6 GB in `sevm measure`).
MAX_MANIFEST_VARIANTS = 50_000


def bytes_safe_output() -> None:
    """Let stdout and stderr carry undecodable path bytes as the bytes they are.

    A manifest may name a file whose name is not UTF-8 (``"fw\\xff.fd"``); the front end
    keeps such bytes as surrogate escapes, which a strict UTF-8 stream (a UTF-8 locale other
    than C.UTF-8) refuses with UnicodeEncodeError.  ``surrogateescape`` writes the original
    bytes back, as ``ls`` would.
    """
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None and getattr(stream, "errors", None) == "strict":
            try:
                reconfigure(errors="surrogateescape")
            except (ValueError, OSError):  # pragma: no cover - an unusual stream
                pass


def path_argument(text: str) -> str:
    """An argparse ``type`` for a path: an empty one (``-o "$OUT"`` with OUT unset) is a usage
    error, not a silent fallback to standard output or to no output at all; an empty input
    path (``sevm check "$FILE"``) is one too, not "not found" naming the working directory."""
    if not text:
        import argparse
        raise argparse.ArgumentTypeError("an empty path")
    return text


def integer(low: int, high: int | None = None):
    """An argparse ``type`` for an integer (decimal or 0x hex) in ``low..high``."""
    import argparse

    def parse(text: str) -> int:
        try:
            value = int(text, 0)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if high is None and value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        if high is not None and not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text} is not in {low}..{high}")
        return value
    return parse


def print_diagnostics(diagnostics: Iterable[Diagnostic], sources: SourceCache | None = None) -> None:
    for d in diagnostics:
        print(format_diagnostic(d, sources or _SOURCES), file=sys.stderr)


def compile_manifest(path: str, *, firmware_checks: bool = False):
    """Compile one manifest; returns (manifest or None, diagnostics with lint config applied).

    An unchanged manifest comes from the compiled-manifest cache (``compilecache``)."""
    manifest, diagnostics = _compiled(path)
    return manifest, _checked(path, manifest, diagnostics, firmware_checks)


def compile_deferring_store(path: str, entry=READ_ENTRY):
    """``compile_manifest`` for ``sevm lock``: (manifest, diagnostics, PendingEntry or None).
    A compiled manifest is written to the cache only when ``.store(lock=...)`` is called, once
    its lock exists, so the entry can carry what a later run may reuse (``lock.reuse``)
    without being written twice.  None: nothing to store (caching is off, or errors).
    ``entry``: the cache's ``valid_entry(path)`` when the caller has read it (None: a miss),
    ``READ_ENTRY`` to look it up here."""
    pending = []
    manifest, diagnostics = _compiled(path, pending=pending, entry=entry)
    return manifest, _checked(path, manifest, diagnostics, False), \
        (pending[0] if pending else None)


def _checked(path: str, manifest: Manifest | None, diagnostics: list[Diagnostic],
             firmware_checks: bool) -> list[Diagnostic]:
    ok = manifest is not None and not any(d.is_error for d in diagnostics)
    diagnostics = _apply_lint_config(path, diagnostics)
    if ok:
        # every command that measures, renders or locks enumerates the matrix: bound it here
        diagnostics += matrix_diagnostics(manifest)
    if firmware_checks and ok:
        diagnostics += _firmware_diagnostics(manifest)
    # capped only now: a warning the configuration raises to an error must not have been
    # cut off among hundreds of others (a debug-allowed vm then passed with exit 0)
    return cap_for_display(diagnostics)


def _compiled(path: str, pending: list | None = None,
              entry=READ_ENTRY) -> tuple[Manifest | None, list[Diagnostic]]:
    """The front end's result before lint configuration: from the cache, or compiled (and
    then stored; with ``pending``, a PendingEntry that stores it is appended there instead).
    ``entry``: as for ``compile_deferring_store``."""
    from ..compilecache import open_compile_cache
    cache = open_compile_cache() if path != "-" else None
    hit = None
    if cache is not None:
        hit = cache.lookup(path) if entry is READ_ENTRY else cache.lookup(path, entry)
    if hit is not None:
        manifest, diagnostics, sources = hit
        _SOURCES.texts.update(sources)
        if pending is not None:
            pending.append(PendingEntry(cache, path, manifest, diagnostics, sources, True))
        return manifest, diagnostics
    from ..frontend import compile_file
    result = compile_file(path)
    _SOURCES.texts.update(result.sources.texts)
    if cache is not None and result.ok:
        entry = PendingEntry(cache, path, result.manifest, list(result.diagnostics),
                             result.sources.texts, False)
        if pending is not None:
            pending.append(entry)
        else:
            entry.store()
    return result.manifest, list(result.diagnostics)


class PendingEntry:
    """A compiled manifest the cache has (``stored``) or will have once ``store`` is called."""

    def __init__(self, cache, path: str, manifest: Manifest, diagnostics: list[Diagnostic],
                 sources: dict[str, str], stored: bool):
        self._cache, self._path, self._sources, self._stored = cache, path, sources, stored
        self.manifest = manifest
        self.diagnostics = diagnostics  # before lint configuration

    def store(self, lock: dict | None = None) -> None:
        """Write the entry (with ``lock``, what ``sevm lock`` may reuse); an entry already
        stored is rewritten only to add that."""
        if lock is not None or not self._stored:
            self._cache.store(self._path, self.manifest, self.diagnostics, self._sources,
                              lock=lock)
            self._stored = True


def compile_and_report(path: str, *, firmware_checks: bool = False) -> list[Diagnostic]:
    """Compile one manifest and print every diagnostic; returns them."""
    _, diagnostics = compile_manifest(path, firmware_checks=firmware_checks)
    print_diagnostics(diagnostics)
    return diagnostics


def load_manifest(path: str, *, quiet_warnings: bool = False) -> Manifest:
    """Compile one manifest; print its warnings; raise DiagnosticError on errors."""
    manifest, diagnostics = compile_manifest(path)
    if manifest is None or any(d.is_error for d in diagnostics):
        raise DiagnosticError(diagnostics)
    if not quiet_warnings:
        print_diagnostics(diagnostics)
    return manifest


# lint configuration by directory, for one run (cli.main and lock.batch clear it): `sevm
# lock` over a repository looks it up once per directory instead of once per manifest
_LINT_CONFIGS: dict[str, object] = {}


def forget_lint_configs() -> None:
    """A new run: configuration files are read again (they may have been edited)."""
    _LINT_CONFIGS.clear()


def _apply_lint_config(path: str, diagnostics: list[Diagnostic]) -> list[Diagnostic]:
    import os
    directory = os.path.dirname(os.path.abspath(path)) if path != "-" else os.getcwd()
    config = _LINT_CONFIGS.get(directory)
    if config is None:
        from pathlib import Path

        from ..review.lintconfig import load_lint_config
        config = _LINT_CONFIGS[directory] = load_lint_config(Path(directory))
    return list(config.apply(list(diagnostics)))


def matrix_diagnostics(manifest: Manifest) -> list[Diagnostic]:
    """An error for each vm whose matrix exceeds lock.guard.MAX_VARIANTS variants, or one
    for the manifest when all its vms together exceed MAX_MANIFEST_VARIANTS."""
    from ..lock.guard import check_matrix_size
    problems = [d for d in map(check_matrix_size, manifest.vms) if d is not None]
    total = sum(vm.variant_count() for vm in manifest.vms)
    if not problems and total > MAX_MANIFEST_VARIANTS:
        problems.append(error(
            f"{manifest.file}: its {len(manifest.vms):,} vms expand to {total:,} variants "
            f"together, more than the limit of {MAX_MANIFEST_VARIANTS:,} per manifest",
            manifest.vms[0].span, notes=("every variant is a launch digest an attestation "
                                         "service would accept; split the fleet into several "
                                         "manifests",)))
    return problems


def _firmware_diagnostics(manifest: Manifest) -> list[Diagnostic]:
    """Checks that need the firmware's bytes (footer table), without hashing anything."""
    try:
        from ..measure.firmware_checks import firmware_diagnostics
    except ImportError:
        return []
    return [d for vm in manifest.vms for d in firmware_diagnostics(vm)]


def select_vms(manifest: Manifest, name: str | None) -> list[VM]:
    if name is None:
        return list(manifest.vms)
    for vm in manifest.vms:
        if vm.name == name:
            return [vm]
    known = ", ".join(vm.name for vm in manifest.vms) or "none"
    raise DiagnosticError(error(f"{manifest.file}: no vm named {name!r} (vms in this file: {known})",
                                fatal_input=True))
