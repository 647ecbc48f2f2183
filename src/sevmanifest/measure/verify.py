"""Check a launch measurement reported by a host against every variant of a manifest.

The host reports MEASURE || MNONCE (48 bytes) plus the SEV firmware version and the
policy it launched with.  For each VM and each variant of its matrix we recompute
MEASURE = HMAC-SHA-256(TIK, 0x04 || API_MAJOR || API_MINOR || BUILD || POLICY || LD || MNONCE)
(facts §2) and compare in constant time.  All variants are always computed and compared,
match or not, so the work done does not depend on where (or whether) a match is.

The HMAC uses the policy the host reports (the one the firmware enforced); a reported
policy that differs from the manifest's is a failure even when the HMAC matches, because
a host may truthfully launch a guest with a weaker policy.
"""
from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Sequence

from ..model import VM, PolicyBit, POLICY_RESERVED_MASK
from .verify_hints import mismatch_hints

MEASURE_BYTES = 32
MNONCE_BYTES = 16
TIK_BYTES = 16

MATCH = "match"
POLICY_MISMATCH = "policy-mismatch"
MISMATCH = "mismatch"


class Tik:
    """The transport integrity key.  Its repr and str never show the key."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes):
        if not isinstance(key, (bytes, bytearray)) or len(key) != TIK_BYTES:
            size = len(key) if isinstance(key, (bytes, bytearray)) else type(key).__name__
            raise ValueError(f"a TIK is {TIK_BYTES} bytes, got {size}")
        self._key = bytes(key)

    @property
    def key(self) -> bytes:
        return self._key

    def __repr__(self) -> str:
        return "Tik(<redacted>)"

    __str__ = __repr__

    def __reduce__(self):  # no pickling the key into a cache or a log by accident
        raise TypeError("a Tik cannot be pickled")


@dataclass(frozen=True)
class Reported:
    """What the host reports about one launch (query-sev + query-sev-launch-measure)."""

    measurement: bytes  # MEASURE, 32 bytes
    mnonce: bytes  # 16 bytes
    api_major: int
    api_minor: int
    build: int
    policy: int | None  # None: not reported; the HMAC is then computed over each vm's policy

    def __post_init__(self):
        if len(self.measurement) != MEASURE_BYTES or len(self.mnonce) != MNONCE_BYTES:
            raise ValueError("measurement must be 32 bytes and mnonce 16 bytes")
        for name in ("api_major", "api_minor", "build"):
            if not 0 <= getattr(self, name) <= 0xFF:
                raise ValueError(f"{name} must be 0..255")
        if self.policy is not None and not 0 <= self.policy <= 0xFFFF_FFFF:
            raise ValueError("policy must be a 32-bit unsigned integer")

    @classmethod
    def from_blob(cls, blob: bytes, *, api_major: int, api_minor: int, build: int,
                  policy: int | None) -> "Reported":
        """From the 48-byte blob that QMP and libvirt report: MEASURE || MNONCE."""
        if len(blob) != MEASURE_BYTES + MNONCE_BYTES:
            raise ValueError(f"the launch measurement blob is 48 bytes, got {len(blob)}")
        return cls(blob[:MEASURE_BYTES], blob[MEASURE_BYTES:], api_major, api_minor, build, policy)

    @property
    def blob(self) -> bytes:
        return self.measurement + self.mnonce


@dataclass(frozen=True)
class VariantMatch:
    """A variant whose recomputed measurement equals the reported one."""

    vm: VM
    digest: object  # measure.digest.VariantDigest: .variant, .launch_digest, .cpu_signature


@dataclass(frozen=True)
class PolicyDifference:
    what: str  # e.g. "bit 0 NODBG (debug)", "min-api (bits 16-31)"
    manifest: str
    reported: str
    weakens: bool


@dataclass(frozen=True)
class PolicyMismatch:
    vm: VM
    manifest: int
    reported: int
    differences: tuple[PolicyDifference, ...]

    @property
    def weakens(self) -> bool:
        return any(d.weakens for d in self.differences)


@dataclass(frozen=True)
class VerifyResult:
    status: str  # MATCH | POLICY_MISMATCH | MISMATCH
    reported: Reported
    matches: tuple[VariantMatch, ...]  # HMAC and policy both agree
    policy_only: tuple[VariantMatch, ...]  # HMAC agrees, but the reported policy differs
    policy_mismatches: tuple[PolicyMismatch, ...]
    variants_checked: int
    hints: tuple[str, ...]  # what to check, on mismatch
    vms: tuple[str, ...] = ()  # names of the VMs compared, in order

    @property
    def ok(self) -> bool:
        return self.status == MATCH


def verify(measurements: Sequence, reported: Reported, tik: bytes | Tik) -> VerifyResult:
    """Compare ``reported`` with every variant of every measured VM.

    ``measurements`` are ``measure.digest.VmMeasurement`` objects (``.vm``, ``.variants``).
    """
    from .launch import launch_measurement

    key = tik if isinstance(tik, Tik) else Tik(tik)
    outcomes: list[tuple[bool, bool, VM, object]] = []
    mismatched_policies: list[PolicyMismatch] = []
    for m in measurements:
        vm: VM = m.vm
        policy = vm.policy.value if reported.policy is None else reported.policy
        policy_equal = policy == vm.policy.value
        if not policy_equal:
            mismatched_policies.append(compare_policies(vm, vm.policy.value, policy))
        for vd in m.variants:
            expected = launch_measurement(
                vd.launch_digest, key.key, api_major=reported.api_major,
                api_minor=reported.api_minor, build=reported.build, policy=policy,
                mnonce=reported.mnonce)
            # compare_digest for every variant: no early exit, no data-dependent timing.
            equal = hmac.compare_digest(expected, reported.measurement)
            outcomes.append((equal, policy_equal, vm, vd))
    matches = tuple(VariantMatch(vm, vd) for eq, pol, vm, vd in outcomes if eq and pol)
    policy_only = tuple(VariantMatch(vm, vd) for eq, pol, vm, vd in outcomes if eq and not pol)
    if matches:
        status = MATCH
    elif policy_only:
        status = POLICY_MISMATCH
    else:
        status = MISMATCH
    hints = () if status == MATCH else tuple(mismatch_hints(
        measurements, reported, policy_only=status == POLICY_MISMATCH))
    return VerifyResult(status, reported, matches, policy_only, tuple(mismatched_policies),
                        len(outcomes), hints, tuple(m.vm.name for m in measurements))


_NAMED_BITS = (
    (PolicyBit.NODBG, "NODBG (debug deny)"),
    (PolicyBit.NOKS, "NOKS (key-sharing deny)"),
    (PolicyBit.ES, "ES (SEV-ES required)"),
    (PolicyBit.NOSEND, "NOSEND (send deny)"),
    (PolicyBit.DOMAIN, "DOMAIN (send-outside-domain deny)"),
    (PolicyBit.SEV, "SEV (send-to-non-sev deny)"),
)


def compare_policies(vm: VM, manifest: int, reported: int) -> PolicyMismatch:
    """Each differing policy field, and whether the host's value is weaker."""
    diffs: list[PolicyDifference] = []
    for bit, name in _NAMED_BITS:
        want, got = bool(manifest & bit), bool(reported & bit)
        if want != got:
            # Every named bit restricts the guest when set, so clearing one weakens it.
            diffs.append(PolicyDifference(f"bit {int(bit).bit_length() - 1} {name}",
                                          _set(want), _set(got), weakens=want and not got))
    for bit in range(6, 16):
        mask = 1 << bit
        if mask & POLICY_RESERVED_MASK and (manifest ^ reported) & mask:
            diffs.append(PolicyDifference(f"bit {bit} (reserved)", _set(bool(manifest & mask)),
                                          _set(bool(reported & mask)), weakens=False))
    want_api, got_api = _min_api(manifest), _min_api(reported)
    if want_api != got_api:
        diffs.append(PolicyDifference("min-api (bits 16-31)", "%d.%d" % want_api,
                                      "%d.%d" % got_api, weakens=got_api < want_api))
    return PolicyMismatch(vm, manifest, reported, tuple(diffs))


def _set(flag: bool) -> str:
    return "set" if flag else "clear"


def _min_api(policy: int) -> tuple[int, int]:
    return (policy >> 16) & 0xFF, (policy >> 24) & 0xFF
