"""Explaining how a lock file differs from what its manifest compiles to now.

Both sides are reference documents (``reference.reference_document``); the locked one came from
TOML that may have been edited by hand, so its shape is checked and a bad shape is reported,
never a traceback.  Every difference is one error naming the VM, the artefact or the variant.
"""
from __future__ import annotations

from ..diagnostics import Diagnostic, error
from ..model import Manifest
from .reference import ROLES, describe_variant, variant_key

MAX_VARIANT_REPORTS = 12  # per VM; beyond that a count (a new firmware changes them all)


class _Shape(Exception):
    pass


def _table(value, where: str) -> dict:
    if not isinstance(value, dict):
        raise _Shape(f"{where} is not a table")
    return value


def _tables(value, where: str) -> list[dict]:
    if not isinstance(value, list):
        raise _Shape(f"{where} is not an array of tables")
    return [_table(v, f"{where}[{i}]") for i, v in enumerate(value)]


# The keys ``sevm lock`` writes (``reference.reference_document``).  A lock with another key
# is in a format this sevm does not know: refused, not guessed at (like another lock_version).
TOP_KEYS = frozenset({"lock_version", "manifest", "vms"})
VM_KEYS = frozenset({"name", "type", "policy", "artifacts", "variants"})
ARTEFACT_KEYS = frozenset({"path", "size", "sha256"})
VARIANT_KEYS = frozenset({"vcpus", "cpu", "cpu_signature", "vmm", "legacy_vm_type",
                          "sev_features", "policy", "launch_digest", "launch_digest_base64"})


def _same(a, b) -> bool:
    """TOML's equality: ``true`` is not ``1`` and ``1.0`` is not ``1`` (as they are in Python)."""
    return _typed(a) == _typed(b)


def _typed(value):
    if isinstance(value, dict):
        return {k: _typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_typed(v) for v in value]
    return (type(value), value)


def _known_keys(table: dict, known: frozenset, where: str) -> None:
    unknown = sorted(map(repr, table.keys() - known))
    if unknown:
        raise _Shape(f"{where} has a key sevm does not write: {', '.join(unknown)}")


def _vms_by_name(doc: dict, where: str) -> dict[str, dict]:
    """The locked vms by name, every value the comparison reads checked for its shape.  A
    name twice is refused: which of the two would be the reference value?  (TOML refuses a
    key twice for the same reason; the comparison must never pick one silently.)"""
    _known_keys(doc, TOP_KEYS, "the lock")
    out = {}
    for i, vm in enumerate(_tables(doc.get("vms"), where)):
        name = vm.get("name")
        if not isinstance(name, str):
            raise _Shape(f"vms[{i}] has no name")
        if name in out:
            raise _Shape(f"vm {name!r} appears twice (vms[{i}])")
        _known_keys(vm, VM_KEYS, f"vm {name!r}")
        artefacts = _table(vm.get("artifacts"), f"vm {name!r} artifacts")
        for role, table in artefacts.items():
            if role not in ROLES:
                raise _Shape(f"vm {name!r} artifacts has an unknown role {role!r}")
            _known_keys(_table(table, f"vm {name!r} artifacts.{role}"), ARTEFACT_KEYS,
                        f"vm {name!r} artifacts.{role}")
        for j, params in enumerate(_tables(vm.get("variants"), f"vm {name!r} variants")):
            _known_keys(params, VARIANT_KEYS, f"vm {name!r} variants[{j}]")
        out[name] = vm
    return out


def _variants_by_key(vm: dict) -> dict[str, dict]:
    """The vm's variants by their naming; a variant twice is refused (as a vm twice)."""
    out = {}
    for i, params in enumerate(vm["variants"]):
        try:
            key = describe_variant(variant_key(params))
        except (KeyError, TypeError, AttributeError):
            raise _Shape(f"vm {vm['name']!r} variants[{i}] lacks its parameters") from None
        if key in out:
            raise _Shape(f"vm {vm['name']!r} variant {key} appears twice (variants[{i}])")
        out[key] = params
    return out


