"""`sevm measure` end to end on .sevm files: JSON shape of the CLI contract, text table,
measurement options (sevctl vectors M-3/M-4), --dump-vmsa (sevctl's VMSA files), exit
codes, and no secret or traceback on bad input."""
from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from measure_support import FIXTURES, REPO
from sevmanifest.cli import main

NONCE = "wxP6tRHCFrFQWxsuqZA8QA=="  # vectors §4.1
M3_BLOB = "h3auYbWQnVW7EGLWN4Hf9SN0oEYMPU2sK4bLnefWPwvDE/q1EcIWsVBbGy6pkDxA"
M4_BLOB = "/o0nzDKE5XgtVnUZWPhUea/WZYrTKLExR7KCwuMdbActvpWfXTFk21KMZIAAhQny"
C2_LD = "4b47fec6f851487c33714c8a00a832a1b705ad0a7cac4a647388eccfa9f0c570"
C3_LD = "847b5ab6db136ea67dc5a95478ebe7e5ebbe93e9e74bdb1284165f9007a4e367"


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


@pytest.fixture
def c2_manifest(tmp_path):  # vectors C-2 / M-3: SEV, SC + SK/SI, policy 0x03
    return write(tmp_path, "c2.sevm", f'''
vm "c2" {{
    type sev
    firmware "{FIXTURES['SC']}"
    kernel "{FIXTURES['SK']}"
    initrd "{FIXTURES['SI']}"
    cmdline "foo bar baz fake kernel=cmdline"
    kernel-hashes on
    policy {{
        debug deny
        key-sharing deny
    }}
}}
''')


@pytest.fixture
def c3_manifest(tmp_path):  # vectors C-3 / M-4: SEV-ES legacy, SC, 4 × EPYC-Milan, policy 0x05
    return write(tmp_path, "c3.sevm", f'''
vm "c3" {{
    type sev-es
    firmware "{FIXTURES['SC']}"
    vcpus 4
    cpu family 25 model 1 stepping 1
    host {{
        vmm qemu
        qemu-version "7.2"
        legacy-vm-type on
        sev-features 0x0
    }}
    policy {{
        debug deny
    }}
}}
''')


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_json_shape(capsys, c3_manifest):
    code, out, _ = run(capsys, "measure", c3_manifest, "--format", "json")
    assert code == 0
    doc = json.loads(out)
    assert list(doc) == ["vms"] and len(doc["vms"]) == 1
    vm = doc["vms"][0]
    assert list(vm) == ["name", "file", "type", "policy", "artifacts", "variants"]
    assert (vm["name"], vm["file"], vm["type"], vm["policy"]) == \
        ("c3", c3_manifest, "sev-es", "0x00000005")
    assert vm["artifacts"] == {"firmware": {
        "path": str(FIXTURES["SC"]),
        "sha256": "2f6fc6065f4abc131eb4fb2b5090a542636eae84a94c0db0fdd5f405cb372ff5"}}
    assert vm["variants"] == [{
        "vcpus": 4, "cpu": "family 25 model 1 stepping 1", "cpu_signature": "0x00a00f11",
        "vmm": "qemu", "legacy_vm_type": True, "sev_features": "0x0", "launch_digest": C3_LD}]


@pytest.mark.parametrize("manifest,blob_id,argv", [
    ("c2_manifest", M3_BLOB, ["--mnonce", NONCE, "--api-major", "1", "--api-minor", "40",
                              "--build", "40"]),
    ("c3_manifest", M4_BLOB, ["--mnonce", base64.b64decode(M4_BLOB)[32:].hex(),
                              "--api-major", "1", "--api-minor", "49", "--build", "6"]),
])
def test_measurement_vectors(capsys, request, manifest, blob_id, argv):  # M-3, M-4
    path = request.getfixturevalue(manifest)
    code, out, _ = run(capsys, "measure", path, "--format", "json", "--tik",
                       str(FIXTURES["STIK"]), *argv)
    assert code == 0
    variant = json.loads(out)["vms"][0]["variants"][0]
    blob = base64.b64decode(blob_id)
    assert variant["measurement_blob"] == blob_id
    assert variant["measurement"] == blob[:32].hex()
    assert variant["launch_digest"] == (C2_LD if manifest == "c2_manifest" else C3_LD)


