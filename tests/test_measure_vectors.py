"""Known-answer vectors of /work/shared/vectors/README.md (ids as there), reproduced by the
measurement engine.  Expected values are copied from that document, never from our output."""
from __future__ import annotations

import base64
import hashlib

import pytest

from measure_support import FIXTURES, cpu, make_vm
from sevmanifest import cpus
from sevmanifest.measure import digest, hashtable, launch, vmsa
from sevmanifest.measure.ovmf import inspect_firmware
from sevmanifest.model import Vmm

# §2 fixture digests (alias, sha256) — guards against a changed fixture copy
FIXTURE_SHA256 = {
    "A": "8f765dfabc127fc0a938a0744a3103ec15864d7d794eb4c398aa976b6d6ab16c",
    "X": "b4c021e085fb83ceffe6571a3d357b4a98773c83c474e47f76c876708fe316da",
    "HA": "ddadd162c1fef131beba0c0dc1e7870f630aa3c0a6e96b998fc562fe32069c66",
    "HX": "af9d6c674b1ff04937084c98c99ca106b25c37b2c9541ac313e6e0c54426314f",
    "H0": "b184e06e012366fd7b33ebfb361a515d05f00d354dca07b36abbc1e1e177ced5",
    "SC": "2f6fc6065f4abc131eb4fb2b5090a542636eae84a94c0db0fdd5f405cb372ff5",
    "SV0": "f8b52f775502472e5797d2674d9de21f6abc05dc05e9bc49cbb7b6a13688d5e7",
    "SV1": "bcee5cb289f72882da17abd8dca5e8a7e9f8e2033e7ad96b4db0ab1a383a6487",
    "SK": "af609b31eca2942fc46ed7209c7704771cfc2c91750ff4cb899be39b371b4e48",
    "SI": "76fa1a19324945ce9b1ee17f211ca5b55cbb74d0368eecce53932a1fddc8e8cb",
    "STIK": "4d5c214dd494f9f1fe6cfd1f499deebeb52fc9cff095962f32f0581c83fcecf8",
}


@pytest.mark.parametrize("alias", sorted(FIXTURE_SHA256))
def test_fixture_digest(alias):
    assert hashlib.sha256(FIXTURES[alias].read_bytes()).hexdigest() == FIXTURE_SHA256[alias]


# §2.1: alias, total_len, R, hash RV (base, size), secret (base, size), ASEV offset or None, TDX
FOOTERS = [
    ("A", 136, 0x0080B004, (0x810C00, 0x400), (0x810000, 0xC00), 0x554, "d0090000"),
    ("X", 136, 0x0080B004, (0, 0), (0, 0), 0x548, "c0090000"),
    ("HA", 136, 0x0080B004, (0x80FC00, 0x400), (0x80F000, 0xC00), 0x558, "70080000"),
    ("HX", 136, 0x0080B004, (0, 0), (0, 0), 0x54C, "60080000"),
    ("H0", 136, 0x0080B004, (0x80FC00, 0x400), (0x80F000, 0xC00), 0x1AC, "50080000"),
    ("SC", 114, 0x0080B004, (0x80CC00, 0x400), (0x80C000, 0xC00), None, "70070000"),
]


@pytest.mark.parametrize("alias,total,reset,hashes,secret,asev,tdx", FOOTERS)
def test_footer_table(alias, total, reset, hashes, secret, asev, tdx):  # vectors §2.1
    info = inspect_firmware(FIXTURES[alias])
    data = {e.name: e.data for e in info.entries}
    assert (info.total_len, info.ap_reset_address, info.hash_table, info.secret_area) == \
        (total, reset, hashes, secret)
    assert info.has_sev_metadata == (asev is not None)
    if asev is not None:
        assert int.from_bytes(data["sev-metadata"], "little") == asev
    assert data["tdx-metadata"].hex() == tdx
    assert info.size == 4096 and info.gpa == 0xFFFFF000 and not info.reset_block_legacy


