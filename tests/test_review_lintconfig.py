"""Per-repository lint configuration: lookup, precedence, validation, effect on `sevm check`."""
from __future__ import annotations

from pathlib import Path

import pytest

from review_support import git, run_sevm
from sevmanifest.diagnostics import DiagnosticError, Severity, error, warning
from sevmanifest.review.lintconfig import LintConfig, load_lint_config

IMAGES = Path(__file__).resolve().parent.parent / "manifests" / "images"


def _tree(tmp_path: Path) -> Path:
    """tmp/repo (a git root) / a / b"""
    deep = tmp_path / "repo" / "a" / "b"
    deep.mkdir(parents=True)
    (tmp_path / "repo" / ".git").mkdir()
    return deep


def test_no_configuration(tmp_path):
    config = load_lint_config(_tree(tmp_path))
    diags = [warning("SEVM101", "debug allowed")]
    assert config == LintConfig() and config.apply(diags) == diags


def test_found_by_walking_up_from_a_file(tmp_path):
    deep = _tree(tmp_path)
    (deep.parent / ".sevm.toml").write_text('disable = ["SEVM104"]\n')
    (deep / "web.sevm").write_text("")
    config = load_lint_config(deep / "web.sevm")
    assert config.disabled == {"SEVM104"} and config.source == deep.parent / ".sevm.toml"


def test_pyproject_without_tool_sevm_is_skipped(tmp_path):
    deep = _tree(tmp_path)
    (deep / "pyproject.toml").write_text('[tool.other]\nx = 1\n')
    (deep.parent / "pyproject.toml").write_text('[tool.sevm]\nerror = ["debug-allowed"]\n')
    config = load_lint_config(deep)
    assert config.errors == {"SEVM101"} and config.source == deep.parent / "pyproject.toml"


def test_precedence_nearest_directory_then_sevm_toml(tmp_path):
    deep = _tree(tmp_path)
    root = tmp_path / "repo"
    (root / ".sevm.toml").write_text('disable = ["SEVM101"]\n')
    (deep / "pyproject.toml").write_text('[tool.sevm]\ndisable = ["SEVM102"]\n')
    assert load_lint_config(deep).disabled == {"SEVM102"}  # nearest wins, no merging
    (deep / ".sevm.toml").write_text('disable = ["SEVM103"]\n')
    assert load_lint_config(deep).disabled == {"SEVM103"}  # .sevm.toml before pyproject.toml


def test_walk_stops_at_the_repository_root(tmp_path):
    deep = _tree(tmp_path)
    (tmp_path / ".sevm.toml").write_text('disable = ["SEVM101"]\n')  # outside the repository
    assert load_lint_config(deep) == LintConfig()


@pytest.mark.parametrize("text,words,line", [
    ('disable = ["SEVM104"]\nerror = ["SEVM999"]\n', ["unknown lint rule 'SEVM999'", "'error'"], 2),
    ('disable = ["debug-alowed"]\n', ["unknown lint rule 'debug-alowed'", "SEVM101 (debug-allowed)"], 1),
    ('# comment\ndisabled = ["SEVM101"]\n', ["unknown setting 'disabled'"], 2),
    ('disable = "SEVM101"\n', ["'disable' must be a list"], 1),
    ('disable = ["SEVM101"]\nerror = ["debug-allowed"]\n', ["both disabled and raised"], 2),
    ('disable = []\nerror = = 1\n', ["not valid TOML"], 2),
])
def test_invalid_configuration_names_the_file(tmp_path, text, words, line):
    deep = _tree(tmp_path)
    config_file = tmp_path / "repo" / ".sevm.toml"
    config_file.write_text(text)
    with pytest.raises(DiagnosticError) as caught:
        load_lint_config(deep)
    [d] = caught.value.diagnostics
    assert d.fatal_input and caught.value.exit_code == 2
    assert d.span.file == str(config_file) and d.span.line == line
    for word in words:
        assert word in d.message


def test_apply_disables_and_raises():
    config = LintConfig(Path("/r/.sevm.toml"), frozenset({"SEVM104"}), frozenset({"SEVM101"}))
    diags = [warning("SEVM101", "debug allowed"), warning("SEVM104", "unpinned"),
             warning("SEVM102", "key sharing"), error("vcpus 0")]
    out = config.apply(diags)
    assert [(d.rule, d.severity) for d in out] == [
        ("SEVM101", Severity.ERROR), ("SEVM102", Severity.WARNING), (None, Severity.ERROR)]
    assert "raised to an error by /r/.sevm.toml" in out[0].notes[0]


MANIFEST = f"""\
vm "t" {{
    type sev
    firmware "{IMAGES / 'OVMF.synthetic-generic.fd'}"
    policy {{
        debug allow
        key-sharing deny
    }}
}}
"""


def _check(tmp_path: Path, config: str | None):
    git(tmp_path, "init", "-q")
    (tmp_path / "t.sevm").write_text(MANIFEST)
    if config is not None:
        (tmp_path / ".sevm.toml").write_text(config)
    return run_sevm("check", "t.sevm", cwd=tmp_path)


def test_check_default_warns(tmp_path):
    proc = _check(tmp_path, None)
    assert proc.returncode == 0 and "warning[SEVM101" in proc.stderr


def test_check_raised_to_error(tmp_path):
    proc = _check(tmp_path, 'error = ["debug-allowed"]\n')
    assert proc.returncode == 1 and "error[SEVM101" in proc.stderr


def test_check_disabled(tmp_path):
    proc = _check(tmp_path, 'disable = ["SEVM101", "SEVM104", "SEVM105"]\n')
    assert proc.returncode == 0 and "SEVM10" not in proc.stderr


