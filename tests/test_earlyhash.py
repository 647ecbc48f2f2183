"""`sevm measure` and `sevm lock` hashing a kernel and initrd before the CLI is loaded
(earlyhash.py): the guess comes from the compiled-manifest cache, or from the manifest's text,
and is used only while it is still true."""
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
    monkeypatch.setattr(earlyhash, "_unstarted", [])
    return tmp_path


def _measure(*args: str) -> dict:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(["measure", "--format", "json", *args])
    assert status == 0, err.getvalue()
    return json.loads(out.getvalue())


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _digests(found: dict) -> dict[str, str]:
    return {Path(p).name: digest for p, (_, digest) in found.items()}


def test_a_new_manifest_is_guessed_from_the_files_it_imports(guest):
    """db.sevm names no image itself: its template in common.sevm does, relative to it."""
    earlyhash.start(["--no-cache", "fleet/db.sevm"])
    images = guest / "images"
    assert _digests(earlyhash.results()) == {KERNEL: _sha256(images / KERNEL),
                                             INITRD: _sha256(images / INITRD)}


def test_a_new_manifest_is_guessed_from_its_text(guest):
    from lock_support import vm_text
    (guest / "sub").mkdir()
    (guest / "sub" / "m.sevm").write_text(vm_text(images="../images"))
    earlyhash.start(["-j", "2", "sub/m.sevm"])  # an option's value is no manifest
    assert sorted(_digests(earlyhash.results())) == [INITRD, KERNEL]


def test_the_text_guess_is_one_kernel_and_one_initrd_at_most(guest):
    from lock_support import vm_text
    for name in ("other.img", "third.img"):
        shutil.copy(guest / "images" / INITRD, guest / name)
    first = vm_text("a", images="images")
    second = vm_text("b", images="images").replace(f"images/{INITRD}", "other.img")
    comment = '# initrd "third.img" in a comment, and one with an escape:\n'
    escaped = vm_text("c", images="images").replace(f'"images/{INITRD}"', '"third\\x2eimg"')
    (guest / "m.sevm").write_text(comment + escaped + second + first)
    earlyhash.start(["--no-cache", "m.sevm"])
    assert sorted(_digests(earlyhash.results())) == sorted([KERNEL, "other.img"])


@pytest.mark.parametrize("kind", ["fifo", "directory", "huge", "missing"])
def test_no_guess_from_what_is_not_a_manifest(guest, kind):
    target = guest / "m.sevm"
    if kind == "fifo":
        os.mkfifo(target)  # opened without blocking, and not read
    elif kind == "directory":
        target.mkdir()
    elif kind == "huge":  # larger than a manifest may be: the compiler refuses it too
        from lock_support import vm_text
        target.write_text(vm_text(images="images") + "#" * earlyhash.GUESS_READ_LIMIT)
    earlyhash.start(["--no-cache", "m.sevm"])
    assert earlyhash.results() == {}


def test_the_guess_reads_what_the_compiler_may_read():
    from sevmanifest.frontend.source import MAX_MANIFEST_BYTES
    assert earlyhash.GUESS_READ_LIMIT == MAX_MANIFEST_BYTES


def test_a_forked_process_does_not_use_the_parents_guess(guest, monkeypatch):
    earlyhash.start(["--no-cache", "fleet/db.sevm"])
    assert earlyhash.results()
    monkeypatch.setattr(earlyhash, "_owner", [os.getpid() + 1])  # as in a forked worker
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
    assert any(INITRD in path for path in earlyhash._planned)
    (guest / "m.sevm").write_text(text)
    done = _measure("--no-cache", "m.sevm")  # would hang here if it waited for the guess
    assert earlyhash._thread.is_alive()
    release.set()
    assert done["vms"][0]["artifacts"]["initrd"]["sha256"] == _sha256(other)
    assert earlyhash.results()  # the guess finished after all: unused, harmless


def _hashed_by_thread(monkeypatch, hold: threading.Event | None = None) -> dict[str, str]:
    """File name -> name of the thread that hashed it; the initrd waits for ``hold``."""
    hashed_by: dict[str, str] = {}
    real = earlyhash._hash

    def recording(path):
        if hold is not None and INITRD in path:
            assert hold.wait(60)
        hashed_by[Path(path).name] = threading.current_thread().name
        real(path)
    monkeypatch.setattr(earlyhash, "_hash", recording)
    return hashed_by


def test_the_kernel_is_hashed_by_who_asks_while_the_initrd_is(guest, monkeypatch):
    """The initrd gets the thread at once; the kernel waits for its turn, and a caller of
    results() that comes first hashes it itself (`sevm measure` asks once started: a third
    busy thread beside its start-up slowed the initrd's hashing)."""
    hold = threading.Event()
    hashed_by = _hashed_by_thread(monkeypatch, hold)
    earlyhash.start(["--no-cache", "fleet/db.sevm"])
    images = guest / "images"
    initrd, kernel = (os.path.realpath(images / name) for name in (INITRD, KERNEL))
    assert earlyhash.results({kernel}).keys() == {kernel}  # the initrd: not wanted, not waited for
    assert hashed_by == {KERNEL: "MainThread"}
    hold.set()
    assert _digests(earlyhash.results()) == {KERNEL: _sha256(images / KERNEL),
                                             INITRD: _sha256(images / INITRD)}
    assert hashed_by == {KERNEL: "MainThread", INITRD: "sevm-earlyhash"}


