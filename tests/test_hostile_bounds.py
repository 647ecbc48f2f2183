"""Every resource bound, at its limit (accepted) and one past it (a clean diagnostic).

The numbers are read from the modules that enforce them, so these tests follow a changed
constant; docs/robustness.md lists them.  Commands run in-process (hostile_support.run_cli).
"""
from __future__ import annotations

import json
import os

import pytest

from hostile_support import AMDSEV_FW, run_cli
from sevmanifest.commands import common, verify as verify_command
from sevmanifest.frontend import lower, parse, resolve, source
from sevmanifest.lock import guard
from sevmanifest.measure import hashing, ovmf, qmp
from sevmanifest.review import lintconfig

VM = f'vm "v" {{\n  type sev\n  firmware "{AMDSEV_FW}"\n}}\n'


def check(path) -> "Run":  # noqa: F821
    return run_cli(["check", str(path)]).clean()


def errors(run) -> str:
    return "\n".join(line for line in run.err.splitlines() if "error" in line)


# ---- manifest size -----------------------------------------------------------------------

def padded(text: str, size: int) -> str:
    """``text`` plus a comment line, exactly ``size`` bytes in all."""
    pad = size - len(text.encode()) - 2
    return text + "#" + "x" * pad + "\n"


def test_manifest_size(tmp_path):
    limit = source.MAX_MANIFEST_BYTES
    at, over = tmp_path / "at.sevm", tmp_path / "over.sevm"
    at.write_text(padded(VM, limit))
    over.write_text(padded(VM, limit + 1))
    assert at.stat().st_size == limit and over.stat().st_size == limit + 1
    assert check(at).rc == 0
    run = check(over)
    assert run.rc == 2 and f"larger than {limit // 1024} KiB" in run.err


def test_manifest_size_on_stdin():
    limit = source.MAX_MANIFEST_BYTES
    assert run_cli(["check", "-"], stdin=padded(VM, limit).encode()).clean().rc == 0
    run = run_cli(["check", "-"], stdin=padded(VM, limit + 1).encode()).clean()
    assert run.rc == 2 and "larger than" in run.err


def test_string_length_is_bounded_by_the_manifest(tmp_path):
    """No separate bound: a cmdline as long as the manifest allows is measured exactly."""
    kernel = tmp_path / "k"
    kernel.write_bytes(b"k")
    head = (f'vm "v" {{\n  type sev\n  firmware "{AMDSEV_FW}"\n  kernel "{kernel}"\n'
            '  kernel-hashes on\n  cmdline "')
    tail = '"\n}\n'
    length = source.MAX_MANIFEST_BYTES - len(head.encode()) - len(tail)
    path = tmp_path / "long.sevm"
    path.write_text(head + "a" * length + tail)
    run = run_cli(["measure", str(path), "--format", "json", "--no-cache"]).clean()
    assert run.rc == 0, errors(run)


# ---- imports and templates ---------------------------------------------------------------

def import_chain(directory, files: int):
    """root imports i1, which imports i2, ...: ``files`` files in all."""
    (directory / "root.sevm").write_text('import "i1.sevm"\n' + VM)
    for i in range(1, files):
        nested = f'import "i{i + 1}.sevm"\n' if i + 1 < files else ""
        (directory / f"i{i}.sevm").write_text(nested + f'template "t{i}" {{\n  memory 2GiB\n}}\n')
    return directory / "root.sevm"


def imports_of(directory, files: int):
    """root imports i1 ... i(files-1) directly: ``files`` files in all."""
    lines = "".join(f'import "i{i}.sevm"\n' for i in range(1, files))
    (directory / "root.sevm").write_text(lines + VM)
    for i in range(1, files):
        (directory / f"i{i}.sevm").write_text(f'template "t{i}" {{\n  memory 2GiB\n}}\n')
    return directory / "root.sevm"


@pytest.mark.parametrize("build, limit, message, where", [
    (import_chain, resolve.MAX_IMPORT_DEPTH, "imports nest deeper than {limit} levels",
     "i{below}.sevm:1:1"),  # at the import that goes too deep
    (imports_of, resolve.MAX_IMPORTED_FILES, "more than {limit} files", "root.sevm:{limit}:1"),
], ids=["import depth", "import count (root included)"])
def test_imports(tmp_path, build, limit, message, where):
    (tmp_path / "at").mkdir()
    (tmp_path / "over").mkdir()
    assert check(build(tmp_path / "at", limit)).rc == 0
    run = check(build(tmp_path / "over", limit + 1))
    assert run.rc == 2 and message.format(limit=limit) in run.err, run.err
    assert where.format(limit=limit, below=limit - 1) in run.err, run.err


