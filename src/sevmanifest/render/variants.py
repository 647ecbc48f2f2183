"""Choosing the one variant of a VM's matrix that a launch artefact is rendered for.

A launch configuration is one concrete launch, so a matrix VM (several vCPU counts, CPU
models, host profiles) needs ``--variant KEY=VALUE,...`` naming enough of the dimensions
to leave exactly one variant.  The keys are those of :meth:`sevmanifest.model.Variant.key`.
"""
from __future__ import annotations

import dataclasses
import shlex

from ..diagnostics import DiagnosticError, error
from ..model import VM, Variant

KEYS = ("vcpus", "cpu", "vmm", "legacy-vm-type", "sev-features")
_BOOL_WORDS = {"on": "on", "off": "off", "true": "on", "false": "off", "yes": "on", "no": "off"}


def _usage(message: str, notes: tuple[str, ...] = ()) -> DiagnosticError:
    return DiagnosticError(error(message, fatal_input=True, notes=notes))


def parse_spec(spec: str | None) -> dict[str, str]:
    """``"vcpus=4,cpu=EPYC-Milan"`` -> ``{"vcpus": "4", "cpu": "EPYC-Milan"}``."""
    if not spec:
        return {}
    wanted: dict[str, str] = {}
    for item in spec.split(","):
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key:
            raise _usage(f"--variant: expected KEY=VALUE, got {item!r}",
                         (f"keys: {', '.join(KEYS)}",))
        if key not in KEYS:
            raise _usage(f"--variant: unknown key {key!r}", (f"keys: {', '.join(KEYS)}",))
        if key in wanted:
            raise _usage(f"--variant: {key} given twice")
        wanted[key] = value
    return wanted


def _normal(key: str, value: str) -> str:
    """A comparable form of a key's value: integers by value, booleans as on/off."""
    if key in ("vcpus", "sev-features"):
        try:
            return str(int(value, 0))
        except ValueError:
            return value
    if key == "legacy-vm-type":
        return _BOOL_WORDS.get(value.lower(), value)
    if key in ("vmm",):
        return value.lower()
    return value


def _matches(variant: Variant, wanted: dict[str, str]) -> bool:
    key = variant.key()
    for name, value in wanted.items():
        if name == "cpu" and variant.cpu is not None and _cpu_matches(variant, value):
            continue
        if _normal(name, key[name]) != _normal(name, value):
            return False
    return True


def _cpu_matches(variant: Variant, value: str) -> bool:
    # a CPU may also be named by its signature, whatever form the manifest used
    cpu = variant.cpu
    try:
        return int(value, 0) == cpu.signature
    except ValueError:
        return value == cpu.label


def describe(variant: Variant, dims: tuple[str, ...] = KEYS) -> str:
    key = variant.key()
    return ",".join(f"{k}={key[k]}" for k in dims)


def varying_dimensions(vm: VM) -> tuple[str, ...]:
    """The keys whose values differ between the VM's variants."""
    keys = [v.key() for v in vm.variants()]
    return tuple(k for k in KEYS if len({key[k] for key in keys}) > 1)


def select_variant(vm: VM, spec: str | None) -> Variant:
    """The single variant of ``vm`` that ``spec`` names; a usage error otherwise."""
    wanted = parse_spec(spec)
    variants = list(vm.variants())
    chosen = [v for v in variants if _matches(v, wanted)]
    dims = varying_dimensions(vm) or ("vcpus",)
    # ready to paste into a shell: a CPU label such as "family 25 model 1 stepping 1" has spaces
    listing = tuple(f"--variant {shlex.quote(describe(v, dims))}" for v in (chosen or variants))
    if len(chosen) == 1:
        return chosen[0]
    if not chosen:
        raise _usage(f"vm {vm.name}: no variant matches --variant {spec}", ("variants:",) + listing)
    raise _usage(f"vm {vm.name} has {len(chosen)} variants{' matching --variant ' + spec if spec else ''}"
                 "; choose one with --variant", listing)


def single_variant_vm(vm: VM, variant: Variant) -> VM:
    """``vm`` with every matrix dimension narrowed to ``variant`` (for measuring just it)."""
    host = dataclasses.replace(vm.host, vmms=(variant.vmm,), legacy_vm_types=(variant.legacy_vm_type,),
                               sev_features=(variant.sev_features,))
    cpus = (variant.cpu,) if variant.cpu is not None else ()
    return dataclasses.replace(vm, vcpus=(variant.vcpus,), cpus=cpus, host=host)
