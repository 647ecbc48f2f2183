"""Helpers for the hostile-input tests (tests/test_hostile_*.py): fuzz settings, crafted OVMF
footer tables with an independent reading of QEMU's table walk, special files (FIFO, socket,
devices), running `sevm` in-process or as a subprocess with a deadline, and the two ways of
making writes fail (read-only directory, full disk)."""
from __future__ import annotations

import base64
import contextlib
import ctypes
import io
import os
import resource
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from sevmanifest import cli

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SEVM_SHARED", REPO.parent / "shared"))
VECTORS = SHARED / "vectors"
AMDSEV_FW = VECTORS / "sevctl/OVMF.amdsev.fd_trimmed_edk2-ovmf-20220126gitbb1bba3d77-4.el9"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

# ---- fuzzing budget ----------------------------------------------------------------------
# Same convention as the front-end fuzz (tests/test_frontend_fuzz.py): SEVM_FUZZ_EXAMPLES=N
# is the total number of cases, shared out between the hostile fuzz tests by weight; unset,
# each test runs its modest CI default.  Hypothesis prints the failing example and
# @reproduce_failure (print_blob); --hypothesis-seed=N replays a whole run.
FUZZ_TOTAL = int(os.environ.get("SEVM_FUZZ_EXAMPLES", "0") or 0)
FUZZ_WEIGHTS = {"footer tables": 0.4, "measurement path": 0.1, "qmp replies": 0.25,
                "blob spellings": 0.15, "tik files": 0.1}
FUZZ_DEFAULTS = {"footer tables": 600, "measurement path": 100, "qmp replies": 250,
                 "blob spellings": 250, "tik files": 150}


def fuzz_settings(name: str) -> settings:
    examples = max(1, int(FUZZ_TOTAL * FUZZ_WEIGHTS[name])) if FUZZ_TOTAL else FUZZ_DEFAULTS[name]
    return settings(max_examples=examples, deadline=None, print_blob=True,
                    suppress_health_check=[HealthCheck.too_slow,
                                           HealthCheck.function_scoped_fixture,
                                           HealthCheck.data_too_large])


# ---- OVMF footer tables ------------------------------------------------------------------

def guid(text: str) -> bytes:
    return uuid.UUID(text).bytes_le


FOOTER = guid("96b582de-1fb2-45f7-baea-a366c55a082d")
RESET_BLOCK = guid("00f771de-1a7e-4fcb-890e-68c77e2fb44e")
HASH_TABLE = guid("7255371f-3a3b-4b04-927b-1da6efa8d454")
SECRET = guid("4c2eb361-7d9b-4cc3-8081-127c90d3d294")
KNOWN_GUIDS = (FOOTER, RESET_BLOCK, HASH_TABLE, SECRET,
               guid("dc886566-984a-4798-a75e-5585a7bf67cc"),
               guid("e47a6535-984a-4798-865e-4685a7bf8ec2"),
               guid("a789a612-0597-4c4b-a49f-cbb1fe9d1ddd"))


def table_entry(guid_le: bytes, data: bytes, length: int | None = None) -> bytes:
    """``data ‖ u16 length ‖ GUID`` (facts §5); ``length`` defaults to the true one."""
    length = len(data) + 18 if length is None else length
    return data + struct.pack("<H", length & 0xFFFF) + guid_le


def image_with_table(table: bytes, *, total_len: int | None = None, prefix: bytes = bytes(64),
                     footer: bytes = FOOTER, reset_area: bytes = bytes(32)) -> bytes:
    total = len(table) + 18 if total_len is None else total_len
    return prefix + table + struct.pack("<H", total & 0xFFFF) + footer + reset_area


