"""Hand-edited (or forged) locks: `sevm check --locked` never takes one whose reference
values differ from what `sevm lock` writes as current, and never fails with a traceback."""
from __future__ import annotations

import pytest

from sevmanifest.diagnostics import EXIT_USAGE, exit_code
from sevmanifest.frontend import compile_text
from sevmanifest.lock.lockfile import check_locked, render_lock
from sevmanifest.measure.digest import compute_many

from lock_support import make_repo, sevm, vm_text

FORGED = "00" * 32


@pytest.fixture
def vms(tmp_path):
    return make_repo(tmp_path)


def compiled(vms, text: str, name: str = "web.sevm"):
    path = vms / name
    path.write_text(text)
    result = compile_text(text, str(path))
    assert result.ok, result.diagnostics
    return result.manifest, compute_many(list(result.manifest.vms))


def locked_text(vms, text: str = None, name: str = "web.sevm"):
    manifest, measurements = compiled(vms, text or vm_text(vcpus="1, 2"), name)
    lock = render_lock(manifest, measurements).decode()
    return manifest, measurements, lock


def unusable(vms, manifest, measurements, text: str, name: str = "web.sevm") -> str:
    (vms / (name + ".lock")).write_text(text)
    diagnostics = check_locked(manifest, measurements)
    assert exit_code(diagnostics) == EXIT_USAGE, [d.message for d in diagnostics]
    (d,) = diagnostics
    assert d.message.startswith(f"{vms}/{name}.lock: unusable lock file: ")
    return d.message


def _first_variant(lock: str) -> tuple[int, int]:
    start = lock.index("[[vms.variants]]")
    return start, lock.index("[[vms.variants]]", start + 1)


# -- bug: a duplicate table silently replaced the one before it -----------------------------

def test_duplicate_variant_with_forged_digest_is_refused(vms):
    manifest, measurements, lock = locked_text(vms)
    start, end = _first_variant(lock)
    digest = lock[start:end].split('launch_digest = "')[1][:64]
    forged = lock[start:end].replace(digest, FORGED)
    message = unusable(vms, manifest, measurements, lock[:start] + forged + lock[start:])
    assert "vm 'web' variant vcpus=1 cpu=EPYC-Milan vmm=qemu legacy-vm-type=on " \
           "sev-features=0x0 appears twice (variants[1])" in message


def test_duplicate_variant_identical_copy_is_refused_too(vms):
    manifest, measurements, lock = locked_text(vms)
    start, end = _first_variant(lock)
    message = unusable(vms, manifest, measurements, lock[:end] + lock[start:end] + lock[end:])
    assert "appears twice" in message


def test_duplicate_vm_with_forged_values_is_refused(vms):
    manifest, measurements, lock = locked_text(vms)
    vm_start = lock.index("[[vms]]")
    real = lock[vm_start:]
    forged = real.replace('policy = "0x00000007"', 'policy = "0x00000000"')
    for digest in {part[:64] for part in real.split('launch_digest = "')[1:]}:
        forged = forged.replace(digest, FORGED)
    assert forged != real
    message = unusable(vms, manifest, measurements, lock[:vm_start] + forged + "\n" + real)
    assert "vm 'web' appears twice (vms[1])" in message


def test_duplicate_variant_exits_2_from_the_cli(vms):
    (vms / "web.sevm").write_text(vm_text(vcpus="1, 2"))
    assert sevm("lock", "web.sevm", cwd=vms).returncode == 0
    lock = (vms / "web.sevm.lock").read_text()
    start, end = _first_variant(lock)
    digest = lock[start:end].split('launch_digest = "')[1][:64]
    (vms / "web.sevm.lock").write_text(lock[:start] + lock[start:end].replace(digest, FORGED)
                                       + lock[start:])
    for extra in ((), ("--no-cache",)):
        result = sevm("check", "--locked", *extra, "web.sevm", cwd=vms)
        assert result.returncode == 2, result.stderr
        assert "appears twice" in result.stderr