def test_the_thread_goes_on_to_the_kernel_when_nobody_asks(guest, monkeypatch):
    """`sevm lock` asks only after compiling its first manifests."""
    hashed_by = _hashed_by_thread(monkeypatch)
    earlyhash.start(["--no-cache", "fleet/db.sevm"])
    earlyhash._thread.join()
    assert hashed_by == {INITRD: "sevm-earlyhash", KERNEL: "sevm-earlyhash"}
    images = guest / "images"
    assert _digests(earlyhash.results()) == {KERNEL: _sha256(images / KERNEL),
                                             INITRD: _sha256(images / INITRD)}


def _record_streams(monkeypatch, log: Path) -> None:
    """Append the size of every file the digest engine streams to ``log`` (forked workers
    inherit the patch and append too)."""
    from sevmanifest.measure import hashing
    real = hashing.stream_into

    def recording(fd, state, *, size):
        with open(log, "a") as out:
            out.write(f"{size}\n")
        return real(fd, state, size=size)
    monkeypatch.setattr(hashing, "stream_into", recording)


def _guess_alive_at_fork(monkeypatch) -> list[bool]:
    """Whether the guessing thread was still running each time `sevm lock` forked a worker."""
    from sevmanifest.lock import forked
    alive: list[bool] = []
    real_start = forked.start

    def start(*args, **kwargs):
        alive.append(earlyhash._thread.is_alive())
        return real_start(*args, **kwargs)
    monkeypatch.setattr(forked, "start", start)
    return alive


@pytest.mark.parametrize("count", [3, 48])  # one process; two workers (lock/batch.py)
def test_lock_uses_what_was_hashed_early(guest, monkeypatch, count):
    from lock_support import read_lock, vm_text
    names = []
    for i in range(count):
        (guest / f"g{i}.sevm").write_text(vm_text(f"g{i}", images="images",
                                                  cmdline=f"console=ttyS0 id={i}"))
        names.append(f"g{i}.sevm")
    forked_with_threads = _guess_alive_at_fork(monkeypatch)
    earlyhash.start(["-j", "2", *names])  # as entry.py does for `sevm lock`
    assert len(earlyhash._planned) == 2
    log = guest / "streamed.txt"
    _record_streams(monkeypatch, log)
    assert main(["lock", "-j", "2", *names]) == 0
    streamed = [int(n) for n in log.read_text().split()] if log.exists() else []
    images = guest / "images"
    assert (images / INITRD).stat().st_size not in streamed  # taken from earlyhash
    assert (images / KERNEL).stat().st_size not in streamed
    assert forked_with_threads == ([False, False] if count == 48 else [])
    for name in names:
        artefacts = read_lock(guest / f"{name}.lock")["vms"][0]["artifacts"]
        assert artefacts["initrd"]["sha256"] == _sha256(images / INITRD)
        assert artefacts["kernel"]["sha256"] == _sha256(images / KERNEL)


def test_no_guess_is_still_hashing_when_lock_forks_its_workers(guest, monkeypatch):
    """A wrong guess (the manifests were edited after it) is not waited for by what needs
    digests, but the pool does not fork while its thread may still run."""
    from lock_support import vm_text
    names = [f"g{i}.sevm" for i in range(48)]
    for i, name in enumerate(names):
        (guest / name).write_text(vm_text(f"g{i}", images="images", cmdline=f"id={i}"))
    shutil.copy(guest / "images" / INITRD, guest / "other.img")
    release, real = threading.Event(), earlyhash._hash
    monkeypatch.setattr(earlyhash, "_hash", lambda path: (INITRD not in path or release.wait(60))
                        and real(path))
    alive_at_fork = _guess_alive_at_fork(monkeypatch)
    earlyhash.start(names)
    assert len(earlyhash._planned) == 2
    for name in names:  # edited: the guess is now wrong
        text = (guest / name).read_text()
        (guest / name).write_text(text.replace(f"images/{INITRD}", "other.img"))
    threading.Timer(0.5, release.set).start()
    assert main(["lock", "-j", "2", *names]) == 0
    assert alive_at_fork == [False, False]


def test_only_the_first_words_are_tried(guest, monkeypatch):
    """`sevm lock` over many manifests that name no kernel reads a few, not all of them."""
    from lock_support import vm_text
    names = [f"n{i}.sevm" for i in range(earlyhash.GUESS_CANDIDATES)]
    for name in names:
        (guest / name).write_text('vm "x" {\n  type sev\n}\n')
    (guest / "late.sevm").write_text(vm_text(images="images"))
    read = []
    real = earlyhash._guess_from_text
    monkeypatch.setattr(earlyhash, "_guess_from_text", lambda path: read.append(path) or real(path))
    earlyhash.start([*names, "late.sevm"])
    assert earlyhash.results() == {} and read == names
    earlyhash.start([*names[1:], "late.sevm"])
    assert sorted(_digests(earlyhash.results())) == [INITRD, KERNEL]