# §3: id, mode, profile, fixture, kernel, initrd, cmdline, vcpus, cpu, vmm, expected LD.
# kernel/initrd: "empty" = 0-byte file, None = absent, else a fixture alias.
LAUNCH_DIGESTS = [
    ("U-SEV-1", "sev", "any", "A", "empty", "empty", "console=ttyS0 loglevel=7", 1, None, "qemu",
     "82a3ee5d537c3620628270c292ae30cb40c3c878666a7890ee7ef2a08fb535ff"),
    ("U-SEV-2", "sev", "any", "A", "empty", None, None, 1, None, "qemu",
     "77f613d7bbcdf12a73782ea9e88b0172aeda50d1a54201cb903594ff52846898"),
    ("U-SEV-3", "sev", "any", "X", None, None, None, 1, None, "qemu",
     "b4c021e085fb83ceffe6571a3d357b4a98773c83c474e47f76c876708fe316da"),
    ("U-ES-1", "sev-es", "INIT2", "A", "empty", "empty", "", 1, "EPYC-v4", "qemu",
     "13810ae661ea11e2bb205621f582fee268f0367c8f97bc297b7fadef3e12002c"),
    ("U-ES-2", "sev-es", "INIT2", "A", "empty", "empty", "", 4, "EPYC-v4", "qemu",
     "0dccbcaba8e90b261bd0d2e1863a2f9da714768b7b2a19363cd6ae35aa90de91"),
    ("H-SEV-1", "sev", "any", "HA", "empty", "empty", "console=ttyS0 loglevel=7", 1, None, "qemu",
     "f0d92a1fda00249e008820bd40def6abbed2ee65fea8a8bc47e532863ca0cc6a"),
    ("H-SEV-2", "sev", "any", "HA", "empty", None, None, 1, None, "qemu",
     "7332f6ef294f79919b46302e4541900a2dfc96714e2b7b4b5ccdc1899b78a195"),
    ("H-SEV-3", "sev", "any", "HX", None, None, None, 1, None, "qemu",
     "af9d6c674b1ff04937084c98c99ca106b25c37b2c9541ac313e6e0c54426314f"),
    ("H-ES-1", "sev-es", "legacy", "HA", "empty", "empty", "", 1, "EPYC-v4", "qemu",
     "2e91d54814445ad178180af09f881efe4079fc54bfddd0ec1179ecd3cdbdf772"),
    ("H-ES-2", "sev-es", "legacy", "HA", "empty", "empty", "", 4, "EPYC-v4", "qemu",
     "c05d37600072dc5ff24bafc49410f0369ba3a37c130a7bb7055ac6878be300f7"),
    ("H-ES-3", "sev-es", "INIT2", "HA", "empty", "empty", "", 1, "EPYC-v4", "qemu",
     "c9c378be09902e3d5927a93b73ed383620eea5387e1d16416807cfc949b7f834"),
    ("H-ES-4", "sev-es", "INIT2", "HA", "empty", "empty", "", 4, "EPYC-v4", "qemu",
     "2806971adf7a9d5bdef59d007f0200af685dec6721781fe1d6efa9236b3361f1"),
    ("D-1", "sev", "any", "A", None, None, None, 1, None, "qemu",
     "8f765dfabc127fc0a938a0744a3103ec15864d7d794eb4c398aa976b6d6ab16c"),
    ("D-2", "sev", "any", "A", "empty", "empty", "", 1, None, "qemu",
     "77f613d7bbcdf12a73782ea9e88b0172aeda50d1a54201cb903594ff52846898"),
    ("D-3", "sev-es", "INIT2", "A", None, None, None, 1, "EPYC-v4", "qemu",
     "f9f0a62976a07b5d58302d0a0b86df8c0c35115054dda5a38764527a4636fa1f"),
    ("D-4", "sev-es", "INIT2", "A", None, None, None, 2, "EPYC-v4", "qemu",
     "8502e4764318e5cd06edca228f7cfd6089a4f93f20e07e6e3b6498b3f5d69248"),
    ("D-5", "sev-es", "INIT2", "A", None, None, None, 1, "EPYC-Milan", "qemu",
     "89e8cec273c50fc063ea10c9ba9dffb2fc059daa6ad2d566f251908e386decef"),
    ("D-6", "sev-es", "INIT2", "A", None, None, None, 1, "EPYC-Rome", "qemu",
     "577e4d720e758acda2f43da8df06f58dc11e699c64a0eb93308adc3c0cb09a2a"),
    ("D-7", "sev-es", "INIT2", "A", "empty", None, "console=ttyS0 loglevel=7", 4, "EPYC-Genoa",
     "qemu", "f08d31a0fee46e37c6db5f713be527d02e7a01a0285a7a3c9d373b10e1faeb74"),
    ("D-8", "sev-es", "INIT2", "A", None, None, None, 1, 0, "qemu",
     "976cae5a3366fa6187964dd7a0f9ab295e9ffbc2245dc2d5098ef9a47db6a193"),
    ("D-9", "sev-es", "INIT2", "X", None, None, None, 1, "EPYC-v4", "qemu",
     "24527f02fdadc908f11d7cf099d3570e49304a93bda7687e256b5a183876a648"),
    ("D-10", "sev-es", "any", "A", None, None, None, 1, None, "ec2",
     "094dea737f23fb99b3987af4647c41e807b5476e4fade93ebf0eca3994cd34de"),
    ("D-11", "sev-es", "any", "A", None, None, None, 2, None, "gce",
     "cb20af4a70271f40c1f5063b4aa06de902fce276f82fcb310c40fae746aee44f"),
    ("C-1", "sev", "any", "SC", None, None, None, 1, None, "qemu",
     "2f6fc6065f4abc131eb4fb2b5090a542636eae84a94c0db0fdd5f405cb372ff5"),
    ("C-2", "sev", "any", "SC", "SK", "SI", "foo bar baz fake kernel=cmdline", 1, None, "qemu",
     "4b47fec6f851487c33714c8a00a832a1b705ad0a7cac4a647388eccfa9f0c570"),
    ("C-3", "sev-es", "legacy", "SC", None, None, None, 4, "EPYC-Milan", "qemu",
     "847b5ab6db136ea67dc5a95478ebe7e5ebbe93e9e74bdb1284165f9007a4e367"),
]
LD_BY_ID = {row[0]: row for row in LAUNCH_DIGESTS}


