"""The diff engine end to end through .sevm manifest pairs (front end included).

Each case edits one file of a two-file project (a template in common.sevm, imported by
web.sevm) and names the changes expected, each with the text of the NEW line that the
change must point at (so GitHub annotations land on the changed line).
"""
from __future__ import annotations

import pytest

from review_support import COMMON, WEB, line_of, write_project
from sevmanifest.frontend import compile_file
from sevmanifest.review.diff import Kind, diff_manifests

W, S, M, N = Kind.WEAKENS, Kind.STRENGTHENS, Kind.MEASUREMENT, Kind.NEUTRAL
PIN_A = "a" * 64

# (id, file edited, old text, new text, [(path, kind, (file, text on the pointed-at line))])
CASES = [
    ("template debug allowed", COMMON, "debug deny", "debug allow",
     [("vm.web.policy.debug", W, (COMMON, "debug allow"))]),
    ("template send allowed", COMMON, "send deny", "send allow",
     [("vm.web.policy.send", W, (COMMON, "send allow"))]),
    ("override key sharing in the vm", WEB, "    memory 2GiB\n",
     "    memory 2GiB\n    policy {\n        key-sharing allow\n    }\n",
     [("vm.web.policy.key-sharing", W, (WEB, "key-sharing allow"))]),
    ("template min-api raised", COMMON, "send deny\n", "send deny\n        min-api 1.0\n",
     [("vm.web.policy.min-api", S, (COMMON, "min-api 1.0"))]),
    ("template kernel-hashes off", COMMON, "kernel-hashes on", "kernel-hashes off",
     [("vm.web.kernel-hashes", W, (COMMON, "kernel-hashes off"))]),
    ("template sev-es to sev", COMMON, "type sev-es", "type sev",
     [("vm.web.type", W, (COMMON, "type sev"))]),
    ("firmware pin removed", WEB, f'"OVMF.fd" sha256 "{PIN_A}"', '"OVMF.fd"',
     [("vm.web.firmware.sha256", W, (WEB, 'firmware "OVMF.fd"'))]),
    ("firmware digest changes", WEB, f'sha256 "{PIN_A}"', f'sha256 "{"c" * 64}"',
     [("vm.web.firmware.sha256", M, (WEB, "firmware"))]),
    ("initrd pinned", WEB, '"initrd.img"', f'"initrd.img" sha256 "{PIN_A}"',
     [("vm.web.initrd.sha256", S, (WEB, "initrd"))]),
    ("vcpu count added", WEB, "vcpus 1, 2", "vcpus 1, 2, 4",
     [("vm.web.vcpus", W, (WEB, "vcpus 1, 2, 4"))]),
    ("vcpu count removed", WEB, "vcpus 1, 2", "vcpus 2",
     [("vm.web.vcpus", S, (WEB, "vcpus 2"))]),
    ("cpu model added", WEB, 'cpu "EPYC-Milan"', 'cpu "EPYC-Milan", "EPYC-Rome"',
     [("vm.web.cpu", W, (WEB, "EPYC-Rome"))]),
    ("cpu alias", WEB, 'cpu "EPYC-Milan"', 'cpu "EPYC-Milan-v2"',
     [("vm.web.cpu", N, (WEB, "EPYC-Milan-v2"))]),
    ("cmdline bytes", WEB, '"console=ttyS0"', '"console=ttyS0 quiet"',
     [("vm.web.cmdline", M, (WEB, "quiet"))]),
    ("template host profile switched", COMMON, "legacy-vm-type on", "legacy-vm-type off",
     [("vm.web.host.legacy-vm-type", M, (COMMON, "legacy-vm-type off"))]),
    ("template host profile widened", COMMON, "legacy-vm-type on", "legacy-vm-type on, off",
     [("vm.web.host.legacy-vm-type", W, (COMMON, "legacy-vm-type on, off"))]),
    ("memory", WEB, "memory 2GiB", "memory 4GiB", [("vm.web.memory", N, (WEB, "memory 4GiB"))]),
    ("disk added", WEB, "net user\n", 'net user\n        disk "root.qcow2" format qcow2\n',
     [("vm.web.launch.disk", N, (WEB, "disk"))]),
    ("vm added", WEB, "", '\nvm "db" extends "hardened" {\n    firmware "OVMF.fd"\n'
     '    kernel "vmlinuz"\n    cpu "EPYC-Milan"\n}\n', [("vm.db", W, (WEB, 'vm "db"'))]),
    ("comments and layout only", WEB, "    vcpus 1, 2\n", "\n    # two sizes\n    vcpus   1,2\n",
     []),
    ("setting moved into the template", WEB, "    memory 2GiB\n", "", []),
]


@pytest.mark.parametrize("edited,old_text,new_text,expected", [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_manifest_pair(tmp_path, edited, old_text, new_text, expected):
    before = write_project(tmp_path / "old")
    after = write_project(tmp_path / "new", {edited: (old_text, new_text)})
    if expected == [] and old_text == "    memory 2GiB\n":  # move memory into the template
        path = tmp_path / "new" / COMMON
        path.write_text(path.read_text().replace("kernel-hashes on\n",
                                                 "kernel-hashes on\n    memory 2GiB\n"))
    old = compile_file(str(before / WEB), lint_rules=False)
    new = compile_file(str(after / WEB), lint_rules=False)
    assert old.ok and new.ok, [str(d.message) for d in old.diagnostics + new.diagnostics]
    result = diff_manifests(old.manifest, new.manifest)
    assert [(c.path, c.kind) for c in result.changes] == [(p, k) for p, k, _ in expected]
    for change, (_, _, (file, text)) in zip(result.changes, expected):
        target = after / file
        assert change.span is not None and change.span.file == str(target)
        assert change.span.line == line_of(target, text)


def test_every_kind_is_covered_through_manifests():
    assert {kind for case in CASES for _, kind, _ in case[4]} == set(Kind)
