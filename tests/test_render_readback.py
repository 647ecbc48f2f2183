"""One source, two outputs: a rendered QEMU argv, read back the way QEMU reads it, measures
to the digest `sevm measure` gives that variant (examples, generated manifests, edge cases)."""
from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from render_support import EXAMPLES, example_id, make_vm, need_module, sev_vm
from render_support_gen import compile_vm, manifests, qemu_variants

from sevmanifest import render
from sevmanifest.diagnostics import DiagnosticError
from sevmanifest.frontend import compile_file
from sevmanifest.measure.digest import compute
from sevmanifest.model import Cpu
from sevmanifest.render.readback import launch_digest_from_argv, measured_inputs_from_argv



def _check_all_variants(vm) -> int:
    expected = {d.variant: d.launch_digest for d in compute(vm).variants}
    checked = 0
    for variant in qemu_variants(vm):
        try:
            argv = render.qemu_command(vm, variant).argv
        except DiagnosticError:
            continue  # not renderable (e.g. libvirt-only limits); covered by test_render_qemu
        got = launch_digest_from_argv(argv, sev_features=variant.sev_features,
                                      qemu_version=vm.host.qemu_version)
        assert got == expected[variant], (vm.name, variant, argv)
        checked += 1
    return checked


def test_example_manifests_exist():
    assert len(EXAMPLES) >= 3, EXAMPLES


@pytest.mark.parametrize("path", EXAMPLES, ids=example_id)
def test_examples_read_back_to_their_digests(path: Path):
    result = compile_file(str(path))
    if result.manifest is None:
        pytest.fail(f"{path} does not compile: {[d.message for d in result.diagnostics]}")
    for vm in result.manifest.vms:
        assert _check_all_variants(vm) == len(qemu_variants(vm))


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("generated")


@settings(max_examples=200, deadline=None)
@given(manifests())
def test_generated_manifests_read_back_to_their_digests(scratch, text):
    vm = compile_vm(text, scratch)
    assert _check_all_variants(vm) == len(qemu_variants(vm))


def test_readback_sees_every_measured_input(tmp_path: Path):
    vm = make_vm(tmp_path, cmdline=b"a b\n\xff", host=dict(legacy_vm_types=(False,)))
    variant = render.select_variant(vm, "vcpus=4")
    back = measured_inputs_from_argv(render.qemu_command(vm, variant).argv)
    assert back.vm.firmware.path == vm.firmware.path and back.vm.kernel.path == vm.kernel.path
    assert back.vm.initrd.path == vm.initrd.path and back.vm.cmdline == vm.cmdline
    assert back.vm.kernel_hashes and back.vm.policy == vm.policy and back.vm.type == vm.type
    assert back.variant.vcpus == 4 and back.variant.cpu.signature == 0x00A00F11
    assert back.variant.legacy_vm_type is False
    assert (back.vm.host.cbitpos, back.vm.host.reduced_phys_bits) == (51, 1)


def test_readback_detects_a_changed_input(tmp_path: Path):
    """The comparison can fail: every measured argv element changes the digest."""
    vm = make_vm(tmp_path)
    variant = render.select_variant(vm, "vcpus=4")
    argv = render.qemu_command(vm, variant).argv
    reference = launch_digest_from_argv(argv)
    (tmp_path / "other").write_bytes(b"another kernel")
    edits = {"-append": argv[argv.index("-append") + 1] + " ", "-smp": "3", "-cpu": "EPYC-Rome",
             "-kernel": str(tmp_path / "other"), "-initrd": str(tmp_path / "other")}
    for flag, value in edits.items():
        changed = list(argv)
        changed[changed.index(flag) + 1] = value
        assert launch_digest_from_argv(changed) != reference, flag
    obj = argv.index("-object") + 1
    for old, new in [("kernel-hashes=on", "kernel-hashes=off"), ("legacy-vm-type=on", "legacy-vm-type=off")]:
        changed = list(argv)
        changed[obj] = changed[obj].replace(old, new)
        assert launch_digest_from_argv(changed) != reference, old


def test_readback_forms_qemu_accepts(tmp_path: Path):
    """Forms a hand-written or libvirt-generated command line uses."""
    vm = sev_vm(tmp_path, cpus=(Cpu(0x00A00F11, "EPYC-Milan", 25, 1, 1),))
    variant = render.select_variant(vm, None)
    reference = render.launch_digest(vm, variant)
    fw, kernel = str(vm.firmware.path), str(vm.kernel.path)
    base = ["qemu", "-enable-kvm", "-M", "q35", "-machine", "memory-encryption=lsec0",
            "--kernel", kernel, "-initrd", str(vm.initrd.path), "-append", vm.cmdline.decode(),
            "-smp", "cpus=2,maxcpus=8"]
    json_object = ('{"qom-type":"sev-guest","id":"lsec0","cbitpos":51,"reduced-phys-bits":1,'
                   '"policy":1,"kernel-hashes":true}')
    for firmware in (["-bios", fw], ["-pflash", fw, "-pflash", "/vars.fd"],
                     ["-drive", f"if=pflash,unit=1,file=/vars.fd", "-drive", f"if=pflash,file={fw}"]):
        argv = base + firmware + ["-object", json_object]
        assert launch_digest_from_argv(argv) == reference, firmware


