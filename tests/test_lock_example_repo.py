"""The shipped example repository (manifests/repo-example): its committed locks are current,
reproducible from any directory, and agree with an independent implementation."""
from __future__ import annotations

import shutil
from pathlib import Path

from lock_support import REPO, read_lock, sev_snp_measure_init2, sevm

EXAMPLE = REPO / "manifests" / "repo-example"
GUESTS = sorted((EXAMPLE / "guests").glob("*.sevm"))


def test_every_guest_has_a_committed_lock():
    assert [g.name for g in GUESTS] == ["build-runner.sevm", "db.sevm", "web.sevm"]
    for guest in GUESTS:
        assert Path(f"{guest}.lock").is_file()


def test_ci_command_passes():
    """Exactly what CI runs: sevm check --locked manifests/repo-example/guests/*.sevm"""
    files = [str(g.relative_to(REPO)) for g in GUESTS]
    result = sevm("check", "--locked", *files, cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr


def test_relocking_a_copy_reproduces_the_committed_bytes(tmp_path):
    """Lock bytes depend on neither the working directory nor the checkout location."""
    copy = tmp_path / "manifests"
    shutil.copytree(EXAMPLE, copy / "repo-example")
    shutil.copytree(REPO / "manifests" / "images", copy / "images")
    for lock in (copy / "repo-example" / "guests").glob("*.lock"):
        lock.unlink()
    result = sevm("lock", "--no-cache", *(g.name for g in GUESTS),
                  cwd=copy / "repo-example" / "guests")
    assert result.returncode == 0, result.stderr
    for guest in GUESTS:
        fresh = copy / "repo-example" / "guests" / f"{guest.name}.lock"
        assert fresh.read_bytes() == Path(f"{guest}.lock").read_bytes(), guest.name


def test_stale_example_is_caught(tmp_path):
    copy = tmp_path / "manifests"
    shutil.copytree(EXAMPLE, copy / "repo-example")
    shutil.copytree(REPO / "manifests" / "images", copy / "images")
    web = copy / "repo-example" / "guests" / "web.sevm"
    web.write_text(web.read_text().replace('cmdline "console=ttyS0', 'cmdline "console=ttyS1'))
    result = sevm("check", "--locked", "repo-example/guests/web.sevm", cwd=copy)
    assert result.returncode == 1
    assert result.stderr.count("launch digest changed") == 6
    assert "repo-example/guests/web.sevm.lock is stale" in result.stderr


def test_init2_variant_matches_sev_snp_measure():
    """sev-snp-measure 0.0.13 models the KVM_SEV_INIT2 profile (legacy-vm-type off): its
    launch digest for the db vm must be the one committed in db.sevm.lock."""
    expected = sev_snp_measure_init2(8, "EPYC-Milan", "console=ttyS0 root=/dev/vda1 ro quiet")
    lock = read_lock(EXAMPLE / "guests" / "db.sevm.lock")
    db = next(vm for vm in lock["vms"] if vm["name"] == "db")
    (init2,) = [v for v in db["variants"] if not v["legacy_vm_type"]]
    assert init2["launch_digest_base64"] == expected
    assert bytes.fromhex(init2["launch_digest"]).hex() == init2["launch_digest"]
