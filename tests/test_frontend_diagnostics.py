"""Every diagnostic the front end can produce: its words and its file:line:column.

Each case names the message fragment and the exact position; the printed form
(``file:line:col: error: …`` plus the source line and a caret) is checked once per kind.
"""
from __future__ import annotations

import os

import pytest

from frontend_support import PIN, assert_diag, compile_files, errors, find, vm, warnings, write
from sevmanifest.diagnostics import EXIT_FAILED, EXIT_USAGE, exit_code, format_diagnostic
from sevmanifest.frontend import compile_file, compile_text
from sevmanifest.diagnostics import cap_for_display
from sevmanifest.frontend.compile import MAX_DIAGNOSTICS
from sevmanifest.frontend.parse import MAX_LIST_VALUES, MAX_NUMBER_DIGITS
from sevmanifest.frontend.resolve import MAX_EXTENDS_DEPTH, MAX_IMPORT_DEPTH, MAX_IMPORTED_FILES
from sevmanifest.frontend.source import MAX_MANIFEST_BYTES
from sevmanifest.frontend.strings import MAX_ESCAPE_ERRORS


def check(text: str, path: str = "/w/m.sevm"):
    return compile_text(text, path)


# ---- syntax errors in plain words ------------------------------------------------------------
SYNTAX = [
    # (source, message fragment, line, column, end column)
    ('vm "a" {\n    vcpus "four"\n}\n', 'expected a number such as 4 or 0x1f, found the string "four"',
     2, 11, 17),
    ('vm "a" {\n    vcpus four\n}\n', 'expected a number such as 4 or 0x1f, found "four"', 2, 11, 15),
    ('vm "a" {\n    memory four\n}\n', 'expected a size such as 4GiB, found "four"', 2, 12, 16),
    ('vm "a" {\n    memory 4GB\n}\n', 'expected a size such as 4GiB, found "4GB"', 2, 12, 15),
    ('vm "a" {\n    memory 4\n}\n', "expected a size such as 4GiB", 2, 12, 13),
    ('vm "a" {\n    type sevv\n}\n', "expected sev or sev-es, found \"sevv\"; did you mean 'sev'?",
     2, 10, 14),
    ('vm "a" {\n    type "sev"\n}\n', "found the string \"sev\"; write sev without quotes", 2, 10, 15),
    ('vm "a" {\n    kernel-hashes yes\n}\n', 'expected on or off, found "yes"', 2, 19, 22),
    ('vm "a" {\n    memroy 4GiB\n}\n',
     "unknown setting \"memroy\"; did you mean 'memory'? (expected one of: cmdline, cpu, "
     "firmware, host, initrd, kernel, kernel-hashes, launch, machine, memory, policy, type, "
     "vcpus or '}')", 2, 5, 11),
    ('vm "a" {\n    host {\n        type sev\n    }\n}\n',
     "unknown setting \"type\" (expected one of: cbitpos, legacy-vm-type, qemu-version, "
     "reduced-phys-bits, sev-features, vmm or '}')", 3, 9, 13),
    ('vm "a" {\n    launch {\n        disc "x"\n    }\n}\n', "unknown setting \"disc\"; did you "
     "mean 'disk'?", 3, 9, 13),
    ('vm "a" {\n    policy {\n        debugg deny\n    }\n}\n', "found \"debugg\"; did you mean "
     "'debug'?", 3, 9, 15),
    ('vm "a" {\n    policy {\n        debug maybe\n    }\n}\n', 'expected allow or deny, found "maybe"',
     3, 15, 20),
    ('vm "a" {\n    policy {\n        min-api 1\n    }\n}\n', "expected a version such as 0.24", 3, 17, 18),
    ('vm "a" {\n    policy "x"\n}\n', "expected a number such as 4 or 0x1f or '{', found the string",
     2, 12, 15),
    ('vm "a" {\n    host {\n        vmm kvm\n    }\n}\n', 'expected qemu, ec2 or gce, found "kvm"',
     3, 13, 16),
    ('vm "a" {\n    launch {\n        disk "x" format vmdk\n    }\n}\n',
     'expected qcow2 or raw, found "vmdk"', 3, 25, 29),
    ('vm "a" {\n    launch {\n        net bridge\n    }\n}\n', "expected user or none", 3, 13, 19),
    ('vm "a" {\n    launch {\n        console vga\n    }\n}\n', "expected serial or none", 3, 17, 20),
    ('vm "a" {\n    vcpus 1 2\n}\n', "expected ',' or the end of the line, found \"2\"", 2, 13, 14),
    ('vm "a" {\n    vcpus 1,\n}\n', "expected a number such as 4 or 0x1f, found the end of the line",
     2, 13, 14),
    ('vm "a" {\n    cpu family 25 model 1\n}\n', "expected 'stepping', found the end of the line",
     2, 26, 27),
    ('vm "a" {\n    cpu\n}\n', "expected a quoted string (\"…\"), 'family' or 'signature'", 2, 8, 9),
    ('vm "a" {\n    firmware "x" sha "y"\n}\n', "found \"sha\"; did you mean 'sha256'?", 2, 18, 21),
    ('vm "a" {\n    types sev\n}\n', "unknown word \"types\"; did you mean 'type'?", 2, 5, 10),
    ('vm "a" {\n    typesev\n}\n', "unknown word 'typesev': write a space after 'type'", 2, 5, 12),
    ('vm "a" {\n    kernel-hashesoff\n}\n', "write a space after 'kernel-hashes'", 2, 5, 21),
    ('vm "a" {\n    vcpus4\n}\n', "unknown word 'vcpus4': write a space after 'vcpus'", 2, 5, 11),
    ('vm "a" {\n    cpu family1 model 1 stepping 1\n}\n', "write a space after 'family'", 2, 9, 16),
    ('vim "a" {\n}\n', "expected 'import', 'template', 'vm' or the end of the line, found "
     "\"vim\"; did you mean 'vm'?", 1, 1, 4),
    ('vmx "a" {\n}\n', "unknown word \"vmx\"; did you mean 'vm'?", 1, 1, 4),
    # a word of the language elsewhere is not suggested for itself (was: did you mean 'vmm'?)
    ('vmm "a" {\n}\n', "unknown word \"vmm\"; did you mean 'vm'?", 1, 1, 4),
    ('vm a {\n}\n', 'expected a quoted string ("…"), found "a"', 1, 4, 5),
    ('vm "a"\n{\n}\n', "expected 'extends' or '{', found the end of the line", 1, 7, 8),
    ('vm "a" extends {\n}\n', 'expected a quoted string ("…"), found \'{\'', 1, 16, 17),
    ('import a.sevm\n', 'expected a quoted string ("…"), found "a.sevm"', 1, 8, 14),
    ('vm "a" {\n    {\n}\n', "expected a setting (one of: cmdline,", 2, 5, 6),
    ('vm "a" {\n    "x" 1\n}\n', "expected a setting (one of: cmdline,", 2, 5, 8),
    ('vm "a" {\n}}\n', "expected the end of the line, found '}'", 2, 2, 3),
    ('vm "a" {\n    cmdline "abc\n}\n', "unterminated string: a string must end with '\"' on the "
     "same line", 2, 13, 14),
    ('vm "a" {\n    vcpus 1_\n}\n', 'unknown word "1_"', 2, 11, 13),
    ('vm "a" {\n    vcpus 0x\n}\n', 'unknown word "0x"', 2, 11, 13),
    ('vm "a" {\n    vcpus -1\n}\n', 'expected a number such as 4 or 0x1f, found "-1"', 2, 11, 13),
    ('vm "a" {\n    type sev\x00\n}\n', "expected the end of the line, found '\\x00'", 2, 13, 14),
    ('vm "a" {\r    type sev\r}\r', "a carriage return without a line feed", 1, 9, 10),
    ('vm "a" {', "unexpected end of file: a block is not closed with '}'", 1, 9, 10),
    ('vm "a" {\n    host {\n        vmm qemu\n}\n', "unexpected end of file: a block is not "
     "closed with '}'", 4, 2, 3),
    ('vm "a" {\n    vcpus ' + "9" * 101 + '\n}\n', f"number too long: 101 digits (at most "
     f"{MAX_NUMBER_DIGITS})", 2, 11, 112),
]


