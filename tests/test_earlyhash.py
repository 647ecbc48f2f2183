"""`sevm measure` hashing its kernel and initrd before the CLI is loaded (earlyhash.py): the
guess comes from the compiled-manifest cache, and is used only while it is still true."""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from sevmanifest import earlyhash
from sevmanifest.cli import main

REPO = Path(__file__).resolve().parents[1]
IMAGES = REPO / "manifests" / "images"
KERNEL, INITRD = "vmlinuz.synthetic", "initrd.synthetic.img"


@pytest.fixture
def guest(tmp_path, monkeypatch):
    shutil.copytree(REPO / "manifests" / "fleet", tmp_path / "fleet")
    shutil.copytree(IMAGES, tmp_path / "images")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("SEVM_NO_CACHE", raising=False)
    monkeypatch.setattr(earlyhash, "_thread", None)
    monkeypatch.setattr(earlyhash, "_found", {})
    monkeypatch.setattr(earlyhash, "_interval", [])
    monkeypatch.setattr(earlyhash, "_planned", {})
    monkeypatch.setattr(earlyhash, "_plan_ready", threading.Event())
    return tmp_path


def _measure(*args: str) -> dict:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(["measure", "--format", "json", *args])
    assert status == 0, err.getvalue()
    return json.loads(out.getvalue())


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_nothing_is_guessed_before_the_manifest_was_compiled_once(guest):
    earlyhash.start(["--no-cache", "fleet/db.sevm"])
    assert earlyhash.results() == {}


def test_an_unchanged_manifest_names_its_kernel_and_initrd(guest, monkeypatch):
    monkeypatch.setattr(earlyhash, "_interval", [])
    _measure("--no-cache", "fleet/db.sevm")  # compiles, and stores the entry
    before = sys.getswitchinterval()
    earlyhash.start(["--vm", "db", "--no-cache", "fleet/db.sevm"])
    assert sys.getswitchinterval() <= earlyhash.SWITCH_INTERVAL  # while it hashes
    found = earlyhash.results()
    assert sys.getswitchinterval() == before
    images = guest / "images"
    assert {Path(p).name: digest for p, (_, digest) in found.items()} == {
        KERNEL: _sha256(images / KERNEL), INITRD: _sha256(images / INITRD)}


def test_files_the_digest_cache_knows_are_left_to_it(guest):
    from sevmanifest.lock.cache import CACHE_SUBDIR, entry_name
    _measure("--no-cache", "fleet/db.sevm")
    # an entry for the initrd (the digest cache itself only writes entries for files older
    # than a few seconds; whether one exists is all earlyhash looks at)
    initrd = os.path.realpath(guest / "images" / INITRD)
    entry = guest / "xdg" / "sevmanifest" / CACHE_SUBDIR / entry_name(initrd)
    entry.parent.mkdir(parents=True)
    entry.write_text("{}")
    earlyhash.start(["fleet/db.sevm"])
    assert [Path(p).name for p in earlyhash.results()] == [KERNEL]
    earlyhash.start(["--no-cache", "fleet/db.sevm"])  # --no-cache: the digest cache is not used
    assert sorted(Path(p).name for p in earlyhash.results()) == [INITRD, KERNEL]


def test_a_file_changed_after_the_guess_is_hashed_again(guest):
    from lock_support import vm_text
    (guest / "m.sevm").write_text(vm_text(images="images"))  # nothing pinned
    expected = _measure("--no-cache", "m.sevm")
    earlyhash.start(["--no-cache", "m.sevm"])
    assert len(earlyhash.results()) == 2
    initrd = guest / "images" / INITRD
    data = bytearray(initrd.read_bytes())
    data[0] ^= 0xFF  # same size, other bytes: only the identity (ctime, mtime) tells
    initrd.write_bytes(bytes(data))
    changed = _measure("--no-cache", "m.sevm")
    assert changed != expected
    assert changed["vms"][0]["artifacts"]["initrd"]["sha256"] == _sha256(initrd)
    os.environ["SEVM_NO_CACHE"] = "1"  # no cache and no guess at all
    try:
        assert changed == _measure("--no-cache", "m.sevm")
    finally:
        del os.environ["SEVM_NO_CACHE"]


def test_the_installed_command_starts_early_and_prints_the_same(guest):
    sevm = shutil.which("sevm")
    assert sevm is not None
    args = [sevm, "measure", "--format", "json", "--no-cache", "fleet/db.sevm"]
    env = dict(os.environ)
    first = subprocess.run(args, capture_output=True, text=True, env=env, timeout=120)
    second = subprocess.run(args, capture_output=True, text=True, env=env, timeout=120)
    plain = subprocess.run(args, capture_output=True, text=True, timeout=120,
                           env=dict(env, SEVM_NO_CACHE="1"))
    assert first.returncode == second.returncode == plain.returncode == 0, first.stderr
    assert first.stdout == second.stdout == plain.stdout
    assert json.loads(first.stdout)


def test_files_the_edited_manifest_no_longer_names_are_not_waited_for(guest, monkeypatch):
    from lock_support import vm_text
    (guest / "m.sevm").write_text(vm_text(images="images"))
    _measure("--no-cache", "m.sevm")  # the entry names images/INITRD
    other = guest / "other.img"
    shutil.copy(guest / "images" / INITRD, other)
    text = (guest / "m.sevm").read_text().replace(f"images/{INITRD}", "other.img")
    release, real = threading.Event(), earlyhash._hash
    monkeypatch.setattr(earlyhash, "_hash", lambda path: (INITRD not in path or release.wait(60))
                        and real(path))
    earlyhash.start(["--no-cache", "m.sevm"])  # guesses from the old entry, then blocks
    assert earlyhash._plan_ready.wait(60)  # (before the edit below replaces the entry)
    assert any(INITRD in path for path in earlyhash._planned)
    (guest / "m.sevm").write_text(text)
    done = _measure("--no-cache", "m.sevm")  # would hang here if it waited for the guess
    assert earlyhash._thread.is_alive()
    release.set()
    assert done["vms"][0]["artifacts"]["initrd"]["sha256"] == _sha256(other)
    assert earlyhash.results()  # the guess finished after all: unused, harmless
