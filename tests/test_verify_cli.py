"""`sevm verify` end to end: .sevm manifests for vectors M-2..M-4, the reported values as
options or as QMP reply files (both query-sev shapes, bare or wrapped), standard input,
text and JSON output, exit codes, and that the TIK never appears in any output."""
from __future__ import annotations

import base64
import io
import json
import sys
from pathlib import Path

import pytest

from sevmanifest import cli
from verify_support import (M_VECTORS, STIK, TIK_HEX, dumps, manifest_text, qmp_return,
                            query_sev_flat, query_sev_union, sevm)

TIK = bytes.fromhex(TIK_HEX)
# Every form in which the key could leak into output.
TIK_FORMS = [TIK_HEX, TIK_HEX.upper(), base64.b64encode(TIK).decode(),
             base64.b64encode(TIK).decode().rstrip("="), TIK.decode("latin-1"),
             TIK.decode("utf-8", "replace"), " ".join(f"{b:02x}" for b in TIK)]


@pytest.fixture(scope="module")
def manifests(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("manifests")
    out = {}
    for vid in ("M-2", "M-3", "M-4"):
        out[vid] = d / f"{vid}.sevm"
        out[vid].write_text(manifest_text(vid))
    return out


def run(argv: list[str], capsys, monkeypatch, stdin: bytes = b"") -> tuple[int, str, str]:
    """cli.main in-process; asserts the TIK shows up in neither stream."""
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
    rc = cli.main(["verify", *argv])
    out, err = capsys.readouterr()
    for form in TIK_FORMS:
        assert form not in out and form not in err
    assert "Traceback" not in err and "internal error" not in err
    return rc, out, err


def options(vid: str, *, policy=True, blob=None) -> list[str]:
    v = M_VECTORS[vid]
    argv = ["--tik", str(STIK), "--measurement", blob or v.blob_b64,
            "--api-major", str(v.api_major), "--api-minor", str(v.api_minor),
            "--build", str(v.build)]
    return argv + (["--policy", hex(v.policy)] if policy else [])


def qmp_files(tmp_path: Path, vid: str, *, union: bool, wrap: bool, **overrides) -> list[str]:
    v = M_VECTORS[vid]
    make = query_sev_union if union else query_sev_flat
    info = make(**{"api-major": v.api_major, "api-minor": v.api_minor, "build-id": v.build,
                   "policy": v.policy, **overrides})
    measure = {"data": v.blob_b64}
    qs, lm = tmp_path / "query-sev.json", tmp_path / "launch-measure.json"
    qs.write_text(dumps(qmp_return(info) if wrap else info))
    lm.write_text(dumps(qmp_return(measure) if wrap else measure))
    return ["--tik", str(STIK), "--query-sev", str(qs), "--launch-measure", str(lm)]


@pytest.mark.parametrize("vid", ["M-2", "M-3", "M-4"])
@pytest.mark.parametrize("policy", [True, False])
def test_vectors_by_options(manifests, capsys, monkeypatch, vid, policy):
    rc, out, _ = run([str(manifests[vid]), *options(vid, policy=policy)], capsys, monkeypatch)
    assert rc == 0 and out.startswith("OK: the launch measurement matches")


@pytest.mark.parametrize("vid", ["M-2", "M-3", "M-4"])
def test_vectors_hex_blob_and_split_mnonce(manifests, capsys, monkeypatch, vid):
    blob = M_VECTORS[vid].blob
    assert run([str(manifests[vid]), *options(vid, blob=blob.hex())], capsys, monkeypatch)[0] == 0
    split = options(vid, blob=base64.b64encode(blob[:32]).decode()) + ["--mnonce", blob[32:].hex()]
    assert run([str(manifests[vid]), *split], capsys, monkeypatch)[0] == 0


@pytest.mark.parametrize("vid", ["M-2", "M-3", "M-4"])
@pytest.mark.parametrize("union", [False, True])
@pytest.mark.parametrize("wrap", [False, True])
def test_vectors_by_qmp_files(manifests, tmp_path, capsys, monkeypatch, vid, union, wrap):
    argv = [str(manifests[vid]), *qmp_files(tmp_path, vid, union=union, wrap=wrap)]
    rc, out, _ = run(argv + ["--format", "json"], capsys, monkeypatch)
    doc = json.loads(out)
    assert rc == 0 and doc["result"] == "match" and doc["ok"] is True
    assert doc["reported"]["policy"] == f"0x{M_VECTORS[vid].policy:08x}"
    (match,) = doc["matched"]
    assert match["vm"] == {"M-2": "m2", "M-3": "m3", "M-4": "m4"}[vid]


def test_m4_json_names_the_variant(manifests, capsys, monkeypatch):
    rc, out, _ = run([str(manifests["M-4"]), *options("M-4"), "--format", "json"], capsys, monkeypatch)
    (match,) = json.loads(out)["matched"]
    assert rc == 0 and match == {
        "vm": "m4", "file": str(manifests["M-4"]), "type": "sev-es", "policy": "0x00000005",
        "vcpus": 4, "cpu": "EPYC-Milan", "cpu_signature": "0x00a00f11", "vmm": "qemu",
        "legacy_vm_type": True, "sev_features": "0x0",
        "launch_digest": "847b5ab6db136ea67dc5a95478ebe7e5ebbe93e9e74bdb1284165f9007a4e367"}


@pytest.mark.parametrize("which", ["tik", "query-sev", "launch-measure"])
def test_each_input_from_stdin(manifests, tmp_path, capsys, monkeypatch, which):
    argv = qmp_files(tmp_path, "M-4", union=True, wrap=True)
    i = argv.index(f"--{which}") + 1
    data = Path(argv[i]).read_bytes()
    argv[i] = "-"
    rc, out, _ = run([str(manifests["M-4"]), *argv], capsys, monkeypatch, stdin=data)
    assert rc == 0, out


def test_mismatch_exits_1_with_hints(manifests, capsys, monkeypatch):
    rc, out, _ = run([str(manifests["M-3"]), *options("M-2")], capsys, monkeypatch)
    assert rc == 1 and out.startswith("MISMATCH") and "check:" in out
    assert "-append must be exactly \"foo bar baz fake kernel=cmdline\"" in out


def test_weaker_policy_from_query_sev_exits_1(manifests, tmp_path, capsys, monkeypatch):
    # The manifest says 0x5; the host reports 0x4 (debugging allowed).  The blob was made with
    # 0x5 so the HMAC fails too, but the policy message must say what is weaker.
    argv = [str(manifests["M-4"]), *qmp_files(tmp_path, "M-4", union=False, wrap=True, policy=4)]
    rc, out, _ = run(argv, capsys, monkeypatch)
    assert rc == 1
    assert "bit 0 NODBG (debug deny): manifest set, host clear (weaker)" in out


def test_vm_selection(manifests, tmp_path, capsys, monkeypatch):
    both = tmp_path / "both.sevm"
    both.write_text(manifest_text("M-2") + "\n" + manifest_text("M-3"))
    assert run([str(both), *options("M-3")], capsys, monkeypatch)[0] == 0
    assert run([str(both), "--vm", "m3", *options("M-3")], capsys, monkeypatch)[0] == 0
    assert run([str(both), "--vm", "m2", *options("M-3")], capsys, monkeypatch)[0] == 1
    rc, _, err = run([str(both), "--vm", "nope", *options("M-3")], capsys, monkeypatch)
    assert rc == 2 and "no vm named 'nope'" in err


def _usage_error(argv, capsys, monkeypatch, needle: str, stdin: bytes = b"") -> None:
    rc, out, err = run(argv, capsys, monkeypatch, stdin=stdin)
    assert rc == 2 and needle in err, err
    assert out == ""


def test_usage_errors(manifests, tmp_path, capsys, monkeypatch):
    m = str(manifests["M-4"])
    base = options("M-4")
    qmp = qmp_files(tmp_path, "M-4", union=True, wrap=False)
    cases = [
        ([m, *base[2:]], "--tik"),  # no --tik at all
        ([m, *base[:2], "--api-major", "1", "--api-minor", "49", "--build", "6"], "exactly one of"),
        ([m, *base, "--launch-measure", qmp[5]], "exactly one of"),
        ([m, *base[:-2 - 2]], "--build"),  # --build missing
        ([m, *qmp, "--api-major", "1"], "--query-sev already gives"),
        ([m, *qmp[:4], "--mnonce", "00" * 16, *qmp[4:]], "--mnonce goes with --measurement"),
        ([m, *options("M-4", blob=M_VECTORS["M-4"].blob[:32].hex())], "32 bytes"),
        ([m, *options("M-4", blob="zz" * 48)], "48-byte blob"),
        ([m, *base, "--api-major", "256"], "not in 0..255"),
        ([m, *base[:-2], "--policy", "banana"], "not an integer"),
        ([m, "--tik", "-", "--query-sev", "-", *qmp[4:]], "only one input can be '-'"),
        # the manifest and a reply file both from standard input: the reply was read from
        # what the manifest had left of it (nothing)
        (["-", *qmp[:4], "--launch-measure", "-", *qmp[6:]],
         "only one input can be '-' (standard input): FILE, --launch-measure"),
        (["-", "--tik", "-", *base[2:]], "only one input can be '-' (standard input): FILE, --tik"),
        ([m, "--tik", str(tmp_path / "missing.bin"), *base[2:]], "cannot read TIK file"),
        ([m, "--tik", str(tmp_path), *base[2:]], "cannot read TIK file"),
        ([str(tmp_path / "nope.sevm"), *base], "nope.sevm"),
    ]
    for argv, needle in cases:
        _usage_error(argv, capsys, monkeypatch, needle)


@pytest.mark.parametrize("content, needle", [
    (bytes.fromhex("aa" * 32), "TEK||TIK pair"),
    (TIK_HEX.encode(), "holds hex text"),
    (TIK_HEX.upper().encode() + b"\n", "holds hex text"),
    (base64.b64encode(TIK), "holds base64 text"),
    (base64.b64encode(TIK) + b"\n", "holds base64 text"),
    (b"", "has 0 bytes"),
    (TIK[:15], "has 15 bytes"),
    (b"\0" * 100_000, "larger than 4096 bytes"),
])
def test_bad_tik_files_never_echo_content(manifests, tmp_path, capsys, monkeypatch, content, needle):
    tik = tmp_path / "tik.bin"
    tik.write_bytes(content)
    _usage_error([str(manifests["M-4"]), "--tik", str(tik), *options("M-4")[2:]], capsys,
                 monkeypatch, needle)


@pytest.mark.parametrize("which, content, needle", [
    ("query-sev", b"{", "malformed JSON"),
    ("query-sev", b'{"return": {"sev-type": "sev-snp", "enabled": true}}', "SEV-SNP"),
    ("query-sev", dumps(query_sev_flat(state="launch-update")).encode(), "launch-update"),
    ("query-sev", dumps(query_sev_flat(enabled=False)).encode(), "not launched with SEV"),
    ("launch-measure", b'{"data": "AAAA"}', "decodes to 3 bytes"),
    ("launch-measure", b"\xff\xfe", "not UTF-8"),
    ("launch-measure", b"", "empty"),
])
def test_bad_qmp_files(manifests, tmp_path, capsys, monkeypatch, which, content, needle):
    argv = qmp_files(tmp_path, "M-4", union=True, wrap=True)
    path = Path(argv[argv.index(f"--{which}") + 1])
    path.write_bytes(content)
    rc, out, err = run([str(manifests["M-4"]), *argv], capsys, monkeypatch)
    assert rc == 2 and needle in err and str(path) in err, err


def test_oversized_qmp_from_stdin_is_bounded(manifests, tmp_path, capsys, monkeypatch):
    argv = qmp_files(tmp_path, "M-4", union=True, wrap=True)
    argv[argv.index("--query-sev") + 1] = "-"
    rc, _, err = run([str(manifests["M-4"]), *argv], capsys, monkeypatch,
                     stdin=b" " * (2 << 20))
    assert rc == 2 and "<stdin>" in err and "1048576 bytes" in err


def test_real_processes_never_print_the_tik(manifests, tmp_path):
    """The console entry point itself, on success, mismatch and bad input: bytes checked."""
    forms = [f.encode("utf-8", "surrogateescape") for f in TIK_FORMS] + [TIK]
    runs = [
        (0, sevm("verify", str(manifests["M-4"]), *options("M-4"))),
        (0, sevm("verify", str(manifests["M-3"]), *qmp_files(tmp_path, "M-3", union=True, wrap=True),
                 "--format", "json")),
        (1, sevm("verify", str(manifests["M-3"]), *options("M-2"), "--format", "json")),
        (0, sevm("verify", str(manifests["M-2"]), "--tik", "-", *options("M-2")[2:], stdin=TIK)),
        (2, sevm("verify", str(manifests["M-2"]), "--tik", "-", *options("M-2")[2:],
                 stdin=TIK_HEX.encode())),
    ]
    for expected, proc in runs:
        assert proc.returncode == expected, proc.stderr.decode()
        for form in forms:
            assert form not in proc.stdout and form not in proc.stderr
        assert b"Traceback" not in proc.stderr
