"""`sevm diff` and `sevm explain` on the command line: formats, exit status, bad input."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from review_support import COMMON, WEB, line_of, run_sevm, write_project
from sevmanifest.cli import main

DEBUG_ALLOWED = {COMMON: ("debug deny", "debug allow")}
CMDLINE = {WEB: ('"console=ttyS0"', '"console=ttyS0 quiet"')}
MEMORY = {WEB: ("memory 2GiB", "memory 4GiB")}


def _pair(tmp_path, edits):
    write_project(tmp_path / "old")
    write_project(tmp_path / "new", edits)
    return f"old/{WEB}", f"new/{WEB}"


def _diff(tmp_path, monkeypatch, capsys, edits, *options):
    monkeypatch.chdir(tmp_path)
    old, new = _pair(tmp_path, edits)
    status = main(["diff", old, new, *options])
    out, err = capsys.readouterr()
    return status, out, err


def test_json_shape_per_cli_spec(tmp_path, monkeypatch, capsys):
    status, out, _ = _diff(tmp_path, monkeypatch, capsys, DEBUG_ALLOWED, "--format", "json")
    data = json.loads(out)
    assert status == 0 and set(data) == {"changes", "weakens"} and data["weakens"] is True
    [change] = data["changes"]
    assert {k: change[k] for k in ("path", "old", "new", "kind")} == {
        "path": "vm.web.policy.debug", "old": "deny", "new": "allow", "kind": "weakens"}
    assert isinstance(change["why"], str) and change["why"]
    # documented extra keys: where NEW sets the value (here: in the imported template)
    assert change["file"] == f"new/{COMMON}" and change["measured"] is True
    assert change["line"] == line_of(tmp_path / "new" / COMMON, "debug allow")


@pytest.mark.parametrize("edits,fail_on,expected", [
    (DEBUG_ALLOWED, None, 0), (DEBUG_ALLOWED, "weaken", 1), (DEBUG_ALLOWED, "measurement", 1),
    (CMDLINE, "weaken", 0), (CMDLINE, "measurement", 1), (CMDLINE, "any", 1),
    (MEMORY, "measurement", 0), (MEMORY, "any", 1), ({}, "any", 0),
])
def test_fail_on_ladder(tmp_path, monkeypatch, capsys, edits, fail_on, expected):
    options = ["--fail-on", fail_on] if fail_on else []
    status, _, _ = _diff(tmp_path, monkeypatch, capsys, edits, *options)
    assert status == expected


def test_text_names_the_line_and_has_no_colour_when_not_a_tty(tmp_path, monkeypatch, capsys):
    status, out, _ = _diff(tmp_path, monkeypatch, capsys, DEBUG_ALLOWED)
    line = line_of(tmp_path / "new" / COMMON, "debug allow")
    assert f"new/{COMMON}:{line}:9: weakens: vm.web.policy.debug: deny -> allow" in out
    assert "\x1b[" not in out and "weakens the launch policy" in out
    _, coloured, _ = _diff(tmp_path, monkeypatch, capsys, DEBUG_ALLOWED, "--color", "always")
    assert "\x1b[1;31mweakens\x1b[0m" in coloured


def test_no_change(tmp_path, monkeypatch, capsys):
    status, out, _ = _diff(tmp_path, monkeypatch, capsys, {})
    assert status == 0 and out == "no semantic change\n"


def test_github_annotations_point_at_the_changed_lines(tmp_path, monkeypatch, capsys):
    edits = {COMMON: ("debug deny", "debug allow"), WEB: ("vcpus 1, 2", "vcpus 1, 2, 4")}
    status, out, _ = _diff(tmp_path, monkeypatch, capsys, edits, "--format", "github",
                           "--fail-on", "weaken")
    lines = out.splitlines()
    assert status == 1 and len(lines) == 2
    pattern = re.compile(r"::(\w+) file=([^,]+),line=(\d+),col=(\d+),endColumn=\d+,title=[^:]+::(.*)")
    found = [pattern.fullmatch(line).groups() for line in lines]
    debug_line = line_of(tmp_path / "new" / COMMON, "debug allow")
    vcpus_line = line_of(tmp_path / "new" / WEB, "vcpus 1, 2, 4")
    assert [(lvl, f, int(ln)) for lvl, f, ln, _col, _msg in found] == [
        ("error", f"new/{COMMON}", debug_line), ("error", f"new/{WEB}", vcpus_line)]
    assert found[0][4].startswith("vm.web.policy.debug: deny -> allow: debug allowed")


def test_github_levels_without_fail_on(tmp_path, monkeypatch, capsys):
    edits = {WEB: ('"console=ttyS0"', '"x"'), COMMON: ("debug deny", "debug allow")}
    write_project(tmp_path / "old")
    new = write_project(tmp_path / "new", edits)
    (new / WEB).write_text((new / WEB).read_text().replace("memory 2GiB", "memory 3GiB"))
    monkeypatch.chdir(tmp_path)
    assert main(["diff", f"old/{WEB}", f"new/{WEB}", "--format", "github"]) == 0
    levels = [line.split(" ", 1)[0] for line in capsys.readouterr().out.splitlines()]
    assert levels == ["::warning", "::warning", "::notice"]  # weakens, measurement, neutral


def test_github_escapes_message_data(tmp_path, monkeypatch, capsys):
    edits = {WEB: ('"console=ttyS0"', '"a%b\\nc"')}
    _, out, _ = _diff(tmp_path, monkeypatch, capsys, edits, "--format", "github")
    assert "a%25b\\nc" in out and out.count("\n") == 1


@pytest.mark.parametrize("args", [
    ["diff"], ["diff", "one.sevm"], ["diff", "a", "b", "c"],
    ["diff", "missing.sevm", "missing2.sevm"], ["diff", "--format", "yaml", "a", "b"],
    ["diff", "--fail-on", "never", "a", "b"],
])
def test_usage_errors_exit_2(tmp_path, monkeypatch, capsys, args):
    monkeypatch.chdir(tmp_path)
    assert main(args) == 2


def test_malformed_manifest_is_bad_input(tmp_path, monkeypatch, capsys):
    old, new = _pair(tmp_path, {WEB: ("vcpus 1, 2", "vcpus 1, two")})
    monkeypatch.chdir(tmp_path)
    assert main(["diff", old, new]) == 2
    err = capsys.readouterr().err
    assert f"new/{WEB}:{line_of(tmp_path / 'new' / WEB, 'two')}:" in err


def test_subprocess_no_traceback(tmp_path):
    write_project(tmp_path / "old")
    proc = run_sevm("diff", "old/web.sevm", "old/nonexistent.sevm", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "nonexistent.sevm" in proc.stderr


def test_diff_reads_standard_input_once(tmp_path, monkeypatch, capsys):
    """`sevm diff - -` compared standard input with what was left of it."""
    monkeypatch.chdir(tmp_path)
    assert main(["diff", "-", "-"]) == 2
    out, err = capsys.readouterr()
    assert "only one input can be '-' (standard input)" in err and out == ""


# ---- explain ------------------------------------------------------------------------------

def test_explain_policy_text(capsys):
    assert main(["explain", "0x5"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("policy 0x00000005\n")
    assert re.search(r"bit 0 +NODBG +debug +deny", out)
    assert re.search(r"! bit 1 +NOKS +key-sharing +allow", out)
    assert re.search(r"bit 2 +ES +type +sev-es", out)


def test_explain_policy_json_decimal(capsys):
    assert main(["explain", "--format", "json", str(0x1800_0001 | 0x40)]) == 0
    data = json.loads(capsys.readouterr().out)
    by_name = {b["name"]: b for b in data["bits"]}
    assert data["policy"] == "0x18000041"
    assert by_name["reserved"]["state"] == "0x00000040" and by_name["reserved"]["concern"]
    assert by_name["API"]["state"] == "0.24" and by_name["ES"]["state"] == "sev"


@pytest.mark.parametrize("args", [["explain", "0x100000000"], ["explain", "0x5", "--vm", "web"],
                                  ["explain", "missing.sevm"]])
def test_explain_bad_input(tmp_path, monkeypatch, capsys, args):
    monkeypatch.chdir(tmp_path)
    assert main(args) == 2


@pytest.mark.parametrize("text,shown", [
    ("1" * 5000, "11111111111111111111… (5,000 digits)"),
    ("0x" + "f" * 5000, "0xffffffffffffffffff… (5,000 digits)"),
    ("0x" + "0" * 5000 + "1" * 21, "(21 digits)"),
], ids=["decimal", "hex", "leading-zeros"])
def test_explain_a_policy_of_thousands_of_digits_is_a_usage_error(capsys, text, shown):
    """Over 4 300 decimal digits int() raised ValueError (internal error); a long hex number
    was echoed in full.  Now a usage error that shows the start of the number."""
    assert main(["explain", text]) == 2
    err = capsys.readouterr().err
    assert "a guest policy is a 32-bit value; " in err and shown in err
    assert "internal error" not in err and len(err) < 200


def test_explain_a_policy_with_no_digits_is_a_usage_error(capsys):
    assert main(["explain", "0x_"]) == 2  # int("", 16): was an internal error
    assert "no digits after '0x'" in capsys.readouterr().err
    assert main(["explain", "0x" + "0" * 5000 + "5"]) == 0  # leading zeros are no digits
    assert capsys.readouterr().out.startswith("policy 0x00000005\n")


def test_explain_exit_status_follows_the_diagnostics(tmp_path, monkeypatch, capsys):
    """A manifest that parses but fails validation is exit 1, as in check and measure (explain
    said 2 for every error); unreadable input stays 2, and so does the matrix-size guard."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "fw.fd").write_bytes(b"")
    (tmp_path / "zero.sevm").write_text('vm "a" {\n    firmware "fw.fd"\n    vcpus 0\n}\n')
    assert main(["check", "zero.sevm"]) == 1
    assert main(["explain", "zero.sevm"]) == 1
    assert "vcpus" in capsys.readouterr().err
    counts = ", ".join(str(n) for n in range(1, 102))
    sigs = ", ".join(f"signature 0x{0xA00F00 + i:x}" for i in range(100))
    (tmp_path / "big.sevm").write_text(f'vm "a" {{\n  type sev-es\n  firmware "fw.fd"\n'
                                       f'  vcpus {counts}\n  cpu {sigs}\n}}\n')
    assert main(["explain", "big.sevm"]) == 2
    assert "10,100 variants" in capsys.readouterr().err
    assert main(["explain", "missing.sevm"]) == 2


