"""The rendering library API: one variant of a VM into QEMU argv, a shell script, a libvirt
domain, or a user's template.  The CLI (``sevm render``) is a thin layer over these."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..diagnostics import Diagnostic
from ..model import VM, Variant
from . import context as context_mod
from . import libvirt, qemu
from .variants import single_variant_vm

QEMU_SCRIPT_TEMPLATE = "qemu.sh.j2"
FORMATS = ("sh", "argv")


@dataclass(frozen=True)
class Rendered:
    text: str  # may carry surrogate escapes for non-UTF-8 bytes: write with encode_output()
    warnings: tuple[Diagnostic, ...]


def qemu_command(vm: VM, variant: Variant) -> qemu.QemuCommand:
    """The QEMU argv of ``variant`` (``.argv``), with the decisions behind it (``.target``).
    A building block: it reads no artefact, so a firmware that fails its pin or its checks
    is not noticed here; ``render_qemu`` measures the variant first, as the CLI does."""
    return qemu.build(vm, variant)


def launch_digest(vm: VM, variant: Variant) -> bytes:
    """The expected GCTX.LD of one variant, from the measurement engine."""
    from ..measure.digest import compute
    return compute(single_variant_vm(vm, variant)).variants[0].launch_digest


def template_context(vm: VM, variant: Variant, command: qemu.QemuCommand | None = None) -> dict:
    """The documented template context (docs/rendering.md) of one variant."""
    command = command or qemu_command(vm, variant)
    return context_mod.build(vm, variant, command, launch_digest(vm, variant))


def render_qemu(vm: VM, variant: Variant, *, format: str = "sh") -> Rendered:
    """``format`` "sh": a launch script; "argv": a JSON array (program name first)."""
    if format not in FORMATS:
        raise ValueError(f"unknown QEMU output format {format!r}")
    command = qemu_command(vm, variant)
    # Both formats measure the variant first: the launch digest is what checks the
    # firmware (its pin, the hash table for kernel-hashes, the SEV-ES reset block) and
    # reads every artefact, so neither format prints a launch that `sevm measure` refuses.
    context = template_context(vm, variant, command)
    if format == "argv":
        return Rendered(json.dumps(command.argv) + "\n", command.warnings)
    from .templates import render_builtin
    return Rendered(render_builtin(QEMU_SCRIPT_TEMPLATE, context), command.warnings)


def render_libvirt(vm: VM, variant: Variant) -> Rendered:
    command = qemu_command(vm, variant)
    ctx = template_context(vm, variant, command)
    libvirt.check(vm, variant, ctx)
    from .templates import render_builtin
    return Rendered(render_builtin(libvirt.TEMPLATE, ctx), command.warnings)


def render_template(path: str | Path, vm: VM, variant: Variant) -> Rendered:
    """A user's Jinja template, rendered in the sandbox with the same context."""
    command = qemu_command(vm, variant)
    from .templates import render_user
    return Rendered(render_user(path, template_context(vm, variant, command)), command.warnings)


def encode_output(text: str) -> bytes:
    """The bytes to write: surrogate escapes turn back into the original bytes."""
    return text.encode("utf-8", "surrogateescape")
