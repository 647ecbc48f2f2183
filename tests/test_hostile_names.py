"""Manifests arrive in pull requests from people a reviewer may not trust, and every command
prints their names and paths into terminals, CI logs and review comments.  A line break in
a vm name forged a GitHub Actions workflow command in `sevm diff`'s output, an escape
sequence rewrote the terminal, a bidi override makes a reviewer misread a name.  Names are
printable text, paths hold no control or format characters, a machine type is a name, and
`sevm diff` quotes every manifest string it shows."""
from __future__ import annotations

import os
import shutil

import pytest

from frontend_support import assert_diag, compile_files, errors, sevm, vm, write
from review_support import run_sevm

FORGED = "w\\n::error file=README.md,line=1::forged"


@pytest.mark.parametrize("written, shown", [
    (FORGED, "U+000A"),
    ("a\\u{1b}[2J", "U+001B"),
    ("a\\u{9b}2J", "U+009B"),          # C1 control: a CSI on some terminals
    ("admin\\u{202e}nimda", "U+202E"),  # right-to-left override
    ("a\\u{200b}b", "U+200B"),          # zero-width space
    ("a\\u{2028}b", "U+2028"),          # line separator
    ("a\\u{a0}b", "U+00A0"),            # no-break space: only the plain space in a name
    ("x\\xff", "byte 0xff, which is not UTF-8"),
])
def test_a_name_that_does_not_print_as_itself_is_an_error(tmp_path, written, shown):
    result = compile_files(tmp_path, {"m.sevm": vm(name=written)})
    d = assert_diag(result, f"contains {shown}: a name is printable text", 1, 4)
    assert "\n" not in d.message and "\x1b" not in d.message and "\u202e" not in d.message


def test_template_names_and_empty_names(tmp_path):
    text = 'template "t\\tx" {\n    vcpus 1\n}\n' + vm(name="")
    result = compile_files(tmp_path, {"m.sevm": text})
    assert_diag(result, "template name 't\\tx' contains U+0009", 1, 10)
    assert_diag(result, "vm name is empty", 4, 4)


@pytest.mark.parametrize("name", ["web frontend", "中文-ü", 'q"uote', "a\\\\b", "✓ ok"])
def test_printable_names_stay_valid(tmp_path, name):
    write(tmp_path, "fw.fd", b"")
    result = compile_files(tmp_path, {"m.sevm": vm(name=name)})
    assert not [d for d in errors(result) if "name" in d.message], errors(result)


@pytest.mark.parametrize("role", ["firmware", "kernel", "initrd"])
def test_an_artefact_path_with_a_control_character_is_an_error(tmp_path, role):
    lines = ['kernel "k"', 'initrd "i"'] if role != "kernel" else ['kernel "k"']
    text = vm(*lines).replace(f'{role} "', f'{role} "evil\\n::error::x', 1)
    result = compile_files(tmp_path, {"m.sevm": text})
    d = next(d for d in errors(result) if "contains U+000A" in d.message)
    assert d.message.startswith(f"{role} path 'evil\\n::error::x")


def test_paths_keep_bytes_that_are_not_utf8_tabs_and_other_spaces(tmp_path):
    result = compile_files(tmp_path, {"m.sevm": vm('kernel "k\\xff\\u{a0}\\t.img"')})
    assert not [d for d in errors(result) if "contains" in d.message], errors(result)


def test_a_disk_path_with_a_bidi_override_is_an_error(tmp_path):
    text = vm("launch {", '    disk "root\\u{202e}gmi.exe"', "}")
    result = compile_files(tmp_path, {"m.sevm": text})
    assert_diag(result, "disk path 'root\\u202egmi.exe' contains U+202E", 4, 14)


@pytest.mark.parametrize("machine", ["x-oem-id=AB-7.1", "q35,smm=on", "pc q35", "", "q\\xff35"])
def test_a_machine_is_a_machine_type_name(tmp_path, machine):
    # "x-oem-id=AB-7.1" became a property of QEMU's default machine (pc-i440fx-7.2 on
    # QEMU 7.2, the machine type the kernel-hash rule refuses), and fails libvirt's schema
    result = compile_files(tmp_path, {"m.sevm": vm(f'machine "{machine}"')})
    assert_diag(result, "is not a QEMU machine type name", 3, 13)


