"""Standard streams the shell closed (`>&-`, `2>&-`, `<&-`): Python then leaves sys.stdout,
sys.stderr or sys.stdin None.  Output to a closed stdout is a clean error (exit 2), a
command that writes only files still works, with stderr closed the diagnostics are dropped,
never written into the command's output on stdout (print's fallback for file=None), and
reading a closed stdin is a clean error too."""
from __future__ import annotations

import json
import os

import pytest

from hostile_support import full_disk, run_sevm
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


# ---- standard output that cannot be written: a full disk, a file-size limit ------------

def _stdout_to(path: str, *, limit: int | None = None):
    """preexec_fn: standard output is ``path`` (``> /dev/full``, ``> out``), with files
    limited to ``limit`` bytes (EFBIG, SIGXFSZ ignored as `trap '' XFSZ` does)."""
    grow = full_disk(limit) if limit is not None else None

    def apply():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(fd, 1)
        os.close(fd)
        if grow is not None:
            grow()
    return apply


WRITERS = [["measure", "{m}"], ["export", "{m}"], ["export", "{m}", "-o", "-"],
           ["render", "qemu", "{m}"], ["explain", "{m}"], ["explain", "0x5"],
           ["diff", "{m}", "{m2}"], ["lock", "{m}"], ["fmt", "-"], ["--help"]]


@pytest.mark.parametrize("unbuffered", ["", "1"], ids=["buffered", "unbuffered"])
@pytest.mark.parametrize("argv", WRITERS, ids=lambda argv: "-".join(argv[:2]))
def test_a_full_standard_output_is_a_clean_error(manifest, argv, unbuffered):
    other = manifest.with_name("other.sevm")
    other.write_text(vm_text(vcpus="2"))
    run = run_sevm([a.format(m=manifest, m2=other) for a in argv], preexec=_stdout_to("/dev/full"),
                   stdin=manifest.read_bytes(), env={"PYTHONUNBUFFERED": unbuffered})
    assert run.rc == 2, run.err
    assert "sevm: error: cannot write standard output: No space left on device" in run.err
    assert "Traceback" not in run.err and "internal error" not in run.err
    assert "Exception ignored" not in run.err  # the interpreter's final flush


@pytest.mark.parametrize("unbuffered", ["", "1"], ids=["buffered", "unbuffered"])
@pytest.mark.parametrize("argv", [["export", "{m}"], ["render", "qemu", "{m}"]],
                         ids=lambda argv: argv[0])
def test_output_past_a_file_size_limit_is_an_error_not_a_truncated_file(manifest, tmp_path,
                                                                        argv, unbuffered):
    out = tmp_path / "out"
    run = run_sevm([a.format(m=manifest) for a in argv], env={"PYTHONUNBUFFERED": unbuffered},
                   preexec=_stdout_to(str(out), limit=512))
    assert run.rc == 2, run.err
    assert "sevm: error: cannot write standard output: File too large" in run.err
    assert out.stat().st_size <= 512


def test_a_full_standard_error_does_not_change_the_exit_status(manifest):
    def stderr_full():
        fd = os.open("/dev/full", os.O_WRONLY)
        os.dup2(fd, 2)
        os.close(fd)
    assert run_sevm(["check", str(manifest)]).rc == 0  # warnings only
    assert run_sevm(["check", str(manifest)], preexec=stderr_full).rc == 0
    assert run_sevm(["check", str(manifest.with_name("missing.sevm"))],
                    preexec=stderr_full).rc == 2
    run = run_sevm(["export", str(manifest)], preexec=stderr_full)
    assert run.rc == 0 and json.loads(run.out)["format"] == "sevmanifest-reference-values"


def test_a_reader_that_left_is_still_quiet(manifest):
    def stdout_pipe_closed():
        read, write = os.pipe()
        os.close(read)
        os.dup2(write, 1)
        os.close(write)
    run = run_sevm(["measure", str(manifest)], preexec=stdout_pipe_closed)
    assert run.rc == 2 and run.err.count("warning[") == 3  # the three warnings, nothing else
    assert "sevm: " not in run.err and "Exception ignored" not in run.err
