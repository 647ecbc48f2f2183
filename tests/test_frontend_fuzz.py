"""Fuzzing the front end (issue 7, item 1): valid generated manifests, mutated.

Every case must end in a result or located diagnostics — never an uncaught exception —
within CASE_SECONDS; when the mutated root still parses, formatting must keep its meaning.

CI runs a few hundred cases.  The dedicated fuzz run (docs/robustness.md):

    SEVM_FUZZ_EXAMPLES=100000 python -m pytest tests/test_frontend_fuzz.py -p no:cacheprovider

SEVM_FUZZ_EXAMPLES is the total number of cases, shared out between the in-process tests
below by their weights; a sample of SEVM_FUZZ_EXAMPLES / 200 mutated files also goes
through the real command line.  Hypothesis prints the failing example and how to reproduce it
(``@reproduce_failure``); ``--hypothesis-seed=N`` replays a whole run.
"""
from __future__ import annotations

import os
import random
import re
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from frontend_support import check_fmt_keeps_meaning, check_outcome
from manifest_strategies import random_file, random_set
from sevmanifest.frontend import compile_file, compile_text
from sevmanifest.frontend.parse import parser

FUZZ_TOTAL = int(os.environ.get("SEVM_FUZZ_EXAMPLES", "0"))
CASE_SECONDS = 10.0  # typical cases take 5-50 ms; the largest mutated inputs ~0.5 s
WEIGHTS = {"mutated": 0.35, "imports": 0.15, "hostile": 0.2, "soup": 0.2, "splice": 0.1}
DEFAULTS = {"mutated": 150, "imports": 40, "hostile": 80, "soup": 100, "splice": 40}


def fuzz_settings(name: str):
    examples = max(1, int(FUZZ_TOTAL * WEIGHTS[name])) if FUZZ_TOTAL else DEFAULTS[name]
    return settings(max_examples=examples, deadline=None, print_blob=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.large_base_example])


@pytest.fixture(scope="module")
def workdir():
    with tempfile.TemporaryDirectory(prefix="sevm-fuzz-") as directory:
        yield Path(directory)


# ---- mutations ------------------------------------------------------------------------------
DEEP = b'vm "x" {\n' * 2000 + b"host {\n" * 2000
PAYLOADS = (
    b"\0", b"\0" * 64, b"{" * 5000, b"}" * 5000, DEEP, b"\n" * 5000, b"#" * 5000,
    b"1" + b"0" * 100, b"9" * 5000, b"0x" + b"f" * 100_000, b"18446744073709551616",
    b'"' + b"a" * 100_000 + b'"', b'"' + b"\\u{10ffff}" * 20_000 + b'"', b'"' + b"\\q" * 20_000 + b'"',
    b"\xef\xbb\xbf", b"\r", b"\r\n", b"\\", b'"', b"#", b",", b" ", b"\t", b"\x0c", b"\x0b",
    b"\\u{d800}", b"\\u{dfff}", b"\\u{110000}", b"\\u{}", b"\\u{1234567}", b"\\x", b"\\x4", b"\\xzz",
    "\u202e\u202d\u200f".encode(), "e\u0301\u0301\u0301".encode(), "\u2028\u2029\x85".encode(),
    "\ufffe\uffff\U0010ffff".encode(), "😀".encode(), b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf4\x90\x80\x80",
    b'import "m.sevm"\n', b'import "/dev/zero"\n', b'import "."\n', b'import "\\x00"\n',
    b'import "nonexistent.sevm"\n', b'template "t" extends "t" {\n}\n', b'vm "v" extends "v" {\n}\n',
    b"policy 0xffffffff\n", b"vcpus 0\n", b"cpu \"host\"\n", b"memory 0K\n", b"memory 0xffffffffffffT\n",
    b"typesev\n", b"kernel-hashes on\n", b"host {\n legacy-vm-type off\n}\n",
)
POSITION = st.integers(0, 1 << 20)
MUTATION = st.one_of(
    st.tuples(st.just("flip"), POSITION, st.integers(0, 7)),
    st.tuples(st.just("set"), POSITION, st.integers(0, 255)),
    st.tuples(st.just("truncate"), POSITION),
    st.tuples(st.just("delete"), POSITION, st.integers(1, 64)),
    st.tuples(st.just("insert"), POSITION, st.sampled_from(PAYLOADS)),
    st.tuples(st.just("insert"), POSITION, st.binary(min_size=1, max_size=8)),
    st.tuples(st.just("duplicate"), POSITION, st.integers(1, 200)),
    st.tuples(st.just("swap-lines"), POSITION, POSITION),
)


