"""Many manifests at once: worker processes give the same bytes as one process, errors stay
with their files, shared artefacts are hashed once, and the digest cache works end to end."""
from __future__ import annotations

import json
import os
import shutil
import signal
import time

import pytest

from sevmanifest.lock import batch, forked
from sevmanifest.lock.cache import RACY_SECONDS
from sevmanifest.lock.workflow import _render_action, check_locked_files, lock_files
from sevmanifest.measure import hashing

from lock_support import (FIRMWARE, KERNEL, make_many, read_lock, running, sevm,
                          start_pooled_lock, stray_temp_files, vm_text)


@pytest.fixture
def many(tmp_path, monkeypatch):
    names = make_many(tmp_path, 24, vcpus="1, 2")
    monkeypatch.chdir(tmp_path / "vms")
    monkeypatch.setattr(batch, "MIN_FILES_PER_WORKER", 8)  # a pool for these 24 files
    # even when an earlier run left them in the compiled-manifest cache
    monkeypatch.setattr(batch, "_needing_parse", len)
    return names


def test_worker_count():
    assert batch._worker_count(47, 4) == 1  # too few files to pay for a pool
    assert batch._worker_count(100, 4) == 4
    assert batch._worker_count(48, 8) == 2
    assert batch._worker_count(100, None) == min(len(os.sched_getaffinity(0)), 4)
    assert batch._chunks(list("abcdefg"), 3) == [list("abc"), list("de"), list("fg")]


def test_unchanged_manifests_are_locked_in_one_process(tmp_path, monkeypatch):
    names = make_many(tmp_path, 24, vcpus="1")
    monkeypatch.chdir(tmp_path / "vms")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("SEVM_NO_CACHE", raising=False)
    monkeypatch.setattr(batch, "MIN_FILES_PER_WORKER", 8)
    forks = []
    real = forked.start
    monkeypatch.setattr(forked, "start", lambda *a, **k: forks.append(1) or real(*a, **k))
    assert batch._needing_parse(names) == 24
    first = lock_files(names, jobs=3, use_cache=False)  # parses: three workers
    assert forks == [1, 1, 1] and batch._needing_parse(names) == 0
    second = lock_files(names, jobs=3, use_cache=False)
    assert forks == [1, 1, 1] and second.exit_code == first.exit_code == 0
    assert len(second.unchanged) == 24  # the same bytes as the pooled run wrote
    monkeypatch.setenv("SEVM_NO_CACHE", "1")
    assert batch._needing_parse(names) == 24


def test_processes_and_one_process_agree(many):
    serial = batch.run_files(many, _render_action, jobs=1, use_cache=False)
    pooled = batch.run_files(many, _render_action, jobs=3, use_cache=False)
    assert [o.path for o in pooled] == many
    assert [o.output for o in pooled] == [o.output for o in serial]
    assert all(o.output and not o.failed for o in pooled)


def test_errors_stay_with_their_file_in_a_pool(many, capsys):
    os.rename(many[5], "bad-syntax.sevm")
    with open("bad-syntax.sevm", "a") as f:
        f.write("vm {\n")
    with open(many[17], "w") as f:
        f.write(vm_text("nofw", images="../missing"))
    files = [f for f in many if f != many[5]] + ["bad-syntax.sevm"]
    run = lock_files(files, jobs=2, use_cache=False)
    assert run.exit_code == 2
    failed = {d.span.file if d.span else d.message for d in run.diagnostics if d.is_error}
    assert any("bad-syntax.sevm" in f for f in failed)
    assert any(many[17] in f or "missing" in f for f in failed)
    assert len(run.written) == len(files) - 2
    assert not os.path.exists(many[17] + ".lock")
    assert not os.path.exists("bad-syntax.sevm.lock")


def test_carets_are_printed_for_files_compiled_in_workers(tmp_path):
    names = make_many(tmp_path, 2 * batch.MIN_FILES_PER_WORKER, vcpus="1")  # two workers
    with open(tmp_path / "vms" / names[-4], "a") as f:
        f.write('vm "x" {\n    vcpus 0\n}\n')
    result = sevm("lock", "--jobs", "2", *names, cwd=tmp_path / "vms")
    assert result.returncode != 0
    assert f"{names[-4]}:" in result.stderr
    assert "vcpus 0" in result.stderr and "^" in result.stderr


