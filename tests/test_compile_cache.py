"""The compiled-manifest cache (compilecache.py) and its JSON codec (modelcodec.py).

A hit must give exactly what compiling gives (model, spans, warnings with their source
lines), must never be used for a manifest or import that changed, and a damaged or planted
entry must be a quiet miss."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sevmanifest import compilecache, modelcodec
from sevmanifest.commands import common
from sevmanifest.frontend import compile_file
from sevmanifest.model import Manifest, Span

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((REPO / "manifests").rglob("*.sevm"))

# `sevm check` in a fresh interpreter, reporting its exit status, stderr and whether Lark
# was imported (a hit must not need it)
PROBE = """
import contextlib, io, json, sys
from sevmanifest.cli import main
err = io.StringIO()
with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()) as out:
    status = main(sys.argv[1:])
print(json.dumps({"status": status, "stderr": err.getvalue(), "stdout": out.getvalue(),
                  "lark": "lark" in sys.modules}))
"""


def _spans(value, path="m"):
    """Every Span inside ``value`` (spans are compare=False fields, so == ignores them)."""
    import dataclasses
    if isinstance(value, Span):
        yield path, value
    elif dataclasses.is_dataclass(value):
        for f in dataclasses.fields(value):
            yield from _spans(getattr(value, f.name), f"{path}.{f.name}")
    elif isinstance(value, (tuple, list)):
        for i, item in enumerate(value):
            yield from _spans(item, f"{path}[{i}]")
    elif isinstance(value, dict):
        for k, item in value.items():
            yield from _spans(item, f"{path}[{k!r}]")


@pytest.mark.parametrize("manifest", EXAMPLES, ids=lambda p: str(p.relative_to(REPO)))
def test_codec_round_trips_every_example_with_its_spans(manifest):
    result = compile_file(str(manifest))
    assert result.manifest is not None  # (a file of templates has no vms)
    back_manifest, back_diagnostics = modelcodec.loads(
        modelcodec.dumps([result.manifest, result.diagnostics]))
    assert back_manifest == result.manifest
    assert back_diagnostics == result.diagnostics
    assert list(_spans(back_manifest)) == list(_spans(result.manifest))
    assert [vm.origins for vm in back_manifest.vms] == [vm.origins for vm in result.manifest.vms]


def test_codec_keeps_undecodable_path_bytes_and_cmdline_bytes(tmp_path):
    # "\xff" in a path is a byte that is not UTF-8: kept as a surrogate escape
    (tmp_path / "m.sevm").write_text('vm "a" {\n    type sev\n    firmware "fw\\xff.fd"\n'
                                     '    kernel "k"\n    cmdline "a\\u{e9}\\x01"\n}\n')
    result = compile_file(str(tmp_path / "m.sevm"))
    assert not [d for d in result.diagnostics if d.is_error], result.diagnostics
    manifest = result.manifest
    back = modelcodec.loads(modelcodec.dumps(manifest))
    assert back == manifest
    assert os.fsencode(back.vms[0].firmware.path).endswith(b"fw\xff.fd")
    assert back.vms[0].cmdline == manifest.vms[0].cmdline == "a\u00e9\x01".encode()


@pytest.mark.parametrize("text", [
    '{"C":["system",[]]}',                      # not a model class
    '{"C":["PosixPath",[]]}',
    '{"E":["Severity","fatal"]}',              # not a member
    '{"X":1}',                                  # unknown tag
    '{"T":[1],"B":"00"}',                       # two tags
    '{"C":["Span",["f",1]]}',                  # missing values
    '{"C":["Span",["f",1,2,3,4,5]]}',          # one too many
    '{"C":["Artefact",["firmware","f","f"]]}',  # defaults are not filled in
    '{"M":[[["unhashable"],1]]}',
    '{"B":"zz"}',
    '[' * 100000,                               # nesting bomb
])
def test_codec_builds_nothing_but_model_classes(text):
    with pytest.raises((ValueError, TypeError, RecursionError)):
        modelcodec.loads(text)


def test_codec_refuses_to_encode_what_it_could_not_rebuild():
    with pytest.raises(TypeError):
        modelcodec.dumps([object()])
    with pytest.raises(TypeError):
        modelcodec.dumps(1.5)


# -- the cache, in-process -------------------------------------------------------------

@pytest.fixture
def cache_home(tmp_path, monkeypatch):
    home = tmp_path / "xdg"
    monkeypatch.setenv("XDG_CACHE_HOME", str(home))
    monkeypatch.delenv("SEVM_NO_CACHE", raising=False)
    return home


@pytest.fixture
def fleet(tmp_path, monkeypatch):
    """A copy of manifests/fleet (a vm extending an imported template) with its images."""
    shutil.copytree(REPO / "manifests" / "fleet", tmp_path / "fleet")
    shutil.copytree(REPO / "manifests" / "images", tmp_path / "images")
    monkeypatch.chdir(tmp_path)
    return tmp_path / "fleet"


def _entries(home: Path) -> list[Path]:
    return sorted(p for p in (home / "sevmanifest" / compilecache.CACHE_SUBDIR).rglob("*")
                  if p.is_file())


def test_a_hit_returns_what_compiling_returns(cache_home, fleet):
    compiled = common._compiled("fleet/db.sevm")
    assert len(_entries(cache_home)) == 1
    cache = compilecache.open_compile_cache()
    manifest, diagnostics, sources = cache.lookup("fleet/db.sevm")
    assert cache.hits == 1
    assert (manifest, diagnostics) == compiled
    assert list(_spans(manifest)) == list(_spans(compiled[0]))
    assert set(sources) == {"fleet/db.sevm", os.path.join("fleet", "common.sevm")}


def test_an_edited_import_is_a_miss(cache_home, fleet):
    common._compiled("fleet/db.sevm")
    template = fleet / "common.sevm"
    template.write_text(template.read_text() + "# one more comment\n")
    cache = compilecache.open_compile_cache()
    assert cache.lookup("fleet/db.sevm") is None and cache.misses == 1


def test_an_edited_manifest_replaces_its_entry(cache_home, fleet):
    common._compiled("fleet/db.sevm")
    db = fleet / "db.sevm"
    db.write_text(db.read_text().replace("vcpus 4, 8", "vcpus 4, 8, 16"))
    assert compilecache.open_compile_cache().lookup("fleet/db.sevm") is None
    manifest, _ = common._compiled("fleet/db.sevm")
    assert manifest.vms[0].vcpus == (4, 8, 16)
    assert len(_entries(cache_home)) == 1  # one entry per manifest, not one per edit
    assert compilecache.open_compile_cache().lookup("fleet/db.sevm")[0] == manifest


def test_another_working_directory_is_another_entry(cache_home, fleet, monkeypatch):
    common._compiled("fleet/db.sevm")
    monkeypatch.chdir(fleet)
    assert compilecache.open_compile_cache().lookup("fleet/db.sevm") is None
    manifest, _ = common._compiled("db.sevm")
    assert manifest.vms[0].firmware.path == (fleet.parent / "images" /
                                             "OVMF.synthetic-amdsev.fd")


def test_new_code_is_a_miss(cache_home, fleet, monkeypatch):
    common._compiled("fleet/db.sevm")
    monkeypatch.setattr(compilecache, "code_fingerprint", lambda: "another sevm")
    assert compilecache.open_compile_cache().lookup("fleet/db.sevm") is None


def test_the_fingerprint_covers_the_grammar_and_every_module(monkeypatch):
    import sevmanifest
    from sevmanifest.resources import grammar_path
    seen = []
    real_stat = os.stat
    monkeypatch.setattr(os, "stat", lambda p, *a, **k: seen.append(os.path.realpath(p))
                        or real_stat(p, *a, **k))
    compilecache._code_fingerprint()
    monkeypatch.undo()
    package = Path(sevmanifest.__file__).resolve().parent
    assert {str(p) for p in package.rglob("*.py")} <= set(seen)
    assert str(grammar_path().resolve()) in seen
    assert any(p.endswith(os.path.join("lark", "__init__.py")) for p in seen)


def test_errors_are_not_stored_and_no_cache_stores_nothing(cache_home, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.sevm").write_text('vm "a" {\n    type sev\n    vcpus 0\n}\n')
    manifest, diagnostics = common._compiled("bad.sevm")
    assert any(d.is_error for d in diagnostics)
    assert _entries(cache_home) == []
    (tmp_path / "good.sevm").write_text('vm "a" {\n    type sev\n    firmware "f"\n}\n')
    monkeypatch.setenv("SEVM_NO_CACHE", "1")
    common._compiled("good.sevm")
    assert _entries(cache_home) == []


def _corruptions(entry: Path):
    data = entry.read_bytes()
    check, body = data.split(b"\n", 1)
    flipped = bytearray(body)
    flipped[len(flipped) // 2] ^= 0x01
    yield "bit flip", check + b"\n" + bytes(flipped)
    yield "truncated", data[: len(data) // 2]
    yield "empty", b""
    yield "no check line", body
    # planted entries whose check line is right: not the codec's JSON, another key
    import hashlib
    for kind, rest in (("planted", b"\n" + json.dumps({"key": "x"}).encode()),
                       ("other key", body.replace(b'"key"', b'"kex"', 1))):
        yield kind, hashlib.sha256(rest).hexdigest().encode() + b"\n" + rest


@pytest.mark.parametrize("kind", ["bit flip", "truncated", "empty", "no check line", "planted",
                                  "other key"])
def test_a_damaged_entry_is_a_quiet_miss(cache_home, fleet, kind):
    expected = common._compiled("fleet/db.sevm")
    entry, = _entries(cache_home)
    entry.write_bytes(dict(_corruptions(entry))[kind])
    cache = compilecache.open_compile_cache()
    assert cache.lookup("fleet/db.sevm") is None
    assert common._compiled("fleet/db.sevm") == expected  # compiled again, stored again
    assert compilecache.open_compile_cache().lookup("fleet/db.sevm") is not None


def test_an_entry_replaced_by_a_fifo_or_directory_is_a_miss_not_a_hang(cache_home, fleet):
    common._compiled("fleet/db.sevm")
    entry, = _entries(cache_home)
    entry.unlink()
    os.mkfifo(entry)
    assert compilecache.open_compile_cache().lookup("fleet/db.sevm") is None
    entry.unlink()
    entry.mkdir()
    assert compilecache.open_compile_cache().lookup("fleet/db.sevm") is None


def test_an_unwritable_cache_only_costs_time(tmp_path, fleet, monkeypatch):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    manifest, diagnostics = common._compiled("fleet/db.sevm")
    assert manifest is not None and not any(d.is_error for d in diagnostics)


# -- through the CLI, in fresh interpreters ----------------------------------------------

def _sevm(args, cwd, home, **env):
    done = subprocess.run([sys.executable, "-c", PROBE, *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120,
                          env=dict(os.environ, XDG_CACHE_HOME=str(home), **env))
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_second_check_skips_lark_and_prints_the_same_warnings(tmp_path):
    shutil.copytree(REPO / "manifests" / "images", tmp_path / "images")
    # SEVM105 (type sev) and SEVM104-style warnings come with their source lines
    (tmp_path / "w.sevm").write_text(
        'vm "w" {\n    type sev\n    firmware "images/OVMF.synthetic-amdsev.fd"\n}\n')
    first = _sevm(["check", "w.sevm"], tmp_path, tmp_path / "xdg")
    second = _sevm(["check", "w.sevm"], tmp_path, tmp_path / "xdg")
    assert first["lark"] and not second["lark"]
    assert "warning" in first["stderr"] and "    | " in first["stderr"]
    assert second == dict(first, lark=False)


def test_lint_configuration_applies_to_a_cached_manifest(tmp_path):
    shutil.copytree(REPO / "manifests" / "images", tmp_path / "images")
    (tmp_path / "w.sevm").write_text(
        'vm "w" {\n    type sev\n    firmware "images/OVMF.synthetic-amdsev.fd"\n}\n')
    first = _sevm(["check", "w.sevm"], tmp_path, tmp_path / "xdg")
    assert "SEVM105" in first["stderr"]
    (tmp_path / ".sevm.toml").write_text('error = ["SEVM105"]\n')
    raised = _sevm(["check", "w.sevm"], tmp_path, tmp_path / "xdg")
    assert not raised["lark"] and raised["status"] == 1 and "error[SEVM105" in raised["stderr"]
    (tmp_path / ".sevm.toml").write_text('disable = ["SEVM105"]\n')
    quiet = _sevm(["check", "w.sevm"], tmp_path, tmp_path / "xdg")
    assert not quiet["lark"] and "SEVM105" not in quiet["stderr"]


def test_measure_from_the_cache_prints_the_same_digests(tmp_path):
    shutil.copytree(REPO / "manifests" / "fleet", tmp_path / "fleet")
    shutil.copytree(REPO / "manifests" / "images", tmp_path / "images")
    args = ["measure", "fleet/db.sevm", "--format", "json", "--no-cache"]
    first = _sevm(args, tmp_path, tmp_path / "xdg")
    second = _sevm(args, tmp_path, tmp_path / "xdg")
    uncached = _sevm(args, tmp_path, tmp_path / "xdg", SEVM_NO_CACHE="1")
    assert first["lark"] and not second["lark"] and uncached["lark"]
    assert first["stdout"] == second["stdout"] == uncached["stdout"]
    assert json.loads(first["stdout"])  # real digests, not an empty run


def test_old_entries_and_stray_temporary_files_are_pruned(cache_home, fleet, monkeypatch):
    import time
    common._compiled("fleet/db.sevm")
    common._compiled("fleet/common.sevm")
    cache = compilecache.open_compile_cache()

    def entry(name):
        return Path(compilecache.entry_file(cache.directory, compilecache.entry_key(name)))
    old, used = entry("fleet/common.sevm"), entry("fleet/db.sevm")
    assert sorted([old, used]) == _entries(cache_home)
    stray = old.parent / ".left-by-a-crash.tmp"
    stray.write_text("")
    month_ago = time.time() - (compilecache.MAX_AGE_DAYS + 1) * 86400
    for path in (old, used, stray):
        os.utime(path, (month_ago, month_ago))
    name = "fleet/db.sevm"
    assert cache.lookup(name) is not None  # a hit marks its entry used
    assert cache.prune() == 2
    assert _entries(cache_home) == [used] and not stray.exists()
    assert cache.lookup(name) is not None


def test_pruning_runs_now_and_then_when_storing(cache_home, fleet, monkeypatch):
    calls = []
    monkeypatch.setattr(compilecache.CompileCache, "prune", lambda self: calls.append(1))
    monkeypatch.setattr(os, "urandom", lambda n: b"\0" * n)  # the 1-in-64 draw
    common._compiled("fleet/db.sevm")
    assert calls == [1]
    monkeypatch.setattr(os, "urandom", lambda n: b"\xff" * n)
    common._compiled("fleet/common.sevm")
    assert calls == [1]


def test_pruning_looks_at_most_once_a_day(cache_home, fleet, monkeypatch):
    """Each look stats every entry: in a cache of thousands that cost more than the store."""
    looks = []
    real = compilecache.CompileCache.prune
    monkeypatch.setattr(compilecache.CompileCache, "prune",
                        lambda self: looks.append(1) or real(self))
    monkeypatch.setattr(os, "urandom", lambda n: b"\0" * n)  # every store draws a look
    common._compiled("fleet/db.sevm")
    common._compiled("fleet/common.sevm")
    assert looks == [1]
    marker = cache_home / "sevmanifest" / compilecache.PRUNED_MARKER
    two_days_ago = time.time() - 2 * 86400
    os.utime(marker, (two_days_ago, two_days_ago))
    (fleet / "db.sevm").write_text((fleet / "db.sevm").read_text() + "# edited\n")
    common._compiled("fleet/db.sevm")
    assert looks == [1, 1] and marker.stat().st_mtime > two_days_ago


# -- generated manifests (with imports, odd names and layouts) ------------------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402

from manifest_strategies import manifest_sets  # noqa: E402


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(manifest_sets())
def test_a_hit_equals_compiling_for_generated_manifest_sets(manifests):
    import tempfile
    with tempfile.TemporaryDirectory(prefix="sevm-cache-") as directory, \
            pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", os.path.join(directory, "xdg"))
        mp.delenv("SEVM_NO_CACHE", raising=False)
        mp.chdir(directory)
        root = os.path.relpath(manifests.write(directory), directory)
        compiled = common._compiled(root)
        assert compiled[0] is not None and not any(d.is_error for d in compiled[1])
        hit = compilecache.open_compile_cache().lookup(root)
        assert hit is not None, "an error-free compilation is stored"
        assert (hit[0], hit[1]) == compiled
        assert list(_spans(hit[0])) == list(_spans(compiled[0]))
        assert [vm.origins for vm in hit[0].vms] == [vm.origins for vm in compiled[0].vms]
        # every file of the set is reached from the root, and each is checked on a hit
        assert sorted(map(os.path.normpath, hit[2])) == sorted(map(os.path.normpath,
                                                                manifests.files))


def _mutations(value, rnd):
    """``value`` (plain JSON) with one node replaced by something else of any type."""
    import copy
    value = copy.deepcopy(value)
    nodes = [(None, None, value)]
    stack = [value]
    while stack:
        node = stack.pop()
        items = node.items() if isinstance(node, dict) else enumerate(node) \
            if isinstance(node, list) else ()
        for k, v in list(items):
            nodes.append((node, k, v))
            stack.append(v)
    parent, k, _ = rnd.choice(nodes[1:])
    parent[k] = rnd.choice([None, True, 0, -1, 2 ** 70, "", "x", "/", [], {}, [1, 2],
                            {"C": ["Span", []]}, {"T": {}}, {"E": ["Severity", 3]},
                            {"P": 5}, {"S": [1, 2, 3, 4, 5]}, [["a", "b", "c"]], 3])
    return value


def test_entries_mutated_anywhere_are_misses_or_hits_never_errors(cache_home, fleet):
    """Structure-aware fuzz of a valid entry (check line recomputed, as a planted entry
    would have): every lookup returns None or a compiled manifest, the lock data `sevm lock`
    reuses is None or a dict that gives None or bytes, and nothing raises."""
    import hashlib
    import random

    from sevmanifest.lock import reuse
    from sevmanifest.lock.shared import identity
    manifest, diagnostics = common._compiled("fleet/db.sevm")
    cache = compilecache.open_compile_cache()
    firmware = manifest.vms[0].firmware.path
    lock = {"artefacts": [[str(firmware), *identity(os.stat(firmware))]], "text": "lock\n"}
    cache.store("fleet/db.sevm", manifest, diagnostics,
                {"fleet/db.sevm": Path("fleet/db.sevm").read_text(),
                 "fleet/common.sevm": Path("fleet/common.sevm").read_text()}, lock=lock)
    assert reuse.reusable_text(cache.lock_data("fleet/db.sevm")[0]) == b"lock\n"
    entry, = _entries(cache_home)
    header, *lines = entry.read_bytes().split(b"\n")[1:]
    plain = [json.loads(line) for line in lines]  # meta, warnings, model
    rnd = random.Random(8)
    outcomes = {"miss": 0, "hit": 0}
    for _ in range(int(os.environ.get("SEVM_CACHE_FUZZ", "400"))):
        rest = b"\n".join([header, *(json.dumps(x).encode() for x in _mutations(plain, rnd))])
        entry.write_bytes(hashlib.sha256(rest).hexdigest().encode() + b"\n" + rest)
        found = cache.lookup("fleet/db.sevm")
        outcomes["miss" if found is None else "hit"] += 1
        if found is not None:
            assert isinstance(found[0], Manifest)
        data = cache.lock_data("fleet/db.sevm")
        assert data is None or isinstance(data[0], dict)
        if data is not None:
            text = reuse.reusable_text(data[0])  # (a planted entry may say any text)
            assert text is None or isinstance(text, bytes)
    # most mutations break the entry (the meta line's lock data and spans need not)
    assert outcomes["miss"] > 0.3 * sum(outcomes.values()), outcomes
