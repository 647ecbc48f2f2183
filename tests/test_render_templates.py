"""Jinja: StrictUndefined, the sandbox for users' templates, autoescaping by name, the filters,
and a context whose every name is documented in docs/rendering.md."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import jinja2
import pytest
from render_support import REPO, make_vm, sev_vm

from sevmanifest import render
from sevmanifest.diagnostics import DiagnosticError
from sevmanifest.render import env

DOCS = (REPO / "docs" / "rendering.md").read_text()


def _user(tmp_path: Path, source: str, name: str = "t.txt.j2", vm=None) -> str:
    template = tmp_path / name
    template.write_text(source)
    vm = vm or make_vm(tmp_path / "art")
    return render.render_template(template, vm, render.select_variant(vm, "vcpus=4")).text


def _user_error(tmp_path: Path, source: str, name: str = "t.txt.j2") -> DiagnosticError:
    with pytest.raises(DiagnosticError) as exc:
        _user(tmp_path, source, name)
    return exc.value


def _names(value, prefix=""):
    """Dotted names of every dict key in the context (list items share their list's name)."""
    if isinstance(value, dict):
        for key, item in value.items():
            name = f"{prefix}.{key}" if prefix else key
            yield name
            yield from _names(item, name)
    elif isinstance(value, list) and value and isinstance(value[0], dict):
        for item in value:
            yield from _names(item, prefix)


def test_every_context_name_is_documented(tmp_path: Path):
    vm = make_vm(tmp_path)
    context = render.template_context(vm, render.select_variant(vm, "vcpus=4"))
    documented = set(re.findall(r"`([a-z_]+(?:\.[a-z_]+)*)`", DOCS))
    missing = []
    for name in set(_names(context)):
        parent = name.rsplit(".", 1)[0]
        leaf = name.rsplit(".", 1)[-1]
        # a dict documented as a whole lists its keys in the description instead
        if name not in documented and not (parent in documented and f"`{leaf}`" in DOCS):
            is_group = any(d.startswith(name + ".") for d in documented)
            if not is_group and not name.startswith(("variant.key.", "vm.policy.fields.")):
                missing.append(name)
    assert not missing, f"undocumented context names: {sorted(missing)}"


def test_user_template_sees_the_documented_context(tmp_path: Path):
    out = _user(tmp_path, "{{ vm.name }} {{ variant.vcpus }} {{ variant.cpu.name }} "
                          "{{ vm.policy.hex }} {{ host.qemu_version }} {{ launch_digest|length }} "
                          "{{ qemu.argv | shell_join }}")
    vm = make_vm(tmp_path / "art")
    argv = render.qemu_command(vm, render.select_variant(vm, "vcpus=4")).argv
    head, _, command = out.partition(" qemu-system-x86_64")
    assert head == "test-vm 4 EPYC-Milan 0x00000005 9.2 64"
    assert shlex.split("qemu-system-x86_64" + command) == argv


def test_undefined_variable_is_an_error_at_its_line(tmp_path: Path):
    problem = _user_error(tmp_path, "line one\n{{ vm.nmae }}\n")
    assert problem.exit_code == 2
    assert "undefined" in str(problem) and "nmae" in str(problem)
    assert problem.diagnostics[0].span.line == 2 and problem.diagnostics[0].span.file.endswith("t.txt.j2")


def test_syntax_error_names_the_line(tmp_path: Path):
    problem = _user_error(tmp_path, "ok\n{% if %}\n")
    assert problem.exit_code == 2 and problem.diagnostics[0].span.line == 2


@pytest.mark.parametrize("source", ["{{ ''.__class__.__mro__ }}", "{{ vm.__class__ }}",
                                    "{{ qemu.argv.append.__self__ }}", "{{ [].pop.__globals__ }}",
                                    "{% set x = qemu.argv.append('x') %}"])
def test_sandbox_blocks_python_internals(tmp_path: Path, source):
    problem = _user_error(tmp_path, source)
    assert problem.exit_code == 2


@pytest.mark.parametrize(("source", "message"), [
    ('{{ "x" * 300000000 }}', "repeating a sequence of length 1 300000000 times"),
    ("{{ 3 * [1, 2] * 10000000 }}", "repeating a sequence of length 6 10000000 times"),
    ("{{ 2 ** 100000000 }}", "2 ** 100000000 has more than"),
    ('{{ "%999999999d" % 1 }}', "it needs more than 256 MiB of memory"),  # folded at compile
    ('{{ vm.name | center(999999999) }}', "it needs more than 256 MiB of memory"),
    ('{{ "{:>999999999}".format(vm.name) }}', "it needs more than 256 MiB of memory"),
    ("{% set r = range(100000) %}{% for i in r %}{% for j in r %}{{ vm.name * 20 }}"
     "{% endfor %}{% endfor %}", "its output exceeds 16777216 characters"),
    # a macro calling itself: RecursionError was an internal error (exit 3)
    ("{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}", "it recurses without end"),
])
def test_a_template_cannot_build_something_huge(tmp_path: Path, source, message):
    """One expression or a nested loop: refused (1.5 GB and 13 s for the first before)."""
    problem = _user_error(tmp_path, source)
    assert problem.exit_code == 2 and message in str(problem.diagnostics[0].message)


def test_the_memory_limit_is_lifted_after_the_render(tmp_path: Path):
    import resource
    before = resource.getrlimit(resource.RLIMIT_AS)
    _user_error(tmp_path, '{{ "x" | center(999999999) }}')
    _user(tmp_path, "{{ vm.name }}")
    assert resource.getrlimit(resource.RLIMIT_AS) == before


def test_other_threads_of_a_library_caller_do_not_meet_the_memory_limit(tmp_path: Path,
                                                                         monkeypatch):
    """RLIMIT_AS is the process's: set while another thread runs, that thread's allocations
    failed with MemoryError.  It is set only while the render is the process's one thread."""
    import resource
    import threading
    limits = []
    real = resource.setrlimit
    monkeypatch.setattr(resource, "setrlimit", lambda *a: (limits.append(a[0]), real(*a))[1])
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        assert _user(tmp_path, "{{ vm.name }}")
    finally:
        stop.set()
        other.join()
    assert resource.RLIMIT_AS not in limits


def test_reasonable_repetition_and_powers_still_render(tmp_path: Path):
    assert _user(tmp_path, '{{ "-" * 3 }} {{ [0] * 2 }} {{ 2 ** 10 }} {{ 3 * "ab" }}') == \
        "--- [0, 0] 1024 ababab"


def test_a_template_that_loops_without_end_is_stopped(tmp_path: Path, monkeypatch):
    """A loop that calls nothing and prints nothing can only be stopped by a timer signal;
    the signal handler and timer in place before are put back."""
    import signal
    from sevmanifest.render import templates
    monkeypatch.setattr(templates, "USER_TEMPLATE_SECONDS", 0.3)
    before = signal.getsignal(signal.SIGALRM)
    source = ("{% set r = range(100000) %}{% for i in r %}{% for j in r %}{% set x = j %}"
              "{% endfor %}{% endfor %}")
    problem = _user_error(tmp_path, source)
    assert problem.exit_code == 2 and "it ran longer than 0.3 s" in problem.diagnostics[0].message
    assert signal.getsignal(signal.SIGALRM) is before
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


def test_template_errors_are_not_tracebacks(tmp_path: Path):
    assert _user_error(tmp_path, "{{ vm.name + 1 }}").exit_code == 2
    assert _user_error(tmp_path, "{% include 'missing.j2' %}").exit_code == 2
    (tmp_path / "bad.j2").write_bytes(b"\xff\xfe")
    with pytest.raises(DiagnosticError):
        vm = make_vm(tmp_path / "art")
        render.render_template(tmp_path / "bad.j2", vm, render.select_variant(vm, "vcpus=4"))
    with pytest.raises(DiagnosticError, match="no such file"):
        render.render_template(tmp_path / "nope.j2", vm, render.select_variant(vm, "vcpus=4"))


def test_include_beside_the_template(tmp_path: Path):
    (tmp_path / "part.j2").write_text("[{{ variant.vcpus }}]")
    assert _user(tmp_path, "x{% include 'part.j2' %}") == "x[4]"


@pytest.mark.parametrize("target", ["secret.txt", "/proc/self/environ"])
def test_a_link_beside_the_template_cannot_include_a_file_from_elsewhere(tmp_path, target):
    """`leak -> /proc/self/environ` planted beside a template: refused, nothing rendered."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("top secret\n")
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "leak").symlink_to(outside / target if not target.startswith("/") else target)
    problem = _user_error(templates, "{% include 'leak' %}")
    assert problem.exit_code == 2
    assert "'leak' is a link to a file outside the template's directory" in \
        problem.diagnostics[0].message


def test_links_inside_the_directory_and_a_linked_template_still_work(tmp_path: Path):
    templates = tmp_path / "templates"
    (templates / "parts").mkdir(parents=True)
    (templates / "parts" / "part.j2").write_text("[{{ variant.vcpus }}]")
    (templates / "alias.j2").symlink_to(templates / "parts" / "part.j2")
    assert _user(templates, "x{% include 'alias.j2' %}{% include 'parts/part.j2' %}") == \
        "x[4][4]"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (templates / "plain.j2").write_text("{{ vm.name }}")
    (elsewhere / "t.txt.j2").symlink_to(templates / "plain.j2")  # the user's choice of file
    vm = make_vm(tmp_path / "art")
    rendered = render.render_template(elsewhere / "t.txt.j2", vm, render.select_variant(vm, "vcpus=4"))
    assert rendered.text == vm.name


def test_autoescape_follows_the_output_name(tmp_path: Path):
    vm = make_vm(tmp_path / "art", name="<a&b>")
    assert _user(tmp_path, "{{ vm.name }}", "out.xml.j2", vm) == "&lt;a&amp;b&gt;"
    assert _user(tmp_path, "{{ vm.name }}", "out.html", vm) == "&lt;a&amp;b&gt;"
    assert _user(tmp_path, "{{ vm.name }}", "out.sh.j2", vm) == "<a&b>"


def test_builtin_templates_are_strict(tmp_path: Path):
    environment = env.builtin_environment()
    assert environment.undefined is jinja2.StrictUndefined
    with pytest.raises(jinja2.UndefinedError):
        environment.from_string("{{ nope }}").render()
    # the shipped templates reference only context names (a typo would raise here)
    vm = sev_vm(tmp_path, kernel=None, initrd=None, cmdline=None, kernel_hashes=False)
    for render_one in (render.render_qemu, render.render_libvirt):
        assert render_one(vm, render.select_variant(vm, None)).text


def test_filters():
    assert env.shell_quote("a b'c") == "'a b'\"'\"'c'"
    assert env.shell_join(["-x", "", "a;b"]) == "-x '' 'a;b'"
    with pytest.raises(env.RenderValueError):
        env.shell_quote("a\0b")
    assert str(env.xml_text("<&'\">\t\n\r")) == "&lt;&amp;&#39;&#34;&gt;&#9;&#10;&#13;"
    with pytest.raises(env.RenderValueError):
        env.xml_text("\x07")
    assert env.hex_filter(5, 4) == "0x0005" and env.hex_filter(0x1800000F) == "0x1800000f"
    assert env.sh_comment("a\nb\x1b") == "a\\nb\\x1b"
    assert "--" not in str(env.xml_comment("a--b---c-")) and not str(env.xml_comment("x-")).endswith("-")
