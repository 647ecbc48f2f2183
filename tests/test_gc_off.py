"""The `sevm` console script runs with Python's cyclic garbage collector off (entry.py),
and freezes the heap before the interpreter's shutdown collection.

That is only sound while a run builds no garbage cycles that grow with what it handles:
these tests process many manifests, good and bad, and a wide matrix, in one process with
the collector off, and check that what it would have collected does not grow with the
number of files or of variants.  (Each command leaves a fixed ~100 cyclic objects, mostly
argparse's parser: once per process.)
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lock_support import make_many, vm_text

PROBE_ENTRY = """
import gc, sys
sys.argv = ["sevm", "check", sys.argv[1]]
from sevmanifest.entry import main
status = main()
print(status, gc.isenabled())
"""

# Locks, checks against the locks, renders, and compiles broken manifests (syntax error,
# missing image, unknown import), through the library and through the commands (each
# command once per round, as a process runs it once: its own fixed garbage, such as
# argparse's parser, is the same in every round); then reports what a collection finds.
PROBE_GARBAGE = """
import contextlib, gc, io, json, sys
gc.disable()
from sevmanifest.cli import main
from sevmanifest.commands.common import compile_and_report, load_manifest
from sevmanifest.lock.workflow import check_locked_files, lock_files
from sevmanifest.render import render_libvirt, render_qemu

def quietly(action, *args):
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        action(*args)
    return gc.collect()

def run(paths, broken):
    lock_files(paths, jobs=1)
    check_locked_files(paths, jobs=1)
    for path in paths:
        vm = load_manifest(path).vms[0]
        variant = next(vm.variants())
        render_qemu(vm, variant)
        render_libvirt(vm, variant)
    for path in broken:
        compile_and_report(path)
        lock_files([path], jobs=1)
    main(["check", *paths, *broken])
    main(["fmt", "--check", *paths, *broken])
    main(["diff", paths[0], paths[1]])
    main(["explain", paths[0]])
    main(["render", "qemu", paths[0], "--variant", "vcpus=1"])

files = json.loads(sys.argv[1])
gc.collect()
warm = quietly(run, files["good"][:2], files["broken"][:3])  # imports, caches filled once
few = quietly(run, files["good"][:5], files["broken"][:3])
many = quietly(run, files["good"], files["broken"])
narrow = quietly(main, ["measure", "--no-cache", files["narrow"]])
wide = quietly(main, ["measure", "--no-cache", files["wide"]])
print(json.dumps({"warm": warm, "few": few, "many": many, "narrow": narrow, "wide": wide}))
"""

BROKEN = {
    "syntax.sevm": 'vm "a" {\n    type sev-es\n    vcpus 4 4 }\n',
    "missing.sevm": 'vm "b" {\n    type sev\n    firmware "no-such.fd"\n}\n',
    "import.sevm": 'import "nowhere.sevm"\nvm "c" {\n    type sev\n}\n',
}


def _env(tmp_path: Path) -> dict:
    return dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"))


def test_the_console_script_turns_the_collector_off(tmp_path):
    names = make_many(tmp_path, 1)
    out = subprocess.run([sys.executable, "-c", PROBE_ENTRY, str(tmp_path / "vms" / names[0])],
                         capture_output=True, text=True, env=_env(tmp_path), timeout=120)
    assert out.stdout.split() == ["0", "False"], out.stderr


PROBE_EXIT = """
import atexit, contextlib, gc, io, sys
atexit.register(lambda: print("atexit", gc.get_freeze_count() > 10000))  # shutdown still runs
if sys.argv[1] == "library":
    from sevmanifest.cli import main
    with contextlib.redirect_stdout(io.StringIO()):
        status = main(["check", sys.argv[2]])