@pytest.mark.parametrize("source, fragment, line, column, end", SYNTAX,
                         ids=[s[1][:40] for s in SYNTAX])
def test_syntax_errors_in_plain_words(source, fragment, line, column, end):
    result = check(source)
    d = assert_diag(result, fragment, line, column, end_column=end, fatal=True)
    assert len(errors(result)) == 1, [e.message for e in errors(result)]
    assert exit_code(result.diagnostics) == EXIT_USAGE
    assert result.manifest is None
    printed = format_diagnostic(d, result.sources)
    assert "^" in printed, printed  # the source line and a caret


def test_printed_form_has_source_line_and_caret():
    result = check('vm "a" {\n    memory four\n}\n', "web.sevm")
    (d,) = result.diagnostics
    assert format_diagnostic(d, result.sources) == (
        'web.sevm:2:12: error: expected a size such as 4GiB, found "four"\n'
        "    2 |     memory four\n"
        "      |            ^~~~")


# ---- string escapes ------------------------------------------------------------------------
@pytest.mark.parametrize("literal, bad, column", [
    (r'"a\qb"', r"\q", 15), (r'"\u{d800}"', r"\u{d800}", 14), (r'"\u{DFFF}"', r"\u{DFFF}", 14),
    (r'"\u{110000}"', r"\u{110000}", 14), (r'"\u{}"', r"\u", 14), (r'"\u{1234567}"', r"\u", 14),
    (r'"ok \x4"', r"\x", 17), (r'"\xzz"', r"\x", 14), (r'"é\r"', r"\r", 15),
    (r'"\'"', r"\'", 14), (r'"\0"', r"\0", 14),
])
def test_bad_escape_at_its_exact_column(literal, bad, column):
    # line 3 is: '    cmdline "…', so the string's first character is in column 14
    result = check(vm("kernel \"k\"", f"cmdline {literal}").replace('    firmware "fw.fd"\n', ""))
    d = find(result, f"invalid escape {bad!r} in string")
    assert d.span.end_column == column + len(bad)
    assert (d.span.line, d.span.column) == (3, column), format_diagnostic(d, result.sources)
    assert "strings accept only \\\\ \\\" \\n \\t \\xNN \\u{...}" in d.message
    assert d.fatal_input and exit_code(result.diagnostics) == EXIT_USAGE


