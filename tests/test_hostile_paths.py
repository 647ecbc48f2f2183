"""Paths: relative to the file that names them (never the working directory), errors name
the resolved path, lock files record the path as written; absolute paths, symbolic links,
``..``, and names with spaces, quotes, non-ASCII or non-UTF-8 bytes.

Decisions (docs/robustness.md):
- a relative path is joined to the directory of the manifest *as it was named* and then
  normalised lexically (``a/link/../x`` is ``a/x``), like a C compiler's ``#include "…"``;
  a symlinked manifest therefore resolves against the link's directory;
- artefacts that are symlinks are followed when read (the digest is the target's bytes),
  while lock files keep the path as written, so a lock does not depend on where links point.
"""
from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import tomllib

import pytest

from hostile_support import AMDSEV_FW, run_cli

FW_SHA = hashlib.sha256(AMDSEV_FW.read_bytes()).hexdigest()


def vm_text(firmware: str, *, name: str = "v") -> str:
    escaped = (firmware.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
               .replace("\t", "\\t"))
    return f'vm "{name}" {{\n  type sev\n  firmware "{escaped}"\n}}\n'


def measured(path) -> dict:
    run = run_cli(["measure", str(path), "--format", "json", "--no-cache"]).clean()
    assert run.rc == 0, run.err
    return json.loads(run.out)["vms"][0]["artifacts"]["firmware"]


def locked(path) -> dict:
    run = run_cli(["lock", "--no-cache", "--jobs", "1", str(path)]).clean()
    assert run.rc == 0, run.err
    with open(f"{path}.lock", "rb") as handle:
        return tomllib.load(handle)