def test_text_output(capsys, c2_manifest):
    code, out, _ = run(capsys, "measure", c2_manifest, "--tik", str(FIXTURES["STIK"]),
                       "--mnonce", NONCE, "--api-major", "1", "--api-minor", "40",
                       "--build", "40")
    assert code == 0
    for needle in ("vm c2", "type           sev", "policy         0x00000003",
                   "sha256 af609b31eca2942fc46ed7209c7704771cfc2c91750ff4cb899be39b371b4e48",
                   '"foo bar baz fake kernel=cmdline"', "launch digest (GCTX.LD)", C2_LD,
                   "launch measurement (HMAC)", base64.b64decode(M3_BLOB)[:32].hex(),
                   f"measurement blob (base64)  {M3_BLOB}"):
        assert needle in out
    assert "3569cf61a32a602b87185ac6e0f55913" not in out  # the TIK
    assert re.search(r"\n  vcpus\s+cpu\s+signature\s+vmm\s+profile\s+sev-features", out)


def test_dump_vmsa_refuses_vms_that_would_share_files(capsys, tmp_path):
    """vms "a b" and "a_b" have the same file stem: one's pages replaced the other's."""
    def vm(name: str) -> str:
        return (f'vm "{name}" {{\n    type sev-es\n    firmware "{FIXTURES["SC"]}"\n'
                '    vcpus 2\n    cpu "EPYC"\n}\n')
    manifest = write(tmp_path, "m.sevm", vm("a b") + vm("a_b"))
    out_dir = tmp_path / "pages"
    code, out, err = run(capsys, "measure", manifest, "--dump-vmsa", str(out_dir))
    assert code == 2 and out == ""
    assert "vms 'a b' and 'a_b' would write the same files" in err
    assert not out_dir.exists()
    code, _, err = run(capsys, "measure", manifest, "--vm", "a_b", "--dump-vmsa", str(out_dir))
    assert code == 0 and "wrote 2 VMSA page(s)" in err


def test_dump_vmsa_matches_sevctl(capsys, c3_manifest, tmp_path):  # P-5 through the CLI
    out_dir = tmp_path / "pages"
    code, _, err = run(capsys, "measure", c3_manifest, "--dump-vmsa", str(out_dir))
    assert code == 0 and "wrote 4 VMSA page(s)" in err
    stem = "c3-4vcpu-family_25_model_1_stepping_1-qemu-legacy-sf0"
    assert sorted(p.name for p in out_dir.iterdir()) == [f"{stem}-vcpu{i}.bin" for i in range(4)]
    assert (out_dir / f"{stem}-vcpu0.bin").read_bytes() == FIXTURES["SV0"].read_bytes()
    for i in (1, 2, 3):
        assert (out_dir / f"{stem}-vcpu{i}.bin").read_bytes() == FIXTURES["SV1"].read_bytes()


@pytest.mark.parametrize("argv,needle", [
    (["--tik", "TIK"], "missing --mnonce, --api-major, --api-minor, --build"),
    (["--mnonce", NONCE, "--api-major", "1", "--api-minor", "40", "--build", "40"],
     "missing --tik"),
    (["--tik", "TIK", "--mnonce", "not-a-nonce!", "--api-major", "1", "--api-minor", "40",
      "--build", "40"], "--mnonce must be 16 bytes"),
    (["--tik", "TIK", "--mnonce", NONCE, "--api-major", "256", "--api-minor", "40",
      "--build", "40"], "256 is not in 0..255"),
    (["--vm", "nope"], "no vm named 'nope'"),
])
def test_usage_errors(capsys, c2_manifest, argv, needle):
    argv = [str(FIXTURES["STIK"]) if a == "TIK" else a for a in argv]
    code, out, err = run(capsys, "measure", c2_manifest, *argv)
    assert code == 2 and needle in err and out == ""


@pytest.mark.parametrize("content", [b"SECRET-TIK-CONTENT-0123456789abcdef", b"short",
                                     base64.b64encode(bytes(range(16)))])
def test_bad_tik_file_never_echoed(capsys, c2_manifest, tmp_path, content):
    tik = tmp_path / "tik.bin"
    tik.write_bytes(content)
    code, out, err = run(capsys, "measure", c2_manifest, "--tik", str(tik), "--mnonce", NONCE,
                         "--api-major", "1", "--api-minor", "40", "--build", "40")
    assert code == 2 and f"TIK file {tik} has {len(content)} bytes" in err
    assert content.decode() not in out + err and "Traceback" not in err


