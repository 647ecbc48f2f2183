"""Integration files: .pre-commit-hooks.yaml and the CI workflow in docs/review.md."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from review_support import run_sevm
from sevmanifest.cli import build_parser

REPO = Path(__file__).resolve().parent.parent


def _hooks() -> list[dict[str, str]]:
    """.pre-commit-hooks.yaml is a flat list of flat maps; read it without a YAML library."""
    hooks: list[dict[str, str]] = []
    for line in (REPO / ".pre-commit-hooks.yaml").read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = re.fullmatch(r"(- |  )(\w+): (.*)", line)
        assert match, f"unexpected line {line!r}"
        if match.group(1) == "- ":
            hooks.append({})
        hooks[-1][match.group(2)] = match.group(3)
    return hooks


def test_pre_commit_hooks_declared():
    hooks = {h["id"]: h for h in _hooks()}
    assert set(hooks) == {"sevm-check", "sevm-fmt"}
    assert hooks["sevm-check"]["entry"] == "sevm check"
    assert hooks["sevm-fmt"]["entry"] == "sevm fmt --check"
    for hook in hooks.values():
        assert hook["language"] == "python" and hook["name"]
        files = re.compile(hook["files"])
        assert files.search("images/web.sevm") and not files.search("web.sevm.lock")


@pytest.mark.parametrize("hook", ["sevm-check", "sevm-fmt"])
def test_pre_commit_entries_run(tmp_path, hook):
    entry = {h["id"]: h["entry"] for h in _hooks()}[hook]
    program, *args = shlex.split(entry)
    assert program == "sevm"
    manifests = [str(p) for p in sorted((REPO / "manifests").rglob("*.sevm"))]
    assert run_sevm(*args, *manifests).returncode == 0
    messy = tmp_path / "messy.sevm"
    messy.write_text('vm   "x"{\n type sev\n  firmware "nowhere.fd"\n}\n')
    assert run_sevm(*args, str(messy)).returncode != 0  # unformatted / firmware missing


def _workflow() -> str:
    text = (REPO / "docs" / "review.md").read_text()
    match = re.search(r"```yaml\n(# \.github/workflows/sevm-review\.yml\n.*?)```", text, re.S)
    assert match, "workflow example missing from docs/review.md"
    return match.group(1)


def test_workflow_posts_markdown_and_fails_on_weakening():
    workflow = _workflow()
    assert "pull_request" in workflow and "fetch-depth: 0" in workflow
    assert "pull-requests: write" in workflow
    commands = [line.split("run:", 1)[1].strip() for line in workflow.splitlines()
                if "run: sevm diff" in line]
    assert any("--format markdown" in c for c in commands)
    assert commands[-1] == 'sevm diff --git "$BASE" --fail-on weaken'
    parser = build_parser()
    for command in commands:
        argv = shlex.split(command.split("||")[0].split(">")[0].replace("$BASE", "HEAD"))
        args = parser.parse_args(argv[1:])  # every documented invocation parses
        assert args.git == "HEAD"


def test_workflow_is_valid_yaml_when_a_parser_is_available():
    try:
        import yaml
    except ImportError:  # PyYAML is optional; the structural checks above always run
        return
    data = yaml.safe_load(_workflow())
    steps = data["jobs"]["review"]["steps"]
    assert steps[-1]["run"] == 'sevm diff --git "$BASE" --fail-on weaken'