def test_explain_manifest_hardware_order(tmp_path, monkeypatch, capsys):
    write_project(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert main(["explain", WEB, "--vm", "web"]) == 0
    out = capsys.readouterr().out
    steps = re.findall(r"^  \d\. ([\w -]+):", out, re.M)
    assert steps == ["firmware", "kernel-hashes table", "VMSAs"]
    table = re.search(r"kernel-hashes table: (.*)", out).group(1)
    assert table.index("cmdline") < table.index("initrd") < table.index("kernel vmlinuz")


def test_explain_unmeasured_kernel(tmp_path, monkeypatch, capsys):
    write_project(tmp_path, {COMMON: ("kernel-hashes on", "kernel-hashes off")})
    monkeypatch.chdir(tmp_path)
    assert main(["explain", "--format", "json", WEB]) == 0
    [vm] = json.loads(capsys.readouterr().out)["vms"]
    assert [m["step"] for m in vm["measured"]] == ["firmware", "kernel-hashes table", "VMSAs"]
    assert vm["measured"][1]["detail"].startswith("NOT MEASURED")


def test_colour_when_stdout_is_a_terminal(tmp_path):
    import os
    import pty
    import subprocess
    import sys
    old, new = _pair(tmp_path, DEBUG_ALLOWED)
    leader, follower = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"} | {"TERM": "xterm"}
    proc = subprocess.run([sys.executable, "-m", "sevmanifest", "diff", old, new], cwd=tmp_path,
                          stdout=follower, stderr=subprocess.PIPE, env=env, timeout=60)
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 4096)
        except OSError:  # EIO: the terminal's other end is closed
            break
        if not data:
            break
        chunks.append(data)
    os.close(leader)
    assert proc.returncode == 0
    assert b"\x1b[1;31mweakens\x1b[0m" in b"".join(chunks)