def test_check_unknown_rule_is_bad_input(tmp_path):
    proc = _check(tmp_path, 'disable = ["SEVM999"]\n')
    assert proc.returncode == 2 and ".sevm.toml:1:" in proc.stderr and "SEVM999" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_path_longer_than_path_max_has_no_configuration(tmp_path):
    """A manifest 2 100 directories deep (beyond PATH_MAX) names nothing that can be opened:
    no configuration, as for a missing directory (was OSError ENAMETOOLONG, exit 3)."""
    _tree(tmp_path)
    deep = tmp_path / "repo" / ("d/" * 2100) / "x.sevm"
    assert load_lint_config(deep) == LintConfig()


@pytest.mark.parametrize("name,text,words,line", [
    # pylint's own `disable` comes first in the file: the error is in [tool.sevm], line 5
    ("pyproject.toml", '[tool.pylint.messages_control]\ndisable = ["C0114"]\n\n[tool.sevm]\n'
     'disable = "SEVM104"\n', ["'disable' must be a list"], 5),
    ("pyproject.toml", '[tool.other]\nrules = ["SEVM999"]\n[tool.sevm]\nerror = ["SEVM999"]\n',
     ["unknown lint rule 'SEVM999'"], 4),
    ("pyproject.toml", '[tool.black]\nerror = 1\n[tool.sevm]\ndisable = ["SEVM101"]\n'
     'error = ["debug-allowed"]\n', ["both disabled and raised"], 5),
    # a key is found where it is assigned, not where a value mentions the word
    ("pyproject.toml", '[tool.sevm]\ndisable = ["SEVM101"]\n"error" = ["SEVM101"]\n',
     ["both disabled and raised"], 3),
    ("pyproject.toml", '[tool.sevm]\ndisable = []\n\n[tool.sevm.extra]\nx = 1\n',
     ["unknown setting 'extra'"], 4),
    (".sevm.toml", 'disable = ["SEVM104"]\n\n[error]\nx = 1\n', ["'error' must be a list"], 3),
    (".sevm.toml", 'disable = []\n\n[table]\ndisable = 1\n', ["unknown setting 'table'"], 3),
    # a dotted key, an inline table: both were located at line 1
    (".sevm.toml", '# lint settings\ndisable = ["SEVM104"]\nerror.rules = ["SEVM101"]\n',
     ["'error' must be a list"], 3),
    ("pyproject.toml", '[tool.poetry]\nname = "x"\n\n[tool]\nsevm = { disable = ["SEVM104"], '
     'error = "SEVM101" }\n', ["'error' must be a list"], 5),
])
def test_configuration_errors_point_at_the_line_in_the_table(tmp_path, name, text, words, line):
    """The first line anywhere in the file that held the word was reported (pylint's
    `disable` at line 2 for sevm's at line 5)."""
    deep = _tree(tmp_path)
    config_file = tmp_path / "repo" / name
    config_file.write_text(text)
    with pytest.raises(DiagnosticError) as caught:
        load_lint_config(deep)
    [d] = caught.value.diagnostics
    assert d.span.file == str(config_file) and d.span.line == line, d.message
    for word in words:
        assert word in d.message


GENERIC_FW = Path(__file__).resolve().parents[1] / "manifests" / "images" / "OVMF.synthetic-generic.fd"


def _many_vms_then_debug_allowed(directory: Path) -> Path:
    """70 vms with three warnings each, then one that allows debugging: more than the 200
    diagnostics a command prints."""
    (directory / ".git").mkdir()
    (directory / "fw.fd").write_bytes(GENERIC_FW.read_bytes())
    text = "".join(f'vm "v{i}" {{\n    firmware "fw.fd"\n}}\n' for i in range(70))
    text += ('vm "last" {\n    type sev-es\n    cpu "EPYC"\n    firmware "fw.fd"\n'
             '    policy {\n        debug allow\n    }\n}\n')
    path = directory / "many.sevm"
    path.write_text(text)
    return path


def test_a_raised_rule_is_applied_before_the_output_is_capped(tmp_path):
    """The front end cut the output to 200 before the configuration raised SEVM101 to an
    error: the debug-allowed vm passed `sevm check` with exit 0."""
    path = _many_vms_then_debug_allowed(tmp_path)
    (tmp_path / ".sevm.toml").write_text('error = ["debug-allowed"]\n')
    done = run_sevm("check", str(path), cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    assert "error[SEVM101 debug-allowed]" in done.stderr
    assert done.stderr.rstrip().endswith("more diagnostics not shown")


def test_disabled_rules_leave_room_for_the_others(tmp_path):
    path = _many_vms_then_debug_allowed(tmp_path)
    (tmp_path / ".sevm.toml").write_text('disable = ["SEVM102", "SEVM104", "SEVM105"]\n')
    done = run_sevm("check", str(path), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "warning[SEVM101 debug-allowed]" in done.stderr and "not shown" not in done.stderr


def test_firmware_errors_are_in_position_order_with_the_warnings(tmp_path):
    (tmp_path / "fw.fd").write_bytes(GENERIC_FW.read_bytes())
    (tmp_path / "k").write_bytes(b"")
    path = tmp_path / "f.sevm"
    path.write_text('vm "f" {\n    firmware "fw.fd"\n    kernel "k"\n    kernel-hashes on\n'
                    '    policy {\n        debug allow\n    }\n}\n')
    done = run_sevm("check", str(path), cwd=tmp_path)
    heads = [line.split(": ")[0] for line in done.stderr.splitlines() if line.startswith(str(path))]
    lines = [tuple(int(x) for x in head.rsplit(":", 2)[1:]) for head in heads]
    assert lines == sorted(lines) and (2, 5) in lines, done.stderr
