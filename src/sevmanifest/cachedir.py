"""Where sevm keeps its caches (digests, compiled manifests, Lark's parser tables)."""
from __future__ import annotations

import os
from pathlib import Path


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/sevmanifest``; the XDG spec says to ignore a relative value."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "sevmanifest"