def test_bad_escapes_are_all_reported_up_to_a_limit():
    result = check(vm("cmdline \"" + r"\q" * 50 + '"'))
    assert len(errors(result)) == MAX_ESCAPE_ERRORS
    assert [d.span.column for d in errors(result)][:3] == [14, 16, 18]


# ---- duplicates, templates, imports ----------------------------------------------------------
def test_duplicate_setting():
    result = check(vm("vcpus 2", "memory 1GiB", "vcpus 4"))
    d = assert_diag(result, "'vcpus' is set twice in vm 'a' (first at /w/m.sevm:3:5)", 5, 5)
    assert exit_code([d]) == EXIT_FAILED


@pytest.mark.parametrize("lines, fragment, line, column", [
    (("host {", "}", "host {", "}"), "'host' is set twice in vm 'a'", 5, 5),
    (("policy 0x1", "policy {", "}"), "'policy' is set twice in vm 'a'", 4, 5),
    (("host {", "    vmm qemu", "    vmm ec2", "}"), "'vmm' is set twice in the host block", 5, 9),
    (("policy {", "    debug deny", "    debug allow", "}"), "'debug' is set twice in the policy block",
     5, 9),
    (("launch {", "    net user", "    net none", "}"), "'net' is set twice in the launch block", 5, 9),
])
def test_duplicates_in_blocks(lines, fragment, line, column):
    assert_diag(check(vm(*lines)), fragment, line, column)


def test_duplicate_declarations():
    result = check('template "t" {\n}\ntemplate "t" {\n}\n' + vm() + vm())
    assert_diag(result, "template 't' is already declared at /w/m.sevm:1:10", 3, 10)
    assert_diag(result, "vm 'a' is already declared at /w/m.sevm:5:4", 8, 4)


