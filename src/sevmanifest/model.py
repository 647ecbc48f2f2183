"""The typed intermediate model: what a manifest means, with no syntax left in it.

Every backend (measurement, rendering, lock files, diff) consumes these frozen
dataclasses and nothing else.  Source positions ride along in fields excluded from
equality, so two manifests that mean the same thing compare equal even when they are
laid out differently (the formatter's guarantee).
"""
from __future__ import annotations

import enum
import itertools
from collections.abc import Iterator, Mapping
from dataclasses import field
from pathlib import Path

from .frozen import frozen_dataclass


@frozen_dataclass(order=True)
class Span:
    """A region of source text; lines and columns count from 1, ends are exclusive."""

    file: str
    line: int
    column: int
    end_line: int
    end_column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


class GuestType(enum.Enum):
    SEV = "sev"
    SEV_ES = "sev-es"


class Vmm(enum.Enum):
    """Which VMM's register conventions the SEV-ES VMSA follows."""

    QEMU = "qemu"
    EC2 = "ec2"
    GCE = "gce"


@frozen_dataclass
class Artefact:
    """A file that is measured: firmware, kernel or initrd."""

    role: str  # "firmware" | "kernel" | "initrd"
    written: str  # the path exactly as the manifest writes it (recorded in lock files)
    path: Path  # resolved against the directory of the manifest that names it
    sha256: str | None = None  # the pinned digest (64 lowercase hex digits), if any
    span: Span | None = field(default=None, compare=False, repr=False)


@frozen_dataclass
class Cpu:
    """A vCPU model as far as the measurement cares: its CPUID signature.

    ``name`` is the QEMU model name when the manifest gave one (rendered as ``-cpu``);
    family/model/stepping are kept when given, for display and libvirt.
    """

    signature: int
    name: str | None = None
    family: int | None = None
    model: int | None = None
    stepping: int | None = None

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        if self.family is not None:
            return f"family {self.family} model {self.model} stepping {self.stepping}"
        return f"signature 0x{self.signature:08x}"


class PolicyBit(enum.IntFlag):
    NODBG = 0x1
    NOKS = 0x2
    ES = 0x4
    NOSEND = 0x8
    DOMAIN = 0x10
    SEV = 0x20


# Named policy fields: manifest name -> the bit that "deny" sets.
POLICY_FIELDS: Mapping[str, PolicyBit] = {
    "debug": PolicyBit.NODBG,
    "key-sharing": PolicyBit.NOKS,
    "send": PolicyBit.NOSEND,
    "send-outside-domain": PolicyBit.DOMAIN,
    "send-to-non-sev": PolicyBit.SEV,
}
POLICY_RESERVED_MASK = 0x0000FFC0


@frozen_dataclass
class Policy:
    """The 32-bit SEV guest policy (SEV API spec 55766, table "Guest Policy")."""

    value: int

    def denies(self, name: str) -> bool:
        return bool(self.value & POLICY_FIELDS[name])

    @property
    def es(self) -> bool:
        return bool(self.value & PolicyBit.ES)

    @property
    def api_major(self) -> int:
        return (self.value >> 16) & 0xFF

    @property
    def api_minor(self) -> int:
        return (self.value >> 24) & 0xFF

    @property
    def reserved(self) -> int:
        return self.value & POLICY_RESERVED_MASK

    @property
    def hex(self) -> str:
        return f"0x{self.value:08x}"


@frozen_dataclass
class HostMatrix:
    """The host stack.  Tuple fields may hold several values: matrix dimensions."""

    vmms: tuple[Vmm, ...] = (Vmm.QEMU,)
    legacy_vm_types: tuple[bool, ...] = (True,)  # True: legacy KVM init; False: KVM_SEV_INIT2
    sev_features: tuple[int, ...] = (0,)
    qemu_version: tuple[int, int] = (9, 2)
    cbitpos: int = 51
    reduced_phys_bits: int = 1
    # Whether the manifest stated the profile itself (the linter warns when it did not).
    profile_stated: bool = field(default=True, compare=False)


@frozen_dataclass
class Disk:
    """A disk of the launch block (rendered, never measured)."""

    path: str  # as written; rendered relative to nothing (QEMU resolves it at launch)
    format: str = "raw"
    resolved: Path | None = None


@frozen_dataclass
class Launch:
    """Settings that are only rendered into launch artefacts, never measured."""

    disks: tuple[Disk, ...] = ()
    net: str | None = None  # "user" | "none" | "tap:NAME" style words; see docs
    console: str = "serial"
    extra: tuple[str, ...] = ()  # extra QEMU argv elements, one per string


@frozen_dataclass
class Variant:
    """One concrete launch: every matrix dimension fixed to a single value."""

    vcpus: int
    cpu: Cpu | None  # None when the manifest gives no CPU model (allowed for plain SEV)
    vmm: Vmm
    legacy_vm_type: bool
    sev_features: int

    def key(self) -> dict[str, str]:
        """The parameters a user names with ``--variant``, as strings."""
        return {
            "vcpus": str(self.vcpus),
            "cpu": self.cpu.label if self.cpu else "",
            "vmm": self.vmm.value,
            "legacy-vm-type": "on" if self.legacy_vm_type else "off",
            "sev-features": f"0x{self.sev_features:x}",
        }


@frozen_dataclass
class VM:
    """One confidential VM: its artefacts, policy, host stack and matrix dimensions."""

    name: str
    file: str  # the manifest that declares the vm, as given on the command line
    type: GuestType
    firmware: Artefact
    kernel: Artefact | None
    initrd: Artefact | None
    cmdline: bytes | None  # exact bytes; QEMU hashes them plus one NUL
    kernel_hashes: bool
    vcpus: tuple[int, ...]
    cpus: tuple[Cpu, ...]  # empty: no CPU model stated
    memory: int  # bytes
    machine: str
    host: HostMatrix
    policy: Policy
    launch: Launch
    # model path ("policy.debug", "host.vmm", "firmware", ...) -> where it was set
    origins: Mapping[str, Span] = field(default_factory=dict, compare=False, repr=False)
    span: Span | None = field(default=None, compare=False, repr=False)

    @property
    def artefacts(self) -> tuple[Artefact, ...]:
        return tuple(a for a in (self.firmware, self.kernel, self.initrd) if a is not None)

    @property
    def measured_boot(self) -> bool:
        """True when kernel, initrd and cmdline enter the launch digest."""
        return self.kernel_hashes and self.kernel is not None

    def variant_count(self) -> int:
        h = self.host
        return (len(self.vcpus) * max(1, len(self.cpus)) * len(h.vmms)
                * len(h.legacy_vm_types) * len(h.sev_features))

    def variants(self) -> Iterator[Variant]:
        """Every combination of the matrix dimensions, in a stable order."""
        cpus: tuple[Cpu | None, ...] = self.cpus or (None,)
        h = self.host
        for vmm, legacy, features, cpu, n in itertools.product(
                h.vmms, h.legacy_vm_types, h.sev_features, cpus, self.vcpus):
            yield Variant(vcpus=n, cpu=cpu, vmm=vmm, legacy_vm_type=legacy, sev_features=features)


@frozen_dataclass
class Manifest:
    """What one manifest file declares (with its imports): its vms, in order."""

    file: str
    vms: tuple[VM, ...]

    def vm(self, name: str) -> VM:
        for vm in self.vms:
            if vm.name == name:
                return vm
        raise KeyError(name)
