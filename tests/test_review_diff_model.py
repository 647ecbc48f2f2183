"""The diff engine on model objects built directly: one row per classification rule."""
from __future__ import annotations

from pathlib import Path

import pytest

from review_support import (DIGEST_A, DIGEST_B, EC2, MILAN, MILAN_V2, ROME, artefact, change,
                            host, make_vm, manifest, span)
from sevmanifest.model import Artefact, Disk, GuestType, Launch, Policy
from sevmanifest.review.diff import Kind, diff_manifests, diff_vms

BASE = make_vm()
SEV = make_vm(type=GuestType.SEV, policy=0x3)
UNMEASURED = make_vm(kernel_hashes=False)

W, S, M, N = Kind.WEAKENS, Kind.STRENGTHENS, Kind.MEASUREMENT, Kind.NEUTRAL

# (id, old vm, new vm, expected [(path, old, new, kind, measured)])
CASES = [
    ("debug allowed", BASE, change(BASE, policy=Policy(0x6)),
     [("policy.debug", "deny", "allow", W, True)]),
    ("debug denied", change(BASE, policy=Policy(0x6)), BASE,
     [("policy.debug", "allow", "deny", S, True)]),
    ("key sharing allowed", BASE, change(BASE, policy=Policy(0x5)),
     [("policy.key-sharing", "deny", "allow", W, True)]),
    ("send allowed", change(BASE, policy=Policy(0xF)), BASE,
     [("policy.send", "deny", "allow", W, True)]),
    ("domain relaxed while sending allowed", change(BASE, policy=Policy(0x17)), BASE,
     [("policy.send-outside-domain", "deny", "allow", W, True)]),
    ("domain relaxed while send denied", change(BASE, policy=Policy(0x1F)),
     change(BASE, policy=Policy(0xF)),
     [("policy.send-outside-domain", "deny", "allow", M, True)]),
    ("non-sev target allowed", change(BASE, policy=Policy(0x27)), BASE,
     [("policy.send-to-non-sev", "deny", "allow", W, True)]),
    ("min-api lowered", change(BASE, policy=Policy(0x18000007)), BASE,
     [("policy.min-api", "0.24", "0.0", W, True)]),
    ("min-api raised", BASE, change(BASE, policy=Policy(0x00010007)),
     [("policy.min-api", "0.0", "1.0", S, True)]),
    ("reserved bit set", BASE, change(BASE, policy=Policy(0x47)),
     [("policy.reserved", "0x0", "0x40", M, True)]),
    ("sev-es to sev", BASE, change(BASE, type=GuestType.SEV, policy=Policy(0x3)),
     [("type", "sev-es", "sev", W, True)]),
    ("sev to sev-es", SEV, change(SEV, type=GuestType.SEV_ES, policy=Policy(0x7)),
     [("type", "sev", "sev-es", S, True)]),
    ("kernel-hashes off", BASE, UNMEASURED, [("kernel-hashes", "on", "off", W, True)]),
    ("kernel-hashes on", UNMEASURED, BASE, [("kernel-hashes", "off", "on", S, True)]),
    ("firmware pin removed", BASE,
     change(BASE, firmware=artefact("firmware", "OVMF.amdsev.fd")),
     [("firmware.sha256", DIGEST_A, None, W, False)]),
    ("initrd pinned", BASE, change(BASE, initrd=artefact("initrd", "initrd.img", DIGEST_B)),
     [("initrd.sha256", None, DIGEST_B, S, False)]),
    ("firmware digest changes", BASE,
     change(BASE, firmware=artefact("firmware", "OVMF.amdsev.fd", DIGEST_B)),
     [("firmware.sha256", DIGEST_A, DIGEST_B, M, True)]),
    ("firmware moved, same pin", BASE,
     change(BASE, firmware=artefact("firmware", "build/OVMF.amdsev.fd", DIGEST_A)),
     [("firmware", "OVMF.amdsev.fd", "build/OVMF.amdsev.fd", N, False)]),
    ("firmware moved and rebuilt, both pinned", BASE,
     change(BASE, firmware=artefact("firmware", "b/OVMF.fd", DIGEST_B)),
     [("firmware", "OVMF.amdsev.fd", "b/OVMF.fd", N, False),
      ("firmware.sha256", DIGEST_A, DIGEST_B, M, True)]),
    ("unpinned initrd replaced", BASE, change(BASE, initrd=artefact("initrd", "initrd-2.img")),
     [("initrd", "initrd.img", "initrd-2.img", M, True)]),
    ("kernel pin changes without kernel-hashes", UNMEASURED,
     change(UNMEASURED, kernel=artefact("kernel", "vmlinuz", DIGEST_B)),
     [("kernel.sha256", DIGEST_A, DIGEST_B, N, False)]),
    ("unmeasured kernel added", change(BASE, kernel=None, initrd=None, cmdline=None,
                                       kernel_hashes=False), UNMEASURED,
     [("kernel", None, "vmlinuz", W, False), ("initrd", None, "initrd.img", N, False),
      ("cmdline", None, '"console=ttyS0"', N, False)]),
    ("cmdline bytes", BASE, change(BASE, cmdline=b"console=ttyS0 "),
     [("cmdline", '"console=ttyS0"', '"console=ttyS0 "', M, True)]),
    ("cmdline unmeasured", UNMEASURED, change(UNMEASURED, cmdline=b"quiet"),
     [("cmdline", '"console=ttyS0"', '"quiet"', N, False)]),
    ("empty cmdline hashes like none", change(BASE, cmdline=None), change(BASE, cmdline=b""),
     [("cmdline", None, '""', N, False)]),
    ("vcpu count added", BASE, change(BASE, vcpus=(1, 2, 4)),
     [("vcpus", "1, 2", "1, 2, 4", W, True)]),
    ("vcpu count removed", BASE, change(BASE, vcpus=(2,)), [("vcpus", "1, 2", "2", S, True)]),
    ("vcpu count replaced", BASE, change(BASE, vcpus=(1, 4)),
     [("vcpus", "1, 2", "1, 4", M, True)]),
    ("vcpus under plain SEV", SEV, change(SEV, vcpus=(1, 2, 4, 8)),
     [("vcpus", "1, 2", "1, 2, 4, 8", N, False)]),
    ("cpu model added", BASE, change(BASE, cpus=(MILAN, ROME)),
     [("cpu", "EPYC-Milan (0x00a00f11)", "EPYC-Milan (0x00a00f11), EPYC-Rome (0x00830f10)",
       W, True)]),
    ("cpu model replaced", BASE, change(BASE, cpus=(ROME,)),
     [("cpu", "EPYC-Milan (0x00a00f11)", "EPYC-Rome (0x00830f10)", M, True)]),
    ("cpu alias with the same signature", BASE, change(BASE, cpus=(MILAN_V2,)),
     [("cpu", "EPYC-Milan (0x00a00f11)", "EPYC-Milan-v2 (0x00a00f11)", N, False)]),
    ("cpu under ec2", change(BASE, host=host(vmms=(EC2,))),
     change(BASE, host=host(vmms=(EC2,)), cpus=(ROME,)),
     [("cpu", "EPYC-Milan (0x00a00f11)", "EPYC-Rome (0x00830f10)", N, False)]),
    ("host profile INIT2 added", BASE, change(BASE, host=host(legacy_vm_types=(True, False))),
     [("host.legacy-vm-type", "on", "on, off", W, True)]),
    ("host profile switched", BASE, change(BASE, host=host(legacy_vm_types=(False,))),
     [("host.legacy-vm-type", "on", "off", M, True)]),
    ("debugswap accepted", BASE, change(BASE, host=host(sev_features=(0, 0x20))),
     [("host.sev-features", "0x0", "0x0, 0x20", W, True)]),
    ("vmm removed", change(BASE, host=host(vmms=(EC2, EC2.QEMU))), BASE,
     [("host.vmm", "ec2, qemu", "qemu", S, True)]),
    ("qemu version", BASE, change(BASE, host=host(qemu_version=(8, 2))),
     [("host.qemu-version", "9.2", "8.2", N, False)]),
    ("memory", BASE, change(BASE, memory=4 << 30), [("memory", "2GiB", "4GiB", N, False)]),
    ("machine", BASE, change(BASE, machine="pc-q35-7.1"),
     [("machine", '"q35"', '"pc-q35-7.1"', N, False)]),
    ("disks", BASE, change(BASE, launch=Launch(disks=(Disk("root.qcow2", "qcow2"),))),
     [("launch.disk", "(none)", '"root.qcow2" format qcow2', N, False)]),
    ("net and extra", BASE, change(BASE, launch=Launch(net="user", extra=("-nographic",))),
     [("launch.net", None, "user", N, False), ("launch.extra", "(none)", '"-nographic"', N, False)]),
    ("order of vcpus only", BASE, change(BASE, vcpus=(2, 1)),
     [("vcpus", "1, 2", "2, 1", N, False)]),
    ("nothing", BASE, make_vm(origins={}), []),
]


