"""The two repository-wide operations: write every lock, and check every lock.

These are what ``sevm lock`` and ``sevm check --locked`` call; both take many files, a job
count and the cache switch, and return diagnostics plus the exit status.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Sequence

from ..diagnostics import Diagnostic, Severity, error, exit_code
from ..fsutil import atomic_write_many
from ..model import Manifest
from .batch import FileOutcome, iter_files, run_files
from .lockfile import check_locked, holds, lock_path, render_lock


def _render_action(manifest: Manifest, measurements: list) -> tuple[list[Diagnostic], bytes]:
    return [], render_lock(manifest, measurements)


def _check_action(manifest: Manifest, measurements: list) -> tuple[list[Diagnostic], None]:
    return check_locked(manifest, measurements), None


def _stdin_refused(paths: Sequence[str], what: str) -> list[Diagnostic]:
    return [error(f"{what} needs manifest files: a lock file sits beside its manifest, "
                  "so standard input ('-') cannot be used", fatal_input=True)
            for p in paths if p == "-"][:1]


@dataclass
class LockRun:
    diagnostics: list[Diagnostic]
    written: list[Path]
    unchanged: list[Path]  # already held exactly these bytes: not rewritten (mtime kept)
    exit_code: int


def lock_files(paths: Sequence[str], *, jobs: int | None = None,
               use_cache: bool = True) -> LockRun:
    """Write ``FILE.lock`` for every manifest that compiles and measures; report the others."""
    paths = [os.fspath(p) for p in paths]
    refused = _stdin_refused(paths, "sevm lock")
    if refused:
        return LockRun(refused, [], [], exit_code(refused))
    outcomes, written, unchanged = [], [], []
    # written part by part while the workers compute the next parts
    parts = iter_files(paths, _render_action, jobs=jobs, use_cache=use_cache, reuse="write")
    with contextlib.closing(parts):
        for part in parts:
            outcomes += part
            _write_locks(part, written, unchanged)
    diagnostics = [d for o in outcomes for d in o.diagnostics]
    return LockRun(diagnostics, written, unchanged, exit_code(diagnostics))


def _write_locks(outcomes: list[FileOutcome], written: list[Path], unchanged: list[Path]) -> None:
    """Write each outcome's lock unless it already holds those bytes (appending to
    ``written`` or ``unchanged``); a lock that cannot be written is an error of its outcome."""
    todo, scheduled = [], set()
    real_dirs: dict[Path, str] = {}  # a repository's locks share a few directories
    for outcome in outcomes:
        if outcome.output is None:
            continue
        target = lock_path(outcome.path)
        if target.parent not in real_dirs:
            real_dirs[target.parent] = os.path.realpath(target.parent)
        # the same manifest named twice: written once, then "up to date" (as when sequential)
        key = (os.path.join(real_dirs[target.parent], target.name), outcome.output)
        # (a lock that already has exactly these bytes is left alone, mtime and all)
        if key in scheduled or holds(target, outcome.output):
            unchanged.append(target)
        else:
            scheduled.add(key)
            todo.append((outcome, target))
    failures = atomic_write_many((target, outcome.output) for outcome, target in todo)
    for (outcome, target), failure in zip(todo, failures):
        if failure is None:
            written.append(target)
        else:
            outcome.diagnostics.append(error(str(failure), fatal_input=True))


def check_locked_files(paths: list[str], *, jobs: int | None = None, use_cache: bool = True,
                       include_warnings: bool = False) -> tuple[list[Diagnostic], int]:
    """``sevm check --locked``: compile, measure and compare each file with ``FILE.lock``.

    Returns (diagnostics, exit status): 0 all locks current, 1 a lock is missing or stale or
    a file does not compile, 2 a lock or manifest cannot be read.  Compile errors are
    included; compile warnings only with ``include_warnings`` (the caller usually printed
    them already).
    """
    paths = [os.fspath(p) for p in paths]
    refused = _stdin_refused(paths, "sevm check --locked")
    if refused:
        return refused, exit_code(refused)
    outcomes = run_files(paths, _check_action, jobs=jobs, use_cache=use_cache,
                         reuse="compare")
    diagnostics = [d for o in outcomes for d in o.diagnostics
                   if include_warnings or d.severity is not Severity.WARNING]
    return diagnostics, exit_code(diagnostics)
