"""Manifests as they were at a git revision, for ``sevm diff --git REV``.

The revision's ``.sevm`` files are written into a temporary directory with the
repository's layout, so imports resolve at that revision too; compiling there yields
spans under the temporary directory, which ``display`` maps back to ``REV:path``.
Git is run as a subprocess (``git`` on PATH); nothing in the repository is modified.
"""
from __future__ import annotations

import dataclasses
import os
import subprocess
import tempfile
from pathlib import Path

from ..model import VM

MANIFEST_SUFFIX = ".sevm"


class GitError(Exception):
    """A git command failed; the message says which and why."""


def git(root: Path, *args: str, stdin: bytes | None = None) -> bytes:
    try:
        proc = subprocess.run(["git", *args], cwd=root, input=stdin, capture_output=True,
                              check=False)
    except OSError as exc:
        raise GitError(f"cannot run git: {exc.strerror or exc}") from None
    if proc.returncode != 0:
        detail = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise GitError(f"git {args[0]} failed: {detail[-1] if detail else proc.returncode}")
    return proc.stdout


def toplevel(cwd: Path) -> Path:
    return Path(os.fsdecode(git(cwd, "rev-parse", "--show-toplevel").strip()))


def _names(output: bytes) -> list[str]:
    return [os.fsdecode(n) for n in output.split(b"\0") if n]


class Revision:
    """The files of one commit, materialised lazily into a temporary directory."""

    def __init__(self, root: Path, rev: str):
        self.root = root
        self.rev = rev
        try:
            commit = git(root, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
        except GitError:
            raise GitError(f"unknown git revision {rev!r} in {root}") from None
        self.commit = commit.decode().strip()
        self.paths = set(_names(git(root, "ls-tree", "-r", "-z", "--name-only", self.commit)))
        self._tmp = tempfile.TemporaryDirectory(prefix="sevm-diff-")
        self.dir = Path(self._tmp.name).resolve()
        self.materialise(sorted(p for p in self.paths if p.endswith(MANIFEST_SUFFIX)))

    def close(self) -> None:
        self._tmp.cleanup()

    def __enter__(self) -> "Revision":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def materialise(self, paths: list[str]) -> None:
        """Write the revision's blobs for ``paths`` under ``self.dir`` (one git process)."""
        if not paths:
            return
        request = "".join(f"{self.commit}:{p}\n" for p in paths).encode()
        out = git(self.root, "cat-file", "--batch", stdin=request)
        offset = 0
        for path in paths:
            header_end = out.index(b"\n", offset)
            header = out[offset:header_end].split()
            if len(header) != 3 or header[1] != b"blob":
                offset = header_end + 1
                continue
            size = int(header[2])
            body = out[header_end + 1:header_end + 1 + size]
            offset = header_end + 1 + size + 1
            target = self.dir / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(body)

    def local(self, path: str) -> str:
        return str(self.dir / path)

    def display(self, file: str) -> str:
        """A span's file under the temporary directory, as ``REV:path``."""
        try:
            relative = Path(os.path.abspath(file)).relative_to(self.dir)
        except ValueError:
            return file
        return f"{self.rev}:{relative.as_posix()}"

    def note(self, message: str) -> str:
        """A problem with the OLD side, naming ``REV:path`` instead of the temporary copy."""
        prefix = str(self.dir) + os.sep
        if prefix not in message:
            return message
        return (message.replace(prefix, f"{self.rev}:") + " (an artefact that git does not track "
                "is only compared when pinned)")

    def with_artefacts(self, vm: VM) -> VM:
        """``vm`` with its artefacts readable: from the revision when it tracks them, else the
        working tree's file if the artefact is pinned (the measurement engine checks the
        pin); an unpinned, untracked artefact stays missing (digests unavailable)."""
        replaced = {}
        for artefact in vm.artefacts:
            try:
                relative = artefact.path.resolve().relative_to(self.dir).as_posix()
            except ValueError:
                continue
            if relative in self.paths:
                self.materialise([relative])
            elif artefact.sha256 and (self.root / relative).is_file():
                replaced[artefact.role] = dataclasses.replace(artefact, path=self.root / relative)
        return dataclasses.replace(vm, **replaced) if replaced else vm


def changed_paths(root: Path, commit: str) -> set[str]:
    """Paths that differ between ``commit`` and the working tree, plus untracked files."""
    changed = _names(git(root, "diff", "--name-only", "-z", "--no-renames", commit, "--"))
    untracked = _names(git(root, "ls-files", "-z", "--others", "--exclude-standard"))
    return set(changed) | set(untracked)


def worktree_manifests(root: Path) -> set[str]:
    listed = _names(git(root, "ls-files", "-z", "--cached", "--others", "--exclude-standard"))
    return {p for p in listed if p.endswith(MANIFEST_SUFFIX) and (root / p).is_file()}
