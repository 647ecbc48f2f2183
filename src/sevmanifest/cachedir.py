"""Where sevm keeps its caches (digests, compiled manifests, Lark's parser tables).

Plain ``os.path`` strings at the core: ``earlyhash`` uses these before pathlib is loaded.
"""
from __future__ import annotations

import hashlib
import os

DIGESTS_SUBDIR = "digests-v1"


def cache_root() -> str | None:
    """``$XDG_CACHE_HOME/sevmanifest``; the XDG spec says to ignore a relative value.  None
    when there is no home either (no ``$HOME`` and no password entry: a container run under
    an arbitrary uid): ``~`` would stay unexpanded and the caches would land in a directory
    named ``~`` in the working directory, the user's repository.  Then nothing is cached."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    if os.path.isabs(xdg):
        return os.path.join(xdg, "sevmanifest")
    home = os.path.expanduser("~")
    if not os.path.isabs(home):
        return None
    return os.path.join(home, ".cache", "sevmanifest")


def default_cache_dir():
    """``cache_root()`` as a ``pathlib.Path`` (None: no cache directory)."""
    from pathlib import Path
    root = cache_root()
    return Path(root) if root is not None else None


def digest_entry_name(real: str) -> str:
    """The digest-cache entry of the file at real path ``real``, relative to DIGESTS_SUBDIR."""
    name = hashlib.sha256(os.fsencode(real)).hexdigest()
    return os.path.join(name[:2], name[2:])
