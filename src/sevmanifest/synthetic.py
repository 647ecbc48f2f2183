"""Synthetic, OVMF-shaped test images: deterministic from a seed, labelled as synthetic.

They carry a real footer GUID table (facts §5) with a chosen AP reset address, hash-table
area and secret area, around pseudo-random filler.  They boot nothing; they exist so that
tests, examples and benchmarks can compute launch digests without shipping firmware.

    python -m sevmanifest.synthetic OUTDIR    # (re)create the example images in OUTDIR
"""
from __future__ import annotations

import argparse
import hashlib
import os
import struct
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from .fsutil import OutputError, atomic_write, replace_with_chunks
from .measure import ovmf

BANNER = b"SEVMANIFEST SYNTHETIC TEST IMAGE - NOT FIRMWARE"
KERNEL_BANNER = b"SEVMANIFEST SYNTHETIC TEST IMAGE - NOT A KERNEL"
INITRD_BANNER = b"SEVMANIFEST SYNTHETIC TEST IMAGE - NOT AN INITRD"
RESET_AREA = b"\x90" * 28 + b"VTF\x00"  # stands in for the reset-vector code
CHUNK = 1 << 20
assert len(RESET_AREA) == ovmf.RESET_AREA

# The areas of edk2-stable202405's AmdSevX64 build (vectors README §2.1, fixture A).
AMDSEV_RESET = 0x0080B004
AMDSEV_HASH_TABLE = (0x810C00, 0x400)
AMDSEV_SECRET = (0x810000, 0xC00)


@dataclass(frozen=True)
class FirmwareSpec:
    size: int = 256 << 10
    reset_address: int | None = AMDSEV_RESET  # None: no SEV-ES reset block
    hash_table: tuple[int, int] | None = AMDSEV_HASH_TABLE  # None: no entry; (0, 0): unusable
    secret_area: tuple[int, int] | None = AMDSEV_SECRET
    metadata_offset: int | None = None  # an SNP "ASEV" entry (offset from the end); no header
    tdx: bool = False
    footer: bool = True  # False: no footer table at all
    legacy_reset_block: bool = False  # the pre-table layout: reset block just before the vector
    extra_entries: tuple[tuple[bytes, bytes], ...] = ()  # (GUID bytes_le, data), placed first
    seed: int = 0


def entry(guid: bytes, data: bytes) -> bytes:
    """One footer-table entry: data ‖ u16 length ‖ GUID."""
    return data + struct.pack("<H", len(data) + ovmf.TRAILER_SIZE) + guid


def footer_entries(spec: FirmwareSpec) -> list[bytes]:
    """The entries in file order, the reset block last (nearest the footer), as in OVMF."""
    items = [entry(g, d) for g, d in spec.extra_entries]
    if spec.tdx:
        items.append(entry(ovmf.TDX_METADATA_GUID, struct.pack("<I", 0x9D0)))
    if spec.metadata_offset is not None:
        items.append(entry(ovmf.SEV_METADATA_GUID, struct.pack("<I", spec.metadata_offset)))
    for guid, area in ((ovmf.SEV_HASH_TABLE_RV_GUID, spec.hash_table),
                       (ovmf.SEV_SECRET_BLOCK_GUID, spec.secret_area)):
        if area is not None:
            items.append(entry(guid, struct.pack("<II", *area)))
    if spec.reset_address is not None and not spec.legacy_reset_block:
        items.append(entry(ovmf.SEV_ES_RESET_BLOCK_GUID, struct.pack("<I", spec.reset_address)))
    return items


def firmware_tail(spec: FirmwareSpec) -> bytes:
    """Everything from the first table byte to the end of the image."""
    if spec.legacy_reset_block:
        block = entry(ovmf.SEV_ES_RESET_BLOCK_GUID, struct.pack("<I", spec.reset_address or 0))
        return block + RESET_AREA
    if not spec.footer:
        return RESET_AREA
    body = b"".join(footer_entries(spec))
    total_len = len(body) + ovmf.TRAILER_SIZE
    return body + struct.pack("<H", total_len) + ovmf.FOOTER_GUID + RESET_AREA


