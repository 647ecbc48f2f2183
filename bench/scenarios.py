"""The four scenarios of issue 8, each a set of contenders and the targets between them."""
from __future__ import annotations

import json
import shutil
import sys
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path

from inputs import CMDLINE, CPU, MATRIX_CPUS, VCPUS, Inputs
from timing import Contender, capture


@dataclass(frozen=True)
class Target:
    subject: str  # contender label
    baseline: str  # contender label
    max_ratio: float


@dataclass
class Scenario:
    key: str
    title: str
    contenders: list[Contender]
    targets: list[Target]
    rss_limit: tuple[str, float] | None = None  # (contender label, MiB)
    checks: list[str] = field(default_factory=list)  # agreement checks, in words
    failures: list[str] = field(default_factory=list)  # checks that did not hold
    load: list[tuple[float, float, float]] = field(default_factory=list)  # before, after

    def contender(self, label: str) -> Contender:
        return next(c for c in self.contenders if c.label == label)


@dataclass(frozen=True)
class Tools:
    sevm: list[str]
    openssl: str | None
    snp_measure: str | None
    python: str

    @classmethod
    def find(cls) -> "Tools":
        # The scripts beside this interpreter, not PATH: a version manager's shim (pyenv)
        # would add its own start-up to every run, to ours and to the peers alike.
        scripts = Path(sysconfig.get_path("scripts"))
        sevm = scripts / "sevm"
        snp = scripts / "sev-snp-measure"
        return cls(sevm=[str(sevm)] if sevm.exists() else [sys.executable, "-m", "sevmanifest"],
                   openssl=shutil.which("openssl"),
                   snp_measure=str(snp) if snp.exists() else shutil.which("sev-snp-measure"),
                   python=sys.executable)


SEVM_MEASURE = "sevm measure"
OPENSSL = "openssl dgst -sha256"
SNP = "sev-snp-measure"


def measure_scenario(inputs: Inputs, tools: Tools, env: dict[str, str]) -> Scenario:
    art = inputs.artefacts
    contenders = [Contender(SEVM_MEASURE, tools.sevm + ["measure", "--no-cache", str(inputs.one)])]
    targets = []
    if tools.openssl:
        contenders.append(Contender(OPENSSL, [tools.openssl, "dgst", "-sha256",
                                              *map(str, art.paths)]))
        targets.append(Target(SEVM_MEASURE, OPENSSL, 1.2))
    if tools.snp_measure:
        contenders.append(Contender(SNP, [
            tools.snp_measure, "--mode", "seves", "--vcpus", str(VCPUS), "--vcpu-type", CPU,
            "--ovmf", str(art.firmware), "--kernel", str(art.kernel), "--initrd", str(art.initrd),
            "--append", CMDLINE, "--output-format", "hex"]))
        targets.append(Target(SEVM_MEASURE, SNP, 0.6))
    scenario = Scenario("measure", f"1. one SEV-ES variant ({VCPUS} vCPUs, measured direct "
                        "boot): sevm measure vs the hashing floor vs the peer",
                        contenders, targets, rss_limit=(SEVM_MEASURE, 40.0))
    ours = _launch_digests(tools, env, inputs.one)
    if tools.snp_measure:
        theirs = capture(contenders[-1].argv, env=env).strip()
        _agree(scenario, "sevm measure and sev-snp-measure print the same launch digest",
               ours == [theirs])
    if tools.openssl:
        printed = capture(contenders[1].argv, env=env)
        _agree(scenario, "the artefact digests sevm pins are the ones openssl prints",
               all(d in printed for d in art.sha256.values()))
    return scenario


def matrix_scenario(inputs: Inputs, tools: Tools, env: dict[str, str], variants: int) -> Scenario:
    one = Contender("sevm measure, 1 variant",
                    tools.sevm + ["measure", "--no-cache", str(inputs.one)])
    many = Contender(f"sevm measure, {variants} variants",
                     tools.sevm + ["measure", "--no-cache", str(inputs.matrix)])
    scenario = Scenario("matrix", f"2. a matrix of {variants} SEV-ES variants vs one variant",
                        [one, many], [Target(many.label, one.label, 1.3)])
    matrix_lds = _launch_digests(tools, env, inputs.matrix, every=True)
    _agree(scenario, f"the matrix yields {variants} launch digests", len(matrix_lds) == variants)
    if variants >= VCPUS * len(MATRIX_CPUS):  # the single variant is one of the matrix's
        _agree(scenario, "one of them is the single variant's",
               _launch_digests(tools, env, inputs.one)[0] in matrix_lds)
    return scenario


def check_scenario(inputs: Inputs, tools: Tools) -> Scenario:
    lark = Contender('python -c "import lark"', [tools.python, "-c", "import lark"])
    check = Contender("sevm check", tools.sevm + ["check", str(inputs.one)])
    bare = Contender('python -c "pass" (context)', [tools.python, "-c", "pass"])
    return Scenario("check", "3. sevm check on a small manifest vs importing Lark (start-up)",
                    [lark, check, bare], [Target(check.label, lark.label, 1.5)])


def lock_scenario(inputs: Inputs, tools: Tools, cache_home: Path) -> Scenario:
    count = len(inputs.fleet)
    digests = cache_home / "sevmanifest" / "digests-v1"
    locks = [Path(str(p) + ".lock") for p in inputs.fleet]

    def remove_locks() -> None:
        for lock in locks:
            lock.unlink(missing_ok=True)

    def cold() -> None:
        remove_locks()
        shutil.rmtree(digests, ignore_errors=True)

    argv = tools.sevm + ["lock", *map(str, inputs.fleet)]
    one = Contender(SEVM_MEASURE + " (1 manifest)",
                    tools.sevm + ["measure", "--no-cache", str(inputs.fleet[0])])
    # cold runs before warm in every round, so the warm run finds the cache it filled
    cold_run = Contender(f"sevm lock x{count}, cold cache", argv, prepare=cold)
    warm_run = Contender(f"sevm lock x{count}, warm cache", argv, prepare=remove_locks)
    return Scenario("lock", f"4. sevm lock over {count} manifests sharing the artefacts vs one "
                    "sevm measure", [one, cold_run, warm_run],
                    [Target(cold_run.label, one.label, 3.0),
                     Target(warm_run.label, one.label, 1.5)])


def after_lock(scenario: Scenario, inputs: Inputs) -> None:
    written = sum(Path(str(p) + ".lock").exists() for p in inputs.fleet)
    _agree(scenario, f"every run wrote all {len(inputs.fleet)} lock files",
           written == len(inputs.fleet))


def _launch_digests(tools: Tools, env: dict[str, str], manifest: Path,
                    every: bool = False) -> list[str]:
    out = json.loads(capture(tools.sevm + ["measure", "--no-cache", "--format", "json",
                                           str(manifest)], env=env))
    lds = [v["launch_digest"] for vm in out["vms"] for v in vm["variants"]]
    return lds if every else lds[:1]


def _agree(scenario: Scenario, what: str, ok: bool) -> None:
    scenario.checks.append(what)
    if not ok:
        scenario.failures.append(what)
