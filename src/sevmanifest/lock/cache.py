"""A persistent cache of artefact SHA-256 digests, so a repository of manifests that share a
100 MB initrd hashes it once, not once per manifest per run.

Layout: one small JSON file per artefact path under ``$XDG_CACHE_HOME/sevmanifest/digests-v1/``
(default ``~/.cache/sevmanifest``), named after the SHA-256 of the resolved path.  The entry
records the file's identity key (device, inode, size, mtime_ns, ctime_ns) and its digest.

Why files and not sqlite3: every entry is written to a temporary file and renamed into place,
so concurrent runs never see a partial entry and need no locks (the last writer wins, and
both wrote a true digest); a damaged entry costs one re-hash, never the whole cache; nothing
breaks on NFS home directories where sqlite's locking is unreliable.  Entries are keyed by
path, so a rewritten file replaces its entry instead of accumulating new ones.

Trust: a hit needs the whole key to match.  ctime is in the key (like git's index) because
user tools can set mtime back (``touch -r``, ``cp -p``, tar) but not ctime.  A file changed
twice within one timestamp tick with the same size would still look unchanged, so entries are
only written for files whose mtime and ctime are at least RACY_SECONDS old ("racy-clean" in
git): those files are always hashed from their bytes.  The cache is a speed-up, not a
security boundary: whoever can write it can also write the artefacts it describes.
"""
from __future__ import annotations

import hashlib
import json
import os
import stat
import sys
import time
from pathlib import Path
from collections.abc import Callable

from ..cachedir import DIGESTS_SUBDIR as CACHE_SUBDIR
from ..cachedir import default_cache_dir  # noqa: F401 - also public here
from ..cachedir import digest_entry_name as entry_name

# Longer than the coarsest common timestamp granularity (FAT: 2 s) plus a margin.
RACY_SECONDS = 3
MAX_ENTRY_SIZE = 64 << 10  # an entry is ~300 bytes (more only for very long paths)
_HEX = frozenset("0123456789abcdef")


def _key(real: str, st: os.stat_result) -> dict:
    return {"path": real, "dev": st.st_dev, "ino": st.st_ino, "size": st.st_size,
            "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns}


def _checksum(record: dict) -> str:
    """A self-check over the entry, so a damaged digest is never returned."""
    text = json.dumps(record, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:16]


def _is_digest(value: object) -> bool:
    return isinstance(value, str) and len(value) == 64 and set(value) <= _HEX


def _read_small_file(path: Path) -> bytes:
    """A regular file of at most MAX_ENTRY_SIZE bytes; anything planted there instead (a
    FIFO that would block, a device, a huge file) is an error, never a hang."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ValueError("not a regular file")
        data = os.read(fd, MAX_ENTRY_SIZE + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_ENTRY_SIZE:
        raise ValueError("too large")
    return data


def _stderr_warning(message: str) -> None:
    print(f"sevm: warning: {message}", file=sys.stderr)


class DiskDigestCache:
    """Implements ``measure.hashing.DigestCache``.  Never raises: any trouble is a miss."""

    def __init__(self, directory: Path | None = None, *,
                 clock: Callable[[], float] = time.time,
                 warn: Callable[[str], None] = _stderr_warning):
        self.directory = (directory or default_cache_dir()) / CACHE_SUBDIR
        self._clock = clock
        self._warn = warn
        self._warned = False
        self._writable = True
        # When each key was first looked up: the reference time for the racy test, because
        # a file may have been written just before its stat even if hashing took long.
        self._seen: dict[tuple, float] = {}
        self.hits = self.misses = self.stores = self.racy = 0

    # -- the DigestCache protocol ---------------------------------------------------------
    def lookup(self, path: Path, st: os.stat_result) -> str | None:
        real = os.path.realpath(path)
        key = _key(real, st)
        self._seen.setdefault(tuple(key.values()), self._clock())
        record = self._read(self._entry_path(real))
        if record is not None and all(record.get(k) == v for k, v in key.items()):
            self.hits += 1
            return record["sha256"]
        self.misses += 1
        return None

    def store(self, path: Path, st: os.stat_result, sha256_hex: str) -> None:
        if not self._writable or not _is_digest(sha256_hex):
            return
        real = os.path.realpath(path)
        key = _key(real, st)
        if self._is_racy(key) or not self._unchanged(real, key):
            self.racy += 1
            return
        record = dict(key, sha256=sha256_hex)
        record["check"] = _checksum(record)
        try:
            self._write(self._entry_path(real), json.dumps(record, sort_keys=True) + "\n")
            self.stores += 1
        except OSError as exc:
            self._writable = False
            self._warn_once(f"digest cache {self.directory} is not writable ({exc.strerror or exc});"
                            " continuing without storing digests")

    # -- internals -----------------------------------------------------------------------
    def _entry_path(self, real: str) -> Path:
        return self.directory / entry_name(real)

    def _is_racy(self, key: dict) -> bool:
        reference = min(self._clock(), self._seen.get(tuple(key.values()), float("inf")))
        newest = max(key["mtime_ns"], key["ctime_ns"])
        return newest >= (reference - RACY_SECONDS) * 1e9

    @staticmethod
    def _unchanged(real: str, key: dict) -> bool:
        """The file still has the identity it had when it was hashed (not modified meanwhile)."""
        try:
            return _key(real, os.stat(real)) == key
        except OSError:
            return False

    def _read(self, entry: Path) -> dict | None:
        try:
            text = _read_small_file(entry).decode("utf-8", errors="surrogateescape")
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            self._warn_once(f"ignoring unreadable digest cache entry {entry}")
            return None
        try:
            record = json.loads(text)
            check = record.pop("check")
            if not (_is_digest(record.get("sha256")) and check == _checksum(record)):
                raise ValueError("checksum")
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
            self._warn_once(f"ignoring corrupt digest cache entry {entry}")
            return None
        return record

    def _write(self, entry: Path, text: str) -> None:
        from ..fsutil import replace_with_chunks
        entry.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # no fsync: an entry lost or emptied by a crash is only a miss (see _read)
        replace_with_chunks(entry, [text.encode("utf-8", "surrogateescape")], durable=False,
                            mode=0o600)

    def _warn_once(self, message: str) -> None:
        if not self._warned:
            self._warned = True
            self._warn(message)


def open_cache(enabled: bool = True, *,
               warn: Callable[[str], None] = _stderr_warning) -> DiskDigestCache | None:
    """The cache a command should use: None with ``--no-cache`` or ``SEVM_NO_CACHE=1``.
    ``warn`` receives the one warning about a damaged or unwritable cache (the commands
    print it to standard error; a library caller may log it instead)."""
    if not enabled or os.environ.get("SEVM_NO_CACHE", "") not in ("", "0"):
        return None
    directory = default_cache_dir()
    return DiskDigestCache(directory, warn=warn) if directory is not None else None
