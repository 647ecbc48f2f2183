"""Grammar and lexical rules: every form of the language parses into the expected values
(model fields and syntax-tree positions)."""
from __future__ import annotations

from pathlib import Path

import pytest

from frontend_support import MINIMAL, PIN, compile_files, errors, vm, write
from sevmanifest.frontend import compile_file, compile_text
from sevmanifest.frontend.parse import parse_text
from sevmanifest.model import Cpu, Disk, GuestType, HostMatrix, Launch, Vmm

GiB = 1 << 30


def one_vm(text: str, path: str = "/work/m.sevm"):
    result = compile_text(text, path)
    assert not errors(result), [d.message for d in result.diagnostics]
    (only,) = result.manifest.vms
    return only


# ---- numbers and sizes -----------------------------------------------------------------------
@pytest.mark.parametrize("spelling, expected", [
    ("4GiB", 4 * GiB), ("4G", 4 * GiB), ("4 GiB", 4 * GiB), ("4\tG", 4 * GiB),
    ("4096MiB", 4 * GiB), ("4096M", 4 * GiB), ("4194304KiB", 4 * GiB), ("4194304K", 4 * GiB),
    ("1TiB", 1 << 40), ("2T", 2 << 40), ("0x10GiB", 16 * GiB), ("0x1BM", 27 << 20),
    ("0xbGiB", 11 * GiB), ("0xB KiB", None), ("1_024MiB", 1 * GiB), ("0x4_00M", 1 * GiB),
    ("02GiB", 2 * GiB), ("0x0_2G", 2 * GiB), ("1536 MiB", 1536 << 20),
])
def test_sizes(spelling, expected):
    if expected is None:  # 11 KiB parses but is not a whole number of MiB
        result = compile_text(vm(f"memory {spelling}"), "/work/m.sevm")
        assert [d.message for d in errors(result)] == [
            "memory must be a whole number of MiB, at least 1MiB and at most 64TiB"]
        return
    assert one_vm(vm(f"memory {spelling}")).memory == expected


@pytest.mark.parametrize("spelling, expected", [
    ("4", 4), ("0x4", 4), ("1_6", 16), ("0x1_0", 16), ("010", 10), ("0x0a", 10), ("0xA", 10),
    ("00", None), ("512", 512), ("0x200", 512), ("5_1_2", 512),
])
def test_integers(spelling, expected):
    if expected is None:
        result = compile_text(vm(f"vcpus {spelling}"), "/work/m.sevm")
        assert "vcpus must be between 1 and 512, got 0" in errors(result)[0].message
        return
    assert one_vm(vm(f"vcpus {spelling}")).vcpus == (expected,)


def test_leading_zero_is_decimal_not_octal():
    assert one_vm(vm("vcpus 08, 010")).vcpus == (8, 10)


@pytest.mark.parametrize("spelling, expected", [
    ("0.24", (0, 24)), ("1.55", (1, 55)), ("00.024", (0, 24)), ("255.255", (255, 255)),
])
def test_min_api_versions(spelling, expected):
    policy = one_vm(vm("policy {", f"    min-api {spelling}", "}")).policy
    assert (policy.api_major, policy.api_minor) == expected


# ---- strings: exact bytes --------------------------------------------------------------------
@pytest.mark.parametrize("literal, expected", [
    (r'"plain"', b"plain"), (r'"a\\b"', b"a\\b"), (r'"say \"hi\""', b'say "hi"'),
    (r'"line\nbreak"', b"line\nbreak"), (r'"tab\there"', b"tab\there"),
    (r'"\x41\x7a"', b"Az"), (r'"\xff\x01\x80"', b"\xff\x01\x80"), (r'"\xFF"', b"\xff"),
    (r'"\u{41}"', b"A"), (r'"\u{e9}"', "é".encode()), (r'"\u{0000E9}"', b"\xc3\xa9"),
    (r'"\u{1F600}"', "😀".encode()), (r'"\u{10ffff}"', "\U0010ffff".encode()),
    ('"é raw"', "é raw".encode()), ('"\traw tab"', b"\traw tab"), ('"  spaced  "', b"  spaced  "),
    ('"a # not a comment"', b"a # not a comment"), ('"{ } , vm"', b"{ } , vm"),
    ('""', b""), (r'"\\\\"', b"\\\\"), (r'"\x5c"', b"\\"), (r'"\u{5c}n"', b"\\n"),
])
def test_string_escapes_give_exact_bytes(literal, expected):
    manifest = vm('kernel "vmlinuz"', f"cmdline {literal}", "kernel-hashes on")
    assert one_vm(manifest).cmdline == expected


