"""Per-repository lint configuration: disable a rule, or raise a warning to an error.

Looked up by walking up from the manifest's directory.  In each directory a
``.sevm.toml`` is tried first, then a ``pyproject.toml`` that has a ``[tool.sevm]``
table; the first one found is the whole configuration (no merging across levels).
The walk stops after the directory that holds ``.git`` (the repository root).

    # .sevm.toml                      # pyproject.toml
    disable = ["SEVM104"]             [tool.sevm]
    error = ["debug-allowed"]         disable = ["unpinned-artefact"]

Rules are named by id ("SEVM101") or name ("debug-allowed").  Unknown keys or rules
are errors naming the configuration file and line (exit status 2).
"""
from __future__ import annotations

import dataclasses
import errno
import os
import re
import stat
from collections import namedtuple
from pathlib import Path

from ..diagnostics import Diagnostic, DiagnosticError, Severity, error
from ..model import Span

CONFIG_FILE = ".sevm.toml"
KEYS = ("disable", "error")
# A lint configuration is a few lines; a pyproject.toml rarely exceeds a few KiB.
MAX_CONFIG_BYTES = 1 << 20


class LintConfig(namedtuple("LintConfig", "source disabled errors",
                            defaults=(None, frozenset(), frozenset()))):
    """``source``: the file the settings came from (None: the defaults); ``disabled``: rule
    ids; ``errors``: rule ids raised from warning to error.  A named tuple, not a dataclass:
    every command loads it (~1 ms less start-up)."""
    __slots__ = ()

    def apply(self, diagnostics: list[Diagnostic]) -> list[Diagnostic]:
        """Drop disabled rules' diagnostics and raise the listed warnings to errors."""
        out = []
        for d in diagnostics:
            if d.rule in self.disabled:
                continue
            if d.rule in self.errors and d.severity is Severity.WARNING:
                d = dataclasses.replace(d, severity=Severity.ERROR,
                                        notes=d.notes + (f"raised to an error by {self.source}",))
            out.append(d)
        return out


def load_lint_config(start: Path) -> LintConfig:
    """The configuration that applies to manifests in ``start`` (a directory or a file)."""
    start = Path(start).resolve()
    return _load_from(start.parent if _is_file(start) else start)