def test_template_cycle():
    text = ('template "a" extends "b" {\n}\ntemplate "b" extends "a" {\n}\n'
            'vm "v" extends "a" {\n    firmware "f"\n}\n')
    result = check(text)
    assert_diag(result, "template cycle: a -> b -> a", 3, 22)
    assert len(errors(result)) == 1  # one error per cycle, also with a vm on top of it
    assert result.manifest.vms == ()


def test_template_extending_itself():
    assert_diag(check('template "s" extends "s" {\n}\n'), "template cycle: s -> s", 1, 22)


def test_unknown_template_with_the_names_in_scope():
    result = check('template "base" {\n}\nvm "a" extends "bsae" {\n    firmware "f"\n}\n')
    assert_diag(result, "unknown template 'bsae' (templates: base); templates come from this "
                        "file or its imports", 3, 16, end_column=22)


def test_unknown_template_in_an_unused_template():
    assert_diag(check('template "t" extends "nope" {\n}\n'), "unknown template 'nope'", 1, 22)


def test_extends_chain_limit():
    n = MAX_EXTENDS_DEPTH + 2
    text = "".join(f'template "t{i}" extends "t{i + 1}" {{\n}}\n' for i in range(n))
    text += f'template "t{n}" {{\n}}\nvm "v" extends "t0" {{\n    firmware "f"\n}}\n'
    result = check(text)
    assert "extends chain longer than 32" in errors(result)[0].message


def test_missing_import_is_reported_at_the_import_line(tmp_path):
    result = compile_files(tmp_path, {"m.sevm": '# header\nimport "lib/nope.sevm"\n' + vm()})
    d = assert_diag(result, "imported file not found: " + str(tmp_path / "lib" / "nope.sevm"), 2, 1,
                    file=str(tmp_path / "m.sevm"), end_column=23)
    assert d.fatal_input and exit_code(result.diagnostics) == EXIT_USAGE
    assert 'import "lib/nope.sevm"' in format_diagnostic(d, result.sources)


def test_import_cycle(tmp_path):
    write(tmp_path, "b.sevm", 'import "m.sevm"\n')
    result = compile_files(tmp_path, {"m.sevm": 'import "b.sevm"\n' + vm()})
    d = find(result, "import cycle:")
    assert d.span.file == str(tmp_path / "b.sevm") and (d.span.line, d.span.column) == (1, 1)
    assert str(tmp_path / "m.sevm") in d.message


def test_self_import(tmp_path):
    result = compile_files(tmp_path, {"m.sevm": 'import "./m.sevm"\n' + vm()})
    assert_diag(result, "import cycle:", 1, 1)


@pytest.mark.parametrize("path", ['""', r'"a\x00b"', r'"\u{0}"'])
def test_import_path_empty_or_nul(tmp_path, path):
    result = compile_files(tmp_path, {"m.sevm": f"import {path}\n" + vm()})
    assert_diag(result, "import path is empty or contains a NUL byte", 1, 1, fatal=True)


def test_import_of_a_directory(tmp_path):
    (tmp_path / "lib").mkdir()
    result = compile_files(tmp_path, {"m.sevm": 'import "lib"\n' + vm()})
    assert_diag(result, "lib is a directory, not a manifest", 1, 1)


def test_import_depth_limit(tmp_path):
    for i in range(MAX_IMPORT_DEPTH + 2):
        write(tmp_path, f"f{i}.sevm", f'import "f{i + 1}.sevm"\n')
    write(tmp_path, f"f{MAX_IMPORT_DEPTH + 2}.sevm", "# end\n")
    result = compile_files(tmp_path, {"m.sevm": 'import "f0.sevm"\n' + vm()})
    d = find(result, f"imports nest deeper than {MAX_IMPORT_DEPTH} levels")
    # m.sevm, f0 … f14 are 16 levels: the import in f14 would be the 17th
    assert d.span.file.endswith(f"f{MAX_IMPORT_DEPTH - 2}.sevm") and d.span.line == 1


def test_import_count_limit(tmp_path):
    # the manifest itself and MAX_IMPORTED_FILES - 1 imports are the most files
    for i in range(MAX_IMPORTED_FILES):
        write(tmp_path, f"lib/f{i}.sevm", "# empty\n")
    imports = "".join(f'import "lib/f{i}.sevm"\n' for i in range(MAX_IMPORTED_FILES))
    result = compile_files(tmp_path, {"m.sevm": imports + vm()})
    assert_diag(result, f"more than {MAX_IMPORTED_FILES} files in one compilation",
                MAX_IMPORTED_FILES, 1, fatal=True)