def test_relative_to_the_manifest_not_the_working_directory(tmp_path, monkeypatch):
    (tmp_path / "images").mkdir()
    shutil.copyfile(AMDSEV_FW, tmp_path / "images" / "fw.fd")
    manifest = tmp_path / "images" / "vm.sevm"
    manifest.write_text(vm_text("fw.fd"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    shutil.copyfile(AMDSEV_FW, elsewhere / "fw.fd")  # a decoy the tool must not pick up
    (elsewhere / "fw.fd").write_bytes(b"decoy" * 20)
    found = measured(os.path.relpath(manifest))
    assert found == {"path": str(tmp_path / "images" / "fw.fd"), "sha256": FW_SHA}
    assert locked(manifest)["vms"][0]["artifacts"]["firmware"]["path"] == "fw.fd"


def test_paths_in_imported_templates_are_relative_to_the_template(tmp_path):
    (tmp_path / "common" / "fw").mkdir(parents=True)
    shutil.copyfile(AMDSEV_FW, tmp_path / "common" / "fw" / "ovmf.fd")
    (tmp_path / "common" / "base.sevm").write_text(
        'template "base" {\n  type sev\n  firmware "fw/ovmf.fd"\n}\n')
    (tmp_path / "fleet").mkdir()
    manifest = tmp_path / "fleet" / "web.sevm"
    manifest.write_text('import "../common/base.sevm"\nvm "web" extends "base" {\n}\n')
    assert measured(manifest)["path"] == str(tmp_path / "common" / "fw" / "ovmf.fd")


def test_missing_artefact_names_the_resolved_path_at_its_line(tmp_path):
    (tmp_path / "sub").mkdir()
    manifest = tmp_path / "sub" / "vm.sevm"
    manifest.write_text(vm_text("../firmware/missing.fd"))
    run = run_cli(["measure", str(manifest)]).clean()
    assert run.rc == 2
    assert f"{manifest}:3:3" in run.err
    assert f"cannot read firmware {tmp_path / 'firmware' / 'missing.fd'}: no such file" in run.err


def test_missing_import_names_the_resolved_path_at_the_import(tmp_path):
    (tmp_path / "sub").mkdir()
    manifest = tmp_path / "sub" / "vm.sevm"
    manifest.write_text('import "../lib/none.sevm"\n' + vm_text(str(AMDSEV_FW)))
    run = run_cli(["check", str(manifest)]).clean()
    assert run.rc == 2 and f"{manifest}:1:" in run.err
    assert str(tmp_path / "lib" / "none.sevm") in run.err


def test_absolute_paths_are_used_and_recorded_as_written(tmp_path):
    manifest = tmp_path / "vm.sevm"
    manifest.write_text(vm_text(str(AMDSEV_FW)))
    assert measured(manifest)["path"] == str(AMDSEV_FW)
    assert locked(manifest)["vms"][0]["artifacts"]["firmware"]["path"] == str(AMDSEV_FW)


def test_symlinked_artefact_is_read_through_and_recorded_as_written(tmp_path):
    (tmp_path / "store").mkdir()
    shutil.copyfile(AMDSEV_FW, tmp_path / "store" / "ovmf-2024.fd")
    (tmp_path / "current.fd").symlink_to(tmp_path / "store" / "ovmf-2024.fd")
    manifest = tmp_path / "vm.sevm"
    manifest.write_text(vm_text("current.fd"))
    assert measured(manifest) == {"path": str(tmp_path / "current.fd"), "sha256": FW_SHA}
    lock = locked(manifest)["vms"][0]["artifacts"]["firmware"]
    assert lock["path"] == "current.fd" and lock["sha256"] == FW_SHA
    # re-pointing the link changes the digest, and the lock goes stale
    (tmp_path / "store" / "ovmf-2025.fd").write_bytes(AMDSEV_FW.read_bytes()[:-1] + b"\x01")
    (tmp_path / "current.fd").unlink()
    (tmp_path / "current.fd").symlink_to(tmp_path / "store" / "ovmf-2025.fd")
    run = run_cli(["check", "--locked", "--no-cache", "--jobs", "1", str(manifest)]).clean()
    assert run.rc == 1 and "current.fd" in run.err


def test_symlinked_manifest_resolves_against_the_link_directory(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "links").mkdir()
    shutil.copyfile(AMDSEV_FW, tmp_path / "links" / "fw.fd")
    (tmp_path / "real" / "fw.fd").write_bytes(b"not this one" * 8)
    (tmp_path / "real" / "vm.sevm").write_text(vm_text("fw.fd"))
    (tmp_path / "links" / "vm.sevm").symlink_to(tmp_path / "real" / "vm.sevm")
    assert measured(tmp_path / "links" / "vm.sevm")["path"] == str(tmp_path / "links" / "fw.fd")


def test_symlinked_import_resolves_against_the_link_directory(tmp_path):
    (tmp_path / "lib").mkdir()
    (tmp_path / "app").mkdir()
    shutil.copyfile(AMDSEV_FW, tmp_path / "app" / "fw.fd")
    (tmp_path / "lib" / "base.sevm").write_text(
        'template "base" {\n  type sev\n  firmware "fw.fd"\n}\n')
    (tmp_path / "app" / "base.sevm").symlink_to(tmp_path / "lib" / "base.sevm")
    (tmp_path / "app" / "vm.sevm").write_text('import "base.sevm"\nvm "v" extends "base" {\n}\n')
    assert measured(tmp_path / "app" / "vm.sevm")["path"] == str(tmp_path / "app" / "fw.fd")


def test_dotdot_is_lexical(tmp_path):
    """``elsewhere/..`` cancels lexically even when ``elsewhere`` is a link to another tree."""
    (tmp_path / "far" / "away").mkdir(parents=True)
    (tmp_path / "near").mkdir()
    shutil.copyfile(AMDSEV_FW, tmp_path / "near" / "fw.fd")
    (tmp_path / "near" / "elsewhere").symlink_to(tmp_path / "far" / "away")
    manifest = tmp_path / "near" / "vm.sevm"
    manifest.write_text(vm_text("elsewhere/../fw.fd"))
    assert measured(manifest)["path"] == str(tmp_path / "near" / "fw.fd")
    assert locked(manifest)["vms"][0]["artifacts"]["firmware"]["path"] == "elsewhere/../fw.fd"


ODD_NAMES = ["with space.fd", 'quote".fd', "single'quote.fd", "back\\slash.fd", "ünïcødé-ファーム.fd",
             "$(touch pwned).fd", "semi;colon.fd", "-leading-dash.fd", "tab\t.fd",
             "a,comma=equals.fd"]


# (a line break in a path is refused: test_hostile_names.py)
@pytest.mark.parametrize("name", ODD_NAMES)
def test_odd_names(tmp_path, name):
    directory = tmp_path / "dir with spaces"
    directory.mkdir()
    shutil.copyfile(AMDSEV_FW, directory / name)
    manifest = directory / "vm.sevm"
    manifest.write_text(vm_text(name))
    resolved = str(directory / name)
    assert measured(manifest) == {"path": resolved, "sha256": FW_SHA}
    assert locked(manifest)["vms"][0]["artifacts"]["firmware"]["path"] == name
    export = run_cli(["export", str(manifest)]).clean()
    assert export.rc == 0, export.err
    argv = run_cli(["render", "qemu", str(manifest), "--format", "argv"]).clean()
    if argv.rc != 0:  # QEMU's option syntax cannot carry every name: a clean refusal
        assert argv.rc in (1, 2) and "Traceback" not in argv.err
        return
    drive = next(a for a in json.loads(argv.out) if a.startswith("if=pflash"))
    assert resolved.replace(",", ",,") in drive  # QEMU escapes commas by doubling
    script = run_cli(["render", "qemu", str(manifest)]).clean()
    assert script.rc == 0
    words = shlex.split(script.text.split("exec ", 1)[-1].replace("\\\n", " "), comments=False)
    assert any(resolved.replace(",", ",,") in w for w in words)
    assert not (tmp_path / "pwned").exists() and not (directory / "pwned").exists()


@pytest.fixture
def non_utf8(tmp_path):
    """A firmware file whose name is not UTF-8 (``fw\\xff.fd``) and a manifest naming it."""
    with open(os.path.join(os.fsencode(tmp_path), b"fw\xff.fd"), "wb") as handle:
        handle.write(AMDSEV_FW.read_bytes())
    manifest = tmp_path / "vm.sevm"
    manifest.write_text('vm "v" {\n  type sev\n  firmware "fw\\xff.fd"\n}\n')
    return manifest


def test_non_utf8_name(non_utf8):
    """Measured and rendered byte-exact; text output carries the byte as it is."""
    assert measured(non_utf8)["sha256"] == FW_SHA
    for argv in (["measure", str(non_utf8)], ["explain", str(non_utf8)],
                 ["explain", str(non_utf8), "--format", "json"],
                 ["render", "qemu", str(non_utf8)], ["diff", str(non_utf8), str(non_utf8)],
                 ["check", str(non_utf8)], ["export", str(non_utf8)]):
        run = run_cli(argv).clean()
        assert run.rc == 0, (argv, run.err)
    script = run_cli(["render", "qemu", str(non_utf8)]).out
    assert os.path.join(os.fsencode(non_utf8.parent), b"fw\xff.fd") in script


def test_non_utf8_name_in_toml(non_utf8):
    """TOML is UTF-8 text: the export carries the raw byte like standard output does, and a
    lock file (which sevm must read back) refuses the name cleanly."""
    run = run_cli(["export", str(non_utf8), "--format", "toml"]).clean()
    assert run.rc == 0 and b"fw\xff.fd" in run.out, run.err
    run = run_cli(["lock", "--no-cache", "--jobs", "1", str(non_utf8)]).clean()
    assert run.rc == 2 and "not valid UTF-8" in run.err, run.err
