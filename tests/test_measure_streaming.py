"""Streaming and sharing (issue 3 item 7): bounded reads, each distinct file hashed once per
run, in worker threads, and the launch-digest prefix (firmware ‖ table) reused by every
variant instead of rehashed."""
from __future__ import annotations

import hashlib
import mmap
import os
import resource
import threading
import types

import pytest

from measure_support import FIXTURES, make_vm
from sevmanifest.diagnostics import DiagnosticError
from sevmanifest.measure import digest, hashing
from sevmanifest.measure.stream import CHUNK_SIZE
from sevmanifest.synthetic import FirmwareSpec, write_blob, write_firmware


@pytest.fixture
def images(tmp_path):
    fw = write_firmware(tmp_path / "fw.fd", FirmwareSpec(size=256 << 10, seed=7))
    kernel = write_blob(tmp_path / "vmlinuz", 3 * CHUNK_SIZE + 123, seed=8)
    initrd = write_blob(tmp_path / "initrd", 2 * CHUNK_SIZE, seed=9)
    return fw, kernel, initrd


def test_reads_are_bounded(images, monkeypatch):
    sizes = []
    real_readv = os.readv

    def readv(fd, buffers):
        sizes.append(sum(len(b) for b in buffers))
        return real_readv(fd, buffers)
    monkeypatch.setattr(hashing.os, "readv", readv)
    fw, kernel, initrd = images
    result = digest.compute(make_vm(fw, kernel=kernel, initrd=initrd))
    assert max(sizes) <= CHUNK_SIZE
    assert len(sizes) >= 4 + 3 + 1  # kernel alone needs 4 chunks and an EOF read
    assert result.artefact_digests["kernel"] == hashlib.sha256(kernel.read_bytes()).hexdigest()


def test_the_buffer_is_a_sixteenth_of_the_file_within_bounds():
    from sevmanifest.measure.stream import MIN_CHUNK_SIZE, chunk_size_for
    assert chunk_size_for(0) == chunk_size_for(4 << 20) == MIN_CHUNK_SIZE  # the firmware
    assert chunk_size_for(16 << 20) == 1 << 20  # a kernel
    assert chunk_size_for(128 << 20) == chunk_size_for(4 << 30) == CHUNK_SIZE  # an initrd
    sizes = [chunk_size_for(n) for n in range(0, 80 << 20, 999_983)]
    assert sizes == sorted(sizes) and all(s % mmap.PAGESIZE == 0 for s in sizes)