def compare_documents(locked: dict, current: dict, *, lock: str,
                      manifest: Manifest) -> list[Diagnostic]:
    try:
        old_vms = _vms_by_name(locked, "vms")
        old_variants = {name: _variants_by_key(vm) for name, vm in old_vms.items()}
    except _Shape as exc:
        return [error(f"{lock}: unusable lock file: {exc}", fatal_input=True,
                      notes=(f"regenerate it: run `sevm lock {manifest.file}`",))]
    new_vms = {vm["name"]: vm for vm in current["vms"]}
    spans = {vm.name: vm for vm in manifest.vms}
    out: list[Diagnostic] = []
    if not _same(locked.get("manifest"), current["manifest"]):  # a lock copied from elsewhere
        out.append(error(f"{lock}: the lock is for manifest {locked.get('manifest')!r}, not "
                         f"{current['manifest']!r}"))
    for name, new in new_vms.items():
        vm = spans.get(name)
        if name not in old_vms:
            out.append(error(f"{lock}: vm {name!r} is not in the lock (new since it was written)",
                             vm.span if vm else None))
            continue
        old = old_vms[name]
        prefix = f"{lock}: vm {name!r}"
        out += _compare_fields(prefix, old, new, ("type", "policy"))
        out += _compare_artefacts(prefix, old["artifacts"], new["artifacts"], vm)
        out += _compare_variants(prefix, old_variants[name], _variants_by_key(new))
    for name in sorted(old_vms.keys() - new_vms.keys()):
        out.append(error(f"{lock}: locked vm {name!r} is no longer in {manifest.file}"))
    return out


def _compare_fields(prefix: str, old: dict, new: dict, fields: tuple[str, ...]) -> list[Diagnostic]:
    return [error(f"{prefix}: {field} changed from {old.get(field)!r} to {new[field]!r}")
            for field in fields if not _same(old.get(field), new[field])]


def _compare_artefacts(prefix: str, old: dict, new: dict, vm) -> list[Diagnostic]:
    out = []
    spans = {a.role: a.span for a in vm.artefacts} if vm else {}
    for role in ROLES:
        before, after = old.get(role), new.get(role)
        if _same(before, after):
            continue
        if not isinstance(before, dict):
            out.append(error(f"{prefix}: {role} {after['path']} is not in the lock",
                             spans.get(role)))
        elif after is None:
            out.append(error(f"{prefix}: locked {role} {before.get('path')} is no longer used"))
        else:
            out.append(_artefact_change(prefix, role, before, after, spans.get(role)))
    return out


def _artefact_change(prefix: str, role: str, before: dict, after: dict, span) -> Diagnostic:
    if not _same(before.get("sha256"), after["sha256"]):
        return error(f"{prefix}: {role} {after['path']} changed since it was locked", span,
                     notes=(f"locked sha256 {before.get('sha256')} ({before.get('size')} bytes)",
                            f"now    sha256 {after['sha256']} ({after['size']} bytes)"))
    if not _same(before.get("path"), after["path"]):
        return error(f"{prefix}: {role} path changed from {before.get('path')!r} to "
                     f"{after['path']!r} (same content)", span)
    return error(f"{prefix}: {role} {after['path']}: locked size {before.get('size')!r} "
                 f"but the file has {after['size']} bytes", span)


def _compare_variants(prefix: str, old: dict[str, dict], new: dict[str, dict]) -> list[Diagnostic]:
    messages = []
    for key, params in new.items():
        before = old.get(key)
        if before is None:
            messages.append((f"new variant {key} is not in the lock "
                             f"(launch digest {params['launch_digest']})", ()))
        elif not _same(before, params):
            messages.append(_variant_change(key, before, params))
    messages += [(f"locked variant {key} no longer exists", ()) for key in sorted(old.keys() - new.keys())]
    out = [error(f"{prefix}: {text}", notes=notes) for text, notes in messages[:MAX_VARIANT_REPORTS]]
    if len(messages) > MAX_VARIANT_REPORTS:
        out.append(error(f"{prefix}: … and {len(messages) - MAX_VARIANT_REPORTS} more variant "
                         f"differences ({len(messages)} in all)"))
    return out


def _variant_change(key: str, before: dict, after: dict) -> tuple[str, tuple[str, ...]]:
    if not _same(before.get("launch_digest"), after["launch_digest"]):
        return (f"variant {key}: launch digest changed",
                (f"locked {before.get('launch_digest')}", f"now    {after['launch_digest']}"))
    fields = sorted(k for k in before.keys() | after.keys() if not _same(before.get(k), after.get(k)))
    notes = tuple(f"{k}: locked {before.get(k)!r}, now {after.get(k)!r}" for k in fields)
    return f"variant {key}: {', '.join(fields)} changed", notes
