"""A plain, non-editable install works from any directory: the grammar and the Jinja
templates are inside the package.

The package is built as a wheel from a copy of the checkout (pip's isolated build
fetches setuptools from PyPI), installed into a fresh virtual environment (dependencies
come from the base interpreter's site-packages where present, else from PyPI), and the
installed ``sevm`` checks, formats and renders copies of the example manifests with the
working directory outside the checkout.  About 15-30 s.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from frontend_support import REPO


def _run(*args, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


def _isolation() -> list[str]:
    """Build offline with this interpreter's setuptools when it can make wheels (setuptools
    70.1+, or the wheel package); otherwise pip fetches setuptools into an isolated build."""
    import importlib.util
    try:
        import setuptools
        version = tuple(int(x) for x in setuptools.__version__.split(".")[:2])
    except (ImportError, ValueError):
        return []
    if version >= (70, 1) or importlib.util.find_spec("wheel") is not None:
        return ["--no-build-isolation"]
    return []


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A virtual environment with sevmanifest installed from a wheel; returns its bin/."""
    base = tmp_path_factory.mktemp("packaging")
    source = base / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in ("src", "grammar", "templates"):
        shutil.copytree(REPO / name, source / name, ignore=ignore)
    built = _run(sys.executable, "-m", "pip", "wheel", "--no-deps", *_isolation(), "-w",
                 base / "dist", source, cwd=base)
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = (base / "dist").glob("sevmanifest-*.whl")
    venv = base / "venv"
    made = _run(sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", venv, cwd=base)
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    install = _run(sys.executable, "-m", "pip", "--python", python, "install", "--no-input", wheel,
                   cwd=base)
    assert install.returncode == 0, install.stdout + install.stderr
    return venv / "bin"


def test_the_installed_package_is_the_one_imported(installed, tmp_path):
    probe = _run(installed / "python", "-c",
                 "import sevmanifest, sevmanifest.resources as r; "
                 "print(sevmanifest.__file__); print(r.grammar_path()); print(r.templates_dir())",
                 cwd=tmp_path)
    assert probe.returncode == 0, probe.stderr
    module, grammar, templates = (Path(line) for line in probe.stdout.splitlines())
    venv = installed.parent
    for path in (module, grammar, templates):
        assert venv in path.parents, f"{path} is not inside {venv}"
    assert grammar.is_file() and grammar.name == "sevm.lark"
    shipped = sorted(p.name for p in (REPO / "templates").glob("*.j2"))
    assert shipped and sorted(p.name for p in templates.glob("*.j2")) == shipped


def test_installed_sevm_checks_and_formats_examples_outside_the_checkout(installed, tmp_path):
    shutil.copytree(REPO / "manifests", tmp_path / "manifests")
    examples = sorted(str(p.relative_to(tmp_path)) for p in (tmp_path / "manifests").rglob("*.sevm"))
    assert len(examples) >= 4
    sevm = installed / "sevm"
    version = _run(sevm, "--version", cwd=tmp_path)
    assert version.returncode == 0 and "0.1.0" in version.stdout + version.stderr
    check = _run(sevm, "check", *examples, cwd=tmp_path)
    assert check.returncode == 0, check.stderr
    fmt = _run(sevm, "fmt", "--check", *examples, cwd=tmp_path)
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr
    broken = tmp_path / "broken.sevm"
    broken.write_text('vm "a" {\n    memory four\n}\n')
    bad = _run(sevm, "check", "broken.sevm", cwd=tmp_path)
    assert bad.returncode == 2 and "broken.sevm:2:12: error: expected a size" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_installed_templates_render(installed, tmp_path):
    shutil.copytree(REPO / "manifests", tmp_path / "manifests")
    rendered = _run(installed / "sevm", "render", "libvirt", "manifests/sev-disk-boot.sevm",
                    cwd=tmp_path)
    assert rendered.returncode == 0, rendered.stderr
    assert "<domain" in rendered.stdout and "Traceback" not in rendered.stderr