def extends_chain(directory, templates: int):
    chain = "".join(f'template "t{i}" extends "t{i + 1}" {{\n  memory 2GiB\n}}\n'
                    for i in range(1, templates))
    chain += f'template "t{templates}" {{\n  memory 2GiB\n}}\n'
    path = directory / f"extends{templates}.sevm"
    path.write_text(chain + f'vm "v" extends "t1" {{\n  firmware "{AMDSEV_FW}"\n}}\n')
    return path


def test_extends_depth(tmp_path):
    """At most MAX_EXTENDS_DEPTH templates above a vm."""
    limit = resolve.MAX_EXTENDS_DEPTH
    assert check(extends_chain(tmp_path, limit)).rc == 0
    run = check(extends_chain(tmp_path, limit + 1))
    assert run.rc == 1 and f"extends chain longer than {limit}" in run.err


# ---- numbers, lists, vCPUs -----------------------------------------------------------------

def test_number_length(tmp_path):
    limit = parse.MAX_NUMBER_DIGITS
    for digits, rc in ((limit, 0), (limit + 1, 2)):
        path = tmp_path / f"n{digits}.sevm"
        path.write_text(VM.replace("  type sev\n", f"  type sev\n  vcpus {'0' * (digits - 1)}1\n"))
        run = check(path)
        assert run.rc == rc, errors(run)
    assert f"at most {limit}" in run.err


def vcpus_manifest(directory, values: list[int]):
    path = directory / f"vcpus{len(values)}-{values[-1]}.sevm"
    listed = ", ".join(map(str, values))
    path.write_text(VM.replace("  type sev\n", f"  type sev\n  vcpus {listed}\n"))
    return path


def test_vcpu_count(tmp_path):
    limit = lower.MAX_VCPUS
    assert check(vcpus_manifest(tmp_path, [limit])).rc == 0
    run = check(vcpus_manifest(tmp_path, [limit + 1]))
    assert run.rc == 1 and f"between 1 and {limit}" in run.err


@pytest.mark.skipif(not hasattr(parse, "MAX_LIST_VALUES"), reason="no list bound in this build")
def test_list_length(tmp_path):
    limit = parse.MAX_LIST_VALUES
    assert check(vcpus_manifest(tmp_path, list(range(1, limit + 1)))).rc == 0
    run = check(vcpus_manifest(tmp_path, list(range(1, limit + 2))))
    assert run.rc == 2 and f"more than {limit} values" in run.err


# ---- matrix size -----------------------------------------------------------------------

def matrix_manifest(directory, vms: list[tuple[int, int]]) -> str:
    """One sev-es vm per (vcpu count, cpu count): vcpus 1..a × a cpu signatures."""
    text = ""
    for index, (vcpus, cpus) in enumerate(vms):
        counts = ", ".join(str(n) for n in range(1, vcpus + 1))
        sigs = ", ".join(f"signature 0x{0xA00F00 + i:x}" for i in range(cpus))
        text += (f'vm "v{index}" {{\n  type sev-es\n  firmware "{AMDSEV_FW}"\n'
                 f'  vcpus {counts}\n  cpu {sigs}\n}}\n')
    path = directory / f"matrix-{len(vms)}-{sum(a * b for a, b in vms)}.sevm"
    path.write_text(text)
    return str(path)


def test_matrix_size_per_vm(tmp_path):
    limit = guard.MAX_VARIANTS
    assert limit == 100 * 100
    assert check(matrix_manifest(tmp_path, [(100, 100)])).rc == 0
    path = matrix_manifest(tmp_path, [(101, 100)])
    tik = tmp_path / "tik"
    tik.write_bytes(bytes(16))
    for argv in (["check", path], ["measure", path, "--no-cache"], ["render", "qemu", path],
                 ["explain", path], ["export", path], ["lock", path, "--no-cache"],
                 ["verify", path, "--tik", str(tik), "--measurement", "00" * 48,
                  "--api-major", "1", "--api-minor", "0", "--build", "0"]):
        run = run_cli(argv).clean()
        assert run.rc in (1, 2) and "10,100 variants" in run.err, (argv, run.err)
        assert f"more than the limit of {limit:,}" in run.err


