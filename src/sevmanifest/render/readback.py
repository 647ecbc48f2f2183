"""Reading a QEMU argv back into the measured inputs it launches with.

This is the check behind "one source, two outputs": parse a rendered (or any) QEMU
command line the way QEMU would (pflash unit 0 or ``-bios``, ``-kernel/-initrd/-append``,
``sev-guest``'s policy/kernel-hashes/legacy-vm-type, ``-smp``, ``-cpu`` with the
family/model/stepping its properties and ``-global`` set), rebuild a
one-variant model VM from it, and let the measurement engine compute its launch digest.
It shares no code with the renderer beyond the QemuOpts syntax.

What an argv cannot say is a parameter: the host kernel's ``sev_features`` and the QEMU
version (which only matters for its defaults; an absent ``legacy-vm-type`` is "auto",
which is the legacy init on every released QEMU, facts §6.3).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from .. import cpus
from ..diagnostics import DiagnosticError, error
from ..model import VM, Artefact, Cpu, GuestType, HostMatrix, Launch, Policy, PolicyBit, Variant, Vmm
from . import qemuopts

# QEMU options that take no argument (qemu-options.hx); every other option takes one.
NO_ARGUMENT = {"-S", "-s", "-no-reboot", "-no-shutdown", "-nographic", "-enable-kvm", "-nodefaults",
               "-no-user-config", "-snapshot", "-daemonize", "-no-hpet", "-no-acpi", "-full-screen",
               "-no-fd-bootchk", "-win2k-hack", "-no-quit", "-alt-grab", "-ctrl-grab", "-preconfig",
               "-only-migratable", "-enable-fips", "-semihosting", "-old-param", "-version", "-h",
               "-help", "-no-kvm-pit-reinjection", "-rtc-td-hack", "-nouserconfig", "-xen-attach",
               "-dump-vmstate", "-enable-sync-profile", "-usb", "-no-frame"}
DEFAULT_MEMORY = 128 << 20  # QEMU's default -m
_SIZE_SUFFIX = {"": 20, "b": 0, "k": 10, "m": 20, "g": 30, "t": 40, "p": 50, "e": 60}


@dataclass(frozen=True)
class ArgvLaunch:
    """The measured inputs of one QEMU command line, as a one-variant model VM."""

    vm: VM
    variant: Variant


def _fail(message: str) -> DiagnosticError:
    return DiagnosticError(error(f"QEMU argv: {message}", fatal_input=True))


def options(argv: Sequence[str]) -> list[tuple[str, str | None]]:
    """``(flag, argument)`` pairs in order; ``--flag`` is QEMU's alias of ``-flag``."""
    out: list[tuple[str, str | None]] = []
    i = 1  # argv[0] is the program
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("-") or arg == "-":
            out.append(("-hda", arg))  # QEMU's bare image argument
            i += 1
            continue
        flag = "-" + arg.lstrip("-")
        if flag in NO_ARGUMENT:
            out.append((flag, None))
            i += 1
            continue
        if i + 1 >= len(argv):
            raise _fail(f"option {arg} needs an argument")
        out.append((flag, argv[i + 1]))
        i += 2
    return out


def _last(opts, *flags: str) -> str | None:
    values = [value for flag, value in opts if flag in flags]
    return values[-1] if values else None


def _merged(opts, flag: str, implied: str) -> dict[str, str]:
    """QEMU merges repeated -machine / -smp options; later keys win."""
    props: dict[str, str] = {}
    for name, value in opts:
        if name == flag or (flag == "-machine" and name == "-M"):
            props.update(qemuopts.parse(value, implied))
    return props


def _sev_object(opts, machine: dict[str, str]) -> dict[str, str]:
    link = machine.get("confidential-guest-support") or machine.get("memory-encryption")
    if not link:
        raise _fail("no -machine confidential-guest-support=ID, so SEV is not enabled")
    for flag, value in opts:
        if flag == "-object":
            props = qemuopts.parse(value, "qom-type")
            if props.get("id") == link:
                if props.get("qom-type") != "sev-guest":
                    raise _fail(f"object {link!r} is a {props.get('qom-type')}, not a sev-guest")
                return props
    raise _fail(f"no -object sev-guest with id {link!r}")


def _firmware(opts) -> str:
    """Pflash unit 0 (units counted as QEMU assigns them), else -bios."""
    units: dict[int, str] = {}
    next_unit = 0
    for flag, value in opts:
        if flag == "-pflash":
            props = {"file": value, "if": "pflash"}
        elif flag == "-drive":
            props = qemuopts.parse(value)
        else:
            continue
        if props.get("if") != "pflash":
            continue
        unit = int(props["unit"], 0) if "unit" in props else next_unit
        units[unit] = props.get("file", "")
        while next_unit in units:
            next_unit += 1
    if 0 in units:
        return units[0]
    bios = _last(opts, "-bios")
    if bios is None:
        raise _fail("no firmware: neither pflash unit 0 nor -bios")
    return bios


def _vcpus(opts) -> int:
    smp = _merged(opts, "-smp", "cpus")
    try:
        if "cpus" in smp:
            return int(smp["cpus"], 0)
        if "maxcpus" in smp:
            return int(smp["maxcpus"], 0)
        return math.prod(int(smp.get(k, "1"), 0) for k in ("sockets", "dies", "cores", "threads"))
    except ValueError:
        raise _fail(f"cannot read -smp {smp}") from None


