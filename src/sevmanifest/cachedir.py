"""Where sevm keeps its caches (digests, compiled manifests, Lark's parser tables).

Plain ``os.path`` strings at the core: ``earlyhash`` uses these before pathlib is loaded.
"""
from __future__ import annotations

import hashlib
import os

DIGESTS_SUBDIR = "digests-v1"


def cache_root() -> str:
    """``$XDG_CACHE_HOME/sevmanifest``; the XDG spec says to ignore a relative value."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = xdg if os.path.isabs(xdg) else os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "sevmanifest")


def default_cache_dir():
    """``cache_root()`` as a ``pathlib.Path``."""
    from pathlib import Path
    return Path(cache_root())


def digest_entry_name(real: str) -> str:
    """The digest-cache entry of the file at real path ``real``, relative to DIGESTS_SUBDIR."""
    name = hashlib.sha256(os.fsencode(real)).hexdigest()
    return os.path.join(name[:2], name[2:])
