"""The TIK (and the TEK of a libvirt/sev-tool TEK‖TIK pair) never leaves its file.

Every command that takes a TIK or runs on the same manifest is run with a distinctive key,
and every byte it prints and every file it writes (outputs, lock, VMSA dumps, the digest
cache) is searched for the key in raw, hex (both cases), spaced hex, base64 and base64url
form (hostile_support.secret_forms).  The measurement comparison is constant-time:
hmac.compare_digest is called once for every variant, whatever matches.
"""
from __future__ import annotations

import base64
import hmac
import json
import os
import pickle
from pathlib import Path

import pytest

from hostile_support import AMDSEV_FW, leaks, run_cli
from measure_support import make_vm
from sevmanifest.measure import digest, launch
from sevmanifest.measure.verify import Reported, Tik, verify

TIK = bytes.fromhex("d15c") + b"TIK!s3cr3t" + bytes.fromhex("7f00ee42")
TEK = bytes.fromhex("7e4b") + b"TEK?h1dd3n" + bytes.fromhex("c0ffee99")
assert len(TIK) == len(TEK) == 16
NONCE = bytes(range(0x30, 0x40))
HOST = ["--api-major", "1", "--api-minor", "55", "--build", "21"]


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    """A manifest with two vms (SEV with kernel hashes; SEV-ES with a 2 × 2 matrix), key
    files, and a private digest cache, all under ``tmp_path``; cwd is ``tmp_path``."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    (tmp_path / "vmlinuz").write_bytes(b"kernel image")
    (tmp_path / "vm.sevm").write_text(f'''
vm "plain" {{
  type sev
  firmware "{AMDSEV_FW}"
  kernel "vmlinuz"
  cmdline "console=ttyS0"
  kernel-hashes on
}}
vm "es" {{
  type sev-es
  firmware "{AMDSEV_FW}"
  vcpus 1, 4
  cpu "EPYC-Milan", "EPYC-Rome"
}}
''')
    keys = {"tik.bin": TIK, "tek-tik.bin": TEK + TIK, "tik-plus-one.bin": TIK + b"\n",
            "tik.hex": TIK.hex().encode() + b"\n", "tik.b64": base64.b64encode(TIK) + b"\n",
            "tik-short.bin": TIK[:15]}
    for name, content in keys.items():
        (tmp_path / name).write_bytes(content)
    return tmp_path, set(keys)


def blobs(directory: Path) -> dict[str, str]:
    run = run_cli(["measure", str(directory / "vm.sevm"), "--format", "json", "--tik",
                   str(directory / "tik.bin"), "--mnonce", NONCE.hex(), *HOST]).clean()
    assert run.rc == 0, run.err
    return {vm["name"]: vm["variants"][-1]["measurement_blob"]
            for vm in json.loads(run.out)["vms"]}


def command_lines(d: Path, blob: str) -> list[tuple[list[str], tuple[int, ...]]]:
    """(argv, accepted exit codes): every command near a TIK, succeeding and failing."""
    m = str(d / "vm.sevm")
    wrong = base64.b64encode(bytes(range(100, 148))).decode()
    measure = ["measure", m, "--mnonce", base64.b64encode(NONCE).decode(), *HOST]
    verify_ = ["verify", m, "--measurement", blob, *HOST]
    out = []
    for fmt in ("text", "json"):
        out += [([*measure, "--tik", str(d / "tik.bin"), "--format", fmt], (0,)),
                ([*verify_, "--tik", str(d / "tik.bin"), "--format", fmt], (0,)),
                ([*verify_, "--tik", str(d / "tik.bin"), "--policy", "0x7", "--format", fmt], (1,)),
                (["verify", m, "--measurement", wrong, *HOST, "--tik", str(d / "tik.bin"),
                  "--format", fmt], (1,))]
    for bad in ("tek-tik.bin", "tik-plus-one.bin", "tik.hex", "tik.b64", "tik-short.bin"):
        out += [([*measure, "--tik", str(d / bad)], (2,)),
                ([*verify_, "--tik", str(d / bad)], (2,))]
    for pasted in (TIK.hex(), TIK.hex().upper(), base64.b64encode(TIK).decode()):
        out += [([*measure, "--tik", pasted], (2,)), ([*verify_, "--tik", pasted], (2,))]
    out += [([*measure[:2], "--tik", str(d / "tik.bin")], (2,)),  # incomplete options
            (["verify", m, "--tik", str(d / "tik.bin")], (2,)),
            (["verify", m, "--tik", "-", "--measurement", blob, *HOST], (0,)),  # TIK on stdin
            ([*measure, "--tik", str(d / "tik.bin"), "--dump-vmsa", str(d / "vmsa")], (0,)),
            (["lock", "--jobs", "1", m], (0,)), (["check", "--locked", "--jobs", "1", m], (0,)),
            (["export", m, "-o", str(d / "export.json")], (0,)),
            (["export", m, "--format", "toml", "-o", str(d / "export.toml")], (0,)),
            (["export", m, "--format", "simple-kbs", "--vm", "plain"], (0,)),
            (["render", "qemu", m, "--vm", "es", "--variant", "vcpus=4,cpu=EPYC-Rome",
              "-o", str(d / "run.sh")], (0,)),
            (["render", "libvirt", m, "--vm", "es", "--variant", "vcpus=1,cpu=EPYC-Milan",
              "-o", str(d / "domain.xml")], (0,)),
            (["explain", m], (0,)), (["explain", m, "--format", "json"], (0,)),
            (["diff", m, m, "--digests"], (0,)), (["fmt", "--check", m], (0, 1)),
            (["check", m], (0,))]
    return out


def test_no_command_shows_the_tik(workspace):
    d, key_files = workspace
    blob = blobs(d)["es"]
    seen = []
    for argv, codes in command_lines(d, blob):
        run = run_cli(argv, stdin=TIK if "-" in argv else b"").clean()
        assert run.rc in codes, (argv, run.rc, run.err)
        streams = run.out + run.err.encode("utf-8", "surrogateescape")
        for secret, name in ((TIK, "TIK"), (TEK, "TEK")):
            assert not leaks(streams, secret), (argv, name, leaks(streams, secret))
        seen.append(argv[0])
    written = [p for p in d.rglob("*") if p.is_file() and p.name not in key_files]
    assert {p.name for p in written} >= {"vm.sevm.lock", "export.json", "export.toml", "run.sh",
                                         "domain.xml"}
    assert any(p.suffix == ".bin" for p in (d / "vmsa").iterdir())
    assert any("cache" in p.parts for p in written), "the digest cache was scanned too"
    for path in written:
        data = path.read_bytes()
        for secret, name in ((TIK, "TIK"), (TEK, "TEK")):
            assert not leaks(data, secret), (path, name, leaks(data, secret))
    assert set(seen) >= {"measure", "verify", "lock", "check", "export", "render", "explain",
                         "diff", "fmt"}


def test_pasted_key_is_refused_without_echo(workspace):
    d, _ = workspace
    run = run_cli(["verify", str(d / "vm.sevm"), "--tik", TIK.hex(), "--measurement",
                   "00" * 48, *HOST]).clean()
    assert run.rc == 2 and "looks like a key itself, so it is not shown" in run.err
    # a missing file whose name is no key is named as usual
    run = run_cli(["verify", str(d / "vm.sevm"), "--tik", "nope.bin", "--measurement",
                   "00" * 48, *HOST]).clean()
    assert run.rc == 2 and "nope.bin" in run.err


def test_tik_object_never_shows_the_key():
    key = Tik(TIK)
    for text in (repr(key), str(key), f"{key}", repr([key])):
        assert not leaks(text.encode(), TIK)
    with pytest.raises(TypeError):
        pickle.dumps(key)
    with pytest.raises(ValueError) as exc:
        Tik(TIK + b"!")
    assert not leaks(str(exc.value).encode(), TIK)
    with pytest.raises(Exception) as exc:
        launch.launch_measurement(bytes(32), TIK[:15], api_major=1, api_minor=0, build=0,
                                  policy=1, mnonce=NONCE)
    assert not leaks(str(exc.value).encode(), TIK)


# ---- constant-time comparison ------------------------------------------------------------

@pytest.fixture
def counted_compare(monkeypatch):
    calls = []
    real = hmac.compare_digest

    def compare(a, b):
        calls.append((bytes(a), bytes(b)))
        return real(a, b)
    monkeypatch.setattr(hmac, "compare_digest", compare)
    return calls


@pytest.mark.parametrize("where", ["first", "last", "none"])
def test_every_variant_is_compared_with_compare_digest(counted_compare, where):
    vm = make_vm(AMDSEV_FW, type="sev-es", cpu_models=("EPYC-Milan", "EPYC-Rome"),
                 vcpus=(1, 2, 8), legacy=(True, False))
    measured = digest.compute(vm)
    variants = measured.variants
    assert len(variants) == 12
    target = {"first": variants[0], "last": variants[-1], "none": None}[where]
    if target is None:
        measurement = bytes(32)
    else:
        measurement = launch.launch_measurement(target.launch_digest, TIK, api_major=1,
                                                api_minor=55, build=21, policy=vm.policy.value,
                                                mnonce=NONCE)
    reported = Reported(measurement, NONCE, 1, 55, 21, vm.policy.value)
    result = verify([measured], reported, TIK)
    assert result.variants_checked == 12 and len(counted_compare) == 12
    assert all(b == measurement and len(a) == 32 for a, b in counted_compare)
    assert len(result.matches) == (0 if target is None else 1)


def test_the_cli_compares_every_variant(workspace, counted_compare):
    d, _ = workspace
    blob = blobs(d)["es"]
    run = run_cli(["verify", str(d / "vm.sevm"), "--tik", str(d / "tik.bin"), "--measurement",
                   blob, *HOST, "--format", "json"]).clean()
    assert run.rc == 0, run.err
    checked = json.loads(run.out)["variants_checked"]
    assert checked == 1 + 4 and len(counted_compare) == checked


def test_no_other_comparison_of_measurements():
    """The verifier compares MACs in one place only, and never with ``==``."""
    source = Path(os.path.dirname(launch.__file__), "verify.py").read_text()
    assert source.count("hmac.compare_digest(") == 1
    for forbidden in ("== reported.measurement", "reported.measurement ==", "expected =="):
        assert forbidden not in source


# ---- a file that is no manifest is not quoted ---------------------------------------------

SECRET_LINE = "CI_DEPLOY_TOKEN=ghp_s3cr3tT0k3nV4lue"


@pytest.mark.parametrize("how", ["import", "import of a link", "named link", "fmt"])
def test_a_file_that_is_no_manifest_is_not_quoted(tmp_path, monkeypatch, how):
    """`import "/proc/self/environ"`, `import "../.env"` or a planted `evil.sevm -> .env`
    in a repository that CI checks: the syntax error would quote the file's first line into
    the log.  A file that fails at its first token and is no .sevm file is reported as not a
    manifest, at the import that names it, with none of its text."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text(f"{SECRET_LINE}\nOTHER=1\n")
    (tmp_path / "env.sevm").symlink_to(tmp_path / ".env")
    if how == "import":
        (tmp_path / "m.sevm").write_text('import ".env"\nvm "a" {\n    type sev\n}\n')
        argv, located = ["check", "m.sevm"], "m.sevm:1:1: error: .env is not a manifest"
    elif how == "import of a link":
        (tmp_path / "m.sevm").write_text('import "env.sevm"\n')
        argv, located = ["check", "m.sevm"], "m.sevm:1:1: error: env.sevm (a link to "
    elif how == "named link":
        argv, located = ["check", "env.sevm"], "error: env.sevm (a link to "
    else:
        argv, located = ["fmt", "--check", ".env"], "error: .env is not a manifest"
    run = run_cli(argv).clean()
    assert run.rc == 2
    assert located in run.err and "none of its text is shown" in run.err, run.err
    assert "CI_DEPLOY_TOKEN" not in run.err + run.out.decode()
    assert "s3cr3t" not in run.err + run.out.decode()


def test_a_sevm_file_with_a_wrong_first_word_is_still_quoted(tmp_path, monkeypatch):
    """The manifest's own text is no secret: a typo at its start is shown as usual."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.sevm").write_text('tempalte "x" {\n}\n')
    run = run_cli(["check", "m.sevm"]).clean()
    assert run.rc == 2 and "m.sevm:1:1:" in run.err and 'tempalte "x" {' in run.err
