"""Reference values for attestation services (``sevm export``).

- ``json`` / ``toml``: the lock's document (every VM, artefact and variant) in that syntax.
- ``simple-kbs``: the policy JSON of Confidential Containers' simple-kbs (facts §11).  The KBS
  checks the reported launch digest, policy, firmware API version and build id against it;
  an empty list there means "anything", so sevm never emits an empty digest list.
"""
from __future__ import annotations

import json
from typing import Iterable, Sequence

from ..diagnostics import DiagnosticError, error
from ..model import Manifest
from .reference import VmMeasurementLike, manifest_name, reference_document

FORMATS = ("json", "toml", "simple-kbs")
EXPORT_FORMAT = "sevmanifest-reference-values"
EXPORT_VERSION = 1
MAX_BUILD_ID = 0xFF  # BUILD is one byte of the LAUNCH_MEASURE message (facts §2)


def _document(manifest: Manifest, measurements: Iterable[VmMeasurementLike]) -> dict:
    return {"format": EXPORT_FORMAT, "version": EXPORT_VERSION,
            **reference_document(manifest, measurements)}


def export_json(manifest: Manifest, measurements: Iterable[VmMeasurementLike]) -> str:
    return json.dumps(_document(manifest, measurements), indent=2) + "\n"


def export_toml(manifest: Manifest, measurements: Iterable[VmMeasurementLike]) -> str:
    import tomli_w
    header = f"# Reference values of {manifest_name(manifest)}, exported by `sevm export`.\n\n"
    return header + tomli_w.dumps(_document(manifest, measurements))


def export_simple_kbs(manifest: Manifest, measurements: Sequence[VmMeasurementLike],
                      build_ids: Sequence[int] = ()) -> str:
    """simple-kbs ``default_policy.json`` / policy row for the selected VMs.

    simple-kbs checks digests and policies as two independent lists, so exporting VMs with
    different policies together would let one VM's image launch under another's (weaker)
    policy; that is refused.
    """
    if not measurements:
        raise DiagnosticError(error(f"{manifest.file}: no vm to export", fatal_input=True))
    policies = sorted({m.vm.policy.value for m in measurements})
    if len(policies) != 1:
        names = ", ".join(f"{m.vm.name} ({m.vm.policy.hex})" for m in measurements)
        raise DiagnosticError(error(
            f"{manifest.file}: simple-kbs pairs no digest with a policy, so vms with different "
            f"policies cannot share one policy file ({names}); choose one with --vm",
            fatal_input=True))
    bad = [b for b in build_ids if not 0 <= b <= MAX_BUILD_ID]
    if bad:
        raise DiagnosticError(error(f"--build-id {bad[0]}: a firmware build id is one byte "
                                    f"(0..{MAX_BUILD_ID})", fatal_input=True))
    doc = reference_document(manifest, measurements)
    digests = sorted({v["launch_digest_base64"] for vm in doc["vms"] for v in vm["variants"]})
    policy = measurements[0].vm.policy
    return json.dumps({
        "allowed_digests": digests,
        "allowed_policies": policies,
        "min_fw_api_major": policy.api_major,
        "min_fw_api_minor": policy.api_minor,
        "allowed_build_ids": sorted(set(build_ids)),
    }, indent=2) + "\n"


def export(fmt: str, manifest: Manifest, measurements: Sequence[VmMeasurementLike], *,
           build_ids: Sequence[int] = ()) -> str:
    if fmt == "simple-kbs":
        return export_simple_kbs(manifest, measurements, build_ids)
    if build_ids:
        raise DiagnosticError(error("--build-id only applies to --format simple-kbs",
                                    fatal_input=True))
    return export_json(manifest, measurements) if fmt == "json" else \
        export_toml(manifest, measurements)
