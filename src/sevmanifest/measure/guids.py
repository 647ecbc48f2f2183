"""GUIDs as firmware stores them ("bytes_le": the first three fields little-endian), without
the ``uuid`` module: importing it loads ``platform``, a measurable share of `sevm check`'s
start-up, and these modules only ever compare GUID bytes and print them."""
from __future__ import annotations


def _swap(raw: bytes) -> bytes:
    # 4-2-2 leading fields reversed, the last 8 bytes as they are (an involution)
    return raw[3::-1] + raw[5:3:-1] + raw[7:5:-1] + raw[8:]


def guid_bytes_le(text: str) -> bytes:
    """``"96b582de-1fb2-…"`` -> its 16 bytes as stored; same as ``uuid.UUID(text).bytes_le``."""
    raw = bytes.fromhex(text.replace("-", ""))
    if len(raw) != 16:
        raise ValueError(f"not a GUID: {text!r}")
    return _swap(raw)


def guid_text(bytes_le: bytes) -> str:
    """The canonical lower-case text of stored GUID bytes; same as ``str(uuid.UUID(bytes_le=…))``."""
    h = _swap(bytes_le).hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
