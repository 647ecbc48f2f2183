"""`sevm fmt [--check] FILE...`: rewrite manifests in the canonical layout."""
from __future__ import annotations

import os
import sys

from ..diagnostics import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from ..fsutil import atomic_write
from .common import path_argument, print_diagnostics


def register(sub) -> None:
    parser = sub.add_parser("fmt", help="format manifests canonically",
                            description="Rewrite manifests in the canonical layout (in place). "
                            "Comments are kept; the meaning never changes. '-' formats standard "
                            "input to standard output.")
    parser.add_argument("files", nargs="+", metavar="FILE", type=path_argument)
    parser.add_argument("--check", action="store_true",
                        help="change nothing; exit 1 if any file is not formatted")
    parser.set_defaults(func=run)


def run(args) -> int:
    from ..frontend.fmt import format_document
    from ..frontend.parse import parse_text
    from ..frontend.source import read_source
    status = EXIT_OK
    for path in args.files:
        text, problem = read_source(path, keep_bom=True)
        if problem is not None:
            print_diagnostics([problem])
            status = EXIT_USAGE
            continue
        bom = "\ufeff" if text.startswith("\ufeff") else ""  # kept where it was (language.md)
        text = text[len(bom):]
        document, problems = parse_text(text, path)
        if document is None or any(d.is_error for d in problems):
            from ..diagnostics import SourceCache
            print_diagnostics(problems, SourceCache({path: text}))
            status = EXIT_USAGE
            continue
        formatted = format_document(document, text)
        if path == "-" and not args.check:  # (--check only reports, for stdin too)
            sys.stdout.write(bom + formatted)
        elif formatted == text:
            continue
        elif args.check:
            print(f"{path}: not formatted (run: sevm fmt {path})")
            status = max(status, EXIT_FAILED)
        else:
            # a symlinked manifest stays a link: format the file it points at
            atomic_write(os.path.realpath(path), bom + formatted)
            print(f"{path}: formatted")
    return status
