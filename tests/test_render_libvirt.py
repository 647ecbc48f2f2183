"""The libvirt domain: valid against libvirt 9.0's schema (virt-xml-validate), escaped so any
name, path or cmdline parses back unchanged, and refusing what libvirt cannot express."""
from __future__ import annotations

import subprocess
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from hypothesis import given, settings
from render_support import EXAMPLES, VIRT_XML_VALIDATE, example_id, make_vm, need_tool, sev_vm
from render_support_gen import compile_vm, manifests, qemu_variants

from sevmanifest import render
from sevmanifest.diagnostics import DiagnosticError
from sevmanifest.frontend import compile_file
from sevmanifest.model import Disk, Launch
from sevmanifest.render.libvirt import XML_INVALID



def _domain(vm, spec="vcpus=4") -> str:
    return render.render_libvirt(vm, render.select_variant(vm, spec)).text


def validate(text: str, directory: Path) -> subprocess.CompletedProcess:
    need_tool(VIRT_XML_VALIDATE)
    path = Path(tempfile.mkstemp(suffix=".xml", dir=directory)[1])
    path.write_bytes(render.encode_output(text))
    return subprocess.run([VIRT_XML_VALIDATE, str(path), "domain"], capture_output=True, text=True,
                          timeout=60)


def assert_valid(text: str, directory: Path) -> None:
    result = validate(text, directory)
    assert result.returncode == 0 and "validates" in result.stdout + result.stderr, result.stderr + text


@pytest.mark.realtools
@pytest.mark.parametrize("path", EXAMPLES, ids=example_id)
def test_example_domains_validate(path: Path, tmp_path: Path):
    for vm in compile_file(str(path)).manifest.vms:
        for variant in qemu_variants(vm):
            if variant.legacy_vm_type:
                assert_valid(render.render_libvirt(vm, variant).text, tmp_path)
            else:
                with pytest.raises(DiagnosticError, match="legacy-vm-type"):
                    render.render_libvirt(vm, variant)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("generated")


@pytest.mark.realtools
@settings(max_examples=30, deadline=None)
@given(manifests())
def test_generated_domains_validate(scratch, text):
    vm = compile_vm(text, scratch)
    variant = qemu_variants(vm)[0]
    if not variant.legacy_vm_type:
        return
    try:
        xml_ok = vm.cmdline is None or not XML_INVALID.search(vm.cmdline.decode())
    except UnicodeDecodeError:
        xml_ok = False
    if xml_ok:
        assert_valid(render.render_libvirt(vm, variant).text, scratch)
    else:
        with pytest.raises(DiagnosticError, match="cannot appear in XML"):
            render.render_libvirt(vm, variant)


@pytest.mark.realtools
def test_an_invalid_domain_is_caught(tmp_path: Path):
    text = _domain(make_vm(tmp_path))
    assert_valid(text, tmp_path)
    assert validate(text.replace("<vcpu ", "<vcpus "), tmp_path).returncode != 0
    assert validate(text.replace("<policy>0x", "<policy>0xg"), tmp_path).returncode != 0


HOSTILE = "a<b>&c'd\"e --> ]]> &amp; é"


@pytest.mark.realtools
def test_hostile_names_and_paths_render_valid_xml(tmp_path: Path):
    directory = tmp_path / HOSTILE.replace("/", "")
    cmdline = f"{HOSTILE}\r\n\t x=\"y\" z='w'".encode()
    vm = make_vm(directory, name=HOSTILE, cmdline=cmdline,
                 launch=Launch(disks=(Disk("d", "qcow2", directory / "d,'&.qcow2"),), net="user",
                               extra=("-name", HOSTILE)))
    text = _domain(vm)
    assert_valid(text, tmp_path)
    root = ET.fromstring(text)
    assert root.findtext("name") == HOSTILE
    assert root.findtext("os/cmdline") == cmdline.decode()  # CR, LF and tab survive parsing
    assert root.findtext("os/loader") == f"{directory}/OVMF.amdsev.fd"
    assert root.find("devices/disk/source").get("file") == f"{directory}/d,'&.qcow2"
    qemu_ns = "{http://libvirt.org/schemas/domain/qemu/1.0}"
    assert [a.get("value") for a in root.iter(qemu_ns + "arg")] == ["-name", HOSTILE]


def test_sev_es_domain(tmp_path: Path):
    root = ET.fromstring(_domain(make_vm(tmp_path)))
    sev = root.find("launchSecurity")
    assert sev.get("type") == "sev" and sev.get("kernelHashes") == "yes"
    assert [sev.findtext(t) for t in ("cbitpos", "reducedPhysBits", "policy")] == ["51", "1", "0x0005"]
    assert root.find("os/loader").attrib == {"readonly": "yes", "type": "pflash", "stateless": "yes"}
    assert root.find("os/type").get("machine") == "q35"
    assert root.findtext("vcpu") == "4" and root.findtext("cpu/model") == "EPYC-Milan"
    assert root.find("cpu/model").get("fallback") == "forbid"
    assert root.find("features/smm").get("state") == "off" and root.findtext("on_reboot") == "destroy"
    assert root.find("memoryBacking/locked") is not None
    assert root.findtext("memory") == "2048" and root.find("memory").get("unit") == "MiB"
    assert root.find("devices/interface/driver").get("iommu") == "on"


