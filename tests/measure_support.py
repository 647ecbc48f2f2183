"""Helpers for the measurement tests: where the shared vectors are, model.VM factories,
and the realtools policy (skip locally, fail in CI)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from sevmanifest import cpus
from sevmanifest.model import (VM, Artefact, Cpu, GuestType, HostMatrix, Launch, Policy,
                               Vmm)

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SEVM_SHARED", REPO.parent / "shared"))
VECTORS = SHARED / "vectors"

# Fixture aliases of vectors/README.md §2
FIXTURES = {
    "A": VECTORS / "sev-snp-measure/ovmf_AmdSev_suffix.bin",
    "X": VECTORS / "sev-snp-measure/ovmf_OvmfX64_suffix.bin",
    "HA": VECTORS / "sev-snp-measure/history/9dabc4b/ovmf_AmdSev_suffix.bin",
    "HX": VECTORS / "sev-snp-measure/history/9dabc4b/ovmf_OvmfX64_suffix.bin",
    "H0": VECTORS / "sev-snp-measure/history/8a85fa4/ovmf_suffix.bin",
    "SC": VECTORS / "sevctl/OVMF.amdsev.fd_trimmed_edk2-ovmf-20220126gitbb1bba3d77-4.el9",
    "SV0": VECTORS / "sevctl/vmsa0.bin",
    "SV1": VECTORS / "sevctl/vmsa1.bin",
    "SK": VECTORS / "sevctl/measurement/vmlinuz-fake",
    "SI": VECTORS / "sevctl/measurement/initrd-fake",
    "STIK": VECTORS / "sevctl/measurement/tik1.bin",
}

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_real(path: str | Path) -> Path:
    """A real tool or file from .ci/run: skip locally when absent, fail in CI."""
    path = Path(path)
    if not path.exists():
        message = f"{path} is missing (installed by .ci/run)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


def artefact(role: str, path: str | Path | None, sha256: str | None = None) -> Artefact | None:
    if path is None:
        return None
    return Artefact(role=role, written=str(path), path=Path(path), sha256=sha256)


def cpu(spec: str | int | None) -> Cpu | None:
    """A model name from the CPU table, or a raw signature."""
    if spec is None:
        return None
    if isinstance(spec, int):
        return Cpu(signature=spec)
    info = cpus.CPU_MODELS[spec]
    return Cpu(signature=cpus.signature(info.family, info.model, info.stepping), name=spec,
               family=info.family, model=info.model, stepping=info.stepping)


def make_vm(firmware: str | Path, *, type: str = "sev", kernel=None, initrd=None,
            cmdline: bytes | str | None = None, kernel_hashes: bool | None = None,
            vcpus=(1,), cpu_models=(), vmms=("qemu",), legacy=(True,), sev_features=(0,),
            name: str = "vm", pins: dict[str, str] | None = None, policy: int | None = None) -> VM:
    """A model.VM as the front end would build it (defaults as in the language spec)."""
    pins = pins or {}
    guest = GuestType(type)
    if isinstance(cmdline, str):
        cmdline = cmdline.encode()
    if kernel_hashes is None:
        kernel_hashes = kernel is not None
    if policy is None:
        policy = 0x1 | (0x4 if guest is GuestType.SEV_ES else 0)
    return VM(
        name=name, file="test.sevm", type=guest,
        firmware=artefact("firmware", firmware, pins.get("firmware")),
        kernel=artefact("kernel", kernel, pins.get("kernel")),
        initrd=artefact("initrd", initrd, pins.get("initrd")),
        cmdline=cmdline, kernel_hashes=kernel_hashes, vcpus=tuple(vcpus),
        cpus=tuple(cpu(c) for c in cpu_models), memory=2 << 30, machine="q35",
        host=HostMatrix(vmms=tuple(Vmm(v) for v in vmms), legacy_vm_types=tuple(legacy),
                        sev_features=tuple(sev_features)),
        policy=Policy(policy), launch=Launch())
