"""CLI behaviour owned by the dispatcher and sevm fmt: redacted usage errors, symlinks."""
from __future__ import annotations

import subprocess
import sys

KEY = "3569cf61a32a602b87185ac6e0f55913"


def sevm(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "sevmanifest", *args], capture_output=True,
                          text=True, cwd=cwd)


def test_leftover_values_after_a_misspelt_option_are_not_echoed(repo):
    run = sevm("measure", str(repo / "manifests/sev-es-direct.sevm"), "--tikk", KEY)
    assert run.returncode == 2
    assert KEY not in run.stdout + run.stderr
    assert "--tikk" in run.stderr and "1 other value(s), not shown" in run.stderr


def test_fmt_formats_the_target_of_a_symlinked_manifest(tmp_path):
    target = tmp_path / "real.sevm"
    target.write_text('vm "a" {\n  firmware   "f.fd"\n}\n')
    link = tmp_path / "link.sevm"
    link.symlink_to(target)
    run = sevm("fmt", str(link))
    assert run.returncode == 0, run.stderr
    assert link.is_symlink()
    assert target.read_text() == 'vm "a" {\n    firmware "f.fd"\n}\n'


def test_a_bare_usage_error_exits_2():
    run = sevm("measure")
    assert run.returncode == 2 and "Traceback" not in run.stderr


EMPTY_PATH_OPTIONS = [
    ["export", "{m}", "-o", ""],
    ["render", "qemu", "{m}", "-o", ""],
    ["render", "--template", "", "{m}"],
    ["measure", "{m}", "--dump-vmsa", ""],
]


def test_an_empty_output_path_is_a_usage_error(repo, tmp_path):
    """`-o "$OUT"` with OUT unset: refused, not written to stdout (or not written at all)."""
    manifest = str(repo / "manifests/sev-es-direct.sevm")
    for argv in EMPTY_PATH_OPTIONS:
        run = sevm(*[a.format(m=manifest) for a in argv], cwd=tmp_path)
        assert run.returncode == 2, (argv, run.stderr)
        assert "an empty path" in run.stderr and run.stdout == "", argv
        assert list(tmp_path.iterdir()) == []


def test_a_manifest_path_longer_than_path_max_is_a_read_error(tmp_path):
    """Only the located read error, exit 2 (the lint configuration lookup failed after it
    with "internal error: OSError: File name too long")."""
    path = "d/" * 2100 + "x.sevm"
    for argv in (["check", path], ["measure", path], ["explain", path], ["export", path],
                 ["lock", path], ["render", "qemu", path], ["diff", path, path]):
        run = sevm(*argv, cwd=tmp_path)
        assert run.returncode == 2, (argv, run.stderr[-300:])
        assert run.stderr.endswith(f"error: cannot read {path}: File name too long\n"), argv
        assert run.stderr.count("error") == 1 and "internal error" not in run.stderr, argv


def test_jobs_is_validated_alike_in_check_and_lock(repo):
    """`sevm check --locked --jobs 0` (or -3) was accepted silently; lock refused it."""
    manifest = str(repo / "manifests/sev-es-direct.sevm")
    for value in ("0", "-3", "two"):
        for argv in (["check", "--locked", "--jobs", value, manifest],
                     ["lock", "--jobs", value, manifest]):
            run = sevm(*argv)
            assert run.returncode == 2, (argv, run.stderr)
            assert ("must be at least 1" if value != "two" else "not an integer") in run.stderr


EMPTY_INPUT_PATHS = [
    ["check", ""], ["check", "{m}", ""], ["measure", ""], ["explain", ""], ["export", ""],
    ["lock", ""], ["diff", "", "{m}"], ["fmt", ""], ["fmt", "--check", ""],
    ["render", "qemu", ""], ["render", "libvirt", ""], ["render", "--template", "{m}", ""],
    ["measure", "{m}", "--tik", "", "--mnonce", "00" * 16, "--api-major", "1",
     "--api-minor", "0", "--build", "0"],
    ["verify", "", "--tik", "{tik}", "--measurement", "00" * 48, "--api-major", "1",
     "--api-minor", "0", "--build", "0"],
    ["verify", "{m}", "--tik", "", "--measurement", "00" * 48, "--api-major", "1",
     "--api-minor", "0", "--build", "0"],
    ["verify", "{m}", "--tik", "{tik}", "--launch-measure", "", "--api-major", "1",
     "--api-minor", "0", "--build", "0"],
    ["verify", "{m}", "--tik", "{tik}", "--measurement", "00" * 48, "--query-sev", ""],
]


def test_an_empty_input_path_is_a_usage_error(repo, tmp_path):
    """`sevm check ""` said ":1:1: error: manifest not found: /the/working/directory"."""
    tik = tmp_path / "tik.bin"
    tik.write_bytes(bytes(16))
    manifest = str(repo / "manifests/sev-es-direct.sevm")
    for argv in EMPTY_INPUT_PATHS:
        run = sevm(*[a.format(m=manifest, tik=tik) for a in argv], cwd=tmp_path)
        assert run.returncode == 2, (argv, run.stderr)
        assert "an empty path" in run.stderr and run.stdout == "", (argv, run.stderr)
        assert str(tmp_path) not in run.stderr, argv
    assert list(tmp_path.iterdir()) == [tik]
