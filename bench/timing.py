"""Running commands and measuring them: wall time, peak RSS and CPU time of each run.

Wall time is taken around the child here.  CPU time comes from ``os.wait4`` (the child's
own rusage, including the children it waited for).  Peak RSS cannot come from there: Python
starts children with vfork, and Linux carries the RSS high-water mark of the address space
an ``exec`` replaces (ours, 15-25 MiB) into the child's ``ru_maxrss``.  So each command runs
under GNU ``/usr/bin/time -f %M``, a small C program that forks a clean child and reports its
peak RSS (time's own start adds ~1 ms of wall time to every contender alike).  Without
``/usr/bin/time`` the wait4 figure is reported and marked as an upper bound.

Contenders of one scenario run interleaved (A B C A B C ...), so a burst of load from
elsewhere hits all of them alike, after one untimed warm-up run each (page cache, Lark's
grammar cache, lazily built state).
"""
from __future__ import annotations

import os
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence


@dataclass(frozen=True)
class Sample:
    wall: float  # seconds
    cpu: float  # user + system seconds, the process and the children it waited for
    max_rss_kib: int  # peak resident set size of the largest process in the tree


@dataclass
class Contender:
    """One command line of a scenario; ``prepare`` runs (untimed) before every run."""

    label: str
    argv: Sequence[str]
    prepare: Callable[[], None] | None = None
    cwd: str | None = None
    samples: list[Sample] = field(default_factory=list)

    @property
    def wall(self) -> float:
        return statistics.median(s.wall for s in self.samples)

    @property
    def cpu(self) -> float:
        return statistics.median(s.cpu for s in self.samples)

    @property
    def rss_mib(self) -> float:
        return statistics.median(s.max_rss_kib for s in self.samples) / 1024

    @property
    def spread(self) -> tuple[float, float]:
        walls = [s.wall for s in self.samples]
        return min(walls), max(walls)


class CommandFailed(RuntimeError):
    pass


GNU_TIME = "/usr/bin/time"
RSS_IS_EXACT = os.access(GNU_TIME, os.X_OK)


def run_once(argv: Sequence[str], *, env: dict[str, str], cwd: str | None = None) -> Sample:
    """Run ``argv`` to completion with output discarded; raise CommandFailed on exit != 0."""
    with tempfile.NamedTemporaryFile("r", prefix="sevm-bench-rss-") as rss:
        wrapped = [GNU_TIME, "-f", "%M", "-o", rss.name, *argv] if RSS_IS_EXACT else list(argv)
        sample = _run(wrapped, argv, env, cwd)
        if RSS_IS_EXACT:
            sample = Sample(sample.wall, sample.cpu, int(rss.read().split()[-1]))
    return sample


def _run(wrapped: list[str], argv: Sequence[str], env: dict[str, str], cwd: str | None) -> Sample:
    start = time.perf_counter()
    proc = subprocess.Popen(wrapped, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    # wait4 instead of Popen.wait: it returns the child's own rusage.  stderr is a pipe,
    # so read it before reaping (a chatty child could otherwise block on a full pipe).
    stderr = proc.stderr.read()
    proc.stderr.close()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)  # so Popen does not reap again
    if proc.returncode != 0:
        raise CommandFailed(f"{' '.join(argv)} exited with {proc.returncode}:\n"
                            f"{stderr.decode(errors='replace')[-2000:]}")
    return Sample(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss)


def measure(contenders: Sequence[Contender], *, runs: int, env: dict[str, str],
            pause: float = 0.0) -> None:
    """Fill each contender's ``samples`` with ``runs`` interleaved runs (after a warm-up).

    ``pause``: seconds to wait before each timed run (after its ``prepare``).  ext4 does not
    reuse an inode within 60 s of its deletion and scans past every such inode on each file
    it creates, so back-to-back runs that replace hundreds of files (``sevm lock``) slow
    down each other's file creation (docs/benchmarks.md, Conditions)."""
    for round_ in range(runs + 1):
        for c in contenders:
            if c.prepare is not None:
                c.prepare()
            if pause and round_ > 0:
                time.sleep(pause)
            sample = run_once(c.argv, env=env, cwd=c.cwd)
            if round_ > 0:  # round 0 is the warm-up
                c.samples.append(sample)


def capture(argv: Sequence[str], *, env: dict[str, str], cwd: str | None = None) -> str:
    """Standard output of one untimed run (for checking that contenders agree)."""
    done = subprocess.run(list(argv), env=env, cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise CommandFailed(f"{' '.join(argv)} exited with {done.returncode}:\n"
                            f"{done.stderr[-2000:]}")
    return done.stdout
