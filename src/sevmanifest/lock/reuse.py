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


def record(manifest, identities: dict[str, Identity], hashed_after: float,
           text: bytes) -> dict | None:
    """The data to store beside the compiled manifest, or None when the lock must not be
    reused: an artefact whose identity was not seen while measuring, has changed since, or
    was modified less than RACY_SECONDS before ``hashed_after`` (when hashing began)."""
    artefacts = []
    for vm in manifest.vms:
        for artefact in vm.artefacts:
            seen = identities.get(os.path.realpath(artefact.path))
            if seen is None or max(seen[3], seen[4]) >= (hashed_after - RACY_SECONDS) * 1e9:
                return None
            try:
                if identity(os.stat(artefact.path)) != seen:
                    return None
            except OSError:
                return None
            artefacts.append([os.fspath(artefact.path), *seen])
    return {"artefacts": artefacts, "text": text.decode("utf-8", "surrogateescape")}


def reusable_text(data: dict, current: dict | None = None) -> bytes | None:
    """The recorded lock text if every artefact still has its recorded identity.

    ``current``: identities already looked up in this run, by path (a fleet names the same
    few images hundreds of times; like their digests, they are taken once per run)."""
    current = {} if current is None else current
    try:
        text = data["text"]
        for path, *seen in data["artefacts"]:
            if not isinstance(path, str):
                return None
            if path not in current:
                current[path] = _identity_or_none(path)
            if current[path] != tuple(seen):
                return None
        return text.encode("utf-8", "surrogateescape") if isinstance(text, str) else None
    except (KeyError, TypeError, ValueError):
        return None


def _identity_or_none(path: str) -> Identity | None:
    try:
        return identity(os.stat(path))
    except (OSError, ValueError):  # (ValueError: a NUL in a planted path)
        return None