def test_xNN_is_a_raw_byte_and_u_is_utf8():
    # \xe9 is the single byte 0xe9; \u{e9} is U+00E9 in UTF-8 (two bytes)
    assert one_vm(vm('kernel "k"', r'cmdline "\xe9|\u{e9}"')).cmdline == b"\xe9|\xc3\xa9"


def test_paths_and_names_with_escapes(tmp_path):
    result = compile_files(tmp_path, {"m.sevm": 'vm "w\\u{65}b \\"1\\"" {\n'
                                                '    firmware "dir/OVMF\\x2efd"\n}\n'})
    (only,) = result.manifest.vms
    assert only.name == 'web "1"'
    assert only.firmware.written == "dir/OVMF.fd"
    assert only.firmware.path == tmp_path / "dir" / "OVMF.fd"


# ---- every setting ---------------------------------------------------------------------------
FULL = f'''import "common.sevm"

vm "full" {{
    type sev-es
    firmware "fw/OVMF.fd" sha256 "{PIN.upper()}"
    kernel "boot/vmlinuz" sha256 "{PIN}"
    initrd "boot/initrd.img"
    cmdline "console=ttyS0 root=/dev/vda1 ro"
    kernel-hashes on
    vcpus 1, 2, 4, 8
    cpu "EPYC-Milan", family 23 model 49 stepping 0, signature 0x00a00f11
    memory 4GiB
    machine "pc-q35-9.2"
    host {{
        vmm qemu, ec2, gce
        qemu-version "9.2.1"
        legacy-vm-type on, off
        sev-features 0x0
        cbitpos 47
        reduced-phys-bits 5
    }}
    policy {{
        debug deny
        key-sharing deny
        send deny
        send-outside-domain allow
        send-to-non-sev deny
        min-api 1.55
    }}
    launch {{
        disk "disks/root.qcow2" format qcow2
        net none
        console none
        extra "-nographic", "-s", ""
    }}
}}
'''


def test_every_setting_lands_in_the_model(tmp_path):
    result = compile_files(tmp_path, {"m.sevm": FULL, "common.sevm": "# no templates\n"})
    assert not errors(result), [d.message for d in result.diagnostics]
    (v,) = result.manifest.vms
    assert (v.name, v.type, v.file) == ("full", GuestType.SEV_ES, str(tmp_path / "m.sevm"))
    assert (v.firmware.written, v.firmware.path, v.firmware.sha256) == (
        "fw/OVMF.fd", tmp_path / "fw" / "OVMF.fd", PIN)  # pins are kept in lower case
    assert (v.kernel.written, v.kernel.sha256) == ("boot/vmlinuz", PIN)
    assert (v.initrd.path, v.initrd.sha256) == (tmp_path / "boot" / "initrd.img", None)
    assert v.cmdline == b"console=ttyS0 root=/dev/vda1 ro"
    assert v.kernel_hashes is True
    assert v.vcpus == (1, 2, 4, 8)
    assert v.cpus == (Cpu(0x00A00F11, "EPYC-Milan", 25, 1, 1), Cpu(0x00830F10, None, 23, 49, 0),
                      Cpu(0x00A00F11))
    assert (v.memory, v.machine) == (4 * GiB, "pc-q35-9.2")
    assert v.host == HostMatrix(vmms=(Vmm.QEMU, Vmm.EC2, Vmm.GCE), legacy_vm_types=(True, False),
                                sev_features=(0,), qemu_version=(9, 2), cbitpos=47,
                                reduced_phys_bits=5)
    # NODBG | NOKS | ES | NOSEND | SEV (DOMAIN allowed), API 1.55
    assert v.policy.value == 0x1 | 0x2 | 0x4 | 0x8 | 0x20 | (1 << 16) | (55 << 24)
    assert v.launch == Launch(disks=(Disk("disks/root.qcow2", "qcow2",
                                          tmp_path / "disks" / "root.qcow2"),),
                              net="none", console="none", extra=("-nographic", "-s", ""))


