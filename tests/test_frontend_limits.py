"""Resource bounds of the front end on hostile input: time and memory per input byte.

Shapes that cost little per byte (long strings, blank lines, comments) must stay nearly
constant in memory; token-dense shapes (long lists, thousands of blocks) are bounded by
the parser's tokens (~400 bytes of memory per input byte) and by the size limit.
"""
from __future__ import annotations

import time
import tracemalloc

import pytest

from frontend_support import check_outcome, write
from sevmanifest.diagnostics import cap_for_display
from sevmanifest.frontend import compile_file
from sevmanifest.frontend.source import MAX_MANIFEST_BYTES

FW = 'vm "a" {\n    firmware "f"\n'


def fill(size: int, unit: str, head: str = "", tail: str = "") -> str:
    return head + unit * ((size - len(head) - len(tail)) // len(unit)) + tail


CHEAP = {  # memory must not grow with these (possessive token patterns)
    "long-string": lambda n: fill(n, "a", FW + '    cmdline "', '"\n}\n'),
    "long-escaped-string": lambda n: fill(n, "\\t", FW + '    cmdline "', '"\n}\n'),
    "bad-escapes": lambda n: fill(n, "\\q", FW + '    cmdline "', '"\n}\n'),
    "blank-lines": lambda n: fill(n, "\n", FW, "}\n"),
    "crlf-blank-lines": lambda n: fill(n, "\r\n", FW, "}\n"),
    "comment-lines": lambda n: fill(n, "# comment\n", FW, "}\n"),
    "one-long-comment": lambda n: fill(n, "#", FW + "    ", "\n}\n"),
    "long-number": lambda n: fill(n, "9", FW + "    vcpus ", "\n}\n"),
    "long-hex-number": lambda n: fill(n, "f", FW + "    vcpus 0x", "\n}\n"),
    "unterminated-string": lambda n: fill(n, "a", FW + '    cmdline "', "\n}\n"),
}
DENSE = {  # the most tokens per byte
    "vcpus-list": lambda n: fill(n, "1,", FW + "    vcpus ", "1\n}\n"),
    "many-vms": lambda n: _vms(n),
    "duplicate-settings": lambda n: fill(n, '    machine "q"\n', FW, "}\n"),
    "template-chain": lambda n: "".join(f'template "t{i}" extends "t{i + 1}" {{\n}}\n'
                                        for i in range(n // 40)),
    "braces": lambda n: "{" * n,
    "nested-blocks": lambda n: fill(n, "host {\n", FW),
}


def _vms(size: int) -> str:
    out, total, i = [], 0, 0
    while True:
        block = f'vm "v{i}" {{\n firmware "f"\n}}\n'
        if total + len(block) > size:
            return "".join(out)
        out.append(block)
        total, i = total + len(block), i + 1


def measure(path) -> tuple[float, int]:
    tracemalloc.start()
    started = time.perf_counter()
    try:
        result = compile_file(str(path))
        elapsed = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    check_outcome(result)
    return elapsed, peak


# (shape, input size, allowed peak bytes per input byte): before the possessive token
# patterns a 64 KiB string took ~10 MiB, 64 KiB of blank lines ~25 MiB
BUDGETS = [(name, make, 64 << 10, 16) for name, make in sorted(CHEAP.items())] + [
    (name, make, 16 << 10, 600) for name, make in sorted(DENSE.items())]


@pytest.mark.parametrize("shape, make, size, per_byte", BUDGETS, ids=[b[0] for b in BUDGETS])
def test_memory_and_time_per_input_byte(tmp_path, shape, make, size, per_byte):
    elapsed, peak = measure(write(tmp_path, "m.sevm", make(size)))
    assert peak < (2 << 20) + per_byte * size, f"{shape}: peak {peak / 2**20:.1f} MiB"
    assert elapsed < 10


def test_the_worst_shape_at_the_size_limit_is_bounded(tmp_path):
    text = DENSE["many-vms"](MAX_MANIFEST_BYTES - 64)
    assert len(text.encode()) <= MAX_MANIFEST_BYTES
    path = write(tmp_path, "m.sevm", text)
    started = time.perf_counter()
    result = compile_file(str(path))
    elapsed = time.perf_counter() - started
    check_outcome(result)
    assert elapsed < 30, f"{elapsed:.1f} s"  # ~2-4 s on a loaded 2-core machine
    # every warning is kept for the lint configuration; what a command prints is capped
    assert cap_for_display(result.diagnostics)[-1].message.endswith("more diagnostics not shown")


def test_documented_limits_match_the_code(repo):
    from sevmanifest.frontend.compile import MAX_DIAGNOSTICS
    from sevmanifest.frontend.lower import MAX_VCPUS
    from sevmanifest.frontend.parse import MAX_LIST_VALUES, MAX_NUMBER_DIGITS
    from sevmanifest.frontend.resolve import MAX_EXTENDS_DEPTH, MAX_IMPORT_DEPTH, MAX_IMPORTED_FILES
    from sevmanifest.frontend.strings import MAX_ESCAPE_ERRORS
    doc = (repo / "docs" / "language.md").read_text()
    rows = {
        "manifest file": f"{MAX_MANIFEST_BYTES >> 10} KiB", "import nesting": f"{MAX_IMPORT_DEPTH} levels",
        "files per compilation": f"{MAX_IMPORTED_FILES} ", "extends chain": f"{MAX_EXTENDS_DEPTH} templates",
        "number literal": f"{MAX_NUMBER_DIGITS} digits", "list": f"{MAX_LIST_VALUES} values",
        "vcpus": f"1–{MAX_VCPUS}", "invalid escapes reported": f"{MAX_ESCAPE_ERRORS} per string",
        "diagnostics printed": f"{MAX_DIAGNOSTICS} per manifest",
    }
    for what, value in rows.items():
        assert f"| {what} | {value}" in doc, (what, value)


def test_formatting_is_linear_in_comments():
    from sevmanifest.frontend.fmt import format_document
    from sevmanifest.frontend.parse import parse_text
    unit = '    machine "q"  # trailing\n    # own line\n'
    text = fill(MAX_MANIFEST_BYTES, unit, FW, "}\n")
    document, _ = parse_text(text, "m.sevm")
    started = time.perf_counter()
    format_document(document, text)
    # quadratic before (a min() over every remaining comment per statement): ~7 s
    assert time.perf_counter() - started < 3
