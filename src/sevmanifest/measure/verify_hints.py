"""What to check when a reported launch measurement matches no variant.

A mismatch carries no information about *which* input differs (that is the point of a
MAC), so the best a verifier can do is list, concretely, every input that enters the
HMAC, with the value the manifest expects.  Kept short: one line per input.
"""
from __future__ import annotations

from typing import Iterator, Sequence

from ..model import VM, GuestType


def mismatch_hints(measurements: Sequence, reported, *, policy_only: bool) -> Iterator[str]:
    """``policy_only``: the HMAC matched, but with a policy other than the manifest's."""
    if policy_only:
        yield ("the launch digest and keys agree, but the host launched the guest with a "
               "different policy than the manifest states; do not trust this guest")
        return
    yield (f"host SEV firmware: the HMAC covers API {reported.api_major}.{reported.api_minor} "
           f"build {reported.build}; take them from query-sev of this launch (a firmware "
           "update changes every measurement)")
    yield ("TIK: it must be the NAME_tik.bin of the session this guest was launched with "
           "(dh-cert-file/session-file); a new session means a new TIK")
    if reported.policy is None:
        policies = ", ".join(sorted({m.vm.policy.hex for m in measurements}))
        yield (f"policy: not reported, so the HMAC was computed over the manifest's "
               f"({policies}); a host that launched with another policy cannot match; pass "
               "--policy or --query-sev to see the difference")
    for m in measurements:
        yield from _vm_hints(m)


def _vm_hints(m) -> Iterator[str]:
    vm: VM = m.vm
    who = f"vm {vm.name!r}: " if vm.name else ""
    yield (f"{who}firmware: pflash unit 0 (or -bios) must be exactly {vm.firmware.path} "
           f"(sha256 {_digest(m, 'firmware', vm.firmware)}); any other OVMF build measures "
           "differently")
    yield who + _kernel_hint(m, vm)
    if vm.measured_boot:
        cmdline = vm.cmdline or b""
        yield (f"{who}cmdline: -append must be exactly {_bytes_repr(cmdline)} ({len(cmdline)} "
               "bytes; whitespace and a trailing newline count)")
    if vm.type is GuestType.SEV_ES:
        cpus = ", ".join(c.label for c in vm.cpus) or "none stated"
        yield (f"{who}vCPUs: -smp must be one of {', '.join(map(str, vm.vcpus))} and -cpu one of "
               f"{cpus} (SEV-ES measures one VMSA per vCPU, with the CPU signature)")
        profiles = ", ".join(f"legacy-vm-type {'on' if lv else 'off'}" for lv in vm.host.legacy_vm_types)
        features = ", ".join(f"0x{f:x}" for f in vm.host.sev_features)
        vmms = ", ".join(v.value for v in vm.host.vmms)
        yield (f"{who}host profile: vmm {vmms}; {profiles}; sev-features {features} (QEMU >= 9.1 "
               "with legacy-vm-type=off, or a Linux 6.6/6.7 host with DebugSwap, changes "
               "every VMSA)")


def _kernel_hint(m, vm: VM) -> str:
    if vm.kernel is None:
        return ("kernel-hashes: the manifest boots from disk (no -kernel); a host that passes "
                "-kernel with kernel-hashes=on adds a hash table to the digest")
    if not vm.kernel_hashes:
        return ("kernel-hashes: off in the manifest, so -kernel/-initrd/-append are not "
                "measured; a host running kernel-hashes=on measures differently")
    initrd = (f"-initrd {vm.initrd.path} (sha256 {_digest(m, 'initrd', vm.initrd)})" if vm.initrd
              else "no -initrd")
    return (f"kernel-hashes: QEMU must run with kernel-hashes=on, -kernel {vm.kernel.path} "
            f"(sha256 {_digest(m, 'kernel', vm.kernel)}) and {initrd}")


def _digest(m, role: str, artefact) -> str:
    digests = getattr(m, "artefact_digests", None) or {}
    value = digests.get(role) if hasattr(digests, "get") else None
    if value is None:
        value = artefact.sha256
    if isinstance(value, bytes):
        value = value.hex()
    return value or "not pinned"


def _bytes_repr(data: bytes) -> str:
    """The bytes as a manifest string literal, escaping what a terminal would hide."""
    out = []
    for ch in data.decode("utf-8", errors="surrogateescape"):
        code = ord(ch)
        if 0xDC80 <= code <= 0xDCFF:  # a byte that is not UTF-8
            out.append(f"\\x{code - 0xDC00:02x}")
        elif ch in '"\\':
            out.append("\\" + ch)
        elif ch.isprintable():
            out.append(ch)
        else:
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{{{code:x}}}")
    shown = "".join(out)
    if len(shown) > 120:
        shown = shown[:117] + "..."
    return f'"{shown}"'
