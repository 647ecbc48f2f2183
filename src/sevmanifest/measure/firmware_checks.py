"""Checks that need the firmware's footer table but no hashing: ``sevm check`` runs them on
every manifest, so this module imports only the table parser (not the digest engine)."""
from __future__ import annotations

from ..diagnostics import Diagnostic, DiagnosticError, error
from ..model import VM, GuestType, Span
from .hashtable import PADDED_TABLE_SIZE
from .ovmf import FirmwareInfo, inspect_firmware


def firmware_diagnostics(vm: VM) -> list[Diagnostic]:
    """Checks that need the firmware's bytes but no full hashing (for ``sevm check``):
    unreadable or corrupt footer table, kernel hashes without a usable hash-table area,
    SEV-ES without a usable reset address."""
    try:
        info = inspect_vm_firmware(vm)
    except DiagnosticError as exc:
        return exc.diagnostics
    return firmware_problems(vm, info)


def inspect_vm_firmware(vm: VM) -> FirmwareInfo:
    return inspect_firmware(vm.firmware.path, _firmware_span(vm))


def _firmware_span(vm: VM) -> Span | None:
    return vm.firmware.span or vm.origins.get("firmware") or vm.span


# QEMU maps the image as pflash, whose size "must be a non-zero multiple of 0x1000"
# (hw/i386/pc_sysfw.c); measured as it is, any other size is not what a guest is launched with
PFLASH_SIZE_MULTIPLE = 0x1000


def firmware_problems(vm: VM, info: FirmwareInfo) -> list[Diagnostic]:
    span = _firmware_span(vm)
    out = []
    if info.size % PFLASH_SIZE_MULTIPLE:
        out.append(error(f"firmware {info.path} is {info.size} bytes, not a multiple of 4 KiB: "
                         "QEMU refuses such a pflash image (or pads it to one), so it is not "
                         "the image a guest is launched with", span))
    if vm.measured_boot:
        area = info.hash_table
        if area is None or area[0] == 0 or area[1] < PADDED_TABLE_SIZE:
            found = ("no SEV hash-table entry" if area is None else
                     f"an unusable hash-table area (base 0x{area[0]:x}, size 0x{area[1]:x})")
            out.append(error(
                f"firmware {info.path} has {found}, so QEMU cannot measure the kernel, initrd "
                "and cmdline (kernel-hashes on): use an OVMF built from "
                "OvmfPkg/AmdSev/AmdSevX64.dsc (often OVMF.amdsev.fd); generic OVMF builds "
                "such as Debian's OVMF_CODE*.fd only support disk boot", span))
    if vm.type is GuestType.SEV_ES:
        if info.ap_reset_address is None:
            out.append(error(f"firmware {info.path} has no SEV-ES reset block, so QEMU cannot "
                             "start an SEV-ES guest with it", span))
        elif info.ap_reset_address == 0:
            out.append(error(f"firmware {info.path}: the SEV-ES reset address is zero "
                             "(QEMU refuses to start the guest)", span))
    return out
