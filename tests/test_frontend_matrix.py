"""Matrix expansion: VM.variants() count and order for lists on vcpus, cpu, vmm,
legacy-vm-type and sev-features."""
from __future__ import annotations

import itertools

import pytest

from frontend_support import errors, vm
from sevmanifest.frontend import compile_text
from sevmanifest.model import Cpu, Variant, Vmm


def variants_of(*lines: str):
    result = compile_text(vm(*lines), "/w/m.sevm")
    assert not errors(result), [d.message for d in errors(result)]
    (only,) = result.manifest.vms
    return only, list(only.variants())


def test_no_lists_one_variant():
    v, variants = variants_of()
    assert variants == [Variant(vcpus=1, cpu=None, vmm=Vmm.QEMU, legacy_vm_type=True, sev_features=0)]
    assert v.variant_count() == 1


def test_vcpus_list_in_written_order():
    _, variants = variants_of("vcpus 8, 1, 4")
    assert [x.vcpus for x in variants] == [8, 1, 4]


def test_cpu_list():
    _, variants = variants_of('cpu "EPYC-Milan", signature 0x00830f10, family 25 model 17 stepping 0')
    assert [x.cpu for x in variants] == [Cpu(0x00A00F11, "EPYC-Milan", 25, 1, 1), Cpu(0x00830F10),
                                         Cpu(0x00A10F10, None, 25, 17, 0)]


@pytest.mark.parametrize("setting, values, field, expected", [
    ("vmm", "gce, qemu, ec2", "vmm", [Vmm.GCE, Vmm.QEMU, Vmm.EC2]),
    ("legacy-vm-type", "off, on", "legacy_vm_type", [False, True]),
    ("sev-features", "0x20, 0, 0x1", "sev_features", [0x20, 0, 0x1]),
])
def test_host_lists(setting, values, field, expected):
    _, variants = variants_of("host {", f"    {setting} {values}", "}")
    assert [getattr(x, field) for x in variants] == expected


def test_full_matrix_count_and_order():
    v, variants = variants_of(
        "type sev-es", "vcpus 1, 2, 4", 'cpu "EPYC-Milan", "EPYC-Rome"',
        "host {", "    vmm qemu, ec2", "    legacy-vm-type on, off", "}")
    assert v.variant_count() == len(variants) == 3 * 2 * 2 * 2 * 1
    # order: vmm, then legacy-vm-type, sev-features, cpu, and vcpus varies fastest
    expected = [(vmm, legacy, cpu, n) for vmm, legacy, cpu, n in itertools.product(
        [Vmm.QEMU, Vmm.EC2], [True, False], ["EPYC-Milan", "EPYC-Rome"], [1, 2, 4])]
    assert [(x.vmm, x.legacy_vm_type, x.cpu.name, x.vcpus) for x in variants] == expected
    assert len(set(variants)) == len(variants)


def test_sev_features_dimension_sits_between_legacy_and_cpu():
    _, variants = variants_of("vcpus 1, 2", "host {", "    sev-features 0, 0x20", "}")
    assert [(x.sev_features, x.vcpus) for x in variants] == [(0, 1), (0, 2), (0x20, 1), (0x20, 2)]


def test_variant_keys_name_every_dimension():
    _, variants = variants_of("vcpus 2", "cpu family 25 model 1 stepping 1", "host {",
                              "    sev-features 0x20", "}")
    assert variants[0].key() == {"vcpus": "2", "cpu": "family 25 model 1 stepping 1", "vmm": "qemu",
                                 "legacy-vm-type": "on", "sev-features": "0x20"}


def test_matrix_from_templates():
    text = ('template "t" {\n    vcpus 1, 2\n    host {\n        legacy-vm-type on, off\n    }\n}\n'
            'vm "v" extends "t" {\n    firmware "f"\n    vcpus 4, 8, 16\n}\n')
    (v,) = compile_text(text, "/w/m.sevm").manifest.vms
    assert v.variant_count() == 6 and [x.vcpus for x in v.variants()][:3] == [4, 8, 16]
