"""Rendering a semantic diff: terminal text, JSON, GitHub workflow annotations.

Markdown (a pull-request comment) is rendered from ``templates/diff.md.j2`` by
``markdown.py``.  All formats take the same ``Report``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Callable

from ..diagnostics import escape_unprintable
from .diff import Change, DiffResult, Kind
from .digests import VmDigests

FAIL_ON = ("weaken", "measurement", "any")


@dataclass(frozen=True)
class FileDiff:
    manifest: str  # the manifest as the user named it (NEW side, or OLD when deleted)
    result: DiffResult
    digests: tuple[VmDigests, ...] = ()


@dataclass(frozen=True)
class Report:
    files: tuple[FileDiff, ...]
    fail_on: str | None = None
    with_digests: bool = False
    # maps a span's file to the path annotations should name (relative to the repository)
    relpath: Callable[[str], str] = field(default=lambda p: p, compare=False)

    @property
    def changes(self) -> list[Change]:
        return [c for f in self.files for c in f.result.changes]

    @property
    def weakens(self) -> bool:
        return any(c.kind is Kind.WEAKENS for c in self.changes)

    @property
    def measured(self) -> bool:
        return any(c.measured for c in self.changes)

    def fails(self, change: Change) -> bool:
        """Whether ``change`` reaches the --fail-on threshold (a ladder: each level
        includes the ones before it)."""
        if self.fail_on == "any":
            return True
        if self.fail_on == "measurement":
            return change.kind is Kind.WEAKENS or change.measured
        return self.fail_on == "weaken" and change.kind is Kind.WEAKENS

    @property
    def failed(self) -> bool:
        return any(self.fails(c) for c in self.changes)

    def counts(self) -> str:
        """"4 changes: 3 weakens, 1 neutral" (or "no semantic change")."""
        changes = self.changes
        if not changes:
            return "no semantic change"
        counts = ", ".join(f"{n} {k.value}" for k in Kind
                           if (n := sum(1 for c in changes if c.kind is k)))
        return f"{len(changes)} change{'' if len(changes) == 1 else 's'}: {counts}"

    def summary(self) -> str:
        if not self.changes:
            return self.counts()
        verdict = ("weakens the launch policy" if self.weakens else
                   "changes the reference values" if self.measured else
                   "does not change what attestation accepts")
        return f"{self.counts()}; this {verdict}"


def location(change: Change, relpath: Callable[[str], str] = lambda p: p) -> str | None:
    span = change.span
    return f"{relpath(span.file)}:{span.line}:{span.column}" if span else None


def show(value: str | None) -> str:
    return "(absent)" if value is None else value


# ---- text ---------------------------------------------------------------------------

_COLOURS = {Kind.WEAKENS: "1;31", Kind.STRENGTHENS: "32", Kind.MEASUREMENT: "33",
            Kind.NEUTRAL: "2"}


def render_text(report: Report, *, colour: bool = False) -> str:
    def paint(text: str, code: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if colour else text

    lines: list[str] = []
    for fd in report.files:
        if not fd.result.changes and not fd.digests:
            continue
        # (file names come from the repository under review: "x\n::error ...sevm" must not
        # become a workflow command in the CI log this is printed to)
        lines.append(paint(f"--- {escape_unprintable(fd.manifest)}", "1"))
        for c in fd.result.changes:
            where = location(c, escape_unprintable)
            head = f"{where}: " if where else ""
            lines.append(f"{head}{paint(c.kind.value, _COLOURS[c.kind])}: {c.path}: "
                         f"{show(c.old)} -> {show(c.new)}")
            lines.append(f"    {c.why}")
        lines.extend(_digest_text(d) for d in fd.digests)
    lines.append(report.summary())
    return "\n".join(lines) + "\n"


def _digest_text(table: VmDigests) -> str:
    if table.unavailable:
        return f"launch digests: {table.unavailable}"
    out = [f"launch digests of vm {table.vm} (GCTX.LD per variant):"]
    for row in table.rows:
        out.append(f"  {row.variant}")
        if row.old == row.new:
            out.append(f"    unchanged {row.old}")
        else:
            out.append(f"    old {row.old or '(no such variant)'}")
            out.append(f"    new {row.new or '(no such variant)'}")
    return "\n".join(out)


# ---- JSON (shape fixed by the CLI spec; extra keys documented in docs/review.md) ---------

def render_json(report: Report) -> str:
    changes = []
    for fd in report.files:
        for c in fd.result.changes:
            span = c.span
            changes.append({
                "path": c.path, "old": c.old, "new": c.new, "kind": c.kind.value, "why": c.why,
                "measured": c.measured, "manifest": fd.manifest,
                "file": span.file if span else None,
                "line": span.line if span else None, "column": span.column if span else None,
            })
    out: dict = {"changes": changes, "weakens": report.weakens}
    if report.with_digests:
        out["digests"] = [_digest_json(d) for fd in report.files for d in fd.digests]
    # ASCII escapes (json's default): a path byte that is not UTF-8 stays valid JSON
    return json.dumps(out, indent=2) + "\n"


def _digest_json(table: VmDigests) -> dict:
    return {"vm": table.vm, "unavailable": table.unavailable,
            "variants": [{"variant": r.variant, "old": r.old, "new": r.new} for r in table.rows]}


# ---- GitHub workflow commands -----------------------------------------------------------

def render_github(report: Report) -> str:
    lines = []
    for c in report.changes:
        level = ("error" if report.fails(c) else
                 "warning" if c.kind is Kind.WEAKENS or c.measured else "notice")
        props = []
        if c.span:
            s = c.span
            props += [f"file={_prop(report.relpath(s.file))}", f"line={s.line}", f"col={s.column}"]
            if s.end_line == s.line and s.end_column > s.column:
                props.append(f"endColumn={s.end_column}")
        props.append(f"title={_prop(f'sevm diff: {c.kind.value} {c.path}')}")
        message = f"{c.path}: {show(c.old)} -> {show(c.new)}: {c.why}"
        lines.append(f"::{level} {','.join(props)}::{_data(message)}")
    return "".join(line + "\n" for line in lines)


def _data(text: str) -> str:
    # GitHub's escaping for workflow command data and properties (actions/toolkit, command.ts)
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _prop(text: str) -> str:
    return _data(text).replace(":", "%3A").replace(",", "%2C")
