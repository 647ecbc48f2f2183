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
    "launch.disk": 23, "launch.net": 24, "launch.extra": 25,
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


# ---- a two-file manifest project: a template imported by a vm ---------------------------

COMMON = "common.sevm"
WEB = "web.sevm"
PROJECT = {
    COMMON: """\
# shared launch policy
template "hardened" {
    type sev-es
    kernel-hashes on
    policy {
        debug deny
        key-sharing deny
        send deny
    }
    host {
        vmm qemu
        legacy-vm-type on
    }
}
""",
    WEB: f"""\
import "common.sevm"

vm "web" extends "hardened" {{
    firmware "OVMF.fd" sha256 "{'a' * 64}"
    kernel "vmlinuz" sha256 "{'b' * 64}"
    initrd "initrd.img"
    cmdline "console=ttyS0"
    vcpus 1, 2
    cpu "EPYC-Milan"
    memory 2GiB
    launch {{
        net user
    }}
}}
""",
}


def write_project(directory: Path, edits: dict[str, tuple[str, str]] | None = None) -> Path:
    """Write PROJECT into ``directory``; ``edits`` maps a file to (old text, new text);
    an empty old text appends."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in PROJECT.items():
        if edits and name in edits:
            old, new = edits[name]
            assert old == "" or old in text, old
            text = text + new if old == "" else text.replace(old, new, 1)
        (directory / name).write_text(text)
    return directory


def line_of(path: Path, text: str) -> int:
    """The number of the first line of ``path`` that contains ``text``."""
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if text in line:
            return number
    raise AssertionError(f"{text!r} not in {path}")
