"""The matrix guard: refuse a VM whose variant matrix is absurdly large.

Every variant is a launch digest an attestation service must accept, so thousands of them
widen what a verifier lets through, and computing, locking and reviewing them costs time and
space.  A matrix that large is almost always a typo (a pasted range of vCPU counts, a list
repeated in a template), so it is an error, not a warning.
"""
from __future__ import annotations

from ..diagnostics import Diagnostic, error
from ..model import VM

MAX_VARIANTS = 10_000


def _dimensions(vm: VM) -> list[tuple[str, int]]:
    h = vm.host
    dims = [("vcpus", len(vm.vcpus)), ("cpu", max(1, len(vm.cpus))), ("vmm", len(h.vmms)),
            ("legacy-vm-type", len(h.legacy_vm_types)), ("sev-features", len(h.sev_features))]
    return [(name, n) for name, n in dims if n > 1]


def check_matrix_size(vm: VM) -> Diagnostic | None:
    """An error when ``vm`` expands to more than MAX_VARIANTS variants, else None."""
    count = vm.variant_count()
    if count <= MAX_VARIANTS:
        return None
    product = " × ".join(f"{n:,} {name}" for name, n in _dimensions(vm))
    return error(
        f"vm {vm.name!r}: the matrix expands to {count:,} variants ({product}), more than the "
        f"limit of {MAX_VARIANTS:,}",
        vm.span,
        notes=("every variant is a launch digest an attestation service would accept; "
               "list only the values a launch can really use, or split the vm",),
    )
