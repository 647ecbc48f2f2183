"""Comparators for the variant matrix (vcpus, cpu, host profile) and launch-time settings.

A matrix dimension lists the values attestation accepts.  Under SEV-ES they enter the
VMSAs, so adding a value accepts more launches (weakens), removing one accepts fewer
(strengthens), and replacing values changes the reference values (measurement).  Plain
SEV measures no VMSA, so there the same edits are neutral.
"""
from __future__ import annotations

from typing import Callable, Hashable, Iterator, Sequence

from ..model import VM, Cpu, Disk, GuestType, Vmm
from .explain import quote_text
from .kinds import Kind, RawChange

_PLAIN_SEV = "plain SEV measures no VMSA, so this does not enter the launch digest"


def _dimension(path: str, label: str, was: Sequence, now: Sequence, old: VM, new: VM,
               show: Callable = str, key: Callable[..., Hashable] = lambda v: v,
               irrelevant: str | None = None) -> Iterator[RawChange]:
    if tuple(was) == tuple(now):
        return
    shown = (_list(was, show), _list(now, show))
    both_es = old.type is GuestType.SEV_ES and new.type is GuestType.SEV_ES
    if new.type is not GuestType.SEV_ES or irrelevant:
        yield RawChange(path, *shown, Kind.NEUTRAL, irrelevant or _PLAIN_SEV)
        return
    old_keys, new_keys = {key(v) for v in was}, {key(v) for v in now}
    added = [v for v in now if key(v) not in old_keys]
    removed = [v for v in was if key(v) not in new_keys]
    if not added and not removed:
        yield RawChange(path, *shown, Kind.NEUTRAL, f"the same {label} values, measured the same")
    elif not both_es:
        yield RawChange(path, *shown, Kind.MEASUREMENT, f"{label} now enters the VMSAs",
                        measured=True)
    elif not removed:
        yield RawChange(path, *shown, Kind.WEAKENS, f"attestation now also accepts launches "
                        f"with {label} {_list(added, show)}", measured=True)
    elif not added:
        yield RawChange(path, *shown, Kind.STRENGTHENS, f"launches with {label} "
                        f"{_list(removed, show)} are no longer accepted", measured=True)
    else:
        yield RawChange(path, *shown, Kind.MEASUREMENT, f"accepted {label} change: "
                        f"{_list(added, show)} instead of {_list(removed, show)}", measured=True)


def _list(values: Sequence, show: Callable) -> str:
    return ", ".join(show(v) for v in values) if values else "(none)"


def _vcpus(old: VM, new: VM) -> Iterator[RawChange]:
    yield from _dimension("vcpus", "vCPU count", old.vcpus, new.vcpus, old, new)


def _cpus(old: VM, new: VM) -> Iterator[RawChange]:
    def key(cpu: Cpu | None):
        return cpu.signature if cpu else None

    def show(cpu: Cpu | None) -> str:
        return f"{cpu.label} (0x{cpu.signature:08x})" if cpu else "(none)"

    irrelevant = None
    if Vmm.QEMU not in new.host.vmms:
        irrelevant = "only vmm qemu puts the CPU signature into the VMSA"
    was: tuple = old.cpus or (None,)
    now: tuple = new.cpus or (None,)
    if [key(c) for c in was] == [key(c) for c in now] and was != now:
        yield RawChange("cpu", _list(was, show), _list(now, show), Kind.NEUTRAL,
                        "the same CPUID signature: measured the same; QEMU's -cpu model changes")
        return
    yield from _dimension("cpu", "CPU", was, now, old, new, show, key, irrelevant)


def _host_dimensions(old: VM, new: VM) -> Iterator[RawChange]:
    was, now = old.host, new.host
    yield from _dimension("host.vmm", "vmm", was.vmms, now.vmms, old, new, lambda v: v.value)
    yield from _dimension("host.legacy-vm-type", "legacy-vm-type", was.legacy_vm_types,
                          now.legacy_vm_types, old, new, lambda v: "on" if v else "off")
    yield from _dimension("host.sev-features", "sev-features", was.sev_features,
                          now.sev_features, old, new, lambda v: f"0x{v:x}")


def _neutral(path: str, was, now, why: str, show: Callable = str) -> Iterator[RawChange]:
    if was != now:
        yield RawChange(path, _show(was, show), _show(now, show), Kind.NEUTRAL, why)


def _show(value, show: Callable) -> str | None:
    if value is None:
        return None
    if isinstance(value, tuple):
        return _list(value, show)
    return show(value)


def _host_settings(old: VM, new: VM) -> Iterator[RawChange]:
    was, now = old.host, new.host
    yield from _neutral("host.qemu-version", "%d.%d" % was.qemu_version,
                        "%d.%d" % now.qemu_version,
                        "the QEMU the launch configuration targets; not measured")
    yield from _neutral("host.cbitpos", was.cbitpos, now.cbitpos,
                        "launch parameter checked by QEMU; not measured")
    yield from _neutral("host.reduced-phys-bits", was.reduced_phys_bits, now.reduced_phys_bits,
                        "launch parameter checked by QEMU; not measured")


def _guest_settings(old: VM, new: VM) -> Iterator[RawChange]:
    yield from _neutral("memory", old.memory, new.memory, "guest RAM size; not measured",
                        format_size)
    why = "QEMU machine type; not measured"
    if new.measured_boot and new.host.qemu_version == (7, 2):
        # facts §7.4: pc-*-7.2 machine types on QEMU 7.2 hash a random RNG seed with the kernel
        why += ", but on QEMU 7.2 it decides whether the kernel hash can match (rule SEVM107)"
    yield from _neutral("machine", old.machine, new.machine, why, quote_text)


def _launch(old: VM, new: VM) -> Iterator[RawChange]:
    was, now = old.launch, new.launch
    not_measured = "launch-time setting; not measured"
    # as written: the resolved path depends on where the manifest is checked out (--git
    # compiles the old side in a temporary directory)
    yield from _neutral("launch.disk", tuple(map(_as_written, was.disks)),
                        tuple(map(_as_written, now.disks)), not_measured, _disk)
    yield from _neutral("launch.net", was.net, now.net, not_measured)
    yield from _neutral("launch.console", was.console, now.console, not_measured)
    yield from _neutral("launch.extra", was.extra, now.extra, "extra QEMU arguments; not "
                        "measured, but review them: they can change the launch", quote_text)


def _as_written(disk: Disk) -> tuple[str, str]:
    return disk.path, disk.format


def _disk(disk: tuple[str, str]) -> str:
    path, fmt = disk
    return f"{quote_text(path)} format {fmt}"


def format_size(size: int) -> str:
    for unit, scale in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size and size % scale == 0:
            return f"{size // scale}{unit}"
    return str(size)


COMPARATORS = (_vcpus, _cpus, _host_dimensions, _host_settings, _guest_settings, _launch)