def test_shared_artefacts_are_hashed_once_per_run(many, monkeypatch):
    calls = []
    real = hashing.hash_file

    def counting(path, **kwargs):
        calls.append(os.path.basename(path))
        return real(path, **kwargs)
    monkeypatch.setattr(hashing, "hash_file", counting)
    outcomes = batch.run_files(many, _render_action, jobs=1, use_cache=False)
    assert all(o.output for o in outcomes)
    assert sorted(calls) == sorted([FIRMWARE, KERNEL, "initrd.synthetic.img"])


def test_check_locked_files_many(many):
    assert lock_files(many, jobs=2).exit_code == 0
    assert check_locked_files(many, jobs=2, use_cache=True) == ([], 0)
    with open(many[3], "w") as f:
        f.write(vm_text("guest-3", vcpus="1, 2, 3", cmdline="console=ttyS0 id=3"))
    diagnostics, status = check_locked_files(many, jobs=2, use_cache=True)
    assert status == 1
    (only,) = [d.message for d in diagnostics if d.is_error]
    assert only.startswith(f"{many[3]}.lock: vm 'guest-3': new variant vcpus=3 cpu=EPYC-Milan "
                           "vmm=qemu legacy-vm-type=on sev-features=0x0 is not in the lock")
    assert all(d.severity.value != "warning" for d in diagnostics)


# -- the digest cache through the command line --------------------------------------------

@pytest.fixture(scope="module")
def settled(tmp_path_factory):
    """A repository whose files are older than the racy window (so they may be cached)."""
    root = tmp_path_factory.mktemp("settled")
    names = make_many(root, 3)
    time.sleep(RACY_SECONDS + 0.3)
    return root / "vms", names


def cache_entries(xdg):
    return sorted(p for p in (xdg / "sevmanifest" / "digests-v1").rglob("*") if p.is_file()) \
        if (xdg / "sevmanifest" / "digests-v1").exists() else []


def test_cache_is_filled_and_bypassed(settled, tmp_path):
    vms, names = settled
    bypass = tmp_path / "bypass"
    assert sevm("lock", "--no-cache", *names, cwd=vms,
                env={"XDG_CACHE_HOME": str(bypass)}).returncode == 0
    assert cache_entries(bypass) == []
    assert sevm("lock", *names, cwd=vms, env={"XDG_CACHE_HOME": str(bypass),
                                                "SEVM_NO_CACHE": "1"}).returncode == 0
    assert cache_entries(bypass) == []
    used = tmp_path / "used"
    result = sevm("lock", *names, cwd=vms, env={"XDG_CACHE_HOME": str(used)})
    assert result.returncode == 0, result.stderr
    records = [json.loads(p.read_text()) for p in cache_entries(used)]
    assert sorted(os.path.basename(r["path"]) for r in records) == \
        [FIRMWARE, "initrd.synthetic.img", KERNEL]


def test_corrupt_cache_warns_once_and_the_run_succeeds(settled, tmp_path):
    vms, names = settled
    xdg = tmp_path / "xdg"
    assert sevm("lock", *names, cwd=vms, env={"XDG_CACHE_HOME": str(xdg)}).returncode == 0
    for entry in cache_entries(xdg):
        entry.write_text("{ garbage")
    # without the compiled manifests (and the locks they record) everything is measured
    # again, through the damaged digest cache
    shutil.rmtree(xdg / "sevmanifest" / "compiled-v1")
    result = sevm("check", "--locked", *names, cwd=vms, env={"XDG_CACHE_HOME": str(xdg)})
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("ignoring corrupt digest cache entry") == 1


def test_cache_never_hides_an_edited_pinned_artefact(settled, tmp_path):
    """The kernel is cached, then edited in place with its size and mtime kept: the cache
    cannot prove it unchanged (ctime moved), so its bytes are hashed and the pin fails."""
    vms, names = settled
    xdg = tmp_path / "xdg"
    kernel = vms.parent / "images" / KERNEL
    original = kernel.read_bytes()
    pinned = vms / "pinned.sevm"
    pinned.write_text(vm_text("pinned").replace(
        f'kernel "../images/{KERNEL}"',
        f'kernel "../images/{KERNEL}" sha256 "{hashing.hashlib.sha256(original).hexdigest()}"'))
    try:
        assert sevm("lock", "pinned.sevm", cwd=vms,
                    env={"XDG_CACHE_HOME": str(xdg)}).returncode == 0
        st = os.stat(kernel)
        kernel.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
        os.utime(kernel, ns=(st.st_atime_ns, st.st_mtime_ns))
        result = sevm("check", "--locked", "pinned.sevm", cwd=vms,
                      env={"XDG_CACHE_HOME": str(xdg)})
        assert result.returncode == 1
        assert "vmlinuz.synthetic does not match its pinned sha256" in result.stderr
    finally:
        kernel.write_bytes(original)
        pinned.unlink()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_interrupted_pool_ends_promptly_and_writes_nothing_further(tmp_path, sig):
    """A signal to the parent alone stops the workers too; nothing more is written (locks
    of parts finished before the signal may exist, each whole), no temporary file is left."""
    proc, names, workers = start_pooled_lock(tmp_path)
    proc.send_signal(sig)
    start = time.time()
    proc.wait(timeout=30)
    assert time.time() - start < 1.5  # not waiting for the workers to finish
    assert proc.returncode == 128 + sig if sig != signal.SIGINT else proc.returncode == 130
    assert "Traceback" not in proc.stderr.read()
    time.sleep(0.2)
    assert running(workers) == []
    locks = list((tmp_path / "vms").glob("*.lock"))
    assert len(locks) < len(names)
    assert all(read_lock(lock)["lock_version"] == 1 for lock in locks)
    assert stray_temp_files(tmp_path / "vms") == []


