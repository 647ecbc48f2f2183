"""`sevm check` and `sevm fmt --check` on malformed manifests of every kind, through the
real CLI (``python -m sevmanifest``): exit 2 for unreadable or malformed input, 1 for a
manifest that parses but fails its checks, a located ``file:line:col:`` error with the
source line and a caret, and never a traceback.  The subprocesses run in parallel."""
from __future__ import annotations

import os
import re
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from frontend_support import REPO, sevm, write

# `sevm check` also reads the firmware's footer table: point at a real (synthetic) image
FIRMWARE = REPO / "manifests" / "images" / "OVMF.synthetic-generic.fd"
MINIMAL = f'vm "a" {{\n    firmware "{FIRMWARE}"\n}}\n'


def vm(*lines: str) -> str:
    return MINIMAL[:-2] + "".join(f"    {line}\n" for line in lines) + "}\n"


# name -> (file content or a special kind, check exit, fmt --check exit, "line:col" of the
# first error or None, a fragment of its message)
CASES = {
    "truncated-block": ('vm "a" {\n    host {\n        vmm qemu\n', 2, 2, "3:17",
                        "unexpected end of file: a block is not closed with '}'"),
    "truncated-string": ('vm "a" {\n    cmdline "console=tty', 2, 2, "2:13", "unterminated string"),
    "bad-escape": ('vm "a" {\n    cmdline "a\\qb"\n}\n', 2, 2, "2:15", "invalid escape '\\\\q'"),
    "surrogate-escape": ('vm "a" {\n    cmdline "\\u{d800}"\n}\n', 2, 2, "2:14", "invalid escape"),
    "unknown-setting": ('vm "a" {\n    memroy 4GiB\n}\n', 2, 2, "2:5",
                        "unknown setting \"memroy\"; did you mean 'memory'?"),
    "wrong-type-number": ('vm "a" {\n    vcpus "four"\n}\n', 2, 2, "2:11", "expected a number"),
    "wrong-type-size": ('vm "a" {\n    memory four\n}\n', 2, 2, "2:12", "expected a size such as 4GiB"),
    "glued-keyword": ('vm "a" {\n    typesev\n}\n', 2, 2, "2:5", "write a space after 'type'"),
    "bare-cr": ('vm "a" {\r    firmware "f"\r}\r', 2, 2, "1:9", "a carriage return without a line feed"),
    # a comment hid the statement after it in a terminal ("debug allow  #<CR>debug deny")
    "bare-cr-in-comment": ('vm "a" {\n    firmware "f"  #\r    policy 0x1\n}\n', 2, 2, "2:20",
                           "a carriage return without a line feed"),
    "bare-cr-in-string": ('vm "a" {\r\n    cmdline "x\ry"\r\n}\r\n', 2, 2, "2:15",
                          "a carriage return without a line feed"),
    "escaped-closing-quote": ('vm "a" {\n    cmdline "a\\"\n}\n', 2, 2, "2:13",
                              "unterminated string: a string must end with '\"' on the same line "
                              "(\\\" is a quote inside it)"),
    "keyword-glued-to-a-digit": ('vm "a" {\n    firmware2 "fw.fd"\n}\n', 2, 2, "2:5",
                                 "unknown word 'firmware2': write a space after 'firmware'"),
    "memory-beyond-64TiB": (vm("memory 65TiB"), 1, 0, "3:12",
                            "memory must be a whole number of MiB, at least 1MiB and at most 64TiB"),
    "101-hex-digits": (vm("vcpus 0x" + "0" * 100 + "1"), 2, 2, "3:11", "number too long: 101 digits"),
    "nul-bytes": ('vm "a" {\n    firmware "f"\x00\x00\n}\n', 2, 2, "2:17", "found '\\x00'"),
    "huge-number": ('vm "a" {\n    vcpus ' + "9" * 5000 + "\n}\n", 2, 2, "2:11", "number too long"),
    "non-utf8": (b'vm "a" {\n    cmdline "caf\xe9"\n}\n', 2, 2, "2:17", "not UTF-8: byte 0xe9"),
    "ten-megabytes": (b"#" * (10 << 20), 2, 2, "1:1", "is larger than 256 KiB"),
    "missing-import": ('import "nope.sevm"\n\n' + MINIMAL, 2, 0, "1:1", "imported file not found"),
    "cyclic-templates": ('template "a" extends "b" {\n}\n\ntemplate "b" extends "a" {\n}\n', 1, 0,
                         "4:22", "template cycle: a -> b -> a"),
    "unknown-template": (vm().replace('"a" {', '"a" extends "nope" {'), 1, 0, "1:16",
                         "unknown template 'nope'"),
    "duplicate-setting": (vm("vcpus 1", "vcpus 2"), 1, 0, "4:5", "'vcpus' is set twice"),
    "contradiction": (vm('initrd "i"'), 1, 0, "3:5", "initrd without kernel"),
    "vcpus-zero": (vm("vcpus 0"), 1, 0, "3:11", "vcpus must be between 1 and 512, got 0"),
    "empty-file": ("", 1, 0, "1:1", "empty manifest"),
    "unformatted-but-valid": (f'vm "a"{{\n  firmware  "{FIRMWARE}"\n}}', 0, 1, None, None),
    # a byte-order mark is not part of the manifest: ignored, and left in place by fmt
    "valid-with-bom": (b"\xef\xbb\xbf" + MINIMAL.encode(), 0, 0, None, None),
    "directory": ("<directory>", 2, 2, "1:1", "is a directory, not a manifest"),
    "fifo": ("<fifo>", 2, 2, "1:1", "is not a regular file"),
    "missing-file": ("<missing>", 2, 2, "1:1", "manifest not found"),
    "symlink-loop": ("<loop>", 2, 2, "1:1", "cannot read"),
}