def vector_vm(row, empty_file):
    _, mode, profile, fixture, kernel, initrd, cmdline, vcpus, cpu_spec, vmm, _ = row

    def path(spec):
        return None if spec is None else empty_file if spec == "empty" else FIXTURES[spec]
    return make_vm(FIXTURES[fixture], type=mode, kernel=path(kernel), initrd=path(initrd),
                   cmdline=cmdline, vcpus=(vcpus,), vmms=(vmm,),
                   cpu_models=() if cpu_spec is None else (cpu_spec,),
                   legacy=(profile != "INIT2",))


@pytest.fixture
def empty_file(tmp_path):
    path = tmp_path / "empty"
    path.write_bytes(b"")
    return path


@pytest.mark.parametrize("row", LAUNCH_DIGESTS, ids=[r[0] for r in LAUNCH_DIGESTS])
def test_launch_digest(row, empty_file):  # vectors §3
    result = digest.compute(vector_vm(row, empty_file))
    assert [v.launch_digest.hex() for v in result.variants] == [row[-1]]


def test_launch_digest_matrix_in_one_run(empty_file):
    """H-ES-1..4 as one matrix (profiles × vCPU counts): same values as one by one."""
    vm = make_vm(FIXTURES["HA"], type="sev-es", kernel=empty_file, initrd=empty_file, cmdline="",
                 vcpus=(1, 4), cpu_models=("EPYC-v4",), legacy=(True, False))
    got = {(v.variant.legacy_vm_type, v.variant.vcpus): v.launch_digest.hex()
           for v in digest.compute(vm).variants}
    assert got == {(True, 1): LD_BY_ID["H-ES-1"][-1], (True, 4): LD_BY_ID["H-ES-2"][-1],
                   (False, 1): LD_BY_ID["H-ES-3"][-1], (False, 4): LD_BY_ID["H-ES-4"][-1]}


def test_c3_is_fixture_concatenation():  # C-3 = SHA-256(SC ‖ SV0 ‖ SV1 ‖ SV1 ‖ SV1)
    parts = [FIXTURES[a].read_bytes() for a in ("SC", "SV0", "SV1", "SV1", "SV1")]
    assert hashlib.sha256(b"".join(parts)).hexdigest() == LD_BY_ID["C-3"][-1]


# §4.1: id, api major, minor, build, policy, LD (hex or a §3 id), mnonce b64 (None: from blob)
NONCE = "wxP6tRHCFrFQWxsuqZA8QA=="
MEASUREMENTS = [
    ("M-1", 1, 40, 40, 0x03, "c64bd101fc9a4a2ce0a27c408d9200911f139a895469b04a40a6fa2890830d23",
     NONCE, "lswbxWxI9gckya16JQvdFtpYmNO4b+3inAPpqsgoBI7DE/q1EcIWsVBbGy6pkDxA"),
    ("M-2", 1, 40, 40, 0x03, "C-1", NONCE,
     "oMDewIouJSpbpNRHj7Mk3p08H2dPZQdsZMU14qIymBnDE/q1EcIWsVBbGy6pkDxA"),
    ("M-3", 1, 40, 40, 0x03, "C-2", NONCE,
     "h3auYbWQnVW7EGLWN4Hf9SN0oEYMPU2sK4bLnefWPwvDE/q1EcIWsVBbGy6pkDxA"),
    ("M-4", 1, 49, 6, 0x05, "C-3", None,
     "/o0nzDKE5XgtVnUZWPhUea/WZYrTKLExR7KCwuMdbActvpWfXTFk21KMZIAAhQny"),
]


