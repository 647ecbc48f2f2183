"""Parse the JSON that QEMU's QMP returns for ``query-sev`` and ``query-sev-launch-measure``.

A verifier gets these replies from a host it does not trust, so every value is checked
for presence, JSON type and range, and every problem becomes a DiagnosticError that
names the file (never a Python exception).  Both the bare object and the full QMP reply
``{"return": {...}}`` are accepted.  Shapes (facts document §8):

- ``query-sev`` up to QEMU 9.0: ``{"enabled", "api-major", "api-minor", "build-id",
  "policy", "state", "handle"}``;
- from QEMU 9.1 the same object gains ``"sev-type": "sev" | "sev-snp"``; only ``sev``
  (which covers SEV-ES too) is supported here;
- ``query-sev-launch-measure``: ``{"data": base64 of MEASURE(32) || MNONCE(16)}``.
"""
from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass

from ..diagnostics import DiagnosticError, error
from ..model import Span

# A QMP reply to either command is a few hundred bytes; anything far larger is not one.
MAX_REPLY_BYTES = 1 << 20
MEASUREMENT_BLOB_BYTES = 48

# SevState values from which QEMU has a launch measurement to report.
MEASURED_STATES = ("launch-secret", "running")
KNOWN_STATES = ("uninit", "launch-update", "launch-secret", "running", "send-update",
                "receive-update")

SHAPE_FLAT = "flat (QEMU <= 9.0)"
SHAPE_UNION = "sev-type union (QEMU >= 9.1)"


@dataclass(frozen=True)
class SevInfo:
    """What ``query-sev`` says about a running SEV / SEV-ES guest."""

    api_major: int
    api_minor: int
    build: int
    policy: int
    state: str
    handle: int
    shape: str  # SHAPE_FLAT or SHAPE_UNION, for messages


def parse_query_sev(data: bytes | str, source: str) -> SevInfo:
    """Parse a ``query-sev`` reply; ``source`` names the input in messages."""
    obj = _reply_object(data, source, "query-sev")
    shape = SHAPE_FLAT
    if "sev-type" in obj:
        shape = SHAPE_UNION
        sev_type = obj["sev-type"]
        if sev_type == "sev-snp":
            _fail(source, "query-sev reports an SEV-SNP guest (\"sev-type\": \"sev-snp\"): "
                          "not supported; sevm verify checks SEV and SEV-ES launch "
                          "measurements only")
        if sev_type != "sev":
            _fail(source, f"query-sev: \"sev-type\" must be \"sev\" or \"sev-snp\", got "
                          f"{_shown(sev_type)}")
    enabled = _field(obj, "enabled", bool, source)
    if not enabled:
        _fail(source, "query-sev reports \"enabled\": false: the guest was not launched with SEV")
    state = _field(obj, "state", str, source)
    if state not in KNOWN_STATES:
        _fail(source, f"query-sev: unknown \"state\" {_shown(state)} "
                      f"(expected one of {', '.join(KNOWN_STATES)})")
    if state not in MEASURED_STATES:
        _fail(source, f"query-sev: the guest is in state {state!r}; a launch measurement exists "
                      f"only in state 'launch-secret' or 'running'")
    return SevInfo(
        api_major=_uint(obj, "api-major", 8, source),
        api_minor=_uint(obj, "api-minor", 8, source),
        build=_uint(obj, "build-id", 8, source),
        policy=_uint(obj, "policy", 32, source),
        state=state,
        handle=_uint(obj, "handle", 32, source),
        shape=shape,
    )


def parse_launch_measure(data: bytes | str, source: str) -> bytes:
    """Parse a ``query-sev-launch-measure`` reply into the 48-byte MEASURE || MNONCE blob."""
    obj = _reply_object(data, source, "query-sev-launch-measure")
    text = _field(obj, "data", str, source)
    try:
        blob = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        _fail(source, "query-sev-launch-measure: \"data\" is not valid base64")
    if len(blob) != MEASUREMENT_BLOB_BYTES:
        _fail(source, f"query-sev-launch-measure: \"data\" decodes to {len(blob)} bytes; "
                      f"the launch measurement blob is {MEASUREMENT_BLOB_BYTES} bytes "
                      "(32-byte measurement followed by the 16-byte nonce)")
    return blob


def _reply_object(data: bytes | str, source: str, command: str) -> dict:
    obj = load_json(data, source)
    if isinstance(obj, dict) and "error" in obj and "return" not in obj:
        err = obj["error"]
        desc = err.get("desc") if isinstance(err, dict) else None
        _fail(source, f"{command}: QMP returned an error"
                      + (f": {_shown(desc)}" if isinstance(desc, str) else ""))
    if isinstance(obj, dict) and "QMP" in obj:
        _fail(source, f"this is the QMP greeting, not the reply to {command}")
    if isinstance(obj, dict) and "return" in obj:
        obj = obj["return"]
    if not isinstance(obj, dict):
        _fail(source, f"{command}: expected a JSON object (or a QMP reply {{\"return\": {{...}}}}), "
                      f"got {_json_type(obj)}")
    return obj


def load_json(data: bytes | str, source: str):
    """Decode one bounded, UTF-8, strictly standard JSON document (no NaN, no duplicate keys)."""
    if len(data) > MAX_REPLY_BYTES:
        _fail(source, f"input is larger than {MAX_REPLY_BYTES} bytes (1 MiB); "
                      "a QMP reply is a few hundred bytes")
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            _fail(source, f"input is not UTF-8 text (byte {exc.start}); expected a JSON QMP reply")
    if not data.strip():
        _fail(source, "input is empty; expected a JSON QMP reply")
    try:
        return json.loads(data, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        span = Span(source, exc.lineno, exc.colno, exc.lineno, exc.colno + 1)
        raise DiagnosticError(error(f"malformed JSON: {exc.msg}", span, fatal_input=True)) from None
    except _JsonRejected as exc:
        _fail(source, f"malformed JSON: {exc}")
    except (ValueError, RecursionError):  # e.g. an integer with thousands of digits
        _fail(source, "malformed JSON: a value is too large or too deeply nested")


class _JsonRejected(ValueError):
    pass


def _no_duplicates(pairs):
    # A reply with two "policy" keys could show a reviewer one value and us the other.
    seen: dict = {}
    for key, value in pairs:
        if key in seen:
            raise _JsonRejected(f"duplicate key {key!r}")
        seen[key] = value
    return seen


def _no_constant(name: str):
    raise _JsonRejected(f"{name} is not a JSON value")


def _field(obj: dict, key: str, kind: type, source: str):
    if key not in obj:
        _fail(source, f"missing key \"{key}\"")
    value = obj[key]
    # bool is a subclass of int in Python; JSON keeps them apart, and so do we.
    if type(value) is not kind:
        _fail(source, f"\"{key}\" must be a JSON {_kind_name(kind)}, got {_json_type(value)}")
    return value


def _uint(obj: dict, key: str, bits: int, source: str) -> int:
    value = _field(obj, key, int, source)
    if not 0 <= value < (1 << bits):
        _fail(source, f"\"{key}\" must be an unsigned {bits}-bit integer, got {value}")
    return value


def _kind_name(kind: type) -> str:
    return {bool: "boolean (true/false)", int: "integer", str: "string"}[kind]


def _json_type(value) -> str:
    if value is None:
        return "null"
    names = {bool: "a boolean", int: "an integer", float: "a number with a fraction",
             str: "a string", list: "an array", dict: "an object"}
    return names.get(type(value), type(value).__name__)


def _shown(value) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _fail(source: str, message: str):
    raise DiagnosticError(error(f"{source}: {message}", fatal_input=True))
