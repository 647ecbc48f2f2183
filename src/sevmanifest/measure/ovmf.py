"""The OVMF footer GUID table: where QEMU finds the SEV-ES AP reset address and the
kernel-hashes area (facts §5; QEMU ``hw/i386/pc_sysfw_ovmf.c`` and ``target/i386/sev.c``).

Layout, from the end of a firmware file of size S:

    S-32 .. S-1    reset vector code, "VTF" signature (not part of the table)
    S-48 .. S-33   footer GUID 96b582de-...
    S-50 .. S-49   u16 total_len = entries + this 18-byte footer entry
    before S-50    entries, each ``data ‖ u16 entry_len ‖ GUID``, walked backwards

Only the tail of the file is read: the table cannot be longer than a u16 allows.
"""
from __future__ import annotations

import ctypes
import os
from collections import namedtuple
from pathlib import Path

from ..diagnostics import DiagnosticError, error
from ..model import Span
from .fileio import open_regular, read_exact_at
from .guids import guid_bytes_le, guid_text

# Firmware images are at most a few MiB (OVMF 4M builds are 3.5 MiB).  The bound keeps a
# wrongly named disk image from being streamed into the digest by mistake.
MAX_FIRMWARE_SIZE = 64 << 20
MIN_FIRMWARE_SIZE = 50  # reset-vector area (32) + footer GUID (16) + total_len (2)
RESET_AREA = 32  # bytes at the very end that hold reset-vector code, not table data


FOOTER_GUID = guid_bytes_le("96b582de-1fb2-45f7-baea-a366c55a082d")
SEV_ES_RESET_BLOCK_GUID = guid_bytes_le("00f771de-1a7e-4fcb-890e-68c77e2fb44e")
SEV_HASH_TABLE_RV_GUID = guid_bytes_le("7255371f-3a3b-4b04-927b-1da6efa8d454")
SEV_SECRET_BLOCK_GUID = guid_bytes_le("4c2eb361-7d9b-4cc3-8081-127c90d3d294")
SEV_METADATA_GUID = guid_bytes_le("dc886566-984a-4798-a75e-5585a7bf67cc")
TDX_METADATA_GUID = guid_bytes_le("e47a6535-984a-4798-865e-4685a7bf8ec2")
SVSM_INFO_GUID = guid_bytes_le("a789a612-0597-4c4b-a49f-cbb1fe9d1ddd")

GUID_NAMES = {
    FOOTER_GUID: "footer",
    SEV_ES_RESET_BLOCK_GUID: "sev-es-reset-block",
    SEV_HASH_TABLE_RV_GUID: "sev-hash-table",
    SEV_SECRET_BLOCK_GUID: "sev-secret-block",
    SEV_METADATA_GUID: "sev-metadata",
    TDX_METADATA_GUID: "tdx-metadata",
    SVSM_INFO_GUID: "svsm-info",
}


class EntryTrailer(ctypes.LittleEndianStructure):
    """The 18 bytes that end every table entry (and the footer itself)."""

    _pack_ = 1
    _fields_ = [("length", ctypes.c_uint16), ("guid", ctypes.c_uint8 * 16)]


class ResetBlockData(ctypes.LittleEndianStructure):
    _pack_ = 1
    _fields_ = [("ap_reset_address", ctypes.c_uint32)]


class AreaData(ctypes.LittleEndianStructure):
    """Data of the hash-table RV and secret-block entries: a guest-physical area."""

    _pack_ = 1
    _fields_ = [("base", ctypes.c_uint32), ("size", ctypes.c_uint32)]


TRAILER_SIZE = ctypes.sizeof(EntryTrailer)
assert TRAILER_SIZE == 18
assert ctypes.sizeof(ResetBlockData) == 4 and ctypes.sizeof(AreaData) == 8
# the footer GUID, total_len and the reset area; plus the largest table a u16 can describe
MAX_TAIL = RESET_AREA + TRAILER_SIZE + 0xFFFF


class TableEntry(namedtuple("TableEntry", "guid_le data")):
    """One footer-table entry: ``guid_le`` (the GUID as stored, mixed-endian, 16 bytes) and
    its ``data``.  (Named tuples here: see measure/digest.py.)"""
    __slots__ = ()

    @property
    def guid(self) -> "uuid.UUID":
        import uuid  # only on demand: importing uuid costs start-up time (it loads platform)
        return uuid.UUID(bytes_le=self.guid_le)

    @property
    def guid_text(self) -> str:
        return guid_text(self.guid_le)

    @property
    def name(self) -> str:
        return GUID_NAMES.get(self.guid_le, "unknown")


class FirmwareInfo(namedtuple("FirmwareInfo", "path size total_len entries ap_reset_address "
                              "reset_block_legacy hash_table secret_area has_sev_metadata")):
    """What the measurement needs to know about a firmware image, besides its bytes:

    - ``path``, ``size``;
    - ``total_len``: the footer table's length, None when there is none;
    - ``entries``: TableEntries in file order (the walk runs backwards; this is reversed);
    - ``ap_reset_address``: None without an SEV-ES reset block (0 is kept: QEMU rejects it);
    - ``reset_block_legacy``: True when R came from the pre-table position;
    - ``hash_table``, ``secret_area``: (base, size) of the kernel-hashes and launch-secret
      areas, or None;
    - ``has_sev_metadata``: the SNP "ASEV" entry (not needed for SEV / SEV-ES).
    """
    __slots__ = ()

    @property
    def gpa(self) -> int:
        """Guest-physical address of the first byte: the image ends at 4 GiB."""
        return (1 << 32) - self.size


