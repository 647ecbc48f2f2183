"""The kernel-hashes table QEMU writes into the firmware's hash-table area (facts §4).

With ``kernel-hashes=on`` and a kernel, QEMU measures this 176-byte padded table right
after the firmware.  Layout (packed, unchanged since QEMU 6.2):

    0x00  table GUID 9438d606-...        0x10  u16 length 168 (header + 3 entries)
    0x12  cmdline entry (GUID, u16 50, SHA-256)
    0x44  initrd entry                   0x76  kernel entry
    0xa8  8 zero bytes, so LAUNCH_UPDATE_DATA gets a 16-byte-aligned length
"""
from __future__ import annotations

import ctypes
import hashlib

from .guids import guid_bytes_le

TABLE_GUID = guid_bytes_le("9438d606-4f22-4cc9-b479-a793d411fd21")
CMDLINE_GUID = guid_bytes_le("97d02dd8-bd20-4c94-aa78-e7714d36ab2a")
INITRD_GUID = guid_bytes_le("44baf731-3a2f-4bd7-9af1-41e29169781d")
KERNEL_GUID = guid_bytes_le("4de79437-abd2-427f-b835-d5b172d2045b")

EMPTY_SHA256 = hashlib.sha256(b"").digest()  # the initrd entry when there is no initrd

_Guid = ctypes.c_uint8 * 16
_Sha256 = ctypes.c_uint8 * 32


class HashTableEntry(ctypes.LittleEndianStructure):
    _pack_ = 1
    _fields_ = [("guid", _Guid), ("length", ctypes.c_uint16), ("digest", _Sha256)]


class HashTable(ctypes.LittleEndianStructure):
    _pack_ = 1
    _fields_ = [
        ("guid", _Guid),
        ("length", ctypes.c_uint16),
        ("cmdline", HashTableEntry),
        ("initrd", HashTableEntry),
        ("kernel", HashTableEntry),
    ]


class PaddedHashTable(ctypes.LittleEndianStructure):
    _pack_ = 1
    _fields_ = [("table", HashTable), ("padding", ctypes.c_uint8 * 8)]


assert ctypes.sizeof(HashTableEntry) == 50
assert ctypes.sizeof(HashTable) == 168
assert HashTable.cmdline.offset == 0x12 and HashTable.initrd.offset == 0x44
assert HashTable.kernel.offset == 0x76
assert ctypes.sizeof(PaddedHashTable) == 176
PADDED_TABLE_SIZE = ctypes.sizeof(PaddedHashTable)


def cmdline_sha256(cmdline: bytes | None) -> bytes:
    """QEMU hashes the ``-append`` bytes plus the terminating NUL; none is the same as ""."""
    return hashlib.sha256((cmdline or b"") + b"\0").digest()


def _entry(guid: bytes, digest: bytes) -> HashTableEntry:
    if len(digest) != 32:
        raise ValueError(f"a SHA-256 digest has 32 bytes, not {len(digest)}")
    # from_buffer_copy: unpacking 48 bytes into c_uint8 arguments cost 16 µs an entry
    return HashTableEntry(_Guid.from_buffer_copy(guid), ctypes.sizeof(HashTableEntry),
                          _Sha256.from_buffer_copy(digest))


def padded_table(kernel_sha256: bytes, initrd_sha256: bytes | None,
                 cmdline_digest: bytes) -> bytes:
    """The 176 measured bytes.  ``initrd_sha256`` None means no initrd (hash of empty input)."""
    table = HashTable(
        guid=_Guid.from_buffer_copy(TABLE_GUID),
        length=ctypes.sizeof(HashTable),
        cmdline=_entry(CMDLINE_GUID, cmdline_digest),
        initrd=_entry(INITRD_GUID, EMPTY_SHA256 if initrd_sha256 is None else initrd_sha256),
        kernel=_entry(KERNEL_GUID, kernel_sha256),
    )
    return bytes(PaddedHashTable(table=table))
