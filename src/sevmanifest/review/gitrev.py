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


LINK_MODE = "120000"  # a symbolic link: the blob is the link's target


def _tree(output: bytes) -> dict[str, tuple[str, str]]:
    """``ls-tree -r -z`` records as {path: (mode, blob id)}; submodules are left out."""
    entries = {}
    for record in output.split(b"\0"):
        meta, tab, name = record.partition(b"\t")
        fields = meta.split()
        if tab and len(fields) == 3 and fields[1] == b"blob":
            entries[os.fsdecode(name)] = (fields[0].decode(), fields[2].decode())
    return entries


class Revision:
    """The files of one commit, materialised lazily into a temporary directory.

    Blobs are requested by object id and listed NUL-delimited, so any file name works.
    Symbolic links become links in the temporary directory unless they would lead out
    of it (an absolute target, or ``..`` beyond the repository): those are left out, so
    reading the old side never follows a link outside the private directory."""

    def __init__(self, root: Path, rev: str):
        self.root = root
        self.rev = rev
        try:
            commit = git(root, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
        except GitError:
            raise GitError(f"unknown git revision {rev!r} in {root}") from None
        self.commit = commit.decode().strip()
        self.entries = _tree(git(root, "ls-tree", "-r", "-z", "--full-tree", self.commit))
        self.paths = set(self.entries)
        self._written: set[str] = set()
        self._not_read: dict[str, str] = {}  # stand-in path -> the artefact as written
        self._tmp = tempfile.TemporaryDirectory(prefix="sevm-diff-")
        self.dir = Path(self._tmp.name).resolve()
        self._links()
        self.materialise(sorted(p for p in self.paths if p.endswith(MANIFEST_SUFFIX)))

    def close(self) -> None:
        self._tmp.cleanup()

    def __enter__(self) -> "Revision":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _blobs(self, paths: list[str]) -> dict[str, bytes]:
        """The contents of ``paths`` (one ``git cat-file --batch`` process, by object id)."""
        ids = sorted({self.entries[p][1] for p in paths})
        if not ids:
            return {}
        out = git(self.root, "cat-file", "--batch", stdin="".join(f"{i}\n" for i in ids).encode())
        contents, offset = {}, 0
        for oid in ids:
            header_end = out.index(b"\n", offset)
            header = out[offset:header_end].split()
            if len(header) != 3 or header[1] != b"blob":
                offset = header_end + 1
                continue
            size = int(header[2])
            contents[header[0].decode()] = out[header_end + 1:header_end + 1 + size]
            offset = header_end + 1 + size + 1
        return {p: contents[self.entries[p][1]] for p in paths
                if self.entries[p][1] in contents}

    def _inside(self, path: str | Path) -> bool:
        real = os.path.realpath(path)
        return real == str(self.dir) or real.startswith(str(self.dir) + os.sep)

    def _links(self) -> None:
        """Every symbolic link of the revision, as a link; those leading out are removed."""
        links = [p for p, (mode, _) in self.entries.items() if mode == LINK_MODE]
        made = []
        for path, target in self._blobs(links).items():
            text = os.fsdecode(target)
            self._written.add(path)
            if not text or "\0" in text or os.path.isabs(text):
                continue
            place = self.dir / path
            place.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(text, place)
            made.append(place)
        removed = True
        while removed:  # removing one link can change where another one leads
            removed = False
            for place in list(made):
                if not self._inside(place):
                    place.unlink()
                    made.remove(place)
                    removed = True

    def materialise(self, paths: list[str]) -> None:
        """Write the revision's blobs for ``paths`` under ``self.dir`` (one git process)."""
        wanted = [p for p in paths if p in self.entries and p not in self._written]
        for path, body in self._blobs(wanted).items():
            self._written.add(path)
            target = self.dir / path
            if not self._inside(target.parent) or os.path.lexists(target):
                continue
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
        for unread, written in self._not_read.items():
            message = message.replace(unread, f"{written} (not read at {self.rev}: outside "
                                              "the repository and not pinned)")
        prefix = str(self.dir) + os.sep
        if prefix not in message:
            return message
        return (message.replace(prefix, f"{self.rev}:") + " (an artefact that git does not track "
                "is only compared when pinned)")

    def _unread(self, written: str) -> Path:
        """A path in the private directory that does not exist, standing for the artefact at
        ``written`` (relative to the repository), which the old side does not read."""
        unread = self.dir / ".not-read" / str(len(self._not_read))
        self._not_read[str(unread)] = Path(written).as_posix()
        return unread

    def with_artefacts(self, vm: VM) -> VM:
        """``vm`` with its artefacts readable: from the revision when it tracks them, else the
        working tree's file if the artefact is pinned (the measurement engine checks the
        pin); an unpinned, untracked artefact stays missing (digests unavailable).  A path
        outside the repository is the working tree's file at the same place, if pinned."""
        replaced = {}
        for artefact in vm.artefacts:
            written = os.path.relpath(artefact.path, self.dir)  # lexical: the old side's layout
            if written == os.pardir or written.startswith(os.pardir + os.sep):
                outside = Path(os.path.normpath(self.root / written))
                if artefact.sha256 and outside.is_file():
                    replaced[artefact.role] = dataclasses.replace(artefact, path=outside)
                else:  # never read whatever happens to lie next to the private directory
                    replaced[artefact.role] = dataclasses.replace(artefact,
                                                                  path=self._unread(written))
                continue
            if not self._inside(artefact.path):  # a link that led out was not made
                replaced[artefact.role] = dataclasses.replace(artefact, path=self._unread(written))
                continue
            # the links are all in place, so the real path is the blob to write
            relative = Path(os.path.realpath(artefact.path)).relative_to(self.dir).as_posix()
            if relative in self.paths and self.entries[relative][0] != LINK_MODE:
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
