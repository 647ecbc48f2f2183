"""Helpers for the render tests: model objects built directly, the real programs, and a
stand-in QEMU that records its argv."""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sevmanifest.model import (VM, Artefact, Cpu, Disk, GuestType, HostMatrix, Launch, Policy, Vmm)

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("SEVM_SHARED", REPO.parent / "shared"))
# The AmdSev OVMF tail (vectors fixture A): has the reset block and a usable hash table.
AMDSEV_TAIL = SHARED / "vectors" / "sev-snp-measure" / "ovmf_AmdSev_suffix.bin"
QEMU = "/usr/bin/qemu-system-x86_64"
VIRT_XML_VALIDATE = "/usr/bin/virt-xml-validate"
IN_CI = os.environ.get("CI", "").lower() == "true"


def need_tool(path: str) -> str:
    """The tool's path; a missing tool fails in CI and skips locally."""
    if shutil.which(path) is None:
        message = f"{path} is not installed (.ci/run installs it)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


def artefacts(tmp: Path) -> dict[str, Path]:
    """A firmware copy plus small stand-in kernel and initrd files under ``tmp``."""
    tmp.mkdir(parents=True, exist_ok=True)
    firmware = tmp / "OVMF.amdsev.fd"
    firmware.write_bytes(AMDSEV_TAIL.read_bytes())
    kernel = tmp / "vmlinuz"
    kernel.write_bytes(b"not really a kernel\n")
    initrd = tmp / "initrd.img"
    initrd.write_bytes(b"not really an initrd\n")
    return {"firmware": firmware, "kernel": kernel, "initrd": initrd}


def make_vm(tmp: Path, **changes) -> VM:
    """A measured-boot SEV-ES VM with stand-in artefacts; ``changes`` replace fields.
    ``host=dict(...)`` replaces fields of the host matrix instead."""
    files = artefacts(tmp)
    host_changes = changes.pop("host", {})
    vm = VM(
        name="test-vm", file=str(tmp / "test.sevm"), type=GuestType.SEV_ES,
        firmware=Artefact("firmware", "OVMF.amdsev.fd", files["firmware"]),
        kernel=Artefact("kernel", "vmlinuz", files["kernel"]),
        initrd=Artefact("initrd", "initrd.img", files["initrd"]),
        cmdline=b"console=ttyS0 root=/dev/vda1 ro", kernel_hashes=True,
        vcpus=(1, 4), cpus=(Cpu(0x00A00F11, "EPYC-Milan", 25, 1, 1),), memory=2 << 30,
        machine="q35", host=HostMatrix(qemu_version=(9, 2)),
        policy=Policy(0x5), launch=Launch(net="user", console="serial"))
    vm = dataclasses.replace(vm, **changes)
    if host_changes:
        vm = dataclasses.replace(vm, host=dataclasses.replace(vm.host, **host_changes))
    return vm


def sev_vm(tmp: Path, **changes) -> VM:
    """A plain-SEV measured-boot VM without a CPU model."""
    base = dict(type=GuestType.SEV, policy=Policy(0x1), cpus=(), vcpus=(2,))
    base.update(changes)
    return make_vm(tmp, **base)


MILAN = Cpu(0x00A00F11, "EPYC-Milan", 25, 1, 1)
GENOA = Cpu(0x00A10F10, "EPYC-Genoa", 25, 17, 0)
ROME_BY_FMS = Cpu(0x00830F10, None, 23, 49, 0)


# --- a stand-in QEMU that records its argv as bytes -------------------------------------

RECORDER = """#!{python}
import json, os, sys
with open(os.environ["ARGV_DUMP"], "w") as out:
    json.dump([os.fsencode(a).hex() for a in sys.argv[1:]], out)
"""


def recorder(tmp: Path) -> Path:
    path = tmp / "fake-qemu"
    path.write_text(RECORDER.format(python=sys.executable))
    path.chmod(0o755)
    return path


def run_script(script: bytes, tmp: Path, extra: list[str] = ()) -> list[bytes]:
    """Run a rendered shell script with QEMU pointed at the recorder; the argv it got."""
    path = tmp / "launch.sh"
    path.write_bytes(script)
    dump = tmp / "argv.json"
    env = dict(os.environ, QEMU=str(recorder(tmp)), ARGV_DUMP=str(dump))
    subprocess.run(["/bin/sh", str(path), *extra], env=env, check=True, timeout=30)
    return [bytes.fromhex(h) for h in json.loads(dump.read_text())]


# --- real QEMU --------------------------------------------------------------------------

# QEMU 7.2 reports these only after it has parsed every -machine/-object/-drive option and
# reached the accelerator's SEV initialisation (facts §7.5, real-tools.md).
SEV_INIT_MESSAGES = ("sev_kvm_init", "Failed to open /dev/sev", "Could not access KVM kernel module",
                     "failed to initialize kvm", "/dev/kvm")
PARSE_ERRORS = ("Invalid parameter", "is unexpected", "expects", "is missing", "not found",
                "Unknown driver", "does not support the option", "unsupported machine type",
                "Could not open", "unable to find CPU model")


def run_qemu(argv: list[str], *, timeout: float = 20) -> subprocess.CompletedProcess:
    """Run a rendered argv (program name replaced by the real QEMU), paused, no display."""
    return subprocess.run([QEMU, *argv[1:], "-S", "-display", "none"], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, errors="replace", timeout=timeout)


def assert_reached_sev_init(result: subprocess.CompletedProcess, argv: list[str]) -> None:
    stderr = result.stderr
    problems = [p for p in PARSE_ERRORS if p in stderr]
    assert not problems, f"QEMU rejected the rendered options ({problems}):\n{stderr}\nargv: {argv}"
    assert result.returncode != 0 and any(m in stderr for m in SEV_INIT_MESSAGES), (
        f"QEMU did not stop at SEV/KVM initialisation (rc {result.returncode}):\n{stderr}")
