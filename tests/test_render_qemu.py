"""The QEMU argv built from model objects: options per facts §7, and the render errors."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from render_support import GENOA, ROME_BY_FMS, make_vm, sev_vm

from sevmanifest import render
from sevmanifest.diagnostics import DiagnosticError
from sevmanifest.model import Cpu, Disk, Launch, Vmm


def _argv(vm, spec=None):
    return render.qemu_command(vm, render.select_variant(vm, spec)).argv


def _value(argv, flag):
    values = [argv[i + 1] for i, a in enumerate(argv) if a == flag]
    assert len(values) == 1, (flag, values)
    return values[0]


def _values(argv, flag):
    return [argv[i + 1] for i, a in enumerate(argv) if a == flag]


def _error(vm, spec=None) -> str:
    with pytest.raises(DiagnosticError) as exc:
        _argv(vm, spec)
    return str(exc.value)


def test_sev_es_on_qemu_9_2(tmp_path: Path):
    vm = make_vm(tmp_path)
    argv = _argv(vm, "vcpus=4")
    assert argv[0] == "qemu-system-x86_64"
    assert _value(argv, "-accel") == "kvm"
    assert _value(argv, "-machine") == "q35,confidential-guest-support=sev0,kernel-irqchip=split,smm=off"
    assert _value(argv, "-object") == ("sev-guest,id=sev0,policy=0x00000005,cbitpos=51,"
                                       "reduced-phys-bits=1,kernel-hashes=on,legacy-vm-type=on")
    assert _value(argv, "-cpu") == "EPYC-Milan"
    assert _value(argv, "-smp") == "4"
    assert _value(argv, "-m") == "2G"
    assert _value(argv, "-drive") == (f"if=pflash,format=raw,unit=0,file={tmp_path}/OVMF.amdsev.fd,"
                                      "readonly=on")
    assert _value(argv, "-kernel") == f"{tmp_path}/vmlinuz"
    assert _value(argv, "-initrd") == f"{tmp_path}/initrd.img"
    assert _value(argv, "-append") == "console=ttyS0 root=/dev/vda1 ro"
    for flag in ("-no-reboot", "-S", "-nographic"):
        assert flag in argv
    assert _value(argv, "-device") == "virtio-net-pci,netdev=net0,romfile="


def test_legacy_vm_type_off_is_explicit(tmp_path: Path):
    vm = make_vm(tmp_path, host=dict(legacy_vm_types=(True, False)))
    assert _value(_argv(vm, "vcpus=1,legacy-vm-type=off"), "-object").endswith(",legacy-vm-type=off")
    assert _value(_argv(vm, "vcpus=1,legacy-vm-type=on"), "-object").endswith(",legacy-vm-type=on")


@pytest.mark.parametrize("version", [(6, 2), (7, 2), (8, 2), (9, 0)])
def test_no_legacy_vm_type_before_9_1(tmp_path: Path, version):
    vm = sev_vm(tmp_path, host=dict(qemu_version=version))
    assert "legacy-vm-type" not in _value(_argv(vm), "-object")


def test_cpu_table_starts_at_7_2(tmp_path: Path):
    vm = make_vm(tmp_path, host=dict(qemu_version=(7, 1)))
    assert "known from QEMU 7.2 on" in _error(vm, "vcpus=1")
    assert "EPYC-v4" in _error(make_vm(tmp_path, cpus=(Cpu(0x00800F12, "EPYC-v4"),),
                                       host=dict(qemu_version=(7, 2))), "vcpus=1")


def test_legacy_vm_type_off_before_9_1_is_an_error(tmp_path: Path):
    vm = make_vm(tmp_path, host=dict(qemu_version=(9, 0), legacy_vm_types=(False,)))
    assert "legacy-vm-type off (KVM_SEV_INIT2) needs QEMU 9.1" in _error(vm, "vcpus=1")


def test_plain_sev_disk_boot(tmp_path: Path):
    vm = sev_vm(tmp_path, kernel=None, initrd=None, cmdline=None, kernel_hashes=False,
                launch=Launch(disks=(Disk("root.qcow2", "qcow2", tmp_path / "root.qcow2"),)))
    argv = _argv(vm)
    assert _value(argv, "-machine") == "q35,confidential-guest-support=sev0"
    assert "kernel-hashes=off" in _value(argv, "-object")
    assert "-cpu" not in argv and "-no-reboot" not in argv and "-kernel" not in argv
    assert _values(argv, "-drive")[1] == f"file={tmp_path}/root.qcow2,format=qcow2,if=virtio"
    assert _value(argv, "-nic") == "none"


def test_commas_in_paths_are_doubled(tmp_path: Path):
    vm = make_vm(tmp_path / "a,b")
    assert f"file={tmp_path}/a,,b/OVMF.amdsev.fd," in _value(_argv(vm, "vcpus=1"), "-drive")
    assert _value(_argv(vm, "vcpus=1"), "-kernel") == f"{tmp_path}/a,b/vmlinuz"  # not QemuOpts


def test_cmdline_bytes_are_one_argv_element(tmp_path: Path):
    cmdline = b"a='b c' \"d\" $HOME `id` \\ ! ;\n\xc3\xa9 \xff"
    vm = make_vm(tmp_path, cmdline=cmdline)
    import os
    assert os.fsencode(_value(_argv(vm, "vcpus=1"), "-append")) == cmdline


def test_empty_cmdline_is_rendered(tmp_path: Path):
    assert _value(_argv(make_vm(tmp_path, cmdline=b""), "vcpus=1"), "-append") == ""


def test_nul_in_cmdline_is_an_error(tmp_path: Path):
    assert "NUL" in _error(make_vm(tmp_path, cmdline=b"a\0b"), "vcpus=1")


def test_cpu_not_shipped_by_target_qemu(tmp_path: Path):
    vm = make_vm(tmp_path, cpus=(GENOA,), host=dict(qemu_version=(7, 2)))
    assert "QEMU 7.2 does not ship CPU model EPYC-Genoa (first in QEMU 8.1)" in _error(vm, "vcpus=1")
    assert _value(_argv(make_vm(tmp_path, cpus=(GENOA,), host=dict(qemu_version=(8, 1))), "vcpus=1"),
                  "-cpu") == "EPYC-Genoa"


def test_cpu_by_family_or_signature_renders_the_base_model(tmp_path: Path):
    assert _value(_argv(make_vm(tmp_path, cpus=(ROME_BY_FMS,)), "vcpus=1"), "-cpu") == "EPYC-Rome"
    by_sig = Cpu(0x00800F12)
    assert _value(_argv(make_vm(tmp_path, cpus=(by_sig,)), "vcpus=1"), "-cpu") == "EPYC"
    unknown = Cpu(0x00123456)
    assert "matches no CPU model" in _error(make_vm(tmp_path, cpus=(unknown,)), "vcpus=1")
    turin = Cpu(0x00B00F00, None, 26, 0, 0)
    assert "matches no CPU model that QEMU 9.2 ships" in _error(make_vm(tmp_path, cpus=(turin,)),
                                                                 "vcpus=1")


def test_qemu_7_2_kernel_hashes_pins_machine_7_1(tmp_path: Path):
    vm = make_vm(tmp_path, host=dict(qemu_version=(7, 2)))
    command = render.qemu_command(vm, render.select_variant(vm, "vcpus=1"))
    assert _value(command.argv, "-machine").startswith("pc-q35-7.1,")
    assert [w.rule for w in command.warnings] == ["SEVM107"]
    pc = make_vm(tmp_path, machine="pc", host=dict(qemu_version=(7, 2)))
    assert _value(_argv(pc, "vcpus=1"), "-machine").startswith("pc-i440fx-7.1,")
    old = make_vm(tmp_path, machine="pc-q35-6.2", host=dict(qemu_version=(7, 2)))
    assert render.qemu_command(old, render.select_variant(old, "vcpus=1")).warnings == ()
    explicit = make_vm(tmp_path, machine="pc-q35-7.2", host=dict(qemu_version=(7, 2)))
    assert "random seed" in _error(explicit, "vcpus=1")


def test_qemu_7_2_without_kernel_hashes_keeps_machine(tmp_path: Path):
    vm = make_vm(tmp_path, kernel_hashes=False, host=dict(qemu_version=(7, 2)))
    assert _value(_argv(vm, "vcpus=1"), "-machine").startswith("q35,")


def test_kernel_hashes_need_qemu_6_2(tmp_path: Path):
    assert "kernel-hashes needs QEMU 6.2" in _error(sev_vm(tmp_path, host=dict(qemu_version=(6, 1))))
    vm = sev_vm(tmp_path, kernel_hashes=False, host=dict(qemu_version=(6, 1)))
    assert "kernel-hashes" not in _value(_argv(vm), "-object")
    assert "QEMU 6.0 or later" in _error(sev_vm(tmp_path, kernel_hashes=False,
                                                host=dict(qemu_version=(5, 2))))


def test_cloud_vmm_variant_is_not_rendered(tmp_path: Path):
    vm = make_vm(tmp_path, host=dict(vmms=(Vmm.QEMU, Vmm.EC2)))
    assert "launched by the cloud provider" in _error(vm, "vcpus=1,vmm=ec2")
    assert _argv(vm, "vcpus=1,vmm=qemu")


def test_sev_es_without_cpu_is_an_error(tmp_path: Path):
    assert "needs a cpu" in _error(make_vm(tmp_path, cpus=()), "vcpus=1")


def test_memory_must_be_whole_mib(tmp_path: Path):
    assert "whole number of MiB" in _error(make_vm(tmp_path, memory=(1 << 30) + 512), "vcpus=1")
    assert _value(_argv(make_vm(tmp_path, memory=1536 << 20), "vcpus=1"), "-m") == "1536M"


@pytest.mark.parametrize("extra", [("-smp", "8"), ("--append", "x"), ("-cpu", "host"), ("-bios", "x"),
                                   ("-object", "sev-guest,id=x,reduced-phys-bits=1"),
                                   ("-global", "sev-guest.policy=0"), ("-dtb", "x.dtb"),
                                   ("-drive", "if=pflash,unit=0,file=x"), ("-M", "pc")])
def test_extra_arguments_that_bypass_the_manifest_are_errors(tmp_path: Path, extra):
    vm = make_vm(tmp_path, launch=Launch(extra=extra))
    assert "extra argument" in _error(vm, "vcpus=1")


def test_harmless_extra_arguments_are_appended(tmp_path: Path):
    vm = make_vm(tmp_path, launch=Launch(extra=("-device", "virtio-rng-pci", "-name", "x,y")))
    assert _argv(vm, "vcpus=1")[-4:] == ["-device", "virtio-rng-pci", "-name", "x,y"]


def test_argv_format_is_the_json_of_the_list(tmp_path: Path):
    vm = make_vm(tmp_path, cmdline=b"a 'b' \"c\"\n\xff")
    variant = render.select_variant(vm, "vcpus=4")
    text = render.render_qemu(vm, variant, format="argv").text
    assert json.loads(text) == render.qemu_command(vm, variant).argv


@pytest.mark.parametrize("extra", [
    ("-global", "EPYC-Milan-x86_64-cpu.family=23"), ("--global", "x86_64-cpu.model=7"),
    ("-global", "cpu.stepping=3"), ("-global", "EPYC-Rome-v1-x86_64-cpu.family=25"),
    ("-global", "driver=EPYC-Milan-x86_64-cpu,property=family,value=23"),
    ("-global", "driver=ICH9-LPC,driver=x86_64-cpu,property=stepping,value=2"),
])
def test_extra_global_on_a_cpu_type_is_an_error(tmp_path: Path, extra):
    """QEMU 7.2 applies each of these to the vCPUs (checked with qom-get), and family,
    model and stepping are the CPUID signature an SEV-ES VMSA carries in RDX."""
    vm = make_vm(tmp_path, launch=Launch(extra=("-name", "g") + extra))
    message = _error(vm, "vcpus=1")
    assert f"extra argument {extra[0]} {extra[1]!r}" in message and "CPU type" in message


@pytest.mark.parametrize("extra", [("-global", "ICH9-LPC.disable_s3=1"),
                                   ("-global", "virtio-blk-pci.serial=x86_64-cpu"),
                                   ("-global", "driver=isa-fdc,property=cpu,value=x-cpu")])
def test_extra_global_on_other_drivers_is_appended(tmp_path: Path, extra):
    vm = make_vm(tmp_path, launch=Launch(extra=extra))
    assert _argv(vm, "vcpus=1")[-2:] == list(extra)
