"""The four scenarios of issue 8, each a set of contenders and the targets between them."""
from __future__ import annotations

import json
import os
import shutil
import sys
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from inputs import CMDLINE, CPU, MATRIX_CPUS, VCPUS, Inputs
from timing import Contender, capture

try:
    from sevmanifest.lock.cache import CACHE_SUBDIR as DIGESTS_SUBDIR
except ImportError:
    DIGESTS_SUBDIR = "digests-v1"
try:
    from sevmanifest.compilecache import CACHE_SUBDIR as COMPILED_SUBDIR
except ImportError:
    COMPILED_SUBDIR = "compiled-v1"


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
    ratios: list[tuple[str, str]] = field(default_factory=list)  # (subject, baseline), no target
    checks: list[str] = field(default_factory=list)  # agreement checks, in words
    failures: list[str] = field(default_factory=list)  # checks that did not hold
    notes: list[str] = field(default_factory=list)  # said in words under the table
    load: list[tuple[float, float, float]] = field(default_factory=list)  # before, after
    # the disk's contention, before and after (Linux PSI "some avg10", %; None: unknown)
    io_pressure: list[float | None] = field(default_factory=list)
    after: Callable[[], None] | None = None  # runs (untimed) once the timed runs are done

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


@dataclass(frozen=True)
class Caches:
    """sevm's caches under the benchmark's own ``$XDG_CACHE_HOME``.

    The digest cache (artefact path -> SHA-256) and the compiled-manifest cache (manifest
    content -> compiled manifest) are what the scenarios switch on and off.  Lark's grammar
    cache (``grammar-*.lark-cache`` files beside them) is a per-installation build product
    and is never removed.  Removing a cache that does not exist (yet) is fine.
    """

    home: Path  # $XDG_CACHE_HOME

    @property
    def digests(self) -> Path:
        return self.home / "sevmanifest" / DIGESTS_SUBDIR

    @property
    def compiled(self) -> Path:
        return self.home / "sevmanifest" / COMPILED_SUBDIR

    def empty_compiled(self) -> None:
        """As after editing every manifest: nothing compiled is reused."""
        shutil.rmtree(self.compiled, ignore_errors=True)

    def empty_all(self) -> None:
        """Cold: no digest and no compiled manifest cached (the grammar cache stays)."""
        shutil.rmtree(self.digests, ignore_errors=True)
        self.empty_compiled()

    def compiled_in_use(self) -> bool:
        return self.compiled.is_dir() and any(self.compiled.iterdir())

    def note_compiled(self, scenario: Scenario) -> None:
        if not self.compiled_in_use():
            scenario.notes.append(
                f"no compiled-manifest cache was written ({COMPILED_SUBDIR} is missing or "
                "empty): the rows with the compiled cache warm and empty measure the same thing")


def bench_env(workdir: Path) -> tuple[dict[str, str], Caches]:
    """The environment every contender runs in, and sevm's caches under it: the caller's,
    without sevm's own switches, with the grammar, digest and compiled caches of this work
    directory only; bytecode caching on, as in any normal installation (the warm-up run
    writes it), kept in the work directory rather than in the source tree."""
    drop = ("SEVM_NO_CACHE", "SEVM_DEBUG", "PYTHONDONTWRITEBYTECODE")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    cache_home = workdir / "xdg-cache"
    env.update(XDG_CACHE_HOME=str(cache_home), PYTHONPYCACHEPREFIX=str(workdir / "pycache"))
    return env, Caches(cache_home)


SEVM_MEASURE = "sevm measure"
SEVM_MEASURE_EDITED = "sevm measure, manifest just edited"
OPENSSL = "openssl dgst -sha256"
SNP = "sev-snp-measure"


