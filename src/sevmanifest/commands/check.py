"""`sevm check FILE...`: parse, resolve, validate and lint; with --locked also compare with FILE.lock."""
from __future__ import annotations

from ..diagnostics import EXIT_OK, exit_code
from .common import compile_and_report, integer, path_argument


def register(sub) -> None:
    parser = sub.add_parser("check", help="validate and lint manifests",
                            description="Parse, resolve imports and templates, validate and lint "
                            "manifests; print diagnostics as file:line:col.")
    parser.add_argument("files", nargs="+", metavar="FILE", type=path_argument)
    parser.add_argument("--locked", action="store_true",
                        help="also fail when FILE.lock is missing or no longer matches")
    parser.add_argument("--jobs", type=integer(1), default=None, metavar="N",
                        help="with --locked: measure with N workers (default: all cores)")
    parser.add_argument("--no-cache", action="store_true",
                        help="with --locked: do not use the artefact digest cache")
    parser.set_defaults(func=run)


def run(args) -> int:
    status = EXIT_OK
    clean = []
    for path in args.files:
        diagnostics = compile_and_report(path, firmware_checks=True)
        code = exit_code(diagnostics)
        status = max(status, code)
        if code == EXIT_OK:
            clean.append(path)
    if args.locked and clean:
        from ..lock.lockfile import check_locked_files
        from .common import print_diagnostics
        diagnostics, code = check_locked_files(clean, jobs=args.jobs, use_cache=not args.no_cache)
        print_diagnostics(diagnostics)
        status = max(status, code)
    return status
