"""Opening measured input files safely: regular files only, never blocking, bounded reads.

A manifest may name anything as firmware or kernel: a directory, a FIFO, ``/dev/zero``.
Opening with O_NONBLOCK and checking ``fstat`` *after* opening (no race with a rename)
turns all of those into a clean diagnostic instead of a hang or an endless read.

Small host inputs (QMP replies, the TIK) may also come through a pipe (``-``, or a shell's
``<(...)``): ``read_small_input`` accepts pipes too, but waits at most PIPE_WAIT_SECONDS
for the writer, so a FIFO nobody writes to is an error, not a hang.
"""
from __future__ import annotations

import errno
import os
import select
import stat
import sys
import time
from pathlib import Path

from ..diagnostics import DiagnosticError, error
from ..model import Span


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


def read_regular(path: Path, what: str, limit: int, span: Span | None = None) -> bytes:
    """At most ``limit + 1`` bytes of a regular file (the caller reports "too large")."""
    fd, _ = open_regular(path, what, span)
    try:
        return _read_regular(fd, limit, what, str(path))
    finally:
        os.close(fd)


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


def kind_of(mode: int) -> str:
    """"a directory", "a FIFO", "a device", "a socket" for an ``st_mode``, for messages."""
    return _kind(mode)


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


# A QMP reply or a TIK arrives in milliseconds, or in seconds over ssh; a pipe still silent
# after this long has no writer (e.g. a named FIFO nobody opened).
PIPE_WAIT_SECONDS = 30.0


def read_small_input(path: str, what: str, limit: int, *,
                     wait: float | None = None) -> bytes:
    """All of a small input: a regular file, a pipe or FIFO, or ``-`` (standard input).

    At most ``limit + 1`` bytes are read (the caller reports "too large" from the length);
    directories, devices, sockets and a terminal are refused; a pipe gets ``wait`` seconds
    in total.  Raises DiagnosticError (exit status 2) naming ``what`` and the path.
    """
    wait = PIPE_WAIT_SECONDS if wait is None else wait
    if path == "-":
        return _read_stdin(what, limit, wait)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        _raise_if_special(Path(path), what, None)
        raise DiagnosticError(error(f"cannot read {what} {path}: {_reason(exc)}",
                                    fatal_input=True)) from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISREG(mode):
            return _read_regular(fd, limit, what, path)
        if stat.S_ISFIFO(mode):
            return _read_pipe(fd, limit, what, path, wait)
        raise DiagnosticError(error(f"cannot read {what} {path}: it is {_kind(mode)}, not a "
                                    "file or a pipe", fatal_input=True))
    finally:
        os.close(fd)


def _read_stdin(what: str, limit: int, wait: float) -> bytes:
    try:
        fd = sys.stdin.fileno()  # never made non-blocking: the file description is shared
    except (AttributeError, ValueError, OSError):  # replaced by an in-memory stream
        return sys.stdin.buffer.read(limit + 1)
    if os.isatty(fd):
        raise DiagnosticError(error(f"cannot read {what} <stdin>: it is a terminal; pipe the "
                                    "input in or give a file", fatal_input=True))
    mode = os.fstat(fd).st_mode
    if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
        return _read_pipe(fd, limit, what, "<stdin>", wait)
    return _read_regular(fd, limit, what, "<stdin>")


def _read_regular(fd: int, limit: int, what: str, shown: str) -> bytes:
    chunks, total = [], 0
    try:
        while total <= limit:
            chunk = os.read(fd, limit + 1 - total)
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
    except OSError as exc:
        raise DiagnosticError(error(f"cannot read {what} {shown}: {_reason(exc)}",
                                    fatal_input=True)) from None
    return b"".join(chunks)


def _read_pipe(fd: int, limit: int, what: str, shown: str, wait: float) -> bytes:
    """Read until EOF or ``limit + 1`` bytes, within ``wait`` seconds in total.  A read
    follows a ready poll, so it returns at once whether or not the fd is non-blocking."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    deadline = time.monotonic() + wait
    chunks, total = [], 0
    while total <= limit:
        left = deadline - time.monotonic()
        # Linux reports nothing (not even POLLHUP) for a FIFO that never had a writer.
        if left <= 0 or not poller.poll(max(1, int(left * 1000))):
            raise DiagnosticError(error(
                f"cannot read {what} {shown}: no end of input from the pipe after {wait:g} s "
                "(is anything writing to it?)", fatal_input=True))
        try:
            chunk = os.read(fd, limit + 1 - total)
        except BlockingIOError:
            continue
        except OSError as exc:
            raise DiagnosticError(error(f"cannot read {what} {shown}: {_reason(exc)}",
                                        fatal_input=True)) from None
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)
