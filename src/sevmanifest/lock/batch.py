"""Many manifests at once (``sevm lock`` / ``sevm check --locked`` over a repository).

Each file is compiled, guarded against huge matrices and measured, then handed to an
*action* (render a lock, compare with a lock) that returns diagnostics and optionally bytes to
write.  Files are processed in contiguous chunks: within a chunk ``compute_many`` hashes every
shared artefact once; across chunks the parent passes on the digests it hashed before forking
and those earlier chunks hashed (``shared.py``), and the digest cache shares them between runs.
Chunks run in forked worker processes (``forked.py``) because compiling and building VMSAs
is Python work that threads cannot spread over cores (docs/lockfiles.md records the
measurement behind this choice); a few chunks per worker let the parent write the locks of
finished chunks while the workers go on.  Outputs are written by the parent only, so an
interrupted run is handled in one place.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from collections import namedtuple
from collections.abc import Callable, Iterator, Sequence

from ..diagnostics import Diagnostic, DiagnosticError, error
from ..model import Manifest
from .guard import check_matrix_size
from .shared import Known, SharedDigests, early_digests, hash_shared

TYPE_CHECKING = False  # not typing's (see measure/hashing.py)
if TYPE_CHECKING:
    from .reuse import RunFiles

# Below this many files a worker process costs more than it saves (measured with a warm
# digest cache: see docs/lockfiles.md).
MIN_FILES_PER_WORKER = 24
# Chunks per worker (at most), and files per chunk (at least): see _parts_per_worker.
# Each part re-streams the firmware and is one more task, and the parent's writes of one
# part compete with the workers computing the next.  200 manifests on 2 workers, cold
# caches (medians of interleaved runs): in earlier code 1 part 0.87-0.93 s, 2 parts
# 0.86-0.89 s, 4 parts 0.91-0.93 s (15 runs); in the seventh round's, 1 part 597 ms
# against 630 ms for 2 on tmpfs (31 runs), 860 against 907 ms on the root disk (21 runs).
# So a second part per worker only from 128 files a part on.
PARTS_PER_WORKER = 2
MIN_FILES_PER_PART = 128

Action = Callable[[Manifest, list], tuple[list[Diagnostic], bytes | None]]


@dataclass
class FileOutcome:
    path: str
    diagnostics: list[Diagnostic] = field(default_factory=list)
    output: bytes | None = None  # what the action wants written (None: nothing, or failed)

    @property
    def failed(self) -> bool:
        return any(d.is_error for d in self.diagnostics)


def run_files(paths: Sequence[str], action: Action, *, jobs: int | None = None,
              use_cache: bool = True, reuse: str | None = None) -> list[FileOutcome]:
    """Apply ``action`` to every file; outcomes in the order of ``paths``.

    ``action`` runs in forked worker processes (lock/forked.py) and returns what can be
    pickled back.
    """
    parts = iter_files(paths, action, jobs=jobs, use_cache=use_cache, reuse=reuse)
    with contextlib.closing(parts):
        return [outcome for part in parts for outcome in part]


def iter_files(paths: Sequence[str], action: Action, *, jobs: int | None = None,
               use_cache: bool = True, reuse: str | None = None) -> Iterator[list[FileOutcome]]:
    """``run_files`` in parts (consecutive files, in order) as workers finish them, so the
    caller can write results while the workers go on.  Close it (``contextlib.closing``)
    if you stop early or fail: that stops the workers at once.

    ``reuse`` (``lock.reuse``): ``"write"``, ``action``'s output is the lock, which may be
    recorded and reused; ``"compare"``, ``action`` compares with the lock file, and a file
    that holds exactly the recorded lock is current without measuring."""
    import time

    from ..commands.common import forget_lint_configs
    forget_lint_configs()  # read again, as in a new process (library callers run many times)
    run = _Run(action, use_cache, reuse if use_cache else None, time.time())
    workers = _worker_count(_needing_parse(paths), jobs)
    if workers <= 1:
        yield _run_chunk(list(paths), run)[0]
        return
    from .. import earlyhash
    from .cache import open_cache
    from .forked import start
    _preload()
    chunks = _chunks(list(paths), workers * _parts_per_worker(len(paths), workers))
    # before forking (hashing threads are joined by then): see lock/shared.py
    known = hash_shared([chunk[0] for chunk in chunks[:workers]], open_cache(use_cache))
    earlyhash.results()  # its thread is done (a wrong guess too): no thread runs at the fork
    yield from _in_order(start, chunks, workers, run, known)


def _in_order(start, chunks: list[list[str]], workers: int, run: "_Run",
              known: Known) -> Iterator[list[FileOutcome]]:
    """Run ``chunks`` in worker processes (``start``: ``forked.start``), at most ``workers``
    at a time, so each chunk starts with every digest learned so far; yield the outcomes in
    chunk order.  Closed or interrupted, it stops every worker at once."""
    from ..commands import common
    from .forked import wait_any
    running: dict = {}  # child -> chunk index
    done: dict[int, list[FileOutcome]] = {}
    pending = iter(range(len(chunks)))

    def refill() -> None:
        while len(running) < workers:
            index = next(pending, None)
            if index is None:
                return
            running[start(_run_chunk, chunks[index], run, known, running=running)] = index

    try:
        refill()
        for index in range(len(chunks)):
            while index not in done:
                for child in wait_any(running):
                    outcomes, sources, learned = child.result()
                    known = {**known, **learned}
                    common._SOURCES.texts.update(sources)  # so the CLI can print carets
                    done[running.pop(child)] = outcomes
                refill()  # before the caller gets this part: the workers go on meanwhile
            yield done.pop(index)
    finally:  # interrupted (signal, Ctrl-C), closed early, a worker failed: stop the others
        for child in running:
            child.stop()


def _parts_per_worker(files: int, workers: int) -> int:
    """Several chunks per worker let the parent write locks while workers compute; each
    chunk costs one more stream of the firmware, so chunks stay at MIN_FILES_PER_PART+."""
    return max(1, min(PARTS_PER_WORKER, files // (workers * MIN_FILES_PER_PART)))


def default_jobs() -> int:
    """The CPUs this process may run on (respects taskset/cpusets, unlike os.cpu_count)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _needing_parse(paths: Sequence[str]) -> int:
    """How many of ``paths`` have no compiled-manifest entry (an edited manifest's entry
    still counts: this only sizes the pool).  Parsing is the work worker processes pay for;
    over unchanged manifests one process was faster (200 locks, warm caches: 0.43-0.51 s in
    one process, 0.48-0.56 s with two workers, 4 interleaved runs each)."""
    from ..compilecache import open_compile_cache
    cache = open_compile_cache()
    if cache is None:
        return len(paths)
    return sum(not cache.has_entry(p) for p in paths)


