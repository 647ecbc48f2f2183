"""`measure.verify.verify` on the sevctl vectors M-1..M-4 (vectors README §4.1), on policy
mismatches, and the redaction of the TIK."""
from __future__ import annotations

import pickle

import pytest

from sevmanifest.measure.digest import compute
from sevmanifest.measure.verify import (MATCH, MISMATCH, POLICY_MISMATCH, Reported, Tik,
                                        compare_policies, verify)
from sevmanifest.measure.verify_report import to_json, to_text
from verify_support import (M_VECTORS, STIK, TIK_HEX, injected, m_vector_vm, make_vm)

TIK = bytes.fromhex(TIK_HEX)


def reported_for(vector_id: str, *, policy="vector", blob=None) -> Reported:
    v = M_VECTORS[vector_id]
    return Reported.from_blob(blob or v.blob, api_major=v.api_major, api_minor=v.api_minor,
                              build=v.build, policy=v.policy if policy == "vector" else policy)


def measured(vector_id: str, vm=None):
    if vector_id == "M-1":
        return injected(vm or make_vm(name="m1", policy=0x3),
                        bytes.fromhex(M_VECTORS["M-1"].launch_digest))
    return compute(vm or m_vector_vm(vector_id))


def test_stik_fixture_is_the_documented_key():
    assert STIK.read_bytes() == TIK


@pytest.mark.parametrize("vector_id", ["M-1", "M-2", "M-3", "M-4"])
@pytest.mark.parametrize("policy", ["vector", None])
def test_vectors_verify(vector_id, policy):
    result = verify([measured(vector_id)], reported_for(vector_id, policy=policy), TIK)
    assert result.status == MATCH and result.ok
    assert len(result.matches) == 1 and not result.policy_mismatches and not result.hints
    assert result.variants_checked == 1


def test_m4_reports_the_matching_variant():
    vm = make_vm(name="m4", type="sev-es", policy=0x5, vcpus=(1, 2, 4, 8),
                 cpus=m_vector_vm("M-4").cpus, legacy=(False, True), sev_features=(0, 0x20))
    result = verify([compute(vm)], reported_for("M-4"), Tik(TIK))
    assert result.ok and result.variants_checked == 16
    (match,) = result.matches
    v = match.digest.variant
    assert (v.vcpus, v.cpu.name, v.vmm.value, v.legacy_vm_type, v.sev_features) == (
        4, "EPYC-Milan", "qemu", True, 0)
    assert match.digest.cpu_signature == 0x00A00F11
    out = to_json(result)["matched"][0]
    assert out["cpu_signature"] == "0x00a00f11" and out["legacy_vm_type"] is True
    assert out["launch_digest"] == "847b5ab6db136ea67dc5a95478ebe7e5ebbe93e9e74bdb1284165f9007a4e367"
    text = to_text(result)
    assert text.startswith("OK:") and "vcpus 4, cpu EPYC-Milan (signature 0x00a00f11)" in text


def test_every_vm_and_variant_is_compared_without_early_exit(monkeypatch):
    import hmac as hmac_module
    calls = []
    real = hmac_module.compare_digest
    monkeypatch.setattr("sevmanifest.measure.verify.hmac.compare_digest",
                        lambda a, b: calls.append(1) or real(a, b))
    vm4 = make_vm(name="m4", type="sev-es", policy=0x5, vcpus=(4, 1, 2),
                  cpus=m_vector_vm("M-4").cpus)
    # the match is the first variant compared: the other five are compared all the same
    result = verify([compute(vm4), measured("M-2")], reported_for("M-4"), TIK)
    assert result.ok and len(calls) == result.variants_checked == 4


def test_sev_matches_every_vcpu_variant():
    vm = make_vm(name="m2", policy=0x3, vcpus=(1, 2, 4))
    result = verify([compute(vm)], reported_for("M-2"), TIK)
    assert result.ok and len(result.matches) == 3
    assert "any of 3" in to_text(result)