def test_sparse_large_file_in_bounded_memory(tmp_path):
    big = tmp_path / "big.img"
    size = 256 << 20
    with open(big, "wb") as handle:
        handle.truncate(size)  # sparse: no disk space, reads return zeros
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    got = hashing.hash_file(big, what="initrd")
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    expected = hashlib.sha256()
    zeros = bytes(CHUNK_SIZE)
    for _ in range(size // CHUNK_SIZE):
        expected.update(zeros)
    assert got.sha256_hex == expected.hexdigest()
    assert grown_mib < 64, f"peak memory grew by {grown_mib:.0f} MiB hashing a 256 MiB file"


def test_each_distinct_file_hashed_once(images, tmp_path, monkeypatch):
    opened, threads = [], set()
    real_open = hashing.open_regular

    def counting_open(path, what, span=None):
        opened.append(os.path.realpath(path))
        threads.add(threading.current_thread().name)
        return real_open(path, what, span)
    monkeypatch.setattr(hashing, "open_regular", counting_open)
    fw, kernel, initrd = images
    alias = tmp_path / "sub"
    alias.mkdir()
    (alias / "vmlinuz-link").symlink_to(kernel)
    vms = [make_vm(fw, kernel=kernel, initrd=initrd, name="a"),
           make_vm(fw, type="sev-es", kernel=alias / "vmlinuz-link", initrd=initrd,
                   cpu_models=("EPYC-Milan",), vcpus=(1, 2), name="b"),
           make_vm(alias / ".." / "fw.fd", name="c")]  # disk boot, same firmware spelled apart
    results = digest.compute_many(vms)
    assert sorted(opened) == sorted(os.path.realpath(p) for p in (fw, kernel, initrd))
    assert all(name.startswith("sevm-hash") for name in threads)
    assert results[2].variants[0].launch_digest.hex() == results[0].artefact_digests["firmware"]


class CountingSha256:
    """A hashlib.sha256 stand-in that counts every byte fed to it and to its copies."""

    def __init__(self, counter, inner=None):
        self.counter = counter
        self.inner = inner or hashlib.sha256()

    def update(self, data):
        self.counter["bytes"] += len(data)
        self.inner.update(data)

    def copy(self):
        self.counter["copies"] += 1
        return CountingSha256(self.counter, self.inner.copy())

    def digest(self):
        return self.inner.digest()

    def hexdigest(self):
        return self.inner.hexdigest()


def counting_hashlib(monkeypatch):
    counter = {"bytes": 0, "copies": 0}
    fake = types.SimpleNamespace(sha256=lambda: CountingSha256(counter))
    monkeypatch.setattr(hashing, "hashlib", fake)
    return counter


def test_matrix_shares_the_prefix(images, monkeypatch):
    fw, kernel, initrd = images
    vm = make_vm(fw, type="sev-es", kernel=kernel, initrd=initrd, cmdline="console=ttyS0",
                 vcpus=tuple(range(1, 65)), cpu_models=("EPYC-v4", "EPYC-Milan", "EPYC-Genoa"),
                 legacy=(True, False))
    unshared = digest.compute(vm)  # reference values without counting
    counter = counting_hashlib(monkeypatch)
    shared = digest.compute(vm)
    files = sum(p.stat().st_size for p in (fw, kernel, initrd))
    groups = 3 * 2  # CPU models × host profiles: 384 variants
    assert len(shared.variants) == 64 * groups
    # every file once, the table once, and 64 pages per VMSA profile (not 64·65/2)
    assert counter["bytes"] == files + 176 + groups * 64 * 4096
    assert counter["copies"] == 1 + groups
    assert [v.launch_digest for v in shared.variants] == \
        [v.launch_digest for v in unshared.variants]


def test_cache_spares_reading(images, monkeypatch):
    class DictCache:
        def __init__(self):
            self.data, self.lookups = {}, 0

        def lookup(self, path, st):
            self.lookups += 1
            return self.data.get((str(path), st.st_size, st.st_mtime_ns))

        def store(self, path, st, sha256_hex):
            self.data[(str(path), st.st_size, st.st_mtime_ns)] = sha256_hex

    fw, kernel, initrd = images
    cache = DictCache()
    measured = make_vm(fw, kernel=kernel, initrd=initrd)
    disk = make_vm(fw)
    first = digest.compute_many([measured, disk], cache=cache)
    counter = counting_hashlib(monkeypatch)
    second = digest.compute_many([measured, disk], cache=cache)
    # kernel and initrd come from the cache; the firmware is streamed once for the LD prefix
    assert counter["bytes"] == fw.stat().st_size + 176
    assert [m.variants for m in first] == [m.variants for m in second]
    counter["bytes"] = 0
    digest.compute(disk, cache=cache)  # SEV disk boot: LD = SHA-256(firmware), from the cache
    assert counter["bytes"] == 0


def test_pinned_digest_checked_against_bytes(images, tmp_path):
    fw, kernel, _ = images
    pin = hashlib.sha256(kernel.read_bytes()).hexdigest()
    digest.compute(make_vm(fw, kernel=kernel, pins={"kernel": pin}))
    with open(kernel, "r+b") as handle:
        handle.seek(CHUNK_SIZE + 5)
        handle.write(b"X")
    with pytest.raises(DiagnosticError, match="does not match its pinned sha256"):
        digest.compute(make_vm(fw, kernel=kernel, pins={"kernel": pin}))


def test_fixture_firmware_state_is_plain_sha256():
    got = hashing.hash_file(FIXTURES["A"], what="firmware", keep_state=True)
    assert got.state.hexdigest() == got.sha256_hex == \
        "8f765dfabc127fc0a938a0744a3103ec15864d7d794eb4c398aa976b6d6ab16c"
