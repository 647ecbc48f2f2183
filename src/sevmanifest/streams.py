"""The standard streams as ``sevm`` commands meet them: closed by the shell (``>&-``,
``2>&-``, ``<&-``), full (``> /dev/full``, a file-size limit), or left by their reader.
``cli.main`` installs these around every command, so each case is one clean error (or, for
standard error, silence) instead of an internal error or a truncated output."""
from __future__ import annotations

import errno
import io
import os
import sys

from .diagnostics import DiagnosticError, error
from .fsutil import OutputError


class _ClosedStream:
    """Standard output the shell closed (``>&-``): Python leaves ``sys.stdout`` None, and
    ``sys.stdout.write`` would fail with an AttributeError in the middle of a command.  Every
    write is a clean error instead; a command that writes only files (``-o``) still works."""
    encoding, errors = "utf-8", "surrogateescape"

    def write(self, text) -> int:
        raise OutputError("cannot write standard output: it is closed")

    def flush(self) -> None:
        pass

    @property
    def buffer(self):
        return self


class _ClosedInput(_ClosedStream):
    """Standard input the shell closed (``<&-``): reading it (``sevm check -``) is a clean
    error.  No ``fileno``: readers take it for an in-memory stream and call ``read``."""

    def read(self, size: int = -1):
        raise DiagnosticError(error("cannot read standard input: it is closed",
                                    fatal_input=True))


class StandardOutputError(OutputError):
    """Writing standard output failed (``> /dev/full``, a file-size limit, an I/O error)."""


class GuardedOutput:
    """Standard output whose failed writes (not a reader that left: EPIPE) are a
    StandardOutputError, told apart from every other OSError of a command: ``sevm export >
    out.json`` on a full disk is a clean error, not an internal one nor, when it first shows
    in the interpreter's final flush, exit 0 with a truncated file.  ``buffer`` (raw bytes
    for ``sevm render``) is guarded the same way; everything else is the stream's own.

    Unbuffered (PYTHONUNBUFFERED, ``-u``), the stream's buffer is the file itself, whose
    write may take only part of the data (a file-size limit): the text layer would drop the
    rest without a word, so the bytes are written here until all are taken or it fails."""

    def __init__(self, stream, owner: GuardedOutput | None = None):
        self._stream = stream
        self._raw = isinstance(stream, io.RawIOBase) or \
            isinstance(getattr(stream, "buffer", None), io.RawIOBase)
        self._owner = owner or self
        self.failure: StandardOutputError | None = None  # also when a caller swallowed it

    def write(self, data):
        try:
            if not self._raw:
                return self._stream.write(data)
            if isinstance(data, str):
                self._stream.flush()
                _write_all(self._stream.buffer, data.encode(self._stream.encoding,
                                                            self._stream.errors))
            else:
                _write_all(self._stream, data)
            return len(data)
        except (BrokenPipeError, OutputError):
            raise
        except OSError as exc:
            raise self._failed(exc) from None

    def flush(self) -> None:
        """Also raises a failure someone caught and ignored (argparse's --help does)."""
        try:
            self._stream.flush()
        except (BrokenPipeError, OutputError):
            raise
        except OSError as exc:
            raise self._failed(exc) from None
        if self._owner.failure is not None:
            raise self._owner.failure

    def _failed(self, exc: OSError) -> StandardOutputError:
        self._owner.failure = StandardOutputError(_cannot_write(exc))
        return self._owner.failure

    @property
    def buffer(self):
        return GuardedOutput(self._stream.buffer, self._owner)

    def __getattr__(self, name):
        return getattr(self._stream, name)


def _write_all(raw, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = raw.write(view)
        if not written:  # None: it would block; 0: nothing taken
            raise OSError(errno.EIO, "the output took no more data")
        view = view[written:]


def _cannot_write(exc: OSError) -> str:
    return f"cannot write standard output: {exc.strerror or exc}"


class QuietOutput:
    """Standard error whose failed writes (``2>/dev/full``) drop the diagnostics: they are
    the only channel to report on, and losing them must not change the exit status."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, data):
        try:
            return self._stream.write(data)
        except OSError:
            return len(data)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except OSError:
            pass

    def __getattr__(self, name):
        return getattr(self._stream, name)


def discard_standard_output() -> None:
    """After a failed write the stream still holds what it could not write, and the
    interpreter's final flush would fail again (a message, exit 120): send it to /dev/null."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # not a file (tests, embedding)
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


def standard_streams() -> None:
    """A closed stderr (``2>&-``) is None too, and print(file=None) writes to stdout: the
    diagnostics would land in the command's output (JSON, a QEMU command line).  They are
    dropped instead, as the shell asked."""
    if sys.stderr is None:
        sys.stderr = open(os.devnull, "w", encoding="utf-8", errors="surrogateescape")
    if sys.stdout is None:
        sys.stdout = _ClosedStream()
    if sys.stdin is None:
        sys.stdin = _ClosedInput()