def test_weaker_reported_policy_fails_even_though_the_hmac_matches():
    # The host launched with 0x3 and says so; the HMAC matches over 0x3, but the
    # manifest requires 0x23 (send-to-non-sev deny) and min-api 1.40.
    vm = make_vm(name="strict", policy=0x2801_0023)
    result = verify([measured("M-2", vm)], reported_for("M-2"), TIK)
    assert result.status == POLICY_MISMATCH and not result.ok and not result.matches
    assert len(result.policy_only) == 1
    (pm,) = result.policy_mismatches
    assert pm.weakens
    fields = {d.what: d for d in pm.differences}
    assert fields["bit 5 SEV (send-to-non-sev deny)"].weakens
    assert fields["min-api (bits 16-31)"].manifest == "1.40"
    assert fields["min-api (bits 16-31)"].reported == "0.0"
    text = to_text(result)
    assert text.startswith("POLICY MISMATCH") and "weaker than the manifest's 0x28010023" in text
    assert "bit 5 SEV (send-to-non-sev deny): manifest set, host clear (weaker)" in text
    assert to_json(result)["policy_mismatches"][0]["measurement_matches"] is True


def test_stronger_reported_policy_is_a_difference_too():
    vm = make_vm(name="lax", policy=0x1)
    result = verify([measured("M-2", vm)], reported_for("M-2"), TIK)
    assert result.status == POLICY_MISMATCH
    (pm,) = result.policy_mismatches
    assert not pm.weakens and [d.what for d in pm.differences] == ["bit 1 NOKS (key-sharing deny)"]


def test_one_of_several_vms_with_the_reported_policy_matches():
    result = verify([measured("M-2", make_vm(name="other", policy=0x1)), measured("M-2")],
                    reported_for("M-2"), TIK)
    assert result.ok and [m.vm.name for m in result.matches] == ["m2"]
    assert [p.vm.name for p in result.policy_mismatches] == ["other"]


@pytest.mark.parametrize("manifest, reported, expected", [
    (0x5, 0x1, ["bit 2 ES (SEV-ES required)"]),
    (0x1, 0x0, ["bit 0 NODBG (debug deny)"]),
    (0x8, 0x0, ["bit 3 NOSEND (send deny)"]),
    (0x10, 0x0, ["bit 4 DOMAIN (send-outside-domain deny)"]),
    (0x0, 0x40, ["bit 6 (reserved)"]),
    (0x0, 0x8000, ["bit 15 (reserved)"]),
    (0x0018_0000, 0x0017_0000, ["min-api (bits 16-31)"]),
])
def test_policy_differences(manifest, reported, expected):
    pm = compare_policies(make_vm(), manifest, reported)
    assert [d.what for d in pm.differences] == expected
    assert pm.weakens == (manifest > reported and "reserved" not in expected[0])


def test_mismatch_lists_what_to_check():
    vm = m_vector_vm("M-3")
    result = verify([compute(vm)], reported_for("M-2"), TIK)
    assert result.status == MISMATCH and not result.matches
    text = "\n".join(result.hints)
    for needle in ("API 1.40 build 40", "TIK", "firmware", "sha256 2f6fc606", "kernel-hashes=on",
                   '"foo bar baz fake kernel=cmdline" (31 bytes'):
        assert needle in text, needle
    es = verify([compute(m_vector_vm("M-4"))], reported_for("M-3"), TIK)
    hints = "\n".join(es.hints)
    assert "-smp must be one of 4" in hints and "EPYC-Milan" in hints
    assert "legacy-vm-type on" in hints and "sev-features 0x0" in hints
    unreported = verify([compute(vm)], reported_for("M-2", policy=None), TIK)
    assert any("policy: not reported" in h for h in unreported.hints)


def test_tik_is_redacted():
    tik = Tik(TIK)
    for shown in (repr(tik), str(tik), f"{tik}", repr([tik])):
        assert TIK_HEX not in shown and "redacted" in shown
    with pytest.raises(TypeError):
        pickle.dumps(tik)
    with pytest.raises(ValueError) as info:
        Tik(TIK + b"\0")
    assert TIK_HEX not in str(info.value)
    result = verify([measured("M-1")], reported_for("M-1"), tik)
    everything = repr(result) + to_text(result) + repr(to_json(result))
    assert TIK_HEX not in everything and TIK_HEX not in everything.upper()


def test_reported_validates_sizes():
    with pytest.raises(ValueError):
        Reported.from_blob(b"\0" * 47, api_major=1, api_minor=0, build=0, policy=None)
    with pytest.raises(ValueError):
        Reported(b"\0" * 32, b"\0" * 16, 256, 0, 0, None)
    with pytest.raises(ValueError):
        Reported(b"\0" * 32, b"\0" * 16, 1, 0, 0, 1 << 32)
