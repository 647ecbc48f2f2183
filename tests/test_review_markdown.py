"""Markdown (pull-request comment) output: snapshot tests and escaping.

The snapshots under tests/snapshots/ were reviewed by hand.  After an intended change of
the template, regenerate with SEVM_UPDATE_SNAPSHOTS=1 and review the diff before committing.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from review_support import COMMON, WEB, make_vm, manifest, change, write_project
from sevmanifest.cli import main
from sevmanifest.model import Policy
from sevmanifest.review.diff import diff_manifests
from sevmanifest.review.digests import DigestRow, VmDigests
from sevmanifest.review.markdown import cell, code, render_markdown
from sevmanifest.review.report import FileDiff, Report

SNAPSHOTS = Path(__file__).resolve().parent / "snapshots"


def _compare(name: str, text: str) -> None:
    path = SNAPSHOTS / name
    if os.environ.get("SEVM_UPDATE_SNAPSHOTS"):
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8")


EDITS = {
    COMMON: ("debug deny", "debug allow"),
    WEB: ("vcpus 1, 2\n    cpu \"EPYC-Milan\"\n    memory 2GiB\n",
          "vcpus 2\n    cpu \"EPYC-Milan\"\n    memory 4GiB\n    machine \"pc-q35-9.2\"\n"),
}


def test_markdown_snapshot_end_to_end(tmp_path, monkeypatch, capsys):
    write_project(tmp_path / "old")
    new = write_project(tmp_path / "new", EDITS)
    web = new / WEB
    web.write_text(web.read_text().replace('"console=ttyS0"', '"console=ttyS0 | quiet"'))
    monkeypatch.chdir(tmp_path)
    status = main(["diff", f"old/{WEB}", f"new/{WEB}", "--format", "markdown",
                   "--fail-on", "weaken"])
    assert status == 1
    _compare("diff.md", capsys.readouterr().out)


def test_markdown_snapshot_no_change(tmp_path, monkeypatch, capsys):
    write_project(tmp_path / "old")
    write_project(tmp_path / "new")
    monkeypatch.chdir(tmp_path)
    assert main(["diff", f"old/{WEB}", f"new/{WEB}", "--format", "markdown"]) == 0
    _compare("diff-no-change.md", capsys.readouterr().out)


def test_markdown_snapshot_digests():
    base = make_vm()
    new = change(base, cmdline=b"console=ttyS1", vcpus=(1, 2, 4))
    result = diff_manifests(manifest(base), manifest(new, make_vm("db", policy=0x5)))
    rows = (DigestRow("vcpus=1 cpu=EPYC-Milan", "1" * 64, "4" * 64),
            DigestRow("vcpus=2 cpu=EPYC-Milan", "2" * 64, "2" * 64),
            DigestRow("vcpus=4 cpu=EPYC-Milan", None, "5" * 64))
    digests = (VmDigests("web", rows),
               VmDigests("db", unavailable="digests unavailable for vm db: cannot read firmware "
                         "HEAD:OVMF.fd: no such file"))
    report = Report((FileDiff("web.sevm", result, digests),), None, True)
    _compare("diff-digests.md", render_markdown(report))


@pytest.mark.parametrize("text,expected", [
    ("a|b", "a\\|b"), ("x_y*z", "x\\_y\\*z"), ("<b>", "\\<b\\>"), ("l1\nl2", "l1 l2"),
])
def test_cell_escaping(text, expected):
    assert cell(text) == expected


@pytest.mark.parametrize("text,expected", [
    ("plain", "`plain`"), ("a|b", "`a\\|b`"), ("a`b", "``a`b``"), ("`x", "`` `x ``"),
])
def test_code_spans(text, expected):
    assert code(text) == expected