@pytest.mark.parametrize("machine", ["q35", "pc-q35-7.1", "pc-i440fx-6.2", "microvm", "pc_q35.x"])
def test_machine_type_names_stay_valid(tmp_path, machine):
    result = compile_files(tmp_path, {"m.sevm": vm(f'machine "{machine}"')})
    assert not [d for d in errors(result) if "machine" in d.message]


def test_diff_of_a_forged_name_fails_instead_of_printing_it(tmp_path):
    old = write(tmp_path, "old.sevm", vm("policy {", "    debug deny", "}", name=FORGED))
    new = write(tmp_path, "new.sevm", vm("policy {", "    debug allow", "}", name=FORGED))
    done = sevm("diff", str(old), str(new), cwd=tmp_path)
    out = done.stdout.decode() + done.stderr.decode()
    assert done.returncode != 0
    assert not any(line.startswith("::error file=README.md") for line in out.splitlines()), out


def test_diff_quotes_the_strings_it_shows(tmp_path):
    """`extra` arguments may hold any bytes (they are QEMU's); shown, they are escaped."""
    def manifest(arg: str) -> str:
        return vm("machine \"q35\"", "launch {", f'    extra "-name", "{arg}"', "}")
    old = write(tmp_path, "old.sevm", manifest("a"))
    new = write(tmp_path, "new.sevm", manifest("b\\n::error::forged\\u{1b}[2J\\u{202e}"))
    done = run_sevm("diff", str(old), str(new), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    change = next(line for line in done.stdout.splitlines() if "launch.extra" in line)
    assert change.endswith('-> "-name", "b\\n::error::forged\\x1b[2J\\u{202e}"'), change
    assert "\x1b" not in done.stdout and "\u202e" not in done.stdout
    assert not any(line.startswith("::error") for line in done.stdout.splitlines())


def test_diff_compares_launch_disks_as_written(tmp_path):
    """The same manifest in two directories (as `--git` compiles the old side in a
    temporary one) has the same disks: no change, exit 0 with --fail-on any."""
    text = vm("launch {", '    disk "images/root.qcow2" format qcow2', "}")
    old = write(tmp_path / "a", "m.sevm", text)
    new = write(tmp_path / "b" / "deeper", "m.sevm", text)
    shutil.copy(old, tmp_path / "a" / "copy.sevm")
    done = run_sevm("diff", str(old), str(new), "--fail-on", "any", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "launch.disk" not in done.stdout
    moved = write(tmp_path / "b", "m.sevm", text.replace("images/root", "images/other"))
    done = run_sevm("diff", str(old), str(moved), "--fail-on", "any", cwd=tmp_path)
    assert done.returncode == 1
    assert '"images/root.qcow2" format qcow2 -> "images/other.qcow2" format qcow2' in done.stdout


FORGED_FILE = "x\n::error file=README.md,line=1::forged\n.sevm"


def test_file_names_are_escaped_in_diff_and_diagnostics(tmp_path):
    """A repository can hold a manifest named "x\\n::error ...": its name is printed by
    `sevm diff` (review's CI step) and in every diagnostic's location."""
    old = write(tmp_path, "old.sevm", vm("policy {", "    debug deny", "}"))
    new = write(tmp_path, FORGED_FILE, vm("policy {", "    debug allow", "}"))
    for argv in (["diff", str(old), str(new)], ["check", str(new)], ["measure", str(new)],
                 ["explain", str(new)]):
        done = sevm(*argv, cwd=tmp_path)
        out = done.stdout.decode() + done.stderr.decode()
        assert "x\\n::error file=README.md" in out, out
        assert not any(line.startswith("::error") for line in out.splitlines()), out


def test_json_of_diff_and_explain_is_valid_utf8_for_a_path_that_is_not(tmp_path):
    import json
    (tmp_path / "fw.fd").write_bytes(b"")
    with open(os.path.join(os.fsencode(tmp_path), b"fw\xff.fd"), "wb"):
        pass
    old = write(tmp_path, "old.sevm", vm())
    new = write(tmp_path, "new.sevm", vm().replace('"fw.fd"', '"fw\\xff.fd"'))
    for argv in (["diff", str(old), str(new), "--format", "json"],
                 ["explain", str(new), "--format", "json"]):
        done = sevm(*argv, cwd=tmp_path)
        assert done.returncode in (0, 1), done.stderr
        data = json.loads(done.stdout.decode("utf-8"))  # strict UTF-8, then JSON
        assert "fw\udcff.fd" in json.dumps(data, ensure_ascii=False), data
