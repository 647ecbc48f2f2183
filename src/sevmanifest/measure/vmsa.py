"""The SEV-ES VMSA page each vCPU starts from (facts §6).  One 4096-byte page per vCPU is
measured by LAUNCH_UPDATE_VMSA; vCPU 0 (the BSP) starts at 0xfffffff0, every AP at the
firmware's reset address R, and all AP pages are identical.

The layout is Linux's ``struct sev_es_save_area``: the table below lists every named field
at its offset (zero fields included, for readable dumps); the gaps become reserved bytes.
"""
from __future__ import annotations

import ctypes
from collections import namedtuple
from functools import lru_cache

from ..model import Vmm

PAGE_SIZE = 4096
BSP_RESET_ADDRESS = 0xFFFFFFF0
EC2_GCE_RDX = 0x600  # those VMMs do not put the CPU signature in RDX
INIT2_X87_FCW = 0x037F  # KVM_SEV_INIT2 syncs QEMU's reset FPU state into the VMSA
INIT2_MXCSR = 0x1F80
QEMU_G_PAT = 0x0007040600070406
GCE_G_PAT = 0x00070106


class SegmentDescriptor(ctypes.LittleEndianStructure):
    _pack_ = 1
    _fields_ = [("selector", ctypes.c_uint16), ("attrib", ctypes.c_uint16),
                ("limit", ctypes.c_uint32), ("base", ctypes.c_uint64)]


assert ctypes.sizeof(SegmentDescriptor) == 16

_u8, _u16, _u32, _u64 = ctypes.c_uint8, ctypes.c_uint16, ctypes.c_uint32, ctypes.c_uint64
_SEG = SegmentDescriptor

# (offset, name, type) in ascending offset order.
SAVE_AREA_LAYOUT = [
    (0x000, "es", _SEG), (0x010, "cs", _SEG), (0x020, "ss", _SEG), (0x030, "ds", _SEG),
    (0x040, "fs", _SEG), (0x050, "gs", _SEG), (0x060, "gdtr", _SEG), (0x070, "ldtr", _SEG),
    (0x080, "idtr", _SEG), (0x090, "tr", _SEG),
    (0x0A0, "vmpl0_ssp", _u64), (0x0A8, "vmpl1_ssp", _u64), (0x0B0, "vmpl2_ssp", _u64),
    (0x0B8, "vmpl3_ssp", _u64), (0x0C0, "u_cet", _u64), (0x0CA, "vmpl", _u8), (0x0CB, "cpl", _u8),
    (0x0D0, "efer", _u64), (0x140, "xss", _u64), (0x148, "cr4", _u64), (0x150, "cr3", _u64),
    (0x158, "cr0", _u64), (0x160, "dr7", _u64), (0x168, "dr6", _u64), (0x170, "rflags", _u64),
    (0x178, "rip", _u64), (0x180, "dr0", _u64), (0x188, "dr1", _u64), (0x190, "dr2", _u64),
    (0x198, "dr3", _u64), (0x1D8, "rsp", _u64), (0x1F8, "rax", _u64), (0x200, "star", _u64),
    (0x208, "lstar", _u64), (0x210, "cstar", _u64), (0x218, "sfmask", _u64),
    (0x220, "kernel_gs_base", _u64), (0x228, "sysenter_cs", _u64),
    (0x230, "sysenter_esp", _u64), (0x238, "sysenter_eip", _u64), (0x240, "cr2", _u64),
    (0x268, "g_pat", _u64), (0x270, "dbgctl", _u64), (0x2E8, "pkru", _u32),
    (0x2EC, "tsc_aux", _u32), (0x308, "rcx", _u64), (0x310, "rdx", _u64), (0x318, "rbx", _u64),
    (0x328, "rbp", _u64), (0x330, "rsi", _u64), (0x338, "rdi", _u64),
    *((0x340 + 8 * i, f"r{8 + i}", _u64) for i in range(8)),
    (0x3B0, "sev_features", _u64), (0x3E8, "xcr0", _u64), (0x400, "x87_dp", _u64),
    (0x408, "mxcsr", _u32), (0x40C, "x87_ftw", _u16), (0x40E, "x87_fsw", _u16),
    (0x410, "x87_fcw", _u16), (0x420, "fpreg_x87", _u8 * 80), (0x470, "fpreg_xmm", _u8 * 256),
    (0x570, "fpreg_ymm", _u8 * 256),
]