else:
    sys.argv = ["sevm", "check", sys.argv[2]]
    from sevmanifest.entry import main
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        status = main()
print("status", status, "frozen", gc.get_freeze_count() > 10000)
"""


@pytest.mark.parametrize("how", ["console", "library"])
@pytest.mark.parametrize("manifest", ["good", "missing"])
def test_the_console_script_freezes_the_heap_for_the_shutdown(tmp_path, how, manifest):
    """The shutdown's own collection walks only what is not frozen: the console script
    freezes everything before it returns, whatever the status; library callers keep it."""
    names = make_many(tmp_path, 1)
    path = tmp_path / "vms" / (names[0] if manifest == "good" else "missing.sevm")
    out = subprocess.run([sys.executable, "-c", PROBE_EXIT, how, str(path)],
                         capture_output=True, text=True, env=_env(tmp_path), timeout=120)
    status = "0" if manifest == "good" else "2"
    frozen = str(how == "console")
    assert out.stdout.split() == ["status", status, "frozen", frozen, "atexit", frozen], \
        out.stderr


PROBE_FAST_EXIT = """
import atexit, sys, threading, time
from sevmanifest.entry import exit_now
atexit.register(lambda: print("atexit ran"))
sys.stdout.write("x" * 100_000 + "\\n")  # still in the buffer
if sys.argv[1] == "thread":
    threading.Thread(target=lambda: (time.sleep(0.3), print("thread done"))).start()
if sys.argv[1] == "profiled":
    sys.setprofile(lambda *args: None)
exit_now(3)
sys.setprofile(None)
print("the interpreter's shutdown follows")
"""


@pytest.mark.parametrize("case", ["alone", "thread", "profiled"])
def test_the_console_scripts_exit_ends_as_the_interpreter_would(case):
    """exit_now: atexit handlers run, buffered output is written, the status is kept; with
    another thread still running, or a profiler or tracer watching (which has work left
    once the program returns), the interpreter's shutdown is left to do everything."""
    out = subprocess.run([sys.executable, "-c", PROBE_FAST_EXIT, case], capture_output=True,
                         text=True, timeout=60)
    lines = out.stdout.splitlines()
    assert lines[0] == "x" * 100_000, out.stderr
    if case == "alone":
        assert (out.returncode, lines[1:]) == (3, ["atexit ran"])
    elif case == "thread":
        assert (out.returncode, lines[1:]) == (0, ["the interpreter's shutdown follows",
                                                   "thread done", "atexit ran"])
    else:
        assert (out.returncode, lines[1:]) == (0, ["the interpreter's shutdown follows",
                                                   "atexit ran"])


def test_sevm_under_a_profiler_returns_to_it(tmp_path):
    """`python -m cProfile -m sevmanifest ...` prints its statistics after sevm's run."""
    out = subprocess.run([sys.executable, "-m", "cProfile", "-s", "cumtime", "-m", "sevmanifest",
                          "explain", "0x5"], capture_output=True, text=True, timeout=120,
                         env=_env(tmp_path))
    assert out.returncode == 0, out.stderr
    assert "function calls" in out.stdout and "ncalls" in out.stdout


def test_the_module_runs_as_the_console_script(tmp_path):
    """`python -m sevmanifest` ends through exit_now, with the command's status."""
    bad = subprocess.run([sys.executable, "-m", "sevmanifest", "check", "missing.sevm"],
                         capture_output=True, text=True, timeout=120, env=_env(tmp_path),
                         cwd=tmp_path)
    assert bad.returncode == 2 and "missing.sevm" in bad.stderr


def test_garbage_cycles_do_not_grow_with_the_files_handled(tmp_path):
    vms = tmp_path / "vms"
    good = [str(vms / n) for n in make_many(tmp_path, 40)]
    broken = []
    for copy in range(8):  # each kind of error several times
        for name, text in BROKEN.items():
            path = vms / f"{copy}-{name}"
            path.write_text(text)
            broken.append(str(path))
    (vms / "narrow.sevm").write_text(vm_text("narrow", vcpus="1"))
    (vms / "wide.sevm").write_text(vm_text("wide", vcpus=", ".join(map(str, range(1, 129)))))
    paths = {"good": good, "broken": broken, "narrow": str(vms / "narrow.sevm"),
             "wide": str(vms / "wide.sevm")}
    out = subprocess.run([sys.executable, "-c", PROBE_GARBAGE, json.dumps(paths)],
                         capture_output=True, text=True, env=_env(tmp_path), timeout=300)
    assert out.returncode == 0, out.stderr
    found = json.loads(out.stdout)
    # 5 good + 3 broken files, then 40 + 24: none of them may leave a cycle behind (one
    # dict per file shows as +67; a few first-use caches are allowed)
    assert found["many"] <= found["few"] + 20, found
    # nor may a variant: 128 of them leave what one leaves
    assert abs(found["wide"] - found["narrow"]) <= 20, found
