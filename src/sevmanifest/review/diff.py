"""Semantic diff of two compiled manifests: what a change does to the launch policy.

The comparison runs on the model (never on text), VM by VM, so reformatting or moving a
setting into a template is invisible, while a change that arrives through an imported
template is reported at the line that now sets the value.

Kinds, from most to least severe: ``weakens`` (the guest owner accepts more or trusts
the host more), ``strengthens`` (the reverse), ``measurement`` (the reference values
change, with no direction), ``neutral`` (launch-time settings only).  A change that is
both a security direction and a measurement change reports the direction as its kind and
sets ``measured``; ``why`` then says that the reference values change too.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

from ..model import VM, Manifest, Span
from . import compare
from .kinds import Kind, RawChange

__all__ = ["Change", "DiffResult", "Kind", "diff_manifests", "diff_vms", "origin_span"]


@dataclass(frozen=True)
class Change:
    path: str  # "vm.web.policy.debug"
    old: str | None  # display strings; None: absent on that side
    new: str | None
    kind: Kind
    why: str  # one line, plain words
    measured: bool = False  # the reference values (launch digest or measurement) change
    span: Span | None = field(default=None, compare=False)  # where NEW sets it
    vm: str = ""  # the VM's name


@dataclass(frozen=True)
class DiffResult:
    changes: tuple[Change, ...]

    @property
    def weakens(self) -> bool:
        return any(c.kind is Kind.WEAKENS for c in self.changes)

    @property
    def measured(self) -> bool:
        return any(c.measured or c.kind is Kind.MEASUREMENT for c in self.changes)

    def count(self, kind: Kind) -> int:
        return sum(1 for c in self.changes if c.kind is kind)

    def __bool__(self) -> bool:
        return bool(self.changes)


def diff_manifests(old: Manifest | None, new: Manifest | None) -> DiffResult:
    """Every semantic change from ``old`` to ``new`` (None: the file does not exist)."""
    old_vms = {vm.name: vm for vm in (old.vms if old else ())}
    new_vms = {vm.name: vm for vm in (new.vms if new else ())}
    changes: list[Change] = []
    for name in _ordered_names(old_vms, new_vms):
        changes.extend(diff_vms(old_vms.get(name), new_vms.get(name)))
    return DiffResult(tuple(changes))


def _ordered_names(old: dict[str, VM], new: dict[str, VM]) -> list[str]:
    # NEW's order first (the order a reviewer reads the file), then removed VMs.
    return list(new) + [name for name in old if name not in new]


def diff_vms(old: VM | None, new: VM | None) -> Iterator[Change]:
    if old is None and new is None:
        return
    if old is None or new is None:
        yield _vm_presence(old, new)
        return
    for raw in compare.vm_changes(old, new):
        yield _finish(raw, new)


def _vm_presence(old: VM | None, new: VM | None) -> Change:
    if new is not None:
        n = new.variant_count()
        return Change(f"vm.{new.name}", None, _vm_summary(new), Kind.WEAKENS,
                      f"a new VM: attestation accepts its launches ({_variants(n)})",
                      measured=True, span=new.span, vm=new.name)
    assert old is not None
    return Change(f"vm.{old.name}", _vm_summary(old), None, Kind.STRENGTHENS,
                  "VM removed: its reference values are no longer accepted", measured=True,
                  vm=old.name)


def _vm_summary(vm: VM) -> str:
    return f"{vm.type.value}, policy {vm.policy.hex}, {_variants(vm.variant_count())}"


def _variants(n: int) -> str:
    return f"{n} variant" + ("" if n == 1 else "s")


def _finish(raw: RawChange, new: VM) -> Change:
    why = raw.why
    if raw.measured and raw.kind in (Kind.WEAKENS, Kind.STRENGTHENS):
        why += "; the reference values change too"
    return Change(f"vm.{new.name}.{raw.path}", raw.old, raw.new, raw.kind, why,
                  measured=raw.measured or raw.kind is Kind.MEASUREMENT,
                  span=origin_span(new, raw.path), vm=new.name)


def origin_span(vm: VM, path: str) -> Span | None:
    """Where NEW sets ``path``: the most specific recorded origin, else the VM itself."""
    parts = path.split(".")
    while parts:
        span = vm.origins.get(".".join(parts))
        if span is not None:
            return span
        parts.pop()
    return vm.span
