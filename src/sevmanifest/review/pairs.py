"""Which manifests to compare, compiled on both sides: two files, or a git revision and the
working tree.  This is the library behind ``sevm diff``; it raises ``DiagnosticError``
(fatal input, exit status 2) when either side cannot be compiled.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..diagnostics import Diagnostic, DiagnosticError, SourceCache, error
from ..model import VM, Manifest
from .diff import diff_manifests
from .digests import digests_for
from .gitrev import GitError, Revision, changed_paths, toplevel, worktree_manifests
from .report import FileDiff, Report


@dataclass
class ManifestPair:
    label: str  # the manifest as shown to the user
    old: Manifest | None  # None: the file does not exist on that side
    new: Manifest | None
    old_vm: Callable[[VM], VM] = lambda vm: vm  # makes an OLD vm's artefacts readable
    old_note: Callable[[str], str] = lambda message: message  # names the OLD side in problems


@dataclass
class Compiled:
    manifest: Manifest | None
    files: set[str]  # every file the compilation read (the manifest and its imports)


SOURCES = SourceCache()  # source texts of both sides, for printing diagnostics


def compile_side(path: str, display: Callable[[str], str] = lambda f: f) -> Compiled:
    """Compile without lint rules (a diff is not a lint run); errors are fatal input."""
    from ..frontend import compile_file
    result = compile_file(path, lint_rules=False)
    for file, text in result.sources.texts.items():
        SOURCES.texts[display(file)] = text
    errors = [_relocate(d, display) for d in result.diagnostics if d.is_error]
    if errors or result.manifest is None:
        raise DiagnosticError([dataclasses.replace(d, fatal_input=True) for d in errors]
                              or [error(f"{display(path)}: cannot be compiled", fatal_input=True)])
    return Compiled(result.manifest, set(result.sources.texts))


def _relocate(d: Diagnostic, display: Callable[[str], str]) -> Diagnostic:
    if d.span is None:
        return d
    return dataclasses.replace(d, span=dataclasses.replace(d.span, file=display(d.span.file)))


def pair_files(old: str, new: str) -> ManifestPair:
    return ManifestPair(new, compile_side(old).manifest, compile_side(new).manifest)


def pairs_at_revision(rev: str, files: list[str], cwd: Path) -> tuple[list[ManifestPair], Revision]:
    """OLD = ``files`` at ``rev``, NEW = the working tree.  Without ``files``: every manifest
    that changed since ``rev``, or whose imports changed.  The caller closes the Revision."""
    try:
        root = toplevel(cwd)
        revision = Revision(root, rev)
    except GitError as exc:
        raise DiagnosticError(error(str(exc), fatal_input=True)) from None
    try:
        relative = [_in_repo(f, cwd, root) for f in files] or _affected(revision, root)
        return [_pair_at(revision, root, cwd, path) for path in relative], revision
    except BaseException:
        revision.close()
        raise


def _in_repo(file: str, cwd: Path, root: Path) -> str:
    absolute = Path(os.path.abspath(cwd / file))
    try:
        return absolute.relative_to(root).as_posix()
    except ValueError:
        raise DiagnosticError(error(f"{file} is outside the git repository {root}",
                                    fatal_input=True)) from None


def _affected(revision: Revision, root: Path) -> list[str]:
    """Manifests changed since the revision, and manifests whose import closure changed."""
    try:
        changed = changed_paths(root, revision.commit)
    except GitError as exc:
        raise DiagnosticError(error(str(exc), fatal_input=True)) from None
    old_side = {p for p in revision.paths if p.endswith(".sevm")}
    candidates = sorted(worktree_manifests(root) | old_side)
    new_changed, old_changed = _through_links(changed, root), _through_links(changed, revision.dir)
    affected = []
    for path in candidates:
        if path in changed or _reads_any(root / path, root, new_changed) or (
                path in old_side and _reads_any(revision.dir / path, revision.dir, old_changed)):
            affected.append(path)
    return affected


def _through_links(changed: set[str], base: Path) -> set[str]:
    """``changed`` (relative to ``base``) and the real files they are, through links."""
    real_base = os.path.realpath(base)
    real = {_relative(os.path.realpath(os.path.join(base, p)), Path(real_base)) for p in changed}
    return changed | {p for p in real if p is not None}


def _reads_any(path: Path, base: Path, changed: set[str]) -> bool:
    """Whether compiling ``path`` reads one of ``changed`` (relative to ``base``), by the path
    it was read through or by the real file (a template reached through a link)."""
    if not path.is_file():
        return False
    try:
        files = compile_side(str(path)).files
    except DiagnosticError:
        return False  # a broken manifest that did not change itself is not this diff's business
    real_base = Path(os.path.realpath(base))
    return any(_relative(f, base) in changed or _relative(os.path.realpath(f), real_base) in changed
               for f in files)


def _relative(file: str, base: Path) -> str | None:
    try:
        return Path(os.path.abspath(file)).relative_to(base).as_posix()
    except ValueError:
        return None


def _pair_at(revision: Revision, root: Path, cwd: Path, path: str) -> ManifestPair:
    label = os.path.relpath(root / path, cwd)
    old = None
    if path in revision.paths:
        old = compile_side(revision.local(path), revision.display).manifest
    new = compile_side(label).manifest if (root / path).is_file() else None
    if old is None and new is None:
        raise DiagnosticError(error(f"{label}: not in the working tree nor at {revision.rev}",
                                    fatal_input=True))
    return ManifestPair(label, old, new, revision.with_artefacts, revision.note)


def build_report(pairs: list[ManifestPair], *, fail_on: str | None = None,
                 with_digests: bool = False, relpath: Callable[[str], str] = lambda p: p) -> Report:
    files = []
    for pair in pairs:
        result = diff_manifests(pair.old, pair.new)
        digests: tuple = ()
        if with_digests:
            old_vms = {vm.name: pair.old_vm(vm) for vm in (pair.old.vms if pair.old else ())}
            new_vms = {vm.name: vm for vm in (pair.new.vms if pair.new else ())}
            digests = tuple(digests_for(result, old_vms, new_vms, pair.old_note))
        files.append(FileDiff(pair.label, result, digests))
    return Report(tuple(files), fail_on, with_digests, relpath)
