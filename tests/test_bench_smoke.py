"""The benchmark still runs (issue 8).  Not a timed test: it runs once at a tiny size and
checks that every scenario produced its table and that the contenders agree."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from importlib import metadata

import pytest

SCENARIO_TITLES = ("### 1. one SEV-ES variant", "### 2. a matrix of", "### 3. sevm check",
                   "### 4. sevm lock over")


def _need(program: str) -> None:
    if shutil.which(program) is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{program} is required in CI")
        pytest.skip(f"{program} not installed")


@pytest.mark.realtools
def test_benchmark_runs_at_a_tiny_size(repo, tmp_path):
    _need("openssl")
    _need("sev-snp-measure")
    out_json = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, str(repo / "bench" / "run.py"), "--small", "--runs", "1",
         "--firmware-mib", "0.25", "--kernel-mib", "0.5", "--initrd-mib", "1",
         "--matrix-vcpus", "8", "--fleet", "16", "--pause", "0.01",
         "--workdir", str(tmp_path / "work"),
         "--json", str(out_json)],
        capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = done.stdout
    for title in SCENARIO_TITLES:
        assert title in report, report
    assert "check (FAILED)" not in report
    assert "## Machine" in report and "cores:" in report
    assert "A pause of 0.01 s before each timed run." in report
    assert f"- sevmanifest: {metadata.version('sevmanifest')}, " in report
    # the rows said to run with a warm compiled-manifest cache really had one
    assert "no compiled-manifest cache was written" not in report
    data = json.loads(out_json.read_text())
    labels = {c["label"] for s in data["scenarios"] for c in s["contenders"]}
    assert {"sevm measure", "sevm measure, manifest just edited", "openssl dgst -sha256",
            "sev-snp-measure", "sevm check, manifest just edited",
            "sevm check, unchanged manifest", "sevm measure, 32 variants",
            "sevm lock x16, cold caches",
            "sevm lock x16, warm digest cache, compiled cache empty",
            "sevm lock x16, warm caches",
            "writing 16 files of 2 KiB as sevm lock writes locks (context)"} <= labels
    by_key = {s["title"].split(".")[0]: s for s in data["scenarios"]}
    # targets judge the warm measure row and the just-edited check row; the others are
    # reported as ratios without a target
    assert [t.split(" / ")[0] for t in by_key["1"]["targets"][:2]] == ["sevm measure"] * 2
    assert len(by_key["1"]["ratios"]) == 2
    assert by_key["3"]["targets"][0].startswith("sevm check, manifest just edited / ")
    assert by_key["3"]["ratios"][0].startswith("sevm check, unchanged manifest / ")
    assert by_key["4"]["ratios"][0].startswith("sevm lock x16, warm digest cache, ")
    for scenario in data["scenarios"]:
        assert scenario["failures"] == []
        assert scenario["notes"] == []
        for contender in scenario["contenders"]:
            assert contender["wall"] > 0 and contender["rss_mib"] > 0
    # the write floor removed its files again; on Linux the disk's pressure is reported
    fleet = tmp_path / "work" / "fleet"
    assert not list(fleet.glob(".bench-floor-*"))
    if _bench_module(repo, "report").io_pressure() is not None:
        assert "I/O pressure (share of the last 10 s" in report
        assert all(len(s["io_pressure"]) == 2 for s in data["scenarios"])
    # the lock scenario really wrote the locks, and the warm runs found a digest cache and a
    # compiled-manifest cache; emptying the caches never removed Lark's grammar cache
    assert len(list((tmp_path / "work" / "fleet").glob("*.sevm.lock"))) == 16
    caches = tmp_path / "work" / "xdg-cache" / "sevmanifest"
    assert list((caches / "digests-v1").rglob("*"))
    assert list((caches / "compiled-v1").rglob("*"))
    assert list(caches.glob("grammar-*.lark-cache"))


def _dist_info(tmp_path, direct_url: str | None, record: str = ""):
    info = tmp_path / "sevmanifest-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: sevmanifest\nVersion: 0.1.0\n")
    (info / "RECORD").write_text(record)
    if direct_url is not None:
        (info / "direct_url.json").write_text(direct_url)
    return metadata.PathDistribution(info)


@pytest.fixture()
def report_module(repo, monkeypatch):
    monkeypatch.syspath_prepend(str(repo / "bench"))
    import report
    return report


def test_bench_tells_an_editable_install_from_a_regular_one(report_module, tmp_path):
    is_editable = report_module.is_editable
    # pip's record of `pip install -e .` (PEP 610)
    assert is_editable(_dist_info(tmp_path / "a", '{"url": "file:///src", '
                                  '"dir_info": {"editable": true}}'))
    # `pip install .` from a directory, and from an index (no direct_url.json)
    assert not is_editable(_dist_info(tmp_path / "b", '{"url": "file:///src", "dir_info": {}}',
                                      "sevmanifest/__init__.py,sha256=x,1\n"))
    assert not is_editable(_dist_info(tmp_path / "c", None))
    # setuptools' editable .pth, listed in RECORD or only present beside the metadata
    assert is_editable(_dist_info(tmp_path / "d", None,
                                  "__editable__.sevmanifest-0.1.0.pth,sha256=x,1\n"))
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "__editable__.sevmanifest-0.1.0.pth").write_text("/src\n")
    assert is_editable(_dist_info(tmp_path / "e", None))


def test_benchmark_rejects_unknown_scenarios(repo):
    done = subprocess.run([sys.executable, str(repo / "bench" / "run.py"), "--only", "nope"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "unknown scenario" in done.stderr


def _bench_module(repo, name: str):
    sys.path.insert(0, str(repo / "bench"))
    try:
        import importlib
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(repo / "bench"))


def test_callgrind_totals_are_read_from_either_line(repo):
    instructions = _bench_module(repo, "instructions")
    assert instructions.totals("events: Ir\nfn=main\n5 7\ntotals: 431618211\n") == 431618211
    assert instructions.totals("events: Ir\nsummary: 12\n") == 12
    with pytest.raises(ValueError):
        instructions.totals("events: Ir\n")


@pytest.mark.realtools
def test_instruction_counts_of_the_start_up_scenario(repo, tmp_path):
    """bench/instructions.py (valgrind) counts scenario 3's contenders: the counts are in the
    order the design promises (an unchanged manifest does not load Lark)."""
    _need("valgrind")
    out_json = tmp_path / "counts.json"
    done = subprocess.run([sys.executable, str(repo / "bench" / "instructions.py"),
                           "--workdir", str(tmp_path / "work"), "--json", str(out_json)],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert '| sevm check, manifest just edited |' in done.stdout
    assert 'in instructions (target ≤ 1.5× in wall time)' in done.stdout
    counts = json.loads(out_json.read_text())
    assert (counts['python -c "pass"'] < counts['python -c "import lark"']
            < counts["sevm check, manifest just edited"])
    assert counts["sevm check, unchanged manifest"] < counts["sevm check, manifest just edited"]