def test_digest_rows_follow_the_cpu_signature_not_its_name(tmp_path):
    """"EPYC-Milan" renamed "EPYC-Milan-v2" (the same CPUID signature) is the same variant:
    its rows are aligned old against new, not shown as removed and added."""
    repo = Path(__file__).resolve().parents[1] / "manifests"
    shutil.copytree(repo / "images", tmp_path / "images")
    text = (repo / "sev-es-direct.sevm").read_text().replace("vcpus 1, 2, 4, 8", "vcpus 1, 2")
    (tmp_path / "o.sevm").write_text(text)
    (tmp_path / "n.sevm").write_text(text.replace('cpu "EPYC-Milan"', 'cpu "EPYC-Milan-v2"')
                                     .replace('ro"', 'ro quiet"'))
    done = run_sevm("diff", "o.sevm", "n.sevm", "--digests", "--format", "json", cwd=tmp_path)
    [table] = json.loads(done.stdout)["digests"]
    rows = table["variants"]
    assert len(rows) == 2 and all(r["old"] and r["new"] and r["old"] != r["new"] for r in rows)
    measured = json.loads(run_sevm("measure", "o.sevm", "--format", "json", cwd=tmp_path).stdout)
    old = [v["launch_digest"] for vm in measured["vms"] for v in vm["variants"]]
    assert [r["old"] for r in rows] == old