# ---- input that cannot be read -------------------------------------------------------------------
def test_non_utf8_names_the_byte_and_its_position(tmp_path):
    path = write(tmp_path, "m.sevm", b'vm "a" {\n    cmdline "caf\xe9"\n}\n')
    result = compile_file(str(path))
    assert_diag(result, "not UTF-8: byte 0xe9 cannot start or continue a character", 2, 17,
                fatal=True)


def test_non_utf8_after_multibyte_characters_counts_characters(tmp_path):
    path = write(tmp_path, "m.sevm", '# é✓\n# ü'.encode() + b"\xff\n")
    assert_diag(compile_file(str(path)), "byte 0xff", 2, 4)


def test_empty_file(tmp_path):
    for content in ("", "\n\n", "# only a comment\n", "\ufeff"):
        result = compile_files(tmp_path, {"m.sevm": content})
        assert_diag(result, "empty manifest: it declares no vm, template or import", 1, 1)
        assert exit_code(result.diagnostics) == EXIT_FAILED


def test_file_over_the_size_limit(tmp_path):
    path = write(tmp_path, "m.sevm", b"# padding\n" * (1024 * 1024))  # 10 MiB
    result = compile_file(str(path))
    assert_diag(result, f"is larger than {MAX_MANIFEST_BYTES // 1024} KiB, the limit for a "
                        "manifest", 1, 1, fatal=True)


def test_file_exactly_at_the_size_limit_is_read(tmp_path):
    body = vm().encode()
    path = write(tmp_path, "m.sevm", body + b"#" * (MAX_MANIFEST_BYTES - len(body)))
    assert not errors(compile_file(str(path)))


def test_missing_file_directory_fifo_and_loop(tmp_path):
    assert_diag(compile_file(str(tmp_path / "nope.sevm")), "manifest not found: ", 1, 1, fatal=True)
    assert_diag(compile_file(str(tmp_path)), "is a directory, not a manifest", 1, 1, fatal=True)
    os.mkfifo(tmp_path / "fifo.sevm")
    assert_diag(compile_file(str(tmp_path / "fifo.sevm")), "is not a regular file", 1, 1, fatal=True)
    os.symlink(tmp_path / "loop.sevm", tmp_path / "loop.sevm")
    assert_diag(compile_file(str(tmp_path / "loop.sevm")), "cannot read", 1, 1, fatal=True)


