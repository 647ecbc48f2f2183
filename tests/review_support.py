"""Helpers for the review tests: model objects built directly, and small git/CLI helpers."""
from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

from sevmanifest.model import (VM, Artefact, Cpu, GuestType, HostMatrix, Launch, Manifest, Policy,
                               Span, Vmm)

FILE = "web.sevm"
# Model paths with the line each one is set on in the imaginary manifest (column 5).
ORIGIN_LINES = {
    "type": 2, "firmware": 3, "kernel": 4, "initrd": 5, "cmdline": 6, "kernel-hashes": 7,
    "vcpus": 8, "cpu": 9, "memory": 10, "machine": 11, "host.vmm": 13,
    "host.legacy-vm-type": 14, "host.sev-features": 15, "host.qemu-version": 16,
    "policy.debug": 18, "policy.key-sharing": 19, "policy.send": 20, "policy.min-api": 21,
    "launch.disks": 23, "launch.net": 24, "launch.extra": 25,
}
VM_LINE = 1

MILAN = Cpu(0x00A00F11, "EPYC-Milan", 25, 1, 1)
MILAN_V2 = Cpu(0x00A00F11, "EPYC-Milan-v2", 25, 1, 1)
ROME = Cpu(0x00830F10, "EPYC-Rome", 23, 49, 0)
DIGEST_A = "a" * 64
DIGEST_B = "b" * 64


def span(line: int, file: str = FILE) -> Span:
    return Span(file, line, 5, line, 20)


def artefact(role: str, written: str, sha256: str | None = None) -> Artefact:
    return Artefact(role, written, Path("/nonexistent") / written, sha256)


def make_vm(name: str = "web", *, policy: int = 0x7, file: str = FILE, **overrides) -> VM:
    """An SEV-ES VM with measured direct boot; keyword arguments replace fields."""
    fields = dict(
        name=name, file=file, type=GuestType.SEV_ES,
        firmware=artefact("firmware", "OVMF.amdsev.fd", DIGEST_A),
        kernel=artefact("kernel", "vmlinuz", DIGEST_A),
        initrd=artefact("initrd", "initrd.img"),
        cmdline=b"console=ttyS0", kernel_hashes=True, vcpus=(1, 2), cpus=(MILAN,),
        memory=2 << 30, machine="q35", host=HostMatrix(), policy=Policy(policy),
        launch=Launch(), origins={p: span(n, file) for p, n in ORIGIN_LINES.items()},
        span=span(VM_LINE, file))
    fields.update(overrides)
    return VM(**fields)


def change(vm: VM, **overrides) -> VM:
    return dataclasses.replace(vm, **overrides)


def host(**overrides) -> HostMatrix:
    return dataclasses.replace(HostMatrix(), **overrides)


def manifest(*vms: VM, file: str = FILE) -> Manifest:
    return Manifest(file, tuple(vms))


QEMU, EC2 = Vmm.QEMU, Vmm.EC2


def run_sevm(*args: str, cwd: Path | None = None, env: dict | None = None):
    """Run the CLI in a subprocess (exit status, stdout, stderr)."""
    full_env = dict(os.environ, **(env or {}))
    proc = subprocess.run([sys.executable, "-m", "sevmanifest", *args], cwd=cwd,
                          capture_output=True, text=True, env=full_env, timeout=120)
    return proc


def git(repo: Path, *args: str) -> str:
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.org",
               GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@example.org")
    return subprocess.run(["git", "-c", "init.defaultBranch=main", *args], cwd=repo, env=env,
                          check=True, capture_output=True, text=True).stdout
