"""The ``sevm`` command: ``run`` is the console script (``python -m sevmanifest`` too), which
is ``main`` (``cli.main`` with ``sevm measure``'s hashing started first) and then the end of
the process without the interpreter's teardown.

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
        # are left out of it (when ``run`` leaves the shutdown to the interpreter).
        gc.freeze()


def run() -> int:
    """The console script: ``main``, then ``exit_now``."""
    return exit_now(main())


def exit_now(status: int) -> int:
    """End the process with ``status`` the way the interpreter's shutdown would, without
    its last step: tearing down every module and object one by one, ~10 ms of `sevm
    measure` (medians of 21 interleaved runs: 204 ms against 216 ms) for memory the OS
    takes back anyway.  What the shutdown does before that is done here in its order:
    waiting for other threads (here: only when none runs, else the interpreter does all of
    it), the atexit handlers, flushing the standard streams (when that fails, the
    interpreter's shutdown reports it as it always has).  Every file sevm writes is closed
    before its command returns (fsutil.atomic_write; tests/test_hostile_output.py), so no
    buffered data waits for a finalizer.  Under a tracer or profiler (``coverage run``,
    ``python -m cProfile``), which still has work to do once the program returns, the exit
    is left to the interpreter too.  Returns ``status`` when it leaves the exit to the
    interpreter."""
    import atexit
    import os
    import threading
    others = [t for t in threading.enumerate() if t is not threading.current_thread()
              and not t.daemon]
    if others or threading.current_thread() is not threading.main_thread() \
            or not isinstance(status, int) or not 0 <= status <= 255 or _observed():
        return status
    atexit._run_exitfuncs()  # what Py_FinalizeEx runs; it clears them too
    try:
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:
                stream.flush()
    except BaseException:  # noqa: BLE001 - the interpreter's flush reports it, as before
        return status
    os._exit(status)


def _observed() -> bool:
    """A tracer, a profiler or (Python 3.12+) a ``sys.monitoring`` tool is watching."""
    if sys.gettrace() is not None or sys.getprofile() is not None:
        return True
    monitoring = getattr(sys, "monitoring", None)
    return monitoring is not None and any(
        monitoring.get_tool(tool) is not None for tool in range(6))
