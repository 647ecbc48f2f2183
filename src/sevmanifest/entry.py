"""The ``sevm`` console script: ``cli.main``, with ``sevm measure``'s hashing started first.

This module is what runs before anything else of sevm is loaded, so it imports nothing
itself: for ``measure`` and ``lock`` it hands the arguments to ``earlyhash`` (which starts
hashing the kernel and initrd the first manifest names, in a thread), then loads the CLI.
"""
from __future__ import annotations

import gc
import sys


def main() -> int:
    # A command is one short process that builds no garbage cycles worth collecting, while
    # the cyclic collector's passes over everything start-up allocates (modules, classes,
    # Lark's tables: ~20 000 objects) cost 4-5% of every start.  Measured (callgrind): `sevm
    # check` of an edited manifest 449 M instructions with the collector, 429 M without;
    # the 200-manifest fleet leaves 11 cyclic objects (tests/test_gc_off.py guards this), and
    # peak RSS of `sevm lock` over it is the same either way.  Forked lock workers inherit it.
    # Library callers keep Python's default.
    gc.disable()
    argv = sys.argv[1:]
    if argv[:1] in (["measure"], ["lock"]):
        from . import earlyhash
        earlyhash.start(argv[1:])
    from .cli import main as cli_main
    try:
        return cli_main(argv)
    finally:
        # The process ends now, and the interpreter's shutdown still runs one full collection
        # over everything start-up built (Lark's tables, the model's classes): 26 ms of
        # `sevm measure` and 42 ms of `sevm check` of an edited manifest (medians of 21
        # interleaved runs), only to free memory the OS takes back anyway.  Frozen objects
        # are left out of it; everything else of the shutdown (atexit, flushing the
        # standard streams, unloading modules) is unchanged.
        gc.freeze()