def test_sev_disk_boot_domain(tmp_path: Path):
    vm = sev_vm(tmp_path, kernel=None, initrd=None, cmdline=None, kernel_hashes=False)
    root = ET.fromstring(_domain(vm, None))
    assert root.find("launchSecurity").get("kernelHashes") == "no"
    assert root.find("os/kernel") is None and root.find("cpu") is None
    assert root.find("features/smm") is None and root.findtext("on_reboot") == "restart"


def test_qemu_7_2_machine_pin_applies_to_libvirt(tmp_path: Path):
    root = ET.fromstring(_domain(make_vm(tmp_path, host=dict(qemu_version=(7, 2)))))
    assert root.find("os/type").get("machine") == "pc-q35-7.1"


def test_legacy_vm_type_comment_for_qemu_9_1_and_later(tmp_path: Path):
    assert "libvirt cannot set sev-guest's legacy-vm-type" in _domain(make_vm(tmp_path))
    assert "libvirt cannot set" not in _domain(make_vm(tmp_path, host=dict(qemu_version=(9, 0))))


def test_legacy_vm_type_off_cannot_be_expressed(tmp_path: Path):
    vm = make_vm(tmp_path, host=dict(legacy_vm_types=(False,)))
    with pytest.raises(DiagnosticError, match="libvirt cannot set sev-guest's legacy-vm-type"):
        _domain(vm)


@pytest.mark.parametrize("cmdline", [b"a\x01b", b"a\xffb", b"a\x1bb"])
def test_cmdline_xml_cannot_carry_is_an_error(tmp_path: Path, cmdline):
    with pytest.raises(DiagnosticError, match="cannot appear in XML"):
        _domain(make_vm(tmp_path, cmdline=cmdline))


def test_line_break_in_a_path_is_an_error(tmp_path: Path):
    with pytest.raises(DiagnosticError, match="line break"):
        _domain(make_vm(tmp_path / "a\nb"))


def test_comment_cannot_be_closed_by_a_name(tmp_path: Path):
    text = _domain(make_vm(tmp_path, name="x-->y<!--z-"))
    comment = text[:text.index("-->") + 3]
    assert comment.count("--") == 2 and "x- ->y" in comment
    ET.fromstring(text)


@pytest.mark.parametrize("char", ["\uffff", "\ufffe"])
def test_comment_escapes_characters_xml_cannot_carry(tmp_path: Path, char):
    """The manifest's file name is only in the comment; U+FFFE and U+FFFF may not appear
    in an XML document at all, so the comment shows them as escapes."""
    vm = make_vm(tmp_path, file=str(tmp_path / f"f{char}.sevm"))
    text = _domain(vm)
    assert not XML_INVALID.search(text)
    assert f"f\\u{ord(char):04x}.sevm" in text[:text.index("-->")]
    ET.fromstring(text)


@pytest.mark.parametrize("setting, line, what, shown", [
    ('    launch {\n        extra "-name", "\\xfe"\n    }\n', 5, "extra argument '\\xfe'", "byte 0xfe"),
    ('    launch {\n        extra "-name", "a\\x01b"\n    }\n', 5, "extra argument 'a\\x01b'",
     "character U+0001"),
    ('    kernel "vmlinuz\\xff"\n    kernel-hashes on\n', 4, "kernel path", "byte 0xff"),
])
def test_values_xml_cannot_carry_are_located_in_the_manifest(tmp_path: Path, setting, line,
                                                            what, shown):
    """Not at a line of sevm's own template, and a byte that is not UTF-8 is called a byte."""
    from render_support import AMDSEV_TAIL
    (tmp_path / "fw.fd").write_bytes(AMDSEV_TAIL.read_bytes())
    (tmp_path / "vmlinuz\xff".encode("latin-1").decode("utf-8", "surrogateescape")).write_bytes(b"k")
    vm = compile_vm(f'vm "x" {{\n    type sev\n    firmware "fw.fd"\n{setting}}}\n', tmp_path)
    with pytest.raises(DiagnosticError) as exc:
        _domain(vm, None)
    diagnostic = exc.value.diagnostics[0]
    assert f"the {what}" in diagnostic.message and f"contains {shown}, which cannot appear in XML" \
        in diagnostic.message
    assert (diagnostic.span.file, diagnostic.span.line) == (str(tmp_path / "gen.sevm"), line)


def test_the_xml_filter_calls_a_byte_a_byte():
    from sevmanifest.render.env import RenderValueError, xml_text
    with pytest.raises(RenderValueError, match="byte 0xff cannot appear in XML"):
        xml_text("a\udcffb")
    with pytest.raises(RenderValueError, match="character U\\+FFFF cannot appear in XML"):
        xml_text("a\uffffb")
