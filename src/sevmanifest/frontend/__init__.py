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

__all__ = ["Compilation", "compile_file", "compile_text"]


def __getattr__(name: str):
    # Imported on first use: ``frontend.source`` and friends must be importable without
    # loading Lark (the compiled-manifest cache reads sources without parsing them).
    if name in __all__:
        from . import compile as _compile
        return getattr(_compile, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
