"""`sevm explain FILE|POLICY [--vm NAME]`: every policy bit, and what is measured, in words."""
from __future__ import annotations

import dataclasses
import json
import sys

from ..diagnostics import EXIT_OK, EXIT_USAGE, DiagnosticError, escape_unprintable, exit_code
from .common import path_argument


def register(sub) -> None:
    parser = sub.add_parser(
        "explain", help="every policy bit and every measured input in words",
        description="Explain a raw guest policy (a bare decimal or 0x hex integer, e.g. 0x5) "
        "or every VM of a manifest: each policy bit, its state and what it means for the guest "
        "owner, and the measured inputs in the order the hardware measures them. "
        "A file whose name is a number must be given as ./NAME.")
    parser.add_argument("target", metavar="FILE|POLICY", type=path_argument)
    parser.add_argument("--vm", metavar="NAME", help="only this VM of the manifest")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    parser.set_defaults(func=run)


def run(args) -> int:
    from ..review.explain import explain_policy, explain_vm, parse_policy
    from .common import bytes_safe_output
    bytes_safe_output()
    try:
        value = parse_policy(args.target)
    except ValueError as exc:
        print(f"sevm explain: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if value is not None:
        if args.vm:
            print("sevm explain: error: --vm needs a manifest, not a policy value", file=sys.stderr)
            return EXIT_USAGE
        try:
            lines = explain_policy(value)
        except ValueError as exc:
            print(f"sevm explain: error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        _emit(args.format, {"policy": f"0x{value:08x}", "bits": _plain(lines)},
              lambda: _policy_text(f"0x{value:08x}", lines))
        return EXIT_OK
    from .common import compile_manifest, print_diagnostics, select_vms
    manifest, diagnostics = compile_manifest(args.target)
    if manifest is None or any(d.is_error for d in diagnostics):
        print_diagnostics(diagnostics)
        return _failure_status(manifest, diagnostics)
    try:
        vms = select_vms(manifest, args.vm)
    except DiagnosticError as exc:
        print_diagnostics(exc.diagnostics)
        return exc.exit_code
    explained = [(vm, explain_vm(vm)) for vm in vms]
    _emit(args.format, {"vms": [_vm_json(vm, e) for vm, e in explained]},
          lambda: "\n".join(_vm_text(vm, e) for vm, e in explained))
    return EXIT_OK


def _failure_status(manifest, diagnostics) -> int:
    """As every command: 2 for input that cannot be used, 1 for a manifest that fails
    validation or lint; and, as documented, 2 for a vm over the matrix-size guard."""
    from .common import matrix_diagnostics
    if manifest is not None and any(d in diagnostics for d in matrix_diagnostics(manifest)):
        return EXIT_USAGE
    return exit_code(diagnostics)


def _emit(fmt: str, data: dict, text) -> None:
    if fmt == "json":
        # (ASCII escapes: a path byte that is not UTF-8 stays valid JSON)
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
    else:
        sys.stdout.write(text())


def _plain(items) -> list[dict]:
    return [dataclasses.asdict(item) for item in items]


def _policy_text(title: str, lines) -> str:
    out = [f"policy {title}"]
    for line in lines:
        flag = "!" if line.concern else " "
        bits = ("bits " if "-" in line.bits else "bit ") + line.bits
        out.append(f" {flag} {bits:<10} {line.name:<8} {line.field or '-':<20} "
                   f"{line.state:<10} {line.meaning}")
    out.append("   (! marks a state weaker than the safe choice)")
    return "\n".join(out) + "\n"


def _vm_text(vm, explanation) -> str:
    out = [f"vm {vm.name} ({escape_unprintable(vm.file)}): type {vm.type.value}, {vm.variant_count()} variant"
           f"{'' if vm.variant_count() == 1 else 's'}", ""]
    out.append(_policy_text(explanation.policy_hex, explanation.policy))
    out.append("measured, in the order the hardware measures it "
               "(launch digest = SHA-256 over these, in this order):")
    for number, item in enumerate(explanation.measured, start=1):
        out.append(f"  {number}. {item.step}: {item.detail}")
    out.append("not in the launch digest:")
    out.extend(f"  - {item}" for item in explanation.not_in_digest)
    return "\n".join(out) + "\n"


def _vm_json(vm, explanation) -> dict:
    return {"name": vm.name, "file": vm.file, "type": vm.type.value,
            "policy": explanation.policy_hex, "bits": _plain(explanation.policy),
            "measured": _plain(explanation.measured),
            "not_in_digest": list(explanation.not_in_digest)}
