"""The benchmark's report: the machine, then one table per scenario, ratios and targets."""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from inputs import MIB, Sizes
from scenarios import Scenario
from timing import RSS_IS_EXACT


def machine() -> dict[str, str]:
    return {
        "cpu": _cpu_model(),
        "cores": str(os.cpu_count()),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "kernel": f"{platform.system()} {platform.release()}",
        "sevmanifest": sevmanifest_install(),
        "openssl": _first_line(["openssl", "version"]),
        "sev-snp-measure": _dist_version("sev-snp-measure"),
        "lark": _dist_version("lark"),
    }


EDITABLE_NOTE = ("editable install (adds setuptools' import hook to every start-up: measure "
                 "with a regular install, see bench/README.md)")


def sevmanifest_install() -> str:
    """The version of sevmanifest the benchmark runs, and how it is installed.

    An editable install (``pip install -e``) puts setuptools' finder on ``sys.meta_path`` of
    every interpreter start, which costs ~25 ms per ``sevm`` run that users do not pay.
    """
    try:
        dist = metadata.distribution("sevmanifest")
    except metadata.PackageNotFoundError:
        return "not installed (imported from sys.path)"
    mode = EDITABLE_NOTE if is_editable(dist) else "regular install"
    return f"{dist.version}, {mode}{_script_note()}"


def _script_note() -> str:
    """Whether the installed ``sevm`` script imports ``re`` before sevm runs (~13 ms: the
    wrapper of pip before 25.2 does; the README's install upgrades pip first)."""
    script = Path(sys.executable).parent / "sevm"
    try:
        head = script.read_text(encoding="utf-8", errors="replace")[:1000]
    except OSError:
        return ""
    return ", console script imports re first (pip < 25.2)" if "import re\n" in head else ""


def is_editable(dist: metadata.Distribution) -> bool:
    """PEP 660 / PEP 610: pip records ``"editable": true`` in ``direct_url.json``; setuptools
    installs an ``__editable__.<name>-<version>.pth`` (and maybe a finder module) beside it."""
    try:
        direct_url = json.loads(dist.read_text("direct_url.json") or "{}")
    except ValueError:
        direct_url = {}
    if direct_url.get("dir_info", {}).get("editable"):
        return True
    if any(Path(str(f)).name.startswith("__editable__") for f in dist.files or ()):
        return True
    site = Path(str(dist.locate_file("")))
    prefix = f"__editable__.{dist.metadata['Name'].replace('-', '_')}-"
    return any(site.glob(f"{prefix}*.pth"))


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _first_line(argv: list[str]) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True).stdout.splitlines()[0]
    except (OSError, IndexError):
        return "not installed"


def _dist_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def _mib(size: int) -> str:
    return f"{size / MIB:g} MiB"


def header(sizes: Sizes, runs: int, info: dict[str, str], pause: float = 0.0) -> str:
    lines = ["## Machine", ""]
    lines += [f"- {key}: {value}" for key, value in info.items()]
    lines += ["", f"Inputs: firmware {_mib(sizes.firmware)} (OVMF-shaped, synthetic), kernel "
              f"{_mib(sizes.kernel)}, initrd {_mib(sizes.initrd)}; {sizes.matrix_variants} "
              f"matrix variants; {sizes.fleet} manifests for `sevm lock`. "
              f"Each figure is the median of {runs} run(s), after one untimed warm-up run; "
              "contenders run interleaved; page cache warm. "
              + (f"A pause of {pause:g} s before each timed run. " if pause else "")
              + "Peak RSS "
              + ("by GNU time (%M)." if RSS_IS_EXACT else "by wait4: an upper bound (it "
                 "includes the benchmark's own RSS at spawn; install GNU time)."), ""]
    return "\n".join(lines)


def scenario_markdown(s: Scenario) -> str:
    base = s.targets[0].baseline if s.targets else s.contenders[0].label
    reference = s.contender(base)
    lines = [f"### {s.title}", "", _load_line(s), "",
             "| command | wall (median) | wall min–max | CPU (user+sys) | peak RSS | wall ratio |",
             "|---|---:|---:|---:|---:|---:|"]
    for c in s.contenders:
        low, high = c.spread
        lines.append(f"| {c.label} | {c.wall:.3f} s | {low:.3f}–{high:.3f} s | {c.cpu:.3f} s | "
                     f"{c.rss_mib:.1f} MiB | {c.wall / reference.wall:.2f}× {_short(base)} |")
    lines.append("")
    for line in target_lines(s) + ratio_lines(s):
        lines.append(f"- {line}")
    for check in s.checks:
        mark = "FAILED" if check in s.failures else "ok"
        lines.append(f"- check ({mark}): {check}")
    for note in s.notes:
        lines.append(f"- note: {note}")
    return "\n".join(lines) + "\n"


def target_lines(s: Scenario) -> list[str]:
    out = []
    for t in s.targets:
        ratio = s.contender(t.subject).wall / s.contender(t.baseline).wall
        verdict = "met" if ratio <= t.max_ratio else f"MISSED by {ratio / t.max_ratio - 1:.0%}"
        out.append(f"{t.subject} / {t.baseline}: {ratio:.2f}× (target ≤ {t.max_ratio}×): "
                   f"{verdict}")
    if s.rss_limit:
        label, limit = s.rss_limit
        rss = s.contender(label).rss_mib
        verdict = "met" if rss <= limit else f"MISSED by {rss / limit - 1:.0%}"
        out.append(f"{label} peak RSS: {rss:.1f} MiB (target ≤ {limit:g} MiB): {verdict}")
    return out


def ratio_lines(s: Scenario) -> list[str]:
    return [f"{subject} / {baseline}: "
            f"{s.contender(subject).wall / s.contender(baseline).wall:.2f}× (informational)"
            for subject, baseline in s.ratios]


def _short(label: str) -> str:
    return label.split(" (")[0]


def _load_line(s: Scenario) -> str:
    if not s.load:
        return ""
    before, after = s.load[0], s.load[-1]
    line = (f"Load average (1/5/15 min) before: {before[0]:.2f} {before[1]:.2f} {before[2]:.2f}; "
            f"after: {after[0]:.2f} {after[1]:.2f} {after[2]:.2f}.")
    if s.io_pressure and None not in s.io_pressure:
        line += (f" I/O pressure (share of the last 10 s some task waited for the disk) "
                 f"before: {s.io_pressure[0]:.1f}%; after: {s.io_pressure[-1]:.1f}%.")
    return line


def io_pressure() -> float | None:
    """Linux's pressure-stall figure for I/O ("some", 10-second average, %), if available."""
    try:
        with open("/proc/pressure/io") as f:
            return float(f.readline().split()[1].split("=")[1])
    except (OSError, IndexError, ValueError):
        return None


def as_json(s: Scenario) -> dict:
    return {
        "title": s.title,
        "load": s.load,
        "io_pressure": s.io_pressure,
        "contenders": [{"label": c.label, "argv": list(c.argv), "wall": c.wall, "cpu": c.cpu,
                        "rss_mib": c.rss_mib,
                        "samples": [vars(x) for x in c.samples]} for c in s.contenders],
        "targets": target_lines(s),
        "ratios": ratio_lines(s),
        "checks": s.checks,
        "failures": s.failures,
        "notes": s.notes,
    }
