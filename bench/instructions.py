#!/usr/bin/env python3
"""Instructions executed by the start-up scenario (3), counted by valgrind's callgrind.

Wall time on a shared machine moves by a third from one minute to the next; the number of
instructions a command executes does not (repeated counts agree to within 0.1%).  This
counts the contenders of scenario 3 (``sevm check`` of a small manifest, just edited and unchanged,
against ``python -c "import lark"``) and reports the same ratios as ``run.py``, so a change
to start-up can be judged without the noise.  Instructions are not time (a cache miss costs
more than an add), so the timed benchmark remains the measure of the targets.

    python bench/instructions.py                 # needs valgrind (Debian: apt install valgrind)
    python bench/instructions.py --json out.json
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from inputs import SMALL, make_inputs  # noqa: E402
from scenarios import (IMPORT_LARK, SEVM_CHECK, SEVM_CHECK_EDITED, Tools,  # noqa: E402
                       bench_env)

TARGET = 1.5  # issue 8 (3): sevm check of a just-edited manifest <= 1.5x import lark


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", type=Path, help="keep inputs here (default: a temporary dir)")
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the counts as JSON")
    return p.parse_args(argv)


def count(argv: list[str], env: dict[str, str]) -> int:
    """Instructions ``argv`` executes (its own process; it must succeed)."""
    with tempfile.TemporaryDirectory(prefix="sevm-callgrind-") as tmp:
        out = Path(tmp) / "callgrind.out"
        done = subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                               *argv], env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed under valgrind:\n{done.stderr[-2000:]}")
        return totals(out.read_text())


def totals(callgrind_output: str) -> int:
    """The event total of a callgrind output file (its ``totals:`` or ``summary:`` line)."""
    for line in callgrind_output.splitlines():
        if line.startswith(("totals:", "summary:")):
            return int(line.split()[1])
    raise ValueError("no totals line in the callgrind output")


def contenders(workdir: Path) -> tuple[list[tuple[str, list[str], object]], dict[str, str]]:
    inputs = make_inputs(workdir, SMALL)
    env, caches = bench_env(workdir)
    tools = Tools.find()
    check = tools.sevm + ["check", str(inputs.one)]
    return [('python -c "pass"', [tools.python, "-c", "pass"], None),
            (IMPORT_LARK, [tools.python, "-c", "import lark"], None),
            (SEVM_CHECK_EDITED, check, caches.empty_compiled),
            (SEVM_CHECK, check, None)], env


def run(workdir: Path) -> dict[str, int]:
    rows, env = contenders(workdir)
    for _, argv, prepare in rows:  # warm-up: bytecode, Lark's grammar cache, the entry
        if prepare:
            prepare()
        subprocess.run(argv, env=env, capture_output=True, check=True)
    counts = {}
    for label, argv, prepare in rows:
        if prepare:
            prepare()
        counts[label] = count(argv, env)
    return counts


def report(counts: dict[str, int]) -> str:
    lark = counts[IMPORT_LARK]
    lines = ["| command | instructions | ratio |", "|---|---:|---:|"]
    lines += [f"| {label} | {n / 1e6:,.1f} M | {n / lark:.2f}× |" for label, n in counts.items()]
    edited = counts[SEVM_CHECK_EDITED] / lark
    verdict = "met" if edited <= TARGET else f"missed by {edited / TARGET - 1:.0%}"
    lines.append(f"\n- {SEVM_CHECK_EDITED} / {IMPORT_LARK}: {edited:.2f}× in instructions "
                 f"(target ≤ {TARGET}× in wall time): {verdict}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("valgrind") is None:
        print("bench: valgrind is not installed (Debian: apt install valgrind)", file=sys.stderr)
        return 2
    try:
        if args.workdir:
            args.workdir.mkdir(parents=True, exist_ok=True)
            counts = run(args.workdir.resolve())
        else:
            with tempfile.TemporaryDirectory(prefix="sevm-bench-") as tmp:
                counts = run(Path(tmp))
    except (RuntimeError, subprocess.CalledProcessError) as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    print(report(counts))
    if args.json:
        args.json.write_text(json.dumps(counts, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
