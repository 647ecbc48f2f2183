"""`sevm verify`: check a launch measurement reported by a host against a manifest.

    sevm verify FILE [--vm NAME] --tik F
        (--measurement B64|HEX [--mnonce B64|HEX] | --launch-measure F)
        (--api-major N --api-minor N --build N [--policy N] | --query-sev F)
        [--format text|json]

Exit 0: a variant matches and the reported policy equals the manifest's; 1: no match, or
the policy differs; 2: usage error or unreadable input.  The TIK is never printed.
"""
from __future__ import annotations

from .common import integer, path_argument
import json
import sys

from ..diagnostics import EXIT_FAILED, EXIT_OK, DiagnosticError, error



def __getattr__(name: str):
    """``TIK_READ_LIMIT``, now measure.launch's (shared with sevm measure), looked up only
    when asked for: that module is not loaded to build the parser."""
    if name == "TIK_READ_LIMIT":
        from ..measure.launch import TIK_READ_LIMIT
        return TIK_READ_LIMIT
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def register(sub) -> None:
    p = sub.add_parser(
        "verify", help="check a reported launch measurement against every variant of a manifest",
        description="Check the launch measurement an SEV host reports (QMP query-sev-launch-measure, "
                    "libvirt sev-measurement) against every variant of the VMs in FILE.  Exit 0 "
                    "on a match with the manifest's policy, 1 otherwise, 2 on bad input.  "
                    "One of the files may be '-' (standard input).")
    p.add_argument("file", metavar="FILE", type=path_argument, help="the .sevm manifest")
    p.add_argument("--vm", metavar="NAME", help="check only this vm (default: every vm in FILE)")
    p.add_argument("--tik", metavar="F", required=True, type=path_argument,
                   help="the 16-byte binary TIK file of the launch session (sevctl NAME_tik.bin)")
    blob = p.add_argument_group("reported measurement (one of)")
    blob.add_argument("--measurement", metavar="B64|HEX",
                      help="the 48-byte blob measurement||mnonce as QEMU/libvirt report it "
                           "(or the 32-byte measurement with --mnonce)")
    blob.add_argument("--mnonce", metavar="B64|HEX", help="the 16-byte nonce, when --measurement "
                                                          "holds the 32-byte measurement alone")
    blob.add_argument("--launch-measure", metavar="F", type=path_argument,
                      help="JSON reply of QMP query-sev-launch-measure")
    host = p.add_argument_group("host SEV firmware and policy (one of)")
    host.add_argument("--api-major", metavar="N", type=integer(0, 0xFF),
                      help="SEV firmware API major version (query-sev api-major)")
    host.add_argument("--api-minor", metavar="N", type=integer(0, 0xFF),
                      help="SEV firmware API minor version (query-sev api-minor)")
    host.add_argument("--build", "--build-id", dest="build", metavar="N", type=integer(0, 0xFF),
                      help="SEV firmware build (query-sev build-id)")
    host.add_argument("--policy", metavar="N", type=integer(0, 0xFFFF_FFFF),
                      help="the policy the host reports (decimal or 0x hex); without it the "
                           "HMAC is computed over the manifest's policy, so only a launch with "
                           "exactly that policy can match")
    host.add_argument("--query-sev", metavar="F", type=path_argument, help="JSON reply of QMP query-sev")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..measure.digest import compute_many
    from ..measure.launch import read_tik
    from ..measure.verify import Tik, verify
    from ..measure.verify_report import to_json, to_text
    from .common import load_manifest, select_vms
    from .common import bytes_safe_output
    bytes_safe_output()

    _check_usage(args)
    tik = Tik(read_tik(args.tik))
    reported = _reported(args)
    vms = select_vms(load_manifest(args.file), args.vm)
    result = verify(compute_many(vms), reported, tik)
    if args.format == "json":
        sys.stdout.write(json.dumps(to_json(result), indent=2) + "\n")
    else:
        sys.stdout.write(to_text(result))
    return EXIT_OK if result.ok else EXIT_FAILED


