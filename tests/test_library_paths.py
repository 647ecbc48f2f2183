"""The library takes a path as ``str`` or ``pathlib.Path``, as Python's own APIs do: a
``Path`` gave "TypeError: '<' not supported between 'str' and 'PosixPath'" from
``compile_file`` (a manifest's diagnostics and its import's were sorted together), and
the lock functions failed on ``Manifest.file`` or in the compile cache's key."""
from __future__ import annotations

import shutil
from pathlib import Path

from sevmanifest.frontend import compile_file, compile_text
from sevmanifest.lock.lockfile import check_locked, write_lock
from sevmanifest.lock.workflow import check_locked_files, lock_files
from sevmanifest.measure.digest import compute_many

REPO = Path(__file__).resolve().parents[1]


def test_compile_file_takes_a_path_and_names_files_as_str(tmp_path):
    (tmp_path / "common.sevm").write_text('template "t" {\n    type sev-es\n    cpu "NOT-A-CPU"\n}\n')
    (tmp_path / "a.sevm").write_text('import "common.sevm"\nvm "a" extends "t" {\n    vcpus 0\n}\n')
    result = compile_file(tmp_path / "a.sevm")
    assert not result.ok and all(isinstance(d.span.file, str) for d in result.diagnostics if d.span)
    assert {Path(d.span.file).name for d in result.diagnostics if d.span} == {"a.sevm", "common.sevm"}
    assert compile_text("", tmp_path / "empty.sevm").diagnostics[0].span.file == str(tmp_path / "empty.sevm")


def test_the_lock_functions_take_paths(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    shutil.copytree(REPO / "manifests" / "images", tmp_path / "images")
    shutil.copy(REPO / "manifests" / "sev-es-direct.sevm", tmp_path / "m.sevm")
    manifest = compile_file(tmp_path / "m.sevm").manifest
    assert manifest.file == str(tmp_path / "m.sevm")
    write_lock(manifest, compute_many(manifest.vms))
    assert check_locked(manifest, compute_many(manifest.vms)) == []
    (tmp_path / "m.sevm.lock").unlink()
    assert lock_files([tmp_path / "m.sevm"]).exit_code == 0
    diagnostics, status = check_locked_files([tmp_path / "m.sevm"])
    assert status == 0, diagnostics


def test_compile_file_in_a_removed_working_directory_is_a_diagnostic(tmp_path, monkeypatch):
    gone = tmp_path / "gone"
    gone.mkdir()
    monkeypatch.chdir(gone)
    gone.rmdir()
    result = compile_file("web.sevm")
    assert not result.ok and result.manifest is None
    assert "the working directory no longer exists" in result.diagnostics[0].message
    assert result.diagnostics[0].fatal_input
