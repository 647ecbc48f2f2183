"""Old and new launch digests per variant, for VMs whose reference values change.

Optional (``sevm diff --digests``): it reads and hashes the artefacts of both sides.
When an artefact cannot be read (a build output that is not in the repository, or
a pin that no longer matches the file), the VM's digests are reported as unavailable
with the reason, and the rest of the diff is unaffected.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..diagnostics import DiagnosticError
from ..model import VM, Variant
from .diff import DiffResult


@dataclass(frozen=True)
class DigestRow:
    variant: str  # "vcpus=4 cpu=EPYC-Milan vmm=qemu legacy-vm-type=on sev-features=0x0"
    old: str | None  # launch digest (GCTX.LD), 64 hex digits; None: no such variant
    new: str | None


@dataclass(frozen=True)
class VmDigests:
    vm: str
    rows: tuple[DigestRow, ...] = ()
    unavailable: str | None = None  # why the digests could not be computed

    @property
    def changed(self) -> bool:
        return any(row.old != row.new for row in self.rows)


def variant_label(variant: Variant) -> str:
    return " ".join(f"{k}={v}" for k, v in variant.key().items() if v != "")


def digest_table(old: VM | None, new: VM | None,
                 old_note: Callable[[str], str] = lambda m: m) -> VmDigests:
    """``old_note`` rewrites a problem with the OLD side (e.g. to name a git revision)."""
    name = (new or old).name  # type: ignore[union-attr]
    try:
        before = _launch_digests(old)
    except _Unavailable as exc:
        return VmDigests(name, unavailable=old_note(str(exc)))
    try:
        after = _launch_digests(new)
    except _Unavailable as exc:
        return VmDigests(name, unavailable=str(exc))
    keys = list(after) + [key for key in before if key not in after]
    return VmDigests(name, tuple(
        DigestRow((after.get(key) or before[key])[0], _digest(before, key), _digest(after, key))
        for key in keys))


def _variant_key(variant: Variant) -> tuple:
    """What the digest depends on: a CPU renamed with the same signature ("EPYC-Milan" to
    "EPYC-Milan-v2") is the same row, aligned old against new."""
    return (variant.vcpus, variant.cpu.signature if variant.cpu else None, variant.vmm,
            variant.legacy_vm_type, variant.sev_features)


def _digest(table: dict, key) -> str | None:
    return table[key][1] if key in table else None


class _Unavailable(Exception):
    pass


def _launch_digests(vm: VM | None) -> dict[tuple, tuple[str, str]]:
    if vm is None:
        return {}
    from ..lock.guard import check_matrix_size
    too_big = check_matrix_size(vm)
    if too_big is not None:  # measuring it would take minutes and gigabytes
        raise _Unavailable(f"digests unavailable for vm {vm.name}: {too_big.message}")
    try:
        from ..measure.digest import compute
        measured = compute(vm)
    except DiagnosticError as exc:
        raise _Unavailable(f"digests unavailable for vm {vm.name}: "
                           f"{exc.diagnostics[0].message}") from None
    except (ImportError, OSError, ValueError) as exc:
        raise _Unavailable(f"digests unavailable for vm {vm.name}: {exc}") from None
    return {_variant_key(v.variant): (variant_label(v.variant), _hex(v.launch_digest))
            for v in measured.variants}


def _hex(value: bytes | str) -> str:
    return value.hex() if isinstance(value, bytes) else value


def digests_for(result: DiffResult, old_vms: dict[str, VM], new_vms: dict[str, VM],
                old_note: Callable[[str], str] = lambda m: m) -> list[VmDigests]:
    """A table for every VM with a change that affects the reference values."""
    from ..commands.common import MAX_MANIFEST_VARIANTS
    names = list(dict.fromkeys(c.vm for c in result.changes if c.measured))
    tables, total = [], 0
    for name in names:
        old, new = old_vms.get(name), new_vms.get(name)
        total += sum(vm.variant_count() for vm in (old, new) if vm is not None)
        if total > 2 * MAX_MANIFEST_VARIANTS:  # both sides of a manifest at its limit
            tables.append(VmDigests(name, unavailable=f"digests unavailable for vm {name}: "
                                    f"the changed vms expand to more than "
                                    f"{2 * MAX_MANIFEST_VARIANTS:,} variants"))
        else:
            tables.append(digest_table(old, new, old_note))
    return tables