def test_defaults_of_a_minimal_vm():
    v = one_vm(MINIMAL)
    assert v.type is GuestType.SEV and v.kernel is None and v.initrd is None
    assert v.cmdline is None and v.kernel_hashes is False
    assert (v.vcpus, v.cpus, v.memory, v.machine) == ((1,), (), 2 * GiB, "q35")
    assert v.host == HostMatrix()  # qemu, 9.2, legacy on, features 0, cbitpos 51, 1 bit
    assert (v.host.qemu_version, v.host.cbitpos, v.host.reduced_phys_bits) == ((9, 2), 51, 1)
    assert v.policy.value == 0x1  # debug denied by default (QEMU's default policy 0x1)
    assert v.launch == Launch(disks=(), net=None, console="serial", extra=())


def test_sev_es_default_policy_has_the_es_bit():
    assert one_vm(vm("type sev-es", 'cpu "EPYC-Milan"')).policy.value == 0x5


@pytest.mark.parametrize("field, bit", [("debug", 0x1), ("key-sharing", 0x2), ("send", 0x8),
                                        ("send-outside-domain", 0x10), ("send-to-non-sev", 0x20)])
def test_each_policy_field_sets_or_clears_its_bit(field, bit):
    deny = one_vm(vm("policy {", f"    {field} deny", "}")).policy.value
    allow = one_vm(vm("policy {", f"    {field} allow", "}")).policy.value
    assert deny & bit and not allow & bit
    assert (deny ^ allow) == bit


def test_raw_policy_is_decoded():
    v = one_vm(vm("type sev-es", 'cpu "EPYC"', "policy 0x1805_0007"))
    assert v.policy.value == 0x18050007
    assert (v.policy.api_major, v.policy.api_minor, v.policy.es) == (5, 0x18, True)


@pytest.mark.parametrize("version, expected", [('"7.2"', (7, 2)), ('"8.2.1"', (8, 2)),
                                               ('"10.1"', (10, 1)), ('"9.2.0"', (9, 2))])
def test_qemu_versions(version, expected):
    assert one_vm(vm("host {", f"    qemu-version {version}", "}")).host.qemu_version == expected


def test_disk_format_defaults_to_raw():
    (disk,) = one_vm(vm("launch {", '    disk "root.img"', "}")).launch.disks
    assert (disk.path, disk.format) == ("root.img", "raw")


@pytest.mark.parametrize("form, cpu", [
    ('"EPYC"', Cpu(0x00800F12, "EPYC", 23, 1, 2)),
    ('"EPYC-Rome"', Cpu(0x00830F10, "EPYC-Rome", 23, 49, 0)),
    ('"EPYC-Genoa"', Cpu(0x00A10F10, "EPYC-Genoa", 25, 17, 0)),
    ("family 25 model 1 stepping 1", Cpu(0x00A00F11, None, 25, 1, 1)),
    ("family 0x19 model 0x11 stepping 0x0", Cpu(0x00A10F10, None, 25, 17, 0)),
    ("family 6 model 85 stepping 4", Cpu(0x00050654, None, 6, 85, 4)),
    ("signature 0x00a00f11", Cpu(0x00A00F11)),
    ("signature 0", Cpu(0)),
])
def test_cpu_forms(form, cpu):
    assert one_vm(vm(f"cpu {form}")).cpus == (cpu,)


# ---- layout: comments, line ends, BOM, final newline ----------------------------------------
COMMENTED = '''# a comment before everything
import "empty.sevm"  # trailing, after an import
# between
vm "c" {  # after the opening brace
    # own line, indented
    firmware "fw.fd"   # after a value
    vcpus 1,  2 ,3#no space before the hash
    host {# right after the brace
        # inside a block
        vmm qemu
        # before a closing brace
    }  # after a closing brace
    policy 0x1 # "quotes" and {braces} and # more hashes
    # before the last brace
}  # after the last brace
# at the end, without a final newline'''


