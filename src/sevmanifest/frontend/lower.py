"""Stage 3: a resolved vm -> ``model.VM``, with the semantic checks that need no file bytes.

Each setting's value is interpreted here and checked for contradictions; problems are
collected (not raised) so one run reports as many as it can.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from .. import cpus
from ..diagnostics import Diagnostic, error
from ..model import VM, Artefact, Cpu, GuestType, Span
from . import ast
from .blocks import lower_host, lower_launch, lower_policy
from .resolve import ResolvedVM
from .strings import unprintable

# q35's limit in QEMU 7.2-8.0 is 288 vCPUs and later releases allow more, but every SEV-ES
# vCPU is one more VMSA to measure and an ASID-bound guest this large is not a real
# deployment; 512 bounds a matrix's work while leaving room for the largest EPYC hosts.
MAX_VCPUS = 512
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
DEFAULT_MEMORY = 2 << 30
DEFAULT_MACHINE = "q35"
# far beyond any host (an EPYC socket addresses 6 TiB), far below the guest physical
# address space an SEV guest has under its C-bit (bit 47 or 51)
MAX_MEMORY = 64 << 40
_MACHINE = re.compile(r"[A-Za-z0-9_.-]+")  # libvirt's pattern for a machine type


class Lowering:
    def __init__(self, resolved: ResolvedVM, file: str):
        self.r = resolved
        self.file = file
        self.problems: list[Diagnostic] = []
        self.origins: dict[str, Span] = {}

    def fail(self, message: str, span: Span | None) -> None:
        self.problems.append(error(message, span or self.r.decl.name_span))

    def setting(self, key: str) -> ast.Setting | None:
        found = self.r.settings.get(key)
        if found is not None:
            self.origins[key] = found.span
        return found

    # ---- artefacts -----------------------------------------------------------------
    def artefact(self, role: str) -> Artefact | None:
        s = self.setting(role)
        if s is None:
            return None
        written = _text(s.values[0])
        if not written or "\0" in written:
            self.fail(f"{role} path is empty or contains a NUL byte", s.values[0].span)
        elif (bad := unprintable(written, name=False)) is not None:
            self.fail(f"{role} path {written!r} contains {bad}: paths are printed into "
                      "terminals, logs and launch scripts; rename the file", s.values[0].span)
        resolved = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(s.span.file)), written))
        pin = s.option("sha256")
        digest = None
        if pin is not None:
            digest = _text(pin).lower()
            if not _SHA256.fullmatch(digest):
                self.fail(f"a pinned sha256 must be 64 hex digits, got {len(_text(pin))} characters",
                          pin.span)
                digest = None
        return Artefact(role, written, Path(resolved), digest, s.span)

    # ---- vcpus and cpu ---------------------------------------------------------------
    def vcpus(self) -> tuple[int, ...]:
        s = self.setting("vcpus")
        if s is None:
            return (1,)
        counts = []
        for v in s.values:
            if not 1 <= v.value <= MAX_VCPUS:
                self.fail(f"vcpus must be between 1 and {MAX_VCPUS}, got {v.value}", v.span)
            elif v.value in counts:
                self.fail(f"vcpus lists {v.value} twice", v.span)
            else:
                counts.append(v.value)
        return tuple(counts) or (1,)

    def cpus(self, qemu_version: tuple[int, int]) -> tuple[Cpu, ...]:
        s = self.setting("cpu")
        if s is None:
            return ()
        result: list[Cpu] = []
        for v in s.values:
            cpu = self._cpu(v, qemu_version)
            if cpu is not None and cpu in result:
                self.fail(f"cpu lists {cpu.label} twice", v.span)
            elif cpu is not None:
                result.append(cpu)
        return tuple(result)

    def _cpu(self, v: ast.Value, qemu_version: tuple[int, int]) -> Cpu | None:
        form, payload = v.value
        if form == "signature":
            if payload > cpus.MAX_CPUID_SIGNATURE:
                return self.fail(f"a CPUID signature has 28 bits; 0x{payload:x} is too large", v.span)
            return Cpu(payload)
        if form == "fms":
            family, model, stepping = payload
            if not (0 <= family <= 0xFF + 0xF and 0 <= model <= 0xFF and 0 <= stepping <= 0xF):
                return self.fail("family must be 0-270, model 0-255 and stepping 0-15", v.span)
            return Cpu(cpus.signature(family, model, stepping), None, family, model, stepping)
        info = cpus.lookup(payload)
        if info is None:
            return self.fail(_unknown_cpu(payload), v.span)
        if qemu_version < info.since:
            return self.fail(f"CPU model {payload!r} first ships in QEMU {_dotted(info.since)}; "
                             f"host.qemu-version is {_dotted(qemu_version)}", v.span)
        return Cpu(cpus.signature(info.family, info.model, info.stepping), payload,
                   info.family, info.model, info.stepping)

    # ---- scalars -------------------------------------------------------------------
    def word(self, key: str, default: str) -> str:
        s = self.setting(key)
        return _text(s.values[0]) if s else default

    def machine(self) -> str:
        s = self.setting("machine")
        if s is None:
            return DEFAULT_MACHINE
        name = _text(s.values[0])
        if not _MACHINE.fullmatch(name):
            # "x-oem-id=AB" would turn into a property of QEMU's default machine, not its type
            self.fail(f"machine {name!r} is not a QEMU machine type name (letters, digits, "
                      "'.', '_' and '-', as in \"pc-q35-7.1\")", s.values[0].span)
        return name

    def memory(self) -> int:
        s = self.setting("memory")
        if s is None:
            return DEFAULT_MEMORY
        size = s.values[0].value
        if size < (1 << 20) or size % (1 << 20) or size > MAX_MEMORY:
            self.fail("memory must be a whole number of MiB, at least 1MiB and at most 64TiB",
                      s.values[0].span)
        return size

    def cmdline(self) -> bytes | None:
        s = self.setting("cmdline")
        if s is None:
            return None
        data = s.values[0].value
        if b"\0" in data:
            self.fail("the kernel command line cannot contain a NUL byte (QEMU passes it as a C "
                      "string)", s.values[0].span)
        return data


def lower_vm(resolved: ResolvedVM, file: str) -> tuple[VM | None, list[Diagnostic]]:
    low = Lowering(resolved, file)
    guest = GuestType(low.word("type", "sev"))
    firmware = low.artefact("firmware")
    if firmware is None:
        low.fail(f"vm {resolved.decl.name!r} has no firmware; add: firmware \"PATH\"", None)
    kernel, initrd, cmdline = low.artefact("kernel"), low.artefact("initrd"), low.cmdline()
    hashes = low.word("kernel-hashes", "off") == "on"
    host = lower_host(low)
    policy = lower_policy(low, guest)
    vm = VM(
        name=resolved.decl.name, file=file, type=guest, firmware=firmware, kernel=kernel,
        initrd=initrd, cmdline=cmdline, kernel_hashes=hashes, vcpus=low.vcpus(),
        cpus=low.cpus(host.qemu_version), memory=low.memory(),
        machine=low.machine(), host=host, policy=policy,
        launch=lower_launch(low), origins=low.origins, span=resolved.decl.name_span)
    _contradictions(low, vm)
    return (vm if firmware is not None else None), low.problems


def _contradictions(low: Lowering, vm: VM) -> None:
    name_span = low.r.decl.name_span
    for role, present in (("initrd", vm.initrd), ("cmdline", vm.cmdline is not None)):
        if present and vm.kernel is None:
            low.fail(f"{role} without kernel: add a kernel or remove the {role}",
                     low.origins.get(role))
    if vm.kernel_hashes and vm.kernel is None:
        low.fail("kernel-hashes on without a kernel: nothing to measure", low.origins.get("kernel-hashes"))
    if vm.kernel_hashes and vm.host.qemu_version < (6, 2):
        low.fail("kernel-hashes needs QEMU 6.2 or later", low.origins.get("kernel-hashes"))
    stated_cpu = "cpu" in low.origins  # (a stated but invalid cpu has its own error)
    if (vm.type is GuestType.SEV_ES and not stated_cpu
            and any(v.value == "qemu" for v in vm.host.vmms)):
        low.fail("type sev-es needs a cpu: with the QEMU vmm the CPU signature is measured "
                 "(add e.g. cpu \"EPYC-Milan\" or cpu signature 0x00a00f11)", name_span)


def _unknown_cpu(name: str) -> str:
    if name in cpus.UNPREDICTABLE_MODELS:
        return (f"CPU model {name!r} has no fixed CPUID signature, so the measurement cannot be "
                "predicted; name a model (e.g. \"EPYC-Milan\") or give cpu signature 0x…")
    hint = cpus.suggest(name)
    return f"unknown CPU model {name!r}" + (f"; did you mean {hint!r}?" if hint else "")


def _dotted(version: tuple[int, int]) -> str:
    return f"{version[0]}.{version[1]}"


def _text(value: ast.Value) -> str:
    data = value.value
    return data.decode("utf-8", "surrogateescape") if isinstance(data, bytes) else str(data)
