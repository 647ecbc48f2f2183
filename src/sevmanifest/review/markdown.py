"""The semantic diff as a pull-request comment, rendered from ``templates/diff.md.j2``.

Users can restyle the comment by editing the template; every value it receives is
already a display string, and the ``cell``/``code`` filters make any text safe inside
a GitHub-flavoured Markdown table.
"""
from __future__ import annotations

from .diff import Kind
from .report import Report, location, show

TEMPLATE = "diff.md.j2"
MARKERS = {Kind.WEAKENS: "🔴", Kind.STRENGTHENS: "🟢", Kind.MEASUREMENT: "🟡", Kind.NEUTRAL: "⚪"}


def render_markdown(report: Report) -> str:
    import jinja2  # heavy: only when markdown is asked for

    from ..resources import templates_dir
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(templates_dir())),
                             undefined=jinja2.StrictUndefined, autoescape=False,
                             trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.filters["cell"] = cell
    env.filters["code"] = code
    return env.get_template(TEMPLATE).render(**context(report))


def context(report: Report) -> dict:
    files = []
    for fd in report.files:
        rows = [{"marker": MARKERS[c.kind], "kind": c.kind.value, "path": c.path,
                 "old": show(c.old), "new": show(c.new), "why": c.why,
                 "where": location(c, report.relpath), "fails": report.fails(c)}
                for c in fd.result.changes]
        if rows or fd.digests:
            files.append({"manifest": report.relpath(fd.manifest), "rows": rows, "digests": fd.digests})
    return {"files": files, "counts": report.counts(), "weakens": report.weakens,
            "measured": report.measured, "failed": report.failed, "fail_on": report.fail_on,
            "changes": len(report.changes)}


def cell(text: object) -> str:
    """Plain text inside a table cell: no line breaks, pipes and markup escaped."""
    out = str(text).replace("\r", " ").replace("\n", " ")
    for ch in "\\`*_[]<>|":
        out = out.replace(ch, "\\" + ch)
    return out


def code(text: object) -> str:
    """A code span inside a table cell; fences long enough for any backticks inside."""
    body = str(text).replace("\r", " ").replace("\n", " ").replace("|", "\\|")
    run = max((len(r) for r in _backtick_runs(body)), default=0)
    fence = "`" * (run + 1)
    pad = " " if body.startswith("`") or body.endswith("`") else ""
    return f"{fence}{pad}{body}{pad}{fence}"


def _backtick_runs(text: str) -> list[str]:
    runs, current = [], ""
    for ch in text:
        if ch == "`":
            current += ch
        elif current:
            runs.append(current)
            current = ""
    if current:
        runs.append(current)
    return runs
