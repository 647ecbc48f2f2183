"""Reusing a lock when nothing it was computed from has changed.

A lock is a pure function of the compiled manifest, sevm's code and the bytes of the
artefacts it names.  The compiled-manifest cache already vouches for the first two (its
entry is keyed by the code and checked against every source file on each lookup); the
artefacts are vouched for the way the digest cache vouches for them (``lock/cache.py``):
by their identity (device, inode, size, mtime_ns, ctime_ns), recorded only when the file
was at least RACY_SECONDS old when it was hashed, so a change within one timestamp tick
cannot go unnoticed.  So ``sevm lock`` stores the lock text in the manifest's cache entry
with the identity of every artefact it measured, and a later run whose entry is still
valid and whose artefacts all still have those identities writes that text without
decoding the model, hashing or measuring.

Only a lock written with no diagnostic beyond the manifest's own warnings is recorded.
On reuse those warnings are shown again under the lint configuration of the day: a broken
configuration fails as it would otherwise, and a warning since raised to an error sends the
manifest down the normal path, which reports it.  ``--no-cache`` and ``SEVM_NO_CACHE=1``
turn reuse off with the other caches.
"""
from __future__ import annotations

import os

from .cache import RACY_SECONDS
from .shared import Identity, identity


class RunFiles:
    """The artefacts' real paths and current identities, each looked up once per run (a
    fleet names the same few images hundreds of times; like their digests, they are taken
    once per run)."""

    def __init__(self):
        self._real: dict[str, str] = {}
        self._identity: dict[str, Identity | None] = {}

    def real(self, path: str) -> str:
        if path not in self._real:
            self._real[path] = os.path.realpath(path)
        return self._real[path]

    def identity(self, path: str) -> Identity | None:
        """None when the file cannot be looked at (gone, or a planted path with a NUL)."""
        if path not in self._identity:
            try:
                self._identity[path] = identity(os.stat(path))
            except (OSError, ValueError):
                self._identity[path] = None
        return self._identity[path]


def record(manifest, seen: dict[str, Identity], hashed_after: float, text: bytes,
           files: RunFiles | None = None) -> dict | None:
    """The data to store beside the compiled manifest, or None when the lock must not be
    reused: an artefact whose identity was not ``seen`` (by real path) while measuring, is
    not the same now, or was modified less than RACY_SECONDS before ``hashed_after`` (when
    hashing began)."""
    files = files or RunFiles()
    artefacts = []
    for vm in manifest.vms:
        for artefact in vm.artefacts:
            path = os.fspath(artefact.path)
            measured = seen.get(files.real(path))
            if measured is None or files.identity(path) != measured \
                    or max(measured[3], measured[4]) >= (hashed_after - RACY_SECONDS) * 1e9:
                return None
            artefacts.append([path, *measured])
    return {"artefacts": artefacts, "text": text.decode("utf-8", "surrogateescape")}


def reusable_text(data: dict, files: RunFiles | None = None) -> bytes | None:
    """The recorded lock text if every artefact still has its recorded identity."""
    files = files or RunFiles()
    try:
        text = data["text"]
        for path, *recorded in data["artefacts"]:
            if not isinstance(path, str) or files.identity(path) != tuple(recorded):
                return None
        return text.encode("utf-8", "surrogateescape") if isinstance(text, str) else None
    except (KeyError, TypeError, ValueError):
        return None
