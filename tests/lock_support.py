"""Helpers for the lock/export/cache tests: a throw-away repository of manifests over copies
of the synthetic images, running `sevm` in a subprocess, and reading locks."""
from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
IMAGES = REPO / "manifests" / "images"
FIRMWARE = "OVMF.synthetic-amdsev.fd"
KERNEL = "vmlinuz.synthetic"
INITRD = "initrd.synthetic.img"


def sha256_file(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def vm_text(name: str = "web", *, vcpus: str = "1, 2", type: str = "sev-es",
            pin_firmware: bool = False, images: str = "../images", policy: str = "debug deny",
            legacy: str = "on", cmdline: str = "console=ttyS0") -> str:
    """One vm block over the synthetic images (measured direct boot)."""
    pin = f' sha256 "{sha256_file(IMAGES / FIRMWARE)}"' if pin_firmware else ""
    return f'''vm "{name}" {{
    type {type}
    firmware "{images}/{FIRMWARE}"{pin}
    kernel "{images}/{KERNEL}"
    initrd "{images}/{INITRD}"
    cmdline "{cmdline}"
    kernel-hashes on
    vcpus {vcpus}
    cpu "EPYC-Milan"
    host {{
        vmm qemu
        qemu-version "9.2"
        legacy-vm-type {legacy}
        sev-features 0x0
        cbitpos 51
        reduced-phys-bits 1
    }}
    policy {{
        {policy}
        key-sharing deny
    }}
}}
'''


def make_repo(root: Path) -> Path:
    """``root/images`` (copies of the synthetic images, old mtimes) and ``root/vms``."""
    images = root / "images"
    images.mkdir(parents=True)
    for name in (FIRMWARE, KERNEL, INITRD):
        shutil.copyfile(IMAGES / name, images / name)
        age(images / name)
    (root / "vms").mkdir()
    return root / "vms"


def age(path: Path, seconds: float = 3600) -> None:
    """Backdate mtime (ctime still becomes "now": caches must be given a later clock)."""
    past = time.time() - seconds
    os.utime(path, (past, past))


def sevm(*args: str, cwd: Path | None = None, env: dict | None = None,
         timeout: float = 120) -> subprocess.CompletedProcess:
    full_env = dict(os.environ, **(env or {}))
    return subprocess.run([sys.executable, "-m", "sevmanifest", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


def default_sigint() -> None:
    """``preexec_fn`` for a child the test interrupts with SIGINT: SIGINT's default
    disposition, as under an interactive shell, even when the tests run with SIGINT ignored
    (started in the background by a non-interactive shell: ``cmd &``, ``nohup``), which
    the child would inherit and Python would then leave ignored (no KeyboardInterrupt)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def read_lock(path: Path) -> dict:
    return tomllib.loads(Path(path).read_text(encoding="utf-8"))


def variants(lock: dict, vm: str) -> list[dict]:
    return next(v for v in lock["vms"] if v["name"] == vm)["variants"]


def stray_temp_files(directory: Path) -> list[Path]:
    return sorted(p for p in Path(directory).rglob("*.tmp"))


def make_many(root: Path, count: int, *, vcpus: str = "1, 2, 4, 8") -> list[str]:
    """A repository of ``count`` manifests sharing one image set (for batch tests and the
    measurement in docs/lockfiles.md); returns the manifest names, relative to ``root/vms``."""
    vms = make_repo(root)
    names = []
    for i in range(count):
        name = f"guest-{i:04d}.sevm"
        (vms / name).write_text(vm_text(f"guest-{i}", vcpus=vcpus, cmdline=f"console=ttyS0 id={i}"))
        names.append(name)
    return names


def sev_snp_measure_init2(vcpus: int, cpu: str, cmdline: str) -> str:
    """The base64 launch digest sev-snp-measure 0.0.13 (an independent implementation of the
    KVM_SEV_INIT2 profile) computes for an SEV-ES guest over the synthetic images."""
    import subprocess
    return subprocess.run(
        ["sev-snp-measure", "--mode", "seves", "--vcpus", str(vcpus), "--vcpu-type", cpu,
         "--ovmf", str(IMAGES / FIRMWARE), "--kernel", str(IMAGES / KERNEL),
         "--initrd", str(IMAGES / INITRD), "--append", cmdline, "--output-format", "base64"],
        capture_output=True, text=True, check=True).stdout.strip()


def compiled(vms: Path, text: str, name: str = "web.sevm"):
    """Write ``vms/name``, compile and measure it: (manifest, measurements)."""
    from sevmanifest.frontend import compile_text
    from sevmanifest.measure.digest import compute_many
    path = vms / name
    path.write_text(text)
    result = compile_text(text, str(path))
    assert result.ok, result.diagnostics
    return result.manifest, compute_many(list(result.manifest.vms))


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (from /proc)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def start_pooled_lock(root: Path, count: int = 800) -> tuple[subprocess.Popen, list[str], list[int]]:
    """`sevm lock --jobs 2` over ``count`` new manifests (800: several seconds of work per
    worker) in a subprocess, once its workers run: (process, manifests, worker pids)."""
    names = make_many(root, count)
    proc = subprocess.Popen([sys.executable, "-m", "sevmanifest", "lock", "--jobs", "2",
                             "--no-cache", *names], cwd=root / "vms",
                            preexec_fn=default_sigint,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 30
    while len(children(proc.pid)) < 2 and time.time() < deadline:
        time.sleep(0.05)
    workers = children(proc.pid)
    assert len(workers) >= 2
    return proc, names, workers


def running(pids: list[int]) -> list[int]:
    """Those of ``pids`` that still exist and are not zombies."""
    return [p for p in pids if Path(f"/proc/{p}").exists()
            and "Z" not in Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1][:3]]