def mutate(data: bytes, mutation: tuple) -> bytes:
    kind, where = mutation[0], mutation[1] % (len(data) + 1)
    if kind == "flip" and data:
        where %= len(data)
        return data[:where] + bytes([data[where] ^ (1 << mutation[2])]) + data[where + 1:]
    if kind == "set" and data:
        where %= len(data)
        return data[:where] + bytes([mutation[2]]) + data[where + 1:]
    if kind == "truncate":
        return data[:where]
    if kind == "delete":
        return data[:where] + data[where + mutation[2]:]
    if kind == "insert":
        return data[:where] + mutation[2] + data[where:]
    if kind == "duplicate":
        return data[:where + mutation[2]] + data[where:]
    if kind == "swap-lines":
        lines = data.split(b"\n")
        i, j = where % len(lines), mutation[2] % len(lines)
        lines[i], lines[j] = lines[j], lines[i]
        return b"\n".join(lines)
    return data


def outcome_of_file(path: Path) -> None:
    started = time.perf_counter()
    result = compile_file(str(path))
    elapsed = time.perf_counter() - started
    check_outcome(result)
    assert elapsed < CASE_SECONDS, f"compile took {elapsed:.1f} s"
    check_fmt_keeps_meaning(str(path))


# ---- the tests ------------------------------------------------------------------------------
@fuzz_settings("mutated")
@given(seed=st.integers(0, 2**32 - 1), mutations=st.lists(MUTATION, min_size=1, max_size=4))
def test_mutated_manifests(workdir, seed, mutations):
    data = random_file(random.Random(seed))
    for mutation in mutations:
        data = mutate(data, mutation)
    note(f"input: {data[:2000]!r}")
    path = workdir / "mutated.sevm"
    path.write_bytes(data)
    outcome_of_file(path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return
    check_outcome(compile_text(text, str(path)))  # the in-memory entry point, BOM and all


@fuzz_settings("imports")
@given(seed=st.integers(0, 2**32 - 1), victim=st.integers(0, 9),
       mutations=st.lists(MUTATION, min_size=1, max_size=3))
def test_mutated_imported_files(seed, victim, mutations):
    manifests = random_set(random.Random(seed))
    names = sorted(manifests.files)
    name = names[victim % len(names)]
    for mutation in mutations:
        manifests.files[name] = mutate(manifests.files[name], mutation)
    note(f"mutated {name}: {manifests.files[name][:2000]!r}")
    with tempfile.TemporaryDirectory(prefix="sevm-fuzz-") as directory:
        outcome_of_file(Path(manifests.write(directory)))


HOSTILE_NUMBERS = ("0", "00", "10" + "0" * 99, "1" + "0" * 100, "9" * 5000, "18446744073709551616",
                   "0xffffffffffffffff", "0x1_0000_0000_0000_0000", "0x" + "f" * 100_000, "4294967296")
HOSTILE_STRINGS = ('"' + "a" * 100_000 + '"', '""', '"\\u{d800}"', '"\\u{0}"', '"\\x00"',
                   '"\u202eevil\u202c"', '"e\u0301\u20dd"', '"\\u{10ffff}\\u{fffe}"', '"\\xff\\xfe"',
                   '"' + "\\x41" * 30_000 + '"', '"/dev/zero"', '"."', '"../../../../../../etc/passwd"',
                   '"' + "é" * 50_000 + '"', '"\x0c\x0b\x85\u2028"')
_NUMBER_OR_STRING = re.compile(r'"(?:[^"\\\n]|\\[^\n])*"|(?<![\w.-])(?:0x[0-9a-fA-F_]+|[0-9][0-9_]*)')


def _slots(text: str) -> list[tuple[int, int, str]]:
    """(start, end, kind) of every number and string token in a valid manifest."""
    return [(m.start(), m.end(), "string" if m.group(0).startswith('"') else "number")
            for m in _NUMBER_OR_STRING.finditer(text)]


@fuzz_settings("hostile")
@given(seed=st.integers(0, 2**32 - 1), picks=st.lists(
    st.tuples(st.integers(0, 1000), st.integers(0, 1000)), min_size=1, max_size=3))
def test_hostile_values_in_every_slot(workdir, seed, picks):
    """Huge numbers and long or odd strings in the place of real values."""
    text = random_file(random.Random(seed)).decode("utf-8").lstrip("\ufeff")
    for slot_pick, value_pick in picks:
        slots = _slots(text)
        if not slots:
            break
        start, end, kind = slots[slot_pick % len(slots)]
        pool = HOSTILE_STRINGS if kind == "string" else HOSTILE_NUMBERS
        text = text[:start] + pool[value_pick % len(pool)] + text[end:]
    note(f"input: {text[:2000]!r}")
    path = workdir / "hostile.sevm"
    path.write_bytes(text.encode("utf-8"))
    outcome_of_file(path)


def _vocabulary() -> list[str]:
    words = [t.pattern.value for t in parser().terminals if t.pattern.type == "str"]
    return words + ["sev", "sev-es", "on", "off", "allow", "deny", "qemu", "ec2", "debug",
                    "send", "qcow2", "user", "serial", "none", "4GiB", "0x1f", "12", "0.24",
                    '"EPYC-Milan"', '"x"', '"\\q"', '"unterminated', "\n", "\n", "\n", "\r\n",
                    "# comment\n", "{", "}", ",", "\t", "@", "-", "typo", "\0"]


VOCABULARY = st.sampled_from(_vocabulary())


@fuzz_settings("soup")
@given(tokens=st.lists(VOCABULARY, max_size=60), seps=st.lists(st.sampled_from(["", " ", "  "]),
                                                                  min_size=60, max_size=60))
def test_token_soup(workdir, tokens, seps):
    """Random sequences of the grammar's own words: every parser state meets every token,
    so every syntax-error message path runs."""
    text = "".join(tok + sep for tok, sep in zip(tokens, seps))
    note(f"input: {text!r}")
    path = workdir / "soup.sevm"
    path.write_bytes(text.encode("utf-8"))
    outcome_of_file(path)


@fuzz_settings("splice")
@given(seeds=st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1)),
       cuts=st.tuples(POSITION, POSITION))
