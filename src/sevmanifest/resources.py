"""Locating the grammar and the Jinja templates, installed or in a source checkout."""
from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
_CHECKOUT = _PACKAGE.parent.parent  # src/sevmanifest -> repository root


def _data_dir(name: str) -> Path:
    # A non-editable install copies grammar/ and templates/ into the package;
    # a source checkout (tests, editable installs) keeps them at the top level.
    installed = _PACKAGE / name
    return installed if installed.is_dir() else _CHECKOUT / name


def grammar_path() -> Path:
    return _data_dir("grammar") / "sevm.lark"


def templates_dir() -> Path:
    return _data_dir("templates")
