"""The ``sevm`` command line: a thin layer over the library.

Each sub-command lives in ``sevmanifest.commands.<name>`` and exposes
``register(subparsers)``, which adds its parser and sets ``func`` to a function taking
the parsed arguments and returning an exit status.  Command modules import heavy
dependencies (Jinja2, cryptography) inside their functions, so ``sevm check`` starts fast.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

from .diagnostics import EXIT_USAGE, DiagnosticError
from .fsutil import OutputError
from .streams import (GuardedOutput, QuietOutput, StandardOutputError, discard_standard_output,
                      standard_streams)

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
    standard_streams()
    streams = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = GuardedOutput(sys.stdout), QuietOutput(sys.stderr)
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
        discard_standard_output()
        return EXIT_USAGE
    except BrokenPipeError:
        # the reader went away (e.g. `sevm measure | head`); nothing useful to say
        discard_standard_output()
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
        if _worker_failed(exc):  # killed (out of memory?): not a bug, and said plainly
            print(f"sevm: error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        print(f"sevm: internal error: {type(exc).__name__}: {exc}\n"
              "This is a bug in sevm; rerun with SEVM_DEBUG=1 for details.", file=sys.stderr)
        return EXIT_INTERNAL


def _worker_failed(exc: Exception) -> bool:
    forked = sys.modules.get("sevmanifest.lock.forked")  # (only loaded if workers ran)
    return forked is not None and isinstance(exc, forked.WorkerFailed)


if __name__ == "__main__":
    sys.exit(main())