# -- shared digests and parts (lock/shared.py, batch.iter_files) ---------------------------

def test_a_second_part_per_worker_only_for_large_fleets():
    assert batch._parts_per_worker(200, 2) == 1
    assert batch._parts_per_worker(511, 2) == 1
    assert batch._parts_per_worker(512, 2) == 2
    assert batch._parts_per_worker(5000, 2) == batch.PARTS_PER_WORKER


def _log_reads(monkeypatch, log):
    """Record every artefact whose bytes are read, in this process and in forked workers."""
    real = hashing._read_all

    def logging_read(fd, st, path, what, span):
        with open(log, "a") as f:
            f.write(os.path.basename(path) + "\n")
        return real(fd, st, path, what, span)
    monkeypatch.setattr(hashing, "_read_all", logging_read)


@pytest.mark.parametrize("use_cache", [False, True])
def test_a_pool_reads_the_shared_kernel_and_initrd_once(many, monkeypatch, tmp_path, use_cache):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    log = tmp_path / "reads.log"
    _log_reads(monkeypatch, log)
    outcomes = batch.run_files(many, _render_action, jobs=2, use_cache=use_cache)
    assert all(o.output for o in outcomes)
    reads = log.read_text().split()
    assert reads.count(KERNEL) == 1 and reads.count("initrd.synthetic.img") == 1, reads
    # the SEV-ES firmware is the launch digest's prefix: streamed by each chunk for its state,
    # and not hashed by the parent too (its digest comes with the state)
    assert reads.count(FIRMWARE) == 2


def test_parts_come_in_order_and_match_one_process(tmp_path, monkeypatch):
    names = make_many(tmp_path, 70, vcpus="1")
    monkeypatch.chdir(tmp_path / "vms")
    monkeypatch.setattr(batch, "MIN_FILES_PER_PART", 16)  # two parts per worker
    assert batch._parts_per_worker(70, 2) == 2
    parts = list(batch.iter_files(names, _render_action, jobs=2, use_cache=False))
    assert len(parts) == 4
    assert [o.path for part in parts for o in part] == names
    serial = batch.run_files(names, _render_action, jobs=1, use_cache=False)
    assert [o.output for part in parts for o in part] == [o.output for o in serial]


class _DoneChild:
    """A worker that finished at once (what ``forked.start`` returns, without a fork)."""
    done = True

    def __init__(self, value):
        self.value = value
        self.stopped = False

    def result(self):
        return self.value

    def stop(self):
        self.stopped = True


class _InlineStart:
    """Runs each chunk at once; records the digests each chunk was given."""

    def __init__(self):
        self.given = []

    def __call__(self, fn, chunk, run, known, *, running):
        self.given.append(dict(known))
        learned = {f"/images/{chunk[0]}": ((0, 0, 0, 0, 0), "ab" * 32)}
        return _DoneChild(([batch.FileOutcome(p) for p in chunk], {}, learned))


def test_each_chunk_starts_with_the_digests_learned_before_it():
    start = _InlineStart()
    chunks = [["a", "b"], ["c"], ["d"], ["e"]]
    run = batch._Run(_render_action, False, False, 0.0)
    parts = list(batch._in_order(start, chunks, 2, run, {}))
    assert [[o.path for o in outcomes] for outcomes in parts] == chunks
    # two in flight at a time; a chunk started after others finished gets their digests
    assert [sorted(k) for k in start.given] == [[], [], ["/images/a", "/images/c"],
                                               ["/images/a", "/images/c"]]
