"""`sevm render` end to end over the example manifests: the CLI contract, exit codes,
atomic -o, and the same digest from `sevm measure`, the script comment and the argv."""
from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest
from render_support import REPO, run_script

from sevmanifest.cli import main
from sevmanifest.render.readback import launch_digest_from_argv

ES = str(REPO / "manifests" / "sev-es-direct.sevm")
DISK = str(REPO / "manifests" / "sev-disk-boot.sevm")
FLEET_DB = str(REPO / "manifests" / "fleet" / "db.sevm")


def sevm(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["sevm", *args], capture_output=True, timeout=120)


def _run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_script_for_a_single_variant_vm():
    result = sevm("render", "qemu", DISK)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(b"#!/bin/sh\n") and b"-S \\\n" in result.stdout


def test_a_manifest_of_templates_only_has_no_vm_to_render(tmp_path: Path):
    path = tmp_path / "n.sevm"
    path.write_text('template "t" {\n    type sev\n}\n')
    for target in ("qemu", "libvirt"):
        result = sevm("render", target, str(path))
        assert result.returncode == 2 and result.stdout == b""
        assert f"{path} declares no vm: nothing to render".encode() in result.stderr, result.stderr


def test_matrix_without_variant_is_a_usage_error_listing_them():
    result = sevm("render", "qemu", ES)
    assert result.returncode == 2 and result.stdout == b""
    for n in (1, 2, 4, 8):
        assert f"--variant vcpus={n}".encode() in result.stderr


def test_one_digest_three_ways(capsys, tmp_path: Path):
    """sevm measure, the script's comment and the read-back argv agree for every variant."""
    code, out, _ = _run(capsys, "measure", ES, "--format", "json")
    assert code == 0
    for variant in json.loads(out)["vms"][0]["variants"]:
        spec = f"vcpus={variant['vcpus']}"
        code, argv_text, _ = _run(capsys, "render", "qemu", ES, "--variant", spec, "--format", "argv")
        assert code == 0
        argv = json.loads(argv_text)
        assert launch_digest_from_argv(argv).hex() == variant["launch_digest"]
        code, script, _ = _run(capsys, "render", "qemu", ES, "--variant", spec)
        assert f"# launch digest:  {variant['launch_digest']}" in script
        assert [os.fsdecode(a) for a in run_script(script.encode(), tmp_path)] == argv[1:]


def test_output_file_is_written_whole_and_executable(capsys, tmp_path: Path):
    out = tmp_path / "launch.sh"
    code, stdout, _ = _run(capsys, "render", "qemu", ES, "--variant", "vcpus=2", "-o", str(out))
    assert code == 0 and stdout == ""
    assert out.stat().st_mode & stat.S_IXUSR
    code, again, _ = _run(capsys, "render", "qemu", ES, "--variant", "vcpus=2")
    assert out.read_text() == again
    assert sorted(p.name for p in tmp_path.iterdir()) == ["launch.sh"]  # no temporary left
    xml = tmp_path / "d.xml"
    assert _run(capsys, "render", "libvirt", DISK, "-o", str(xml))[0] == 0
    assert not xml.stat().st_mode & stat.S_IXUSR


def test_failed_render_leaves_no_output_file(capsys, tmp_path: Path):
    out = tmp_path / "d.xml"
    code, _, err = _run(capsys, "render", "libvirt", FLEET_DB, "--variant", "vcpus=4,legacy-vm-type=off",
                        "-o", str(out))
    assert code == 1 and "legacy-vm-type" in err
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_libvirt_and_template(capsys, tmp_path: Path):
    code, xml, _ = _run(capsys, "render", "libvirt", FLEET_DB, "--variant", "vcpus=8,legacy-vm-type=on")
    assert code == 0 and "<vcpu placement='static'>8</vcpu>" in xml
    template = tmp_path / "kbs.json.j2"
    template.write_text('{"digest": "{{ launch_digest }}", "vcpus": {{ variant.vcpus }}}\n')
    code, out, _ = _run(capsys, "render", "--template", str(template), FLEET_DB,
                        "--variant", "vcpus=4,legacy-vm-type=off")
    assert code == 0 and json.loads(out)["vcpus"] == 4