@pytest.mark.parametrize("old,new,expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_classification(old, new, expected):
    got = [(c.path.removeprefix("vm.web."), c.old, c.new, c.kind, c.measured)
           for c in diff_vms(old, new)]
    assert got == expected
    for c in diff_vms(old, new):
        assert c.why and "\n" not in c.why


def test_every_kind_is_covered():
    kinds = {row[3] for case in CASES for row in case[3]}
    assert kinds == set(Kind)


def test_direction_and_measurement_together_says_so():
    [c] = diff_vms(BASE, change(BASE, policy=Policy(0x6)))
    assert c.kind is Kind.WEAKENS and "reference values change" in c.why


def test_span_is_the_new_side_origin_with_fallback():
    [c] = diff_vms(BASE, change(BASE, firmware=artefact("firmware", "OVMF.amdsev.fd", DIGEST_B)))
    assert c.span == span(3)  # "firmware.sha256" falls back to "firmware"
    new = change(BASE, policy=Policy(0x27), origins={})
    [c] = diff_vms(change(BASE, policy=Policy(0x7)), new)
    assert c.span == span(1)  # no origin recorded: the vm's own span


def test_vm_added_and_removed():
    other = make_vm("db", vcpus=(1, 2, 4))
    result = diff_manifests(manifest(BASE), manifest(other, BASE))
    assert [(c.path, c.kind, c.old) for c in result.changes] == [("vm.db", W, None)]
    assert "3 variants" in result.changes[0].new and result.weakens
    result = diff_manifests(manifest(other, BASE), manifest(BASE))
    assert [(c.path, c.kind, c.new) for c in result.changes] == [("vm.db", S, None)]
    assert not result.weakens and result.measured


def test_missing_files():
    assert diff_manifests(None, manifest(BASE)).weakens
    assert diff_manifests(manifest(BASE), None).changes[0].kind is S
    assert not diff_manifests(None, None)


def test_result_flags():
    result = diff_manifests(manifest(BASE), manifest(change(BASE, memory=1 << 30)))
    assert result and not result.weakens and not result.measured
    assert result.count(N) == 1


def _placed(manifest_file: str, firmware_path: str, sha256: str | None = None):
    """BASE declared in ``manifest_file``, its firmware written "../images/fw.fd" (in some
    template) and resolving to ``firmware_path``."""
    return change(BASE, file=manifest_file,
                  firmware=Artefact("firmware", "../images/fw.fd", Path(firmware_path), sha256))


def test_same_written_path_resolving_to_another_file():
    # The template moved (templates/ -> templates/v2/): its "../images/fw.fd" is another file.
    old = _placed("/co/guests/g.sevm", "/co/images/fw.fd")
    new = _placed("/co/guests/g.sevm", "/co/templates/images/fw.fd")
    [c] = diff_vms(old, new)
    assert (c.path, c.kind, c.measured) == ("vm.web.firmware", M, True)
    assert c.old == "../images/fw.fd (resolves to ../images/fw.fd)"
    assert c.new == "../images/fw.fd (resolves to ../templates/images/fw.fd)"
    pinned = [_placed(v.file, str(v.firmware.path), DIGEST_A) for v in (old, new)]
    assert [(c.path, c.kind) for c in diff_vms(*pinned)] == [("vm.web.firmware", N)]


def test_same_tree_checked_out_elsewhere_is_no_change():
    old = _placed("/tmp/sevm-diff-x/guests/g.sevm", "/tmp/sevm-diff-x/images/fw.fd")
    new = _placed("/work/repo/guests/g.sevm", "/work/repo/images/fw.fd")
    assert list(diff_vms(old, new)) == []
    fixed = Artefact("firmware", "/opt/fw.fd", Path("/opt/fw.fd"))  # absolute as written
    assert list(diff_vms(change(old, firmware=fixed), change(new, firmware=fixed))) == []
