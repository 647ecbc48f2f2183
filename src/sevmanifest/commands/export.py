"""`sevm export FILE --format json|toml|simple-kbs`: reference values for attestation services."""
from __future__ import annotations

from .common import integer, path_argument
import sys

FORMATS = ("json", "toml", "simple-kbs")


def register(sub) -> None:
    parser = sub.add_parser(
        "export", help="reference values for attestation services",
        description="Print the reference values (launch digests, policy, artefact digests) of "
                    "a manifest for an attestation service. See docs/lockfiles.md.")
    parser.add_argument("file", metavar="FILE", type=path_argument, help=".sevm manifest")
    parser.add_argument("--vm", metavar="NAME", help="only this vm")
    parser.add_argument("--format", choices=FORMATS, default="json",
                        help="json | toml (every vm and variant) | simple-kbs (policy JSON of "
                             "Confidential Containers' simple-kbs); default json")
    parser.add_argument("--build-id", type=integer(0, 0xFF), action="append", default=[], metavar="N",
                        help="simple-kbs: allow this firmware build id (repeatable; "
                             "none given: any build)")
    parser.add_argument("-o", "--output", metavar="OUT", type=path_argument,
                        help="write here (atomically) "
                        "instead of standard output")
    parser.add_argument("--no-cache", action="store_true",
                        help="do not use the artefact digest cache")
    parser.set_defaults(func=run)


def run(args) -> int:
    from ..diagnostics import DiagnosticError
    from ..fsutil import atomic_write
    from ..lock.cache import open_cache
    from ..lock.export import export
    from ..lock.guard import check_matrix_size
    from ..measure.digest import compute_many
    from .common import bytes_safe_output, load_manifest, select_vms

    bytes_safe_output()  # a non-UTF-8 file name in --format toml goes out as its bytes
    manifest = load_manifest(args.file)
    vms = select_vms(manifest, args.vm)
    too_big = [d for d in map(check_matrix_size, vms) if d is not None]
    if too_big:
        raise DiagnosticError(too_big)
    measurements = compute_many(vms, cache=open_cache(not args.no_cache))
    text = export(args.format, manifest, measurements, build_ids=args.build_id)
    if args.output and args.output != "-":
        atomic_write(args.output, text)
    else:
        sys.stdout.write(text)
    return 0