def qemu_find(image: bytes, wanted: bytes) -> bytes | None:
    """The data QEMU finds for ``wanted`` in the footer table, or None.

    Written from facts §5 (QEMU hw/i386/pc_sysfw_ovmf.c), not from sevm's parser: the table
    is valid when 18 <= total_len and the entries fit before the footer; the lookup walks
    backwards from the footer and stops at the first match, or at an entry whose length is
    < 18 or longer than what is left.
    """
    size = len(image)
    if size < 50 or image[size - 48:size - 32] != FOOTER:
        return None
    (total_len,) = struct.unpack_from("<H", image, size - 50)
    entries_len = total_len - 18
    if entries_len <= 0 or entries_len > size - 50:
        return None
    end, left = size - 50, entries_len
    while left >= 18:
        found_guid = image[end - 16:end]
        (length,) = struct.unpack_from("<H", image, end - 18)
        if length < 18 or length > left:
            return None
        if found_guid == wanted:
            return image[end - length:end - 18]
        end -= length
        left -= length
    return None


def qemu_legacy_reset(image: bytes) -> int | None:
    """QEMU's fallback when the table has no SEV-ES reset block: a block that ends 32 bytes
    before EOF, whose data starts ``length`` bytes before that end."""
    end = len(image) - 32
    if end < 18 or image[end - 16:end] != RESET_BLOCK:
        return None
    (length,) = struct.unpack_from("<H", image, end - 18)
    if length < 22 or length > end:
        return None
    return struct.unpack_from("<I", image, end - length)[0]


# ---- special files ---------------------------------------------------------------------

@contextlib.contextmanager
def special_files(directory: Path):
    """name -> path of things that are not regular files (and a dangling link)."""
    fifo = directory / "a.fifo"
    os.mkfifo(fifo)
    sock_path = directory / "a.sock"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(sock_path))
    subdir = directory / "a-directory"
    subdir.mkdir()
    (directory / "to-zero").symlink_to("/dev/zero")
    (directory / "dangling").symlink_to(directory / "nothing-here")
    try:
        yield {"directory": subdir, "fifo": fifo, "socket": sock_path,
               "/dev/zero": Path("/dev/zero"), "/dev/null": Path("/dev/null"),
               "link to /dev/zero": directory / "to-zero", "dangling link": directory / "dangling"}
    finally:
        sock.close()


# ---- running sevm ------------------------------------------------------------------------

class Hang(Exception):
    """Raised by ``deadline`` when the code under test is still running."""


@contextlib.contextmanager
def deadline(seconds: float):
    """Interrupt the main thread after ``seconds`` (a blocking open() or read() included)."""
    def expire(signum, frame):
        raise Hang(f"still running after {seconds} s")
    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@dataclass
class Run:
    rc: int
    out: bytes
    err: str

    @property
    def text(self) -> str:
        return self.out.decode("utf-8", "replace")

    def clean(self) -> "Run":
        """Assert the outcome of a run on bad input: no traceback, no internal error."""
        assert self.rc in (0, 1, 2), (self.rc, self.err)
        assert "Traceback" not in self.err and "internal error" not in self.err, self.err
        return self


def run_cli(argv: list[str], *, stdin: bytes = b"", seconds: float = 20) -> Run:
    """``sevm ARGV`` in this process (fast), with captured byte streams and a deadline."""
    out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", write_through=True)
    err = io.StringIO()
    saved = sys.stdin, sys.stdout, sys.stderr
    sys.stdin = io.TextIOWrapper(io.BytesIO(stdin))
    sys.stdout, sys.stderr = out, err
    try:
        with deadline(seconds):
            rc = cli.main(argv)
    finally:
        sys.stdin, sys.stdout, sys.stderr = saved
    out.flush()
    return Run(rc, out.buffer.getvalue(), err.getvalue())


