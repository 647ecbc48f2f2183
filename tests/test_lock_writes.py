"""Many lock files at once: `fsutil.atomic_write_many` (fsyncs overlapped in threads) keeps
atomic_write's guarantees per file, and a signal while the threads wait on the disk leaves
every lock old or new and no temporary file."""
from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap

import pytest

from sevmanifest import fsutil
from sevmanifest.lock.workflow import lock_files

from lock_support import default_sigint, make_many, stray_temp_files


def test_writes_every_file_with_old_modes_kept_and_links_replaced(tmp_path):
    targets = [tmp_path / f"f{i}.lock" for i in range(100)]  # more than one round
    targets[1].write_bytes(b"old")
    targets[1].chmod(0o600)
    precious = tmp_path / "precious"
    precious.write_bytes(b"keep")
    targets[2].symlink_to(precious)
    results = fsutil.atomic_write_many((t, f"new {i}\n") for i, t in enumerate(targets))
    assert results == [None] * len(targets)
    assert [t.read_text() for t in targets] == [f"new {i}\n" for i in range(len(targets))]
    assert stat.S_IMODE(targets[1].stat().st_mode) == 0o600
    assert stat.S_IMODE(targets[0].stat().st_mode) == 0o644
    assert not targets[2].is_symlink() and precious.read_bytes() == b"keep"
    assert stray_temp_files(tmp_path) == []


def test_a_file_that_cannot_be_written_fails_alone(tmp_path):
    good, bad = tmp_path / "good.lock", tmp_path / "missing-dir" / "bad.lock"
    results = fsutil.atomic_write_many([(good, b"a"), (bad, b"b"), (tmp_path / "c", b"c")])
    assert results[0] is None and results[2] is None
    assert isinstance(results[1], fsutil.OutputError)
    assert str(results[1]).startswith(f"cannot write {bad}: ")
    assert good.read_bytes() == b"a" and (tmp_path / "c").read_bytes() == b"c"


def test_failed_fsync_is_an_error_of_that_file_only(tmp_path, monkeypatch):
    real, calls = os.fsync, []

    def flaky(fd):
        calls.append(fd)
        if len(calls) == 2:
            raise OSError(5, "Input/output error")
        return real(fd)
    monkeypatch.setattr(fsutil.os, "fsync", flaky)
    targets = [tmp_path / f"f{i}" for i in range(4)]
    for t in targets:
        t.write_bytes(b"old")
    results = fsutil.atomic_write_many((t, b"new") for t in targets)
    failed = [t for t, r in zip(targets, results) if r is not None]
    assert len(failed) == 1 and "Input/output error" in str(results[targets.index(failed[0])])
    assert failed[0].read_bytes() == b"old"
    assert all(t.read_bytes() == b"new" for t in targets if t not in failed)
    assert stray_temp_files(tmp_path) == []


def test_interrupted_caller_removes_every_temporary_file(tmp_path, monkeypatch):
    real, calls = os.fsync, []
    per_round = fsutil.FILES_PER_ROUND

    def interrupting(fd):
        calls.append(fd)
        if len(calls) == per_round + 6:  # in the second round: the first is renamed already
            raise KeyboardInterrupt
        return real(fd)
    monkeypatch.setattr(fsutil, "_sync_concurrently",
                        lambda temps: [interrupting(t.fd) for t in temps])
    targets = [tmp_path / f"f{i}" for i in range(per_round + 36)]
    for t in targets:
        t.write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt):
        fsutil.atomic_write_many((t, b"new") for t in targets)
    contents = [t.read_bytes() for t in targets]
    assert contents == [b"new"] * per_round + [b"old"] * 36
    assert stray_temp_files(tmp_path) == []


def test_a_manifest_named_twice_is_written_once(tmp_path, monkeypatch):
    names = make_many(tmp_path, 2, vcpus="1")
    monkeypatch.chdir(tmp_path / "vms")
    run = lock_files([names[0], names[1], f"./{names[0]}"], jobs=1, use_cache=False)
    assert run.exit_code == 0
    assert [p.name for p in run.written] == [f"{names[0]}.lock", f"{names[1]}.lock"]
    assert [str(p) for p in run.unchanged] == [f"{names[0]}.lock"]


# A signal while the sync threads wait on the disk (one of them paused inside fsync).
PAUSING_LOCK = textwrap.dedent("""
    import os, sys, time
    real = os.fsync
    def pausing(fd):
        real(fd)
        if not getattr(pausing, "done", False):
            pausing.done = True
            print("PAUSED", flush=True)
            time.sleep(60)
    os.fsync = pausing
    from sevmanifest.cli import main
    sys.exit(main(["lock", "--no-cache", *sys.argv[1:]]))
""")


@pytest.mark.parametrize("sig, count", [(signal.SIGTERM, 12), (signal.SIGINT, 12),
                                        (signal.SIGHUP, 12), (signal.SIGTERM, 64)])
def test_signal_during_concurrent_fsyncs_leaves_old_locks_and_no_temporary_file(tmp_path, sig,
                                                                                 count):
    """12 files: one process; 64: two workers, the parent writing the first part's locks."""
    names = make_many(tmp_path, count, vcpus="1")
    vms = tmp_path / "vms"
    for name in names:
        (vms / f"{name}.lock").write_bytes(b"# old\n")
    proc = subprocess.Popen([sys.executable, "-c", PAUSING_LOCK, *names], cwd=vms,
                            preexec_fn=default_sigint,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "PAUSED", proc.stderr.read()
        proc.send_signal(sig)
        proc.wait(timeout=10)  # not the 60 s the paused thread sleeps
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == (130 if sig == signal.SIGINT else 128 + sig), proc.stderr.read()
    assert "Traceback" not in proc.stderr.read()
    assert {(vms / f"{n}.lock").read_bytes() for n in names} == {b"# old\n"}
    assert stray_temp_files(vms) == []


def test_a_low_open_file_limit_makes_smaller_rounds(tmp_path):
    """`ulimit -n 48` and 60 locks written in one process: every lock is written (a round
    of 60 open temporary files failed past the limit with "Too many open files")."""
    import resource
    names = make_many(tmp_path, 60, vcpus="1")

    def low_limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (48, resource.getrlimit(
            resource.RLIMIT_NOFILE)[1]))
    run = subprocess.run([sys.executable, "-m", "sevmanifest", "lock", "-j1", "--no-cache",
                          *names], cwd=tmp_path / "vms", capture_output=True, text=True,
                         preexec_fn=low_limit, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert all((tmp_path / "vms" / f"{n}.lock").is_file() for n in names)
    assert stray_temp_files(tmp_path) == []


def test_touch_marks_in_place_and_never_through_a_link(tmp_path):
    """compilecache's prune marker: created 0600 with the given time, refreshed in place
    (no temporary file a crash could leave), and not followed if it is a link."""
    import errno
    from sevmanifest.fsutil import touch
    marker = tmp_path / "marker"
    touch(marker, 1_000_000_000)
    assert marker.stat().st_mtime == 1_000_000_000 and stat.S_IMODE(marker.stat().st_mode) == 0o600
    touch(marker, 2_000_000_000)
    assert marker.stat().st_mtime == 2_000_000_000 and os.listdir(tmp_path) == ["marker"]
    target = tmp_path / "elsewhere"
    target.write_text("keep")
    link = tmp_path / "link"
    link.symlink_to(target)
    with pytest.raises(OSError) as raised:
        touch(link, 1)
    assert raised.value.errno == errno.ELOOP and target.stat().st_mtime != 1