def _cpu(opts, guest: GuestType) -> tuple[Cpu, ...]:
    value = _last(opts, "-cpu")
    name = value.split(",", 1)[0] if value else None
    info = cpus.lookup(name) if name else None
    if info is None:
        if guest is GuestType.SEV_ES:
            raise _fail(f"SEV-ES needs a -cpu model with a known signature, got {name!r}")
        return ()  # plain SEV measures no CPU
    fms = _cpu_version(opts, name, value, {"family": info.family, "model": info.model,
                                           "stepping": info.stepping})
    sig = cpus.signature(fms["family"], fms["model"], fms["stepping"])
    return (Cpu(sig, name, fms["family"], fms["model"], fms["stepping"]),)


def _cpu_version(opts, name: str, cpu_option: str, fms: dict[str, int]) -> dict[str, int]:
    """family/model/stepping after QEMU's global properties: each ``-global`` on the
    model's type or an ancestor (``x86_64-cpu``, ``cpu``) in order, then the ``-cpu``
    option's own properties, which QEMU registers as globals after the user's."""
    types = {f"{name}-x86_64-cpu", "x86_64-cpu", "cpu"}
    settings = []
    for flag, value in opts:
        if flag == "-global":
            driver, prop, text = qemuopts.parse_global(value)
            if driver in types:
                settings.append((prop, text))
    for item in cpu_option.split(",")[1:]:  # x86_cpu_parse_featurestr: plain commas
        prop, _, text = item.partition("=")
        settings.append((prop.replace("_", "-"), text))
    fms = dict(fms)
    for prop, text in settings:
        if prop in fms:
            fms[prop] = _c_integer(text, f"CPU {prop} {text!r}")
    return fms


def _c_integer(text: str, what: str) -> int:
    """A non-negative integer as QEMU's string visitor reads it (strtoll base 0)."""
    try:
        if text[:2].lower() == "0x":
            return int(text[2:], 16)
        if text.startswith("0") and len(text) > 1:
            return int(text[1:], 8)
        number = int(text, 10)
    except ValueError:
        raise _fail(f"cannot read {what}") from None
    if number < 0:
        raise _fail(f"cannot read {what}")
    return number


def _memory(opts) -> int:
    value = _last(opts, "-m")
    if value is None:
        return DEFAULT_MEMORY
    size = qemuopts.parse(value, "size").get("size", "")
    number = size.rstrip("bBkKmMgGtTpPeE")
    try:
        return int(float(number) * (1 << _SIZE_SUFFIX[size[len(number):].lower()]))
    except (ValueError, KeyError):
        raise _fail(f"cannot read -m {value}") from None


def _artefact(role: str, path: str | None) -> Artefact | None:
    return None if path is None else Artefact(role, path, Path(path))


def measured_inputs_from_argv(argv: Sequence[str], *, sev_features: int = 0,
                              qemu_version: tuple[int, int] = (9, 2)) -> ArgvLaunch:
    """The measured inputs of ``argv`` (program name first) as a one-variant VM."""
    opts = options(argv)
    machine = _merged(opts, "-machine", "type")
    sev = _sev_object(opts, machine)
    try:
        policy = Policy(int(sev.get("policy", "1"), 0))  # QEMU's default policy is 0x1
        kernel_hashes = qemuopts.boolean(sev.get("kernel-hashes", "off"), "kernel-hashes")
        legacy_word = sev.get("legacy-vm-type", "auto")  # "auto" is legacy (facts §6.3)
        legacy = legacy_word == "auto" or qemuopts.boolean(legacy_word, "legacy-vm-type")
        cbitpos, rpb = int(sev.get("cbitpos", "0"), 0), int(sev["reduced-phys-bits"], 0)
    except KeyError:
        raise _fail("sev-guest needs reduced-phys-bits") from None
    except ValueError as exc:
        raise _fail(f"sev-guest: {exc}") from None
    guest = GuestType.SEV_ES if policy.value & PolicyBit.ES else GuestType.SEV
    kernel = _last(opts, "-kernel") or machine.get("kernel")
    initrd = _last(opts, "-initrd") or machine.get("initrd")
    append = _last(opts, "-append") if _last(opts, "-append") is not None else machine.get("append")
    if kernel is None and (initrd is not None or append is not None):
        raise _fail("-initrd and -append need -kernel")
    host = HostMatrix(vmms=(Vmm.QEMU,), legacy_vm_types=(legacy,), sev_features=(sev_features,),
                      qemu_version=qemu_version, cbitpos=cbitpos, reduced_phys_bits=rpb)
    vm = VM(name="argv", file="<argv>", type=guest, firmware=_artefact("firmware", _firmware(opts)),
            kernel=_artefact("kernel", kernel), initrd=_artefact("initrd", initrd),
            cmdline=None if append is None else os.fsencode(append), kernel_hashes=kernel_hashes,
            vcpus=(_vcpus(opts),), cpus=_cpu(opts, guest), memory=_memory(opts),
            machine=machine.get("type", "pc"), host=host, policy=policy, launch=Launch())
    return ArgvLaunch(vm, next(vm.variants()))


def launch_digest_from_argv(argv: Sequence[str], *, sev_features: int = 0,
                            qemu_version: tuple[int, int] = (9, 2)) -> bytes:
    """The GCTX.LD that ``argv`` launches with, recomputed by the measurement engine."""
    from ..measure.digest import compute
    launch = measured_inputs_from_argv(argv, sev_features=sev_features, qemu_version=qemu_version)
    return compute(launch.vm).variants[0].launch_digest
