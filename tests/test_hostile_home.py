"""No home directory at all: no $HOME, no $XDG_CACHE_HOME and no password entry for the uid
(a container run under an arbitrary uid).  `~` then stays unexpanded, and the caches must
not land in a directory named `~` inside the working directory (the user's repository):
sevm runs without caches instead, and prints the same."""
from __future__ import annotations

import contextlib
import io
import pwd

import pytest

from lock_support import make_repo, vm_text
from sevmanifest import cachedir, earlyhash
from sevmanifest.cli import main


@pytest.fixture
def homeless(tmp_path, monkeypatch):
    vms = make_repo(tmp_path)
    (vms / "web.sevm").write_text(vm_text(vcpus="1"))
    monkeypatch.chdir(vms)
    monkeypatch.delenv("HOME", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.delenv("SEVM_NO_CACHE", raising=False)

    def no_entry(uid):
        raise KeyError(f"getpwuid(): uid not found: {uid}")
    monkeypatch.setattr(pwd, "getpwuid", no_entry)
    for name, fresh in (("_thread", None), ("_found", {}), ("_interval", []), ("_planned", {}),
                        ("_unstarted", []), ("_owner", [])):
        monkeypatch.setattr(earlyhash, name, fresh)  # this test's guess stays its own
    return vms


def _sevm(*argv: str) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(list(argv))
    return status, out.getvalue()


def test_no_cache_directory_without_a_home(homeless):
    assert cachedir.cache_root() is None and cachedir.default_cache_dir() is None


def test_commands_run_uncached_and_create_nothing_in_the_working_directory(homeless, monkeypatch):
    from sevmanifest.frontend import parse
    parse.parser.cache_clear()  # (built again: its cache file is looked up anew)
    earlyhash.start(["web.sevm"])  # the guess from the text works without a cache
    assert len(earlyhash.results()) == 2
    for argv in (["check", "web.sevm"], ["measure", "web.sevm"], ["lock", "web.sevm"],
                 ["export", "web.sevm"], ["check", "--locked", "web.sevm"]):
        status, _ = _sevm(*argv)
        assert status == 0, argv
    assert sorted(p.name for p in homeless.iterdir()) == ["web.sevm", "web.sevm.lock"]
    parse.parser.cache_clear()


def test_a_relative_xdg_cache_home_is_ignored_too(homeless, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", "cache")
    assert cachedir.cache_root() is None
    monkeypatch.setenv("HOME", "/home/someone")
    assert cachedir.cache_root() == "/home/someone/.cache/sevmanifest"
