"""`verify` accepts the right blob and rejects every single-bit flip of what enters the
HMAC: measurement (256 bits), mnonce (128), TIK (128), policy (32), API major/minor and
build (8 each) -- exhaustively, on each sevctl vector M-1..M-4 -- and of each measured
input: kernel, initrd and cmdline bytes (exhaustive), firmware bytes (sampled, with the
footer table covered densely), the vCPU count and the CPU signature."""
from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import pytest

from sevmanifest.diagnostics import DiagnosticError
from sevmanifest.measure.digest import compute
from sevmanifest.measure.verify import MATCH, Reported, verify
from verify_support import (M_CMDLINE, SC, SI, SK, TIK_HEX, flip_bit, injected, m_vector_vm,
                            make_vm, M_VECTORS)
from test_verify_vectors import measured, reported_for

TIK = bytes.fromhex(TIK_HEX)
VECTORS = ["M-1", "M-2", "M-3", "M-4"]
SEED = 20240601


def rejected(measurements, reported: Reported, tik: bytes = TIK) -> bool:
    return verify(measurements, reported, tik).status != MATCH


@pytest.fixture(scope="module")
def measurements():
    return {vid: [measured(vid)] for vid in VECTORS}


@pytest.mark.parametrize("vid", VECTORS)
def test_right_blob_accepted(measurements, vid):
    assert verify(measurements[vid], reported_for(vid), TIK).ok


@pytest.mark.parametrize("vid", VECTORS)
def test_every_measurement_and_mnonce_bit(measurements, vid):
    blob = M_VECTORS[vid].blob
    bad = [bit for bit in range(48 * 8)
           if not rejected(measurements[vid], reported_for(vid, blob=flip_bit(blob, bit)))]
    assert bad == []


@pytest.mark.parametrize("vid", VECTORS)
def test_every_tik_bit(measurements, vid):
    reported = reported_for(vid)
    bad = [bit for bit in range(128) if not rejected(measurements[vid], reported, flip_bit(TIK, bit))]
    assert bad == []


@pytest.mark.parametrize("vid", VECTORS)
@pytest.mark.parametrize("field, bits", [("policy", 32), ("api_major", 8), ("api_minor", 8),
                                         ("build", 8)])
def test_every_platform_bit(measurements, vid, field, bits):
    reported = reported_for(vid)
    value = getattr(reported, field)
    bad = [bit for bit in range(bits)
           if not rejected(measurements[vid],
                           dataclasses.replace(reported, **{field: value ^ (1 << bit)}))]
    assert bad == []


@pytest.mark.parametrize("vid", VECTORS)
def test_every_manifest_policy_bit(measurements, vid):
    # the manifest's policy flipped, the host's as reported (the HMAC still matches)
    vm = measurements[vid][0].vm
    reported = reported_for(vid)
    for bit in range(32):
        flipped = dataclasses.replace(vm, policy=dataclasses.replace(vm.policy,
                                                                      value=vm.policy.value ^ (1 << bit)))
        m = injected(flipped, measurements[vid][0].variants[0].launch_digest)
        result = verify([m], reported, TIK)
        assert result.status == "policy-mismatch", bit
        assert result.policy_only and result.policy_mismatches


def test_m1_every_launch_digest_bit():
    ld = bytes.fromhex(M_VECTORS["M-1"].launch_digest)
    vm = make_vm(name="m1", policy=0x3)
    bad = [bit for bit in range(256)
           if not rejected([injected(vm, flip_bit(ld, bit))], reported_for("M-1"))]
    assert bad == []


# ---- measured inputs -----------------------------------------------------------------------

def _flipped_copy(tmp_path: Path, source: Path, bit: int) -> Path:
    target = tmp_path / f"{source.name}.{bit}"
    target.write_bytes(flip_bit(source.read_bytes(), bit))
    return target


def _rejects_vm(vm, vid: str) -> bool:
    """A changed input must not verify: a clean error (e.g. a broken footer) also counts."""
    try:
        m = compute(vm)
    except DiagnosticError:
        return True
    return rejected([m], reported_for(vid))


@pytest.mark.parametrize("role, source", [("kernel", SK), ("initrd", SI)])
def test_every_kernel_and_initrd_bit(tmp_path, role, source):
    base = m_vector_vm("M-3")
    bad = []
    for bit in range(source.stat().st_size * 8):
        path = _flipped_copy(tmp_path, source, bit)
        artefact = dataclasses.replace(getattr(base, role), path=path, written=str(path))
        if not _rejects_vm(dataclasses.replace(base, **{role: artefact}), "M-3"):
            bad.append(bit)
    assert bad == []


def test_every_cmdline_bit():
    base = m_vector_vm("M-3")
    bad = [bit for bit in range(len(M_CMDLINE) * 8)
           if not _rejects_vm(dataclasses.replace(base, cmdline=flip_bit(M_CMDLINE, bit)), "M-3")]
    assert bad == []
    # one byte more or less, and the trailing newline that scraping tools add
    for cmdline in (M_CMDLINE + b"\n", M_CMDLINE + b" ", M_CMDLINE[:-1], b"", None):
        assert _rejects_vm(dataclasses.replace(base, cmdline=cmdline), "M-3"), cmdline


def _firmware_bits(size: int, rng: random.Random) -> list[int]:
    """Sampled bits over the whole image, plus every 7th bit of the last 256 bytes
    (footer GUID table, reset block, reset vector)."""
    sampled = rng.sample(range(size * 8), 160)
    tail = list(range((size - 256) * 8, size * 8, 7))
    return sorted(set(sampled + tail))


@pytest.mark.parametrize("vid", ["M-2", "M-3", "M-4"])
def test_sampled_firmware_bits(tmp_path, vid):
    base = m_vector_vm(vid)
    rng = random.Random(SEED + VECTORS.index(vid))
    bad = []
    for bit in _firmware_bits(SC.stat().st_size, rng):
        path = _flipped_copy(tmp_path, SC, bit)
        firmware = dataclasses.replace(base.firmware, path=path, written=str(path))
        if not _rejects_vm(dataclasses.replace(base, firmware=firmware), vid):
            bad.append(bit)
    assert bad == []


def test_every_vcpu_count_bit():
    base = m_vector_vm("M-4")  # 4 vCPUs
    bad = [bit for bit in range(8)
           if not _rejects_vm(dataclasses.replace(base, vcpus=(4 ^ (1 << bit),)), "M-4")]
    assert bad == []


def test_every_cpu_signature_bit():
    base = m_vector_vm("M-4")
    (cpu,) = base.cpus
    bad = []
    for bit in range(28):  # EAX bits 28-31 are reserved
        other = dataclasses.replace(cpu, signature=cpu.signature ^ (1 << bit), name=None)
        if not _rejects_vm(dataclasses.replace(base, cpus=(other,)), "M-4"):
            bad.append(bit)
    assert bad == []


@pytest.mark.parametrize("change", [
    dict(legacy=(False,)), dict(sev_features=(0x20,)), dict(vmms=("ec2",)), dict(vmms=("gce",)),
    dict(kernel=SK, kernel_hashes=True)])
def test_host_profile_and_boot_changes(change):
    args = dict(name="m4", type="sev-es", policy=0x5, vcpus=(4,), cpus=m_vector_vm("M-4").cpus)
    assert _rejects_vm(make_vm(**{**args, **change}), "M-4")


def test_sev_vcpu_count_is_not_measured():
    # documents the other side: for plain SEV the vCPU count does not enter the digest
    vm = dataclasses.replace(m_vector_vm("M-3"), vcpus=(7,))
    assert verify([compute(vm)], reported_for("M-3"), TIK).ok