def _worker_count(files: int, jobs: int | None) -> int:
    if not hasattr(os, "fork"):  # workers are forked (lock/forked.py)
        return 1
    jobs = jobs if jobs and jobs > 0 else default_jobs()
    return max(1, min(jobs, files // MIN_FILES_PER_WORKER))


def _chunks(paths: list[str], n: int) -> list[list[str]]:
    """``n`` contiguous slices: neighbouring files tend to share artefacts."""
    size, extra = divmod(len(paths), n)
    out, start = [], 0
    for i in range(n):
        end = start + size + (1 if i < extra else 0)
        out.append(paths[start:end])
        start = end
    return out


def _preload() -> None:
    """Import what workers need before forking, so each does not pay ~0.2 s to import it.
    Not the front end (Lark): unchanged manifests come from the compiled-manifest cache, and
    a worker that has to parse imports it in parallel with the others."""
    from ..measure import digest  # noqa: F401
    from . import cache, lockfile  # noqa: F401


class _Run(namedtuple("_Run", "action use_cache reuse started")):
    """What every chunk of one run shares (forked workers have it in memory): ``action``,
    ``use_cache``, ``reuse`` (None, "write" or "compare": see iter_files) and ``started``
    (time.time() before any artefact of the run was hashed).
    A namedtuple, not typing's NamedTuple: ``sevm lock`` need not import typing (~6 ms)."""
    __slots__ = ()


def _run_chunk(paths: list[str], run: _Run, known: Known | None = None):
    """Process ``paths`` in this process.  Returns the outcomes, the source texts read (for
    carets) and the digests of the artefacts hashed here (for the parent to pass on).

    ``known``: artefact digests the parent already has (``shared.hash_shared``)."""
    from ..commands import common
    from .cache import open_cache
    cache = SharedDigests(known or {}, open_cache(run.use_cache))
    seen = set(common._SOURCES.texts)  # texts an earlier chunk of this worker returned
    outcomes = [FileOutcome(p) for p in paths]
    compiled_cache = _compile_cache() if run.reuse else None
    from .reuse import RunFiles
    files = RunFiles() if run.reuse else None  # artefact paths looked up once in this chunk
    entries: dict[int, object] = {}  # id(outcome) -> its valid cache entry (or None), read once
    compare = run.reuse == "compare"
    todo = [o for o in outcomes if compiled_cache is None
            or not _reused(o, compiled_cache, files, entries, compare)]
    pending: dict[int, common.PendingEntry] | None = {} if run.reuse == "write" else None
    compiled = [(o, _compile(o, pending, entries)) for o in todo]
    ready = [(o, m) for o, m in compiled if m is not None]
    if known is None:  # one process for the run, which may have hashed ahead (earlyhash)
        named = {a.path for _, m in ready for vm in m.vms for a in vm.artefacts}  # a few files
        cache.known.update(early_digests({os.path.realpath(p) for p in named}, cache.disk))
    for outcome, manifest, measurements in _measure_all(ready, cache):
        try:
            diagnostics, output = run.action(manifest, measurements)
        except DiagnosticError as exc:
            diagnostics, output = exc.diagnostics, None
        outcome.diagnostics += diagnostics
        outcome.output = None if outcome.failed else output
        entry = pending.pop(id(outcome), None) if pending else None
        if entry is not None:
            entry.store(lock=_lock_record(outcome, diagnostics, entry, cache, run.started,
                                          files))
    for entry in (pending or {}).values():  # compiled, but not measured
        entry.store()
    sources = {k: v for k, v in common._SOURCES.texts.items() if k not in seen}
    return outcomes, sources, cache.learned


def _compile_cache():
    from ..compilecache import open_compile_cache
    return open_compile_cache()


def _reused(outcome: FileOutcome, compiled_cache, files: RunFiles, entries: dict,
            compare: bool = False) -> bool:
    """Whether the lock recorded in the manifest's cache entry is still good: then it is the
    outcome's output (``compare``: the lock file holds exactly it, and the outcome is
    "current"), with the manifest's warnings under today's lint configuration.  The entry
    read here is kept in ``entries`` for compiling (it is not read twice)."""
    from ..commands import common
    from .reuse import reusable_text
    entry = entries[id(outcome)] = compiled_cache.valid_entry(outcome.path)
    found = compiled_cache.lock_of(entry) if entry is not None else None
    text = reusable_text(found[0], files) if found is not None else None
    if text is None or (compare and not _file_holds(outcome.path, text)):
        return False
    _, warnings, sources = found
    diagnostics = common._apply_lint_config(outcome.path, warnings)  # may raise, as before
    if any(d.is_error for d in diagnostics):
        return False  # a warning raised to an error since: the normal path reports it
    common._SOURCES.texts.update(sources)  # for the carets under the warnings
    outcome.diagnostics += diagnostics
    outcome.output = None if compare else text
    return True


def _file_holds(manifest_path: str, text: bytes) -> bool:
    """The manifest's lock file has exactly ``text`` (anything else is compared the normal
    way, which says what changed)."""
    from .lockfile import holds, lock_path
    return holds(lock_path(manifest_path), text)


def _lock_record(outcome: FileOutcome, action_diagnostics: list[Diagnostic], entry,
                 cache: SharedDigests, started: float, files: RunFiles) -> dict | None:
    """What a later run may reuse of this outcome: a lock written with no diagnostic beyond
    the manifest's own warnings (which are replayed on reuse)."""
    if outcome.failed or action_diagnostics or outcome.output is None:
        return None
    from .reuse import record
    return record(entry.manifest, cache.seen, started, outcome.output, files)


def _compile(outcome: FileOutcome, pending: dict | None = None,
             entries: dict | None = None) -> Manifest | None:
    """Compile like every other command (lint configuration applied), then guard the matrix.
    ``pending``: the cache entry is not stored yet but put there (by ``id(outcome)``);
    ``entries``: cache entries ``_reused`` read already (by ``id(outcome)``)."""
    from ..commands import common
    if pending is None:
        manifest, diagnostics = common.compile_manifest(outcome.path)
    else:
        read = (entries or {}).get(id(outcome), common.READ_ENTRY)
        manifest, diagnostics, entry = common.compile_deferring_store(outcome.path, read)
        if entry is not None:
            pending[id(outcome)] = entry
    outcome.diagnostics += diagnostics
    if outcome.failed or manifest is None:
        if not outcome.failed:
            outcome.diagnostics.append(error(f"{outcome.path}: could not be compiled",
                                             fatal_input=True))
        return None
    guard = [d for d in map(check_matrix_size, manifest.vms) if d is not None]
    outcome.diagnostics += guard
    return None if guard else manifest


def _measure_all(ready: list[tuple[FileOutcome, Manifest]], cache):
    """Yield (outcome, manifest, measurements) for every file that measures cleanly.

    First all files together (shared artefacts hashed once); if anything fails, file by
    file, so each error is reported against the right file and the others still succeed.
    """
    if not ready:  # (every lock reused: the digest engine is not even imported)
        return
    from ..measure.digest import compute_many
    try:
        measured = compute_many([vm for _, m in ready for vm in m.vms], cache=cache)
    except DiagnosticError:
        measured = None
    if measured is not None:
        it = iter(measured)
        for outcome, manifest in ready:
            yield outcome, manifest, [next(it) for _ in manifest.vms]
        return
    for outcome, manifest in ready:
        try:
            measurements = compute_many(list(manifest.vms), cache=cache)
        except DiagnosticError as exc:
            outcome.diagnostics += exc.diagnostics
            continue
        yield outcome, manifest, measurements

