"""The lock document as TOML: exactly the text ``tomli_w.dumps`` gives, for the lock's fixed
shape, without tomli-w's general machinery.

Why: tomli-w decides table by table whether a value fits inline, rendering most of them
twice; for a fleet that was ~0.3 ms of each manifest's ~3 ms in ``sevm lock``.  The locks'
bytes must not change (they are committed; the same inputs give the same bytes), so this
writes the layout tomli-w 1.x produces for the document ``reference_document`` builds:

    top-level scalars, then one ``[[vms]]`` per vm: its scalars, a ``[vms.artifacts.ROLE]``
    table per artefact, a ``[[vms.variants]]`` table per variant; a blank line before each
    table header.

Anything else (another value type, an empty list, a variant short enough to be written
inline by tomli-w) is handed to tomli-w itself.  tests/test_lock_toml.py compares the two on
generated documents.
"""
from __future__ import annotations

import re

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
# TOML basic strings: escape '"', '\' and control characters other than tab (as tomli-w)
_NEEDS_ESCAPE = re.compile(r'[\x00-\x08\x0a-\x1f\x7f"\\]')
_SHORT_ESCAPES = {"\b": "\\b", "\n": "\\n", "\f": "\\f", "\r": "\\r", '"': '\\"', "\\": "\\\\"}
_INDENT = "    "
MAX_INLINE = 100  # tomli-w writes an array of tables inline when every table fits this


class _Unusual(Exception):
    """The document is not in the lock's shape: let tomli-w write it."""


def dumps(doc: dict) -> str:
    try:
        lines = _document(doc)
    except _Unusual:
        import tomli_w
        return tomli_w.dumps(doc)
    return "\n".join(lines) + "\n"


def _document(doc: dict) -> list[str]:
    vms = doc.get("vms")
    if not (isinstance(vms, list) and vms):
        raise _Unusual
    lines = _scalars({k: v for k, v in doc.items() if k != "vms"})
    if not lines:
        raise _Unusual
    for vm in vms:
        lines += _vm(vm)
    return lines


def _vm(vm) -> list[str]:
    # with variants, a vm never fits inline, so tomli-w writes ``vms`` as tables
    if not (isinstance(vm, dict) and "variants" in vm):
        raise _Unusual
    lines = ["", "[[vms]]", *_scalars({k: v for k, v in vm.items()
                                       if k not in ("artifacts", "variants")})]
    for key, value in vm.items():  # the two tables, in the document's order
        if key == "artifacts":
            lines += _artifacts(value)
        elif key == "variants":
            lines += _variants(value)
    return lines


def _artifacts(artifacts) -> list[str]:
    if not (isinstance(artifacts, dict) and artifacts):
        raise _Unusual
    lines = []
    for role, table in artifacts.items():
        if not isinstance(table, dict):
            raise _Unusual
        lines += ["", f"[vms.artifacts.{_key(role)}]", *_scalars(table)]
    return lines


def _variants(variants) -> list[str]:
    if not (isinstance(variants, list) and variants):
        raise _Unusual
    if not all(isinstance(v, dict) for v in variants):
        raise _Unusual
    tables = [_pairs(v) for v in variants]
    if all(_fits_inline(pairs) for pairs in tables):
        raise _Unusual  # tomli-w would write an inline array
    lines = []
    for pairs in tables:
        lines += ["", "[[vms.variants]]", *(f"{k} = {v}" for k, v in pairs)]
    return lines


def _fits_inline(pairs: list[tuple[str, str]]) -> bool:
    inline = "{ " + ", ".join(f"{k} = {v}" for k, v in pairs) + " }" if pairs else "{}"
    return len(_INDENT + inline + ",") <= MAX_INLINE


def _scalars(table: dict) -> list[str]:
    return [f"{k} = {v}" for k, v in _pairs(table)]


def _pairs(table: dict) -> list[tuple[str, str]]:
    return [(_key(k), _scalar(v)) for k, v in table.items()]


def _key(key) -> str:
    if not isinstance(key, str):
        raise _Unusual
    return key if _BARE_KEY.fullmatch(key) else _string(key)


def _scalar(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return _string(value)
    raise _Unusual


def _string(text: str) -> str:
    return '"' + _NEEDS_ESCAPE.sub(_escape, text) + '"'


def _escape(match: re.Match) -> str:
    char = match.group()
    return _SHORT_ESCAPES.get(char) or f"\\u{ord(char):04x}"