def measure_scenario(inputs: Inputs, tools: Tools, env: dict[str, str],
                     caches: Caches) -> Scenario:
    art = inputs.artefacts
    argv = tools.sevm + ["measure", "--no-cache", str(inputs.one)]
    # Both rows hash every artefact byte (--no-cache: no digest cache).  The first re-measures
    # an unchanged manifest (compiled cache warm: the edited row of the round before refilled
    # it); the second runs with the compiled cache emptied first, as after an edit.
    contenders = [Contender(SEVM_MEASURE, argv),
                  Contender(SEVM_MEASURE_EDITED, argv, prepare=caches.empty_compiled)]
    targets, ratios = [], []
    if tools.openssl:
        contenders.append(Contender(OPENSSL, [tools.openssl, "dgst", "-sha256",
                                              *map(str, art.paths)]))
        targets.append(Target(SEVM_MEASURE, OPENSSL, 1.2))
        ratios.append((SEVM_MEASURE_EDITED, OPENSSL))
    if tools.snp_measure:
        contenders.append(Contender(SNP, [
            tools.snp_measure, "--mode", "seves", "--vcpus", str(VCPUS), "--vcpu-type", CPU,
            "--ovmf", str(art.firmware), "--kernel", str(art.kernel), "--initrd", str(art.initrd),
            "--append", CMDLINE, "--output-format", "hex"]))
        targets.append(Target(SEVM_MEASURE, SNP, 0.6))
        ratios.append((SEVM_MEASURE_EDITED, SNP))
    scenario = Scenario("measure", f"1. one SEV-ES variant ({VCPUS} vCPUs, measured direct "
                        "boot): sevm measure vs the hashing floor vs the peer",
                        contenders, targets, rss_limit=(SEVM_MEASURE, 40.0), ratios=ratios,
                        after=lambda: caches.note_compiled(scenario))
    json_argv = tools.sevm + ["measure", "--no-cache", "--format", "json", str(inputs.one)]
    caches.empty_compiled()
    compiled_now = capture(json_argv, env=env)
    reused = capture(json_argv, env=env)
    _agree(scenario, "sevm measure prints the same with the compiled cache empty and warm",
           compiled_now == reused)
    ours = _first_launch_digest(compiled_now)
    if tools.snp_measure:
        theirs = capture(contenders[-1].argv, env=env).strip()
        _agree(scenario, "sevm measure and sev-snp-measure print the same launch digest",
               ours == [theirs])
    if tools.openssl:
        printed = capture(contenders[2].argv, env=env)
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


SEVM_CHECK_EDITED = "sevm check, manifest just edited"
IMPORT_LARK = 'python -c "import lark"'
SEVM_CHECK = "sevm check, unchanged manifest"


def check_scenario(inputs: Inputs, tools: Tools, env: dict[str, str],
                   caches: Caches) -> Scenario:
    argv = tools.sevm + ["check", str(inputs.one)]
    lark = Contender(IMPORT_LARK, [tools.python, "-c", "import lark"])
    # The target row parses (compiled cache emptied first, as after an edit); the unchanged
    # row after it finds what the edited row compiled.
    edited = Contender(SEVM_CHECK_EDITED, argv, prepare=caches.empty_compiled)
    unchanged = Contender(SEVM_CHECK, argv)
    bare = Contender('python -c "pass" (context)', [tools.python, "-c", "pass"])
    scenario = Scenario("check", "3. sevm check on a small manifest vs importing Lark (start-up)",
                        [lark, edited, unchanged, bare], [Target(edited.label, lark.label, 1.5)],
                        ratios=[(unchanged.label, lark.label)],
                        after=lambda: caches.note_compiled(scenario))
    caches.empty_compiled()
    compiled_now = capture(argv, env=env)
    _agree(scenario, "sevm check prints the same with the compiled cache empty and warm",
           compiled_now == capture(argv, env=env))
    return scenario


