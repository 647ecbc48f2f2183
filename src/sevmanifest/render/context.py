"""The template context: every value a template (built-in or a user's) may use.

Plain dicts, lists, strings, integers and booleans only, so a sandboxed template can
read all of it and nothing else.  docs/rendering.md documents each name; keep the two in
step (tests/test_render_context.py checks that every key is documented).
"""
from __future__ import annotations

import functools
import os

from ..model import POLICY_FIELDS, VM, Artefact, Cpu, Variant
from .qemu import QemuCommand, argv_path, argv_text
from .target import version_text
from .variants import describe


@functools.lru_cache(maxsize=1)
def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("sevmanifest")
    except PackageNotFoundError:
        return "unknown"


def _artefact(artefact: Artefact | None, vm: VM) -> dict | None:
    if artefact is None:
        return None
    return {"role": artefact.role, "path": argv_path(artefact.path, vm), "written": artefact.written,
            "sha256": artefact.sha256}


def _cpu(cpu: Cpu | None, model: str | None) -> dict | None:
    if cpu is None:
        return None
    return {"name": model, "label": cpu.label, "signature": f"0x{cpu.signature:08x}",
            "family": cpu.family, "model": cpu.model, "stepping": cpu.stepping}


def _policy(vm: VM) -> dict:
    policy = vm.policy
    return {"value": policy.value, "hex": policy.hex, "es": policy.es,
            "api_major": policy.api_major, "api_minor": policy.api_minor,
            "fields": {name: "deny" if policy.denies(name) else "allow" for name in POLICY_FIELDS}}


def _disks(vm: VM) -> list[dict]:
    out = []
    for index, disk in enumerate(vm.launch.disks):
        source = disk.resolved if disk.resolved is not None else disk.path
        out.append({"path": argv_path(source, vm), "written": disk.path, "format": disk.format,
                    "target": "vd" + _drive_letters(index)})
    return out


def _drive_letters(index: int) -> str:
    # vda..vdz, vdaa.. (the Linux virtio-blk naming libvirt also uses)
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(ord("a") + rest) + letters
    return letters


def _vm(vm: VM, command: QemuCommand) -> dict:
    cmdline = None if vm.cmdline is None else argv_text(vm.cmdline, f"vm {vm.name}: cmdline", vm)
    return {
        "name": vm.name, "file": vm.file, "type": vm.type.value, "es": vm.type.value == "sev-es",
        "policy": _policy(vm),
        "firmware": _artefact(vm.firmware, vm), "kernel": _artefact(vm.kernel, vm),
        "initrd": _artefact(vm.initrd, vm),
        "cmdline": cmdline, "cmdline_hex": None if vm.cmdline is None else vm.cmdline.hex(),
        "kernel_hashes": vm.kernel_hashes, "measured_boot": vm.measured_boot,
        "memory": vm.memory, "memory_mib": command.target.memory_mib,
        "machine": vm.machine,
        "launch": {"disks": _disks(vm), "net": vm.launch.net, "console": vm.launch.console,
                   "extra": [os.fsdecode(os.fsencode(x)) for x in vm.launch.extra]},
    }


def _variant(variant: Variant, command: QemuCommand) -> dict:
    return {"vcpus": variant.vcpus, "cpu": _cpu(variant.cpu, command.target.cpu_model),
            "vmm": variant.vmm.value, "legacy_vm_type": variant.legacy_vm_type,
            "sev_features": f"0x{variant.sev_features:x}", "key": variant.key(),
            "key_text": describe(variant)}


def _host(vm: VM, command: QemuCommand) -> dict:
    return {"qemu_version": version_text(vm.host.qemu_version), "cbitpos": vm.host.cbitpos,
            "reduced_phys_bits": vm.host.reduced_phys_bits,
            "legacy_vm_type_property": command.target.legacy_vm_type_property,
            "kernel_hashes_property": command.target.kernel_hashes_property}


def _qemu(command: QemuCommand) -> dict:
    return {"binary": command.binary, "machine": command.target.machine,
            "argv": command.argv, "options": [option.argv for option in command.options]}


def build(vm: VM, variant: Variant, command: QemuCommand, launch_digest: bytes) -> dict:
    """The context of one rendered variant.  ``command`` is the variant's QEMU command
    (qemu.build), ``launch_digest`` its expected GCTX.LD."""
    return {
        "sevm": {"version": _version()},
        "vm": _vm(vm, command),
        "variant": _variant(variant, command),
        "host": _host(vm, command),
        "qemu": _qemu(command),
        "launch_digest": launch_digest.hex(),
        "warnings": [w.message for w in command.warnings],
    }