def _usage(message: str) -> DiagnosticError:
    return DiagnosticError(error(message, fatal_input=True))


def _check_usage(args) -> None:
    if (args.measurement is None) == (args.launch_measure is None):
        raise _usage("give the reported measurement with exactly one of --measurement or "
                     "--launch-measure")
    if args.mnonce is not None and args.measurement is None:
        raise _usage("--mnonce goes with --measurement (a query-sev-launch-measure reply "
                     "already holds the nonce)")
    by_option = [args.api_major, args.api_minor, args.build]
    if args.query_sev is not None:
        if any(v is not None for v in by_option + [args.policy]):
            raise _usage("--query-sev already gives the API version, build and policy: drop "
                         "--api-major/--api-minor/--build/--policy")
    elif any(v is None for v in by_option):
        raise _usage("give the host's SEV firmware version with --api-major, --api-minor and "
                     "--build (as query-sev or virsh domlaunchsecinfo report them), or "
                     "--query-sev FILE")
    stdin_users = [o for o, v in (("FILE", args.file), ("--tik", args.tik),
                                  ("--query-sev", args.query_sev),
                                  ("--launch-measure", args.launch_measure)) if v == "-"]
    if len(stdin_users) > 1:
        raise _usage(f"only one input can be '-' (standard input): {', '.join(stdin_users)}")


def _reported(args):
    from ..measure.qmp import MAX_REPLY_BYTES, parse_launch_measure, parse_query_sev
    from ..measure.verify import Reported

    if args.launch_measure is not None:
        source = _name(args.launch_measure)
        blob = parse_launch_measure(_read(args.launch_measure, "query-sev-launch-measure reply",
                                          MAX_REPLY_BYTES), source)
    else:
        blob = _blob_from_options(args.measurement, args.mnonce)
    if args.query_sev is not None:
        info = parse_query_sev(_read(args.query_sev, "query-sev reply", MAX_REPLY_BYTES),
                               _name(args.query_sev))
        platform = dict(api_major=info.api_major, api_minor=info.api_minor, build=info.build,
                        policy=info.policy)
    else:
        platform = dict(api_major=args.api_major, api_minor=args.api_minor, build=args.build,
                        policy=args.policy)
    return Reported.from_blob(blob, **platform)


def _blob_from_options(measurement: str, mnonce: str | None) -> bytes:
    from ..measure.launch import decode_bytes_arg

    if mnonce is not None:
        return (decode_bytes_arg(measurement, 32, "--measurement (with --mnonce)")
                + decode_bytes_arg(mnonce, 16, "--mnonce"))
    if _is_hex_of(measurement, 32):
        # 64 hex digits would also decode as base64 of 48 bytes: say what it really is.
        raise _usage(_MEASUREMENT_ONLY)
    try:
        return decode_bytes_arg(measurement, 48, "--measurement")
    except DiagnosticError:
        try:
            decode_bytes_arg(measurement, 32, "--measurement")
        except DiagnosticError:
            raise _usage("--measurement must be the 48-byte blob measurement||mnonce that QEMU "
                         "and libvirt report, as base64 (64 characters) or hex (96 digits)") from None
        raise _usage(_MEASUREMENT_ONLY) from None


_MEASUREMENT_ONLY = ("--measurement holds 32 bytes: that is the measurement without its nonce; "
                     "give the 48-byte blob (QMP query-sev-launch-measure \"data\", libvirt "
                     "sev-measurement) or add --mnonce")


def _is_hex_of(text: str, length: int) -> bool:
    digits = text.strip().removeprefix("0x")
    return len(digits) == 2 * length and all(c in "0123456789abcdefABCDEF" for c in digits)


def _read(path: str, what: str, limit: int) -> bytes:
    """Read a whole (small) input: a file, a pipe such as <(...), or '-' for stdin."""
    from ..measure.fileio import read_small_input

    data = read_small_input(path, what, limit)
    if len(data) > limit:
        raise _usage(f"{what} {_name(path)} is larger than {limit} bytes; that is not a {what}")
    return data


def _name(path: str) -> str:
    return "<stdin>" if path == "-" else path
