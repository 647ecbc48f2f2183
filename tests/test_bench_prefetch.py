"""`sevm measure` hashes the kernel and initrd in a child process while it starts up
(measure/prefetch.py).  The result must be exactly what reading the files afterwards gives,
and a file that changed meanwhile must be read again."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time

import pytest

from sevmanifest.commands.common import load_manifest
from sevmanifest.measure import digest, hashing
from sevmanifest.measure.prefetch import Prefetch, start_prefetch
from sevmanifest.synthetic import FirmwareSpec, write_blob, write_firmware

MANIFEST = """\
vm "guest" {{
    type sev-es
    firmware "fw.fd"
    kernel {kernel}
    initrd "boot/initrd.img"
    cmdline "console=ttyS0"
    kernel-hashes on
    vcpus 2
    cpu "EPYC-Milan"
    policy {{
        key-sharing deny
    }}
}}
"""


@pytest.fixture
def guest(tmp_path):
    write_firmware(tmp_path / "fw.fd", FirmwareSpec(seed=21))
    (tmp_path / "boot").mkdir()
    write_blob(tmp_path / "vmlinuz", 3 << 20, seed=22)
    write_blob(tmp_path / "boot" / "initrd.img", 5 << 20, seed=23)
    path = tmp_path / "guest.sevm"
    path.write_text(MANIFEST.format(kernel='"vmlinuz"'))
    return path


@pytest.fixture
def reads(monkeypatch):
    """Files the main process reads itself (not taken from the prefetch)."""
    seen = []
    real = hashing._read_all

    def counting(fd, st, path, what, span):
        seen.append(os.path.basename(path))
        return real(fd, st, path, what, span)
    monkeypatch.setattr(hashing, "_read_all", counting)
    return seen


def _measure(path, prefetch=None):
    vms = load_manifest(str(path), quiet_warnings=True).vms
    try:
        return digest.compute_many(vms, prefetch=prefetch)
    finally:
        if prefetch is not None:
            prefetch.close()


def _sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_prefetched_digests_equal_reading(guest, reads):
    plain = _measure(guest)
    assert sorted(reads) == ["fw.fd", "initrd.img", "vmlinuz"]
    reads.clear()
    fetched = _measure(guest, start_prefetch(str(guest)))
    assert reads == ["fw.fd"]  # the firmware state is always read here; the rest came prefetched
    assert fetched[0].artefact_digests == plain[0].artefact_digests
    assert [v.launch_digest for v in fetched[0].variants] == \
        [v.launch_digest for v in plain[0].variants]
    assert plain[0].artefact_digests["kernel"] == _sha256(guest.parent / "vmlinuz")


def test_a_file_changed_after_prefetch_is_read_again(guest, reads):
    prefetch = start_prefetch(str(guest))
    prefetch.take(guest.parent / "vmlinuz", os.stat(guest.parent / "vmlinuz"))  # wait for it
    kernel = guest.parent / "vmlinuz"
    data = bytearray(kernel.read_bytes())
    data[12345] ^= 0xFF  # same size; the write gives it a new mtime/ctime
    time.sleep(0.05)  # past the coarsest timestamp tick (10 ms at HZ=100)
    with open(kernel, "r+b") as handle:
        handle.write(data)
    result = _measure(guest, prefetch)
    assert "vmlinuz" in reads
    assert result[0].artefact_digests["kernel"] == hashlib.sha256(data).hexdigest()


def test_identity_must_match_exactly(guest):
    prefetch = start_prefetch(str(guest))
    try:
        kernel = guest.parent / "vmlinuz"
        st = os.stat(kernel)
        assert prefetch.take(kernel, st) == _sha256(kernel)
        os.utime(kernel, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
        assert prefetch.take(kernel, os.stat(kernel)) is None
        assert prefetch.take(guest.parent / "fw.fd", os.stat(guest.parent / "fw.fd")) is None
    finally:
        prefetch.close()


def test_scan_finds_literal_paths_only(tmp_path, guest):
    escaped = tmp_path / "escaped.sevm"
    escaped.write_text(MANIFEST.format(kernel='"vm\\x6cinuz"'))  # "vmlinuz" with an escape
    prefetch = start_prefetch(str(escaped))
    try:
        assert prefetch._wanted == {os.path.realpath(guest.parent / "boot" / "initrd.img")}
    finally:
        prefetch.close()
    commented = tmp_path / "commented.sevm"
    commented.write_text('# kernel "vmlinuz"\nvm "x" {\n    firmware "fw.fd"\n}\n')
    assert start_prefetch(str(commented)) is None
    assert start_prefetch("-") is None
    assert start_prefetch(str(tmp_path / "missing.sevm")) is None


def test_a_pipe_is_never_read_by_the_scan(tmp_path):
    fifo = tmp_path / "manifest.fifo"
    os.mkfifo(fifo)
    assert start_prefetch(str(fifo)) is None  # returns at once: no writer needed


def test_missing_and_odd_files_are_left_to_the_real_read(tmp_path):
    (tmp_path / "dir").mkdir()
    prefetch = Prefetch([str(tmp_path / "absent"), str(tmp_path / "dir"), "/dev/zero"])
    try:
        st = os.stat(tmp_path / "dir")
        assert prefetch.take(tmp_path / "dir", st) is None
        assert prefetch.take("/dev/zero", os.stat("/dev/zero")) is None
    finally:
        prefetch.close()


def test_close_reaps_the_child_even_unused(guest):
    prefetch = start_prefetch(str(guest))
    pid = prefetch._pid
    prefetch.close()
    prefetch.close()  # idempotent
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def test_cli_measure_output_unchanged_by_prefetch(guest, tmp_path):
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"))
    argv = [sys.executable, "-m", "sevmanifest", "measure", "--no-cache", "--format", "json"]
    through_file = subprocess.run(argv + [str(guest)], env=env, capture_output=True, text=True)
    through_stdin = subprocess.run(argv + ["-"], env=env, capture_output=True, text=True,
                                   input=guest.read_text(), cwd=guest.parent)
    assert through_file.returncode == 0, through_file.stderr
    assert through_stdin.returncode == 0, through_stdin.stderr
    first, second = json.loads(through_file.stdout), json.loads(through_stdin.stdout)
    assert [v["launch_digest"] for v in first["vms"][0]["variants"]] == \
        [v["launch_digest"] for v in second["vms"][0]["variants"]]
