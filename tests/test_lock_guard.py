"""The matrix guard: more than MAX_VARIANTS variants is an error saying how many and why."""
from __future__ import annotations

import dataclasses

from sevmanifest.diagnostics import Severity
from sevmanifest.frontend import compile_text
from sevmanifest.lock.guard import MAX_VARIANTS, check_matrix_size

from lock_support import make_repo, sevm, vm_text


def compiled_vm(tmp_path, **kwargs):
    vms = make_repo(tmp_path)
    result = compile_text(vm_text(**kwargs), str(vms / "g.sevm"))
    assert result.ok, result.diagnostics
    return result.manifest.vms[0]


def test_bound_is_ten_thousand():
    assert MAX_VARIANTS == 10_000


def test_at_the_bound_is_accepted(tmp_path):
    vm = compiled_vm(tmp_path)
    vm = dataclasses.replace(vm, vcpus=tuple(range(1, 10_001)))
    assert vm.variant_count() == 10_000
    assert check_matrix_size(vm) is None


def test_above_the_bound_names_count_dimensions_and_reason(tmp_path):
    vm = compiled_vm(tmp_path)
    host = dataclasses.replace(vm.host, sev_features=tuple(range(101)))
    vm = dataclasses.replace(vm, vcpus=tuple(range(1, 101)), host=host)
    d = check_matrix_size(vm)
    assert d is not None and d.severity is Severity.ERROR and not d.fatal_input
    assert d.message == ("vm 'web': the matrix expands to 10,100 variants (100 vcpus × "
                         "101 sev-features), more than the limit of 10,000")
    assert "attestation service would accept" in d.notes[0]
    assert d.span == vm.span and d.span is not None


def test_lock_refuses_a_huge_matrix(tmp_path):
    vms = make_repo(tmp_path)
    text = vm_text(vcpus=", ".join(str(i) for i in range(1, 101)))
    text = text.replace("sev-features 0x0", "sev-features " + ", ".join(map(hex, range(101))))
    (vms / "huge.sevm").write_text(text)
    result = sevm("lock", "huge.sevm", cwd=vms)
    assert result.returncode == 1, result.stderr
    assert "the matrix expands to 10,100 variants" in result.stderr
    assert "huge.sevm:1:" in result.stderr  # points at the vm
    assert not (vms / "huge.sevm.lock").exists()
