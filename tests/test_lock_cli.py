"""`sevm lock` and `sevm check --locked` end to end, in subprocesses over a throw-away
repository: determinism, stale locks naming what changed, and interrupted writes."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from lock_support import (FIRMWARE, KERNEL, default_sigint, read_lock, sev_snp_measure_init2,
                          sevm, stray_temp_files, variants, vm_text)
from lock_support import make_repo as _make_repo


@pytest.fixture
def vms(tmp_path):
    vms = _make_repo(tmp_path)
    (vms / "web.sevm").write_text(vm_text(vcpus="1, 2", pin_firmware=True))
    (vms / "db.sevm").write_text(vm_text("db", vcpus="4", legacy="on, off"))
    return vms


def lock(vms, *files, extra=()):
    result = sevm("lock", *extra, *(files or ("web.sevm", "db.sevm")), cwd=vms)
    assert result.returncode == 0, result.stderr
    return result


def check(vms, *files):
    return sevm("check", "--locked", *(files or ("web.sevm", "db.sevm")), cwd=vms)


def test_lock_twice_gives_identical_bytes(vms):
    first = lock(vms)
    assert "wrote web.sevm.lock" in first.stdout and "wrote db.sevm.lock" in first.stdout
    before = {p: (vms / p).read_bytes() for p in ("web.sevm.lock", "db.sevm.lock")}
    second = lock(vms, extra=("--no-cache",))
    assert "web.sevm.lock is up to date" in second.stdout
    assert {p: (vms / p).read_bytes() for p in before} == before
    (vms / "web.sevm.lock").unlink()
    lock(vms, extra=("--jobs", "1"))
    assert {p: (vms / p).read_bytes() for p in before} == before
    assert check(vms).returncode == 0


def test_check_locked_without_lock_fails(vms):
    result = check(vms, "web.sevm")
    assert result.returncode == 1
    assert "web.sevm.lock: missing lock file for web.sevm" in result.stderr
    assert "run `sevm lock web.sevm`" in result.stderr


def test_edited_pinned_artefact_fails_naming_it(vms):
    lock(vms)
    firmware = vms.parent / "images" / FIRMWARE
    data = bytearray(firmware.read_bytes())
    data[100] ^= 0x55
    firmware.write_bytes(bytes(data))
    result = check(vms, "web.sevm")
    assert result.returncode == 1, result.stderr
    assert "OVMF.synthetic-amdsev.fd" in result.stderr
    assert "pinned" in result.stderr


def test_edited_unpinned_artefact_fails_naming_it_with_both_digests(vms):
    lock(vms)
    old = read_lock(vms / "db.sevm.lock")["vms"][0]["artifacts"]["kernel"]["sha256"]
    kernel = vms.parent / "images" / KERNEL
    kernel.write_bytes(kernel.read_bytes() + b"patched")
    result = check(vms, "db.sevm")
    assert result.returncode == 1
    err = result.stderr
    assert "db.sevm.lock: vm 'db': kernel ../images/vmlinuz.synthetic changed since it was locked" \
        in err
    assert f"locked sha256 {old} (65536 bytes)" in err
    assert "now    sha256 " in err and "(65543 bytes)" in err
    assert "db.sevm:4:5" in err  # points at the kernel line of the manifest
    assert "launch digest changed" in err  # and the variants that follow from it


def test_changed_vcpus_fails_naming_the_new_variant(vms):
    lock(vms)
    (vms / "web.sevm").write_text(vm_text(vcpus="1, 2, 8", pin_firmware=True))
    result = check(vms, "web.sevm", "db.sevm")
    assert result.returncode == 1
    assert ("web.sevm.lock: vm 'web': new variant vcpus=8 cpu=EPYC-Milan vmm=qemu "
            "legacy-vm-type=on sev-features=0x0 is not in the lock") in result.stderr
    assert "db.sevm.lock" not in result.stderr  # db is still current
    lock(vms, "web.sevm")
    assert [v["vcpus"] for v in variants(read_lock(vms / "web.sevm.lock"), "web")] == [1, 2, 8]
    assert check(vms).returncode == 0


def test_unusable_lock_exits_2(vms):
    lock(vms)
    (vms / "web.sevm.lock").write_text("<<<<<<< HEAD\n")
    result = check(vms, "web.sevm")
    assert result.returncode == 2
    assert "unusable lock file" in result.stderr and "merge conflict" in result.stderr


def test_lock_of_broken_manifest_writes_nothing_for_it(vms):
    (vms / "bad.sevm").write_text('vm "bad" {\n    vcpus 0\n')
    result = sevm("lock", "bad.sevm", "web.sevm", cwd=vms)
    assert result.returncode in (1, 2)
    assert "bad.sevm:" in result.stderr
    assert not (vms / "bad.sevm.lock").exists()
    assert (vms / "web.sevm.lock").exists()


def test_lock_rejects_stdin_and_bad_jobs(vms):
    assert sevm("lock", "-", cwd=vms).returncode == 2
    assert sevm("lock", "--jobs", "0", "web.sevm", cwd=vms).returncode == 2


def test_lock_digests_equal_sevm_measure_json(vms):
    """Every digest in the lock equals what `sevm measure --format json` prints."""
    lock(vms)
    for name in ("web", "db"):
        measured = sevm("measure", f"{name}.sevm", "--format", "json", cwd=vms)
        assert measured.returncode == 0, measured.stderr
        (vm,) = json.loads(measured.stdout)["vms"]
        locked = read_lock(vms / f"{name}.sevm.lock")["vms"][0]
        for role, artefact in vm["artifacts"].items():
            assert locked["artifacts"][role]["sha256"] == artefact["sha256"]
        key = ("vcpus", "cpu", "vmm", "legacy_vm_type", "sev_features")
        want = {tuple(v[k] for k in key): v["launch_digest"] for v in vm["variants"]}
        got = {tuple(v[k] for k in key): v["launch_digest"] for v in locked["variants"]}
        assert got == want and len(got) == (2 if name == "web" else 2)
        assert all(v["cpu_signature"] == "0x00a00f11" for v in locked["variants"])
    # and, independently of sevm, the KVM_SEV_INIT2 variant as sev-snp-measure computes it
    (init2,) = [v for v in variants(read_lock(vms / "db.sevm.lock"), "db")
                if not v["legacy_vm_type"]]
    assert init2["launch_digest_base64"] == sev_snp_measure_init2(4, "EPYC-Milan", "console=ttyS0")


# -- interrupted writes ------------------------------------------------------------------

# Runs `sevm lock` with a pause at a chosen point of the atomic write (after the temporary
# file is written and synced, before the rename; or just after the rename), announcing the
# pause on stdout so the test can deliver its signal exactly there.
PAUSING_LOCK = textwrap.dedent("""
    import os, sys, time
    where = sys.argv[1]
    real = {"fsync": os.fsync, "replace": os.replace}[where]
    def pausing(*args):
        result = real(*args)
        # (the compiled-manifest cache renames its entries too; pause at the lock's rename)
        if where == "fsync" or str(args[1]).endswith(".lock"):
            print("PAUSED", flush=True)
            time.sleep(60)
        return result
    setattr(os, where, pausing)
    from sevmanifest.cli import main
    sys.exit(main(["lock", "--no-cache", *sys.argv[2:]]))
