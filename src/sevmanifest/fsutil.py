"""Writing files so that a reader sees the old content or the new, never a partial file.

A symbolic link at the target is replaced by the new file, not written through: a link
planted in a repository (``web.sevm.lock -> ~/.bashrc`` or ``-> /dev/sda``) cannot redirect
sevm's output.  Streams have no file to replace and are written directly: a FIFO or
character device at the path itself (``/dev/null``), the kernel's links to a descriptor
(``-o /dev/stdout``, ``/dev/fd/1``) and anything under /proc.  Any other path under /dev is a
file like every other: ``/dev/shm`` is a tmpfs where CI jobs keep checkouts.
"""
from __future__ import annotations

import os
import stat
import threading
from collections.abc import Iterable
from pathlib import Path

# directories whose symbolic links name an open descriptor (/dev/stdout -> /proc/self/fd/1)
_DESCRIPTOR_LINK_DIRS = ("/dev", "/dev/fd")
# atomic_write_many: fsyncs in flight at once, and files (open descriptors) per round.
# 200 locks: 64 a round (4 rounds of journal commits) 50-69 ms, 256 (one round) 41-51 ms.
SYNC_THREADS = 16
NAME_MAX = 255  # bytes in a file name (Linux file systems)
FILES_PER_ROUND = 256


class OutputError(OSError):
    """A file could not be written; the message names it and the reason."""


class _Temporary:
    """A temporary file beside ``target``, written and then renamed over it.  (A plain
    class: a dataclass cost every command ~1 ms of start-up.)"""
    __slots__ = ("target", "path", "fd", "renamed")

    def __init__(self, target: Path, path: str, fd: int | None):
        self.target = target
        self.path = path
        self.fd = fd  # open until it is installed or discarded
        self.renamed = False


