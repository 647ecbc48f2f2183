"""The QEMU command line of one variant, built as a list of argv strings.

This list is the single source of every QEMU output: ``--format argv`` prints it as JSON,
the shell script prints each option shell-quoted on its own line.  Nothing re-splits a
string, so the ``-append`` bytes QEMU receives are the manifest's cmdline bytes.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from ..diagnostics import Diagnostic, DiagnosticError, error
from ..model import VM, GuestType, Variant
from . import qemuopts
from .target import Target, absolute, decide

QEMU_BINARY = "qemu-system-x86_64"
SEV_OBJECT_ID = "sev0"
NET_ID = "net0"

# Options in ``launch { extra ... }`` that would change a measured input or the SEV setup
# behind the manifest's back; they belong in the manifest's own settings.
_FORBIDDEN_EXTRA = {"-bios", "-pflash", "-kernel", "-initrd", "-append", "-dtb", "-shim", "-smp",
                    "-cpu", "-machine", "-M", "-accel", "-enable-kvm", "-readconfig", "-set"}
# Options forbidden only when their argument touches SEV or the firmware flash.
_WATCHED_EXTRA = {"-object": ("sev-guest", "sev-snp-guest", "sev-common"),
                  "-global": ("sev-guest", "pflash"), "-drive": ("pflash",)}


@dataclass(frozen=True)
class Option:
    flag: str
    value: str | None = None

    @property
    def argv(self) -> list[str]:
        return [self.flag] if self.value is None else [self.flag, self.value]


@dataclass(frozen=True)
class QemuCommand:
    binary: str
    options: tuple[Option, ...]
    target: Target

    @property
    def argv(self) -> list[str]:
        """The complete argv, program name first (what ``--format argv`` prints)."""
        return [self.binary] + [part for option in self.options for part in option.argv]

    @property
    def warnings(self) -> tuple[Diagnostic, ...]:
        return self.target.warnings


def build(vm: VM, variant: Variant, *, binary: str = QEMU_BINARY) -> QemuCommand:
    target = decide(vm, variant)
    check_extra(vm)
    options = [Option("-accel", "kvm"), _machine(vm, target), _sev_object(vm, variant, target)]
    if target.cpu_model is not None:
        options.append(Option("-cpu", target.cpu_model))
    options += [Option("-smp", str(variant.vcpus)), Option("-m", memory_text(target.memory_mib)),
                _firmware(vm)]
    options += _direct_boot(vm)
    if vm.type is GuestType.SEV_ES:
        options.append(Option("-no-reboot"))  # an SEV-ES guest cannot be reset
    options += _disks(vm) + _network(vm) + _console(vm)
    options.append(Option("-S"))  # paused: fetch the measurement, inject secrets, then cont
    options += _extra(vm)
    return QemuCommand(binary, tuple(options), target)


def memory_text(mib: int) -> str:
    return f"{mib // 1024}G" if mib % 1024 == 0 else f"{mib}M"


def _machine(vm: VM, target: Target) -> Option:
    props = [("confidential-guest-support", SEV_OBJECT_ID)]
    if vm.type is GuestType.SEV_ES:
        # SEV-ES needs an in-kernel irqchip and rules out SMM (facts §7.2)
        props += [("kernel-irqchip", "split"), ("smm", "off")]
    return Option("-machine", qemuopts.join(target.machine, props))


def _sev_object(vm: VM, variant: Variant, target: Target) -> Option:
    props = [("id", SEV_OBJECT_ID), ("policy", vm.policy.hex), ("cbitpos", str(vm.host.cbitpos)),
             ("reduced-phys-bits", str(vm.host.reduced_phys_bits))]
    if target.kernel_hashes_property:
        props.append(("kernel-hashes", "on" if vm.kernel_hashes else "off"))
    if target.legacy_vm_type_property:
        # explicit, so the VMSA profile is pinned rather than left to "auto"
        props.append(("legacy-vm-type", "on" if variant.legacy_vm_type else "off"))
    return Option("-object", qemuopts.join("sev-guest", props))


def _firmware(vm: VM) -> Option:
    # pflash unit 0 is measured whole; -bios would need a 64 KiB multiple (facts §7.2)
    props = [("if", "pflash"), ("format", "raw"), ("unit", "0"),
             ("file", argv_path(vm.firmware.path, vm)), ("readonly", "on")]
    return Option("-drive", qemuopts.join(None, props))


def _direct_boot(vm: VM) -> list[Option]:
    options = []
    if vm.kernel is not None:
        options.append(Option("-kernel", argv_path(vm.kernel.path, vm)))
    if vm.initrd is not None:
        options.append(Option("-initrd", argv_path(vm.initrd.path, vm)))
    if vm.cmdline is not None:
        options.append(Option("-append", argv_text(vm.cmdline, f"vm {vm.name}: cmdline", vm)))
    return options


def _disks(vm: VM) -> list[Option]:
    out = []
    for disk in vm.launch.disks:
        path = argv_path(disk.resolved if disk.resolved is not None else disk.path, vm)
        out.append(Option("-drive", qemuopts.join(None, [("file", path), ("format", disk.format),
                                                         ("if", "virtio")])))
    return out


def _network(vm: VM) -> list[Option]:
    if vm.launch.net == "user":
        # iPXE is not SEV-aware, hence the empty romfile; SEV turns on iommu_platform itself
        return [Option("-netdev", f"user,id={NET_ID}"),
                Option("-device", f"virtio-net-pci,netdev={NET_ID},romfile=")]
    if vm.launch.net in (None, "none"):
        return [Option("-nic", "none")]  # else QEMU adds a default NIC with an iPXE ROM
    raise DiagnosticError(error(f"vm {vm.name}: net {vm.launch.net!r} cannot be rendered", vm.span))


def _console(vm: VM) -> list[Option]:
    if vm.launch.console == "serial":
        return [Option("-nographic")]  # serial console and monitor on the terminal
    if vm.launch.console == "none":
        return [Option("-display", "none")]
    raise DiagnosticError(error(f"vm {vm.name}: console {vm.launch.console!r} cannot be rendered",
                                vm.span))


def _extra(vm: VM) -> list[Option]:
    return [Option(argv_text(os.fsencode(arg), f"vm {vm.name}: extra", vm)) for arg in vm.launch.extra]


def check_extra(vm: VM) -> None:
    """Refuse extra arguments that would make the launch differ from what is measured."""
    extra = list(vm.launch.extra)
    where = vm.origins.get("launch.extra", vm.span)
    for index, arg in enumerate(extra):
        flag = "-" + arg.lstrip("-") if arg.startswith("-") else None
        if flag in _FORBIDDEN_EXTRA:
            raise DiagnosticError(error(
                f"vm {vm.name}: extra argument {arg!r} would override what the manifest measures "
                "or how SEV is set up; use the manifest's own setting instead", where))
        following = extra[index + 1] if index + 1 < len(extra) else ""
        if flag == "-global" and qemuopts.cpu_type(driver := qemuopts.parse_global(following)[0]):
            # QEMU applies it to every vCPU of that type: family, model and stepping make
            # the CPUID signature that an SEV-ES VMSA carries (measured) in RDX
            raise DiagnosticError(error(
                f"vm {vm.name}: extra argument {arg} {following!r} sets a property of the CPU "
                f"type {driver!r}, which can change the measured CPU; state the cpu in the "
                "manifest instead", where))
        if flag in _WATCHED_EXTRA and any(w in following for w in _WATCHED_EXTRA[flag]):
            raise DiagnosticError(error(
                f"vm {vm.name}: extra argument {arg} {following!r} touches the SEV object or the "
                "firmware flash, which the manifest renders itself", where))


def argv_path(path, vm: VM) -> str:
    return argv_text(os.fsencode(absolute(path)), f"vm {vm.name}: path", vm)


def argv_text(data: bytes, what: str, vm: VM) -> str:
    """Bytes as an argv string: undecodable bytes ride along as surrogate escapes and are
    re-encoded exactly when written (os.fsencode), so QEMU receives these very bytes."""
    if b"\0" in data:
        raise DiagnosticError(error(f"{what} contains a NUL byte, which no command line can carry",
                                    vm.span))
    return os.fsdecode(data)
