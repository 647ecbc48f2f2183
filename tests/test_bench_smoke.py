"""The benchmark still runs (issue 8).  Not a timed test: it runs once at a tiny size and
checks that every scenario produced its table and that the contenders agree."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

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
         "--matrix-vcpus", "8", "--fleet", "16", "--workdir", str(tmp_path / "work"),
         "--json", str(out_json)],
        capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = done.stdout
    for title in SCENARIO_TITLES:
        assert title in report, report
    assert "check (FAILED)" not in report
    assert "## Machine" in report and "cores:" in report
    data = json.loads(out_json.read_text())
    labels = {c["label"] for s in data["scenarios"] for c in s["contenders"]}
    assert {"sevm measure", "openssl dgst -sha256", "sev-snp-measure", "sevm check",
            "sevm measure, 32 variants", "sevm lock x16, cold cache",
            "sevm lock x16, warm cache"} <= labels
    for scenario in data["scenarios"]:
        assert scenario["failures"] == []
        for contender in scenario["contenders"]:
            assert contender["wall"] > 0 and contender["rss_mib"] > 0
    # the lock scenario really wrote the locks, and the warm runs found a digest cache
    assert len(list((tmp_path / "work" / "fleet").glob("*.sevm.lock"))) == 16
    assert list((tmp_path / "work" / "xdg-cache" / "sevmanifest" / "digests-v1").rglob("*"))


def test_benchmark_rejects_unknown_scenarios(repo):
    done = subprocess.run([sys.executable, str(repo / "bench" / "run.py"), "--only", "nope"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "unknown scenario" in done.stderr