@pytest.mark.parametrize("args", [
    ["render", DISK], ["render", "docker", DISK], ["render", "libvirt", DISK, "--format", "sh"],
    ["render", "qemu", DISK, "--format", "xml"], ["render", "qemu", "/nonexistent.sevm"],
    ["render", "qemu", DISK, "--vm", "nope"], ["render", "qemu", DISK, "--variant", "cores=2"],
    ["render", "--template", "/nonexistent.j2", DISK], ["render", "--template", "x.j2", "qemu", DISK],
])
def test_usage_errors_exit_2(capsys, args):
    code, out, err = _run(capsys, *args)
    assert code == 2 and out == "" and "Traceback" not in err and err


def test_several_vms_need_vm(capsys, tmp_path: Path):
    firmware = REPO / "manifests" / "images" / "OVMF.synthetic-generic.fd"
    body = f'    type sev\n    firmware "{firmware}"\n    policy 0x3\n'
    manifest = tmp_path / "two.sevm"
    manifest.write_text(f'vm "a" {{\n{body}}}\nvm "b" {{\n{body}}}\n')
    code, _, err = _run(capsys, "render", "qemu", str(manifest))
    assert code == 2 and "--vm" in err and "a, b" in err
    code, out, _ = _run(capsys, "render", "qemu", str(manifest), "--vm", "b", "--format", "argv")
    assert code == 0 and json.loads(out)[0] == "qemu-system-x86_64"


IMAGES = REPO / "manifests" / "images"


def _firmware_cases(tmp_path: Path) -> dict[str, tuple[str, str]]:
    """Manifests that `sevm measure` rejects for their firmware or artefacts, each with a
    word of the error it must give."""
    amdsev, generic = IMAGES / "OVMF.synthetic-amdsev.fd", IMAGES / "OVMF.synthetic-generic.fd"
    blank = tmp_path / "blank.fd"
    blank.write_bytes(bytes(64 << 10))  # no GUID table, so no SEV-ES reset block
    (tmp_path / "fw-dir").mkdir()
    kernel = IMAGES / "vmlinuz.synthetic"
    sev = '    type sev\n    policy 0x3\n'
    es = '    type sev-es\n    cpu "EPYC-Milan"\n    policy 0x7\n'
    return {
        "pin": (f'{sev}    firmware "{amdsev}" sha256 "{"0" * 64}"\n', "sha256"),
        "missing": (f'{sev}    firmware "{tmp_path / "absent.fd"}"\n', "absent.fd"),
        "directory": (f'{sev}    firmware "{tmp_path / "fw-dir"}"\n', "fw-dir"),
        "no-hash-table": (f'{sev}    firmware "{generic}"\n    kernel "{kernel}"\n'
                          '    kernel-hashes on\n', "hash-table"),
        "no-reset-block": (f'{es}    firmware "{blank}"\n', "reset block"),
    }


@pytest.mark.parametrize("case", ["pin", "missing", "directory", "no-hash-table", "no-reset-block"])
def test_argv_format_checks_the_firmware_like_the_script(capsys, tmp_path: Path, case):
    """--format argv measures the variant as the script does: it prints no command line
    for a launch that `sevm measure` rejects, and fails with the same error and status."""
    body, word = _firmware_cases(tmp_path)[case]
    manifest = tmp_path / "m.sevm"
    manifest.write_text(f'vm "m" {{\n{body}}}\n')
    measured = _run(capsys, "measure", str(manifest))
    script = _run(capsys, "render", "qemu", str(manifest))
    argv = _run(capsys, "render", "qemu", str(manifest), "--format", "argv")
    assert measured[0] != 0 and word in measured[2]
    assert script[0] != 0 and script[1] == ""
    assert argv == script
