"""`sevm diff --git REV` against real temporary git repositories."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest

from review_support import COMMON, PROJECT, WEB, git, line_of, write_project
from sevmanifest.cli import main
from sevmanifest.frontend import compile_file
from sevmanifest.measure.digest import compute
from sevmanifest.review.gitrev import Revision

DB = """\
vm "db" {
    type sev-es
    firmware "OVMF.fd"
    cpu "EPYC-Rome"
    memory 8GiB
}
"""


def _commit(repo: Path, message: str) -> None:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)


@pytest.fixture
def repo(tmp_path) -> Path:
    """Two commits: the project, then a template change and a db change."""
    root = tmp_path / "repo"
    write_project(root)
    (root / "db.sevm").write_text(DB)
    git(root, "init", "-q")
    _commit(root, "one")
    write_project(root, {COMMON: ("debug deny", "debug allow")})
    (root / "db.sevm").write_text(DB.replace("8GiB", "16GiB"))
    _commit(root, "two")
    return root


def _json(monkeypatch, capsys, cwd: Path, *args: str) -> tuple[int, dict]:
    monkeypatch.chdir(cwd)
    status = main(["diff", "--format", "json", *args])
    out = capsys.readouterr().out
    return status, json.loads(out) if out else {}


def _paths(data: dict) -> list[tuple[str, str]]:
    return [(c["path"], c["kind"]) for c in data["changes"]]


def test_default_files_include_importers_of_changed_templates(repo, monkeypatch, capsys):
    status, data = _json(monkeypatch, capsys, repo, "--git", "HEAD~1", "--fail-on", "weaken")
    assert status == 1
    assert sorted(_paths(data)) == [("vm.db.memory", "neutral"), ("vm.web.policy.debug", "weakens")]
    [debug] = [c for c in data["changes"] if c["path"] == "vm.web.policy.debug"]
    assert debug["file"] == COMMON and debug["line"] == line_of(repo / COMMON, "debug allow")


def test_explicit_file_list(repo, monkeypatch, capsys):
    _, data = _json(monkeypatch, capsys, repo, "--git", "HEAD~1", "db.sevm")
    assert _paths(data) == [("vm.db.memory", "neutral")]


def test_working_tree_against_head(repo, monkeypatch, capsys):
    assert _json(monkeypatch, capsys, repo, "--git", "HEAD")[1]["changes"] == []
    write_project(repo, {COMMON: ("debug deny", "debug allow"), WEB: ("vcpus 1, 2", "vcpus 2")})
    _, data = _json(monkeypatch, capsys, repo, "--git", "HEAD")
    assert _paths(data) == [("vm.web.vcpus", "strengthens")]


def test_imports_resolve_at_the_revision(repo, monkeypatch, capsys):
    # The template file is renamed after REV: the old side must still find common.sevm.
    git(repo, "mv", COMMON, "base.sevm")
    web = repo / WEB
    web.write_text(web.read_text().replace('import "common.sevm"', 'import "base.sevm"'))
    _commit(repo, "three")
    _, data = _json(monkeypatch, capsys, repo, "--git", "HEAD~1", WEB)
    assert data["changes"] == []
    _, data = _json(monkeypatch, capsys, repo, "--git", "HEAD~2", WEB)
    assert _paths(data) == [("vm.web.policy.debug", "weakens")]
    assert data["changes"][0]["file"] == "base.sevm"


def test_added_and_deleted_manifests(repo, monkeypatch, capsys):
    (repo / "db.sevm").unlink()
    (repo / "cache.sevm").write_text(DB.replace('"db"', '"cache"'))  # untracked
    _, data = _json(monkeypatch, capsys, repo, "--git", "HEAD")
    assert sorted(_paths(data)) == [("vm.cache", "weakens"), ("vm.db", "strengthens")]


def test_from_a_subdirectory(repo, monkeypatch, capsys):
    sub = repo / "sub"
    sub.mkdir()
    shutil.move(repo / "db.sevm", sub / "db.sevm")
    _commit(repo, "move")
    (sub / "db.sevm").write_text(DB.replace("8GiB", "1GiB"))
    monkeypatch.chdir(sub)
    assert main(["diff", "--git", "HEAD", "db.sevm"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("--- db.sevm\n") and "vm.db.memory: 16GiB -> 1GiB" in out
    assert main(["diff", "--git", "HEAD", "--format", "github", "db.sevm"]) == 0
    assert "file=sub/db.sevm,line=5," in capsys.readouterr().out  # repository-relative


def test_old_side_errors_name_the_revision(repo, monkeypatch, capsys):
    web = repo / WEB
    broken = web.read_text().replace("vcpus 1, 2", "vcpus 1, two")
    web.write_text(broken)
    _commit(repo, "broken")
    web.write_text(broken.replace("two", "2"))
    monkeypatch.chdir(repo)
    assert main(["diff", "--git", "HEAD", WEB]) == 2
    assert f"HEAD:{WEB}:{line_of(web, 'vcpus')}:" in capsys.readouterr().err


@pytest.mark.parametrize("rev", ["no-such-branch", "HEAD~9"])
def test_unknown_revision(repo, monkeypatch, capsys, rev):
    monkeypatch.chdir(repo)
    assert main(["diff", "--git", rev]) == 2
    assert "unknown git revision" in capsys.readouterr().err


def test_not_a_repository(tmp_path, monkeypatch, capsys):
    write_project(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert main(["diff", "--git", "HEAD", WEB]) == 2
    assert "git" in capsys.readouterr().err


def test_outside_the_repository(repo, tmp_path, monkeypatch, capsys):
    outside = write_project(tmp_path / "elsewhere")
    monkeypatch.chdir(repo)
    assert main(["diff", "--git", "HEAD", str(outside / WEB)]) == 2


# ---- launch digests at the revision -------------------------------------------------------

IMAGES = Path(__file__).resolve().parent.parent / "manifests" / "images"
MEASURED = """\
vm "m" {
    type sev-es
    firmware "OVMF.synthetic-amdsev.fd"
    kernel "vmlinuz.synthetic"
    cmdline "console=ttyS0"
    kernel-hashes on
    vcpus 1, 2
    cpu "EPYC-Milan"
}
"""


def _measured_repo(tmp_path: Path) -> Path:
    root = tmp_path / "measured"
    root.mkdir()
    for name in ("OVMF.synthetic-amdsev.fd", "vmlinuz.synthetic"):
        shutil.copy(IMAGES / name, root / name)
    (root / "m.sevm").write_text(MEASURED)
    git(root, "init", "-q")
    _commit(root, "one")
    (root / "m.sevm").write_text(MEASURED.replace("ttyS0", "ttyS1"))
    return root


def _expected_digests(path: Path) -> dict[str, str]:
    vm = compile_file(str(path)).manifest.vms[0]
    return {v.variant.vcpus: v.launch_digest.hex() for v in compute(vm).variants}


def test_digests_old_and_new_per_variant(tmp_path, monkeypatch, capsys):
    root = _measured_repo(tmp_path)
    new = _expected_digests(root / "m.sevm")
    (tmp_path / "old").mkdir()
    for name in ("OVMF.synthetic-amdsev.fd", "vmlinuz.synthetic"):
        shutil.copy(root / name, tmp_path / "old" / name)
    (tmp_path / "old" / "m.sevm").write_text(MEASURED)
    old = _expected_digests(tmp_path / "old" / "m.sevm")
    _, data = _json(monkeypatch, capsys, root, "--git", "HEAD", "--digests")
    assert _paths(data) == [("vm.m.cmdline", "measurement")]
    [table] = data["digests"]
    assert table["unavailable"] is None
    assert [(r["old"], r["new"]) for r in table["variants"]] == [(old[1], new[1]), (old[2], new[2])]
    assert old[1] != new[1]


def test_digests_unavailable_for_untracked_unpinned_artefacts(tmp_path, monkeypatch, capsys):
    root = _measured_repo(tmp_path)
    (root / ".gitignore").write_text("vmlinuz.synthetic\n")  # a build output
    git(root, "rm", "-q", "--cached", "vmlinuz.synthetic")
    _commit(root, "untrack the kernel")
    (root / "m.sevm").write_text(MEASURED.replace("ttyS0", "ttyS2"))
    status, data = _json(monkeypatch, capsys, root, "--git", "HEAD", "--digests")
    assert status == 0 and _paths(data) == [("vm.m.cmdline", "measurement")]
    note = data["digests"][0]["unavailable"]
    assert note.startswith("digests unavailable for vm m") and "HEAD:vmlinuz.synthetic" in note


# ---- symbolic links and odd names at the revision ------------------------------------------

def _linked_template_repo(tmp_path: Path, directory_link: bool) -> Path:
    """web.sevm imports its template through a link (to the file, or to its directory)."""
    root = write_project(tmp_path / "linked")
    if directory_link:
        (root / "tpl").mkdir()
        shutil.move(root / COMMON, root / "tpl" / COMMON)
        (root / "shared").symlink_to("tpl")
        web = root / WEB
        web.write_text(web.read_text().replace('import "common.sevm"', 'import "shared/common.sevm"'))
        real = root / "tpl" / COMMON
    else:
        shutil.move(root / COMMON, root / "common-v1.sevm")
        (root / COMMON).symlink_to("common-v1.sevm")
        real = root / "common-v1.sevm"
    git(root, "init", "-q")
    _commit(root, "one")
    real.write_text(real.read_text().replace("debug deny", "debug allow"))
    return root


@pytest.mark.parametrize("directory_link", [False, True], ids=["file link", "directory link"])
def test_template_reached_through_a_link(tmp_path, monkeypatch, capsys, directory_link):
    root = _linked_template_repo(tmp_path, directory_link)
    status, data = _json(monkeypatch, capsys, root, "--git", "HEAD", "--fail-on", "weaken")
    assert status == 1 and _paths(data) == [("vm.web.policy.debug", "weakens")]
    status, data = _json(monkeypatch, capsys, root, "--git", "HEAD", WEB)
    assert status == 0 and _paths(data) == [("vm.web.policy.debug", "weakens")]


def test_old_side_links_never_lead_out_of_the_private_directory(tmp_path, monkeypatch, capsys):
    root = write_project(tmp_path / "escape")
    secret = tmp_path / "secret.sevm"  # outside the repository: must never be read
    secret.write_text(PROJECT[COMMON].replace("debug deny", "debug allow"))
    (root / "up.sevm").symlink_to("../secret.sevm")
    (root / "abs.sevm").symlink_to(secret)
    web = root / WEB
    web.write_text(web.read_text().replace('import "common.sevm"', 'import "up.sevm"'))
    git(root, "init", "-q")
    _commit(root, "one")
    web.write_text(web.read_text().replace('import "up.sevm"', 'import "common.sevm"'))
    monkeypatch.chdir(root)
    assert main(["diff", "--git", "HEAD", WEB]) == 2  # the old side's template is missing
    assert "not found" in capsys.readouterr().err
    with Revision(root, "HEAD") as revision:
        assert not os.path.lexists(revision.dir / "up.sevm")
        assert not os.path.lexists(revision.dir / "abs.sevm")


def test_digests_of_a_linked_artefact_hash_the_file(tmp_path, monkeypatch, capsys):
    root = _measured_repo(tmp_path)
    (root / "vmlinuz").symlink_to("vmlinuz.synthetic")
    (root / "m.sevm").write_text(MEASURED.replace('"vmlinuz.synthetic"', '"vmlinuz"'))
    _commit(root, "link")
    old = _expected_digests(root / "m.sevm")
    (root / "m.sevm").write_text(MEASURED.replace('"vmlinuz.synthetic"', '"vmlinuz"')
                                 .replace("ttyS0", "ttyS1"))
    _, data = _json(monkeypatch, capsys, root, "--git", "HEAD", "--digests")
    [table] = data["digests"]
    assert table["unavailable"] is None
    assert [r["old"] for r in table["variants"]] == [old[1], old[2]]


def test_a_file_name_with_a_newline_does_not_upset_the_others(tmp_path, monkeypatch, capsys):
    root = tmp_path / "names"
    root.mkdir()
    (root / "a\nb.sevm").write_text(DB.replace('"db"', '"ab"'))
    (root / "db.sevm").write_text(DB)
    git(root, "init", "-q")
    _commit(root, "one")
    (root / "db.sevm").write_text(DB.replace("8GiB", "4GiB"))
    status, data = _json(monkeypatch, capsys, root, "--git", "HEAD", "db.sevm")
    assert status == 0 and _paths(data) == [("vm.db.memory", "neutral")]
    status, data = _json(monkeypatch, capsys, root, "--git", "HEAD")
    assert status == 0 and _paths(data) == [("vm.db.memory", "neutral")]


def test_moved_template_swapping_an_unpinned_artefact(tmp_path, monkeypatch, capsys):
    # The template's "../images/fw.fd" names another file once the template moves.
    root = tmp_path / "moved"
    for directory in ("templates/v2", "templates/images", "images", "guests"):
        (root / directory).mkdir(parents=True)
    shutil.copy(IMAGES / "OVMF.synthetic-amdsev.fd", root / "images" / "fw.fd")
    shutil.copy(IMAGES / "OVMF.synthetic-generic.fd", root / "templates" / "images" / "fw.fd")
    template = 'template "t" {\n    type sev\n    firmware "../images/fw.fd"\n}\n'
    (root / "templates" / "base.sevm").write_text(template)
    (root / "templates" / "v2" / "base.sevm").write_text(template)
    guest = root / "guests" / "g.sevm"
    guest.write_text('import "../templates/base.sevm"\nvm "g" extends "t" {\n    vcpus 1\n}\n')
    git(root, "init", "-q")
    _commit(root, "one")
    status, data = _json(monkeypatch, capsys, root, "--git", "HEAD", "--fail-on", "measurement")
    assert status == 0 and data["changes"] == []  # the same tree elsewhere: no change
    guest.write_text(guest.read_text().replace("templates/base", "templates/v2/base"))
    status, data = _json(monkeypatch, capsys, root, "--git", "HEAD", "--fail-on", "measurement")
    assert status == 1 and _paths(data) == [("vm.g.firmware", "measurement")]
    assert data["changes"][0]["new"] == "../images/fw.fd (resolves to ../templates/images/fw.fd)"


@pytest.mark.parametrize("pinned", [True, False], ids=["pinned", "unpinned"])
def test_digests_with_artefacts_outside_the_repository(tmp_path, monkeypatch, capsys, pinned):
    images = tmp_path / "images"  # next to the repository, not in it
    images.mkdir()
    text = MEASURED
    for name in ("OVMF.synthetic-amdsev.fd", "vmlinuz.synthetic"):
        shutil.copy(IMAGES / name, images / name)
        pin = f' sha256 "{hashlib.sha256((images / name).read_bytes()).hexdigest()}"'
        text = text.replace(f'"{name}"', f'"../images/{name}"' + (pin if pinned else ""))
    root = tmp_path / "repo"
    root.mkdir()
    (root / "m.sevm").write_text(text)
    git(root, "init", "-q")
    _commit(root, "one")
    old = _expected_digests(root / "m.sevm")
    (root / "m.sevm").write_text(text.replace("ttyS0", "ttyS1"))
    _, data = _json(monkeypatch, capsys, root, "--git", "HEAD", "--digests")
    [table] = data["digests"]
    if pinned:  # the pin proves the working tree's file is the committed one
        assert table["unavailable"] is None
        assert [r["old"] for r in table["variants"]] == [old[1], old[2]]
    else:
        assert table["unavailable"].startswith(
            "digests unavailable for vm m: cannot read firmware ../images/OVMF.synthetic-amdsev.fd"
            " (not read at HEAD: outside the repository and not pinned)")
