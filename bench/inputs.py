"""The benchmark's inputs: synthetic artefacts and the manifests that name them.

Artefacts come from ``sevmanifest.synthetic`` (deterministic, labelled as synthetic): an
OVMF-shaped firmware with a real footer table (SEV-ES reset block and kernel-hashes area),
a kernel-sized and an initrd-sized blob.  Manifests pin every artefact, deny the risky
policy bits and so compile without warnings: the benchmark measures work, not printing.
"""
from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

from sevmanifest import synthetic

MIB = 1 << 20
CMDLINE = "console=ttyS0 root=/dev/vda1 ro"
VCPUS = 8
CPU = "EPYC-Milan"
MATRIX_CPUS = ("EPYC", "EPYC-Rome", "EPYC-Milan", "EPYC-Genoa")


@dataclass(frozen=True)
class Sizes:
    firmware: int = 4 * MIB
    kernel: int = 16 * MIB
    initrd: int = 128 * MIB
    matrix_vcpus: int = 250  # x len(MATRIX_CPUS) variants
    fleet: int = 200  # manifests for `sevm lock`

    @property
    def matrix_variants(self) -> int:
        return self.matrix_vcpus * len(MATRIX_CPUS)

    @property
    def total_bytes(self) -> int:
        return self.firmware + self.kernel + self.initrd


SMALL = Sizes(firmware=256 << 10, kernel=1 * MIB, initrd=4 * MIB, matrix_vcpus=25, fleet=16)


@dataclass(frozen=True)
class Artefacts:
    firmware: Path
    kernel: Path
    initrd: Path
    sha256: dict[str, str]  # role -> hex

    @property
    def paths(self) -> list[Path]:
        return [self.firmware, self.kernel, self.initrd]


@dataclass(frozen=True)
class Inputs:
    artefacts: Artefacts
    one: Path  # one SEV-ES variant (8 vCPUs, measured direct boot, INIT2 profile)
    matrix: Path  # matrix_vcpus x 4 CPU models of the same VM
    fleet: list[Path]  # manifests sharing the artefacts, one variant each


def make_artefacts(directory: Path, sizes: Sizes) -> Artefacts:
    directory.mkdir(parents=True, exist_ok=True)
    firmware = directory / "OVMF.bench-synthetic.fd"
    kernel = directory / "vmlinuz.bench-synthetic"
    initrd = directory / "initrd.bench-synthetic.img"
    if not _has_size(firmware, sizes.firmware):
        synthetic.write_firmware(firmware, synthetic.FirmwareSpec(size=sizes.firmware, seed=11))
    if not _has_size(kernel, sizes.kernel):
        synthetic.write_blob(kernel, sizes.kernel, 12, synthetic.KERNEL_BANNER)
    if not _has_size(initrd, sizes.initrd):
        synthetic.write_blob(initrd, sizes.initrd, 13, synthetic.INITRD_BANNER)
    digests = {role: _sha256(path) for role, path in
               (("firmware", firmware), ("kernel", kernel), ("initrd", initrd))}
    return Artefacts(firmware, kernel, initrd, digests)


def _has_size(path: Path, size: int) -> bool:
    try:
        return path.stat().st_size == size
    except FileNotFoundError:
        return False


def _sha256(path: Path) -> str:
    state = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(MIB):
            state.update(chunk)
    return state.hexdigest()


def manifest_text(name: str, art: Artefacts, base: Path, *, vcpus: str, cpus: str,
                  cmdline: str = CMDLINE) -> str:
    def artefact(role: str, path: Path) -> str:
        rel = os.path.relpath(path, base)
        return f'    {role:<8} "{rel}" sha256 "{art.sha256[role]}"\n'
    return (f'vm "{name}" {{\n'
            "    type sev-es\n"
            + artefact("firmware", art.firmware) + artefact("kernel", art.kernel)
            + artefact("initrd", art.initrd)
            + f'    cmdline "{cmdline}"\n'
            "    kernel-hashes on\n"
            f"    vcpus {vcpus}\n"
            f"    cpu {cpus}\n"
            "    host {\n"
            "        vmm qemu\n"
            "        legacy-vm-type off  # KVM_SEV_INIT2, the profile sev-snp-measure builds\n"
            "    }\n"
            "    policy {\n"
            "        debug deny\n"
            "        key-sharing deny\n"
            "        send deny\n"
            "    }\n"
            "}\n")


def make_inputs(workdir: Path, sizes: Sizes) -> Inputs:
    art = make_artefacts(workdir / "artefacts", sizes)
    one = workdir / "one.sevm"
    one.write_text(manifest_text("bench-one", art, workdir, vcpus=str(VCPUS), cpus=f'"{CPU}"'))
    matrix = workdir / "matrix.sevm"
    matrix.write_text(manifest_text(
        "bench-matrix", art, workdir,
        vcpus=", ".join(str(n) for n in range(1, sizes.matrix_vcpus + 1)),
        cpus=", ".join(f'"{c}"' for c in MATRIX_CPUS)))
    fleet_dir = workdir / "fleet"
    fleet_dir.mkdir(exist_ok=True)
    fleet = []
    for index in range(sizes.fleet):
        path = fleet_dir / f"guest-{index:03d}.sevm"
        path.write_text(manifest_text(f"guest-{index:03d}", art, fleet_dir, vcpus=str(VCPUS),
                                      cpus=f'"{CPU}"', cmdline=f"{CMDLINE} fleet.index={index}"))
        fleet.append(path)
    return Inputs(art, one, matrix, fleet)


def wait_until_cacheable(paths: list[Path]) -> None:
    """The digest cache does not store files changed within the last few seconds (a file
    rewritten twice in one timestamp tick could look unchanged); wait until ours are older."""
    try:
        from sevmanifest.lock.cache import RACY_SECONDS
    except ImportError:
        RACY_SECONDS = 3
    newest = max(max(p.stat().st_mtime, p.stat().st_ctime) for p in paths)
    delay = newest + RACY_SECONDS + 0.5 - time.time()
    if delay > 0:
        time.sleep(delay)