def _is_file(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError as exc:
        if _absent(exc) or exc.errno == errno.ELOOP:  # as Path.is_file
            return False
        raise


def _exists(path: Path) -> bool:
    try:
        os.stat(path)
    except OSError as exc:
        if _absent(exc) or exc.errno == errno.ELOOP:  # as Path.exists
            return False
        raise
    return True


def _absent(exc: OSError) -> bool:
    """No such file, as far as sevm can tell: also a path longer than PATH_MAX (a manifest
    2 000 directories deep), which names nothing sevm could open; the manifest's own read
    error already says why."""
    return isinstance(exc, (FileNotFoundError, NotADirectoryError)) or \
        exc.errno == errno.ENAMETOOLONG


def _load_from(directory: Path) -> LintConfig:
    for folder in (directory, *directory.parents):
        for candidate, table in ((folder / CONFIG_FILE, None), (folder / "pyproject.toml", "sevm")):
            settings = _read(candidate, table)
            if settings is not None:
                return _validate(candidate, settings, "tool.sevm" if table else None)
        if _exists(folder / ".git"):
            break
    return LintConfig()


def _read(path: Path, tool_table: str | None) -> dict | None:
    """The settings table in ``path``, or None when the file or table is absent."""
    text = _read_text(path)
    if text is None:
        return None
    import tomllib  # only when a configuration file exists: keeps `sevm check` start-up lean
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _config_error(path, f"not valid TOML: {exc}", _toml_error_line(str(exc))) from None
    except RecursionError:
        raise _config_error(path, "not valid TOML: arrays or tables nested too deeply") from None
    if tool_table is None:
        return data
    table = data.get("tool", {}).get(tool_table) if isinstance(data.get("tool"), dict) else None
    if table is not None and not isinstance(table, dict):
        raise _config_error(path, f"[tool.{tool_table}] must be a table", _line_of(path, "sevm"))
    return table


def _read_text(path: Path) -> str | None:
    """The file's text, None when there is none; a directory, FIFO or device (which could
    block or never end) and a file over MAX_CONFIG_BYTES are errors."""
    from ..measure.fileio import kind_of, read_regular
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        if _absent(exc):
            return None
        raise _config_error(path, f"cannot read lint configuration: {exc.strerror or exc}") from None
    if not stat.S_ISREG(mode):
        raise _config_error(path, f"cannot read lint configuration: it is {kind_of(mode)}")
    try:
        data = read_regular(path, "lint configuration", MAX_CONFIG_BYTES)
    except DiagnosticError as exc:  # it changed since the stat
        raise _config_error(path, exc.diagnostics[0].message) from None
    if len(data) > MAX_CONFIG_BYTES:
        raise _config_error(path, f"larger than {MAX_CONFIG_BYTES >> 20} MiB; not a lint "
                            "configuration")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _config_error(path, f"cannot read lint configuration: not UTF-8 ({exc.reason} "
                            f"at byte {exc.start})") from None


def _validate(path: Path, settings: dict, table: str | None = None) -> LintConfig:
    """``table``: where the settings are, for error lines (None: the top level)."""
    from ..frontend.lint import RULES
    by_name = {rule.name: rule.id for rule in RULES} | {rule.id: rule.id for rule in RULES}
    for key in settings:
        if key not in KEYS:
            raise _config_error(path, f"unknown setting {key!r} (known: {', '.join(KEYS)})",
                                _line_of(path, key, table, key=True))
    chosen: dict[str, frozenset[str]] = {}
    for key in KEYS:
        values = settings.get(key, [])
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise _config_error(path, f"{key!r} must be a list of rule ids or names",
                                _line_of(path, key, table, key=True))
        for value in values:
            if value not in by_name:
                known = ", ".join(f"{r.id} ({r.name})" for r in RULES)
                raise _config_error(path, f"unknown lint rule {value!r} in {key!r}; known rules: "
                                    f"{known}", _line_of(path, value, table))
        chosen[key] = frozenset(by_name[v] for v in values)
    both = chosen["disable"] & chosen["error"]
    if both:
        raise _config_error(path, f"rule {', '.join(sorted(both))} is both disabled and raised "
                            "to an error", _line_of(path, "error", table, key=True))
    return LintConfig(path, chosen["disable"], chosen["error"])


def _config_error(path: Path, message: str, line: int | None = None) -> DiagnosticError:
    span = Span(str(path), line or 1, 1, line or 1, 1)
    return DiagnosticError(error(f"lint configuration: {message}", span, fatal_input=True))


# a table header, [name] or [[name]], alone on its line (comments stripped before)
_HEADER = re.compile(r"\s*\[\[?([^\[\]]+)\]\]?\s*")


def _line_of(path: Path, word: str, table: str | None = None, *,
             key: bool = False) -> int | None:
    """The first line in ``table`` (None: before the first table header; "tool.sevm": the
    [tool.sevm] table of a pyproject.toml) that mentions ``word``, or with ``key`` that
    assigns it: TOML parsers give no positions for values.  Not in that table (a dotted key
    elsewhere): the first such line anywhere."""
    try:
        lines = (_read_text(path) or "").splitlines()
    except DiagnosticError:
        return None
    escaped = re.escape(word)
    # a key assigned (`disable =`) or dotted (`error.rules =`); an inline table's key
    # (`sevm = { disable = … }`) is found by the word anywhere, the last resort
    pattern = re.compile(rf"^\s*(?:{escaped}|\"{escaped}\"|'{escaped}')\s*[=.]" if key
                         else rf"(?<![\w-]){escaped}(?![\w-])")
    current, anywhere = None, None
    for number, line in enumerate(lines, start=1):
        code = line.split("#", 1)[0]
        header = _HEADER.fullmatch(code)
        if header:
            current = re.sub(r"[\s\"']", "", header.group(1))
            if key and current == (f"{table}.{word}" if table else word):
                return number  # the setting is itself a table: [tool.sevm.disable]
            continue
        if pattern.search(code):
            if current == table:
                return number
            anywhere = anywhere or number
    return anywhere if anywhere or not key else _line_of(path, word)


def _toml_error_line(message: str) -> int | None:
    match = re.search(r"line (\d+)", message)
    return int(match.group(1)) if match else None
