"""Hand-edited (or forged) locks: `sevm check --locked` never takes one whose reference
values differ from what `sevm lock` writes as current, and never fails with a traceback."""
from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sevmanifest.diagnostics import EXIT_USAGE, exit_code
from sevmanifest.lock.lockfile import check_locked, render_lock

from lock_support import compiled, make_repo, sevm, vm_text

FORGED = "00" * 32


@pytest.fixture
def vms(tmp_path):
    return make_repo(tmp_path)


def locked_text(vms, text: str = None, name: str = "web.sevm"):
    manifest, measurements = compiled(vms, text or vm_text(vcpus="1, 2"), name)
    lock = render_lock(manifest, measurements).decode()
    return manifest, measurements, lock


def unusable(vms, manifest, measurements, text: str, name: str = "web.sevm") -> str:
    (vms / (name + ".lock")).write_text(text)
    diagnostics = check_locked(manifest, measurements)
    assert exit_code(diagnostics) == EXIT_USAGE, [d.message for d in diagnostics]
    (d,) = diagnostics
    assert d.message.startswith(f"{vms}/{name}.lock: unusable lock file: ")
    return d.message


def _first_variant(lock: str) -> tuple[int, int]:
    start = lock.index("[[vms.variants]]")
    return start, lock.index("[[vms.variants]]", start + 1)


# -- bug: a duplicate table silently replaced the one before it -----------------------------

def test_duplicate_variant_with_forged_digest_is_refused(vms):
    manifest, measurements, lock = locked_text(vms)
    start, end = _first_variant(lock)
    digest = lock[start:end].split('launch_digest = "')[1][:64]
    forged = lock[start:end].replace(digest, FORGED)
    message = unusable(vms, manifest, measurements, lock[:start] + forged + lock[start:])
    assert "vm 'web' variant vcpus=1 cpu=EPYC-Milan vmm=qemu legacy-vm-type=on " \
           "sev-features=0x0 appears twice (variants[1])" in message


def test_duplicate_variant_identical_copy_is_refused_too(vms):
    manifest, measurements, lock = locked_text(vms)
    start, end = _first_variant(lock)
    message = unusable(vms, manifest, measurements, lock[:end] + lock[start:end] + lock[end:])
    assert "appears twice" in message


def test_duplicate_vm_with_forged_values_is_refused(vms):
    manifest, measurements, lock = locked_text(vms)
    vm_start = lock.index("[[vms]]")
    real = lock[vm_start:]
    forged = real.replace('policy = "0x00000007"', 'policy = "0x00000000"')
    for digest in {part[:64] for part in real.split('launch_digest = "')[1:]}:
        forged = forged.replace(digest, FORGED)
    assert forged != real
    message = unusable(vms, manifest, measurements, lock[:vm_start] + forged + "\n" + real)
    assert "vm 'web' appears twice (vms[1])" in message


def test_duplicate_variant_exits_2_from_the_cli(vms):
    (vms / "web.sevm").write_text(vm_text(vcpus="1, 2"))
    assert sevm("lock", "web.sevm", cwd=vms).returncode == 0
    lock = (vms / "web.sevm.lock").read_text()
    start, end = _first_variant(lock)
    digest = lock[start:end].split('launch_digest = "')[1][:64]
    (vms / "web.sevm.lock").write_text(lock[:start] + lock[start:end].replace(digest, FORGED)
                                       + lock[start:])
    for extra in ((), ("--no-cache",)):
        result = sevm("check", "--locked", *extra, "web.sevm", cwd=vms)
        assert result.returncode == 2, result.stderr
        assert "appears twice" in result.stderr


# -- every value the comparison reads has its shape checked ---------------------------------

NO_INITRD = vm_text(vcpus="1, 2").replace('    initrd "../images/initrd.synthetic.img"\n', "")


