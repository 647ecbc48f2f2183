"""Start-up of `sevm check` (issue 8, target 3): what it imports, and Lark's grammar cache.

These are structural checks, not timings: they fail when a change makes `sevm check` import
something heavy or stop hitting the cache, whatever the machine's speed."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

# run `sevm check` in a fresh interpreter, then report what it imported; WATCH_CACHE also
# records whether Lark loaded the parser from its cache (Lark._load) or built it afresh
# (it imports Lark first, so it is left out when the imports themselves are under test)
WATCH_CACHE = """
import lark.lark
real_load = lark.lark.Lark._load
def _load(self, *a, **k):
    loaded.append(True)
    return real_load(self, *a, **k)
lark.lark.Lark._load = _load
"""
PROBE = """
import contextlib, io, json, sys
loaded = []
{watch}
from sevmanifest.cli import main
with contextlib.redirect_stderr(io.StringIO()):
    status = main(["check", sys.argv[1]])
print(json.dumps({{"status": status, "modules": sorted(sys.modules), "cache_hit": bool(loaded)}}))
"""

MANIFEST = """\
vm "small" {
    type sev
    firmware "fw.fd"
    policy {
        key-sharing deny
    }
}
"""

HEAVY = ("jinja2", "cryptography", "importlib.metadata", "tomli_w", "concurrent.futures",
         "sevmanifest.measure.digest", "sevmanifest.measure.vmsa", "sevmanifest.render",
         "sevmanifest.lock.cache", "multiprocessing", "uuid", "platform")


@pytest.fixture
def small(tmp_path):
    from sevmanifest.synthetic import FirmwareSpec, write_firmware
    write_firmware(tmp_path / "fw.fd", FirmwareSpec(seed=3))
    path = tmp_path / "small.sevm"
    path.write_text(MANIFEST)
    return path


def _check(manifest, cache_home, *, isolated_import: bool = False) -> dict:
    env = dict(os.environ, XDG_CACHE_HOME=str(cache_home))
    code = PROBE.format(watch="" if isolated_import else WATCH_CACHE)
    done = subprocess.run([sys.executable, "-c", code, str(manifest)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_check_imports_nothing_heavy(small, tmp_path):
    result = _check(small, tmp_path / "cache", isolated_import=True)
    assert result["status"] == 0
    modules = set(result["modules"])
    assert "lark" in modules and "sevmanifest.frontend.parse" in modules
    loaded = [m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY)]
    assert loaded == []
    # Lark's optional `regex` module is hidden while Lark loads (frontend/parse.py)
    assert "regex" not in modules


def test_only_the_command_that_runs_is_registered(small, tmp_path):
    modules = set(_check(small, tmp_path / "cache", isolated_import=True)["modules"])
    commands = {m for m in modules if m.startswith("sevmanifest.commands.")}
    assert commands == {"sevmanifest.commands.check", "sevmanifest.commands.common"}


def test_parser_is_built_once_then_loaded_from_lark_cache(small, tmp_path):
    cache_home = tmp_path / "cache"
    first = _check(small, cache_home)
    files = list((cache_home / "sevmanifest").glob("grammar-*.lark-cache"))
    assert len(files) == 1 and files[0].stat().st_size > 0
    stamp = files[0].stat().st_mtime_ns
    # edited, so the compiled-manifest cache misses and the manifest is parsed again
    small.write_text(small.read_text() + "# edited\n")
    second = _check(small, cache_home)
    assert not first["cache_hit"] and second["cache_hit"]
    assert files[0].stat().st_mtime_ns == stamp  # read, not rewritten


def test_regex_can_still_be_imported_after_lark(tmp_path):
    # A stand-in `regex` module on the path: Lark must not load it (start-up time), and a
    # user's own `import regex` afterwards must still work.
    (tmp_path / "regex.py").write_text("LOADED_BY = 'user'\n")
    done = subprocess.run([sys.executable, "-c",
                           "import sevmanifest.frontend.parse, lark.utils, regex;"
                           "print(lark.utils._has_regex, regex.LOADED_BY)"],
                          env=dict(os.environ, XDG_CACHE_HOME=str(tmp_path),
                                   PYTHONPATH=str(tmp_path)),
                          capture_output=True, text=True, timeout=60)
    assert done.stdout.split() == ["False", "user"], done.stderr
