"""Stage 2: imports and templates.

Reads the root manifest and everything it imports (paths relative to the importing
file), then flattens each ``vm`` with its ``extends`` chain: the child's settings
override the template's, and blocks (``policy``, ``host``, ``launch``) merge field by
field.  A raw ``policy 0x…`` replaces the inherited policy; a ``policy { }`` block
refines it.
"""
from __future__ import annotations

import dataclasses
import os
from typing import NamedTuple

from ..diagnostics import Diagnostic, error
from ..model import Span
from . import ast
from .parse import parse_text
from .source import read_source
from .strings import unprintable

MAX_IMPORT_DEPTH = 16
MAX_IMPORTED_FILES = 256
MAX_EXTENDS_DEPTH = 32


class Loaded:
    """What ``load`` read: the root document, every document and source text by file name,
    and the problems found.  (Plain classes and named tuples in the front end: dataclasses
    cost ~1 ms each of every parse's start-up.)"""

    def __init__(self, root: ast.Document | None):
        self.root = root
        self.documents: dict[str, ast.Document] = {}
        self.sources: dict[str, str] = {}
        self.diagnostics: list[Diagnostic] = []


class ResolvedVM(NamedTuple):
    decl: ast.Decl
    settings: dict[str, ast.Setting]
    blocks: dict[str, dict[str, ast.Setting]]  # "host" | "policy" | "launch" -> key -> setting
    policy_raw: ast.Setting | None
    chain: tuple[ast.Decl, ...]  # outermost template first, the vm itself last


def load(path: str, text: str | None = None) -> Loaded:
    """Parse ``path`` and, recursively, every file it imports."""
    loaded = Loaded(root=None)
    loaded.root = _load(path, loaded, stack=(), origin=None, text=text)
    return loaded


def _load(path: str, loaded: Loaded, stack: tuple[str, ...], origin: Span | None,
          text: str | None = None) -> ast.Document | None:
    if path in loaded.documents:
        return loaded.documents[path]
    if text is None:
        text, problem = read_source(path, origin)
        if problem:
            loaded.diagnostics.append(problem)
            return None
    loaded.sources[path] = text
    document, problems = parse_text(text, path)
    if origin is not None:  # a file that is no manifest at all: at the import naming it
        problems = [d if d.span is not None else dataclasses.replace(d, span=origin)
                    for d in problems]
    loaded.diagnostics.extend(problems)
    if document is None:
        return None
    loaded.documents[path] = document
    for item in document.items:
        if isinstance(item, ast.Import):
            _follow_import(item, path, loaded, stack + (os.path.realpath(path),))
    return document


def _follow_import(item: ast.Import, importer: str, loaded: Loaded, stack: tuple[str, ...]):
    if not item.path or "\0" in item.path:  # the OS cannot open such a path at all
        loaded.diagnostics.append(error("import path is empty or contains a NUL byte", item.span,
                                        fatal_input=True))
        return
    target = os.path.normpath(os.path.join(os.path.dirname(importer), item.path))
    if os.path.realpath(target) in stack:
        loaded.diagnostics.append(error(f"import cycle: {target} imports itself through "
                                        f"{' -> '.join(stack)}", item.span))
    elif len(stack) >= MAX_IMPORT_DEPTH:
        loaded.diagnostics.append(error(f"imports nest deeper than {MAX_IMPORT_DEPTH} levels",
                                        item.span, fatal_input=True))
    elif len(loaded.documents) >= MAX_IMPORTED_FILES and target not in loaded.documents:
        loaded.diagnostics.append(error(f"more than {MAX_IMPORTED_FILES} files in one compilation "
                                        "(the manifest and everything it imports)",
                                        item.span, fatal_input=True))
    else:
        _load(target, loaded, stack, item.span)


def templates_in_scope(loaded: Loaded) -> tuple[dict[str, ast.Decl], list[Diagnostic]]:
    """Every template of every loaded file, by name; a name declared twice is an error."""
    found: dict[str, ast.Decl] = {}
    problems = []
    for document in loaded.documents.values():
        for decl in document.items:
            if not isinstance(decl, ast.Decl) or decl.kind != "template":
                continue
            if decl.name in found:
                first = found[decl.name].name_span
                problems.append(error(f"template {decl.name!r} is already declared at {first}",
                                      decl.name_span))
            else:
                found[decl.name] = decl
    return found, problems