# ---- contradictions and checks after parsing -----------------------------------------------------
CHECKS = [
    # (statements of vm "a" after its firmware line, fragment, line, column); line 1 is the
    # vm line, line 2 the firmware
    (('initrd "i"',), "initrd without kernel: add a kernel or remove the initrd", 3, 5),
    (('cmdline "x"',), "cmdline without kernel", 3, 5),
    (("kernel-hashes on",), "kernel-hashes on without a kernel: nothing to measure", 3, 5),
    (('kernel "k"', "kernel-hashes on", "host {", '    qemu-version "6.1"', "}"),
     "kernel-hashes needs QEMU 6.2 or later", 4, 5),
    (("type sev-es", 'cpu "EPYC"', "policy 0x1"), "policy 0x1 clears the ES bit (0x4) but type is "
     "sev-es; the ES bit must follow type", 5, 12),
    (("policy 0x5",), "policy 0x5 sets the ES bit (0x4) but type is sev", 3, 12),
    (("policy 0x41",), "policy bits 6-15 are reserved and must be 0 (0x40 set)", 3, 12),
    (("policy 0x8001",), "reserved and must be 0 (0x8000 set)", 3, 12),
    (("policy 0x1_0000_0001",), "a policy is a 32-bit value", 3, 12),
    (("policy {", "    min-api 256.0", "}"), "min-api major and minor are 0-255 each", 4, 17),
    (("vcpus 0",), "vcpus must be between 1 and 512, got 0", 3, 11),
    (("vcpus 2, 513",), "vcpus must be between 1 and 512, got 513", 3, 14),
    (("vcpus 1, 2, 0x1",), "vcpus lists 1 twice", 3, 17),
    (('cpu "EPYC-milan"',), "unknown CPU model 'EPYC-milan'; did you mean 'EPYC-Milan'?", 3, 9),
    (('cpu "Milan"',), "unknown CPU model 'Milan'; did you mean 'EPYC-Milan'?", 3, 9),
    (('cpu "Opteron_G5"',), "unknown CPU model 'Opteron_G5'", 3, 9),
    (('cpu "host"',), "CPU model 'host' has no fixed CPUID signature", 3, 9),
    (('cpu "EPYC", "EPYC"',), "cpu lists EPYC twice", 3, 17),
    (("cpu family 25 model 1 stepping 1, family 25 model 1 stepping 1",),
     "cpu lists family 25 model 1 stepping 1 twice", 3, 39),
    (("cpu signature 0x10000000",), "a CPUID signature has 28 bits; 0x10000000 is too large", 3, 9),
    (("cpu family 271 model 0 stepping 0",), "family must be 0-270, model 0-255 and stepping 0-15",
     3, 9),
    (("cpu family 25 model 1 stepping 16",), "stepping 0-15", 3, 9),
    (('cpu "EPYC-Genoa"', "host {", '    qemu-version "7.2"', "}"),
     "CPU model 'EPYC-Genoa' first ships in QEMU 8.1; host.qemu-version is 7.2", 3, 9),
    (('cpu "EPYC-Turin"',), "CPU model 'EPYC-Turin' first ships in QEMU 10.1; host.qemu-version is "
     "9.2", 3, 9),
    (("host {", '    qemu-version "9.0"', "    legacy-vm-type off", "}"),
     "legacy-vm-type off (KVM_SEV_INIT2) needs QEMU 9.1 or later; host.qemu-version is 9.0", 5, 9),
    (("host {", "    legacy-vm-type on, off", "    sev-features 0x20", "}"),
     "sev-features other than 0 cannot occur with legacy-vm-type off", 5, 9),
    (("host {", "    sev-features 0x1_0000_0000_0000_0000", "}"), "sev-features is a 64-bit value",
     4, 22),
    (("host {", "    sev-features 0, 0x0", "}"), "sev-features lists 0x0 twice", 4, 25),
    (("host {", "    vmm qemu, qemu", "}"), "vmm lists qemu twice", 4, 19),
    (("host {", "    legacy-vm-type on, on", "}"), "legacy-vm-type lists on twice", 4, 28),
    (("host {", '    qemu-version "nine"', "}"), "qemu-version must look like \"9.2\" or \"7.2.1\"", 4, 22),
    (("host {", '    qemu-version "٩.٢"', "}"), "qemu-version must look like", 4, 22),
    (("host {", "    cbitpos 31", "}"), "cbitpos must be between 32 and 63, got 31", 4, 17),
    (("host {", "    reduced-phys-bits 0", "}"), "reduced-phys-bits must be between 1 and 63, got 0",
     4, 27),
    (("memory 1536KiB",), "memory must be a whole number of MiB, at least 1MiB", 3, 12),
    (("memory 0M",), "memory must be a whole number of MiB", 3, 12),
    ((r'cmdline "a\u{0}b"', 'kernel "k"'), "the kernel command line cannot contain a NUL byte", 3, 13),
    (('kernel "k" sha256 "abc"',), "a pinned sha256 must be 64 hex digits, got 3 characters", 3, 23),
    ((f'kernel "k" sha256 "{"g" * 64}"',), "a pinned sha256 must be 64 hex digits", 3, 23),
    ((r'kernel "a\x00b"',), "kernel path is empty or contains a NUL byte", 3, 12),
    (('initrd ""', 'kernel "k"'), "initrd path is empty or contains a NUL byte", 3, 12),
    (("type sev-es",), "type sev-es needs a cpu: with the QEMU vmm the CPU signature is measured",
     1, 4),
]


@pytest.mark.parametrize("lines, fragment, line, column", CHECKS, ids=[c[1][:40] for c in CHECKS])
def test_contradictions_and_checks(lines, fragment, line, column):
    result = check(vm(*lines))
    assert_diag(result, fragment, line, column, fatal=False)
    assert exit_code(result.diagnostics) == EXIT_FAILED


