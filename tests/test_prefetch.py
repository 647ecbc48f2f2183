"""`sevm measure` reads the firmware while the kernel and initrd are still being hashed
(lock.shared.Prefetch, measure.hashing's job order): the firmware's hash state is needed,
not its digest, so no cache can spare reading it, and it need not wait."""
from __future__ import annotations

import hashlib
import threading

from sevmanifest.commands.common import load_manifest
from sevmanifest.lock import shared
from sevmanifest.measure import hashing
from sevmanifest.measure.digest import compute_many

from lock_support import IMAGES, vm_text


def _sizes_streamed(monkeypatch) -> list[int]:
    streamed: list[int] = []
    real = hashing.stream_into

    def recording(fd, state, *, size):
        streamed.append(size)
        return real(fd, state, size=size)
    monkeypatch.setattr(hashing, "stream_into", recording)
    return streamed


def test_the_firmware_is_read_while_the_prefetch_still_hashes(tmp_path, monkeypatch):
    (tmp_path / "m.sevm").write_text(vm_text(images=str(IMAGES)))
    vm = load_manifest(str(tmp_path / "m.sevm")).vms[0]
    release, real_hash_known = threading.Event(), shared.hash_known
    monkeypatch.setattr(shared, "hash_known", lambda artefacts, disk: (
        release.wait(60), real_hash_known(artefacts, disk))[1])
    streamed = _sizes_streamed(monkeypatch)
    prefetch = shared.Prefetch([vm.kernel, vm.initrd])
    outcome: list = []
    measuring = threading.Thread(target=lambda: outcome.append(
        compute_many([vm], cache=prefetch.digests())))
    measuring.start()
    firmware_size = vm.firmware.path.stat().st_size
    for _ in range(600):  # the firmware is streamed before the prefetch is released
        if streamed:
            break
        measuring.join(0.1)
    assert streamed == [firmware_size] and measuring.is_alive()
    release.set()
    measuring.join(60)
    digests = outcome[0][0].artefact_digests
    for artefact in (vm.firmware, vm.kernel, vm.initrd):
        assert digests[artefact.role] == hashlib.sha256(artefact.path.read_bytes()).hexdigest()
    # the kernel and initrd were the prefetch's (streamed there, through hash_known)
    assert sorted(streamed) == sorted([firmware_size, vm.kernel.path.stat().st_size,
                                       vm.initrd.path.stat().st_size])


def test_files_whose_state_is_kept_come_first_then_the_largest(tmp_path):
    from sevmanifest.model import Artefact
    files = {"small": 1, "large": 3, "state": 2, "middle": 2}
    for name, size in files.items():
        (tmp_path / name).write_bytes(b"x" * size * 4096)
    jobs = {tmp_path / name: hashing.HashJob(Artefact("kernel", name, tmp_path / name),
                                             keep_state=name == "state") for name in files}
    order = [path.name for path, _ in hashing._hashing_order(jobs)]
    assert order == ["state", "large", "middle", "small"]


def test_measure_leaves_no_hashing_behind_when_it_fails_early(tmp_path, monkeypatch):
    """A firmware refused before any digest is looked up: the command still returns only
    once its prefetch is done, so nothing hashes or writes the digest cache afterwards."""
    import contextlib
    import io

    from sevmanifest.cli import main
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    release, real_hash_known = threading.Event(), shared.hash_known
    monkeypatch.setattr(shared, "hash_known", lambda artefacts, disk: (
        release.wait(0.5), real_hash_known(artefacts, disk))[1])
    text = vm_text(images=str(IMAGES)).replace("OVMF.synthetic-amdsev.fd",
                                                "OVMF.synthetic-generic.fd")
    (tmp_path / "m.sevm").write_text(text)  # kernel-hashes on, but no hash-table area
    with contextlib.redirect_stderr(io.StringIO()) as err:
        status = main(["measure", str(tmp_path / "m.sevm")])
    assert status != 0 and "hash" in err.getvalue()
    assert not [t.name for t in threading.enumerate() if t.name.startswith("sevm-")]
