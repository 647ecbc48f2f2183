"""Output integrity: every file sevm writes goes through fsutil.atomic_write, and a write
that fails (read-only directory, full disk) is a clean error (exit 2, no traceback) that
leaves the previous file intact and no temporary file behind.

How the failures are made (hostile_support): a full disk is RLIMIT_FSIZE in the child
(writes past 64 bytes fail with EFBIG, SIGXFSZ ignored) or /dev/full (ENOSPC); a read-only
directory is chmod 0555, and since CI runs as root, which ignores mode bits, the child
drops CAP_DAC_OVERRIDE from its capability bounding set first (chattr +i as a fallback).
"""
from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

from hostile_support import AMDSEV_FW, full_disk, read_only_strategy, run_cli, run_sevm

SRC = Path(__file__).resolve().parents[1] / "src" / "sevmanifest"

# Writes that do not go through atomic_write, and why they may not.
ALLOWED_WRITERS = {
    "fsutil.py": "atomic_write itself, and replace_with_chunks (temporary file + rename for "
                 "synthetic images too large for memory and for digest-cache entries)",
    "review/gitrev.py": "blobs of a git revision, into sevm's own private temporary directory",
    "streams.py": "opens /dev/null for writing in place of a standard stream that was closed, "
                  "whose reader went away or that cannot be written",
}
# module.function calls that create or replace files, and methods that write a whole file
MODULE_WRITES = {"os": {"replace", "rename", "renames", "link", "symlink", "truncate", "mkfifo"},
                 "shutil": {"copy", "copy2", "copyfile", "copytree", "move"},
                 "tempfile": {"mkstemp", "NamedTemporaryFile", "TemporaryFile"}}
METHOD_WRITES = {"write_text", "write_bytes"}


def _writes(tree: ast.AST) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        owner = (func.value.id if isinstance(func, ast.Attribute)
                 and isinstance(func.value, ast.Name) else None)
        if name in MODULE_WRITES.get(owner, ()) or name in METHOD_WRITES:
            found.append(f"{ast.unparse(func)}() line {node.lineno}")
        elif name in ("open", "fdopen"):
            text = ast.unparse(node)
            modes = [a.value for a in node.args[1:2] + [k.value for k in node.keywords
                                                         if k.arg == "mode"]
                     if isinstance(a, ast.Constant) and isinstance(a.value, str)]
            if any(set(m) & set("wax+") for m in modes) or any(
                    flag in text for flag in ("O_WRONLY", "O_RDWR", "O_CREAT")):
                found.append(f"{text} line {node.lineno}")
    return found


def test_every_write_goes_through_atomic_write():
    offenders, writers = {}, set()
    for path in sorted(SRC.rglob("*.py")):
        relative = path.relative_to(SRC).as_posix()
        writes = _writes(ast.parse(path.read_text(), str(path)))
        if writes:
            writers.add(relative)
        if writes and relative not in ALLOWED_WRITERS:
            offenders[relative] = writes
    assert not offenders, f"write paths outside fsutil.atomic_write: {offenders}"
    assert writers == set(ALLOWED_WRITERS), "the scan still finds every allowed writer"


# ---- the five commands that write files ------------------------------------------------

UNFORMATTED = f'vm "v" {{\n      type    sev\n  firmware   "{AMDSEV_FW}"\n}}\n'
SEV_ES = f'vm "v" {{\n  type sev-es\n  firmware "{AMDSEV_FW}"\n  cpu "EPYC-Milan"\n}}\n'


def prepare(directory: Path) -> dict[str, tuple[list[str], Path]]:
    """Each command with the file it would (re)write; every target exists with old bytes."""
    (directory / "fmt.sevm").write_text(UNFORMATTED)
    (directory / "vm.sevm").write_text(SEV_ES)
    (directory / "vm.sevm.lock").write_text("# an old lock\n")
    (directory / "run.sh").write_text("# old script\n")
    (directory / "export.json").write_text("{}\n")
    (directory / "vmsa").mkdir()
    page = directory / "vmsa" / "v-1vcpu-EPYC-Milan-qemu-legacy-sf0-vcpu0.bin"
    page.write_bytes(b"old page")
    m = str(directory / "vm.sevm")
    return {
        "fmt": (["fmt", str(directory / "fmt.sevm")], directory / "fmt.sevm"),
        "lock": (["lock", "--no-cache", m], directory / "vm.sevm.lock"),
        "render -o": (["render", "qemu", m, "-o", str(directory / "run.sh")], directory / "run.sh"),
        "measure --dump-vmsa": (["measure", "--no-cache", m, "--dump-vmsa",
                                 str(directory / "vmsa")], page),
        "export -o": (["export", "--no-cache", m, "-o", str(directory / "export.json")],
                      directory / "export.json"),
    }


COMMANDS = ("fmt", "lock", "render -o", "measure --dump-vmsa", "export -o")


def snapshot(directory: Path) -> dict[str, bytes]:
    return {p.relative_to(directory).as_posix(): p.read_bytes()
            for p in sorted(directory.rglob("*")) if p.is_file()}


def test_the_commands_do_write_when_they_can(tmp_path):
    """Control: without the failure every target is rewritten."""
    for name, (argv, target) in prepare(tmp_path).items():
        old = target.read_bytes()
        run = run_cli(argv).clean()
        assert run.rc == 0, (name, run.err)
        assert target.read_bytes() != old, name


