"""What the target QEMU (``host.qemu-version``) accepts, decided once for both renderers.

The libvirt domain drives the same QEMU, so the QEMU script and the domain share these
decisions: the machine type, the ``-cpu`` model name, and which ``sev-guest`` properties
exist.  Contradictions are errors here rather than surprises at launch time.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, replace

from .. import cpus
from ..diagnostics import Diagnostic, DiagnosticError, error, warning
from ..model import VM, GuestType, Span, Variant, Vmm

MIN_QEMU = (6, 0)  # confidential-guest-support (facts §7.1)
KERNEL_HASHES_SINCE = (6, 2)
LEGACY_VM_TYPE_SINCE = (9, 1)
RNG_SEED_RELEASE = (7, 2)  # facts §7.4: the random setup_data breaks the kernel hash
_ALIASES = {"q35": "pc-q35", "pc": "pc-i440fx"}  # unversioned machine names QEMU resolves
MiB = 1 << 20
WARN_RNG_SEED = "SEVM107"  # the lint rule qemu-7.2-rng-seed (frontend/lint.py)


@dataclass(frozen=True)
class Target:
    """Decisions shared by the QEMU and libvirt renderers for one variant."""

    machine: str  # the machine type to render (may differ from the manifest's, see machine_type)
    cpu_model: str | None  # the QEMU -cpu model name; None: QEMU's default (plain SEV only)
    legacy_vm_type_property: bool  # whether this QEMU has sev-guest's legacy-vm-type
    kernel_hashes_property: bool  # whether this QEMU has sev-guest's kernel-hashes
    memory_mib: int
    warnings: tuple[Diagnostic, ...]


def _where(vm: VM, *keys: str) -> Span | None:
    for key in keys:
        if key in vm.origins:
            return vm.origins[key]
    return vm.span


def _fail(message: str, span: Span | None) -> DiagnosticError:
    return DiagnosticError(error(message, span))


def version_text(version: tuple[int, int]) -> str:
    return f"{version[0]}.{version[1]}"


def decide(vm: VM, variant: Variant) -> Target:
    """Check ``variant`` of ``vm`` against its target QEMU and settle what to render."""
    qemu = vm.host.qemu_version
    where_qemu = _where(vm, "host.qemu-version")
    if variant.vmm is not Vmm.QEMU:
        raise _fail(f"vm {vm.name}: variant with vmm {variant.vmm.value} is launched by the cloud "
                    "provider, not by a QEMU command line; choose a vmm qemu variant",
                    _where(vm, "host.vmm"))
    if qemu < MIN_QEMU:
        raise _fail(f"vm {vm.name}: sevm renders for QEMU {version_text(MIN_QEMU)} or later "
                    f"(confidential-guest-support), not {version_text(qemu)}", where_qemu)
    if vm.kernel_hashes and qemu < KERNEL_HASHES_SINCE:
        raise _fail(f"vm {vm.name}: kernel-hashes needs QEMU {version_text(KERNEL_HASHES_SINCE)} "
                    f"or later; host qemu-version is {version_text(qemu)}",
                    _where(vm, "kernel-hashes", "host.qemu-version"))
    has_legacy = qemu >= LEGACY_VM_TYPE_SINCE
    if not variant.legacy_vm_type and not has_legacy:
        raise _fail(f"vm {vm.name}: legacy-vm-type off (KVM_SEV_INIT2) needs QEMU "
                    f"{version_text(LEGACY_VM_TYPE_SINCE)} or later; QEMU {version_text(qemu)} "
                    "always uses the legacy KVM init", _where(vm, "host.legacy-vm-type"))
    machine, warnings = machine_type(vm)
    return Target(machine=machine, cpu_model=cpu_model(vm, variant), legacy_vm_type_property=has_legacy,
                  kernel_hashes_property=qemu >= KERNEL_HASHES_SINCE,
                  memory_mib=memory_mib(vm), warnings=tuple(warnings))


def cpu_model(vm: VM, variant: Variant) -> str | None:
    """The ``-cpu`` name.  A CPU stated by family/model/stepping or signature renders as the
    first QEMU model with that signature, because only the signature is measured."""
    where = _where(vm, "cpu")
    cpu = variant.cpu
    if cpu is None:
        if vm.type is GuestType.SEV_ES:
            raise _fail(f"vm {vm.name}: sev-es needs a cpu model (its signature is measured)", where)
        return None
    qemu = vm.host.qemu_version
    if cpu.name is not None:
        info = cpus.lookup(cpu.name)
        if info is None:
            raise _fail(f"vm {vm.name}: cpu {cpu.name!r} is not a QEMU CPU model sevm knows", where)
        since = model_since(cpu.name)
        if since > qemu:
            if since == (7, 2):  # the table's floor: older releases were never checked
                raise _fail(f"vm {vm.name}: sevm cannot tell whether QEMU {version_text(qemu)} "
                            f"ships CPU model {cpu.name}: its model table is known from QEMU 7.2 on",
                            where)
            raise _fail(f"vm {vm.name}: QEMU {version_text(qemu)} does not ship CPU model "
                        f"{cpu.name} (first in QEMU {version_text(since)})", where)
        return cpu.name
    for name, info in cpus.CPU_MODELS.items():
        same = cpus.signature(info.family, info.model, info.stepping) == cpu.signature
        if same and model_since(name) <= qemu:
            return name
    raise _fail(f"vm {vm.name}: cpu {cpu.label} (signature 0x{cpu.signature:08x}) matches no CPU "
                f"model that QEMU {version_text(qemu)} ships, so it cannot be rendered as -cpu; "
                "state the model name instead (cpu \"NAME\")", where)


def model_since(name: str) -> tuple[int, int]:
    """The first QEMU release with CPU model ``name``."""
    return cpus.CPU_MODELS[name].since


def _machine_version(machine: str) -> tuple[int, int] | None:
    try:
        major, minor = (int(x) for x in machine.rsplit("-", 1)[-1].split("."))
    except ValueError:
        return None
    return (major, minor)


def machine_type(vm: VM) -> tuple[str, list[Diagnostic]]:
    """The machine type to render.  QEMU 7.2's versioned-7.2 machine types append a random
    RNG seed to the kernel blob, so the kernel hash cannot match (facts §7.4).  An alias
    (``q35``, ``pc``) is pinned to its 7.1 machine type with a warning; an explicit 7.2
    machine type is refused."""
    machine = vm.machine
    if not (vm.measured_boot and vm.host.qemu_version == RNG_SEED_RELEASE):
        return machine, []
    where = _where(vm, "machine", "kernel-hashes")
    version = _machine_version(machine)
    if version is not None and version <= (7, 1):
        return machine, []
    if machine in _ALIASES:
        pinned = f"{_ALIASES[machine]}-7.1"
        note = warning(WARN_RNG_SEED, f"vm {vm.name}: QEMU 7.2 adds a random seed to the kernel with "
                       f"machine {machine!r}, so the kernel hash would not match; rendering machine "
                       f"{pinned!r} instead (Debian's 7.2 carries the fix, upstream 7.2.0 does not)",
                       where)
        return pinned, [replace(note, rule_name="qemu-7.2-rng-seed")]
    raise _fail(f"vm {vm.name}: machine {machine!r} on QEMU 7.2 adds a random seed to the kernel, "
                "so the kernel hash cannot match; use a 7.1 machine type such as \"pc-q35-7.1\"",
                where)


def memory_mib(vm: VM) -> int:
    if vm.memory <= 0 or vm.memory % MiB:
        raise _fail(f"vm {vm.name}: memory must be a positive whole number of MiB to render, "
                    f"got {vm.memory} bytes", _where(vm, "memory"))
    return vm.memory // MiB


def absolute(path: os.PathLike | str) -> str:
    """Artefacts render as absolute paths (not symlink-resolved) so a script runs from any
    directory; the measurement reads the same file."""
    return os.path.abspath(os.fspath(path))
