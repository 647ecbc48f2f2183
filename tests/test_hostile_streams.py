"""Standard streams the shell closed (`>&-`, `2>&-`, `<&-`): Python then leaves sys.stdout,
sys.stderr or sys.stdin None.  Output to a closed stdout is a clean error (exit 2), a
command that writes only files still works, with stderr closed the diagnostics are dropped,
never written into the command's output on stdout (print's fallback for file=None), and
reading a closed stdin is a clean error too."""
from __future__ import annotations

import json
import os

import pytest

from hostile_support import run_sevm
from lock_support import make_repo, vm_text


@pytest.fixture
def manifest(tmp_path):
    path = make_repo(tmp_path) / "web.sevm"
    path.write_text(vm_text(vcpus="1"))  # unpinned images: three warnings
    return path


def _closing(fd: int):
    return lambda: os.close(fd)


@pytest.mark.parametrize("argv", [["measure"], ["export"], ["render", "qemu"], ["explain"]])
def test_output_to_a_closed_stdout_is_a_clean_error(manifest, argv):
    run = run_sevm([*argv, str(manifest)], preexec=_closing(1))
    assert run.rc == 2, run.err
    assert "sevm: error: cannot write standard output: it is closed" in run.err
    assert "Traceback" not in run.err and "internal error" not in run.err


def test_files_are_still_written_with_stdout_closed(manifest, tmp_path):
    out = tmp_path / "ref.json"
    run = run_sevm(["export", str(manifest), "-o", str(out)], preexec=_closing(1))
    assert run.rc == 0, run.err
    assert json.loads(out.read_text())["format"] == "sevmanifest-reference-values"
    assert run_sevm(["check", str(manifest)], preexec=_closing(1)).rc == 0


def test_with_stderr_closed_diagnostics_stay_out_of_stdout(manifest, tmp_path):
    run = run_sevm(["export", str(manifest)], preexec=_closing(2))
    assert run.rc == 0
    assert json.loads(run.out)["format"] == "sevmanifest-reference-values"  # only the JSON
    missing = run_sevm(["check", str(tmp_path / "missing.sevm")], preexec=_closing(2))
    assert missing.rc == 2 and missing.out == b""


@pytest.mark.parametrize("argv", [["check", "-"], ["fmt", "-"], ["explain", "-"],
                                  ["verify", "{m}", "--tik", "{tik}", "--launch-measure", "-",
                                   "--api-major", "1", "--api-minor", "49", "--build", "1"]],
                         ids=lambda argv: argv[0])
def test_reading_a_closed_stdin_is_a_clean_error(manifest, tmp_path, argv):
    tik = tmp_path / "tik.bin"
    tik.write_bytes(bytes(16))
    run = run_sevm([a.format(m=manifest, tik=tik) for a in argv], preexec=_closing(0))
    assert run.rc == 2, run.err
    assert "cannot read standard input: it is closed" in run.err
    assert "Traceback" not in run.err and "internal error" not in run.err
