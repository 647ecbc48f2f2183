"""LAUNCH_MEASURE (SEV API spec 55766 §6.5; facts §2): the *launch measurement* is an
HMAC-SHA-256 keyed by the TIK over a 56-byte message that contains the launch digest
(GCTX.LD).  QEMU reports ``measurement ‖ mnonce`` (48 bytes) in base64.

The TIK is a secret: nothing here prints, logs or embeds it in an error message.
"""
from __future__ import annotations

import base64
import binascii
import ctypes
import hmac
import os
import re

from ..diagnostics import DiagnosticError, error

TIK_SIZE = 16
MNONCE_SIZE = 16
DIGEST_SIZE = 32
BLOB_SIZE = DIGEST_SIZE + MNONCE_SIZE
MEASURE_CONTEXT = 0x04


class LaunchMeasureMessage(ctypes.LittleEndianStructure):
    _pack_ = 1
    _fields_ = [
        ("context", ctypes.c_uint8),  # 0x04
        ("api_major", ctypes.c_uint8),
        ("api_minor", ctypes.c_uint8),
        ("build", ctypes.c_uint8),
        ("policy", ctypes.c_uint32),
        ("launch_digest", ctypes.c_uint8 * DIGEST_SIZE),
        ("mnonce", ctypes.c_uint8 * MNONCE_SIZE),
    ]


assert ctypes.sizeof(LaunchMeasureMessage) == 56
assert LaunchMeasureMessage.launch_digest.offset == 8 and LaunchMeasureMessage.mnonce.offset == 40


def _usage(message: str) -> DiagnosticError:
    return DiagnosticError(error(message, fatal_input=True))


def _check_int(value: int, bits: int, what: str) -> None:
    if not isinstance(value, int) or not 0 <= value < (1 << bits):
        raise _usage(f"{what} must be an integer from 0 to {(1 << bits) - 1}, got {value!r}")


def _check_len(data: bytes, size: int, what: str) -> None:
    if len(data) != size:
        raise _usage(f"{what} must be {size} bytes, got {len(data)}")


def measure_message(launch_digest: bytes, *, api_major: int, api_minor: int, build: int,
                    policy: int, mnonce: bytes) -> bytes:
    """The 56 bytes the secure processor MACs."""
    _check_len(launch_digest, DIGEST_SIZE, "the launch digest")
    _check_len(mnonce, MNONCE_SIZE, "the mnonce")
    for value, bits, what in ((api_major, 8, "api-major"), (api_minor, 8, "api-minor"),
                              (build, 8, "build"), (policy, 32, "policy")):
        _check_int(value, bits, what)
    message = LaunchMeasureMessage(
        context=MEASURE_CONTEXT, api_major=api_major, api_minor=api_minor, build=build,
        policy=policy, launch_digest=(ctypes.c_uint8 * DIGEST_SIZE)(*launch_digest),
        mnonce=(ctypes.c_uint8 * MNONCE_SIZE)(*mnonce))
    return bytes(message)


def launch_measurement(launch_digest: bytes, tik: bytes, *, api_major: int, api_minor: int,
                       build: int, policy: int, mnonce: bytes) -> bytes:
    """MEASURE = HMAC-SHA-256(TIK, 0x04 ‖ api ‖ build ‖ policy ‖ LD ‖ mnonce): 32 bytes."""
    if len(tik) != TIK_SIZE:
        raise _usage(f"the TIK must be {TIK_SIZE} bytes")
    message = measure_message(launch_digest, api_major=api_major, api_minor=api_minor,
                              build=build, policy=policy, mnonce=mnonce)
    return hmac.new(tik, message, "sha256").digest()


def measurement_blob(measurement: bytes, mnonce: bytes) -> bytes:
    """measurement ‖ mnonce, the 48 bytes QMP ``query-sev-launch-measure`` reports."""
    _check_len(measurement, DIGEST_SIZE, "the launch measurement")
    _check_len(mnonce, MNONCE_SIZE, "the mnonce")
    return measurement + mnonce


def refuse_key_as_path(path: str | os.PathLike) -> None:
    """``--tik`` names a file.  A value that is no file but reads as a 16-byte key (hex or
    base64) is the key itself pasted by mistake: refuse it without echoing it, because an
    error message would put the key into terminal scrollback and CI logs."""
    text = os.fspath(path)
    if text == "-" or os.path.lexists(text):
        return
    value = text.strip()
    match = _HEX.fullmatch(value)
    is_hex = match is not None and len(match.group(2)) == 2 * TIK_SIZE
    try:
        is_b64 = len(base64.b64decode(value, validate=True)) == TIK_SIZE
    except (binascii.Error, ValueError):
        is_b64 = False
    if is_hex or is_b64:
        raise _usage("--tik takes the name of the file that holds the TIK (16 raw bytes); the "
                     "value given is no file and looks like a key itself, so it is not shown")


# A TIK file is 16 bytes; reading a little more is enough to say what else it is.
TIK_READ_LIMIT = 4096


def read_tik(path: str | os.PathLike) -> bytes:
    """The 16-byte binary TIK file ``sevctl session`` writes: a regular file, a pipe
    (``<(...)``) or ``-`` (standard input), for ``sevm measure`` and ``sevm verify`` alike.
    Errors say what the file looks like, never what it holds: it is (or may be) the secret."""
    from .fileio import read_small_input
    refuse_key_as_path(path)
    text = os.fspath(path)
    name = "<stdin>" if text == "-" else text
    data = read_small_input(text, "TIK file", TIK_READ_LIMIT)
    if len(data) > TIK_READ_LIMIT:
        raise _usage(f"TIK file {name} is larger than {TIK_READ_LIMIT} bytes; that is not a "
                     "TIK file")
    if len(data) != TIK_SIZE:
        raise _usage(f"TIK file {name} has {len(data)} bytes; a TIK file holds exactly "
                     f"{TIK_SIZE} raw bytes, as sevctl session writes NAME_tik.bin"
                     f"{_tik_hint(data)}")
    return data


def _tik_hint(data: bytes) -> str:
    text = data.strip()
    match = _HEX.fullmatch(text.decode("latin-1"))
    if match is not None and len(match.group(2)) == 2 * TIK_SIZE:
        return " (this one holds hex text: convert it, e.g. with xxd -r -p)"
    try:
        if len(base64.b64decode(text, validate=True)) == TIK_SIZE:
            return " (this one holds base64 text: convert it, e.g. with base64 -d)"
    except ValueError:  # binascii.Error is one
        pass
    if len(data) == 2 * TIK_SIZE:
        return (" (32 bytes is a TEK||TIK pair as libvirt --tk and sev-tool use: the TIK is its "
                "last 16 bytes)")
    return ""


_HEX = re.compile(r"(0x)?([0-9a-fA-F]*)")


def decode_bytes_arg(text: str, length: int, what: str) -> bytes:
    """Decode an option value given as hex or base64 that must be ``length`` bytes."""
    value = text.strip()
    hex_match = _HEX.fullmatch(value)
    if hex_match and len(hex_match.group(2)) == 2 * length:
        return bytes.fromhex(hex_match.group(2))
    try:
        decoded = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        decoded = None
    if decoded is not None and len(decoded) == length:
        return decoded
    raise _usage(f"{what} must be {length} bytes as base64 ({_b64_len(length)} characters) or "
                 f"hex ({2 * length} digits); got {len(value)} characters that are {length} bytes "
                 "in neither encoding")


def _b64_len(length: int) -> int:
    return 4 * ((length + 2) // 3)