def firmware_image(spec: FirmwareSpec) -> bytes:
    tail = firmware_tail(spec)
    head_len = spec.size - len(tail)
    if head_len < len(BANNER):
        raise ValueError(f"a synthetic firmware of {spec.size} bytes cannot hold its table")
    head = BANNER + b"".join(_filler(head_len - len(BANNER), spec.seed, b"firmware"))
    return head + tail


def _filler(size: int, seed: int, label: bytes) -> Iterator[bytes]:
    """Deterministic pseudo-random bytes in chunks (SHAKE-128 of seed, label, chunk index)."""
    index = 0
    while size > 0:
        n = min(size, CHUNK)
        yield hashlib.shake_128(b"%s:%d:%d" % (label, seed, index)).digest(n)
        size -= n
        index += 1


def blob_chunks(size: int, seed: int, banner: bytes = KERNEL_BANNER) -> Iterator[bytes]:
    """A kernel- or initrd-like file of ``size`` bytes, starting with ``banner``."""
    if size <= 0:
        return
    if size <= len(banner):
        yield banner[:size]
        return
    yield banner
    yield from _filler(size - len(banner), seed, banner[-8:])


def write_firmware(path: str | os.PathLike, spec: FirmwareSpec) -> Path:
    atomic_write(path, firmware_image(spec))
    return Path(path)


def write_blob(path: str | os.PathLike, size: int, seed: int,
               banner: bytes = KERNEL_BANNER) -> Path:
    """Stream a large synthetic file to disk (temporary file, then rename)."""
    return write_stream(path, blob_chunks(size, seed, banner))


def write_stream(path: str | os.PathLike, chunks: Iterable[bytes]) -> Path:
    """Like fsutil.atomic_write, for content too large to hold in memory."""
    return replace_with_chunks(path, chunks, durable=False)


EXAMPLES = {
    "OVMF.synthetic-amdsev.fd": FirmwareSpec(seed=1),
    "OVMF.synthetic-generic.fd": FirmwareSpec(hash_table=(0, 0), secret_area=(0, 0), seed=2),
}
EXAMPLE_BLOBS = {
    "vmlinuz.synthetic": (64 << 10, 3, KERNEL_BANNER),
    "initrd.synthetic.img": (128 << 10, 4, INITRD_BANNER),
}

README = """\
# Synthetic example images

These files are **synthetic test images, not firmware and not a kernel**. Each starts with
the ASCII banner `SEVMANIFEST SYNTHETIC TEST IMAGE - NOT ...` followed by deterministic
pseudo-random bytes (SHAKE-128 of a seed). They boot nothing. They exist so that the example
manifests can be measured, rendered and locked without shipping real firmware.

| file | size | what |
|---|---|---|
| `OVMF.synthetic-amdsev.fd` | 256 KiB | OVMF-shaped: footer GUID table with SEV-ES reset block (R = 0x0080b004), kernel-hashes area base 0x810c00 / size 0x400 and secret area base 0x810000 / size 0xc00, like an `OvmfPkg/AmdSev/AmdSevX64.dsc` build |
| `OVMF.synthetic-generic.fd` | 256 KiB | the same reset block, but hash-table and secret areas 0 / 0, like Debian's stock `OVMF_CODE*.fd`: disk boot only, `kernel-hashes on` is rejected |
| `vmlinuz.synthetic` | 64 KiB | stands in for a kernel |
| `initrd.synthetic.img` | 128 KiB | stands in for an initrd |

The firmware sizes are multiples of 64 KiB, so QEMU accepts them both as pflash and as
`-bios`. Launch digests computed over these files are test values only, never reference
values for a real guest.

Regenerate them (byte for byte identical) with:

    python -m sevmanifest.synthetic manifests/images
"""


def write_examples(outdir: str | os.PathLike) -> list[Path]:
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    written = [write_firmware(out / name, spec) for name, spec in EXAMPLES.items()]
    written += [write_blob(out / name, size, seed, banner)
                for name, (size, seed, banner) in EXAMPLE_BLOBS.items()]
    atomic_write(out / "README.md", README)
    return written + [out / "README.md"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sevmanifest.synthetic",
                                     description="(Re)create the synthetic example images.")
    parser.add_argument("outdir", help="directory to write into (created if missing)")
    args = parser.parse_args(argv)
    try:
        for path in write_examples(args.outdir):
            print(path)
    except (OSError, OutputError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
