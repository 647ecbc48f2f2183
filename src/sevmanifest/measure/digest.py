"""The launch digest GCTX.LD of every variant of a VM (facts §1):

    GCTX.LD = SHA-256( firmware ‖ padded kernel-hashes table? ‖ VMSA_0 ‖ ... ‖ VMSA_{n-1} )

It is one streaming hash, so the state after ``firmware ‖ table`` is a prefix shared by
every variant: the firmware is streamed once (its state also gives the file's own
SHA-256), and each variant starts from a ``.copy()``.  For SEV-ES, the pages after the BSP
are identical for one VMSA profile, so one incremental pass yields the digests of all the
vCPU counts a matrix asks for.  The *measurement* (HMAC) is in ``launch.py``.
"""
from __future__ import annotations

from collections import namedtuple
from collections.abc import Sequence
from pathlib import Path

from ..diagnostics import Diagnostic, DiagnosticError, error
from ..model import VM, GuestType, Variant, Vmm
from . import vmsa
# firmware_diagnostics is also public here (its historical home)
from .firmware_checks import firmware_diagnostics, firmware_problems, inspect_vm_firmware  # noqa: F401
from .hashing import DigestCache, FileDigest, FileKeys, HashJob, check_pin, hash_artefacts
from .hashtable import cmdline_sha256, padded_table
from .ovmf import FirmwareInfo


# Named tuples, not dataclasses, here and in the other measurement modules: `sevm measure`
# creates each record type on every start (~1.2 ms a frozen dataclass, ~0.15 ms these).

class VariantDigest(namedtuple("VariantDigest", "variant launch_digest cpu_signature profile",
                               defaults=(None,))):
    """One variant's result: ``variant`` (model.Variant); ``launch_digest`` (GCTX.LD, 32
    bytes; not the HMAC "launch measurement"); ``cpu_signature`` (the signature in the
    VMSA's RDX, None when none is measured); ``profile`` (the vmsa.VmsaProfile, SEV-ES only)."""
    __slots__ = ()


class VmMeasurement(namedtuple("VmMeasurement", "vm artefact_digests firmware variants")):
    """One VM's results: ``vm``; ``artefact_digests`` (role -> SHA-256 hex of the file's
    bytes); ``firmware`` (ovmf.FirmwareInfo); ``variants`` (VariantDigests in
    ``vm.variants()`` order)."""
    __slots__ = ()


def compute(vm: VM, *, cache: DigestCache | None = None) -> VmMeasurement:
    return compute_many([vm], cache=cache)[0]


def compute_many(vms: Sequence[VM], *, cache: DigestCache | None = None) -> list[VmMeasurement]:
    """Launch digests of all variants of ``vms``; each distinct artefact is hashed once."""
    problems: list[Diagnostic] = []
    firmware: list[FirmwareInfo] = []
    inspected: dict[Path, FirmwareInfo] = {}  # a fleet shares its firmware: read its table once
    for vm in vms:
        problems.extend(_input_problems(vm))
        try:
            info = inspected.get(vm.firmware.path)
            if info is None:  # (errors are not remembered: each vm reports at its own span)
                info = inspected[vm.firmware.path] = inspect_vm_firmware(vm)
            firmware.append(info)
        except DiagnosticError as exc:
            problems.extend(exc.diagnostics)
            continue
        problems.extend(firmware_problems(vm, info))
    _raise_errors(problems)
    keys = FileKeys()
    found = hash_artefacts(_jobs(vms), cache=cache, keys=keys)
    digests = {a.path: found[keys[a.path]] for vm in vms for a in vm.artefacts}
    for vm in vms:
        problems.extend(filter(None, (check_pin(a, digests[a.path].sha256_hex)
                                      for a in vm.artefacts)))
    _raise_errors(problems)
    return [_measure(vm, info, digests) for vm, info in zip(vms, firmware)]


def needs_state(vm: VM) -> bool:
    """Whether measuring ``vm`` needs the hash state of its firmware, not only its digest."""
    # plain SEV disk boot: LD = SHA-256(firmware), so a cached file digest is enough
    return vm.type is GuestType.SEV_ES or vm.measured_boot


def _jobs(vms: Sequence[VM]) -> list[HashJob]:
    jobs = []
    for vm in vms:
        jobs.append(HashJob(vm.firmware, keep_state=needs_state(vm)))
        jobs.extend(HashJob(a, keep_state=False) for a in (vm.kernel, vm.initrd) if a)
    return jobs


def _raise_errors(problems: list[Diagnostic]) -> None:
    if any(d.is_error for d in problems):
        raise DiagnosticError(problems)


