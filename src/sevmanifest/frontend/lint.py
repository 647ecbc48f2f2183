"""Lint rules: risky but legal choices, each with a stable id, a default severity and a reason.

Rules see only the model (with the source positions it carries).  Repositories can
disable a rule or raise it to an error (see ``sevmanifest.review.lintconfig``).
"""
from __future__ import annotations

from typing import Callable, Iterator, NamedTuple

from ..diagnostics import Diagnostic, Severity
from ..model import VM, GuestType, Span, Vmm


class Rule(NamedTuple):  # not a dataclass: ~1 ms less start-up
    id: str
    name: str
    severity: Severity
    rationale: str


RULES: tuple[Rule, ...] = (
    Rule("SEVM101", "debug-allowed", Severity.WARNING,
         "With debugging allowed (policy bit NODBG clear) the host can read and write guest "
         "memory through the SEV debug commands: confidentiality rests on the host's goodwill."),
    Rule("SEVM102", "key-sharing-allowed", Severity.WARNING,
         "With key sharing allowed (NOKS clear) another guest launched with this guest's handle "
         "shares its memory encryption key."),
    Rule("SEVM103", "kernel-not-measured", Severity.WARNING,
         "A kernel booted without kernel-hashes is not part of the launch digest: the host can "
         "swap kernel, initrd and command line and the guest still attests."),
    Rule("SEVM104", "unpinned-artefact", Severity.WARNING,
         "Without a sha256 pin the manifest does not say which build it means; the reference "
         "value silently follows whatever file sits at the path."),
    Rule("SEVM105", "sev-without-es", Severity.WARNING,
         "Plain SEV leaves vCPU register state unencrypted and unmeasured; SEV-ES protects it."),
    Rule("SEVM106", "host-profile-unstated", Severity.WARNING,
         "SEV-ES VMSA bytes depend on the host stack (legacy KVM init or KVM_SEV_INIT2); the "
         "manifest should say which with host { legacy-vm-type on|off } instead of relying on "
         "the default (on). Only when qemu is among the vmms: ec2 and gce VMSAs are the same "
         "either way."),
    Rule("SEVM107", "qemu-7.2-rng-seed", Severity.WARNING,
         "QEMU 7.2.0 adds a random seed to the kernel blob for pc-*-7.2 machine types, so the "
         "kernel hash never matches; use a machine type of 7.1 or older, or a QEMU with the "
         "revert (Debian 7.2+dfsg-5 and later, upstream 8.0)."),
)
RULES_BY_ID = {rule.id: rule for rule in RULES}


def _diag(rule_id: str, message: str, span: Span | None) -> Diagnostic:
    rule = RULES_BY_ID[rule_id]
    return Diagnostic(rule.severity, message, span, rule=rule.id, rule_name=rule.name)


def _policy(vm: VM) -> Iterator[Diagnostic]:
    where = vm.origins.get("policy.debug") or vm.origins.get("policy") or vm.span
    if not vm.policy.denies("debug"):
        yield _diag("SEVM101", "debug allowed: the host can decrypt guest memory", where)
    where = vm.origins.get("policy.key-sharing") or vm.origins.get("policy") or vm.span
    if not vm.policy.denies("key-sharing"):
        yield _diag("SEVM102", "key sharing allowed: add policy { key-sharing deny }", where)


def _boot(vm: VM) -> Iterator[Diagnostic]:
    if vm.kernel is not None and not vm.kernel_hashes:
        yield _diag("SEVM103", "kernel, initrd and cmdline are not measured without "
                    "kernel-hashes on", vm.origins.get("kernel-hashes") or vm.kernel.span)
    for artefact in vm.artefacts:
        if artefact.sha256 is None:
            yield _diag("SEVM104", f"{artefact.role} {artefact.written!r} is not pinned; add "
                        "sha256 \"…\"", artefact.span)


def _guest(vm: VM) -> Iterator[Diagnostic]:
    if vm.type is GuestType.SEV:
        yield _diag("SEVM105", "type sev leaves register state unprotected; consider type sev-es",
                    vm.origins.get("type") or vm.span)
    elif not vm.host.profile_stated and Vmm.QEMU in vm.host.vmms:  # (ec2, gce: one VMSA)
        yield _diag("SEVM106", "host profile not stated; assuming legacy-vm-type on",
                    vm.origins.get("type") or vm.span)
    if vm.measured_boot and vm.host.qemu_version == (7, 2) and not _machine_before_7_2(vm.machine):
        yield _diag("SEVM107", f"QEMU 7.2 with machine {vm.machine!r} adds a random seed to the "
                    "kernel, so the kernel hash cannot match; use machine \"pc-q35-7.1\"",
                    vm.origins.get("machine") or vm.origins.get("kernel-hashes"))


def _machine_before_7_2(machine: str) -> bool:
    parts = machine.split("-")
    try:
        major, minor = (int(x) for x in parts[-1].split("."))
    except ValueError:
        return False  # an alias such as "q35" means the newest machine type
    return (major, minor) <= (7, 1)


CHECKS: tuple[Callable[[VM], Iterator[Diagnostic]], ...] = (_policy, _boot, _guest)


def lint(vm: VM) -> list[Diagnostic]:
    return [d for check in CHECKS for d in check(vm)]
