"""The rendered QEMU command line against Debian's real QEMU 7.2 (no SEV hardware needed).

QEMU parses -machine/-object/-drive/-smp/-m before it initialises SEV, so a correct SEV
command line stops at SEV/KVM initialisation on this host, while a misspelt property stops
earlier with "Invalid parameter" (facts §7.5; both are proven below).  -cpu, -device and the
console are checked later, by building the same machine under TCG without SEV.
"""
from __future__ import annotations

import dataclasses
import os
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from render_support import (EXAMPLES, GENOA, QEMU, assert_reached_sev_init, example_id, make_vm,
                            need_tool, qemu_accepts_without_sev, recorder, run_qemu, with_real_disks)
from render_support_gen import compile_vm, manifests, qemu_variants

from sevmanifest import cpus, render
from sevmanifest.diagnostics import DiagnosticError
from sevmanifest.frontend import compile_file
from sevmanifest.render.target import model_since

pytestmark = pytest.mark.realtools
LEGACY_VM_TYPE_ON_7_2 = "Invalid parameter 'legacy-vm-type'"


@pytest.fixture(scope="module", autouse=True)
def real_qemu():
    need_tool(QEMU)


def _for_qemu_7_2(vm):
    return dataclasses.replace(vm, host=dataclasses.replace(vm.host, qemu_version=(7, 2)))


def _without_legacy_vm_type(argv: list[str]) -> list[str]:
    return [a.replace(",legacy-vm-type=on", "").replace(",legacy-vm-type=off", "") for a in argv]


def check_variant(vm, variant, directory: Path, *, build_machine: bool = True) -> None:
    """The variant's argv against QEMU 7.2, for its own target and retargeted to 7.2;
    ``build_machine`` also builds the machine under TCG (slower)."""
    vm = with_real_disks(vm, directory)
    argv = render.qemu_command(vm, variant).argv
    if vm.host.qemu_version >= (9, 1):
        # the 9.1+ form differs from what 7.2 accepts by exactly one property
        result = run_qemu(argv)
        assert LEGACY_VM_TYPE_ON_7_2 in result.stderr, result.stderr
        assert result.stderr.count("qemu-system-x86_64:") == 1, result.stderr
        assert_reached_sev_init(run_qemu(_without_legacy_vm_type(argv)), argv)
    else:
        assert_reached_sev_init(run_qemu(argv), argv)
    model = render.qemu_command(vm, variant).target.cpu_model
    cpu_in_7_2 = model is None or model_since(model) <= (7, 2)
    if variant.legacy_vm_type and cpu_in_7_2:
        old = _for_qemu_7_2(vm)
        old_argv = render.qemu_command(old, variant).argv
        assert_reached_sev_init(run_qemu(old_argv), old_argv)
        if not build_machine:
            return
        accepted, stderr = qemu_accepts_without_sev(old_argv)
        assert accepted, f"QEMU (TCG, no SEV) rejected the rest of the argv:\n{stderr}\n{old_argv}"


@pytest.mark.parametrize("path", EXAMPLES, ids=example_id)
def test_examples_pass_qemu_option_parsing(path: Path, tmp_path: Path):
    manifest = compile_file(str(path)).manifest
    assert manifest is not None
    for vm in manifest.vms:
        for variant in qemu_variants(vm):
            check_variant(vm, variant, tmp_path)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("generated")


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(manifests())
def test_generated_manifests_pass_qemu_option_parsing(scratch, text):
    vm = compile_vm(text, scratch)
    variants = qemu_variants(vm)
    for variant in {variants[0], variants[-1]}:
        check_variant(vm, variant, scratch, build_machine=variant == variants[0])


def _run_script(script: bytes, directory: Path) -> subprocess.CompletedProcess:
    path = directory / "launch.sh"
    path.write_bytes(script)
    return subprocess.run(["/bin/sh", str(path), "-display", "none"], env=dict(os.environ, QEMU=QEMU),
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace",
                          timeout=30)


