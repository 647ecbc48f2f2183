"""Reference values as plain data: the one document behind lock files and exports.

``reference_document`` turns measurements into dicts of str/int/bool/list only, in a canonical
order (VMs by name, artefacts firmware-kernel-initrd, variants by their parameters), so the
same inputs always serialise to the same bytes, whatever order the manifest lists values in.
The vocabulary is that of ``sevm measure --format json``.
"""
from __future__ import annotations

import base64
import os
from collections.abc import Iterable, Sequence

TYPE_CHECKING = False  # not typing's: `sevm lock` reusing its locks need not import typing
if TYPE_CHECKING:
    from typing import Protocol
else:
    Protocol = object

from ..diagnostics import DiagnosticError, error
from ..model import VM, Manifest, Variant

ROLES = ("firmware", "kernel", "initrd")


class VariantDigestLike(Protocol):
    variant: Variant
    launch_digest: bytes
    cpu_signature: int | None


class VmMeasurementLike(Protocol):
    """What ``measure.digest.compute`` returns, as far as reference values need it."""

    vm: VM
    artefact_digests: dict[str, str]
    variants: Sequence[VariantDigestLike]


def variant_key(params: dict) -> dict[str, str]:
    """The ``--variant`` naming of a variant document (same strings as ``Variant.key()``)."""
    return {"vcpus": str(params["vcpus"]), "cpu": params.get("cpu", ""), "vmm": params["vmm"],
            "legacy-vm-type": "on" if params["legacy_vm_type"] else "off",
            "sev-features": params["sev_features"]}


def describe_variant(key: dict[str, str]) -> str:
    """``vcpus=4 cpu=EPYC-Milan vmm=qemu legacy-vm-type=on sev-features=0x0``."""
    return " ".join(f"{name}={value}" for name, value in key.items() if value != "")


def variant_document(vm: VM, vd: VariantDigestLike) -> dict:
    v = vd.variant
    doc: dict = {"vcpus": v.vcpus}
    if v.cpu is not None:
        doc["cpu"] = v.cpu.label
    if vd.cpu_signature is not None:
        doc["cpu_signature"] = f"0x{vd.cpu_signature:08x}"
    doc.update({
        "vmm": v.vmm.value,
        "legacy_vm_type": v.legacy_vm_type,
        "sev_features": f"0x{v.sev_features:x}",
        "policy": vm.policy.hex,
        "launch_digest": vd.launch_digest.hex(),
        "launch_digest_base64": base64.b64encode(vd.launch_digest).decode("ascii"),
    })
    return doc


def _variant_order(doc: dict) -> tuple:
    return (doc["vmm"], not doc["legacy_vm_type"], int(doc["sev_features"], 16),
            doc.get("cpu_signature", ""), doc.get("cpu", ""), doc["vcpus"])


def artefact_documents(m: VmMeasurementLike) -> dict:
    out = {}
    by_role = {a.role: a for a in m.vm.artefacts}
    for role in ROLES:
        artefact = by_role.get(role)
        if artefact is None:
            continue
        try:
            size = os.stat(artefact.path).st_size
        except OSError as exc:
            raise DiagnosticError(error(f"cannot read {role} {artefact.path}: "
                                        f"{exc.strerror or exc}", artefact.span,
                                        fatal_input=True)) from None
        out[role] = {"path": artefact.written, "size": size,
                     "sha256": m.artefact_digests[role]}
    return out


def vm_document(m: VmMeasurementLike) -> dict:
    vm = m.vm
    variants = sorted((variant_document(vm, vd) for vd in m.variants), key=_variant_order)
    return {"name": vm.name, "type": vm.type.value, "policy": vm.policy.hex,
            "artifacts": artefact_documents(m), "variants": variants}


def manifest_name(manifest: Manifest) -> str:
    """The manifest as the lock names it: its base name, so the bytes do not depend on the
    directory sevm ran from (the lock file sits beside the manifest)."""
    return os.path.basename(manifest.file)


def reference_document(manifest: Manifest, measurements: Iterable[VmMeasurementLike]) -> dict:
    vms = sorted((vm_document(m) for m in measurements), key=lambda d: d["name"])
    return {"manifest": manifest_name(manifest), "vms": vms}
