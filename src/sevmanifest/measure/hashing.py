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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Protocol

from ..diagnostics import Diagnostic, DiagnosticError, error
from ..model import Artefact
from .fileio import CHUNK_SIZE, open_regular

MAX_THREADS = 8


class DigestCache(Protocol):
    def lookup(self, path: Path, st: os.stat_result) -> str | None: ...
    def store(self, path: Path, st: os.stat_result, sha256_hex: str) -> None: ...


@dataclass
class FileDigest:
    path: Path
    sha256_hex: str
    state: "hashlib._Hash | None"  # the hash object after the whole file, when requested
    from_cache: bool = False


def file_key(path: Path) -> Path:
    """Two manifest paths naming the same file must hash it once."""
    return Path(os.path.realpath(path))


def stream_into(fd: int, state, *, chunk_size: int = CHUNK_SIZE) -> int:
    """Feed the rest of ``fd`` into ``state`` in fixed-size chunks; return the byte count."""
    buffer = bytearray(chunk_size)
    view = memoryview(buffer)
    total = 0
    while True:
        n = os.readv(fd, [buffer])
        if n == 0:
            return total
        state.update(view[:n])
        total += n


def hash_file(path: Path, *, what: str = "file", artefact: Artefact | None = None,
              keep_state: bool = False, cache: DigestCache | None = None) -> FileDigest:
    """SHA-256 of one regular file.  A cache hit skips reading unless the state is needed."""
    span = artefact.span if artefact else None
    fd, st = open_regular(path, what, span)
    try:
        if cache is not None and not keep_state:
            cached = cache.lookup(path, st)
            if cached is not None:
                return FileDigest(path, cached, None, from_cache=True)
        state = hashlib.sha256()
        try:
            count = stream_into(fd, state)
        except OSError as exc:
            raise DiagnosticError(error(f"cannot read {what} {path}: {exc.strerror or exc}", span,
                                        fatal_input=True)) from None
        if count != st.st_size:
            raise DiagnosticError(error(f"{what} {path} changed size while it was hashed", span,
                                        fatal_input=True))
    finally:
        os.close(fd)
    digest = FileDigest(path, state.hexdigest(), state if keep_state else None)
    if cache is not None:
        cache.store(path, st, digest.sha256_hex)
    return digest


@dataclass(frozen=True)
class HashJob:
    artefact: Artefact
    keep_state: bool


def hash_artefacts(jobs: Iterable[HashJob], *, cache: DigestCache | None = None,
                   ) -> dict[Path, FileDigest]:
    """Hash every distinct file of ``jobs`` once, in parallel; results keyed by ``file_key``.

    Problems with several files are all reported together in one DiagnosticError.
    """
    merged: dict[Path, HashJob] = {}
    for job in jobs:
        key = file_key(job.artefact.path)
        previous = merged.get(key)
        if previous is None or (job.keep_state and not previous.keep_state):
            merged[key] = job
    if not merged:
        return {}

    def run(job: HashJob) -> FileDigest:
        return hash_file(job.artefact.path, what=job.artefact.role, artefact=job.artefact,
                         keep_state=job.keep_state, cache=cache)

    results: dict[Path, FileDigest] = {}
    problems: list[Diagnostic] = []
    workers = min(len(merged), os.cpu_count() or 2, MAX_THREADS)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sevm-hash") as pool:
        futures = {key: pool.submit(run, job) for key, job in merged.items()}
        for key, future in futures.items():
            try:
                results[key] = future.result()
            except DiagnosticError as exc:
                problems.extend(exc.diagnostics)
    if problems:
        raise DiagnosticError(problems)
    return results


def check_pin(artefact: Artefact, actual_hex: str) -> Diagnostic | None:
    """An error when the manifest pins a digest the file's bytes do not have."""
    if artefact.sha256 is None or artefact.sha256.lower() == actual_hex:
        return None
    return error(f"{artefact.role} {artefact.path} does not match its pinned sha256: "
                 f"pinned {artefact.sha256.lower()}, actual {actual_hex}", artefact.span)
