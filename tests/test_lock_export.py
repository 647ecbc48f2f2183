"""`sevm export --format json|toml|simple-kbs`."""
from __future__ import annotations

import base64
import json
import tomllib

import pytest

from lock_support import (REPO, make_repo, read_lock, sev_snp_measure_init2, sevm,
                          stray_temp_files, vm_text)

DB = REPO / "manifests" / "repo-example" / "guests" / "db.sevm"


@pytest.fixture
def vms(tmp_path):
    vms = make_repo(tmp_path)
    (vms / "two.sevm").write_text(vm_text("strict", vcpus="1, 2") +
                                  vm_text("lax", vcpus="1", policy="debug allow"))
    (vms / "same.sevm").write_text(vm_text("a", vcpus="1, 2") + vm_text("b", vcpus="2, 4"))
    return vms


def export(*args, cwd, ok=True):
    result = sevm("export", *args, cwd=cwd)
    if ok:
        assert result.returncode == 0, result.stderr
    return result


def test_json_and_toml_carry_the_lock_document(vms):
    assert sevm("lock", "two.sevm", cwd=vms).returncode == 0
    locked = read_lock(vms / "two.sevm.lock")
    as_json = json.loads(export("two.sevm", "--format", "json", cwd=vms).stdout)
    as_toml = tomllib.loads(export("two.sevm", "--format", "toml", cwd=vms).stdout)
    assert as_json == as_toml
    assert (as_json["format"], as_json["version"]) == ("sevmanifest-reference-values", 1)
    del as_json["format"], as_json["version"], locked["lock_version"]
    assert as_json == locked
    assert [vm["name"] for vm in as_json["vms"]] == ["lax", "strict"]


def test_vm_selection_and_output_file(vms):
    out = vms / "ref.json"
    result = export("two.sevm", "--vm", "strict", "--format", "json", "-o", str(out), cwd=vms)
    assert result.stdout == ""
    doc = json.loads(out.read_text())
    assert [vm["name"] for vm in doc["vms"]] == ["strict"]
    assert stray_temp_files(vms) == []
    missing = export("two.sevm", "--vm", "nope", cwd=vms, ok=False)
    assert missing.returncode == 2 and "no vm named 'nope'" in missing.stderr


def test_simple_kbs_policy(vms):
    doc = json.loads(export("two.sevm", "--vm", "strict", "--format", "simple-kbs",
                            "--build-id", "21", "--build-id", "0x10", "--build-id", "21",
                            cwd=vms).stdout)
    assert list(doc) == ["allowed_digests", "allowed_policies", "min_fw_api_major",
                         "min_fw_api_minor", "allowed_build_ids"]
    full = json.loads(export("two.sevm", "--vm", "strict", "--format", "json", cwd=vms).stdout)
    expected = sorted(v["launch_digest_base64"] for v in full["vms"][0]["variants"])
    assert doc["allowed_digests"] == expected and len(expected) == 2
    assert all(len(base64.b64decode(d, validate=True)) == 32 for d in doc["allowed_digests"])
    assert doc["allowed_policies"] == [0x7]
    assert (doc["min_fw_api_major"], doc["min_fw_api_minor"]) == (0, 0)
    assert doc["allowed_build_ids"] == [16, 21]


def test_simple_kbs_unions_vms_that_share_a_policy(vms):
    doc = json.loads(export("same.sevm", "--format", "simple-kbs", cwd=vms).stdout)
    assert len(doc["allowed_digests"]) == 3  # a: 1, 2; b: 2, 4 — the same images, so vcpus=2 once
    assert doc["allowed_build_ids"] == []


def test_simple_kbs_refuses_mixed_policies(vms):
    result = export("two.sevm", "--format", "simple-kbs", cwd=vms, ok=False)
    assert result.returncode == 2
    assert "different policies" in result.stderr and "--vm" in result.stderr
    assert "strict (0x00000007)" in result.stderr and "lax (0x00000006)" in result.stderr


def test_simple_kbs_min_api_and_independent_digest():
    """The example db vm: min-api 1.49 in the policy, and its KVM_SEV_INIT2 variant's digest
    as sev-snp-measure 0.0.13 computes it."""
    doc = json.loads(export(str(DB), "--vm", "db", "--format", "simple-kbs", cwd=REPO).stdout)
    assert (doc["min_fw_api_major"], doc["min_fw_api_minor"]) == (1, 49)
    assert doc["allowed_policies"] == [0x3101000F]
    init2 = sev_snp_measure_init2(8, "EPYC-Milan", "console=ttyS0 root=/dev/vda1 ro quiet")
    assert init2 in doc["allowed_digests"] and len(doc["allowed_digests"]) == 2


@pytest.mark.parametrize("args, message", [
    (("--format", "simple-kbs", "--vm", "strict", "--build-id", "256"), "256 is not in 0..255"),
    (("--format", "simple-kbs", "--vm", "strict", "--build-id", "x"), "not an integer"),
    (("--format", "json", "--build-id", "3"), "only applies to --format simple-kbs"),
    (("--format", "yaml"), "invalid choice"),
])
def test_bad_options(vms, args, message):
    result = export("two.sevm", *args, cwd=vms, ok=False)
    assert result.returncode == 2
    assert message in result.stderr
