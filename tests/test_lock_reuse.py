"""`sevm lock` reuses a lock whose manifest, code and artefacts are unchanged (lock/reuse.py),
and measures again whenever any of them changed."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from sevmanifest.compilecache import open_compile_cache
from sevmanifest.diagnostics import DiagnosticError
from sevmanifest.lock import reuse
from sevmanifest.lock.workflow import lock_files
from sevmanifest.measure import digest

from lock_support import FIRMWARE, INITRD, KERNEL, make_many, read_lock, sha256_file, vm_text


@pytest.fixture
def repo(tmp_path, monkeypatch):
    names = make_many(tmp_path, 3, vcpus="1, 2")
    monkeypatch.chdir(tmp_path / "vms")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("SEVM_NO_CACHE", raising=False)
    # the images were copied a moment ago: their ctime is "now", which the racy rule refuses
    monkeypatch.setattr(reuse, "RACY_SECONDS", -60)
    return names


@pytest.fixture
def measured(monkeypatch):
    """The number of compute_many calls (measurements) so far."""
    calls = []
    real = digest.compute_many

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)
    monkeypatch.setattr(digest, "compute_many", counting)
    return calls


def _locks(names: list[str]) -> list[bytes]:
    return [Path(f"{name}.lock").read_bytes() for name in names]


def _remove_locks(names: list[str]) -> None:
    for name in names:
        Path(f"{name}.lock").unlink()


def test_an_unchanged_repository_is_locked_again_without_measuring(repo, measured):
    assert lock_files(repo, jobs=1).exit_code == 0
    first, calls = _locks(repo), len(measured)
    assert calls > 0 and all(open_compile_cache().lock_data(n) for n in repo)
    _remove_locks(repo)
    run = lock_files(repo, jobs=1)
    assert run.exit_code == 0 and len(run.written) == 3
    assert len(measured) == calls  # nothing measured
    assert _locks(repo) == first
    # the reused bytes are what measuring from scratch, with no cache at all, writes
    _remove_locks(repo)
    assert lock_files(repo, jobs=1, use_cache=False).exit_code == 0
    assert _locks(repo) == first and len(measured) > calls


def test_no_cache_neither_reuses_nor_records(repo, measured):
    assert lock_files(repo, jobs=1, use_cache=False).exit_code == 0
    assert not any(open_compile_cache().lock_data(n) for n in repo)
    lock_files(repo, jobs=1)  # records
    calls = len(measured)
    lock_files(repo, jobs=1, use_cache=False)
    assert len(measured) == calls + 1


def test_sevm_no_cache_turns_reuse_off(repo, measured, monkeypatch):
    lock_files(repo, jobs=1)
    calls = len(measured)
    monkeypatch.setenv("SEVM_NO_CACHE", "1")
    lock_files(repo, jobs=1)
    assert len(measured) == calls + 1


@pytest.mark.parametrize("image", [FIRMWARE, KERNEL, INITRD])
def test_a_changed_artefact_is_measured_again(repo, measured, image):
    lock_files(repo, jobs=1)
    calls = len(measured)
    path = Path("../images") / image
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # same size: only the identity's times (and the bytes) differ
    path.write_bytes(bytes(data))
    assert lock_files(repo, jobs=1).exit_code == 0
    assert len(measured) == calls + 1
    assert all(sha256_file(path) in Path(f"{n}.lock").read_text() for n in repo)


def test_an_edited_manifest_is_measured_again(repo, measured):
    lock_files(repo, jobs=1)
    calls = len(measured)
    Path(repo[1]).write_text(vm_text("guest-1", vcpus="1, 2, 4", cmdline="console=ttyS0 id=1"))
    assert lock_files(repo, jobs=1).exit_code == 0
    assert len(measured) == calls + 1  # one file: the other two are reused
    vcpus = [v["vcpus"] for v in read_lock(Path(f"{repo[1]}.lock"))["vms"][0]["variants"]]
    assert sorted(set(vcpus)) == [1, 2, 4]


def test_a_retargeted_link_to_the_images_is_measured_again(tmp_path, repo, measured):
    other = tmp_path / "other-images"
    other.mkdir()
    for image in (FIRMWARE, KERNEL, INITRD):
        data = (tmp_path / "images" / image).read_bytes()
        (other / image).write_bytes(data[:-1] + bytes([data[-1] ^ 1]) if image == INITRD else data)
    (tmp_path / "current").symlink_to(tmp_path / "images")
    Path("linked.sevm").write_text(vm_text("linked", images="../current"))
    lock_files(["linked.sevm"], jobs=1)
    assert open_compile_cache().lock_data("linked.sevm") is not None
    before, calls = Path("linked.sevm.lock").read_bytes(), len(measured)
    (tmp_path / "current").unlink()
    (tmp_path / "current").symlink_to(other)  # the manifest's text and paths are unchanged
    lock_files(["linked.sevm"], jobs=1)
    assert len(measured) == calls + 1
    assert Path("linked.sevm.lock").read_bytes() != before
    assert sha256_file(other / INITRD) in Path("linked.sevm.lock").read_text()


def test_artefacts_changed_within_the_racy_window_are_not_recorded(repo, monkeypatch):
    monkeypatch.setattr(reuse, "RACY_SECONDS", 3)  # the real rule: the images are seconds old
    assert lock_files(repo, jobs=1).exit_code == 0
    assert not any(open_compile_cache().lock_data(n) for n in repo)


def test_warnings_are_shown_again_on_reuse_under_todays_lint_configuration(repo, measured):
    first = lock_files(repo, jobs=1)
    warnings = [str(d) for d in first.diagnostics]
    assert warnings and first.exit_code == 0  # the images are not pinned: SEVM104
    calls = len(measured)
    again = lock_files(repo, jobs=1)
    assert [str(d) for d in again.diagnostics] == warnings and len(measured) == calls
    Path(".sevm.toml").write_text('disable = ["unpinned-artefact"]\n')
    assert lock_files(repo, jobs=1).diagnostics == [] and len(measured) == calls
    # raised to an error: no lock may be written; the manifests go the normal way (which
    # stops before measuring) and the errors are reported
    _remove_locks(repo)
    Path(".sevm.toml").write_text('error = ["unpinned-artefact"]\n')
    run = lock_files(repo, jobs=1)
    assert run.exit_code == 1 and run.written == []
    assert sum(d.is_error for d in run.diagnostics) == len(warnings)
    assert not any(Path(f"{n}.lock").exists() for n in repo)


def test_a_lock_with_more_than_the_manifests_warnings_is_not_recorded(repo, monkeypatch):
    from sevmanifest.diagnostics import warning
    from sevmanifest.lock import workflow

    def render_with_a_warning(manifest, measurements):
        return [warning("SEVM999", "from measuring")], b"lock\n"
    monkeypatch.setattr(workflow, "_render_action", render_with_a_warning)
    assert lock_files(repo, jobs=1).exit_code == 0
    assert not any(open_compile_cache().lock_data(n) for n in repo)


def test_a_broken_lint_configuration_fails_as_without_reuse(repo):
    lock_files(repo, jobs=1)
    Path(".sevm.toml").write_text('disable = ["no-such-rule"]\n')
    with pytest.raises(DiagnosticError) as reused:
        lock_files(repo, jobs=1)
    with pytest.raises(DiagnosticError) as measured_again:
        lock_files(repo, jobs=1, use_cache=False)
    assert [str(d) for d in reused.value.diagnostics] == \
        [str(d) for d in measured_again.value.diagnostics]


def test_damaged_reuse_data_is_measured_again(repo, measured):
    lock_files(repo, jobs=1)
    first, calls = _locks(repo), len(measured)
    for bad in ({}, {"artefacts": "x", "text": "t"}, {"artefacts": [[1, 2]], "text": "t"},
                {"artefacts": [], "text": 5}, {"artefacts": [["/nonexistent", 1, 2, 3, 4, 5]],
                                                "text": "t"}):
        assert reuse.reusable_text(bad) is None
    assert reuse.reusable_text({"artefacts": [], "text": "t"}) == b"t"
    _remove_locks(repo)
    os.utime(Path("../images") / KERNEL)  # a new mtime: the recorded identity is stale
    lock_files(repo, jobs=1)
    assert len(measured) == calls + 1 and _locks(repo) == first


def test_each_artefact_identity_is_taken_once_per_run(repo, monkeypatch):
    lock_files(repo, jobs=1)
    real_stat, seen = os.stat, []

    def counting(path, *args, **kwargs):
        seen.append(os.fspath(path))
        return real_stat(path, *args, **kwargs)
    monkeypatch.setattr(reuse.os, "stat", counting)
    assert lock_files(repo, jobs=1).exit_code == 0
    images = [p for p in seen if "/images/" in p]
    assert len(images) == 3 == len(set(images))  # three manifests, three shared images


def test_a_lock_too_large_for_the_cache_keeps_the_compiled_manifest(repo, monkeypatch):
    from sevmanifest import compilecache
    from sevmanifest.commands import common
    common._compiled(repo[0])  # the entry without a lock
    entry, = Path(os.environ["XDG_CACHE_HOME"], "sevmanifest", "compiled-v1").iterdir()
    # room for the compiled manifest, not for the lock beside it (a huge matrix's lock)
    monkeypatch.setattr(compilecache, "MAX_ENTRY_SIZE", entry.stat().st_size)
    entry.unlink()
    assert lock_files(repo[:1], jobs=1).exit_code == 0
    cache = open_compile_cache()
    assert cache.lock_data(repo[0]) is None  # the lock did not fit
    assert cache.lookup(repo[0]) is not None  # the compiled manifest did


def test_an_entry_that_cannot_be_reused_is_read_once(repo, monkeypatch):
    from sevmanifest import compilecache
    lock_files(repo, jobs=1)
    os.utime(Path("../images") / INITRD)  # the recorded identity is stale: measured again
    reads = []
    real = compilecache.read_entry

    def counting(file):
        reads.append(file)
        return real(file)
    monkeypatch.setattr(compilecache, "read_entry", counting)
    assert lock_files(repo, jobs=1).exit_code == 0
    assert len(reads) == len(set(reads)) == 3  # looked up once, for reuse and for compiling


# -- sevm check --locked ----------------------------------------------------------------------

from sevmanifest.lock.workflow import check_locked_files  # noqa: E402


def test_check_locked_of_an_unchanged_repository_does_not_measure(repo, measured):
    lock_files(repo, jobs=1)
    calls = len(measured)
    assert check_locked_files(repo, jobs=1) == ([], 0)
    assert len(measured) == calls


@pytest.mark.parametrize("change", ["lock edited", "lock removed", "image changed"])
def test_check_locked_still_finds_every_stale_lock(repo, measured, change):
    lock_files(repo, jobs=1)
    lock = Path(f"{repo[1]}.lock")
    if change == "lock edited":
        lock.write_text(lock.read_text().replace("vcpus = 2", "vcpus = 3", 1))
    elif change == "lock removed":
        lock.unlink()
    else:
        path = Path("../images") / INITRD
        data = bytearray(path.read_bytes())
        data[0] ^= 1
        path.write_bytes(bytes(data))
    calls = len(measured)
    diagnostics, status = check_locked_files(repo, jobs=1)
    assert status == 1 and diagnostics
    assert len(measured) > calls  # compared the normal way, which says what changed
    stale = {d.message.split(":")[0] for d in diagnostics if d.is_error}
    if change == "image changed":
        assert stale == {f"{n}.lock" for n in repo}
    else:
        assert stale == {str(lock)}
    # and without any cache the verdict is the same
    assert check_locked_files(repo, jobs=1, use_cache=False)[1] == 1
