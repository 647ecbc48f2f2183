"""`sevm lock FILE…`: write ``FILE.lock`` beside each manifest (see docs/lockfiles.md)."""
from __future__ import annotations

import argparse
import contextlib
import signal

from .common import integer, path_argument, print_diagnostics


def add_batch_options(parser: argparse.ArgumentParser) -> None:
    """--jobs and --no-cache, shared with `sevm check --locked`."""
    parser.add_argument("-j", "--jobs", type=integer(1), metavar="N",
                        help="worker processes for many files (default: number of CPUs)")
    parser.add_argument("--no-cache", action="store_true",
                        help="hash every artefact from its bytes; neither read nor write the "
                             "digest cache (also: SEVM_NO_CACHE=1)")


def register(sub) -> None:
    parser = sub.add_parser(
        "lock", help="write FILE.lock: artefact digests and every variant's reference values",
        description="Compile and measure each manifest and write its reference values to "
                    "FILE.lock (TOML, deterministic, written atomically). Commit the lock "
                    "beside the manifest; `sevm check --locked` fails when it goes stale.")
    parser.add_argument("files", nargs="+", metavar="FILE", type=path_argument,
                        help=".sevm manifest")
    add_batch_options(parser)
    parser.set_defaults(func=run)


@contextlib.contextmanager
def cleanup_on_termination():
    """Turn SIGTERM/SIGHUP into SystemExit, so the atomic writer removes its temporary file
    (Python's default for them is to die on the spot).  SIGINT already raises."""
    def handler(signum, frame):
        raise SystemExit(128 + signum)
    signals = (signal.SIGTERM, signal.SIGHUP)
    try:
        previous = {s: signal.signal(s, handler) for s in signals}
    except ValueError:  # not the main thread (library use): leave signals alone
        yield
        return
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old)


def run(args) -> int:
    from ..lock.workflow import lock_files
    with cleanup_on_termination():
        result = lock_files(args.files, jobs=args.jobs, use_cache=not args.no_cache)
    print_diagnostics(result.diagnostics)
    for path in result.written:
        print(f"wrote {path}")
    for path in result.unchanged:
        print(f"{path} is up to date")
    return result.exit_code