def test_matrix_size_per_manifest(tmp_path):
    limit = common.MAX_MANIFEST_VARIANTS
    per_vm = guard.MAX_VARIANTS
    full = [(100, 100)] * (limit // per_vm)
    assert sum(a * b for a, b in full) == limit
    assert check(matrix_manifest(tmp_path, full)).rc == 0
    path = matrix_manifest(tmp_path, full + [(1, 1)])
    for argv in (["check", path], ["measure", path, "--no-cache"], ["lock", path, "--no-cache"]):
        run = run_cli(argv).clean()
        assert run.rc == 1 and f"{limit + 1:,} variants together" in run.err, run.err


# ---- artefact sizes ------------------------------------------------------------------------

def test_firmware_size(tmp_path):
    limit = ovmf.MAX_FIRMWARE_SIZE
    for size, ok in ((limit, True), (limit + 1, False)):
        fw = tmp_path / f"fw{size}.fd"
        with open(fw, "wb") as handle:
            handle.truncate(size)  # sparse: nothing is written
        path = tmp_path / f"fw{size}.sevm"
        path.write_text(VM.replace(str(AMDSEV_FW), str(fw)))
        run = check(path)
        assert (run.rc == 0) == ok, errors(run)
    assert f"limit {limit >> 20} MiB" in run.err


@pytest.mark.parametrize("role", ["kernel", "initrd"])
def test_kernel_and_initrd_size(tmp_path, role, monkeypatch):
    """The real limit (4 GiB) past its end; the comparison itself with a small limit."""
    limit = hashing.MAX_LOADED_SIZE
    assert limit == 4 << 30
    kernel, initrd = tmp_path / "k", tmp_path / "i"
    kernel.write_bytes(b"k")
    initrd.write_bytes(b"i")
    target = kernel if role == "kernel" else initrd
    path = tmp_path / "vm.sevm"
    path.write_text(VM.replace("  type sev\n", f'  type sev\n  kernel "{kernel}"\n'
                               f'  initrd "{initrd}"\n  kernel-hashes on\n'))
    with open(target, "wb") as handle:
        handle.truncate(limit + 1)
    run = run_cli(["measure", str(path), "--no-cache"]).clean()
    assert run.rc == 2 and f"{limit + 1:,} bytes, more than QEMU can load" in run.err
    monkeypatch.setitem(hashing.MAX_SIZE_BY_ROLE, role, 1000)
    for size, rc in ((1000, 0), (1001, 2)):
        with open(target, "wb") as handle:
            handle.truncate(size)
        assert run_cli(["measure", str(path), "--no-cache"]).clean().rc == rc


# ---- host inputs ---------------------------------------------------------------------------

def test_qmp_reply_size(tmp_path):
    limit = qmp.MAX_REPLY_BYTES
    measure = tmp_path / "vm.sevm"
    measure.write_text(VM)
    tik = tmp_path / "tik"
    tik.write_bytes(bytes(16))
    reply = json.dumps({"data": "A" * 63 + "="})  # 47 bytes: a clean "48 bytes" failure
    for size, needle in ((limit, "decodes to 47 bytes"), (limit + 1, f"larger than {limit} bytes")):
        path = tmp_path / f"lm{size}.json"
        path.write_text(reply + " " * (size - len(reply)))
        assert path.stat().st_size == size
        run = run_cli(["verify", str(measure), "--tik", str(tik), "--launch-measure", str(path),
                       "--api-major", "1", "--api-minor", "0", "--build", "0"]).clean()
        assert run.rc == 2 and needle in run.err, run.err


def test_tik_size(tmp_path):
    measure = tmp_path / "vm.sevm"
    measure.write_text(VM)
    read_limit = verify_command.TIK_READ_LIMIT
    for size, needle in ((15, "has 15 bytes"), (16, None), (17, "has 17 bytes"),
                         (read_limit, f"has {read_limit} bytes"),
                         (read_limit + 1, f"larger than {read_limit} bytes")):
        tik = tmp_path / f"tik{size}"
        tik.write_bytes(os.urandom(size))
        run = run_cli(["verify", str(measure), "--tik", str(tik), "--measurement", "00" * 48,
                       "--api-major", "1", "--api-minor", "0", "--build", "0"]).clean()
        if needle is None:
            assert run.rc == 1  # read, and no match
        else:
            assert run.rc == 2 and needle in run.err, run.err


def test_lint_configuration_size(tmp_path):
    limit = lintconfig.MAX_CONFIG_BYTES
    manifest = tmp_path / "vm.sevm"
    manifest.write_text(VM)
    config = tmp_path / ".sevm.toml"
    config.write_text(padded('disable = ["SEVM104"]\n', limit))
    assert check(manifest).rc == 0
    config.write_text(padded('disable = ["SEVM104"]\n', limit + 1))
    run = check(manifest)
    assert run.rc == 2 and "larger than 1 MiB" in run.err