def test_kernel_hashes_with_generic_firmware(capsys, tmp_path):  # N-1 through a manifest
    images = REPO / "manifests" / "images"
    path = write(tmp_path, "n1.sevm", f'''
vm "n1" {{
    type sev
    firmware "{images / 'OVMF.synthetic-generic.fd'}"
    kernel "{images / 'vmlinuz.synthetic'}"
    kernel-hashes on
}}
''')
    code, out, err = run(capsys, "measure", path)
    assert code == 1 and out == ""
    assert "OVMF.synthetic-generic.fd" in err and "AmdSevX64" in err


def test_example_manifests_measure(capsys):
    for name in ("sev-disk-boot.sevm", "sev-es-direct.sevm"):
        code, out, _ = run(capsys, "measure", str(REPO / "manifests" / name), "--format", "json",
                           "--no-cache")
        assert code == 0
        for vm in json.loads(out)["vms"]:
            assert vm["variants"] and all(re.fullmatch(r"[0-9a-f]{64}", v["launch_digest"])
                                          for v in vm["variants"])


def test_subprocess_exit_codes(c2_manifest, tmp_path):
    ok = subprocess.run([sys.executable, "-m", "sevmanifest", "measure", c2_manifest],
                        capture_output=True, text=True)
    assert ok.returncode == 0 and C2_LD in ok.stdout
    missing = write(tmp_path, "missing.sevm", 'vm "m" {\n    firmware "/nonexistent/OVMF.fd"\n}\n')
    bad = subprocess.run([sys.executable, "-m", "sevmanifest", "measure", missing],
                         capture_output=True, text=True)
    assert bad.returncode in (1, 2) and "/nonexistent/OVMF.fd" in bad.stderr
    assert "Traceback" not in bad.stderr and "internal error" not in bad.stderr


def _measure_m3(c2_manifest, tik_arg, **kwargs):
    return subprocess.run([sys.executable, "-m", "sevmanifest", "measure", c2_manifest,
                           "--format", "json", "--tik", tik_arg, "--mnonce", NONCE,
                           "--api-major", "1", "--api-minor", "40", "--build", "40"],
                          capture_output=True, **kwargs)


def test_tik_from_standard_input_and_a_pipe_as_verify_takes_it(c2_manifest):
    """`--tik -` was "cannot read TIK file -: no such file", `--tik <(cat tik.bin)` "not a
    regular file (a FIFO)", while sevm verify takes both.  The TIK is never shown."""
    tik = FIXTURES["STIK"].read_bytes()
    stdin = _measure_m3(c2_manifest, "-", input=tik)
    read, write = os.pipe()
    os.write(write, tik)
    os.close(write)
    try:
        pipe = _measure_m3(c2_manifest, f"/dev/fd/{read}", pass_fds=(read,))
    finally:
        os.close(read)
    for run in (stdin, pipe):
        assert run.returncode == 0, run.stderr
        assert json.loads(run.stdout)["vms"][0]["variants"][0]["measurement_blob"] == M3_BLOB
        for form in (tik, tik.hex().encode(), base64.b64encode(tik)):
            assert form not in run.stdout + run.stderr


def test_tik_errors_match_verify(c2_manifest, tmp_path):
    short = _measure_m3(c2_manifest, "-", input=b"short")
    assert short.returncode == 2
    assert b"TIK file <stdin> has 5 bytes" in short.stderr and b"no such file" not in short.stderr
    hex_text = tmp_path / "tik.hex"
    hex_text.write_text(FIXTURES["STIK"].read_bytes().hex() + "\n")
    run = _measure_m3(c2_manifest, str(hex_text))
    assert run.returncode == 2 and b"holds hex text" in run.stderr
    assert FIXTURES["STIK"].read_bytes().hex().encode() not in run.stderr + run.stdout
    both = subprocess.run([sys.executable, "-m", "sevmanifest", "measure", "-", "--tik", "-",
                           "--mnonce", NONCE, "--api-major", "1", "--api-minor", "40",
                           "--build", "40"], capture_output=True, text=True,
                          input=Path(c2_manifest).read_text())
    assert both.returncode == 2
    assert "only one input can be '-' (standard input): FILE, --tik" in both.stderr