def atomic_write(path: str | os.PathLike, data: bytes | str, *, mode: int | None = None) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same directory and rename.

    An interrupted run (signal, full disk) leaves either the previous file or the new one.
    """
    target = Path(path)
    payload = _payload(data)
    if _is_stream(target):
        _write_stream(target, payload)
        return
    temporary = _create(target, payload)
    try:
        _sync(temporary)
        _install(temporary, mode)
    except BaseException:
        _discard(temporary)
        raise


def atomic_write_many(files: Iterable[tuple[str | os.PathLike, bytes | str]],
                      ) -> list[OutputError | None]:
    """``atomic_write`` for many files: per file the same guarantee, the fsyncs overlapped.

    Returns, in order, None for each file written and the OutputError of each that was not.
    Why: one fsync waits for a journal commit (1.6-3.8 ms on the build machine), so 200
    locks in a row spent ~0.8 s there; fsyncs issued together share commits.  Only the
    fsyncs run in threads; temporary files are created, renamed and, when the caller is
    interrupted (signal, Ctrl-C), removed by the calling thread, so an interruption leaves
    every file old or new and no temporary file behind.
    """
    items = [(Path(p), _payload(d)) for p, d in files]
    results: list[OutputError | None] = []
    per_round = _files_per_round()
    for start in range(0, len(items), per_round):
        results += _write_round(items[start:start + per_round])
    return results


def _files_per_round() -> int:
    """Every file of a round is an open descriptor until it is synced: at most a quarter of
    the process's limit (``ulimit -n``), so a low limit makes smaller rounds, not "Too many
    open files" for every lock past it."""
    import resource
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return FILES_PER_ROUND
    return max(1, min(FILES_PER_ROUND, soft // 4))


def _write_round(items: list[tuple[Path, bytes]]) -> list[OutputError | None]:
    results: list = [None] * len(items)
    created: list[tuple[int, _Temporary]] = []
    try:
        for index, (target, payload) in enumerate(items):
            try:
                if _is_stream(target):
                    _write_stream(target, payload)
                else:
                    created.append((index, _create(target, payload)))
            except OutputError as exc:
                results[index] = exc
        failures = _sync_concurrently([t for _, t in created])
        for (index, temporary), failure in zip(created, failures):
            try:
                if failure is not None:
                    raise OutputError(f"cannot write {temporary.target}: "
                                      f"{failure.strerror or failure}")
                _install(temporary, None)
            except OutputError as exc:
                _discard(temporary)
                results[index] = exc
    except BaseException:
        for _, temporary in created:
            _discard(temporary)
        raise
    return results


def _payload(data: bytes | str) -> bytes:
    # surrogateescape: undecodable bytes of a file name (kept as surrogates) go back out as
    # those bytes, exactly as on standard output
    return data.encode("utf-8", "surrogateescape") if isinstance(data, str) else data


def _create(target: Path, payload: bytes) -> _Temporary:
    """The temporary file beside ``target`` with ``payload`` written (not yet synced)."""
    try:
        fd, tmp = _temporary_beside(target)
    except OSError as exc:
        raise OutputError(f"cannot write {target}: {exc.strerror or exc}") from None
    temporary = _Temporary(target, tmp, fd)
    try:
        write_all(fd, payload)
    except BaseException as exc:
        _discard(temporary)
        if isinstance(exc, OSError):
            raise OutputError(f"cannot write {target}: {exc.strerror or exc}") from None
        raise
    return temporary


def _temporary_beside(target: Path) -> tuple[int, str]:
    """A new hidden file ``.NAME.XXXXXXXXXXXX.tmp`` in ``target``'s directory, mode 0600:
    what ``tempfile.mkstemp`` does, without importing tempfile (and random, shutil: ~10 ms
    of every command's start-up; most commands write nothing)."""
    directory = os.path.dirname(target) or "."
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    for _ in range(100):
        path = os.path.join(directory, _temporary_name(target))
        try:
            return os.open(path, flags, 0o600), path
        except FileExistsError:
            continue
    raise FileExistsError(f"no unused temporary name beside {target}")


def _temporary_name(target: Path) -> str:
    """``.NAME.XXXXXXXXXXXX.tmp``: 18 bytes longer than the target's name, so a target whose
    name is near the 255-byte limit (NAME_MAX) has it shortened here, not refused."""
    name = os.fsencode(os.path.basename(target))[:NAME_MAX - 18]
    return f".{os.fsdecode(name)}.{os.urandom(6).hex()}.tmp"


def _sync(temporary: _Temporary) -> None:
    try:
        os.fsync(temporary.fd)
    except OSError as exc:
        raise OutputError(f"cannot write {temporary.target}: {exc.strerror or exc}") from None


def _sync_concurrently(temporaries: list[_Temporary]) -> list[OSError | None]:
    """fsync every file, up to SYNC_THREADS at once (fsync releases the GIL).

    Daemon threads: if the caller is interrupted while they wait on the disk, the process
    may still exit at once; the caller removes the temporary files.
    """
    if len(temporaries) <= 1:
        return [_sync_one(t) for t in temporaries]
    failures: list[OSError | None] = [None] * len(temporaries)
    pending = iter(range(len(temporaries)))
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                index = next(pending, None)
            if index is None:
                return
            failures[index] = _sync_one(temporaries[index])
    threads = [threading.Thread(target=worker, name=f"sevm-sync-{i}", daemon=True)
               for i in range(min(SYNC_THREADS, len(temporaries)))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return failures


def _sync_one(temporary: _Temporary) -> OSError | None:
    fd = temporary.fd
    if fd is None:  # discarded meanwhile (the caller was interrupted)
        return None
    try:
        os.fsync(fd)
    except OSError as exc:
        return exc
    return None


def _install(temporary: _Temporary, mode: int | None) -> None:
    """Close, set the mode (the old file's, else ``mode``, else 0644), rename over the target."""
    target = temporary.target
    try:
        fd, temporary.fd = temporary.fd, None
        if fd is not None:
            os.close(fd)
        if mode is None and target.exists():
            mode = target.stat().st_mode & 0o7777
        os.chmod(temporary.path, mode if mode is not None else 0o644)
        os.replace(temporary.path, target)
        temporary.renamed = True
    except OSError as exc:
        _discard(temporary)
        raise OutputError(f"cannot write {target}: {exc.strerror or exc}") from None


def replace_with_chunks(path: str | os.PathLike, chunks: Iterable[bytes], *,
                        durable: bool = True, mode: int = 0o644) -> Path:
    """Write ``chunks`` to a temporary file beside ``path`` and rename it over ``path``.

    For content too large to hold in memory (synthetic images) or not worth an fsync
    (``durable=False``: cache entries, where a lost entry is only a miss).  Raises OSError as
    it comes; unlike atomic_write, ``path`` is never treated as a stream.  Plain descriptor
    calls (no file object, fchmod): a cold ``sevm lock`` stores an entry per manifest.
    """
    target = os.fspath(path)
    fd, tmp = _temporary_beside(target)
    try:
        try:
            for chunk in chunks:
                write_all(fd, chunk)
            os.fchmod(fd, mode)
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException:
        _unlink_quietly(tmp)
        raise
    return Path(target)


def touch(path: str | os.PathLike, when: float, *, mode: int = 0o600) -> None:
    """Create ``path`` if it is missing (never through a symbolic link) and set its times to
    ``when``: a marker whose only content is its modification time (no temporary file that
    a crash could leave behind)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    try:
        os.utime(fd, (when, when))
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes) -> None:
    """All of ``data`` to the open descriptor ``fd`` (a file, pipe or FIFO)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _discard(temporary: _Temporary) -> None:
    """Close and remove the temporary file (a no-op once it has been renamed)."""
    fd, temporary.fd = temporary.fd, None
    if fd is not None:
        try:
            os.close(fd)
        except OSError:
            pass
    if not temporary.renamed:
        _unlink_quietly(temporary.path)


def _is_stream(target: Path) -> bool:
    absolute = os.path.abspath(target)
    if absolute.startswith("/proc/"):
        return True
    try:
        mode = os.lstat(target).st_mode  # a link to a device is replaced, not followed
    except OSError:
        return False
    if stat.S_ISLNK(mode):
        return os.path.dirname(absolute) in _DESCRIPTOR_LINK_DIRS
    return stat.S_ISFIFO(mode) or stat.S_ISCHR(mode)


def _write_stream(target: Path, payload: bytes) -> None:
    # O_NONBLOCK: a FIFO nobody reads is an error (ENXIO), not a hang
    try:
        fd = os.open(target, os.O_WRONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise OutputError(f"cannot write {target}: {_reason(exc)}") from None
    try:
        os.set_blocking(fd, True)
        write_all(fd, payload)
    except OSError as exc:
        raise OutputError(f"cannot write {target}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)


def _reason(exc: OSError) -> str:
    import errno
    if exc.errno == errno.ENXIO:
        return "no process is reading it"
    return exc.strerror or str(exc)


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