def test_spliced_manifests(workdir, seeds, cuts):
    """The front of one manifest joined to the back of another."""
    first, second = (random_file(random.Random(s)) for s in seeds)
    data = first[:cuts[0] % (len(first) + 1)] + second[cuts[1] % (len(second) + 1):]
    note(f"input: {data[:2000]!r}")
    path = workdir / "spliced.sevm"
    path.write_bytes(data)
    outcome_of_file(path)


# ---- a sample through the real command line ------------------------------------------------
CLI_FILES = max(4, FUZZ_TOTAL // 200)  # 500 files (1000 runs) in the 100 000-case run


@settings(max_examples=1, deadline=None, print_blob=True)
@given(seed=st.integers(0, 2**32 - 1))
def test_mutated_manifests_through_the_cli(seed):
    """`sevm check` and `sevm fmt --check` (subprocesses, in parallel) on mutated manifests:
    exit 0, 1 or 2 and never a traceback.  Also covers what the in-process tests do not:
    printing, lint configuration and the firmware checks of `sevm check` on odd paths."""
    from concurrent.futures import ThreadPoolExecutor

    from frontend_support import sevm
    rnd = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="sevm-cli-fuzz-") as directory:
        paths = []
        for i in range(CLI_FILES):
            data = random_file(rnd)
            for _ in range(rnd.randint(0, 3)):
                data = mutate(data, _random_mutation(rnd))
            path = Path(directory) / f"case{i}.sevm"
            path.write_bytes(data)
            paths.append(path)
        jobs = [(cmd, p) for p in paths for cmd in (["check"], ["fmt", "--check"])]
        with ThreadPoolExecutor(max_workers=4) as pool:
            runs = list(pool.map(lambda job: sevm(*job[0], str(job[1]), cwd=Path(directory)), jobs))
    for (cmd, path), run in zip(jobs, runs):
        output = run.stderr.decode("utf-8", "replace") + run.stdout.decode("utf-8", "replace")
        assert run.returncode in (0, 1, 2), (cmd, path.name, output)
        assert "Traceback" not in output and "internal error" not in output, (cmd, path.name, output)


def _random_mutation(rnd: random.Random) -> tuple:
    kind = rnd.choice(["flip", "set", "truncate", "delete", "insert", "duplicate", "swap-lines"])
    where = rnd.randrange(1 << 20)
    if kind == "flip":
        return (kind, where, rnd.randrange(8))
    if kind == "set":
        return (kind, where, rnd.randrange(256))
    if kind == "insert":
        return (kind, where, rnd.choice(PAYLOADS))
    return (kind, where, rnd.randrange(1, 200)) if kind != "truncate" else (kind, where)
