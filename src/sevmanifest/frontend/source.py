"""Reading manifest text: bounded, regular files only, strict UTF-8 with a located error."""
from __future__ import annotations

import os
import stat
import sys

from ..diagnostics import Diagnostic, error
from ..model import Span

# A hand-written manifest is a few KiB.  256 KiB keeps the worst case (the most tokens
# per byte, e.g. "vcpus 1,1,1,…") to a few seconds of parsing; at 1 MiB it was 10-30 s.
MAX_MANIFEST_BYTES = 256 << 10
BOM = b"\xef\xbb\xbf"


def read_source(path: str, origin: Span | None = None, *,
                keep_bom: bool = False) -> tuple[str | None, Diagnostic | None]:
    """The text of a manifest, or a diagnostic (located at ``origin``, e.g. an import line).
    A byte-order mark is not part of the manifest: dropped, unless ``keep_bom`` (``fmt``
    puts it back)."""
    where = origin or Span(path, 1, 1, 1, 1)
    if path == "-":
        data = sys.stdin.buffer.read(MAX_MANIFEST_BYTES + 1)
    else:
        try:
            st = os.stat(path)
            if stat.S_ISDIR(st.st_mode):
                return None, error(f"{path} is a directory, not a manifest", where, fatal_input=True)
            if not stat.S_ISREG(st.st_mode):
                return None, error(f"{path} is not a regular file", where, fatal_input=True)
            with open(path, "rb") as handle:
                data = handle.read(MAX_MANIFEST_BYTES + 1)
        except FileNotFoundError:
            what = "imported file" if origin else "manifest"
            return None, error(f"{what} not found: {os.path.abspath(path)}", where, fatal_input=True)
        except OSError as exc:
            return None, error(f"cannot read {path}: {exc.strerror or exc}", where, fatal_input=True)
    if len(data) > MAX_MANIFEST_BYTES:
        return None, error(f"{path} is larger than {MAX_MANIFEST_BYTES // 1024} KiB, the limit for "
                           "a manifest", where, fatal_input=True)
    return _decode(data, path, keep_bom)


def _decode(data: bytes, path: str, keep_bom: bool) -> tuple[str | None, Diagnostic | None]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        line_start = data.rfind(b"\n", 0, exc.start) + 1
        column = len(data[line_start:exc.start].decode("utf-8", "replace")) + 1
        if line_start == 0 and data.startswith(BOM):
            column -= 1  # the mark is not a column, as everywhere else
        span = Span(path, line, column, line, column + 1)
        return None, error(f"not UTF-8: byte 0x{data[exc.start]:02x} cannot start or continue a "
                           "character; manifests are UTF-8 text", span, fatal_input=True)
    if text.startswith("\ufeff") and not keep_bom:
        text = text[1:]
    return text, None
