"""Every input that once crashed the front end or gave a wrong result (tests/regressions).

Each file starts with ``# regression: what went wrong`` and ``# expect: exit N [at
LINE:COL: message fragment] [policy 0xVALUE]``.  New crashers from the fuzz run are added
here as they are found (docs/robustness.md).
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from frontend_support import check_fmt_keeps_meaning, check_outcome, errors, sevm
from sevmanifest.diagnostics import exit_code
from sevmanifest.frontend import compile_file

CORPUS = Path(__file__).resolve().parent / "regressions"
EXPECT = re.compile(r"^# expect: exit (\d)(?: at (\d+):(\d+): (.*?))?(?: policy (0x[0-9a-f]+))?$",
                    re.MULTILINE)
FILES = sorted(CORPUS.glob("*.sevm"))


def test_corpus_is_not_empty():
    assert len(FILES) >= 10


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_regression(path):
    header = EXPECT.search(path.read_text(encoding="utf-8", errors="replace"))
    assert header, f"{path.name} has no '# expect:' line"
    status, line, column, fragment, policy = header.groups()
    result = compile_file(str(path))
    check_outcome(result)
    check_fmt_keeps_meaning(str(path))
    assert exit_code(result.diagnostics) == int(status), [d.message for d in result.diagnostics]
    if line is not None:
        first = errors(result)[0]
        assert (first.span.line, first.span.column) == (int(line), int(column)), first
        assert fragment in first.message, first.message
    if policy is not None:
        assert result.manifest.vms[0].policy.value == int(policy, 16)


def test_corpus_through_the_cli():
    run = sevm("check", *map(str, FILES), cwd=CORPUS)
    stderr = run.stderr.decode("utf-8", "replace")
    assert run.returncode == 2 and "Traceback" not in stderr and "internal error" not in stderr
    for path in FILES:
        status = EXPECT.search(path.read_text(encoding="utf-8", errors="replace")).group(1)
        if status != "0":
            assert f"{path}:" in stderr, path.name
