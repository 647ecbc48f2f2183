"""Opening measured input files safely: regular files only, never blocking, bounded reads.

A manifest may name anything as firmware or kernel: a directory, a FIFO, ``/dev/zero``.
Opening with O_NONBLOCK and checking ``fstat`` *after* opening (no race with a rename)
turns all of those into a clean diagnostic instead of a hang or an endless read.
"""
from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from ..diagnostics import DiagnosticError, error
from ..model import Span

CHUNK_SIZE = 1 << 20  # bytes per read when streaming; bounds memory per hashing thread


def open_regular(path: Path, what: str, span: Span | None = None) -> tuple[int, os.stat_result]:
    """Open ``path`` read-only; return (fd, stat).  Raises DiagnosticError naming ``what``."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        _raise_if_special(path, what, span)  # e.g. a socket cannot be opened at all
        raise DiagnosticError(error(f"cannot read {what} {path}: {_reason(exc)}", span,
                                    fatal_input=True)) from None
    try:
        st = os.fstat(fd)
    except OSError as exc:  # pragma: no cover - fstat on an open fd practically never fails
        os.close(fd)
        raise DiagnosticError(error(f"cannot read {what} {path}: {_reason(exc)}", span,
                                    fatal_input=True)) from None
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise _not_regular(path, what, span, st)
    return fd, st


def _not_regular(path: Path, what: str, span: Span | None, st: os.stat_result) -> DiagnosticError:
    return DiagnosticError(error(f"{what} {path} is not a regular file ({_kind(st.st_mode)})",
                                 span, fatal_input=True))


def _raise_if_special(path: Path, what: str, span: Span | None) -> None:
    try:
        st = os.stat(path)
    except OSError:
        return
    if not stat.S_ISREG(st.st_mode):
        raise _not_regular(path, what, span, st)


def read_exact_at(fd: int, offset: int, length: int, what: str, path: Path) -> bytes:
    """Read ``length`` bytes at ``offset`` (the file may not shrink under us unnoticed)."""
    data = os.pread(fd, length, offset)
    if len(data) != length:
        raise DiagnosticError(error(f"{what} {path} changed while it was read (short read)",
                                    fatal_input=True))
    return data


def _reason(exc: OSError) -> str:
    if exc.errno == errno.ENOENT:
        return "no such file"
    if exc.errno == errno.EACCES:
        return "permission denied"
    return exc.strerror or str(exc)


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"
