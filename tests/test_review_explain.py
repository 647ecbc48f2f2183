"""explain_policy / explain_vm on model objects, and properties of the diff engine."""
from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from review_support import MILAN, ROME, artefact, change, make_vm
from sevmanifest.model import POLICY_FIELDS, GuestType, Policy, PolicyBit
from sevmanifest.review.diff import Kind, diff_vms
from sevmanifest.review.explain import explain_policy, explain_vm, parse_policy

u32 = st.integers(min_value=0, max_value=0xFFFF_FFFF)


def _rebuild(lines) -> int:
    """The policy value the explanation describes (inverse of explain_policy)."""
    by_field = {line.field: line for line in lines}
    value = 0
    for name, bit in POLICY_FIELDS.items():
        value |= bit if by_field[name].state == "deny" else 0
    value |= PolicyBit.ES if by_field["type"].state == "sev-es" else 0
    reserved = next(line for line in lines if line.name == "reserved").state
    value |= int(reserved, 16) if reserved != "0" else 0
    major, minor = (int(x) for x in by_field["min-api"].state.split("."))
    return value | major << 16 | minor << 24


@given(u32)
def test_explanation_describes_every_bit(value):
    lines = explain_policy(value)
    assert [line.bits for line in lines] == ["0", "1", "2", "3", "4", "5", "6-15", "16-31"]
    assert _rebuild(lines) == value
    assert all(line.meaning for line in lines)


@pytest.mark.parametrize("value,concerns", [
    (0x1F | 0x0001_0000, set()),  # everything denied, ES, min-api 1.0
    (0x0, {"debug", "key-sharing", "type", "send", "send-outside-domain", "send-to-non-sev",
           "min-api"}),
    (0xF, {"min-api"}),  # DOMAIN/SEV do not matter while send is denied
    (0x4F, {"", "min-api"}),  # reserved bit 6
])
def test_concerns(value, concerns):
    assert {line.field for line in explain_policy(value) if line.concern} == concerns


@pytest.mark.parametrize("value", [-1, 1 << 32])
def test_out_of_range(value):
    with pytest.raises(ValueError):
        explain_policy(value)


@pytest.mark.parametrize("text,value", [("0x5", 5), ("0X1f", 31), ("7", 7), ("010", 10),
                                        ("0x1_0000", 0x10000), ("web.sevm", None), ("./5", None),
                                        ("-1", None), ("0x", None), ("5.sevm", None)])
def test_parse_policy(text, value):
    assert parse_policy(text) == value


def test_measured_inputs_in_hardware_order():
    steps = explain_vm(make_vm())
    assert [m.step for m in steps.measured] == ["firmware", "kernel-hashes table", "VMSAs"]
    table = steps.measured[1].detail
    assert table.index("cmdline") < table.index("initrd") < table.index("kernel vmlinuz")
    assert '"console=ttyS0" plus one NUL' in table
    assert "EPYC-Milan (0x00a00f11)" in steps.measured[2].detail


def test_sev_disk_boot_measures_only_firmware():
    vm = make_vm(type=GuestType.SEV, policy=0x3, kernel=None, initrd=None, cmdline=None,
                 kernel_hashes=False)
    explained = explain_vm(vm)
    assert [m.step for m in explained.measured] == ["firmware"]
    assert any("boots from disk" in item for item in explained.not_in_digest)
    assert any("plain SEV" in item for item in explained.not_in_digest)


def test_kernel_without_hashes_is_flagged():
    detail = explain_vm(make_vm(kernel_hashes=False)).measured[1].detail
    assert detail.startswith("NOT MEASURED")


# ---- properties of the diff engine --------------------------------------------------------

_FLIP = {Kind.WEAKENS: Kind.STRENGTHENS, Kind.STRENGTHENS: Kind.WEAKENS,
         Kind.MEASUREMENT: Kind.MEASUREMENT, Kind.NEUTRAL: Kind.NEUTRAL}
policies = st.builds(lambda low, api: (low & 0x33) | 0x4 | api << 16,
                     st.integers(0, 0x3F), st.integers(0, 0xFFFF))
vms = st.builds(
    lambda policy, vcpus, cpus, pinned, memory: make_vm(
        policy=policy, vcpus=tuple(sorted(vcpus)), cpus=tuple(cpus), memory=memory << 30,
        firmware=artefact("firmware", "OVMF.fd", "a" * 64 if pinned else None)),
    policies, st.sets(st.integers(1, 8), min_size=1, max_size=3),
    st.lists(st.sampled_from([MILAN, ROME]), min_size=1, max_size=2, unique=True),
    st.booleans(), st.integers(1, 4))


@settings(max_examples=200, deadline=None)
@given(vms, vms, st.booleans())
def test_reverse_diff_reverses_direction(a, b, send_denied):
    # (send is held equal on both sides: with it, DOMAIN/SEV changes are direction-free)
    if send_denied:
        a = change(a, policy=Policy(a.policy.value | PolicyBit.NOSEND))
        b = change(b, policy=Policy(b.policy.value | PolicyBit.NOSEND))
    forward = {c.path: c for c in diff_vms(a, b)}
    backward = {c.path: c for c in diff_vms(b, a)}
    assert forward.keys() == backward.keys()
    for path, c in forward.items():
        r = backward[path]
        assert (r.old, r.new, r.kind, r.measured) == (c.new, c.old, _FLIP[c.kind], c.measured)
    assert not list(diff_vms(a, a))


@settings(max_examples=100, deadline=None)
@given(vms)
def test_layout_only_differences_are_invisible(vm):
    moved = dataclasses.replace(vm, origins={}, span=None)  # spans are not meaning
    assert not list(diff_vms(vm, moved))