@pytest.mark.parametrize("line, reason", [
    ('artifacts.initrd = "x"', "vm 'web' artifacts.initrd is not a table"),
    ("artifacts.initrd = 3", "vm 'web' artifacts.initrd is not a table"),
    ('artifacts.kernel = "x"', "it is not valid TOML"),  # kernel's table follows
    ('artifacts.extra = { path = "a", size = 1, sha256 = "b" }',
     "vm 'web' artifacts has an unknown role 'extra'"),
    ("comment = 1", "vm 'web' has a key sevm does not write: 'comment'"),
])
def test_artefact_or_vm_value_of_the_wrong_shape_is_unusable(vms, line, reason):
    manifest, measurements, lock = locked_text(vms, NO_INITRD)
    at = lock.index("[vms.artifacts.firmware]")
    message = unusable(vms, manifest, measurements, lock[:at] + line + "\n\n" + lock[at:])
    assert reason in message


@pytest.mark.parametrize("where, line, reason", [
    ("[vms.artifacts.firmware]", None, "artifacts.firmware has a key sevm does not write: 'note'"),
    ("[[vms.variants]]", None, "variants[0] has a key sevm does not write: 'note'"),
    ("[[vms]]", "note = 1\n\n", "the lock has a key sevm does not write: 'note'"),
])
def test_key_sevm_does_not_write_is_unusable(vms, where, line, reason):
    manifest, measurements, lock = locked_text(vms)
    at = lock.index(where)
    if line is None:  # a key in that table
        at = lock.index("\n", at) + 1
        line = "note = 1\n"
    message = unusable(vms, manifest, measurements, lock[:at] + line + lock[at:])
    assert reason in message


def test_unused_role_of_the_wrong_shape_from_the_cli_is_not_an_internal_error(vms):
    (vms / "web.sevm").write_text(NO_INITRD)
    assert sevm("lock", "web.sevm", cwd=vms).returncode == 0
    lock = (vms / "web.sevm.lock").read_text()
    at = lock.index("[vms.artifacts.firmware]")
    (vms / "web.sevm.lock").write_text(lock[:at] + 'artifacts.initrd = "x"\n\n' + lock[at:])
    result = sevm("check", "--locked", "web.sevm", cwd=vms)
    assert result.returncode == 2, result.stderr
    assert "internal error" not in result.stderr
    assert "unusable lock file: vm 'web' artifacts.initrd is not a table" in result.stderr


# -- fuzz: hand edits of the TOML text ------------------------------------------------------

LITERALS = st.sampled_from(['"x"', "1", "0", "true", "false", "1.0", "[]", "{}", '["a"]',
                            "{ path = \"p\" }", '"0x0"', '"qemu"', f'"{FORGED}"', "-1",
                            '"EPYC-Milan"', "4", '"0x00000000"'])
KEYS = st.sampled_from(["name", "type", "policy", "artifacts", "variants", "path", "size",
                        "sha256", "vcpus", "cpu", "cpu_signature", "vmm", "legacy_vm_type",
                        "sev_features", "launch_digest", "launch_digest_base64", "manifest",
                        "lock_version", "artifacts.kernel", "artifacts.initrd", "extra"])
HEADERS = st.sampled_from(["[[vms]]", "[[vms.variants]]", "[vms.artifacts.firmware]",
                           "[vms.artifacts.kernel]", "[vms.artifacts.initrd]",
                           "[vms.artifacts.other]", "[vms.artifacts]"])


@st.composite
def edited(draw, lines: list[str]) -> list[str]:
    lines = list(lines)
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["insert", "header", "delete", "value", "copy"]))
        at = draw(st.integers(0, len(lines)))
        if kind == "insert":
            lines.insert(at, f"{draw(KEYS)} = {draw(LITERALS)}")
        elif kind == "header":
            lines.insert(at, draw(HEADERS))
        elif kind == "delete" and at < len(lines):
            del lines[at]
        elif kind == "value" and at < len(lines) and " = " in lines[at]:
            lines[at] = lines[at].split(" = ")[0] + " = " + draw(LITERALS)
        elif kind == "copy":  # a table (header to the next blank line) copied elsewhere
            headers = [i for i, line in enumerate(lines) if line.startswith("[")]
            if headers:
                start = draw(st.sampled_from(headers))
                end = next((i for i in range(start + 1, len(lines)) if not lines[i]), len(lines))
                lines[at:at] = lines[start:end] + [""]
    return lines


