"""A command run from a working directory that was removed meanwhile (a shell left in a
deleted build directory, a CI step after a cleanup): relative paths of every kind (the
manifest's, artefacts beside a manifest on stdin, outputs, the compile cache's key) need it,
so sevm says so once, cleanly, as git does, instead of failing in the middle of a command.
Help and the version still answer."""
from __future__ import annotations

import os

import pytest

from hostile_support import run_sevm
from lock_support import make_repo, vm_text


@pytest.fixture
def manifest(tmp_path):
    vms = make_repo(tmp_path)
    path = vms / "web.sevm"
    path.write_text(vm_text())
    return path


def _run(argv, tmp_path, stdin=b""):
    gone = tmp_path / "gone"
    gone.mkdir()

    def enter_and_remove():
        os.chdir(gone)
        os.rmdir(gone)
    env = {"XDG_CACHE_HOME": str(tmp_path / "xdg"), "PYTHONDONTWRITEBYTECODE": "1"}
    return run_sevm(argv, preexec=enter_and_remove, env=env, stdin=stdin)


COMMANDS = [["check"], ["check", "--locked"], ["measure"], ["lock"], ["render", "qemu"],
            ["export"], ["explain"], ["fmt", "--check"], ["diff", "--git", "HEAD"]]


CASES = [(argv, where) for argv in COMMANDS for where in ("absolute", "relative", "stdin")
         if not (where == "stdin" and argv[0] in ("lock", "diff"))]  # (they refuse stdin)


@pytest.mark.parametrize(("argv", "where"), CASES, ids=[f"{' '.join(a)}-{w}" for a, w in CASES])
def test_a_clean_error_and_nothing_written(manifest, tmp_path, argv, where):
    target = {"absolute": str(manifest), "relative": "web.sevm", "stdin": "-"}[where]
    before = sorted(p.name for p in manifest.parent.iterdir())
    run = _run([*argv, target], tmp_path, stdin=manifest.read_bytes())
    assert run.rc == 2, run.err
    assert run.err == ("sevm: error: the working directory no longer exists (was it "
                       "removed?); change to an existing directory\n"), run.err
    assert run.out == b""
    assert sorted(p.name for p in manifest.parent.iterdir()) == before


@pytest.mark.parametrize("argv", [["--version"], ["check", "--help"]])
def test_help_and_version_still_answer(tmp_path, argv):
    run = _run(argv, tmp_path)
    assert run.rc == 0 and run.out, run.err


def test_the_compile_cache_misses_without_a_working_directory(tmp_path, monkeypatch):
    """For library callers: the cache is keyed by the working directory, and a cache is
    never a source of errors, so without one every lookup is a miss."""
    from sevmanifest.compilecache import CompileCache

    def removed():
        raise FileNotFoundError(2, "No such file or directory")
    cache = CompileCache(tmp_path)
    monkeypatch.setattr(os, "getcwd", removed)
    assert cache.has_entry("/abs/web.sevm") is False
    assert cache.lookup("/abs/web.sevm") is None
