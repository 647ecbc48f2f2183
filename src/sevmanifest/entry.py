"""The ``sevm`` console script: ``cli.main``, with ``sevm measure``'s hashing started first.

This module is what runs before anything else of sevm is loaded, so it imports nothing
itself: for ``measure`` it hands the arguments to ``earlyhash`` (which starts hashing the
kernel and initrd of an unchanged manifest in a thread), then loads the CLI.
"""
from __future__ import annotations

import sys


def main() -> int:
    argv = sys.argv[1:]
    if argv[:1] == ["measure"]:
        from . import earlyhash
        earlyhash.start(argv[1:])
    from .cli import main as cli_main
    return cli_main(argv)