def _input_problems(vm: VM) -> list[Diagnostic]:
    """Inputs QEMU would refuse; the front end rejects them too, this is the backstop."""
    out = []
    where = vm.span
    if vm.kernel is None and vm.initrd is not None:
        out.append(error(f"vm {vm.name}: an initrd needs a kernel", vm.initrd.span or where))
    if vm.kernel is None and vm.cmdline is not None:
        out.append(error(f"vm {vm.name}: a cmdline needs a kernel",
                         vm.origins.get("cmdline", where)))
    if vm.cmdline is not None and b"\0" in vm.cmdline:
        out.append(error(f"vm {vm.name}: the cmdline contains a NUL byte; QEMU would cut it there",
                         vm.origins.get("cmdline", where)))
    if any(n < 1 for n in vm.vcpus):
        out.append(error(f"vm {vm.name}: vcpus must be at least 1, got "
                         f"{', '.join(map(str, vm.vcpus))}", vm.origins.get("vcpus", where)))
    if vm.type is GuestType.SEV_ES:
        if Vmm.QEMU in vm.host.vmms and not vm.cpus:
            out.append(error(f"vm {vm.name}: sev-es with vmm qemu needs a cpu model: QEMU puts "
                             "its CPUID signature into every VMSA", where))
        if any(v is not Vmm.QEMU for v in vm.host.vmms) and any(vm.host.sev_features):
            out.append(error(f"vm {vm.name}: sev-features other than 0 are only modelled for "
                             "vmm qemu", vm.origins.get("host.sev-features", where)))
    return out


def _measure(vm: VM, info: FirmwareInfo, digests: dict[Path, FileDigest]) -> VmMeasurement:
    """``digests``: by the artefact's path as the model spells it."""
    by_role = {a.role: digests[a.path] for a in vm.artefacts}
    prefix = _prefix(vm, by_role)
    variants = tuple(vm.variants())
    if vm.type is GuestType.SEV:
        ld = prefix if isinstance(prefix, bytes) else prefix.digest()
        results = tuple(VariantDigest(v, ld, None) for v in variants)
    else:
        results = _sev_es_digests(prefix, variants, info.ap_reset_address)
    return VmMeasurement(vm=vm, artefact_digests={r: d.sha256_hex for r, d in by_role.items()},
                         firmware=info, variants=results)


def _prefix(vm: VM, by_role: dict[str, FileDigest]):
    """The hash state after firmware ‖ table, or the finished digest for SEV disk boot."""
    firmware = by_role["firmware"]
    if firmware.state is None:
        return bytes.fromhex(firmware.sha256_hex)
    state = firmware.state.copy()
    if vm.measured_boot:
        initrd = by_role.get("initrd")
        state.update(padded_table(
            kernel_sha256=bytes.fromhex(by_role["kernel"].sha256_hex),
            initrd_sha256=bytes.fromhex(initrd.sha256_hex) if initrd else None,
            cmdline_digest=cmdline_sha256(vm.cmdline)))
    return state


def profile_for(variant: Variant, reset_address: int) -> vmsa.VmsaProfile:
    """The VMSA inputs of a variant; for ec2/gce the CPU and host profile do not matter."""
    if variant.vmm is Vmm.QEMU:
        return vmsa.VmsaProfile(variant.vmm, reset_address, variant.cpu.signature,
                                variant.legacy_vm_type, variant.sev_features)
    return vmsa.VmsaProfile(variant.vmm, reset_address, None, True, variant.sev_features)


def _sev_es_digests(prefix, variants: tuple[Variant, ...], reset: int) -> tuple[VariantDigest, ...]:
    profiles = [profile_for(v, reset) for v in variants]
    wanted: dict[vmsa.VmsaProfile, set[int]] = {}
    for v, profile in zip(variants, profiles):
        wanted.setdefault(profile, set()).add(v.vcpus)
    lds: dict[tuple[vmsa.VmsaProfile, int], bytes] = {}
    for profile, counts in wanted.items():
        bsp, ap = vmsa.pages(profile)
        state = prefix.copy()
        state.update(bsp)
        for n in range(1, max(counts) + 1):
            if n > 1:
                state.update(ap)
            if n in counts:
                lds[profile, n] = state.digest()  # digest() leaves the state usable
    out = []
    for v, profile in zip(variants, profiles):
        signature = profile.cpu_signature if v.vmm is Vmm.QEMU else None
        out.append(VariantDigest(v, lds[profile, v.vcpus], signature, profile))
    return tuple(out)


def vmsa_pages(result: VariantDigest) -> list[bytes]:
    """The VMSA page of each vCPU of one SEV-ES variant (empty for SEV), for dumps."""
    if result.profile is None:
        return []
    bsp, ap = vmsa.pages(result.profile)
    return [bsp] + [ap] * (result.variant.vcpus - 1)
