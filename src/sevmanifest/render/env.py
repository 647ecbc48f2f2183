"""Jinja2 environments for sevm's own templates and for users' templates.

All environments use ``StrictUndefined`` (a misspelt variable is an error, not an empty
string) and share the filters below.  XML output is autoescaped.  Users' templates
(``--template PATH``) run in Jinja's ``ImmutableSandboxedEnvironment``: they see the
documented context and can neither reach Python internals nor modify the context.
"""
from __future__ import annotations

import functools
import json
import os
import re
import shlex
from pathlib import Path

# This module is imported only by the render command, so importing Jinja here keeps it
# off the start-up path of every other command.
import jinja2
import jinja2.sandbox
from markupsafe import Markup, escape

from ..resources import templates_dir
from .libvirt import XML_INVALID, describe_character

XML_SUFFIXES = (".xml", ".html", ".htm", ".xhtml")
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")


class RenderValueError(ValueError):
    """A value that the requested output format cannot represent."""


def shell_quote(value) -> str:
    """One shell word that the shell turns back into exactly ``value``."""
    text = str(value)
    if "\0" in text:
        raise RenderValueError("a NUL byte cannot appear in a shell word")
    return shlex.quote(text)


def shell_join(values) -> str:
    return " ".join(shell_quote(v) for v in values)


def xml_text(value) -> Markup:
    """Escape for XML text and attribute values.  Tab, newline and carriage return become
    character references, which every XML parser keeps (a literal CR or an attribute
    newline would be normalised away)."""
    text = str(value)
    bad = XML_INVALID.search(text)
    if bad:
        raise RenderValueError(f"{describe_character(bad.group())} cannot appear in XML "
                               f"(in {text!r})")
    escaped = str(escape(text))
    return Markup(escaped.replace("\t", "&#9;").replace("\n", "&#10;").replace("\r", "&#13;"))


def _printable(text: str) -> str:
    return _UNPRINTABLE.sub(lambda m: repr(m.group())[1:-1], text)


def sh_comment(value) -> str:
    """Text safe inside a ``#`` comment line: control characters shown as escapes."""
    return _printable(str(value))


def xml_comment(value) -> Markup:
    """Text safe inside ``<!-- -->``: no control characters, no ``--``, no trailing ``-``,
    and no character XML cannot carry (U+FFFE, U+FFFF too), each shown as an escape."""
    text = XML_INVALID.sub(lambda m: repr(m.group())[1:-1], _printable(str(value)))
    while "--" in text:
        text = text.replace("--", "- -")
    return Markup(text + (" " if text.endswith("-") else ""))


def hex_filter(value: int, width: int = 0) -> str:
    """``0x``-prefixed lowercase hex, zero-padded to ``width`` digits."""
    return f"0x{int(value):0{width}x}"


def to_json(value, indent: int | None = None) -> str:
    return json.dumps(value, indent=indent, ensure_ascii=True)


FILTERS = {"shell_quote": shell_quote, "shell_join": shell_join, "xml": xml_text,
           "sh_comment": sh_comment, "xml_comment": xml_comment, "hex": hex_filter,
           "tojson_ascii": to_json}


def _autoescape(name: str | None) -> bool:
    if name is None:
        return False
    for suffix in (".j2", ".jinja", ".jinja2"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return name.endswith(XML_SUFFIXES)


def _configure(env: jinja2.Environment) -> jinja2.Environment:
    env.filters.update(FILTERS)
    return env


@functools.lru_cache(maxsize=1)
def builtin_environment() -> jinja2.Environment:
    """sevm's own templates (``templates/``), autoescaped by file name."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(templates_dir())),
                             undefined=jinja2.StrictUndefined, autoescape=_autoescape,
                             trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    return _configure(env)


# A user's template renders a command line or a domain (a few KiB): what it may produce, in
# characters, and the most bits a power (``2 ** n``) may have.  Jinja's sandbox bounds
# ``range`` (100 000 items) but not what one expression allocates.
MAX_USER_OUTPUT = 16 << 20
MAX_POWER_BITS = 1 << 20


class _BoundedSandbox(jinja2.sandbox.ImmutableSandboxedEnvironment):
    """The immutable sandbox, with ``*`` and ``**`` refused where one expression would build
    a huge string, list or number (``"x" * 10**9``: 1.5 GB and 13 s before)."""
    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context, operator: str, left, right):
        if operator == "*":
            sized, count = (left, right) if isinstance(right, int) else (right, left)
            if (isinstance(sized, (str, list, tuple)) and isinstance(count, int)
                    and len(sized) * count > MAX_USER_OUTPUT):
                raise jinja2.sandbox.SecurityError(
                    f"repeating a sequence of length {len(sized)} {count} times exceeds "
                    f"{MAX_USER_OUTPUT} items, more than any launch configuration needs")
        elif (isinstance(left, int) and isinstance(right, int) and abs(left) > 1
              and right * abs(left).bit_length() > MAX_POWER_BITS):
            raise jinja2.sandbox.SecurityError(f"{left} ** {right} has more than "
                                               f"{MAX_POWER_BITS} bits")
        return super().call_binop(context, operator, left, right)


class _ConfinedLoader(jinja2.FileSystemLoader):
    """Templates from the user's template directory only.  Jinja's loader follows symbolic
    links, so a link planted beside a template (``leak -> /proc/self/environ``) would have
    ``{% include "leak" %}`` copy any readable file into the output; an included file must
    really be inside the directory.  The template named on the command line may itself be a
    link (the user chose it)."""

    def __init__(self, directory: Path, own: str):
        super().__init__(str(directory))
        self.own = own

    def get_source(self, environment, template):
        source, filename, uptodate = super().get_source(environment, template)
        root = os.path.realpath(self.searchpath[0])
        if template != self.own and os.path.commonpath(
                [root, os.path.realpath(filename)]) != root:
            raise jinja2.sandbox.SecurityError(
                f"{template!r} is a link to a file outside the template's directory {root}")
        return source, filename, uptodate


def user_environment(template: Path) -> jinja2.sandbox.SandboxedEnvironment:
    """A sandbox for a user's template; ``{% include %}`` finds files beside it (really
    beside it: see _ConfinedLoader).  The
    immutable sandbox also refuses calls that modify the context (``argv.append``), and
    ``*`` and ``**`` that would build something huge."""
    env = _BoundedSandbox(
        loader=_ConfinedLoader(template.parent, template.name), undefined=jinja2.StrictUndefined,
        autoescape=_autoescape, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    return _configure(env)