@pytest.mark.parametrize("argv, message", [
    (["qemu", "-m", "1G"], "confidential-guest-support"),
    (["qemu", "-machine", "q35,confidential-guest-support=x"], "no -object sev-guest"),
    (["qemu", "-machine", "q35,confidential-guest-support=x", "-object", "sev-guest,id=x,cbitpos=51"],
     "reduced-phys-bits"),
    (["qemu", "-machine", "q35,confidential-guest-support=x",
      "-object", "sev-guest,id=x,reduced-phys-bits=1,kernel-hashes=maybe"], "expected on or off"),
    (["qemu", "-machine", "q35,confidential-guest-support=x",
      "-object", "sev-guest,id=x,reduced-phys-bits=1"], "no firmware"),
    (["qemu", "-append", "x", "-bios", "f", "-machine", "confidential-guest-support=x",
      "-object", "sev-guest,id=x,reduced-phys-bits=1"], "need -kernel"),
    (["qemu", "-smp"], "needs an argument"),
])
def test_readback_errors(argv, message):
    with pytest.raises(DiagnosticError, match=message):
        measured_inputs_from_argv(argv)


def _independent_digest(launch) -> bytes | None:
    """sev-snp-measure 0.0.13's digest of read-back inputs, where it models the profile:
    SEV, and SEV-ES under INIT2 (legacy-vm-type off) with sev_features 0; None elsewhere."""
    from sevsnpmeasure.guest import calc_launch_digest
    from sevsnpmeasure.sev_mode import SevMode
    vm, variant = launch.vm, launch.variant
    es = vm.type.value == "sev-es"
    if es and (variant.legacy_vm_type or variant.sev_features):
        return None
    try:
        append = None if vm.cmdline is None else vm.cmdline.decode("utf-8")
    except UnicodeDecodeError:
        return None  # sev-snp-measure takes the cmdline as text
    measured = vm.measured_boot
    return calc_launch_digest(
        SevMode.SEV_ES if es else SevMode.SEV, variant.vcpus,
        variant.cpu.signature if variant.cpu else 0, str(vm.firmware.path),
        str(vm.kernel.path) if measured else None,
        str(vm.initrd.path) if measured and vm.initrd else None,
        append if measured else None, 0)


@pytest.mark.realtools
@settings(max_examples=60, deadline=None)
@given(manifests())
def test_read_back_argv_matches_sev_snp_measure(scratch, text):
    need_module("sevsnpmeasure")
    vm = compile_vm(text, scratch)
    for variant in qemu_variants(vm):
        argv = render.qemu_command(vm, variant).argv
        launch = measured_inputs_from_argv(argv, sev_features=variant.sev_features)
        independent = _independent_digest(launch)
        if independent is not None:
            assert launch_digest_from_argv(argv, sev_features=variant.sev_features) == independent
            assert render.launch_digest(vm, variant) == independent


def test_readback_applies_cpu_globals_and_cpu_properties(tmp_path: Path):
    """QEMU sets family/model/stepping from -global on the CPU type or an ancestor, in
    order, and then from the -cpu option's own properties, whatever the argv order (as
    QEMU 7.2 does: qom-get family after -cpu EPYC-Milan,family=24 -global ...family=23
    is 24)."""
    vm = make_vm(tmp_path)
    argv = render.qemu_command(vm, render.select_variant(vm, "vcpus=4")).argv
    reference = launch_digest_from_argv(argv)

    def cpu(*extra, cpu_option="EPYC-Milan"):
        changed = list(argv)
        changed[changed.index("-cpu") + 1] = cpu_option
        back = measured_inputs_from_argv(changed + list(extra)).variant.cpu
        return back.family, back.model, back.stepping, back.signature

    assert cpu() == (25, 1, 1, 0x00A00F11)
    assert cpu("-global", "EPYC-Milan-x86_64-cpu.family=23")[0] == 23
    assert cpu("-global", "driver=x86_64-cpu,property=model,value=0x31")[1] == 0x31
    assert cpu("-global", "cpu.stepping=3", "-global", "cpu.stepping=2")[2] == 2
    assert cpu("-global", "EPYC-Rome-x86_64-cpu.family=23") == (25, 1, 1, 0x00A00F11)
    assert cpu("-global", "EPYC-Milan-x86_64-cpu.family=23", cpu_option="EPYC-Milan,family=24")[0] == 24
    assert cpu(cpu_option="EPYC-Milan,+pcid,stepping=017")[2] == 0o17
    changed = argv + ["-global", "EPYC-Milan-x86_64-cpu.family=23"]
    assert launch_digest_from_argv(changed) != reference
    with pytest.raises(DiagnosticError, match="cannot read CPU family"):
        measured_inputs_from_argv(argv + ["-global", "cpu.family=zen"])
