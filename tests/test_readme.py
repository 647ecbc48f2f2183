"""The README's two set-up commands, and CI running the same test command."""
from __future__ import annotations

import re


def _commands(repo):
    text = (repo / "README.md").read_text(encoding="utf-8")
    setup = text.split("## Set-up", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.*?)\n```", setup, re.DOTALL)


def test_readme_has_exactly_two_setup_commands(repo):
    commands = _commands(repo)
    assert len(commands) == 2
    assert all("\n" not in c for c in commands), "each set-up command is one line to paste"
    install_and_run, install_and_test = commands
    assert "sevm measure manifests/" in install_and_run
    assert "pytest" in install_and_test


def test_ci_runs_the_readme_test_command(repo):
    ci_lines = (repo / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert _commands(repo)[1] in ci_lines


def test_readme_example_manifest_exists(repo):
    path = re.search(r"sevm measure (\S+)", _commands(repo)[0]).group(1)
    assert (repo / path).is_file()