@pytest.mark.parametrize("command", COMMANDS)
def test_read_only_directory(tmp_path, command):
    strategy = read_only_strategy()
    work = tmp_path / "work"
    work.mkdir()
    argv, target = prepare(work)[command]
    locked = target.parent
    before = snapshot(work)
    with strategy.applied(locked):
        run = run_sevm(argv, cwd=work, preexec=strategy.preexec,
                       env={"PYTHONDONTWRITEBYTECODE": "1", "SEVM_NO_CACHE": "1"})
    run.clean()
    assert run.rc == 2, (strategy.name, run.rc, run.err)
    assert f"cannot write {target}" in run.err and "ermission denied" in run.err, run.err
    assert snapshot(work) == before  # old bytes intact, nothing added


@pytest.mark.parametrize("command", COMMANDS)
def test_full_disk(tmp_path, command):
    argv, target = prepare(tmp_path)[command]
    before = snapshot(tmp_path)
    run = run_sevm(argv, cwd=tmp_path, preexec=full_disk(64),
                   env={"PYTHONDONTWRITEBYTECODE": "1", "SEVM_NO_CACHE": "1"})
    run.clean()
    assert run.rc == 2, (run.rc, run.err)
    assert f"cannot write {target}: File too large" in run.err, run.err
    assert snapshot(tmp_path) == before  # no partial file, no temporary file left


@pytest.mark.parametrize("argv", [["render", "qemu"], ["export"]])
def test_dev_full(tmp_path, argv):
    (tmp_path / "vm.sevm").write_text(SEV_ES)
    run = run_cli([*argv, str(tmp_path / "vm.sevm"), "-o", "/dev/full"]).clean()
    assert run.rc == 2 and "cannot write /dev/full: No space left on device" in run.err
    assert os.path.exists("/dev/full") and not os.path.isfile("/dev/full")


def test_output_to_dev_stdout_and_dev_null_streams(tmp_path):
    (tmp_path / "vm.sevm").write_text(SEV_ES)
    for target in ("/dev/null", "/dev/stdout"):
        run = run_sevm(["export", str(tmp_path / "vm.sevm"), "-o", target])
        assert run.rc == 0, run.err
        assert (b'"format": "sevmanifest-reference-values"' in run.out) == (target == "/dev/stdout")
    assert os.path.islink("/dev/stdout") or not os.path.isfile("/dev/stdout")


@pytest.fixture
def dev_shm_dir():
    """A directory on /dev/shm, the tmpfs where CI jobs (containers) keep work trees."""
    import shutil
    import tempfile
    if not os.path.isdir("/dev/shm"):
        pytest.skip("no /dev/shm on this machine")
    directory = Path(tempfile.mkdtemp(prefix="sevm-test-", dir="/dev/shm"))
    yield directory
    shutil.rmtree(directory)


def test_files_under_dev_shm_are_files_not_streams(dev_shm_dir):
    """Only /proc, the descriptor links (/dev/stdout, /dev/fd/N) and devices are streams:
    a work tree on /dev/shm is locked, rendered and exported like any other."""
    argv_target = prepare(dev_shm_dir)
    for name in ("lock", "render -o", "export -o"):
        argv, target = argv_target[name]
        target.unlink()
        target.symlink_to(dev_shm_dir / "precious.txt")  # replaced, not written through
        run = run_cli(argv).clean()
        assert run.rc == 0, (name, run.err)
        assert target.is_file() and not target.is_symlink(), name
        assert not (dev_shm_dir / "precious.txt").exists(), name
    assert not [p for p in dev_shm_dir.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("target", ["/dev/stdout", "/dev/fd/1", "/proc/self/fd/1"])
def test_descriptor_links_are_written_through(tmp_path, target):
    (tmp_path / "vm.sevm").write_text(SEV_ES)
    run = run_sevm(["export", str(tmp_path / "vm.sevm"), "-o", target])
    assert run.rc == 0, run.err
    assert b'"format": "sevmanifest-reference-values"' in run.out


def test_a_symlink_at_the_target_is_replaced_not_followed(tmp_path):
    """`web.sevm.lock -> elsewhere` planted in a repository cannot redirect the output."""
    (tmp_path / "vm.sevm").write_text(SEV_ES)
    precious = tmp_path / "precious.txt"
    precious.write_text("keep me\n")
    lock = tmp_path / "vm.sevm.lock"
    lock.symlink_to(precious)
    run = run_cli(["lock", "--no-cache", str(tmp_path / "vm.sevm")]).clean()
    assert run.rc == 0, run.err
    assert precious.read_text() == "keep me\n"
    assert not lock.is_symlink() and lock.read_text().startswith("# Generated by `sevm lock")


@pytest.mark.parametrize("extra", ["", "é"])  # "é" spans the temporary name's cut (byte 237)
def test_a_target_name_of_255_bytes_is_written(tmp_path, extra):
    """The temporary file's name is longer than the target's: shortened, not refused."""
    head = "v" * (236 if extra else 237) + extra
    stem = head + "v" * (255 - len(".sevm.lock") - len(head.encode()))
    manifest = tmp_path / f"{stem}.sevm"
    manifest.write_text(SEV_ES)
    lock = Path(f"{manifest}.lock")
    assert len(os.fsencode(lock.name)) == 255
    run = run_cli(["lock", "--no-cache", str(manifest)]).clean()
    assert run.rc == 0, run.err
    assert lock.read_text().startswith("# Generated by `sevm lock")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([manifest.name, lock.name])