def _fields_with_gaps(layout, total: int):
    fields, cursor = [], 0
    for offset, name, ctype in layout:
        if offset > cursor:
            fields.append((f"_reserved_{cursor:03x}", _u8 * (offset - cursor)))
        fields.append((name, ctype))
        cursor = offset + ctypes.sizeof(ctype)
    fields.append((f"_reserved_{cursor:03x}", _u8 * (total - cursor)))
    return fields


class SevEsSaveArea(ctypes.LittleEndianStructure):
    _pack_ = 1
    _fields_ = _fields_with_gaps(SAVE_AREA_LAYOUT, PAGE_SIZE)


assert ctypes.sizeof(SevEsSaveArea) == PAGE_SIZE
assert all(getattr(SevEsSaveArea, name).offset == off for off, name, _ in SAVE_AREA_LAYOUT)


class VmsaProfile(namedtuple("VmsaProfile",
                             "vmm reset_address cpu_signature legacy_vm_type sev_features")):
    """Everything a VMSA page depends on apart from BSP/AP: ``vmm``; ``reset_address`` (the
    AP reset address R from the firmware); ``cpu_signature`` (RDX for vmm qemu, unused for
    ec2/gce); ``legacy_vm_type`` (True: legacy KVM init, FPU fields zero; False:
    KVM_SEV_INIT2); ``sev_features``.  (A named tuple: see measure/digest.py.)"""
    __slots__ = ()

    @property
    def rdx(self) -> int:
        if self.vmm is not Vmm.QEMU:
            return EC2_GCE_RDX
        if self.cpu_signature is None:
            raise ValueError("vmm qemu puts the CPU signature in RDX: a CPU model is needed")
        return self.cpu_signature


def build_save_area(profile: VmsaProfile, *, bsp: bool) -> SevEsSaveArea:
    eip = BSP_RESET_ADDRESS if bsp else profile.reset_address
    vmm = profile.vmm
    init2 = vmm is Vmm.QEMU and not profile.legacy_vm_type
    return SevEsSaveArea(
        es=_seg(0, 0x93), ds=_seg(0, 0x93), fs=_seg(0, 0x93), gs=_seg(0, 0x93),
        # ec2 keeps KVM's attributes: cs not-accessed on the BSP, ss and tr differ
        cs=_seg(0xF000, 0x9A if vmm is Vmm.EC2 and bsp else 0x9B, eip & 0xFFFF0000),
        ss=_seg(0, 0x92 if vmm is Vmm.EC2 else 0x93),
        gdtr=_seg(0, 0), idtr=_seg(0, 0), ldtr=_seg(0, 0x82),
        tr=_seg(0, 0x83 if vmm is Vmm.EC2 else 0x8B),
        efer=0x1000,  # EFER.SVME, set by KVM
        cr4=0x40,  # CR4.MCE
        cr0=0x10,  # CR0.ET
        dr7=0x400, dr6=0xFFFF0FF0, rflags=0x2,
        rip=eip & 0xFFFF,
        g_pat=GCE_G_PAT if vmm is Vmm.GCE else QEMU_G_PAT,
        rdx=profile.rdx,
        sev_features=profile.sev_features,
        xcr0=0x1,
        mxcsr=INIT2_MXCSR if init2 else 0,
        x87_fcw=INIT2_X87_FCW if init2 else 0,
    )


def _seg(selector: int, attrib: int, base: int = 0) -> SegmentDescriptor:
    return SegmentDescriptor(selector=selector, attrib=attrib, limit=0xFFFF, base=base)


def page(profile: VmsaProfile, *, bsp: bool) -> bytes:
    return bytes(build_save_area(profile, bsp=bsp))


@lru_cache(maxsize=256)
def pages(profile: VmsaProfile) -> tuple[bytes, bytes]:
    """(BSP page, AP page): vCPU 0 uses the first, every other vCPU the second.

    A pure function of the profile (immutable bytes out), kept for the run: a fleet's
    manifests mostly share a few profiles (200 locks of one CPU model built it 400 times)."""
    return page(profile, bsp=True), page(profile, bsp=False)