def run_sevm(argv: list[str], *, cwd: Path | None = None, stdin: bytes = b"",
             timeout: float = 60, preexec=None, env: dict | None = None) -> Run:
    """``python -m sevmanifest ARGV`` as a subprocess (for rlimits, privileges, signals)."""
    full_env = dict(os.environ, SEVM_DEBUG="", **(env or {}))
    proc = subprocess.run([sys.executable, "-m", "sevmanifest", *argv], cwd=cwd, input=stdin,
                          capture_output=True, timeout=timeout, preexec_fn=preexec, env=full_env)
    return Run(proc.returncode, proc.stdout, proc.stderr.decode("utf-8", "replace"))


# ---- making writes fail ------------------------------------------------------------------

def full_disk(limit: int = 64):
    """preexec_fn: files may not grow past ``limit`` bytes (EFBIG, as a full disk gives
    ENOSPC); SIGXFSZ ignored so the write fails instead of killing the process."""
    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


_CAP_DAC_OVERRIDE = 1
_PR_CAPBSET_DROP = 24


def _drop_dac_override():
    """preexec_fn for root: without CAP_DAC_OVERRIDE, root obeys a directory's mode bits
    (dropped from the bounding set, so the exec'd interpreter never gets it back)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_CAPBSET_DROP, _CAP_DAC_OVERRIDE, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP, CAP_DAC_OVERRIDE)")


@dataclass
class ReadOnly:
    """How this machine makes a directory read-only for a `sevm` subprocess."""

    name: str
    preexec: object  # preexec_fn for the subprocess, or None

    @contextlib.contextmanager
    def applied(self, directory: Path):
        if self.name == "chattr":
            subprocess.run(["chattr", "+i", str(directory)], check=True)
        else:
            directory.chmod(0o555)
        try:
            yield
        finally:
            if self.name == "chattr":
                subprocess.run(["chattr", "-i", str(directory)], check=True)
            directory.chmod(0o755)


_PROBE = """import sys, tempfile
try:
    tempfile.mkstemp(dir=sys.argv[1])
except PermissionError:
    sys.exit(7)
"""


def _probe(strategy: ReadOnly) -> bool:
    """True when a subprocess under ``strategy`` really cannot create a file."""
    scratch = Path(tempfile.mkdtemp(prefix="sevm-ro-probe-"))
    try:
        with strategy.applied(scratch):
            proc = subprocess.run([sys.executable, "-c", _PROBE, str(scratch)],
                                  preexec_fn=strategy.preexec, capture_output=True)
        return proc.returncode == 7
    except (OSError, subprocess.SubprocessError):
        return False
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def read_only_strategy() -> ReadOnly:
    """chmod alone (not root); root without CAP_DAC_OVERRIDE; chattr +i; else skip (fail in CI)."""
    candidates = [ReadOnly("chmod", None)] if os.geteuid() != 0 else [
        ReadOnly("chmod without CAP_DAC_OVERRIDE", _drop_dac_override),
        ReadOnly("chattr", None)]
    for strategy in candidates:
        if _probe(strategy):
            return strategy
    message = "no way to make a directory read-only for a subprocess on this machine"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


# ---- secrets -----------------------------------------------------------------------------

def secret_forms(secret: bytes) -> dict[str, bytes]:
    """Every encoding in which a key could leak into output, as bytes to search for."""
    b64 = base64.b64encode(secret)
    url = base64.urlsafe_b64encode(secret)
    forms = {"raw": secret, "hex": secret.hex().encode(), "HEX": secret.hex().upper().encode(),
             "base64": b64, "base64 unpadded": b64.rstrip(b"="), "base64url": url,
             "base64url unpadded": url.rstrip(b"="),
             "spaced hex": " ".join(f"{b:02x}" for b in secret).encode(),
             "repr": repr(secret).encode()[2:-1]}
    # the first 12 raw bytes (with a distinctive key, a partial leak is a leak too)
    forms["raw prefix"] = secret[:12]
    forms["hex prefix"] = secret[:12].hex().encode()
    return forms


def leaks(data: bytes, secret: bytes) -> list[str]:
    return [name for name, form in secret_forms(secret).items() if form in data]
