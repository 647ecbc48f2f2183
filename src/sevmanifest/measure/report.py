"""``sevm measure`` output: the JSON document of the CLI contract and a readable text table.

Two values must never be confused (facts §13.1): the *launch digest* GCTX.LD (what the
firmware hashes) and the *launch measurement* (the HMAC the host reports).  Every label
below names which one it is.
"""
from __future__ import annotations

import base64
from collections import namedtuple

from ..diagnostics import escape_unprintable
from ..model import GuestType, Variant, Vmm
from .digest import VariantDigest, VmMeasurement


class MeasurementInputs(namedtuple("MeasurementInputs", "api_major api_minor build mnonce")):
    """The LAUNCH_MEASURE inputs besides the LD and the TIK (the TIK is never shown):
    ``api_major``, ``api_minor``, ``build`` (ints) and ``mnonce`` (16 bytes)."""
    __slots__ = ()


class Hmac(namedtuple("Hmac", "measurement blob")):
    """``measurement`` (32 bytes) and ``blob`` (measurement ‖ mnonce, 48 bytes)."""
    __slots__ = ()

    @property
    def blob_b64(self) -> str:
        return base64.b64encode(self.blob).decode()


def signature_text(variant: Variant) -> str | None:
    return f"0x{variant.cpu.signature:08x}" if variant.cpu else None


def profile_text(variant: Variant) -> str:
    return "legacy" if variant.legacy_vm_type else "INIT2"


Hmacs = list[tuple[Hmac, ...]]  # per VM, per variant (in ``VmMeasurement.variants`` order)


def to_json(results: list[VmMeasurement], hmacs: Hmacs | None = None) -> dict:
    """``hmacs``, when measurement options were given, runs parallel to ``results``."""
    return {"vms": [_vm_json(m, _row(hmacs, i, m)) for i, m in enumerate(results)]}


def _row(hmacs: Hmacs | None, index: int, m: VmMeasurement) -> tuple[Hmac | None, ...]:
    return hmacs[index] if hmacs is not None else (None,) * len(m.variants)


def _vm_json(m: VmMeasurement, hmacs: tuple[Hmac | None, ...]) -> dict:
    vm = m.vm
    return {
        "name": vm.name,
        "file": vm.file,
        "type": vm.type.value,
        "policy": vm.policy.hex,
        "artifacts": {a.role: {"path": str(a.path), "sha256": m.artefact_digests[a.role]}
                      for a in vm.artefacts},
        "variants": [variant_json(v, h) for v, h in zip(m.variants, hmacs)],
    }


def variant_json(result: VariantDigest, hmac: Hmac | None = None) -> dict:
    """One variant as `sevm measure --format json` shows it (reusable by other reports)."""
    v = result.variant
    out = {
        "vcpus": v.vcpus,
        "cpu": v.cpu.label if v.cpu else None,
        "cpu_signature": signature_text(v),
        "vmm": v.vmm.value,
        "legacy_vm_type": v.legacy_vm_type,
        "sev_features": f"0x{v.sev_features:x}",
        "launch_digest": result.launch_digest.hex(),
    }
    if hmac is not None:
        out["measurement"] = hmac.measurement.hex()
        out["measurement_blob"] = hmac.blob_b64
    return out


def to_text(results: list[VmMeasurement], hmacs: Hmacs | None = None,
            inputs: MeasurementInputs | None = None) -> str:
    blocks = [_vm_text(m, _row(hmacs, i, m)) for i, m in enumerate(results)]
    if inputs is not None:
        blocks.append(
            f"launch measurement inputs: SEV API {inputs.api_major}.{inputs.api_minor}, "
            f"build {inputs.build}, mnonce {base64.b64encode(inputs.mnonce).decode()}, "
            "policy of each vm; TIK from the file given (not shown)\n")
    return "\n".join(blocks)


def _vm_text(m: VmMeasurement, hmacs: tuple[Hmac | None, ...]) -> str:
    vm = m.vm
    lines = [f"vm {vm.name}  ({escape_unprintable(vm.file)})",
             f"  type           {vm.type.value}",
             f"  policy         {vm.policy.hex}",
             f"  kernel-hashes  {'on' if vm.kernel_hashes else 'off'}"
             + ("" if vm.measured_boot or vm.kernel is None
                else "  (kernel, initrd and cmdline are NOT measured)")]
    for a in vm.artefacts:
        lines.append(f"  {a.role:<14} {a.path}")
        lines.append(f"  {'':<14} sha256 {m.artefact_digests[a.role]}")
    if vm.kernel is not None:
        lines.append(f"  {'cmdline':<14} {_cmdline_text(vm.cmdline)}")
    if vm.type is GuestType.SEV:
        lines.append("  (type sev: vCPU count, CPU model and host profile do not enter the "
                     "launch digest)")
    lines.append("")
    lines.extend(_variant_table(m.variants, hmacs))
    return "\n".join(lines) + "\n"


def _cmdline_text(cmdline: bytes | None) -> str:
    if cmdline is None:
        return "(none: hashed as the single byte 00)"
    # repr-style escapes show every byte that is hashed, including newlines and tabs
    return '"' + cmdline.decode("utf-8", "backslashreplace").encode(
        "unicode_escape").decode("ascii").replace('"', '\\"') + '"'


HEADER = ("vcpus", "cpu", "signature", "vmm", "profile", "sev-features",
          "launch digest (GCTX.LD)")


def _variant_table(variants: tuple[VariantDigest, ...],
                   hmacs: tuple[Hmac | None, ...]) -> list[str]:
    rows = [HEADER]
    for result in variants:
        v = result.variant
        rows.append((str(v.vcpus), v.cpu.label if v.cpu else "-", signature_text(v) or "-",
                     v.vmm.value, profile_text(v) if v.vmm is Vmm.QEMU else "-",
                     f"0x{v.sev_features:x}", result.launch_digest.hex()))
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER))]
    out = []
    for index, row in enumerate(rows):
        out.append("  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
        hmac = hmacs[index - 1] if index else None
        if hmac is not None:
            indent = "  " + " " * (widths[0] + 2)
            out.append(f"{indent}launch measurement (HMAC)  {hmac.measurement.hex()}")
            out.append(f"{indent}measurement blob (base64)  {hmac.blob_b64}")
    return out
