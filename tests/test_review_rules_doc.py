"""docs/rules.md documents every lint rule in RULES, exactly (id, name, severity, rationale)."""
from __future__ import annotations

import re
from pathlib import Path

from sevmanifest.frontend.lint import RULES

DOC = Path(__file__).resolve().parent.parent / "docs" / "rules.md"


def _rows() -> dict[str, list[str]]:
    rows = {}
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if re.match(r"\| SEVM\d+ \|", line):
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
            rows[cells[0]] = [re.sub(r"\\(.)", r"\1", c).replace("`", "") for c in cells]
    return rows


def test_every_rule_is_documented_exactly():
    rows = _rows()
    for rule in RULES:
        assert rule.id in rows, f"{rule.id} missing from docs/rules.md"
        _id, name, severity, rationale, advice = rows[rule.id]
        assert (name, severity) == (rule.name, rule.severity.value), rule.id
        assert rationale == rule.rationale, rule.id
        assert advice, rule.id


def test_no_unknown_rules_documented():
    assert set(_rows()) == {rule.id for rule in RULES}
