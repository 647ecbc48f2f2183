"""The result of ``verify`` as text for people and as JSON for pipelines (docs/verify.md)."""
from __future__ import annotations

import base64

from ..diagnostics import escape_unprintable
from ..model import GuestType
from .report import variant_json
from .verify import MATCH, MISMATCH, POLICY_MISMATCH, PolicyMismatch, VariantMatch, VerifyResult


def to_json(result: VerifyResult) -> dict:
    r = result.reported
    return {
        "result": result.status,
        "ok": result.ok,
        "reported": {
            "measurement": r.measurement.hex(),
            "mnonce": r.mnonce.hex(),
            "measurement_blob": base64.b64encode(r.blob).decode("ascii"),
            "api_major": r.api_major,
            "api_minor": r.api_minor,
            "build": r.build,
            "policy": None if r.policy is None else f"0x{r.policy:08x}",
        },
        "vms": list(result.vms),
        "variants_checked": result.variants_checked,
        "matched": [_match_json(m) for m in result.matches],
        "policy_mismatches": [_policy_json(p, result) for p in result.policy_mismatches],
        "hints": list(result.hints),
    }


def _match_json(match: VariantMatch) -> dict:
    vm = match.vm
    head = {"vm": vm.name, "file": vm.file, "type": vm.type.value, "policy": vm.policy.hex}
    return head | variant_json(match.digest)  # the variant as `sevm measure --format json` shows it


def _policy_json(p: PolicyMismatch, result: VerifyResult) -> dict:
    return {
        "vm": p.vm.name,
        "file": p.vm.file,
        "manifest": f"0x{p.manifest:08x}",
        "reported": f"0x{p.reported:08x}",
        "weakens": p.weakens,
        "measurement_matches": any(m.vm is p.vm for m in result.policy_only),
        "differences": [{"field": d.what, "manifest": d.manifest, "reported": d.reported,
                         "weakens": d.weakens} for d in p.differences],
    }


def to_text(result: VerifyResult) -> str:
    lines: list[str] = []
    if result.status == MATCH:
        lines += _match_text(result)
    elif result.status == POLICY_MISMATCH:
        first = result.policy_only[0]
        lines.append(f"POLICY MISMATCH: the measurement matches {_who(first)}, but the host "
                     "launched the guest with another policy than the manifest's")
        lines.append(f"  variant:       {_variant_text(first)}")
    else:
        vms = ", ".join(repr(name) for name in result.vms)
        lines.append(f"MISMATCH: the reported measurement matches none of the "
                     f"{result.variants_checked} variant(s) of vm {vms}")
    if result.status != MATCH:
        lines.append(f"  reported:      {_reported_text(result)}")
        lines.append(f"                 measurement {result.reported.measurement.hex()}")
        lines.append(f"                 mnonce {result.reported.mnonce.hex()}")
    for p in result.policy_mismatches:
        lines += _policy_text(p)
    if result.hints:
        lines.append("check:")
        lines += [f"  - {hint}" for hint in result.hints]
    return "\n".join(lines) + "\n"


def _match_text(result: VerifyResult) -> list[str]:
    first = result.matches[0]
    lines = [f"OK: the launch measurement matches {_who(first)}"]
    if first.vm.type is GuestType.SEV:
        same = [m for m in result.matches if m.vm is first.vm]
        lines.append(f"  variant:       any of {len(same)} (type sev: vCPUs, CPU model and host "
                     "profile are not measured)")
    else:
        for m in result.matches:
            lines.append(f"  variant:       {('' if m.vm is first.vm else _who(m) + ': ')}"
                         f"{_variant_text(m)}")
    lines.append(f"  launch digest: {first.digest.launch_digest.hex()}")
    lines.append(f"  host:          {_reported_text(result)}")
    lines.append(f"  compared with {result.variants_checked} variant(s)")
    return lines


def _who(m: VariantMatch) -> str:
    return f"vm {m.vm.name!r} ({escape_unprintable(m.vm.file)})"


def _variant_text(m: VariantMatch) -> str:
    v, vd = m.digest.variant, m.digest
    cpu = v.cpu.label if v.cpu else "none"
    if vd.cpu_signature is not None:
        cpu += f" (signature 0x{vd.cpu_signature:08x})"
    return (f"vcpus {v.vcpus}, cpu {cpu}, vmm {v.vmm.value}, legacy-vm-type "
            f"{'on' if v.legacy_vm_type else 'off'}, sev-features 0x{v.sev_features:x}")


def _reported_text(result: VerifyResult) -> str:
    r = result.reported
    firmware = f"SEV firmware API {r.api_major}.{r.api_minor} build {r.build}"
    if r.policy is None:
        assumed = sorted({m.vm.policy.hex for m in result.matches})
        if assumed:
            return (f"{firmware}, policy not reported (the HMAC matched over the manifest's "
                    f"{assumed[0]}, so the firmware enforced it)")
        return f"{firmware}, policy not reported (the HMAC was computed over each vm's own)"
    note = " (equals the manifest's)" if result.status == MATCH else ""
    return f"{firmware}, policy 0x{r.policy:08x}{note}"


def _policy_text(p: PolicyMismatch) -> list[str]:
    verdict = "weaker than" if p.weakens else "different from"
    lines = [f"policy of vm {p.vm.name!r}: the host reports 0x{p.reported:08x}, {verdict} the "
             f"manifest's 0x{p.manifest:08x}:"]
    for d in p.differences:
        tag = " (weaker)" if d.weakens else ""
        lines.append(f"  - {d.what}: manifest {d.manifest}, host {d.reported}{tag}")
    return lines


__all__ = ["to_json", "to_text", "MATCH", "MISMATCH", "POLICY_MISMATCH"]