def test_sev_es_on_other_vmms_needs_no_cpu():
    result = check(vm("type sev-es", "host {", "    vmm ec2", "}"))
    assert not errors(result)


def test_no_firmware():
    assert_diag(check('vm "bare" {\n    vcpus 1\n}\n'), "vm 'bare' has no firmware; add: firmware "
                "\"PATH\"", 1, 4)


def test_several_errors_in_one_run():
    result = check(vm("vcpus 0", 'cpu "nope"', "memory 3K", "initrd \"i\""))
    assert len(errors(result)) == 4
    assert [d.span.line for d in errors(result)] == [3, 4, 5, 6]  # in source order


def test_errors_in_an_imported_template_name_that_file(tmp_path):
    write(tmp_path, "lib/t.sevm", 'template "t" {\n    vcpus 0\n}\n')
    result = compile_files(tmp_path, {"m.sevm": 'import "lib/t.sevm"\n'
                                                'vm "a" extends "t" {\n    firmware "f"\n}\n'})
    assert_diag(result, "vcpus must be between 1 and 512, got 0", 2, 11,
                file=str(tmp_path / "lib" / "t.sevm"))


def test_list_length_limit():
    values = ", ".join(["1"] * (MAX_LIST_VALUES + 1))
    result = check(vm(f"vcpus {values}"))
    column = len("    vcpus ") + 3 * MAX_LIST_VALUES + 1
    assert_diag(result, f"vcpus lists more than {MAX_LIST_VALUES} values", 3, column, fatal=True)


def test_diagnostics_are_capped():
    """The front end keeps at most MAX_DIAGNOSTICS errors and every warning (the lint
    configuration decides about those); a command prints at most MAX_DIAGNOSTICS, errors
    first, then the notes of what was left out."""
    text = vm(*[f'machine "m{i}"' for i in range(MAX_DIAGNOSTICS + 50)])
    result = check(text)
    assert len(errors(result)) == MAX_DIAGNOSTICS and len(warnings(result)) == 3
    note = result.diagnostics[-1]
    assert note.severity.value == "note" and note.message == "49 more diagnostics not shown"
    shown = cap_for_display(result.diagnostics)
    assert [d.message for d in shown[-2:]] == ["49 more diagnostics not shown",
                                               "3 more diagnostics not shown"]
    assert len(shown) == MAX_DIAGNOSTICS + 2 and all(d.is_error for d in shown[:-2])


# ---- lint rules: ids, names, positions ------------------------------------------------------------
LINT = [
    ("SEVM101", "debug-allowed", ("type sev-es", 'cpu "EPYC"', "host {", "    legacy-vm-type on",
                                  "}", "policy {", "    debug allow", "    key-sharing deny", "}"),
     "debug allowed: the host can decrypt guest memory", 9, 9),
    ("SEVM101", "debug-allowed", ("policy 0x2",), "debug allowed: the host", 3, 5),
    ("SEVM102", "key-sharing-allowed", (), "key sharing allowed: add policy { key-sharing deny }", 1, 4),
    ("SEVM102", "key-sharing-allowed", ("policy {", "    key-sharing allow", "}"), "key sharing allowed:",
     4, 9),
    ("SEVM103", "kernel-not-measured", ('kernel "k"',), "kernel, initrd and cmdline are not measured "
     "without kernel-hashes on", 3, 5),
    ("SEVM103", "kernel-not-measured", ('kernel "k"', "kernel-hashes off"), "kernel, initrd and "
     "cmdline are not measured", 4, 5),
    ("SEVM104", "unpinned-artefact", (), "firmware 'fw.fd' is not pinned; add sha256", 2, 5),
    ("SEVM104", "unpinned-artefact", ('kernel "vmlinuz"',), "kernel 'vmlinuz' is not pinned", 3, 5),
    ("SEVM105", "sev-without-es", (), "type sev leaves register state unprotected; consider type "
     "sev-es", 1, 4),
    ("SEVM105", "sev-without-es", ("type sev",), "type sev leaves register state", 3, 5),
    ("SEVM106", "host-profile-unstated", ("type sev-es", 'cpu "EPYC"'), "host profile not stated; "
     "assuming legacy-vm-type on", 3, 5),
    ("SEVM107", "qemu-7.2-rng-seed", ('kernel "k"', "kernel-hashes on", "host {",
                                      '    qemu-version "7.2"', "}"),
     "QEMU 7.2 with machine 'q35' adds a random seed to the kernel", 4, 5),
    ("SEVM107", "qemu-7.2-rng-seed", ('kernel "k"', "kernel-hashes on", 'machine "pc-q35-7.2"',
                                      "host {", '    qemu-version "7.2.1"', "}"),
     "QEMU 7.2 with machine 'pc-q35-7.2'", 5, 5),
]