@pytest.mark.parametrize("row", MEASUREMENTS, ids=[r[0] for r in MEASUREMENTS])
def test_launch_measurement(row, empty_file):  # vectors §4.1
    _, major, minor, build, policy, ld_spec, nonce_b64, blob_b64 = row
    if ld_spec in LD_BY_ID:  # computed by the engine from the fixtures, not copied
        ld = digest.compute(vector_vm(LD_BY_ID[ld_spec], empty_file)).variants[0].launch_digest
    else:
        ld = bytes.fromhex(ld_spec)
    expected = base64.b64decode(blob_b64)
    mnonce = base64.b64decode(nonce_b64) if nonce_b64 else expected[32:]
    tik = launch.read_tik(FIXTURES["STIK"])
    assert tik.hex() == "3569cf61a32a602b87185ac6e0f55913"
    measure = launch.launch_measurement(ld, tik, api_major=major, api_minor=minor, build=build,
                                        policy=policy, mnonce=mnonce)
    assert launch.measurement_blob(measure, mnonce) == expected


def test_mnonce_accepts_hex_and_base64():  # M-1..M-3 nonce in both encodings
    hexed = "c313fab511c216b1505b1b2ea9903c40"
    assert launch.decode_bytes_arg(NONCE, 16, "mnonce").hex() == hexed
    assert launch.decode_bytes_arg(hexed, 16, "mnonce").hex() == hexed
    assert launch.decode_bytes_arg("0x" + hexed.upper(), 16, "mnonce").hex() == hexed


# §5 hash-table inputs
def test_component_hashes():
    assert hashtable.cmdline_sha256(None).hex() == \
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"  # K-1
    assert hashtable.cmdline_sha256(b"").hex() == \
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"  # K-1
    assert hashtable.cmdline_sha256(b"console=ttyS0 loglevel=7").hex() == \
        "321c8eec6a77bad179511397f913a083067ad8cb737bb260aacbfe8df70fc50a"  # K-2
    assert hashtable.EMPTY_SHA256.hex() == \
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"  # K-3


TABLES = {
    "T-1": (b"", b"", b"console=ttyS0 loglevel=7",
            "06d63894224fc94cb479a793d411fd21a800d82dd09720bd944caa78e7714d36ab2a3200321c8eec6a77"
            "bad179511397f913a083067ad8cb737bb260aacbfe8df70fc50a31f7ba442f3ad74b9af141e2916978"
            "1d3200e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b8553794e74dd2ab"
            "7f42b835d5b172d2045b3200e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b78"
            "52b8550000000000000000"),
    "T-2": ("SK", "SI", b"foo bar baz fake kernel=cmdline",
            "06d63894224fc94cb479a793d411fd21a800d82dd09720bd944caa78e7714d36ab2a32003e8a0b8c83c8"
            "eb5a34c6d0b9db3f36ae619b384db601c643af6456106a43dffd31f7ba442f3ad74b9af141e2916978"
            "1d320076fa1a19324945ce9b1ee17f211ca5b55cbb74d0368eecce53932a1fddc8e8cb3794e74dd2ab"
            "7f42b835d5b172d2045b3200af609b31eca2942fc46ed7209c7704771cfc2c91750ff4cb899be39b37"
            "1b4e480000000000000000"),
}


@pytest.mark.parametrize("vector", sorted(TABLES))
def test_hash_table(vector):  # vectors §5 T-1, T-2
    kernel, initrd, cmdline, expected = TABLES[vector]
    data = {k: FIXTURES[k].read_bytes() if isinstance(k, str) else k for k in (kernel, initrd)}
    table = hashtable.padded_table(hashlib.sha256(data[kernel]).digest(),
                                   hashlib.sha256(data[initrd]).digest(),
                                   hashtable.cmdline_sha256(cmdline))
    assert table.hex() == expected and len(table) == 176


