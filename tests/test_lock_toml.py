"""lock/locktoml.py writes exactly what tomli-w writes (the locks' bytes must not change):
generated lock-shaped documents with awkward strings, and documents of other shapes (which it
hands to tomli-w)."""
from __future__ import annotations

import tomllib
from pathlib import Path

import tomli_w
from hypothesis import given, settings
from hypothesis import strategies as st

from sevmanifest.lock import locktoml

REPO = Path(__file__).resolve().parents[1]

# awkward text: quotes, backslashes, every control character, DEL, non-ASCII, surrogates
awkward = st.text(st.one_of(st.characters(max_codepoint=0x7f), st.sampled_from(
    ['"', "\\", "\t", "\x7f", "é", "€", "\U0001f600", "\udcff", "\u2028"])), max_size=30)
keys = st.one_of(st.sampled_from(["path", "size", "sha256", "vcpus", "cpu"]), awkward)
scalars = st.one_of(awkward, st.integers(-2**70, 2**70), st.booleans())
digest = st.text("0123456789abcdef", min_size=64, max_size=64)


def variant_strategy(long: bool):
    base = st.fixed_dictionaries({"vcpus": st.integers(1, 512)},
                                 optional={"cpu": awkward, "cpu_signature": awkward,
                                           "vmm": st.sampled_from(["qemu", "ec2", "gce"]),
                                           "legacy_vm_type": st.booleans()})
    extra = st.dictionaries(keys, scalars, max_size=3)
    tail = st.fixed_dictionaries({"launch_digest": digest}) if long else st.just({})
    return st.tuples(base, extra, tail).map(lambda t: {**t[0], **t[1], **t[2]})


artifact = st.fixed_dictionaries({"path": awkward, "size": st.integers(0, 2**40),
                                  "sha256": digest})
vm = st.fixed_dictionaries({
    "name": awkward, "type": st.sampled_from(["sev", "sev-es"]), "policy": awkward,
    "artifacts": st.dictionaries(st.sampled_from(["firmware", "kernel", "initrd"]), artifact,
                                 min_size=1),
    "variants": st.lists(variant_strategy(True), min_size=1, max_size=3)})
lock_doc = st.fixed_dictionaries({"lock_version": st.just(1), "manifest": awkward,
                                  "vms": st.lists(vm, min_size=1, max_size=2)})


@settings(max_examples=100, deadline=None)
@given(lock_doc)
def test_lock_shaped_documents_match_tomli_w(doc):
    assert locktoml.dumps(doc) == tomli_w.dumps(doc)


other_vm = st.fixed_dictionaries({"name": awkward}, optional={
    "artifacts": st.one_of(st.just({}), st.dictionaries(keys, st.one_of(scalars, artifact),
                                                        max_size=2)),
    "variants": st.one_of(st.just([]), st.lists(variant_strategy(False), max_size=3),
                          st.lists(variant_strategy(True), max_size=2)),
    "nested": st.dictionaries(keys, scalars, max_size=2)})
other_doc = st.fixed_dictionaries({}, optional={
    "lock_version": scalars, "manifest": awkward,
    "vms": st.one_of(st.just([]), st.lists(other_vm, max_size=3)),
    "table": st.dictionaries(keys, scalars, max_size=2)})


@settings(max_examples=150, deadline=None)
@given(other_doc)
def test_documents_of_other_shapes_match_tomli_w(doc):
    assert locktoml.dumps(doc) == tomli_w.dumps(doc)


def test_committed_example_locks_are_reproduced():
    locks = sorted(REPO.glob("manifests/**/*.lock"))
    assert locks
    for path in locks:
        text = path.read_text(encoding="utf-8")
        body = text[text.index("lock_version"):]  # after the generated-file header
        assert locktoml.dumps(tomllib.loads(text)) == body, path


def test_the_fast_path_is_taken_for_locks(monkeypatch):
    doc = tomllib.loads(sorted(REPO.glob("manifests/**/*.lock"))[0].read_text())
    monkeypatch.setattr(tomli_w, "dumps", lambda *_: "not used")
    assert locktoml.dumps(doc).startswith("lock_version = 1\n")