@pytest.mark.parametrize("path", EXAMPLES, ids=example_id)
def test_example_scripts_pass_qemu_option_parsing(path: Path, tmp_path: Path):
    for vm in compile_file(str(path)).manifest.vms:
        vm = with_real_disks(_for_qemu_7_2(vm), tmp_path)
        variant = next(v for v in qemu_variants(vm) if v.legacy_vm_type)
        script = render.encode_output(render.render_qemu(vm, variant).text)
        assert_reached_sev_init(_run_script(script, tmp_path), [script.decode(errors="replace")])


def test_script_with_hostile_cmdline_passes_qemu_option_parsing(tmp_path: Path):
    vm = make_vm(tmp_path / "dir 'with' $pace;s", cmdline=b"a='b c' \"$(reboot)\" `id` \\ !x;\n\xff\xc3\xa9",
                 host=dict(qemu_version=(7, 2)))
    script = render.encode_output(render.render_qemu(vm, render.select_variant(vm, "vcpus=4")).text)
    assert_reached_sev_init(_run_script(script, tmp_path), [])


# --- the checks above can fail ----------------------------------------------------------

def _argv_7_2(tmp_path: Path) -> list[str]:
    vm = make_vm(tmp_path, host=dict(qemu_version=(7, 2)))
    return render.qemu_command(vm, render.select_variant(vm, "vcpus=4")).argv


@pytest.mark.parametrize("old, new, message", [
    ("kernel-hashes=on", "kernel-hash=on", "Invalid parameter 'kernel-hash'"),
    ("confidential-guest-support=sev0", "confidential-guest-supprt=sev0", "not found"),
    ("policy=0x00000005", "policy=five", "expects"),
    (",reduced-phys-bits=1", "", "is missing"),
    ("format=raw", "format=rawx", "Unknown driver"),
])
def test_a_broken_option_is_caught(tmp_path: Path, old, new, message):
    argv = [a.replace(old, new) for a in _argv_7_2(tmp_path)]
    result = run_qemu(argv)
    assert message in result.stderr, result.stderr
    with pytest.raises(AssertionError):
        assert_reached_sev_init(result, argv)


def test_the_correct_argv_reaches_sev_init(tmp_path: Path):
    argv = _argv_7_2(tmp_path)
    assert_reached_sev_init(run_qemu(argv), argv)


@pytest.mark.parametrize("old, new", [("EPYC-Milan", "EPYC-Miln"), ("romfile=", "romfle="),
                                      ("virtio-net-pci", "virtio-net-pcx")])
def test_a_broken_late_option_is_caught_under_tcg(tmp_path: Path, old, new):
    argv = _argv_7_2(tmp_path)
    assert qemu_accepts_without_sev(argv)[0]
    accepted, stderr = qemu_accepts_without_sev([a.replace(old, new) for a in argv])
    assert not accepted, stderr


def test_cpu_model_newer_than_7_2_is_refused_by_7_2(tmp_path: Path):
    """Why the renderer refuses EPYC-Genoa for QEMU 7.2 (cpus.CPU_MODELS since)."""
    argv = [a.replace("EPYC-Milan", "EPYC-Genoa") for a in _argv_7_2(tmp_path)]
    accepted, stderr = qemu_accepts_without_sev(argv)
    assert not accepted and "EPYC-Genoa" in stderr
    vm = make_vm(tmp_path, cpus=(GENOA,), host=dict(qemu_version=(7, 2)))
    with pytest.raises(DiagnosticError):
        render.qemu_command(vm, render.select_variant(vm, "vcpus=1"))


def test_cpu_models_rendered_for_7_2_exist_in_real_qemu_7_2():
    listing = subprocess.run([QEMU, "-cpu", "help"], capture_output=True, text=True, check=True).stdout
    names = {line.split()[1] for line in listing.splitlines() if line.startswith("x86 ")}
    assert {n for n in cpus.CPU_MODELS if model_since(n) <= (7, 2)} <= names
    # models the table dates after 7.2 really are missing there (EPYC-v4, -Rome-v3, -Milan-v2)
    newer = {n for n in cpus.CPU_MODELS if model_since(n) > (7, 2)}
    assert newer and not newer & names


def test_recorder_is_not_qemu(tmp_path: Path):
    # guard: the stand-in used by the injection tests must never be taken for real QEMU
    assert recorder(tmp_path).read_text().startswith("#!")
