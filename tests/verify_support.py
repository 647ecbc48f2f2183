"""Helpers for the tests of `sevm verify` (tests/test_verify_*.py).

Expected values come from /work/shared/vectors/README.md (sevctl's tests) or from
Debian's virt-qemu-sev-validate, never from sevmanifest's own output.
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("SEVM_SHARED") or REPO.parent / "shared")
SEVCTL = SHARED / "vectors" / "sevctl"
SC = SEVCTL / "OVMF.amdsev.fd_trimmed_edk2-ovmf-20220126gitbb1bba3d77-4.el9"
SK = SEVCTL / "measurement" / "vmlinuz-fake"
SI = SEVCTL / "measurement" / "initrd-fake"
STIK = SEVCTL / "measurement" / "tik1.bin"
TIK_HEX = "3569cf61a32a602b87185ac6e0f55913"  # vectors README §2, STIK
M_CMDLINE = b"foo bar baz fake kernel=cmdline"

VALIDATE = "/usr/bin/virt-qemu-sev-validate"
DEBIAN_PYTHON = "/usr/bin/python3"


@dataclass(frozen=True)
class MVector:
    """One row of vectors README §4.1 (sevctl@8b47f3a `measurementbuild.rs`)."""

    id: str
    api_major: int
    api_minor: int
    build: int
    policy: int
    blob_b64: str  # expected MEASURE || MNONCE
    launch_digest: str | None  # given directly (M-1) or None when it comes from a manifest

    @property
    def blob(self) -> bytes:
        return base64.b64decode(self.blob_b64)


M_VECTORS = {
    "M-1": MVector("M-1", 1, 40, 40, 0x03,
                   "lswbxWxI9gckya16JQvdFtpYmNO4b+3inAPpqsgoBI7DE/q1EcIWsVBbGy6pkDxA",
                   "c64bd101fc9a4a2ce0a27c408d9200911f139a895469b04a40a6fa2890830d23"),
    "M-2": MVector("M-2", 1, 40, 40, 0x03,
                   "oMDewIouJSpbpNRHj7Mk3p08H2dPZQdsZMU14qIymBnDE/q1EcIWsVBbGy6pkDxA", None),
    "M-3": MVector("M-3", 1, 40, 40, 0x03,
                   "h3auYbWQnVW7EGLWN4Hf9SN0oEYMPU2sK4bLnefWPwvDE/q1EcIWsVBbGy6pkDxA", None),
    "M-4": MVector("M-4", 1, 49, 6, 0x05,
                   "/o0nzDKE5XgtVnUZWPhUea/WZYrTKLExR7KCwuMdbActvpWfXTFk21KMZIAAhQny", None),
}

# Manifests for M-2..M-4 (relative paths are resolved against the manifest's directory,
# so the tests write them next to copies of, or absolute paths to, the fixtures).
M_MANIFESTS = {
    "M-2": """vm "m2" {{
    type sev
    firmware "{SC}"
    policy 0x3
    host {{
        legacy-vm-type on
    }}
}}
""",
    "M-3": """vm "m3" {{
    type sev
    firmware "{SC}"
    kernel "{SK}"
    initrd "{SI}"
    cmdline "foo bar baz fake kernel=cmdline"
    kernel-hashes on
    policy 0x3
    host {{
        legacy-vm-type on
    }}
}}
""",
    "M-4": """vm "m4" {{
    type sev-es
    firmware "{SC}"
    vcpus 4
    cpu "EPYC-Milan"
    policy 0x5
    host {{
        vmm qemu
        legacy-vm-type on
        sev-features 0x0
    }}
}}
""",
}


def manifest_text(vector_id: str) -> str:
    return M_MANIFESTS[vector_id].format(SC=SC, SK=SK, SI=SI)


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def require_validator() -> None:
    """Skip locally, fail in CI, when virt-qemu-sev-validate cannot run."""
    problem = None
    if not Path(VALIDATE).exists():
        problem = f"{VALIDATE} is missing (Debian package libvirt-clients-qemu)"
    elif not Path(DEBIAN_PYTHON).exists():
        problem = f"{DEBIAN_PYTHON} is missing"
    else:
        probe = subprocess.run([DEBIAN_PYTHON, "-c", "import lxml, libvirt, cryptography"],
                               capture_output=True, text=True)
        if probe.returncode != 0:
            problem = ("Debian's python3 cannot import lxml/libvirt/cryptography "
                       "(packages python3-lxml python3-libvirt python3-cryptography)")
    if problem:
        if in_ci():
            pytest.fail(f"real tool unavailable in CI: {problem}")
        pytest.skip(problem)


def sevm(*args: str, stdin: bytes | None = None, cwd: Path | None = None):
    """Run the `sevm` CLI in a child process; returns CompletedProcess with bytes output."""
    return subprocess.run([sys.executable, "-m", "sevmanifest", *args], input=stdin,
                          capture_output=True, cwd=cwd, timeout=120)


# ---- QMP replies ---------------------------------------------------------------------------

def query_sev_flat(**overrides) -> dict:
    """query-sev as QEMU <= 9.0 returns it."""
    reply = {"enabled": True, "api-major": 1, "api-minor": 49, "build-id": 6, "policy": 5,
             "state": "launch-secret", "handle": 1}
    reply.update(overrides)
    return reply


def query_sev_union(**overrides) -> dict:
    """query-sev as QEMU >= 9.1 returns it for an SEV / SEV-ES guest."""
    return query_sev_flat(**{"sev-type": "sev", **overrides})


def qmp_return(obj) -> dict:
    return {"return": obj, "id": "libvirt-42"}


def dumps(obj) -> str:
    return json.dumps(obj)


def flip_bit(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


# ---- model objects built directly (no front end) ------------------------------------------

def make_vm(*, name: str = "vm", type: str = "sev", firmware: Path = SC, kernel: Path | None = None,
            initrd: Path | None = None, cmdline: bytes | None = None, kernel_hashes: bool = False,
            vcpus=(1,), cpus=(), policy: int = 0x1, vmms=("qemu",), legacy=(True,),
            sev_features=(0,)):
    """A model.VM as the front end would produce it (paths already resolved)."""
    from sevmanifest import model

    def artefact(role, path):
        return None if path is None else model.Artefact(role, str(path), Path(path))

    return model.VM(
        name=name, file=f"{name}.sevm", type=model.GuestType(type),
        firmware=artefact("firmware", firmware), kernel=artefact("kernel", kernel),
        initrd=artefact("initrd", initrd), cmdline=cmdline, kernel_hashes=kernel_hashes,
        vcpus=tuple(vcpus), cpus=tuple(cpus), memory=2 << 30, machine="q35",
        host=model.HostMatrix(vmms=tuple(model.Vmm(v) for v in vmms),
                              legacy_vm_types=tuple(legacy), sev_features=tuple(sev_features)),
        policy=model.Policy(policy), launch=model.Launch())


def cpu(family: int, model_: int, stepping: int, name: str | None = None):
    from sevmanifest import cpus, model
    return model.Cpu(cpus.signature(family, model_, stepping), name, family, model_, stepping)


EPYC_MILAN = (25, 1, 1)


def m_vector_vm(vector_id: str):
    """The model VM that vectors M-2..M-4 describe."""
    if vector_id == "M-2":
        return make_vm(name="m2", policy=0x3)
    if vector_id == "M-3":
        return make_vm(name="m3", policy=0x3, kernel=SK, initrd=SI, cmdline=M_CMDLINE,
                       kernel_hashes=True)
    if vector_id == "M-4":
        return make_vm(name="m4", type="sev-es", policy=0x5, vcpus=(4,),
                       cpus=(cpu(*EPYC_MILAN, name="EPYC-Milan"),))
    raise KeyError(vector_id)


@dataclass(frozen=True)
class InjectedVariant:
    """A VariantDigest stand-in with a launch digest given directly (vector M-1)."""

    variant: object
    launch_digest: bytes
    cpu_signature: int | None = None


@dataclass(frozen=True)
class InjectedMeasurement:
    vm: object
    variants: tuple
    artefact_digests: dict


def injected(vm, launch_digest: bytes) -> InjectedMeasurement:
    return InjectedMeasurement(vm, tuple(InjectedVariant(v, launch_digest) for v in vm.variants()), {})


# ---- running Debian's virt-qemu-sev-validate --------------------------------------------------
#
# The tool is a 1300-line Python script that imports lxml, libvirt and cryptography: each
# process costs ~0.2 s, mostly imports.  So the bulk of the differential cases go through
# one long-lived Debian python3 that loads the unmodified script once and calls its main()
# per case with sys.argv set (stdout, stderr and its logging captured per case); a sample
# of cases also runs as separate processes, two at a time, and must give the same results.

VALIDATE_BATCH_DRIVER = r'''
import contextlib, importlib.machinery, importlib.util, io, json, logging, sys
loader = importlib.machinery.SourceFileLoader("virt_qemu_sev_validate", sys.argv[1])
spec = importlib.util.spec_from_loader(loader.name, loader)
tool = importlib.util.module_from_spec(spec)
loader.exec_module(tool)
root = logging.getLogger()
handler = logging.StreamHandler(io.StringIO())
root.addHandler(handler)  # so the tool's basicConfig() adds none; its formatter lands here
for line in sys.stdin:
    argv = json.loads(line)
    out, err = io.StringIO(), io.StringIO()
    handler.setStream(err)
    root.setLevel(logging.DEBUG if "--debug" in argv else logging.WARNING)
    sys.argv = ["virt-qemu-sev-validate"] + argv
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            tool.main()
            rc = 0
        except SystemExit as exc:
            rc = exc.code if isinstance(exc.code, int) else 1
    print(json.dumps({"rc": rc, "stdout": out.getvalue(), "stderr": err.getvalue()}), flush=True)
'''


@dataclass(frozen=True)
class ToolRun:
    rc: int
    stdout: str
    stderr: str


def run_validate_batch(argvs: list[list[str]]) -> list[ToolRun]:
    """Run virt-qemu-sev-validate once per argv inside one Debian python3 process."""
    if not argvs:
        return []
    payload = "".join(json.dumps(a) + "\n" for a in argvs)
    proc = subprocess.run([DEBIAN_PYTHON, "-c", VALIDATE_BATCH_DRIVER, VALIDATE], input=payload,
                          capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise AssertionError(f"batch driver failed ({proc.returncode}): {proc.stderr[-2000:]}")
    runs = [ToolRun(**json.loads(line)) for line in proc.stdout.splitlines()]
    assert len(runs) == len(argvs), proc.stderr[-2000:]
    return runs


def run_validate_processes(argvs: list[list[str]], workers: int = 2) -> list[ToolRun]:
    """Run virt-qemu-sev-validate as a separate process per argv, ``workers`` at a time."""
    from concurrent.futures import ThreadPoolExecutor

    def one(argv: list[str]) -> ToolRun:
        proc = subprocess.run([DEBIAN_PYTHON, VALIDATE, *argv], capture_output=True, text=True,
                              timeout=120)
        return ToolRun(proc.returncode, proc.stdout, proc.stderr)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, argvs))


def measured_data_digest(run: ToolRun) -> str | None:
    """The tool's --debug line "Measured-data(sha256): HEX", i.e. its launch digest."""
    import re
    found = re.findall(r"Measured-data\(sha256\): ([0-9a-f]{64})", run.stderr)
    return found[-1] if found else None