def lock_scenario(inputs: Inputs, tools: Tools, env: dict[str, str], caches: Caches) -> Scenario:
    count = len(inputs.fleet)
    locks = [Path(str(p) + ".lock") for p in inputs.fleet]

    def remove_locks() -> None:
        for lock in locks:
            lock.unlink(missing_ok=True)

    def cold() -> None:
        remove_locks()
        caches.empty_all()

    def edited() -> None:
        remove_locks()
        caches.empty_compiled()

    argv = tools.sevm + ["lock", *map(str, inputs.fleet)]
    one_argv = tools.sevm + ["measure", "--no-cache", str(inputs.fleet[0])]
    # The baseline re-measures an unchanged manifest (compiled cache warm, digest cache off).
    # The lock rows before it empty the compiled cache, so an untimed run refills it first.
    one = Contender(SEVM_MEASURE + " (1 manifest)", one_argv,
                    prepare=lambda: capture(one_argv, env=env))
    # In every round: cold (both caches emptied) fills the digest cache; the middle row
    # empties only the compiled cache (every manifest just edited, images unchanged) and
    # refills it; warm finds both.
    cold_run = Contender(f"sevm lock x{count}, cold caches", argv, prepare=cold)
    middle = Contender(f"sevm lock x{count}, warm digest cache, compiled cache empty", argv,
                       prepare=edited)
    warm_run = Contender(f"sevm lock x{count}, warm caches", argv, prepare=remove_locks)
    floor = _write_floor(inputs, tools, count)
    scenario = Scenario("lock", f"4. sevm lock over {count} manifests sharing the artefacts vs "
                        "one sevm measure", [one, cold_run, middle, warm_run, floor],
                        [Target(cold_run.label, one.label, 3.0),
                         Target(warm_run.label, one.label, 1.5)],
                        ratios=[(middle.label, one.label)])

    def after() -> None:
        caches.note_compiled(scenario)
        written = {lock: lock.read_bytes() for lock in locks if lock.exists()}
        _agree(scenario, f"every run wrote all {count} lock files", len(written) == count)
        cold()
        capture(argv, env=env)
        _agree(scenario, "the locks written with warm caches are byte for byte the ones "
               "written with every cache empty",
               all(lock.exists() and lock.read_bytes() == written.get(lock) for lock in locks))

    scenario.after = after
    return scenario


# Writes ``count`` small files beside the manifests the way `sevm lock` writes
# locks (fsutil.atomic_write_many: temporary file, fsyncs together, rename), then removes
# them: the disk's share of the lock rows, which this shared machine's disk can double.
WRITE_FLOOR = """
import os, sys
from sevmanifest.fsutil import atomic_write_many
directory, count, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
targets = [os.path.join(directory, f".bench-floor-{i:04d}") for i in range(count)]
failures = atomic_write_many((t, b"x" * size) for t in targets)
for target in targets:
    os.unlink(target)
sys.exit(any(failures))
"""


def _write_floor(inputs: Inputs, tools: Tools, count: int) -> Contender:
    # 2 KiB: a lock of the benchmark's fleet is ~1.1 KiB; both are one page to the disk
    return Contender(f"writing {count} files of 2 KiB as sevm lock writes locks (context)",
                     [tools.python, "-c", WRITE_FLOOR, str(inputs.fleet[0].parent),
                      str(count), "2048"])


def _launch_digests(tools: Tools, env: dict[str, str], manifest: Path,
                    every: bool = False) -> list[str]:
    out = capture(tools.sevm + ["measure", "--no-cache", "--format", "json", str(manifest)],
                  env=env)
    return _all_launch_digests(out) if every else _first_launch_digest(out)


def _all_launch_digests(json_text: str) -> list[str]:
    return [v["launch_digest"] for vm in json.loads(json_text)["vms"] for v in vm["variants"]]


def _first_launch_digest(json_text: str) -> list[str]:
    return _all_launch_digests(json_text)[:1]


def _agree(scenario: Scenario, what: str, ok: bool) -> None:
    scenario.checks.append(what)
    if not ok:
        scenario.failures.append(what)
