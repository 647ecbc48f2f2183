"""Hashing the kernel and initrd while ``sevm measure`` is still starting up.

Most of a ``sevm measure`` run that is not hashing is Python starting: importing Lark,
loading the parser, compiling the manifest, about 0.1 s of one core while the other idles.
The artefacts' paths are usually written literally in the manifest, so a quick scan of its
text finds them before the real parser runs, and a forked child process hashes them
meanwhile.  A process, not a thread: the main thread holds the GIL while it imports and
parses, and a hashing thread needs the GIL back after every chunk, so it would mostly wait.
The firmware is left to the normal path: its hash *state* (the launch-digest prefix) cannot
cross a process boundary, and it is small.

The compiled manifest stays the only authority.  ``hash_file`` takes a prefetched digest only
for the file it has opened itself, and only when that file still has the identity (device,
inode, size, mtime, ctime) the child saw before its first read and again after its last;
otherwise it reads the file as always.  The prefetch never reports anything: a path the scan
gets wrong, an unreadable or odd file, a string with escapes, an artefact named only in an
imported template just loses the head start.  ``close`` stops and reaps the child.
"""
from __future__ import annotations

import hashlib
import os
import re
import signal
import stat
import threading
from pathlib import Path

from .fileio import CHUNK_SIZE

MAX_MANIFEST_BYTES = 1 << 20  # a manifest larger than this is not scanned
MAX_FILES = 8
# `kernel|initrd "PATH"` at the start of a line; strings with escapes are left to the parser
_ARTEFACT = re.compile(rb'^[ \t]*(?:kernel|initrd)[ \t]+"([^"\\\n]*)"', re.MULTILINE)

Identity = tuple[int, int, int, int, int]


def _identity(st: os.stat_result) -> Identity:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class Prefetch:
    """A child process hashing ``paths``; consulted by ``hashing.hash_file``."""

    def __init__(self, paths: list[str]):
        self._wanted = {os.path.realpath(p) for p in paths[:MAX_FILES]}
        self._results: dict[str, tuple[Identity, str]] | None = None
        self._lock = threading.Lock()
        read_end, write_end = os.pipe()
        self._pid = os.fork()
        if self._pid == 0:  # the child: hash, report, exit without any parent clean-up
            status = 1
            try:
                os.close(read_end)
                _hash_all(sorted(self._wanted), write_end)
                status = 0
            finally:
                os._exit(status)
        os.close(write_end)
        self._pipe = read_end

    def take(self, path: str | os.PathLike, st: os.stat_result) -> str | None:
        """The SHA-256 hex of ``path`` if the child hashed it and ``st`` still describes it."""
        real = os.path.realpath(path)
        if real not in self._wanted:
            return None
        with self._lock:
            if self._results is None:
                self._results = self._collect()
        found = self._results.get(real)
        if found is None or found[0] != _identity(st):
            return None
        return found[1]

    def close(self) -> None:
        """Stop the child if it still runs, and reap it."""
        with self._lock:
            if self._pid is None:
                return
            if self._results is None:
                os.kill(self._pid, signal.SIGKILL)
            os.waitpid(self._pid, 0)
            self._pid = None
            if self._pipe is not None:
                os.close(self._pipe)
                self._pipe = None

    def _collect(self) -> dict[str, tuple[Identity, str]]:
        chunks = []
        while data := os.read(self._pipe, 1 << 16):
            chunks.append(data)
        os.close(self._pipe)
        self._pipe = None
        results = {}
        for record in b"".join(chunks).split(b"\0\n"):
            fields = record.split(b"\0")
            if len(fields) == 7:
                results[os.fsdecode(fields[0])] = (tuple(map(int, fields[1:6])),
                                                   fields[6].decode("ascii"))
        return results


def _hash_all(paths: list[str], out: int) -> None:
    """In the child: the largest file first; one record per file hashed unchanged.  Files
    larger than the real read accepts are skipped (it refuses them without reading)."""
    from .hashing import MAX_LOADED_SIZE
    sizes = {}
    for path in paths:
        try:
            sizes[path] = os.stat(path).st_size
        except OSError:
            pass
    sizes = {path: size for path, size in sizes.items() if size <= MAX_LOADED_SIZE}
    for path in sorted(sizes, key=sizes.get, reverse=True):
        try:
            result = _hash_one(path)
        except OSError:
            continue
        if result is not None:
            identity, hex_digest = result
            fields = [os.fsencode(path), *(b"%d" % n for n in identity), hex_digest.encode()]
            os.write(out, b"\0".join(fields) + b"\0\n")


def _hash_one(path: str) -> tuple[Identity, str] | None:
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        before = os.fstat(fd)
        if not stat.S_ISREG(before.st_mode):
            return None
        state = hashlib.sha256()
        buffer = bytearray(CHUNK_SIZE)
        view = memoryview(buffer)
        total = 0
        while n := os.readv(fd, [buffer]):
            state.update(view[:n])
            total += n
        after = os.fstat(fd)
    finally:
        os.close(fd)
    if total != before.st_size or _identity(after) != _identity(before):
        return None
    return _identity(before), state.hexdigest()


def start_prefetch(manifest: str) -> Prefetch | None:
    """Scan ``manifest`` for kernel and initrd paths and start hashing them; None when there
    is nothing to do (standard input, an unreadable manifest, no literal paths, no fork)."""
    text = _read_manifest(manifest) if manifest != "-" and hasattr(os, "fork") else None
    if not text:
        return None
    base = Path(manifest).parent
    paths = [os.fsdecode(base / os.fsdecode(m.group(1))) for m in _ARTEFACT.finditer(text)]
    return Prefetch(paths) if paths else None


def _read_manifest(manifest: str) -> bytes | None:
    """The manifest's bytes if it is a regular file of sane size.  Never a pipe: reading
    ``<(...)`` here would take its content away from the real parser."""
    try:
        fd = os.open(manifest, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_MANIFEST_BYTES:
            return None
        return os.pread(fd, MAX_MANIFEST_BYTES, 0)
    except OSError:
        return None
    finally:
        os.close(fd)