def _make(directory: Path, name: str, content) -> Path:
    path = directory / f"{name}.sevm"
    if content == "<directory>":
        path.mkdir()
    elif content == "<fifo>":
        os.mkfifo(path)
    elif content == "<loop>":
        os.symlink(path, path)
    elif content != "<missing>":
        write(directory, path.name, content)
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Every case through `sevm check` and `sevm fmt --check`, run in parallel once."""
    directory = tmp_path_factory.mktemp("cli")
    paths = {name: _make(directory, name, case[0]) for name, case in CASES.items()}
    jobs = {(name, cmd): args for name, path in paths.items()
            for cmd, args in (("check", ["check", str(path)]), ("fmt", ["fmt", "--check", str(path)]))}
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {key: pool.submit(sevm, *args, cwd=directory, timeout=60)
                   for key, args in jobs.items()}
        results = {key: future.result() for key, future in futures.items()}
    return paths, results


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("command", ["check", "fmt"])
def test_malformed_input(runs, name, command):
    paths, results = runs
    content, check_exit, fmt_exit, where, fragment = CASES[name]
    run = results[(name, command)]
    stderr = run.stderr.decode("utf-8", "replace")
    stdout = run.stdout.decode("utf-8", "replace")
    expected = check_exit if command == "check" else fmt_exit
    assert run.returncode == expected, f"exit {run.returncode}\n{stderr}\n{stdout}"
    assert "Traceback" not in stderr + stdout and "internal error" not in stderr
    if where is None or expected == 0:
        if command == "fmt" and expected == 1:
            assert f"{paths[name]}: not formatted" in stdout
        return
    first = next(line for line in stderr.splitlines() if ": error" in line)
    assert first.startswith(f"{paths[name]}:{where}: error"), stderr
    assert fragment in first, stderr
    if isinstance(content, str) and content and not content.startswith("<"):
        # the offending source line and a caret under it
        line = int(where.split(":")[0])
        lines = stderr.splitlines()
        at = lines.index(first)
        assert lines[at + 1].startswith(f"{line:>5} | "), stderr
        column = int(where.split(":")[1])
        assert re.fullmatch(r" {6}\| {%d}\^~*" % column, lines[at + 2]), stderr  # "| " + column - 1


def test_fmt_leaves_a_malformed_file_untouched(tmp_path):
    text = 'vm "a" {\n  memory four\n}\n'
    path = write(tmp_path, "m.sevm", text)
    run = sevm("fmt", str(path))
    assert run.returncode == 2 and path.read_text() == text
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_fmt_rewrites_then_check_passes(tmp_path):
    path = write(tmp_path, "m.sevm", 'vm "a"{\n  firmware  "f"  # c\n}')  # fmt reads no firmware
    run = sevm("fmt", str(path))
    assert run.returncode == 0 and f"{path}: formatted" in run.stdout.decode()
    assert path.read_text() == 'vm "a" {\n    firmware "f"  # c\n}\n'
    assert sevm("fmt", "--check", str(path)).returncode == 0


def test_stdin(tmp_path):
    bad = sevm("check", "-", stdin=b'vm "a" {\n    memory four\n}\n', cwd=tmp_path)
    assert bad.returncode == 2 and "-:2:12: error: expected a size" in bad.stderr.decode()
    formatted = sevm("fmt", "-", stdin=b'vm "a"{\n firmware "f"\n}', cwd=tmp_path)  # no check
    assert formatted.returncode == 0
    assert formatted.stdout.decode() == 'vm "a" {\n    firmware "f"\n}\n'


def test_fmt_check_of_stdin_only_reports(tmp_path):
    unformatted = b'vm "a"{\n firmware "f"\n}'
    run = sevm("fmt", "--check", "-", stdin=unformatted, cwd=tmp_path)
    assert run.returncode == 1 and run.stdout.decode() == "-: not formatted (run: sevm fmt -)\n"
    formatted = b'vm "a" {\n    firmware "f"\n}\n'
    run = sevm("fmt", "--check", "-", stdin=formatted, cwd=tmp_path)
    assert run.returncode == 0 and run.stdout == b""


def test_fmt_keeps_a_byte_order_mark(tmp_path):
    bom = b"\xef\xbb\xbf"
    path = write(tmp_path, "m.sevm", bom + b'vm "a"{\n firmware "f"\n}')
    assert sevm("fmt", str(path)).returncode == 0
    assert path.read_bytes() == bom + b'vm "a" {\n    firmware "f"\n}\n'
    assert sevm("fmt", "--check", str(path)).returncode == 0
    piped = sevm("fmt", "-", stdin=bom + b'vm "a"{\n firmware "f"\n}', cwd=tmp_path)
    assert piped.stdout == bom + b'vm "a" {\n    firmware "f"\n}\n'


def test_a_byte_order_mark_is_no_column(tmp_path):
    with_mark = write(tmp_path, "b1.sevm", b'\xef\xbb\xbfvm "\xe9" {\n}\n')
    without = write(tmp_path, "b2.sevm", b'vm "\xe9" {\n}\n')
    assert f"{with_mark}:1:5: error: not UTF-8" in sevm("check", str(with_mark)).stderr.decode()
    assert f"{without}:1:5: error: not UTF-8" in sevm("check", str(without)).stderr.decode()


def test_several_files_exit_with_the_worst(tmp_path):
    good = write(tmp_path, "good.sevm", MINIMAL)  # (pinned firmware aside: warnings only)
    failing = write(tmp_path, "failing.sevm", vm("vcpus 0"))
    broken = write(tmp_path, "broken.sevm", 'vm "a" {\n')
    assert sevm("check", str(good), str(failing)).returncode == 1
    run = sevm("check", str(failing), str(broken), str(good))
    assert run.returncode == 2
    stderr = run.stderr.decode()
    assert f"{failing}:3:11: error" in stderr and f"{broken}:1:9: error" in stderr


def test_examples_pass_check_and_fmt(tmp_path):
    examples = sorted(str(p) for p in (REPO / "manifests").rglob("*.sevm"))
    check = sevm("check", *examples, cwd=REPO)
    assert check.returncode == 0, check.stderr.decode()
    assert sevm("fmt", "--check", *examples, cwd=REPO).returncode == 0


def test_relative_manifest_path_and_relative_import(tmp_path):
    shutil.copy(FIRMWARE, tmp_path / "dir.fd")
    write(tmp_path, "dir/lib.sevm", 'template "t" {\n    firmware "../dir.fd"\n}\n')
    write(tmp_path, "dir/m.sevm", 'import "lib.sevm"\nvm "a" extends "t" {\n}\n')
    run = sevm("check", "dir/m.sevm", cwd=tmp_path)
    assert run.returncode == 0 and "Traceback" not in run.stderr.decode()
