"""Writing files so that a reader sees the old content or the new, never a partial file.

A symbolic link at the target is replaced by the new file, not written through: a link
planted in a repository (``web.sevm.lock -> ~/.bashrc`` or ``-> /dev/sda``) cannot redirect
sevm's output.  Paths under /dev or /proc (``-o /dev/stdout``, ``/dev/null``) and a FIFO or
character device at the path itself are streams with no file to replace: they are written
directly.
"""
from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

_STREAM_ROOTS = ("/dev/", "/proc/")


class OutputError(OSError):
    """A file could not be written; the message names it and the reason."""


def atomic_write(path: str | os.PathLike, data: bytes | str, *, mode: int | None = None) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same directory and rename.

    An interrupted run (signal, full disk) leaves either the previous file or the new one.
    """
    target = Path(path)
    # surrogateescape: undecodable bytes of a file name (kept as surrogates) go back out as
    # those bytes, exactly as on standard output
    payload = data.encode("utf-8", "surrogateescape") if isinstance(data, str) else data
    if _is_stream(target):
        _write_stream(target, payload)
        return
    directory = target.parent if str(target.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise OutputError(f"cannot write {target}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        if mode is None and target.exists():
            mode = target.stat().st_mode & 0o7777
        os.chmod(tmp, mode if mode is not None else 0o644)
        os.replace(tmp, target)
    except OSError as exc:
        _unlink_quietly(tmp)
        raise OutputError(f"cannot write {target}: {exc.strerror or exc}") from None
    except BaseException:
        _unlink_quietly(tmp)
        raise


def _is_stream(target: Path) -> bool:
    if os.path.abspath(target).startswith(_STREAM_ROOTS):
        return True
    try:
        mode = os.lstat(target).st_mode  # a link to a device is replaced, not followed
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISCHR(mode)


def _write_stream(target: Path, payload: bytes) -> None:
    # O_NONBLOCK: a FIFO nobody reads is an error (ENXIO), not a hang
    try:
        fd = os.open(target, os.O_WRONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise OutputError(f"cannot write {target}: {_reason(exc)}") from None
    try:
        os.set_blocking(fd, True)
        view = memoryview(payload)
        while view:
            view = view[os.write(fd, view):]
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
