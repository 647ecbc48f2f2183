"""The formatter: canonical output for representative inputs, idempotence, comments kept,
and (Hypothesis) the compiled model never changes."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from frontend_support import REPO, check_fmt_keeps_meaning, errors, fmt
from manifest_strategies import contents, layouts, manifest_sets
from sevmanifest.frontend import compile_file
from sevmanifest.frontend.fmt import format_document
from sevmanifest.frontend.parse import parse_text
from sevmanifest.frontend.source import read_source

MESSY = '''# header comment


import   "common.sevm"   # why
vm "web"   extends "base"{ # open
\ttype   sev-es
  vcpus 1 ,2,  0x4
\tcpu "EPYC-Milan" ,family 25  model 1 stepping\t1
    memory 4 GiB


    host{
vmm qemu,ec2
    }
  policy {}
    launch { net user
    }
}
template "base" {
}
# trailing'''

MESSY_CANONICAL = '''# header comment

import "common.sevm"  # why

vm "web" extends "base" {  # open
    type sev-es
    vcpus 1, 2, 0x4
    cpu "EPYC-Milan", family 25 model 1 stepping 1
    memory 4GiB

    host {
        vmm qemu, ec2
    }
    policy {
    }
    launch {
        net user
    }
}

template "base" {
}
# trailing
'''

COMMENTS = '''# file header
vm "c" {  # after the opening brace

    # own line, indented
    firmware "fw.fd"   # after a value
    host {# right after the brace

        # inside a block
        vmm qemu
        # before a closing brace
    }  # after a closing brace


    # before the last brace
}  # after the last brace

# at the end'''

COMMENTS_CANONICAL = '''# file header
vm "c" {  # after the opening brace
    # own line, indented
    firmware "fw.fd"  # after a value
    host {  # right after the brace
        # inside a block
        vmm qemu
        # before a closing brace
    }  # after a closing brace
    # before the last brace
}  # after the last brace

# at the end
'''


@pytest.mark.parametrize("source, canonical", ids=[
    "messy", "comments", "values-keep-spelling", "blank-lines", "unfolded", "lists-options",
    "empty", "comment-only"], argvalues=[
    (MESSY, MESSY_CANONICAL),
    (COMMENTS, COMMENTS_CANONICAL),
    # values keep their spelling: numbers, escapes, pins; only spacing changes
    ('vm "a\\x41" {\r\n\tfirmware  "f"  sha256 "AB"\r\n\tcmdline "a\\x41\\u{42}\\"" # c\r\n'
     '\tpolicy 0x0000_0001\r\n}\r\n',
     'vm "a\\x41" {\n    firmware "f" sha256 "AB"\n    cmdline "a\\x41\\u{42}\\""  # c\n'
     '    policy 0x0000_0001\n}\n'),
    # blank lines: one kept where there were several; one between declarations; none after {
    ('import "a.sevm"\nimport "b.sevm"\n\n\n\nimport "c.sevm"\n# x\nvm "a" {}\nvm "b" {\n\n'
     '    vcpus 1\n\n\n    memory 1G\n\n}\n',
     'import "a.sevm"\nimport "b.sevm"\n\nimport "c.sevm"\n\n# x\nvm "a" {\n}\n\nvm "b" {\n'
     '    vcpus 1\n\n    memory 1G\n}\n'),
    # a statement on the "{" line and one-line blocks are unfolded
    ('vm "a" { firmware "f"\n  host { vmm ec2\n  }\n  launch {}\n}\n',
     'vm "a" {\n    firmware "f"\n    host {\n        vmm ec2\n    }\n    launch {\n    }\n}\n'),
    # min-api, lists of every kind, options
    ('vm "a" {\n policy{\n  min-api   0.24\n  send-outside-domain   allow\n }\n'
     ' launch {\n  disk "r.img"   format   qcow2\n  extra "-s" ,"-S"\n }\n'
     ' host {\n  legacy-vm-type on,off\n  sev-features 0 , 0x20\n }\n}\n',
     'vm "a" {\n    policy {\n        min-api 0.24\n        send-outside-domain allow\n    }\n'
     '    launch {\n        disk "r.img" format qcow2\n        extra "-s", "-S"\n    }\n'
     '    host {\n        legacy-vm-type on, off\n        sev-features 0, 0x20\n    }\n}\n'),
    ("", ""),
    ("\n\n# only a comment\n\n", "# only a comment\n"),
])
def test_canonical_layout(source, canonical):
    assert fmt(source) == canonical
    assert fmt(canonical) == canonical


def test_comment_text_is_kept_verbatim():
    odd = "# «quotes» \"x\" {braces} \\ \u202e RTL \u2028 sep \x0c ff #again"
    out = fmt(f'{odd}\nvm "a" {{  {odd}\n}}\n')
    assert out == f'{odd}\nvm "a" {{  {odd}\n}}\n'


def test_no_comment_is_lost():
    text = MESSY + "\n" + COMMENTS
    document, _ = parse_text(text, "m.sevm")
    out = fmt(text)
    for comment in document.comments:
        assert comment.text.rstrip() in out


@pytest.mark.parametrize("example", sorted(
    str(p.relative_to(REPO)) for p in (REPO / "manifests").rglob("*.sevm")))
def test_examples_are_canonical(example):
    text, problem = read_source(str(REPO / example))
    assert problem is None
    assert fmt(text) == text, f"{example} is not formatted"
    assert check_fmt_keeps_meaning(str(REPO / example))


# ---- properties on generated manifests ----------------------------------------------------------
PROPERTY = settings(max_examples=int(os.environ.get("SEVM_FMT_EXAMPLES", "40")), deadline=None,
                    print_blob=True, suppress_health_check=[HealthCheck.too_slow,
                                                            HealthCheck.data_too_large])


def _compile_checked(root: str, content):
    result = compile_file(root)
    assert not errors(result), [d.message for d in result.diagnostics]
    for vm in result.manifest.vms:  # the generator's own account of the meaning
        assert {"type": vm.type.value, "policy": vm.policy.value, "vcpus": vm.vcpus,
                "memory": vm.memory} == content.expected[vm.name]
    return result.manifest


@PROPERTY
@given(manifest_sets())
def test_fmt_never_changes_the_model(manifests):
    with tempfile.TemporaryDirectory(prefix="sevm-fmt-") as directory:
        root = manifests.write(directory)
        before = _compile_checked(root, manifests.content)
        for rel in manifests.files:  # format every file of the set in place
            path = os.path.join(directory, rel)
            text, problem = read_source(path)
            assert problem is None
            note(f"{rel}:\n{text}")
            formatted = fmt(text, path)
            assert fmt(formatted, path) == formatted, "not idempotent"
            Path(path).write_text(formatted, encoding="utf-8")
        assert compile_file(root).manifest == before


@PROPERTY
@given(st.data())
def test_layout_never_changes_the_model(data):
    """Two random layouts of one content compile to equal models."""
    content = data.draw(contents())
    first, second = data.draw(layouts(content)), data.draw(layouts(content))
    with tempfile.TemporaryDirectory(prefix="sevm-layout-") as directory:
        one = _compile_checked(first.write(directory), content)
        two = _compile_checked(second.write(directory), content)
    assert one == two


def test_formatting_is_byte_stable_for_every_canonical_file():
    # what fmt prints parses back to a syntax tree that prints the same
    for text in (MESSY_CANONICAL, COMMENTS_CANONICAL):
        document, problems = parse_text(text, "m.sevm")
        assert not problems and format_document(document, text) == text


def test_a_comment_after_a_statement_on_the_opening_line_stays_with_that_statement():
    text = 'vm "a" { policy { debug allow  # needed for gdb sessions only\n    }\n    firmware "f"\n}\n'
    assert fmt(text) == ('vm "a" {\n    policy {\n        debug allow  # needed for gdb sessions only\n'
                         '    }\n    firmware "f"\n}\n')
    kept = 'vm "a" {  # head\n    policy {  # pol\n        debug allow  # why\n    }\n}\n'
    assert fmt(kept) == kept
