"""The ``sevm`` command line: a thin layer over the library.

Each sub-command lives in ``sevmanifest.commands.<name>`` and exposes
``register(subparsers)``, which adds its parser and sets ``func`` to a function taking
the parsed arguments and returning an exit status.  Command modules import heavy
dependencies (Jinja2, cryptography) inside their functions, so ``sevm check`` starts fast.
"""
from __future__ import annotations

import argparse
import errno
import importlib
import io
import os
import sys

from .diagnostics import EXIT_USAGE, DiagnosticError, error
from .fsutil import OutputError

COMMANDS = ("check", "fmt", "explain", "measure", "verify", "render", "lock", "export", "diff")
EXIT_INTERNAL = 3


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse's default exits 2 too; keep one style
        self.print_usage(sys.stderr)
        raise SystemExit(f"{self.prog}: error: {_redact_unrecognized(message)}") from None


def _redact_unrecognized(message: str) -> str:
    """Leftover words after a misspelt option may be a pasted key: name only the options."""
    prefix = "unrecognized arguments: "
    if not message.startswith(prefix):
        return message
    words = message[len(prefix):].split(" ")
    options = [w for w in words if w.startswith("-")]
    hidden = len(words) - len(options)
    shown = " ".join(options)
    if hidden:
        shown += f"{' and ' if options else ''}{hidden} other value(s), not shown"
    return prefix + shown


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The full parser; with ``command``, one that registers only that sub-command (its
    module alone is imported: ``sevm check`` need not load the other eight)."""
    parser = _Parser(prog="sevm", description="Compile .sevm manifests of AMD SEV / SEV-ES guests "
                     "into launch digests, measurements, QEMU/libvirt configuration and lock files.")
    parser.add_argument("--version", action=_LazyVersion)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in (command,) if command in COMMANDS else COMMANDS:
        module = importlib.import_module(f".commands.{name}", __package__)
        module.register(sub)
    return parser


class _LazyVersion(argparse._VersionAction):
    """``--version``, looked up only when asked for: importlib.metadata costs start-up time."""

    def __call__(self, parser, namespace, values, option_string=None):
        self.version = f"%(prog)s {_version()}"
        super().__call__(parser, namespace, values, option_string)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("sevmanifest")
    except PackageNotFoundError:
        return "unknown"


def _command_of(argv: list[str]) -> str | None:
    """The sub-command when it is the first argument (then no top-level option can follow:
    everything after it belongs to the sub-command), else None: register them all."""
    return argv[0] if argv and argv[0] in COMMANDS else None


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


class _GuardedOutput:
    """Standard output whose failed writes (not a reader that left: EPIPE) are a
    StandardOutputError, told apart from every other OSError of a command: ``sevm export >
    out.json`` on a full disk is a clean error, not an internal one nor, when it first shows
    in the interpreter's final flush, exit 0 with a truncated file.  ``buffer`` (raw bytes
    for ``sevm render``) is guarded the same way; everything else is the stream's own.

    Unbuffered (PYTHONUNBUFFERED, ``-u``), the stream's buffer is the file itself, whose
    write may take only part of the data (a file-size limit): the text layer would drop the
    rest without a word, so the bytes are written here until all are taken or it fails."""

    def __init__(self, stream, owner: _GuardedOutput | None = None):
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
        return _GuardedOutput(self._stream.buffer, self._owner)

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


class _QuietOutput:
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


def _discard_standard_output() -> None:
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


def _standard_streams() -> None:
    """A closed stderr (``2>&-``) is None too, and print(file=None) writes to stdout: the
    diagnostics would land in the command's output (JSON, a QEMU command line).  They are
    dropped instead, as the shell asked."""
    if sys.stderr is None:
        sys.stderr = open(os.devnull, "w", encoding="utf-8", errors="surrogateescape")
    if sys.stdout is None:
        sys.stdout = _ClosedStream()
    if sys.stdin is None:
        sys.stdin = _ClosedInput()


def _working_directory_exists() -> bool:
    """Relative paths (manifests, artefacts beside stdin, outputs, cache keys) all resolve
    against the working directory; when it was removed (a shell left in a deleted build
    directory), say so once, as git does, rather than fail somewhere in the middle."""
    try:
        os.getcwd()
    except FileNotFoundError:
        print("sevm: error: the working directory no longer exists (was it removed?); "
              "change to an existing directory", file=sys.stderr)
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    _standard_streams()
    streams = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _GuardedOutput(sys.stdout), _QuietOutput(sys.stderr)
    try:
        return _main(argv)
    finally:
        sys.stdout, sys.stderr = streams


def _main(argv: list[str]) -> int:
    try:
        status = _run(argv)
        # written now, inside the error handling: a full disk or a file-size limit must
        # not first show in the interpreter's final flush, after the exit status is decided
        sys.stdout.flush()
        return status
    except StandardOutputError as exc:
        print(f"sevm: error: {exc}", file=sys.stderr)
        _discard_standard_output()
        return EXIT_USAGE
    except BrokenPipeError:
        # the reader went away (e.g. `sevm measure | head`); nothing useful to say
        _discard_standard_output()
        return EXIT_USAGE


def _run(argv: list[str]) -> int:
    common = sys.modules.get("sevmanifest.commands.common")
    if common is not None:  # a second run in one process (tests, embedding) looks again
        common.forget_lint_configs()
    parser = build_parser(_command_of(argv))
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
            return EXIT_USAGE
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if not _working_directory_exists():
        return EXIT_USAGE
    try:
        return args.func(args)
    except DiagnosticError as exc:
        from .commands.common import print_diagnostics
        print_diagnostics(exc.diagnostics)
        return exc.exit_code
    except StandardOutputError:
        raise
    except OutputError as exc:
        print(f"sevm: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        raise
    except Exception as exc:  # a bug in sevm itself: say so without a traceback
        if os.environ.get("SEVM_DEBUG"):
            raise
        print(f"sevm: internal error: {type(exc).__name__}: {exc}\n"
              "This is a bug in sevm; rerun with SEVM_DEBUG=1 for details.", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