def resolve(loaded: Loaded) -> tuple[list[ResolvedVM], list[Diagnostic]]:
    """Flatten every vm of the root document with its templates."""
    if loaded.root is None:
        return [], []
    templates, problems = templates_in_scope(loaded)
    for document in loaded.documents.values():
        for decl in document.items:
            if isinstance(decl, ast.Decl):
                problems.extend(_unprintable_name(decl))
                problems.extend(_duplicates_in(decl))
    # A template's broken chain is an error even when no vm uses it (a file of templates
    # is checked on its own); it is reported once, where the chain breaks.
    broken: set[str] = set()  # one error per cycle and per unknown parent
    reported: set[Span | None] = set()
    for decl in loaded.root.items:
        if isinstance(decl, ast.Decl) and decl.kind == "template" and decl.name not in broken:
            chain, chain_problems = _chain(decl, templates)
            if chain is None:
                broken.update(_ancestry(decl, templates))
                problems.extend(d for d in chain_problems if d.span not in reported)
                reported.update(d.span for d in chain_problems)
    vms, seen = [], {}
    for decl in loaded.root.items:
        if not isinstance(decl, ast.Decl) or decl.kind != "vm":
            continue
        if decl.name in seen:
            problems.append(error(f"vm {decl.name!r} is already declared at {seen[decl.name]}",
                                  decl.name_span))
            continue
        seen[decl.name] = decl.name_span
        chain, chain_problems = _chain(decl, templates)
        problems.extend(d for d in chain_problems if d.span not in reported)
        if chain is not None:
            vms.append(_merge(chain))
    return vms, problems


def _chain(decl: ast.Decl, templates: dict[str, ast.Decl]):
    chain = [decl]
    current = decl
    while current.extends is not None:
        parent = templates.get(current.extends)
        if parent is None:
            known = ", ".join(sorted(templates)) or "none in scope"
            return None, [error(f"unknown template {current.extends!r} (templates: {known}); "
                                "templates come from this file or its imports", current.extends_span)]
        if parent in chain:
            names = " -> ".join([d.name for d in chain] + [parent.name])
            return None, [error(f"template cycle: {names}", current.extends_span)]
        if len(chain) > MAX_EXTENDS_DEPTH:
            return None, [error(f"extends chain longer than {MAX_EXTENDS_DEPTH}", current.extends_span)]
        chain.append(parent)
        current = parent
    return tuple(reversed(chain)), []


def _ancestry(decl: ast.Decl, templates: dict[str, ast.Decl]) -> set[str]:
    names: set[str] = set()
    current: ast.Decl | None = decl
    while current is not None and current.name not in names and len(names) <= MAX_EXTENDS_DEPTH:
        names.add(current.name)
        current = templates.get(current.extends) if current.extends is not None else None
    return names


def _merge(chain: tuple[ast.Decl, ...]) -> ResolvedVM:
    settings: dict[str, ast.Setting] = {}
    blocks: dict[str, dict[str, ast.Setting]] = {"host": {}, "policy": {}, "launch": {}}
    policy_raw = None
    for decl in chain:
        for item in decl.body:
            if isinstance(item, ast.Block):
                blocks[item.key].update((s.key, s) for s in item.settings)
            elif item.key == "policy":  # raw value: replaces everything inherited
                policy_raw = item
                blocks["policy"].clear()
            else:
                settings[item.key] = item
    return ResolvedVM(chain[-1], settings, blocks, policy_raw, chain)


def _unprintable_name(decl: ast.Decl) -> list[Diagnostic]:
    """A name is printed by every command, into terminals, CI logs and review comments, and
    names a libvirt domain: a line break there could forge a CI log line ("::error ..."), an
    escape sequence rewrite a terminal, a bidi override make a reviewer misread the name."""
    if not decl.name:
        return [error(f"{decl.kind} name is empty", decl.name_span)]
    bad = unprintable(decl.name, name=True)
    if bad is None:
        return []
    return [error(f"{decl.kind} name {decl.name!r} contains {bad}: a name is printable text "
                  "(no control, format or separator characters but the space)", decl.name_span)]


def _duplicates_in(decl: ast.Decl) -> list[Diagnostic]:
    problems = []
    seen: dict[str, Span] = {}
    for item in decl.body:
        key = f"{item.key} {{ }}" if isinstance(item, ast.Block) else item.key
        if item.key == "policy":
            key = "policy"  # a raw policy and a policy block contradict each other
        span = item.span if isinstance(item, ast.Block) else item.key_span
        if key in seen:
            problems.append(error(f"{item.key!r} is set twice in {decl.kind} {decl.name!r} "
                                  f"(first at {seen[key]})", span))
        else:
            seen[key] = span
        if isinstance(item, ast.Block):
            problems.extend(_duplicates_in_block(item))
    return problems


def _duplicates_in_block(block: ast.Block) -> list[Diagnostic]:
    problems, seen = [], {}
    for setting in block.settings:
        if setting.key in seen:
            problems.append(error(f"{setting.key!r} is set twice in the {block.key} block "
                                  f"(first at {seen[setting.key]})", setting.key_span))
        else:
            seen[setting.key] = setting.key_span
    return problems