# §5 single pages (R = 0x0080b004): id, vmm, legacy, signature, sev_features, BSP, AP
PAGES = [
    ("P-1", Vmm.QEMU, False, 0x00800F12, 0,
     "8295cef559b57130391d59605890ef93297720b48bef9a8c3c985b9c3fb0788c",
     "7ff723da33f39dedbe8336bb697e0a2f76471690074d5902e1a8177cd5312c95"),
    ("P-2", Vmm.EC2, True, None, 0,
     "68f77db70cd037d5048ca3d14facee1da86e4185d8c5670d354e3cd5fe957ed8",
     "42f5f188f830ef836d79fdf9a776c78d2c467f9dc312ae2eaa902a2dc1aa9bbc"),
    ("P-3", Vmm.GCE, True, None, 0,
     "97a01e73978dc93d41aab8371d448e620bc039be764b8209cb618f56fef86906",
     "87472bb391954a445c49a9db4a694488622e302e00f73d8cd05f9fe9400ea422"),
    ("P-4", Vmm.QEMU, True, 0x00800F12, 0,
     "30a76bd1aa5adf81f02832d38c21e31b073cf0663dd2337455db2a3c210666af",
     "3d1cd8f98c320cb09405dae226a8bd6e18d8bfc0b4babda508c10963a6f3df19"),
    ("P-5", Vmm.QEMU, True, 0x00A00F11, 0,
     FIXTURE_SHA256["SV0"], FIXTURE_SHA256["SV1"]),
    # P-7 is derived and unconfirmed (facts §6.1); kept so that a change is noticed
    ("P-7", Vmm.QEMU, True, 0x00800F12, 0x20,
     "d962600beba696acdadf5dd4a231d05c185c0eae6e88793035a2ab6494b821c1", None),
]


@pytest.mark.parametrize("row", PAGES, ids=[r[0] for r in PAGES])
def test_vmsa_page(row):  # vectors §5 P-*
    _, vmm, legacy, signature, features, bsp_hash, ap_hash = row
    bsp, ap = vmsa.pages(vmsa.VmsaProfile(vmm, 0x0080B004, signature, legacy, features))
    assert len(bsp) == len(ap) == 4096
    assert hashlib.sha256(bsp).hexdigest() == bsp_hash
    if ap_hash:
        assert hashlib.sha256(ap).hexdigest() == ap_hash


def test_vmsa_p5_byte_for_byte():  # P-5: sevctl's vmsa0.bin / vmsa1.bin
    bsp, ap = vmsa.pages(vmsa.VmsaProfile(Vmm.QEMU, 0x0080B004, 0x00A00F11, True, 0))
    assert bsp == FIXTURES["SV0"].read_bytes()
    assert ap == FIXTURES["SV1"].read_bytes()


def test_vmsa_p6_legacy_snp_bsp():  # P-6: the VMSA layout of sev-snp-measure's first commit
    v0 = (FIXTURES["A"].parent / "history/8a85fa4/vmsa_cpu0.bin").read_bytes()
    bsp = vmsa.page(vmsa.VmsaProfile(Vmm.QEMU, 0x0080B004, 0x00800F12, True, 0x1), bsp=True)
    assert bsp == v0


def test_vmsa_documented_bytes():  # facts §6 "Bytes" and the BSP/AP difference
    bsp, ap = vmsa.pages(vmsa.VmsaProfile(Vmm.QEMU, 0x0080B004, 0x00800F12, False, 0))
    assert bsp[0x00:0x10].hex() == "00009300ffff00000000000000000000"
    assert bsp[0x10:0x20].hex() == "00f09b00ffff00000000ffff00000000"
    assert bsp[0x70:0x78].hex() == "00008200ffff0000" and bsp[0x90:0x98].hex() == "00008b00ffff0000"
    area = vmsa.SevEsSaveArea.from_buffer_copy(ap)
    assert (area.cs.base, area.rip) == (0x00800000, 0xB004)
    diff = [i for i in range(4096) if bsp[i] != ap[i]]
    assert all(0x18 <= i < 0x20 or 0x178 <= i < 0x180 for i in diff)


# CPU signatures: up@8f2b337 tests/test_vcpu_types.py and facts §6.2
@pytest.mark.parametrize("fms,sig", [((14, 1, 2), 0x0E12), ((23, 1, 2), 0x00800F12),
                                     ((23, 49, 0), 0x00830F10), ((25, 1, 1), 0x00A00F11),
                                     ((25, 17, 0), 0x00A10F10), ((26, 0, 0), 0x00B00F00)])
def test_cpu_signature(fms, sig):
    assert cpus.signature(*fms) == sig


def test_cpu_signature_reaches_rdx(empty_file):
    vm = vector_vm(LD_BY_ID["D-5"], empty_file)
    result = digest.compute(vm).variants[0]
    assert result.cpu_signature == 0x00A00F11 == cpu("EPYC-Milan").signature
    assert vmsa.SevEsSaveArea.from_buffer_copy(digest.vmsa_pages(result)[0]).rdx == 0x00A00F11