@pytest.fixture(scope="module")
def fuzz_lock(tmp_path_factory):
    vms = make_repo(tmp_path_factory.mktemp("fuzz"))
    manifest, measurements, lock = locked_text(vms, NO_INITRD)
    return vms, manifest, measurements, lock


@settings(max_examples=400, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_edited_lock_text_is_reported_never_crashes(fuzz_lock, data):
    vms, manifest, measurements, lock = fuzz_lock
    lines = data.draw(edited(lock.split("\n")))
    text = "\n".join(lines)
    (vms / "web.sevm.lock").write_text(text)
    diagnostics = check_locked(manifest, measurements)  # never raises
    status = exit_code(diagnostics)
    assert status in (0, 1, 2)
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        assert status == EXIT_USAGE
        return
    if doc.get("vms") != tomllib.loads(lock)["vms"]:  # a reference value changed
        assert status != 0, text


@pytest.mark.parametrize("old, new", [
    ("legacy_vm_type = true", "legacy_vm_type = 1"),
    ("vcpus = 1", "vcpus = 1.0"),
    ("size = ", None),  # the size as a float equal to it
])
def test_value_of_another_toml_type_is_a_change(vms, old, new):
    manifest, measurements, lock = locked_text(vms)
    if new is None:
        size = lock.split("size = ")[1].split("\n")[0]
        old, new = f"size = {size}", f"size = {float(size)!r}"
    (vms / "web.sevm.lock").write_text(lock.replace(old, new, 1))
    diagnostics = check_locked(manifest, measurements)
    assert exit_code(diagnostics) == 1, [d.message for d in diagnostics]


@pytest.mark.parametrize("value", ["true", "1.0"])
def test_lock_version_that_only_python_thinks_is_1_is_refused(vms, value):
    manifest, measurements, lock = locked_text(vms)
    message = unusable(vms, manifest, measurements,
                       lock.replace("lock_version = 1\n", f"lock_version = {value}\n"))
    assert "lock_version is " in message and "this sevm reads version 1" in message


def test_a_file_name_with_a_line_break_cannot_write_toml_into_the_lock(tmp_path):
    """The lock's header comment names the manifest: "evil\\nlock_version = 1\\n#.sevm" ended
    the comment and wrote its own TOML line (the lock no longer parsed)."""
    import shutil
    import subprocess
    import sys
    import tomllib
    repo = Path(__file__).resolve().parents[1] / "manifests"
    shutil.copytree(repo / "images", tmp_path / "images")
    name = "evil\nlock_version = 1\n#.sevm"
    shutil.copy(repo / "sev-es-direct.sevm", tmp_path / name)
    run = [sys.executable, "-m", "sevmanifest"]
    assert subprocess.run(run + ["lock", name], cwd=tmp_path).returncode == 0
    lock = (tmp_path / (name + ".lock")).read_bytes()
    document = tomllib.loads(lock.decode())
    assert document["lock_version"] == 1 and b"\nlock_version = 1\n#.sevm" not in lock
    assert subprocess.run(run + ["check", "--locked", name], cwd=tmp_path).returncode == 0


def test_a_lock_of_another_manifest_is_stale(tmp_path):
    """A copied web.sevm and its lock renamed to web2.sevm(.lock): the lock still says
    manifest = "web.sevm", which `sevm lock web2.sevm` would not write."""
    repo = Path(__file__).resolve().parents[1] / "manifests"
    shutil.copytree(repo / "images", tmp_path / "images")
    shutil.copy(repo / "sev-es-direct.sevm", tmp_path / "web.sevm")
    run = [sys.executable, "-m", "sevmanifest"]
    assert subprocess.run(run + ["lock", "web.sevm"], cwd=tmp_path).returncode == 0
    shutil.copy(tmp_path / "web.sevm", tmp_path / "web2.sevm")
    shutil.copy(tmp_path / "web.sevm.lock", tmp_path / "web2.sevm.lock")
    for extra in ([], ["--no-cache"]):
        done = subprocess.run(run + ["check", "--locked", *extra, "web2.sevm"], cwd=tmp_path,
                              capture_output=True, text=True)
        assert done.returncode == 1, done.stderr
        assert "the lock is for manifest 'web.sevm', not 'web2.sevm'" in done.stderr
