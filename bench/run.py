#!/usr/bin/env python3
"""sevm performance benchmark (issue 8): one command, side-by-side figures, a Markdown report.

    python bench/run.py                 # full size: 4 MiB firmware, 16 MiB kernel, 128 MiB initrd
    python bench/run.py --small --runs 1    # seconds; what CI runs to prove it still works
    python bench/run.py --only measure,check --runs 9 --json out.json

See bench/README.md for what each scenario compares and docs/benchmarks.md for results.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from inputs import MIB, SMALL, Sizes, make_inputs, wait_until_cacheable  # noqa: E402
from report import as_json, header, io_pressure, machine, scenario_markdown  # noqa: E402
from scenarios import (Tools, bench_env, check_scenario, lock_scenario,  # noqa: E402
                       matrix_scenario, measure_scenario)
from timing import CommandFailed, measure  # noqa: E402

SCENARIOS = ("measure", "matrix", "check", "lock")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--small", action="store_true",
                   help="tiny inputs (256 KiB / 1 MiB / 4 MiB, 100 variants, 16 manifests)")
    p.add_argument("--runs", type=int, default=None, help="timed runs per command (default 5, "
                   "1 with --small); each after one warm-up run")
    p.add_argument("--only", default=",".join(SCENARIOS),
                   help=f"comma-separated subset of {', '.join(SCENARIOS)}")
    p.add_argument("--firmware-mib", type=float)
    p.add_argument("--kernel-mib", type=float)
    p.add_argument("--initrd-mib", type=float)
    p.add_argument("--matrix-vcpus", type=int, help="vCPU counts in the matrix (x 4 CPU models)")
    p.add_argument("--fleet", type=int, help="manifests for the lock scenario")
    p.add_argument("--workdir", type=Path,
                   help="keep inputs here and reuse them next time (default: a temporary dir)")
    p.add_argument("--quiet-load", type=float, metavar="LOAD",
                   help="before each scenario wait (up to 10 min) until the 1-minute load "
                        "average is below LOAD")
    p.add_argument("--pause", type=float, default=0.0, metavar="SECONDS",
                   help="wait this long before each timed run (60 lets ext4 reuse the inodes "
                        "the previous runs freed: see docs/benchmarks.md)")
    p.add_argument("--json", type=Path, metavar="FILE", help="also write raw samples as JSON")
    args = p.parse_args(argv)
    unknown = set(args.only.split(",")) - set(SCENARIOS)
    if unknown:
        p.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    if args.runs is not None and args.runs < 1:
        p.error("--runs must be at least 1")
    if args.pause < 0:
        p.error("--pause must not be negative")
    return args


def sizes_from(args: argparse.Namespace) -> Sizes:
    sizes = SMALL if args.small else Sizes()
    changes = {name: int(value * MIB) for name, value in
               (("firmware", args.firmware_mib), ("kernel", args.kernel_mib),
                ("initrd", args.initrd_mib)) if value is not None}
    if args.matrix_vcpus is not None:
        changes["matrix_vcpus"] = args.matrix_vcpus
    if args.fleet is not None:
        changes["fleet"] = args.fleet
    return dataclasses.replace(sizes, **changes)


def wait_for_quiet(limit: float | None) -> None:
    deadline = time.monotonic() + 600
    while limit is not None and os.getloadavg()[0] >= limit and time.monotonic() < deadline:
        time.sleep(5)


def run(args: argparse.Namespace, workdir: Path) -> int:
    sizes = sizes_from(args)
    runs = args.runs or (1 if args.small else 5)
    wanted = args.only.split(",")
    print(f"generating inputs in {workdir} ...", file=sys.stderr)
    inputs = make_inputs(workdir, sizes)
    env, caches = bench_env(workdir)
    tools = Tools.find()
    wait_until_cacheable(inputs.artefacts.paths)
    builders = {
        "measure": lambda: measure_scenario(inputs, tools, env, caches),
        "matrix": lambda: matrix_scenario(inputs, tools, env, sizes.matrix_variants),
        "check": lambda: check_scenario(inputs, tools, env, caches),
        "lock": lambda: lock_scenario(inputs, tools, env, caches),
    }
    info = machine()
    if "editable" in info["sevmanifest"]:
        print("bench: sevmanifest is an editable install, which slows every start-up; "
              "see bench/README.md to measure a regular one", file=sys.stderr)
    print(header(sizes, runs, info, args.pause))
    results, failed = [], False
    for key in SCENARIOS:
        if key not in wanted:
            continue
        wait_for_quiet(args.quiet_load)
        print(f"running scenario {key} ...", file=sys.stderr)
        scenario = builders[key]()
        scenario.load.append(os.getloadavg())
        scenario.io_pressure.append(io_pressure())
        measure(scenario.contenders, runs=runs, env=env, pause=args.pause)
        scenario.load.append(os.getloadavg())
        scenario.io_pressure.append(io_pressure())
        if scenario.after is not None:
            scenario.after()
        print(scenario_markdown(scenario), flush=True)
        results.append(scenario)
        failed |= bool(scenario.failures)
    if args.json:
        args.json.write_text(json.dumps({"sizes": dataclasses.asdict(sizes), "runs": runs,
                                         "machine": info,
                                         "scenarios": [as_json(s) for s in results]}, indent=2))
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.workdir:
            args.workdir.mkdir(parents=True, exist_ok=True)
            return run(args, args.workdir.resolve())
        with tempfile.TemporaryDirectory(prefix="sevm-bench-") as tmp:
            return run(args, Path(tmp))
    except CommandFailed as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
