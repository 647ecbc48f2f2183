"""Choosing one variant of a matrix with --variant KEY=VALUE,..."""
from __future__ import annotations

from pathlib import Path

import pytest
from render_support import MILAN, ROME_BY_FMS, make_vm

from sevmanifest.diagnostics import DiagnosticError
from sevmanifest.model import Cpu
from sevmanifest.render import select_variant, single_variant_vm
from sevmanifest.render.variants import parse_spec

SIG_ONLY = Cpu(0x00800F12)


@pytest.fixture
def matrix(tmp_path: Path):
    return make_vm(tmp_path, vcpus=(1, 2, 4), cpus=(MILAN, ROME_BY_FMS, SIG_ONLY),
                   host=dict(legacy_vm_types=(True, False), sev_features=(0, 0x20)))


def _problem(vm, spec) -> DiagnosticError:
    with pytest.raises(DiagnosticError) as exc:
        select_variant(vm, spec)
    assert exc.value.exit_code == 2
    return exc.value


def test_single_variant_needs_no_spec(tmp_path: Path):
    vm = make_vm(tmp_path, vcpus=(2,))
    assert select_variant(vm, None).vcpus == 2


def test_full_spec_selects_one(matrix):
    v = select_variant(matrix, "vcpus=4,cpu=EPYC-Milan,legacy-vm-type=off,sev-features=0x20")
    assert (v.vcpus, v.cpu, v.legacy_vm_type, v.sev_features) == (4, MILAN, False, 0x20)


@pytest.mark.parametrize("cpu, expected", [
    ("family 23 model 49 stepping 0", ROME_BY_FMS), ("0x00830f10", ROME_BY_FMS),
    ("signature 0x00800f12", SIG_ONLY), ("0x00a00f11", MILAN)])
def test_cpu_by_label_or_signature(matrix, cpu, expected):
    v = select_variant(matrix, f"vcpus=1,cpu={cpu},legacy-vm-type=true,sev-features=0")
    assert v.cpu == expected and v.legacy_vm_type


def test_ambiguous_lists_the_candidates(matrix):
    problem = _problem(matrix, "vcpus=4,cpu=EPYC-Milan")
    notes = problem.diagnostics[0].notes
    assert "has 4 variants matching" in str(problem)
    assert "--variant vcpus=4,cpu=EPYC-Milan,legacy-vm-type=on,sev-features=0x0" in notes
    assert len(notes) == 4


def test_no_spec_on_a_matrix_lists_every_variant(matrix):
    assert len(_problem(matrix, None).diagnostics[0].notes) == 3 * 3 * 2 * 2


def test_no_match_lists_every_variant(matrix):
    problem = _problem(matrix, "vcpus=3")
    assert "no variant matches" in str(problem)
    assert "variants:" in problem.diagnostics[0].notes


@pytest.mark.parametrize("spec, message", [("vcpus", "KEY=VALUE"), ("cores=2", "unknown key"),
                                           ("vcpus=1,vcpus=2", "given twice"), ("=1", "KEY=VALUE")])
def test_bad_specs(spec, message):
    with pytest.raises(DiagnosticError, match=message):
        parse_spec(spec)


def test_single_variant_vm_narrows_every_dimension(matrix):
    v = select_variant(matrix, "vcpus=2,cpu=EPYC-Milan,legacy-vm-type=on,sev-features=0")
    narrowed = single_variant_vm(matrix, v)
    assert list(narrowed.variants()) == [v]


def test_listed_options_are_ready_to_paste_into_a_shell(matrix):
    """Each note is one shell-quoted --variant option (a family/model/stepping label has
    spaces) that, split as a shell splits it, selects exactly that variant."""
    import shlex
    notes = _problem(matrix, None).diagnostics[0].notes
    assert "--variant 'vcpus=1,cpu=family 23 model 49 stepping 0,legacy-vm-type=on,sev-features=0x0'" in notes
    selected = set()
    for note in notes:
        flag, spec = shlex.split(note)
        assert flag == "--variant"
        selected.add(select_variant(matrix, spec))
    assert selected == set(matrix.variants())
