"""The compiler front end: parse -> resolve -> lower (+ checks) -> lint -> ``model.Manifest``.

    from sevmanifest.frontend import compile_file
    result = compile_file("web.sevm")
    if result.ok:
        for vm in result.manifest.vms: ...
    else:
        for d in result.diagnostics: print(d)

Each stage is a function of the previous stage's output; nothing here reads artefact
bytes (firmware checks belong to ``sevmanifest.measure``).
"""
from __future__ import annotations

from .compile import Compilation, compile_file, compile_text

__all__ = ["Compilation", "compile_file", "compile_text"]