""")


def interrupted_lock(vms, where: str, sig: int) -> int:
    proc = subprocess.Popen([sys.executable, "-c", PAUSING_LOCK, where, "web.sevm"], cwd=vms,
                            preexec_fn=default_sigint,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.strip() == "PAUSED", proc.stderr.read()
        proc.send_signal(sig)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode


@pytest.fixture
def old_and_new(vms):
    """An existing lock (vcpus 1, 2) and a manifest that now says vcpus 1, 2, 4."""
    lock(vms, "web.sevm")
    old = (vms / "web.sevm.lock").read_bytes()
    (vms / "web.sevm").write_text(vm_text(vcpus="1, 2, 4", pin_firmware=True))
    return old


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGKILL])
def test_killed_before_rename_leaves_the_old_lock(vms, old_and_new, sig):
    status = interrupted_lock(vms, "fsync", sig)
    assert status != 0
    assert (vms / "web.sevm.lock").read_bytes() == old_and_new
    strays = stray_temp_files(vms)
    if sig == signal.SIGKILL:
        # nothing can clean up after SIGKILL; the leftover is hidden and never read as a lock
        assert all(p.name.startswith(".web.sevm.lock.") for p in strays)
    else:
        assert strays == [], f"temporary files left after signal {sig}: {strays}"
    result = check(vms, "web.sevm")  # the old lock is whole: it parses, and it is stale
    assert result.returncode == 1 and "new variant vcpus=4" in result.stderr


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_killed_after_rename_leaves_the_new_lock(vms, old_and_new, sig):
    interrupted_lock(vms, "replace", sig)
    new = (vms / "web.sevm.lock").read_bytes()
    assert new != old_and_new
    assert [v["vcpus"] for v in variants(read_lock(vms / "web.sevm.lock"), "web")] == [1, 2, 4]
    assert stray_temp_files(vms) == []
    assert check(vms, "web.sevm").returncode == 0


def test_killed_at_random_moments_never_leaves_a_partial_lock(vms, old_and_new):
    """Without pauses: SIGKILL at spread-out moments of real runs; the lock always parses
    and is exactly the old or the new one."""
    lock(vms, "web.sevm")
    new = (vms / "web.sevm.lock").read_bytes()
    (vms / "web.sevm.lock").write_bytes(old_and_new)
    seen = set()
    for delay in (0.1, 0.3, 0.5, 0.8, 1.2):
        proc = subprocess.Popen([sys.executable, "-m", "sevmanifest", "lock", "--no-cache",
                                 "web.sevm"], cwd=vms, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        time.sleep(delay)
        proc.kill()
        proc.wait()
        content = (vms / "web.sevm.lock").read_bytes()
        assert content in (old_and_new, new)
        seen.add(content == new)
        (vms / "web.sevm.lock").write_bytes(old_and_new)
    assert seen  # (which of old/new we saw depends on the machine's speed)
