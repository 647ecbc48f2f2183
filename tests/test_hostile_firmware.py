"""Hostile firmware images: mutated OVMF footer tables and truncated files (Hypothesis).

Every image gives either a FirmwareInfo or a DiagnosticError (exit status 2) naming the file,
never another exception.  When sevm accepts a table, what it read must agree with an
independent reading of QEMU's walk (hostile_support.qemu_find, written from facts §5):
sevm may be stricter than QEMU, never different.
"""
from __future__ import annotations

import struct

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from hostile_support import (FOOTER, HASH_TABLE, KNOWN_GUIDS, RESET_BLOCK, SECRET,
                             fuzz_settings, image_with_table, qemu_find, qemu_legacy_reset,
                             table_entry)
from measure_support import make_vm
from sevmanifest.diagnostics import EXIT_USAGE, DiagnosticError
from sevmanifest.measure import digest
from sevmanifest.measure.ovmf import MIN_FIRMWARE_SIZE, inspect_firmware

guids = st.one_of(st.sampled_from(KNOWN_GUIDS), st.sampled_from(KNOWN_GUIDS[1:4]),
                  st.binary(min_size=16, max_size=16),
                  st.sampled_from(KNOWN_GUIDS).map(lambda g: g[:15] + bytes([g[15] ^ 1])))
lengths = st.one_of(st.integers(0, 40), st.sampled_from([17, 18, 19, 0xFFFF]),
                    st.integers(0, 0xFFFF))
# data sizes a real entry has (u32 reset address, u32 base + u32 size), and others
data = st.one_of(st.binary(min_size=4, max_size=4), st.binary(min_size=8, max_size=8),
                 st.binary(max_size=12))
MUTATIONS = ("none", "entry length", "total_len", "footer GUID", "duplicate", "truncate end",
             "keep tail", "flip", "legacy block", "no table")


@st.composite
def images(draw) -> bytes:
    """A well-formed footer table, then (mostly) one mutation: a wrong entry or total
    length (zero, < 18, past the table or the file, a loop back onto the footer), a corrupt
    footer GUID, a duplicate entry, truncation at either end, byte flips, or the pre-table
    reset block."""
    parts = [[g, d, None] for g, d in draw(st.lists(st.tuples(guids, data), max_size=5,
                                                     unique_by=lambda part: part[0]))]
    mutation = draw(st.sampled_from(MUTATIONS))
    if mutation == "entry length" and parts:
        draw(st.sampled_from(parts))[2] = draw(lengths)
    if mutation == "duplicate" and parts:
        parts.insert(draw(st.integers(0, len(parts))), list(draw(st.sampled_from(parts))))
    table = b"".join(table_entry(*part) for part in parts)
    total_len = draw(lengths) if mutation == "total_len" else None
    footer = draw(guids) if mutation == "footer GUID" else FOOTER
    prefix = draw(st.one_of(st.just(bytes(64)), st.binary(max_size=64)))
    reset_area = draw(st.one_of(st.just(bytes(32)), st.binary(min_size=32, max_size=32)))
    if mutation == "legacy block":  # facts §5: the block ending 32 bytes before EOF
        block = table_entry(RESET_BLOCK, draw(data), draw(st.none() | lengths))
        image = prefix + block + reset_area
    elif mutation == "no table":
        image = prefix + draw(st.binary(max_size=80)) + reset_area
    else:
        image = image_with_table(table, total_len=total_len, prefix=prefix, footer=footer,
                                 reset_area=reset_area)
    if mutation in ("truncate end", "keep tail"):
        cut = draw(st.integers(0, len(image)))
        image = image[:cut] if mutation == "truncate end" else image[len(image) - cut:]
    if mutation == "flip" and image:
        flipped = bytearray(image)
        for _ in range(draw(st.integers(1, 3))):
            flipped[draw(st.integers(0, len(image) - 1))] ^= draw(st.integers(1, 255))
        image = bytes(flipped)
    return image


