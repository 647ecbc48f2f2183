"""Artefact digests a pool of workers shares: hashed once by the parent before it forks.

With a cold digest cache every worker of ``sevm lock`` over a fleet hashed the same images
(2 × 148 MiB for the benchmark's fleet on two workers).  The parent compiles the first
manifest of each chunk (a few milliseconds; contiguous chunks of a repository tend to share
images), hashes the distinct artefacts they name once, in threads, and hands the digests to
the workers, which then only compile, build VMSAs and render.  This is the sharing one
process gets from ``compute_many`` anyway, so it holds with ``--no-cache`` too; as an extra
guard a digest is used only while the file keeps the identity it had before it was hashed.
Whatever cannot be hashed here (a missing file, a manifest that does not compile) is left
to the worker, which reports it against the right file.
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from ..diagnostics import DiagnosticError
from ..model import Artefact

Identity = tuple[int, int, int, int, int]
# resolved path -> (identity before hashing, sha256 hex)
Known = dict[str, tuple[Identity, str]]


def identity(st: os.stat_result) -> Identity:
    """The digest cache's key fields: any change to the file's bytes changes one of them."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def hash_shared(samples: Sequence[str], cache) -> Known:
    """Digests of the artefacts the manifests ``samples`` name (compiled here, quietly),
    except a firmware whose hash state every worker needs: each streams it anyway (the
    launch digest's prefix), and its digest comes with that."""
    from ..commands.common import compile_manifest
    from ..measure.digest import needs_state
    artefacts = []
    for path in samples:
        manifest, diagnostics = compile_manifest(path)
        if manifest is not None and not any(d.is_error for d in diagnostics):
            artefacts += [a for vm in manifest.vms for a in vm.artefacts
                          if a.role != "firmware" or not needs_state(vm)]
    return hash_known(artefacts, cache)


def hash_known(artefacts: Iterable[Artefact], cache) -> Known:
    """Digests of ``artefacts`` (each distinct file once, in threads), with the identity each
    file had before it was read; files that cannot be hashed are left out (whoever hashes
    them later reports why).  What ``earlyhash`` hashed already is taken from it."""
    from ..measure.hashing import FileKeys, HashJob, hash_artefacts
    artefacts = list(artefacts)
    real = {path: os.path.realpath(path) for path in {a.path for a in artefacts}}
    early = early_digests(set(real.values()), cache)
    by_path = {a.path: a for a in artefacts if real[a.path] not in early}
    if not by_path:
        return early
    keys = FileKeys()
    before = {}
    for path in by_path:
        try:
            before[keys[path]] = identity(os.stat(keys[path]))
        except OSError:
            continue
    jobs = [HashJob(a, keep_state=False) for p, a in by_path.items() if keys[p] in before]
    try:
        found = hash_artefacts(jobs, cache=cache, keys=keys)
    except DiagnosticError:
        return early
    return {**early, **{str(key): (before[key], digest.sha256_hex) for key, digest in found.items()}}


def early_digests(wanted: set[str], disk) -> Known:
    """What ``earlyhash`` hashed of the files ``wanted`` (real paths) and is still the same
    file (waiting for those it is still hashing), stored in ``disk`` (the digest cache, or
    None) like anything hashed here."""
    from .. import earlyhash
    early = earlyhash.results(wanted)
    out: Known = {}
    for real in wanted & set(early):
        try:
            st = os.stat(real)
        except OSError:
            continue
        if identity(st) == early[real][0]:
            out[real] = early[real]
            if disk is not None:
                disk.store(Path(real), st, early[real][1])
    return out


class SharedDigests:
    """A ``measure.hashing.DigestCache``: the parent's digests first, then ``disk`` (the
    digest cache, or None with ``--no-cache``), which also receives every store.  What this
    process hashes itself is kept in ``learned``, for the parent to pass to later chunks;
    the identity of every file whose digest was used, in ``seen`` (for ``lock.reuse``)."""

    def __init__(self, known: Known, disk=None):
        self.known = known
        self.disk = disk
        self.learned: Known = {}
        self.seen: dict[str, Identity] = {}

    def lookup(self, path: Path, st: os.stat_result) -> str | None:
        real = os.path.realpath(path)
        hit = self.known.get(real)
        if hit is not None and hit[0] == identity(st):
            found = hit[1]
        else:
            found = self.disk.lookup(path, st) if self.disk is not None else None
        if found is not None:
            self.seen[real] = identity(st)
        return found

    def store(self, path: Path, st: os.stat_result, sha256_hex: str) -> None:
        # st is the identity from before the bytes were read (hash_file's fstat)
        real = os.path.realpath(path)
        self.learned[real] = (identity(st), sha256_hex)
        self.seen[real] = identity(st)
        if self.disk is not None:
            self.disk.store(path, st, sha256_hex)


class Prefetch:
    """``hash_known`` in a background thread, started as soon as the artefacts are known, so
    the files are read while the caller goes on (``sevm measure`` imports the VMSA, digest and
    report modules meanwhile: ~40 ms of a ~0.3 s run hidden behind the initrd's hashing).
    ``digests()`` returns the ``SharedDigests`` to measure with, which waits for it."""

    def __init__(self, artefacts: Iterable[Artefact], disk=None):
        import threading
        self.disk = disk
        self._known: Known = {}
        self._thread = threading.Thread(target=self._run, args=(list(artefacts),),
                                        name="sevm-prefetch", daemon=True)
        self._thread.start()

    def _run(self, artefacts: list[Artefact]) -> None:
        try:
            self._known = hash_known(artefacts, self.disk)
        except Exception:  # noqa: BLE001 - whatever failed here fails again, reported, later
            self._known = {}

    def digests(self) -> SharedDigests:
        """The ``SharedDigests`` to measure with.  Its first lookup waits for the hashing
        here, so that what must be read anyway (the firmware, whose hash state is needed,
        not its digest) is read meanwhile."""
        return _AfterPrefetch(self)

    def wait(self) -> Known:
        self._thread.join()
        return self._known


class _AfterPrefetch(SharedDigests):
    """``SharedDigests`` over what ``prefetch`` hashed, waited for at the first lookup (from
    any of the hashing threads: waiting again is harmless)."""

    def __init__(self, prefetch: Prefetch):
        super().__init__({}, prefetch.disk)
        self._prefetch = prefetch

    def lookup(self, path: Path, st: os.stat_result) -> str | None:
        prefetch = self._prefetch  # (another thread may clear it meanwhile)
        if prefetch is not None:
            self.known = prefetch.wait()
            self._prefetch = None
        return super().lookup(path, st)
