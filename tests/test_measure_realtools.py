"""Debian bookworm's real OVMF images (package ``ovmf``): footer values of facts §5, disk
boot measures for sev and sev-es, kernel hashes are refused.  Skipped locally when the
package is missing; in CI (CI=true) a missing image fails."""
from __future__ import annotations

import hashlib

import pytest

from measure_support import make_vm, require_real
from sevmanifest.diagnostics import DiagnosticError
from sevmanifest.measure import digest
from sevmanifest.measure.ovmf import inspect_firmware

pytestmark = pytest.mark.realtools

OVMF_DIR = "/usr/share/OVMF"
# file, total_len, R, has ASEV metadata, has TDX entry (facts §5 "Examples")
IMAGES = [
    ("OVMF_CODE_4M.fd", 92, 0x808004, False, False),
    ("OVMF_CODE.fd", 136, 0x80B004, True, True),
]


@pytest.mark.parametrize("name,total_len,reset,asev,tdx", IMAGES)
def test_footer_values(name, total_len, reset, asev, tdx):
    info = inspect_firmware(require_real(f"{OVMF_DIR}/{name}"))
    names = {e.name for e in info.entries}
    assert (info.total_len, info.ap_reset_address) == (total_len, reset)
    assert info.hash_table == (0, 0) and info.secret_area == (0, 0)
    assert info.has_sev_metadata == asev and ("tdx-metadata" in names) == tdx
    if asev:
        data = next(e.data for e in info.entries if e.name == "sev-metadata")
        assert int.from_bytes(data, "little") == 0x52C


def test_vars_image_has_no_table():
    info = inspect_firmware(require_real(f"{OVMF_DIR}/OVMF_VARS.fd"))
    assert info.total_len is None and info.ap_reset_address is None


@pytest.mark.parametrize("name", [i[0] for i in IMAGES])
def test_disk_boot_measures(name):
    path = require_real(f"{OVMF_DIR}/{name}")
    sev = digest.compute(make_vm(path))
    assert sev.variants[0].launch_digest.hex() == hashlib.sha256(path.read_bytes()).hexdigest()
    es = digest.compute(make_vm(path, type="sev-es", vcpus=(1, 4), cpu_models=("EPYC-Milan",),
                                legacy=(True, False)))
    assert len({v.launch_digest for v in es.variants}) == 4


@pytest.mark.parametrize("name", [i[0] for i in IMAGES])
def test_sev_es_init2_matches_sev_snp_measure(name):
    from sevsnpmeasure import guest
    from sevsnpmeasure.sev_mode import SevMode
    from sevsnpmeasure.vcpu_types import CPU_SIGS
    path = require_real(f"{OVMF_DIR}/{name}")
    ours = digest.compute(make_vm(path, type="sev-es", vcpus=(3,), cpu_models=("EPYC-Rome",),
                                  legacy=(False,)))
    theirs = guest.calc_launch_digest(SevMode.SEV_ES, 3, CPU_SIGS["EPYC-Rome"], str(path),
                                      None, None, None, 0)
    assert ours.variants[0].launch_digest == theirs


@pytest.mark.parametrize("name", [i[0] for i in IMAGES])
@pytest.mark.parametrize("mode", ["sev", "sev-es"])
def test_kernel_hashes_refused(tmp_path, name, mode):
    path = require_real(f"{OVMF_DIR}/{name}")
    kernel = tmp_path / "vmlinuz"
    kernel.write_bytes(b"kernel")
    vm = make_vm(path, type=mode, kernel=kernel, cpu_models=("EPYC-Milan",))
    with pytest.raises(DiagnosticError) as exc:
        digest.compute(vm)
    message = exc.value.diagnostics[0].message
    assert str(path) in message and "OvmfPkg/AmdSev/AmdSevX64.dsc" in message
    assert "base 0x0, size 0x0" in message
    assert digest.firmware_diagnostics(vm)[0].message == message