def test_comments_everywhere(tmp_path):
    write(tmp_path, "empty.sevm", "# nothing but a comment\n")
    result = compile_files(tmp_path, {"m.sevm": COMMENTED})
    assert not errors(result), [d.message for d in result.diagnostics]
    (v,) = result.manifest.vms
    assert (v.vcpus, v.policy.value, v.host.vmms) == ((1, 2, 3), 0x1, (Vmm.QEMU,))
    document, _ = parse_text(COMMENTED, "m.sevm")
    assert [(c.line, c.column) for c in document.comments][:3] == [(1, 1), (2, 22), (3, 1)]
    assert document.comments[-1].text == "# at the end, without a final newline"
    assert len(document.comments) == 15


@pytest.mark.parametrize("transform", [
    pytest.param(lambda t: t.replace("\n", "\r\n"), id="crlf"),
    pytest.param(lambda t: t.rstrip("\n"), id="no-final-newline"),
    pytest.param(lambda t: t.replace("\n", "\r\n").rstrip("\r\n"), id="crlf-no-final-newline"),
    pytest.param(lambda t: t.replace("    ", "\t"), id="tabs"),
    pytest.param(lambda t: t.replace("\n", "\n\n\n"), id="blank-lines"),
    pytest.param(lambda t: t.replace("\n", "  \t\n"), id="trailing-whitespace"),
])
def test_layout_does_not_change_the_model(tmp_path, transform):
    text = FULL.replace('import "common.sevm"\n', "")
    reference = compile_files(tmp_path, {"m.sevm": text}).manifest
    other = compile_files(tmp_path, {"m.sevm": transform(text)})
    assert not errors(other), [d.message for d in other.diagnostics]
    assert other.manifest == reference


def test_crlf_keeps_columns(tmp_path):
    result = compile_files(tmp_path, {"m.sevm": 'vm "a" {\r\n    firmware "fw"\r\n    vcpus 0\r\n}\r\n'})
    (d,) = errors(result)
    assert (d.span.line, d.span.column, d.span.end_column) == (3, 11, 12)


def test_byte_order_mark_is_ignored(tmp_path):
    path = write(tmp_path, "m.sevm", b"\xef\xbb\xbf" + MINIMAL.replace('"a"', '"bom"').encode())
    result = compile_file(str(path))
    assert not errors(result) and result.manifest.vms[0].name == "bom"
    # columns count from the first character after the mark
    assert (result.manifest.vms[0].span.line, result.manifest.vms[0].span.column) == (1, 4)


def test_compact_forms():
    text = 'vm "a"{\n firmware"fw"\n host{\n }\n policy{}\n launch { }\n vcpus 1,2\n}\n'
    assert one_vm(text).vcpus == (1, 2)
    assert one_vm('vm "a" { firmware "fw"\n    vcpus 2\n}\n').vcpus == (2,)  # first on { line


def test_imports_may_follow_declarations(tmp_path):
    write(tmp_path, "t.sevm", 'template "t" {\n    vcpus 3\n}\n')
    result = compile_files(tmp_path, {"m.sevm": 'vm "a" extends "t" {\n    firmware "f"\n}\n'
                                                'import "t.sevm"\n'})
    assert result.manifest.vms[0].vcpus == (3,)


def test_several_vms_keep_their_order():
    result = compile_text(vm(name="b") + vm(name="a") + vm(name="c"), "/w/m.sevm")
    assert [v.name for v in result.manifest.vms] == ["b", "a", "c"]


# ---- positions on the syntax tree and the model ------------------------------------------------
POSITIONS = '''import "x.sevm"
vm "web" extends "base" {
    vcpus 1, 0x2
    host {
        vmm qemu
    }
    cpu family 25 model 1 stepping 1
}
'''