def inspect_firmware(path: str | os.PathLike, span: Span | None = None) -> FirmwareInfo:
    """Parse the footer table of ``path``; raise DiagnosticError naming the file."""
    path = Path(path)
    fd, st = open_regular(path, "firmware", span)
    try:
        size = st.st_size
        _check_size(path, size, span)
        tail_len = min(size, MAX_TAIL)
        tail = read_exact_at(fd, size - tail_len, tail_len, "firmware", path)
    finally:
        os.close(fd)
    try:
        return _parse(path, size, tail)
    except _Corrupt as exc:
        raise DiagnosticError(error(f"firmware {path}: {exc}", span, fatal_input=True)) from None


def _check_size(path: Path, size: int, span: Span | None) -> None:
    if size < MIN_FIRMWARE_SIZE:
        raise DiagnosticError(error(
            f"firmware {path} is {size} bytes, too short for an OVMF image "
            f"(at least {MIN_FIRMWARE_SIZE} bytes are needed for the footer table)",
            span, fatal_input=True))
    if size > MAX_FIRMWARE_SIZE:
        raise DiagnosticError(error(
            f"firmware {path} is {size} bytes, larger than any OVMF image "
            f"(limit {MAX_FIRMWARE_SIZE >> 20} MiB); is this really the firmware?",
            span, fatal_input=True))


class _Corrupt(ValueError):
    """A malformed table; the caller adds the file name."""


def _parse(path: Path, size: int, tail: bytes) -> FirmwareInfo:
    footer_end = len(tail) - RESET_AREA  # index in ``tail`` just past the footer GUID
    footer = EntryTrailer.from_buffer_copy(tail, footer_end - TRAILER_SIZE)
    entries: list[TableEntry] = []
    total_len = None
    if bytes(footer.guid) == FOOTER_GUID:
        total_len = footer.length
        entries = _walk(tail, footer_end - TRAILER_SIZE, total_len)
    by_guid = {e.guid_le: e for e in entries}
    reset, legacy = _reset_address(tail, by_guid)
    return FirmwareInfo(
        path=path, size=size, total_len=total_len, entries=tuple(reversed(entries)),
        ap_reset_address=reset, reset_block_legacy=legacy,
        hash_table=_area(by_guid, SEV_HASH_TABLE_RV_GUID),
        secret_area=_area(by_guid, SEV_SECRET_BLOCK_GUID),
        has_sev_metadata=SEV_METADATA_GUID in by_guid)


def _walk(tail: bytes, table_end: int, total_len: int) -> list[TableEntry]:
    """Entries nearest the footer first, exactly as QEMU walks them; stricter on errors."""
    if total_len < TRAILER_SIZE:
        raise _Corrupt(f"footer table length {total_len} is shorter than the footer itself (18)")
    remaining = total_len - TRAILER_SIZE
    if remaining > table_end:
        raise _Corrupt(f"footer table length {total_len} runs past the start of the file")
    entries: list[TableEntry] = []
    end = table_end
    while remaining > 0:
        if remaining < TRAILER_SIZE:
            raise _Corrupt(f"{remaining} bytes at the start of the footer table form no entry")
        trailer = EntryTrailer.from_buffer_copy(tail, end - TRAILER_SIZE)
        guid_le = bytes(trailer.guid)
        guid = guid_text(guid_le)
        if trailer.length < TRAILER_SIZE:
            raise _Corrupt(f"footer table entry {guid} has length {trailer.length} (minimum 18)")
        if trailer.length > remaining:
            raise _Corrupt(f"footer table entry {guid} (length {trailer.length}) runs past the "
                           f"start of the table ({remaining} bytes left)")
        if any(e.guid_le == guid_le for e in entries):
            # QEMU takes the entry nearest the footer, other tools the one nearest the start
            raise _Corrupt(f"footer table has two entries with GUID {guid}")
        start = end - trailer.length
        entries.append(TableEntry(guid_le, tail[start:end - TRAILER_SIZE]))
        end = start
        remaining -= trailer.length
    return entries


def _reset_address(tail: bytes, by_guid: dict[bytes, TableEntry]) -> tuple[int | None, bool]:
    entry = by_guid.get(SEV_ES_RESET_BLOCK_GUID)
    if entry is not None:
        return _u32_field(entry, ResetBlockData, "ap_reset_address"), False
    # Before the table existed, OVMF put the same block so that it ends 32 bytes before EOF;
    # QEMU still looks there: the data starts ``length`` bytes before that end.
    block_end = len(tail) - RESET_AREA
    trailer = EntryTrailer.from_buffer_copy(tail, block_end - TRAILER_SIZE)
    if bytes(trailer.guid) != SEV_ES_RESET_BLOCK_GUID:
        return None, False
    data_len = trailer.length - TRAILER_SIZE
    if data_len < ctypes.sizeof(ResetBlockData) or trailer.length > block_end:
        raise _Corrupt(f"the SEV-ES reset block before the reset vector has length "
                       f"{trailer.length}")
    legacy = TableEntry(SEV_ES_RESET_BLOCK_GUID,
                        tail[block_end - trailer.length:block_end - TRAILER_SIZE])
    return _u32_field(legacy, ResetBlockData, "ap_reset_address"), True


def _area(by_guid: dict[bytes, TableEntry], guid: bytes) -> tuple[int, int] | None:
    entry = by_guid.get(guid)
    if entry is None:
        return None
    area = _decode(entry, AreaData)
    return area.base, area.size


def _u32_field(entry: TableEntry, struct, field: str) -> int:
    return getattr(_decode(entry, struct), field)


def _decode(entry: TableEntry, struct):
    if len(entry.data) < ctypes.sizeof(struct):
        raise _Corrupt(f"footer table entry {entry.guid_text} ({entry.name}) has {len(entry.data)} "
                       f"bytes of data, {ctypes.sizeof(struct)} expected")
    return struct.from_buffer_copy(entry.data)
