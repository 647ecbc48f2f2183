"""Streaming SHA-256 of the measured artefacts: bounded memory, each file once per run,
independent files in parallel threads (hashlib releases the GIL on large updates).

The firmware is special: its bytes are also the first bytes of the launch digest, so the
caller can ask to keep the hash *state* after the file (``keep_state``).  That state's
digest is the file's plain SHA-256, and a ``.copy()`` of it is the launch-digest prefix:
the firmware is read once for both.
"""
from __future__ import annotations

import hashlib
import os
import threading
from collections import namedtuple
from collections.abc import Iterable
from pathlib import Path

from ..diagnostics import Diagnostic, DiagnosticError, error
from ..model import Artefact
from .fileio import open_regular
from .stream import MAX_LOADED_SIZE, stream_into

TYPE_CHECKING = False  # not typing's: `sevm measure` does not import typing at all
if TYPE_CHECKING:
    from typing import Protocol
else:
    Protocol = object

MAX_THREADS = 8
# The kernel's and initrd's bound is stream.MAX_LOADED_SIZE; the firmware's (64 MiB) is
# checked again here: the file is opened anew.
MAX_SIZE_BY_ROLE = {"kernel": MAX_LOADED_SIZE, "initrd": MAX_LOADED_SIZE}


class DigestCache(Protocol):
    def lookup(self, path: Path, st: os.stat_result) -> str | None: ...
    def store(self, path: Path, st: os.stat_result, sha256_hex: str) -> None: ...


class FileDigest(namedtuple("FileDigest", "path sha256_hex state from_cache",
                             defaults=(False,))):
    """``path``, ``sha256_hex``, ``state`` (the hash object after the whole file, when it was
    asked for) and ``from_cache``.  (Named tuples here: see measure/digest.py.)"""
    __slots__ = ()


def file_key(path: Path) -> Path:
    """Two manifest paths naming the same file must hash it once."""
    return Path(os.path.realpath(path))


class FileKeys(dict):
    """``file_key`` with a memory, for one run: a fleet of manifests names the same few
    files hundreds of times, and ``realpath`` costs a system call per path component."""

    def __missing__(self, path: Path) -> Path:
        key = self[path] = file_key(path)
        return key


def hash_file(path: Path, *, what: str = "file", artefact: Artefact | None = None,
              keep_state: bool = False, cache: DigestCache | None = None) -> FileDigest:
    """SHA-256 of one regular file.  A cache hit skips reading unless the state is needed."""
    span = artefact.span if artefact else None
    fd, st = open_regular(path, what, span)
    try:
        _check_size(path, what, st.st_size, span)
        if cache is not None and not keep_state:
            cached = cache.lookup(path, st)
            if cached is not None:
                return FileDigest(path, cached, None, from_cache=True)
        state = _read_all(fd, st, path, what, span)
    finally:
        os.close(fd)
    digest = FileDigest(path, state.hexdigest(), state if keep_state else None)
    if cache is not None:
        cache.store(path, st, digest.sha256_hex)
    return digest


def _read_all(fd: int, st: os.stat_result, path: Path, what: str, span):
    state = hashlib.sha256()
    try:
        count = stream_into(fd, state, size=st.st_size)
    except OSError as exc:
        raise DiagnosticError(error(f"cannot read {what} {path}: {exc.strerror or exc}", span,
                                    fatal_input=True)) from None
    if count != st.st_size:
        raise DiagnosticError(error(f"{what} {path} changed size while it was hashed", span,
                                    fatal_input=True))
    return state


def _check_size(path: Path, what: str, size: int, span) -> None:
    from .ovmf import MAX_FIRMWARE_SIZE
    limit = MAX_SIZE_BY_ROLE.get(what, MAX_FIRMWARE_SIZE if what == "firmware" else None)
    if limit is not None and size > limit:
        raise DiagnosticError(error(
            f"{what} {path} is {size:,} bytes, more than QEMU can load "
            f"(limit {limit:,} bytes); is the path right?", span, fatal_input=True))


class HashJob(namedtuple("HashJob", "artefact keep_state")):
    """Hash ``artefact``'s file; ``keep_state``: keep the hash object after it (the
    firmware's is the launch digest's prefix)."""
    __slots__ = ()


def hash_artefacts(jobs: Iterable[HashJob], *, cache: DigestCache | None = None,
                   keys: FileKeys | None = None) -> dict[Path, FileDigest]:
    """Hash every distinct file of ``jobs`` once, in parallel; results keyed by ``file_key``.

    Problems with several files are all reported together in one DiagnosticError.
    """
    keys = FileKeys() if keys is None else keys
    merged: dict[Path, HashJob] = {}
    for job in jobs:
        key = keys[job.artefact.path]
        previous = merged.get(key)
        if previous is None or (job.keep_state and not previous.keep_state):
            merged[key] = job
    if not merged:
        return {}

    def run(job: HashJob) -> FileDigest:
        return hash_file(job.artefact.path, what=job.artefact.role, artefact=job.artefact,
                         keep_state=job.keep_state, cache=cache)

    outcomes = _in_threads(run, _hashing_order(merged))
    problems = [d for o in outcomes.values() if isinstance(o, DiagnosticError)
                for d in o.diagnostics]
    if problems:
        raise DiagnosticError(problems)
    return {key: outcomes[key] for key in merged}


def _hashing_order(merged: dict[Path, HashJob]) -> list[tuple[Path, HashJob]]:
    """The biggest file first, so it does not start last and finish alone; but before
    them the files whose state is kept (the firmware), which are read whatever the cache
    knows, while a lookup may wait (``lock.shared.Prefetch``)."""
    def order(item) -> tuple[bool, int]:
        try:
            size = os.stat(item[0]).st_size
        except OSError:
            size = 0  # hash_file reports it
        return not item[1].keep_state, -size
    return sorted(merged.items(), key=order)


def _in_threads(run, items: list[tuple[Path, HashJob]]) -> dict:
    """``run`` over ``items`` in up to MAX_THREADS threads (hashlib and reads release the
    GIL); each key maps to its FileDigest or DiagnosticError.  Plain threads, not
    concurrent.futures: that module costs more start-up time than it saves here."""
    outcomes: dict = {}
    unexpected: list[BaseException] = []
    pending = iter(items)
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                key, job = next(pending, (None, None))
            if job is None:
                return
            try:
                outcomes[key] = run(job)
            except DiagnosticError as exc:
                outcomes[key] = exc
            except BaseException as exc:  # a bug: re-raised in the caller's thread
                unexpected.append(exc)
                return
    count = min(len(items), os.cpu_count() or 2, MAX_THREADS)
    threads = [threading.Thread(target=worker, name=f"sevm-hash-{i}") for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if unexpected:
        raise unexpected[0]
    return outcomes


def check_pin(artefact: Artefact, actual_hex: str) -> Diagnostic | None:
    """An error when the manifest pins a digest the file's bytes do not have."""
    if artefact.sha256 is None or artefact.sha256.lower() == actual_hex:
        return None
    return error(f"{artefact.role} {artefact.path} does not match its pinned sha256: "
                 f"pinned {artefact.sha256.lower()}, actual {actual_hex}", artefact.span)