def test_positions_on_syntax_nodes():
    document, problems = parse_text(POSITIONS, "p.sevm")
    assert not problems
    imp, decl = document.items
    assert (imp.path, imp.span.line, imp.span.column, imp.span.end_column) == ("x.sevm", 1, 1, 16)
    assert (decl.name_span.line, decl.name_span.column, decl.name_span.end_column) == (2, 4, 9)
    assert (decl.extends, decl.extends_span.column, decl.extends_span.end_column) == ("base", 18, 24)
    assert (decl.span.line, decl.span.end_line, decl.end_line) == (2, 8, 8)
    vcpus, host, cpu = decl.body
    assert (vcpus.span.line, vcpus.span.column, vcpus.span.end_column) == (3, 5, 17)
    assert (vcpus.key_span.column, vcpus.key_span.end_column) == (5, 10)
    assert [(v.value, v.text, v.span.column, v.span.end_column) for v in vcpus.values] == [
        (1, "1", 11, 12), (2, "0x2", 14, 17)]
    assert (host.key, host.span.line, host.end_line, host.settings[0].span.line) == ("host", 4, 6, 5)
    (fms,) = cpu.values
    assert (fms.value, fms.span.line, fms.span.column, fms.span.end_column) == (
        ("fms", (25, 1, 1)), 7, 9, 37)
    assert {s.span.file for s in (vcpus, host, cpu)} == {"p.sevm"}


def test_model_remembers_where_each_value_was_set(tmp_path):
    result = compile_files(tmp_path, {"m.sevm": vm("vcpus 2", "policy {", "    debug deny", "}")})
    (v,) = result.manifest.vms
    assert (v.span.line, v.span.column) == (1, 4)
    assert (v.origins["firmware"].line, v.origins["vcpus"].line) == (2, 3)
    assert (v.origins["policy.debug"].line, v.origins["policy.debug"].column) == (5, 9)
    assert v.firmware.span.line == 2


def test_spans_do_not_affect_model_equality(tmp_path):
    a = compile_text(MINIMAL, str(tmp_path / "m.sevm")).manifest
    b = compile_text("\n\n# moved\n" + MINIMAL.replace("    ", "\t\t"), str(tmp_path / "m.sevm")).manifest
    assert a == b and a.vms[0].span != b.vms[0].span


def test_grammar_file_is_the_only_syntax_definition(repo: Path):
    # the parser is built from grammar/sevm.lark; no second tokenizer in the front end
    from sevmanifest.resources import grammar_path
    assert grammar_path().read_text() == (repo / "grammar" / "sevm.lark").read_text()
    for module in (repo / "src" / "sevmanifest" / "frontend").glob("*.py"):
        assert "re.Scanner" not in module.read_text()


# ---- one parser, built nodes while it parses (parse.py: _BUILDER) ---------------------------
_COMMENTED = vm("memory 4GiB  # for the web tier\n    cmdline \"a\\qb\"")  # an escape error


def test_a_failed_parse_leaves_nothing_to_the_next():
    """Comments, escape errors and glued keywords of a parse that stopped at a syntax error
    must not show up in the next file's document."""
    bad, problems = parse_text(_COMMENTED + "vm {\n", "/work/bad.sevm")
    assert bad is None and [d.message for d in problems][0].startswith("expected")
    glued, problems = parse_text(vm("typesev-es"), "/work/glued.sevm")
    assert glued is None and "write a space after 'type'" in problems[0].message
    document, problems = parse_text(MINIMAL, "/work/good.sevm")
    assert document is not None and problems == [] and document.comments == ()


def test_parsing_from_many_threads_gives_each_its_own_document():
    import sys
    from concurrent.futures import ThreadPoolExecutor
    texts = [(_COMMENTED.replace("web", f"vm{i}"), f"/work/m{i}.sevm") for i in range(40)]
    serial = [parse_text(text, path) for text, path in texts]
    assert all(len(problems) == 1 and problems[0].span.file == path
               for (_, problems), (_, path) in zip(serial, texts))
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads take turns inside a parse
    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            for _ in range(5):
                assert list(pool.map(lambda args: parse_text(*args), texts)) == serial
    finally:
        sys.setswitchinterval(interval)