def check_image(path, image: bytes) -> None:
    path.write_bytes(image)
    try:
        info = inspect_firmware(path)
    except DiagnosticError as exc:
        assert exc.exit_code == EXIT_USAGE
        assert all(str(path) in d.message for d in exc.diagnostics)
        return
    assert len(image) >= MIN_FIRMWARE_SIZE and info.size == len(image)
    names = [e.guid.bytes_le for e in info.entries]
    assert len(names) == len(set(names)), "duplicate GUIDs must be rejected"
    if info.total_len is not None:
        assert info.total_len == 18 + sum(len(e.data) + 18 for e in info.entries)
    for wanted, area in ((HASH_TABLE, info.hash_table), (SECRET, info.secret_area)):
        found = qemu_find(image, wanted)
        assert (area is None) == (found is None)
        if area is not None:
            assert area == struct.unpack_from("<II", found)
    from_table = qemu_find(image, RESET_BLOCK)
    if from_table is not None:
        assert not info.reset_block_legacy
        assert info.ap_reset_address == struct.unpack_from("<I", from_table)[0]
    else:
        assert info.ap_reset_address == qemu_legacy_reset(image)


@fuzz_settings("footer tables")
@given(images())
# crashers and edge cases kept as regressions (see docs/robustness.md)
@example(image_with_table(b"", total_len=0))
@example(image_with_table(table_entry(RESET_BLOCK, b"\x04\xb0\x80\x00", 0)))
@example(image_with_table(table_entry(RESET_BLOCK, b"\x04\xb0\x80\x00", 0xFFFF)))
@example(image_with_table(table_entry(RESET_BLOCK, b"", 18)))  # zero-length data
@example(image_with_table(table_entry(RESET_BLOCK, b"\x04\xb0\x80\x00") * 2))  # duplicates
@example(image_with_table(table_entry(HASH_TABLE, b"\x00" * 8, 17)))
@example(bytes(MIN_FIRMWARE_SIZE - 1))
@example(bytes(MIN_FIRMWARE_SIZE))
@example(FOOTER + bytes(32))  # 48 bytes: the footer GUID, no total_len
@example(struct.pack("<H", 0xFFFF) + FOOTER + bytes(32))  # total_len far past the start
def test_mutated_footer_tables(tmp_path, image):
    check_image(tmp_path / "fw.fd", image)


@fuzz_settings("measurement path")
@given(images(), st.sampled_from(["sev", "sev-es"]), st.booleans())
def test_mutated_tables_through_the_measurement(tmp_path, image, guest, kernel):
    """The whole measurement path (firmware problems, hashing, VMSA) on the same images."""
    directory = tmp_path
    fw = directory / "fw.fd"
    fw.write_bytes(image)
    kernel_path = directory / "vmlinuz"
    kernel_path.write_bytes(b"kernel")
    vm = make_vm(fw, type=guest, kernel=kernel_path if kernel else None,
                 cpu_models=("EPYC-v4",) if guest == "sev-es" else (), vcpus=(1, 3))
    problems = digest.firmware_diagnostics(vm)
    try:
        result = digest.compute(vm)
    except DiagnosticError as exc:
        assert exc.exit_code in (1, 2) and any(d.is_error for d in exc.diagnostics)
        assert [d.message for d in problems] == [d.message for d in exc.diagnostics]
        return
    assert not any(d.is_error for d in problems)
    assert [len(v.launch_digest) for v in result.variants] == [32, 32]


@pytest.mark.parametrize("size", [0, 1, 17, 49, 50, 51, 4095])
def test_truncated_real_firmware(tmp_path, size, shared):
    """The last ``size`` bytes and the first ``size`` bytes of a real AmdSev build."""
    real = (shared / "vectors/sevctl/OVMF.amdsev.fd_trimmed_edk2-ovmf-20220126gitbb1bba3d77-4.el9"
            ).read_bytes()
    for name, image in (("tail", real[len(real) - size:]), ("head", real[:size])):
        check_image(tmp_path / f"{name}.fd", image)
