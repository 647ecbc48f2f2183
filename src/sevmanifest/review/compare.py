"""Field-by-field comparison of two versions of one VM, classified for review.

Each comparator yields ``RawChange``s with a model path relative to the VM ("policy.debug",
"host.vmm", "firmware.sha256"); ``diff.py`` adds the VM prefix and the NEW-side span.
The classification rules are documented in docs/review.md; they are stated here once,
as code, in the order a reviewer reads a manifest.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Iterator

from ..model import POLICY_FIELDS, VM, Artefact, GuestType, PolicyBit
from . import matrix
from .explain import NO_BITS, quote_bytes
from .kinds import Kind, RawChange


def vm_changes(old: VM, new: VM) -> Iterator[RawChange]:
    for comparator in _COMPARATORS:
        yield from comparator(old, new)


# ---- guest type and policy -------------------------------------------------------------

def _type(old: VM, new: VM) -> Iterator[RawChange]:
    if old.type is new.type:
        return
    if new.type is GuestType.SEV:
        yield RawChange("type", old.type.value, new.type.value, Kind.WEAKENS,
                        "SEV-ES to SEV: the host can read and change vCPU registers, and "
                        "the vCPUs' initial state is no longer measured", measured=True)
    else:
        yield RawChange("type", old.type.value, new.type.value, Kind.STRENGTHENS,
                        "SEV to SEV-ES: vCPU registers are encrypted and every vCPU's "
                        "initial state is measured", measured=True)


_MEANINGS = {field: (deny, allow) for _bit, field, deny, allow in NO_BITS}
_SEND_RESTRICTIONS = {"send-outside-domain", "send-to-non-sev"}


def _policy_fields(old: VM, new: VM) -> Iterator[RawChange]:
    for name in POLICY_FIELDS:
        was, now = old.policy.denies(name), new.policy.denies(name)
        if was == now:
            continue
        state = {True: "deny", False: "allow"}
        deny_text, allow_text = _MEANINGS[name]
        if name in _SEND_RESTRICTIONS and new.policy.value & PolicyBit.NOSEND:
            kind, why = Kind.MEASUREMENT, f"{name} {state[now]}: no effect while send is denied"
        elif now:
            kind, why = Kind.STRENGTHENS, f"{name} denied: {deny_text}"
        else:
            kind, why = Kind.WEAKENS, f"{name} allowed: {allow_text}"
        yield RawChange(f"policy.{name}", state[was], state[now], kind, why, measured=True)


def _min_api(old: VM, new: VM) -> Iterator[RawChange]:
    was = (old.policy.api_major, old.policy.api_minor)
    now = (new.policy.api_major, new.policy.api_minor)
    if was == now:
        return
    shown = ("%d.%d" % was, "%d.%d" % now)
    if now < was:
        yield RawChange("policy.min-api", *shown, Kind.WEAKENS, f"minimum SEV firmware API "
                        f"lowered: firmware older than {shown[0]} is accepted", measured=True)
    else:
        yield RawChange("policy.min-api", *shown, Kind.STRENGTHENS, f"minimum SEV firmware API "
                        f"raised: firmware older than {shown[1]} is refused", measured=True)


def _reserved(old: VM, new: VM) -> Iterator[RawChange]:
    if old.policy.reserved != new.policy.reserved:
        yield RawChange("policy.reserved", f"0x{old.policy.reserved:x}",
                        f"0x{new.policy.reserved:x}", Kind.MEASUREMENT,
                        "reserved policy bits change; they must be zero", measured=True)


# ---- measured artefacts ----------------------------------------------------------------

def _kernel_hashes(old: VM, new: VM) -> Iterator[RawChange]:
    if old.kernel_hashes == new.kernel_hashes:
        return
    shown = (_on(old.kernel_hashes), _on(new.kernel_hashes))
    if old.measured_boot and not new.measured_boot:
        yield RawChange("kernel-hashes", *shown, Kind.WEAKENS, "kernel, initrd and cmdline are "
                        "no longer measured: the host can replace them unnoticed", measured=True)
    elif new.measured_boot and not old.measured_boot:
        yield RawChange("kernel-hashes", *shown, Kind.STRENGTHENS, "kernel, initrd and cmdline "
                        "are now measured (kernel-hashes table)", measured=True)
    else:
        yield RawChange("kernel-hashes", *shown, Kind.NEUTRAL, "no kernel: nothing to hash")


def _artefacts(old: VM, new: VM) -> Iterator[RawChange]:
    yield from _artefact("firmware", old.firmware, new.firmware, True, old, new)
    yield from _artefact("kernel", old.kernel, new.kernel, new.measured_boot, old, new)
    yield from _artefact("initrd", old.initrd, new.initrd, new.measured_boot, old, new)


def resolves_to(artefact: Artefact, vm: VM) -> str:
    """Where ``artefact`` resolves, relative to the directory of the vm's manifest: the same
    wherever the tree is checked out (``--git`` compiles the old side elsewhere).  An
    absolute path as written stays absolute."""
    if os.path.isabs(artefact.written):
        return os.path.normpath(artefact.written)
    return os.path.relpath(artefact.path, os.path.dirname(os.path.abspath(vm.file)))


def _artefact(role: str, was: Artefact | None, now: Artefact | None, measured: bool,
              old: VM, new: VM) -> Iterator[RawChange]:
    if was is None and now is None:
        return
    if was is None or now is None or was.written != now.written:
        yield _artefact_file(role, was, now, measured, new)
    elif resolves_to(was, old) != resolves_to(now, new):  # same text, another file
        change = _artefact_file(role, was, now, measured, new)
        yield dataclasses.replace(
            change, old=f"{was.written} (resolves to {resolves_to(was, old)})",
            new=f"{now.written} (resolves to {resolves_to(now, new)})",
            why=f"the same path, relative to another template, resolves to another file "
            f"(shown relative to the vm's manifest); {change.why}")
    if was is not None and now is not None and was.sha256 != now.sha256:
        yield _artefact_pin(role, was.sha256, now.sha256, measured)


def _artefact_file(role: str, was: Artefact | None, now: Artefact | None, measured: bool,
                   new: VM) -> RawChange:
    shown = (was.written if was else None, now.written if now else None)
    if role == "kernel" and was is None and not new.kernel_hashes:
        return RawChange(role, *shown, Kind.WEAKENS, "a kernel booted without kernel-hashes: "
                         "the host can replace it unnoticed")
    if not measured:
        return RawChange(role, *shown, Kind.NEUTRAL, "not measured (kernel-hashes off)")
    if was and now and was.sha256 and now.sha256:  # the pins decide the content
        if was.sha256 == now.sha256:
            return RawChange(role, *shown, Kind.NEUTRAL, "moved: the same pinned content")
        return RawChange(role, *shown, Kind.NEUTRAL, "another path; the content change is "
                         f"the new {role}.sha256")
    what = "in the kernel-hashes table" if role != "firmware" else "in the launch digest"
    return RawChange(role, *shown, Kind.MEASUREMENT, f"a different {role} file: its hash "
                     f"{what} changes unless the bytes are identical", measured=True)


def _artefact_pin(role: str, was: str | None, now: str | None, measured: bool) -> RawChange:
    path = f"{role}.sha256"
    if now is None:
        return RawChange(path, was, None, Kind.WEAKENS, f"{role} pin removed: whatever file is "
                         "at that path is accepted without review")
    if was is None:
        return RawChange(path, None, now, Kind.STRENGTHENS, f"{role} pinned: the file must "
                         "match the reviewed digest")
    if not measured:
        return RawChange(path, was, now, Kind.NEUTRAL, f"new {role} content, not measured "
                         "(kernel-hashes off)")
    return RawChange(path, was, now, Kind.MEASUREMENT, f"new {role} content: the launch "
                     "digest of every variant changes", measured=True)


def _cmdline(old: VM, new: VM) -> Iterator[RawChange]:
    if old.cmdline == new.cmdline:
        return
    shown = (quote_bytes(old.cmdline), quote_bytes(new.cmdline))
    if not old.cmdline and not new.cmdline:  # QEMU hashes both as one NUL byte
        yield RawChange("cmdline", *shown, Kind.NEUTRAL, "no cmdline and an empty one hash "
                        "the same (a single NUL)")
    elif new.measured_boot:
        yield RawChange("cmdline", *shown, Kind.MEASUREMENT, "different cmdline bytes: the "
                        "kernel-hashes table and every launch digest change", measured=True)
    else:
        yield RawChange("cmdline", *shown, Kind.NEUTRAL, "not measured (kernel-hashes off)")


def _on(flag: bool) -> str:
    return "on" if flag else "off"


_COMPARATORS = (_type, _policy_fields, _min_api, _reserved, _kernel_hashes, _artefacts, _cmdline,
                *matrix.COMPARATORS)
