"""The `sevm` console script runs with Python's cyclic garbage collector off (entry.py).

That is only sound while a run builds no garbage cycles that grow with the number of files
it handles: these tests process many manifests, good and bad, in one process with the
collector off and check that what it would have collected does not grow with the count.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from lock_support import make_many

PROBE_ENTRY = """
import gc, sys
sys.argv = ["sevm", "check", sys.argv[1]]
from sevmanifest.entry import main
status = main()
print(status, gc.isenabled())
"""

# Locks, checks against the locks, renders, and compiles broken manifests (syntax error,
# missing image, unknown import); then reports what a collection finds.
PROBE_GARBAGE = """
import contextlib, gc, io, json, sys
gc.disable()
from sevmanifest.commands.common import compile_and_report, load_manifest
from sevmanifest.lock.workflow import check_locked_files, lock_files
from sevmanifest.render import render_libvirt, render_qemu

def run(paths, broken):
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
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
    return gc.collect()

files = json.loads(sys.argv[1])
gc.collect()
warm = run(files["good"][:2], files["broken"][:3])  # imports, caches filled once
few = run(files["good"][:5], files["broken"][:3])
many = run(files["good"], files["broken"])
print(json.dumps({"warm": warm, "few": few, "many": many}))
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


def test_garbage_cycles_do_not_grow_with_the_files_handled(tmp_path):
    vms = tmp_path / "vms"
    good = [str(vms / n) for n in make_many(tmp_path, 40)]
    broken = []
    for copy in range(8):  # each kind of error several times
        for name, text in BROKEN.items():
            path = vms / f"{copy}-{name}"
            path.write_text(text)
            broken.append(str(path))
    out = subprocess.run([sys.executable, "-c", PROBE_GARBAGE,
                          json.dumps({"good": good, "broken": broken})],
                         capture_output=True, text=True, env=_env(tmp_path), timeout=300)
    assert out.returncode == 0, out.stderr
    found = json.loads(out.stdout)
    # 5 good + 3 broken files, then 40 + 24: none of them may leave a cycle behind (one
    # dict per file shows as +67; a few first-use caches are allowed)
    assert found["many"] <= found["few"] + 20, found
