"""Policy bits and measured inputs in plain words, for guest owners and reviewers.

``explain_policy`` decodes a raw 32-bit SEV guest policy (SEV API spec 55766, "Guest
Policy"; facts §3).  ``explain_vm`` adds what the hardware measures, in the order it
measures it: firmware, the kernel-hashes table, then one VMSA per vCPU (facts §1).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from ..diagnostics import escape_unprintable
from ..model import POLICY_RESERVED_MASK, VM, GuestType, PolicyBit, Vmm

MAX_POLICY = 0xFFFF_FFFF


@dataclass(frozen=True)
class PolicyLine:
    """One policy bit (or bit field) decoded."""

    bits: str  # "0", "6-15", "16-31"
    name: str  # the spec's name, e.g. "NODBG"
    field: str  # the manifest's name, e.g. "debug"
    state: str  # "deny", "allow", "set", "0.24", ...
    meaning: str  # what this state means for the guest owner
    concern: bool  # True when this state is weaker than the safe choice


@dataclass(frozen=True)
class MeasuredInput:
    """One part of the launch digest, in hardware order."""

    step: str  # "firmware", "kernel-hashes table", "VMSAs"
    detail: str


@dataclass(frozen=True)
class VmExplanation:
    name: str
    type: GuestType
    policy_hex: str
    policy: list[PolicyLine]
    measured: list[MeasuredInput]
    not_in_digest: list[str]


# bit, manifest field, meaning when the NO-bit is set (deny), meaning when clear (allow)
NO_BITS = (
    (PolicyBit.NODBG, "debug",
     "the hypervisor cannot use the SEV debug commands to read or write guest memory",
     "the hypervisor may decrypt and change guest memory with the SEV debug commands"),
    (PolicyBit.NOKS, "key-sharing",
     "no other guest may share this guest's memory encryption key",
     "another guest launched by the same owner may share this guest's encryption key"),
    (PolicyBit.NOSEND, "send",
     "the guest can never be sent (migrated) to another platform",
     "the guest may be sent (migrated) to another platform"),
    (PolicyBit.DOMAIN, "send-outside-domain",
     "the guest may only be sent to platforms in the same domain",
     "the guest may be sent to platforms outside its domain"),
    (PolicyBit.SEV, "send-to-non-sev",
     "the guest may only be sent to SEV-capable platforms",
     "the guest may be sent to a platform without SEV, i.e. in the clear"),
)


# more significant digits than this are not even converted: far outside 32 bits
MAX_POLICY_DIGITS = 20
_DECIMAL = re.compile(r"[0-9][0-9_]*")
_HEX = re.compile(r"0[xX][0-9a-fA-F_]+")


def parse_policy(text: str) -> int | None:
    """A bare decimal or ``0x`` hex integer (``_`` allowed) as a policy, else None.

    Raises ValueError for a number with no digits (``0x_``) or with more than 20
    significant digits, far outside 32 bits: such a number is not converted (Python's
    ``int`` refuses more than 4 300 decimal digits) nor shown in full."""
    if _HEX.fullmatch(text):
        digits, base = text[2:].replace("_", ""), 16
    elif _DECIMAL.fullmatch(text):
        digits, base = text.replace("_", ""), 10
    else:
        return None
    if not digits:
        raise ValueError(f"{text!r} is not a policy value: no digits after {text[:2]!r}")
    significant = digits.lstrip("0")
    if len(significant) > MAX_POLICY_DIGITS:
        shown = text if len(text) <= 24 else f"{text[:20]}…"
        raise ValueError(f"a guest policy is a 32-bit value; {shown} ({len(significant):,} "
                         "digits) is out of range")
    return int(digits, base)


def explain_policy(value: int) -> list[PolicyLine]:
    """Every bit of ``value`` in words.  Raises ValueError outside 0..0xffffffff."""
    if not 0 <= value <= MAX_POLICY:
        raise ValueError(f"a guest policy is a 32-bit value; 0x{value:x} is out of range")
    lines = [_no_bit_line(value, entry) for entry in NO_BITS[:2]]
    lines.append(_es_line(value))
    lines.extend(_no_bit_line(value, entry) for entry in NO_BITS[2:])
    sending_off = bool(value & PolicyBit.NOSEND)
    if sending_off:  # DOMAIN and SEV only restrict sending, which NOSEND already forbids
        lines[4:6] = [_moot(line) for line in lines[4:6]]
    lines.append(_reserved_line(value))
    lines.append(_api_line(value))
    return lines


def _no_bit_line(value: int, entry) -> PolicyLine:
    bit, field, when_set, when_clear = entry
    denied = bool(value & bit)
    return PolicyLine(str(bit.bit_length() - 1), bit.name or "", field,
                      "deny" if denied else "allow", when_set if denied else when_clear,
                      concern=not denied)


def _moot(line: PolicyLine) -> PolicyLine:
    return PolicyLine(line.bits, line.name, line.field, line.state,
                      line.meaning + " (no effect: send is denied)", concern=False)


def _es_line(value: int) -> PolicyLine:
    if value & PolicyBit.ES:
        return PolicyLine("2", "ES", "type", "sev-es", "SEV-ES required: register state is "
                          "encrypted and each vCPU's initial state (VMSA) is measured", False)
    return PolicyLine("2", "ES", "type", "sev", "plain SEV: the hypervisor can read and change "
                      "vCPU register state; no VMSA is measured", True)


def _reserved_line(value: int) -> PolicyLine:
    reserved = value & POLICY_RESERVED_MASK
    if not reserved:
        return PolicyLine("6-15", "reserved", "", "0", "reserved bits clear, as required", False)
    return PolicyLine("6-15", "reserved", "", f"0x{reserved:08x}",
                      "reserved bits are set: they must be zero, the firmware may refuse "
                      "the launch or give them a meaning later", True)


def _api_line(value: int) -> PolicyLine:
    major, minor = (value >> 16) & 0xFF, (value >> 24) & 0xFF
    if major == minor == 0:
        return PolicyLine("16-31", "API", "min-api", "0.0", "any SEV firmware version is "
                          "accepted, including old firmware with known flaws", True)
    return PolicyLine("16-31", "API", "min-api", f"{major}.{minor}",
                      f"the guest only launches on SEV firmware with API version "
                      f"{major}.{minor} or newer", False)


def explain_vm(vm: VM) -> VmExplanation:
    measured = [_firmware_input(vm)]
    table = _hash_table_input(vm)
    if table:
        measured.append(table)
    if vm.type is GuestType.SEV_ES:
        measured.append(_vmsa_input(vm))
    return VmExplanation(vm.name, vm.type, vm.policy.hex, explain_policy(vm.policy.value),
                         measured, _not_in_digest(vm))


def _pin(artefact) -> str:
    return f"pinned sha256 {artefact.sha256}" if artefact.sha256 else "not pinned"


def _firmware_input(vm: VM) -> MeasuredInput:
    fw = vm.firmware
    return MeasuredInput("firmware", f"{fw.written} (whole file, {_pin(fw)})")


def _hash_table_input(vm: VM) -> MeasuredInput | None:
    if vm.kernel is None:
        return None
    if not vm.kernel_hashes:
        return MeasuredInput("kernel-hashes table", "NOT MEASURED: the kernel, initrd and "
                             "cmdline are booted without kernel-hashes, so the host can "
                             "replace them unnoticed")
    cmdline = quote_bytes(vm.cmdline or b"")
    initrd = f"{vm.initrd.written} ({_pin(vm.initrd)})" if vm.initrd else "(none: empty hash)"
    return MeasuredInput("kernel-hashes table", f"176 bytes: cmdline {cmdline} plus one NUL; "
                         f"initrd {initrd}; kernel {vm.kernel.written} ({_pin(vm.kernel)})")


def _vmsa_input(vm: VM) -> MeasuredInput:
    h = vm.host
    counts = ", ".join(str(n) for n in vm.vcpus)
    cpus = ", ".join(f"{c.label} (0x{c.signature:08x})" for c in vm.cpus) or "none stated"
    profiles = "legacy-vm-type " + ", ".join(
        "on (legacy KVM_SEV_ES_INIT: FPU fields zero)" if legacy
        else "off (KVM_SEV_INIT2: x87 FCW and MXCSR set)" for legacy in h.legacy_vm_types)
    features = ", ".join(f"0x{f:x}" for f in h.sev_features)
    vmms = ", ".join(v.value for v in h.vmms)
    signature_note = "" if Vmm.QEMU in h.vmms else " (not measured: only vmm qemu puts it in RDX)"
    return MeasuredInput("VMSAs", f"one 4096-byte page per vCPU in index order, BSP first "
                         f"(vcpus {counts}); vmm {vmms}; {profiles}; sev-features {features}; "
                         f"cpu {cpus}{signature_note}")


def _not_in_digest(vm: VM) -> list[str]:
    items = ["the policy: it enters the launch measurement (HMAC) beside the digest"]
    if vm.kernel is None:
        items.append("the boot disk: without a kernel the firmware boots from disk, and nothing "
                     "after the firmware is measured")
    items.append(f'memory, machine "{vm.machine}", disks, network, console, extra arguments, '
                 "firmware variables (VARS)")
    if vm.type is GuestType.SEV:
        items.append("vCPU count, CPU model and host profile (plain SEV measures no VMSA)")
    return items


def quote_bytes(value: bytes | None) -> str | None:
    """Quoted like a manifest string, so trailing blanks and control bytes are visible."""
    return None if value is None else quote_text(value.decode("utf-8", "surrogateescape"))


def quote_text(text: str) -> str:
    """``text`` as a manifest string literal: what a terminal or a CI log would act on
    (control and format characters, bytes that are not UTF-8) is written as an escape."""
    return '"' + escape_unprintable(text, _ESCAPES) + '"'


_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t"}
