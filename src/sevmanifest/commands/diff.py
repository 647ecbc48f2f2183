"""`sevm diff OLD NEW` and `sevm diff --git REV [FILE...]`: semantic review of a manifest change."""
from __future__ import annotations

import os
import sys
from pathlib import Path

from ..diagnostics import EXIT_FAILED, EXIT_OK, EXIT_USAGE, DiagnosticError
from .common import path_argument

FORMATS = ("text", "markdown", "json", "github")
FAIL_ON = ("weaken", "measurement", "any")


def register(sub) -> None:
    parser = sub.add_parser(
        "diff", help="semantic review of a manifest change",
        description="Compare the compiled manifests (not their text), VM by VM, and classify "
        "each change as weakens, strengthens, measurement or neutral. "
        "Forms: OLD NEW, or --git REV [FILE...] (REV against the working tree; without FILE, "
        "every manifest that changed or whose imports changed).")
    parser.add_argument("files", nargs="*", metavar="FILE", type=path_argument)
    parser.add_argument("--git", metavar="REV", help="compare FILEs at git revision REV with the "
                        "working tree")
    parser.add_argument("--format", choices=FORMATS, default="text")
    parser.add_argument("--fail-on", choices=FAIL_ON, default=None,
                        help="exit 1 when a change weakens the policy (weaken), also when the "
                        "reference values change (measurement), or on any change (any)")
    parser.add_argument("--digests", action="store_true",
                        help="also show old and new launch digests of every changed variant "
                        "(reads and hashes the artefacts)")
    parser.add_argument("--color", choices=("auto", "always", "never"), default="auto",
                        help="colour in text output (auto: when standard output is a terminal)")
    parser.set_defaults(func=run)


def run(args) -> int:
    from ..review.pairs import SOURCES, build_report, pair_files, pairs_at_revision
    from .common import print_diagnostics
    from .common import bytes_safe_output
    bytes_safe_output()
    revision = None
    if args.files.count("-") > 1:
        print("sevm diff: error: only one input can be '-' (standard input)", file=sys.stderr)
        return EXIT_USAGE
    try:
        if args.git is not None:
            pairs, revision = pairs_at_revision(args.git, args.files, Path.cwd())
        elif len(args.files) == 2:
            pairs = [pair_files(*args.files)]
        else:
            print("sevm diff: error: expected OLD NEW, or --git REV [FILE...]", file=sys.stderr)
            return EXIT_USAGE
        report = build_report(pairs, fail_on=args.fail_on, with_digests=args.digests,
                              relpath=_repository_relative(Path.cwd()))
    except DiagnosticError as exc:
        print_diagnostics(exc.diagnostics, SOURCES)
        return EXIT_USAGE
    finally:
        if revision is not None:
            revision.close()
    sys.stdout.write(_render(report, args))
    return EXIT_FAILED if report.failed else EXIT_OK


def _render(report, args) -> str:
    from ..review import report as formats
    if args.format == "json":
        return formats.render_json(report)
    if args.format == "github":
        return formats.render_github(report)
    if args.format == "markdown":
        from ..review.markdown import render_markdown
        return render_markdown(report)
    return formats.render_text(report, colour=_colour(args.color))


def _colour(choice: str) -> bool:
    if choice != "auto":
        return choice == "always"
    return sys.stdout.isatty() and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"


def _repository_relative(cwd: Path):
    """Annotations name files relative to the repository root (GitHub resolves them there)."""
    from ..review.gitrev import GitError, toplevel
    try:
        root = toplevel(cwd)
    except GitError:
        return lambda file: file

    def relpath(file: str) -> str:
        absolute = Path(os.path.abspath(file))
        try:
            return absolute.relative_to(root).as_posix()
        except ValueError:
            return file
    return relpath
