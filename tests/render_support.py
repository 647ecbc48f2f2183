"""Helpers for the render tests: model objects built directly, the real programs, and a
stand-in QEMU that records its argv."""
from __future__ import annotations

import ctypes
import dataclasses
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from sevmanifest.model import VM, Artefact, Cpu, GuestType, HostMatrix, Launch, Policy

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("SEVM_SHARED", REPO.parent / "shared"))
# The AmdSev OVMF tail (vectors fixture A): has the reset block and a usable hash table.
AMDSEV_TAIL = SHARED / "vectors" / "sev-snp-measure" / "ovmf_AmdSev_suffix.bin"
QEMU = "/usr/bin/qemu-system-x86_64"
VIRT_XML_VALIDATE = "/usr/bin/virt-xml-validate"
IN_CI = os.environ.get("CI", "").lower() == "true"
EXAMPLES = sorted((REPO / "manifests").rglob("*.sevm"))


def example_id(path: Path) -> str:
    return str(path.relative_to(REPO / "manifests"))


def need_tool(path: str) -> str:
    """The tool's path; a missing tool fails in CI and skips locally."""
    if shutil.which(path) is None:
        message = f"{path} is not installed (.ci/run installs it)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


def need_module(name: str) -> None:
    """Import ``name``; missing, it fails in CI and skips locally."""
    try:
        __import__(name)
    except ImportError:
        if IN_CI:
            pytest.fail(f"Python package {name} is not installed")
        pytest.skip(f"Python package {name} is not installed")


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

# /bin/sh's printf copies each argument's bytes unchanged; NUL cannot occur in an argument.
RECORDER = """#!/bin/sh
for arg; do printf '%s\\0' "$arg"; done > "$ARGV_DUMP"
"""


def recorder(tmp: Path) -> Path:
    path = tmp / "fake-qemu"
    path.write_text(RECORDER)
    path.chmod(0o755)
    return path


def run_script(script: bytes, tmp: Path, extra: list[str] = ()) -> list[bytes]:
    """Run a rendered shell script with QEMU pointed at the recorder; the argv it got."""
    path = tmp / "launch.sh"
    path.write_bytes(script)
    dump = tmp / "argv.bin"
    env = dict(os.environ, QEMU=str(recorder(tmp)), ARGV_DUMP=str(dump))
    subprocess.run(["/bin/sh", str(path), *extra], env=env, check=True, timeout=30)
    return dump.read_bytes().split(b"\0")[:-1]


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


def qemu_accepts_without_sev(argv: list[str], *, timeout: float = 30) -> tuple[bool, str]:
    """Run ``argv`` under TCG without the SEV object and the direct-boot files, so QEMU
    builds the whole machine (-cpu, -device, -netdev, console), and quit over QMP.
    True when QEMU reached its main loop; QEMU's stderr either way."""
    directory = tempfile.mkdtemp(prefix="sevm-qmp-", dir="/tmp")  # short: socket path limit
    sock = os.path.join(directory, "qmp")
    args = [QEMU] + _without_sev(argv[1:]) + ["-display", "none",
                                                "-qmp", f"unix:{sock},server=on,wait=on"]
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    greeted = False
    try:
        client = _connect(sock, proc, timeout)
        if client is not None:
            with client, client.makefile("rwb") as stream:
                # QEMU runs QMP commands only from its main loop, i.e. after it built the
                # machine; a failed build exits 1, so exit status 0 after "quit" proves it
                greeted = b'"QMP"' in stream.readline()
                stream.write(b'{"execute":"qmp_capabilities"}\n{"execute":"quit"}\n')
                stream.flush()
                stream.read()
    except OSError:
        pass
    finally:
        _, stderr = proc.communicate(timeout=timeout)
        shutil.rmtree(directory, ignore_errors=True)
    return greeted and proc.returncode == 0, stderr.decode(errors="replace")


def _connect(path: str, proc: subprocess.Popen, timeout: float):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        client = socket.socket(socket.AF_UNIX)
        client.settimeout(timeout)
        try:
            client.connect(path)
            return client
        except OSError:
            client.close()
            time.sleep(0.01)
    return None


def _without_sev(args: list[str]) -> list[str]:
    out, i = [], 0
    while i < len(args):
        flag = args[i]
        value = args[i + 1] if i + 1 < len(args) else None
        if flag in ("-kernel", "-initrd", "-append") or (flag == "-object" and "sev-guest" in value):
            i += 2
            continue
        if flag == "-accel":
            value = "tcg"
        elif flag == "-machine":
            value = ",".join(p for p in value.split(",") if not p.startswith("confidential-guest-support="))
        elif flag not in ("-drive", "-netdev", "-device", "-cpu", "-smp", "-m", "-nic", "-display"):
            out.append(flag)
            i += 1
            continue
        out += [flag, value]
        i += 2
    return out


# --- a minimal empty qcow2 image (QEMU opens drives before SEV init) ---------------------

class _Qcow2Header(ctypes.BigEndianStructure):
    """qcow2 version 2 header (QEMU docs/interop/qcow2.txt)."""
    _pack_ = 1
    _fields_ = [("magic", ctypes.c_uint32), ("version", ctypes.c_uint32),
                ("backing_file_offset", ctypes.c_uint64), ("backing_file_size", ctypes.c_uint32),
                ("cluster_bits", ctypes.c_uint32), ("size", ctypes.c_uint64),
                ("crypt_method", ctypes.c_uint32), ("l1_size", ctypes.c_uint32),
                ("l1_table_offset", ctypes.c_uint64), ("refcount_table_offset", ctypes.c_uint64),
                ("refcount_table_clusters", ctypes.c_uint32), ("nb_snapshots", ctypes.c_uint32),
                ("snapshots_offset", ctypes.c_uint64)]


def write_qcow2(path: Path, size: int = 1 << 20) -> Path:
    """Clusters: 0 header, 1 refcount table, 2 refcount block, 3 L1 table (all empty)."""
    cluster = 1 << 16
    header = _Qcow2Header(magic=0x514649FB, version=2, cluster_bits=16, size=size, l1_size=1,
                          l1_table_offset=3 * cluster, refcount_table_offset=cluster,
                          refcount_table_clusters=1)
    image = bytearray(4 * cluster)
    image[:ctypes.sizeof(header)] = bytes(header)
    image[cluster:cluster + 8] = (2 * cluster).to_bytes(8, "big")
    for index in range(4):  # 16-bit refcounts of the four used clusters
        image[2 * cluster + 2 * index: 2 * cluster + 2 * index + 2] = (1).to_bytes(2, "big")
    path.write_bytes(bytes(image))
    return path


def with_real_disks(vm: VM, directory: Path) -> VM:
    """``vm`` with its launch disks replaced by fresh empty images of the same format."""
    disks = []
    for index, disk in enumerate(vm.launch.disks):
        path = directory / f"disk{index}.{disk.format}"
        if disk.format == "qcow2":
            write_qcow2(path)
        else:
            path.write_bytes(bytes(1 << 20))
        disks.append(dataclasses.replace(disk, resolved=path))
    return dataclasses.replace(vm, launch=dataclasses.replace(vm.launch, disks=tuple(disks)))