@pytest.mark.parametrize("rule, name, lines, fragment, line, column", LINT,
                         ids=[f"{x[0]}-{i}" for i, x in enumerate(LINT)])
def test_lint_rules(rule, name, lines, fragment, line, column):
    result = check(vm(*lines))
    assert not errors(result), [e.message for e in errors(result)]
    d = assert_diag(result, fragment, line, column, severity="warning")
    assert (d.rule, d.rule_name) == (rule, name)
    assert f"warning[{rule} {name}]: {fragment}" in format_diagnostic(d, result.sources)
    assert exit_code(result.diagnostics) == 0  # warnings alone never fail a check


def test_a_hardened_manifest_has_no_warnings():
    text = vm("type sev-es", 'cpu "EPYC-Milan"', f'kernel "k" sha256 "{PIN}"', "kernel-hashes on",
              "host {", "    legacy-vm-type on", "}", "policy {", "    key-sharing deny", "}")
    text = text.replace('firmware "fw.fd"', f'firmware "fw.fd" sha256 "{PIN}"')
    assert check(text).diagnostics == []


@pytest.mark.parametrize("machine", ["pc-q35-7.1", "pc-i440fx-6.2", "pc-q35-2.0"])
def test_sevm107_not_for_machine_types_before_7_2(machine):
    result = check(vm('kernel "k"', "kernel-hashes on", f'machine "{machine}"', "host {",
                      '    qemu-version "7.2"', "}"))
    assert "SEVM107" not in [d.rule for d in warnings(result)]


@pytest.mark.parametrize("vmms, warned", [("ec2", False), ("gce", False), ("ec2, gce", False),
                                          ("qemu", True), ("qemu, ec2", True)])
def test_sevm106_only_where_the_profile_changes_the_vmsa(vmms, warned):
    """ec2 and gce VMSAs do not depend on legacy-vm-type (one page either way): asking to
    state it there was a false positive."""
    result = check(vm("type sev-es", 'cpu "EPYC"', "host {", f"    vmm {vmms}", "}"))
    assert ("SEVM106" in [d.rule for d in warnings(result)]) is warned


def test_lint_can_be_turned_off():
    result = compile_text(vm("policy 0x0"), "/w/m.sevm", lint_rules=False)
    assert result.diagnostics == []


# (a lone "\r" is an error wherever it is: test_frontend_cli.py "bare-cr-in-comment")
@pytest.mark.parametrize("odd", ["\x0c", "\u2028", "\x85"])
def test_excerpt_shows_the_line_of_the_error_after_odd_line_separators(odd):
    result = check(f'# a comment with {odd} inside\nvm "a" {{\n    memory four\n}}\n')
    (d,) = result.diagnostics
    assert "    3 |     memory four" in format_diagnostic(d, result.sources)


@pytest.mark.parametrize("text", [
    'vm "a" {\n    type\n    vcpus 4\n}\n',
    'vm "a" {\n    type\n   \t\n\n        vcpus 4\n}\n',
    'vm "a" {\r\n    type\r\n    vcpus 4\r\n}\r\n',
])
def test_a_missing_value_points_at_the_line_end_only(text):
    """The newline token also holds blank lines and the next line's indentation; the error
    marks the line end it found, not the lines after it."""
    from sevmanifest.frontend.parse import parse_text
    _, (problem,) = parse_text(text, "/w/a.sevm")
    assert problem.message == "expected sev or sev-es, found the end of the line"
    span = problem.span
    assert (span.line, span.column, span.end_line) == (2, 9, 2)
    assert span.end_column == (11 if "\r" in text else 10)
