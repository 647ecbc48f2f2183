"""QEMU CPU models and their CPUID signatures (the value QEMU puts in the SEV-ES VMSA's RDX).

Source: AMD pub. 25481 for the signature formula; QEMU's target/i386/cpu.c for the
models.  ``since`` is the first QEMU release known to ship the model ((7, 2) means
"present in 7.2; older releases not checked").
"""
from __future__ import annotations

from typing import NamedTuple


class CpuModelInfo(NamedTuple):  # not a dataclass: ~1 ms less start-up
    family: int
    model: int
    stepping: int
    since: tuple[int, int]


def signature(family: int, model: int, stepping: int) -> int:
    """CPUID Fn0000_0001 EAX for a family/model/stepping triple."""
    if family > 0xF:
        base_family, ext_family = 0xF, (family - 0xF) & 0xFF
    else:
        base_family, ext_family = family, 0
    return (ext_family << 20 | ((model >> 4) & 0xF) << 16 | base_family << 8
            | (model & 0xF) << 4 | (stepping & 0xF))


def _family(names: list[str], fms: tuple[int, int, int], since: tuple[int, int]):
    return {name: CpuModelInfo(*fms, since) for name in names}


CPU_MODELS: dict[str, CpuModelInfo] = {
    **_family(["EPYC", "EPYC-v1", "EPYC-v2", "EPYC-v3", "EPYC-IBPB"], (23, 1, 2), (7, 2)),
    **_family(["EPYC-Rome", "EPYC-Rome-v1", "EPYC-Rome-v2"], (23, 49, 0), (7, 2)),
    **_family(["EPYC-Milan", "EPYC-Milan-v1"], (25, 1, 1), (7, 2)),
    # Debian's QEMU 7.2 lacks these versions (`qemu-system-x86_64 -cpu help`); they came
    # with the cache-info update series of QEMU 8.1 that also added EPYC-Genoa.
    **_family(["EPYC-v4"], (23, 1, 2), (8, 1)),
    **_family(["EPYC-Rome-v3"], (23, 49, 0), (8, 1)),
    **_family(["EPYC-Milan-v2"], (25, 1, 1), (8, 1)),
    **_family(["EPYC-Genoa", "EPYC-Genoa-v1"], (25, 17, 0), (8, 1)),
    **_family(["EPYC-Turin"], (26, 0, 0), (10, 1)),
}

# Models whose signature depends on the host or on no table at all.
UNPREDICTABLE_MODELS = {"host", "max", "qemu64", "kvm64", "base"}

MAX_CPUID_SIGNATURE = 0x0FFF_FFFF  # EAX bits 28-31 are reserved


def lookup(name: str) -> CpuModelInfo | None:
    return CPU_MODELS.get(name)


def suggest(name: str) -> str | None:
    """The closest known model name, for "did you mean" hints (case-insensitive)."""
    import difflib  # only on the error path: keeps `sevm check` start-up lean
    by_lower = {n.lower(): n for n in CPU_MODELS}
    if name.lower() in by_lower:
        return by_lower[name.lower()]
    close = difflib.get_close_matches(name.lower(), list(by_lower), n=1, cutoff=0.6)
    return by_lower[close[0]] if close else None
