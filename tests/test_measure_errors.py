"""Negative vectors (vectors README §7) and malformed footer tables: every failure is a
DiagnosticError with a message naming the file, never another exception or a hang."""
from __future__ import annotations

import os
import socket
import struct

import pytest

from measure_support import FIXTURES, make_vm
from sevmanifest.diagnostics import DiagnosticError
from sevmanifest.measure import digest, ovmf
from sevmanifest.measure.ovmf import inspect_firmware
from sevmanifest.synthetic import FirmwareSpec, entry, write_firmware


def messages(exc_info) -> str:
    return "\n".join(d.message for d in exc_info.value.diagnostics)


@pytest.fixture
def empty_file(tmp_path):
    path = tmp_path / "empty"
    path.write_bytes(b"")
    return path


@pytest.mark.parametrize("mode", ["sev", "sev-es"])
def test_n1_n2_generic_firmware_with_kernel(mode, empty_file):  # N-1, N-2
    vm = make_vm(FIXTURES["X"], type=mode, kernel=empty_file, cpu_models=("EPYC-v4",))
    with pytest.raises(DiagnosticError) as exc:
        digest.compute(vm)
    text = messages(exc)
    assert str(FIXTURES["X"]) in text and "AmdSevX64" in text and "base 0x0, size 0x0" in text
    assert exc.value.exit_code == 1
    assert [d.message for d in digest.firmware_diagnostics(vm)] == [text]


def test_n4_zero_firmware(tmp_path, empty_file):  # N-4
    zeros = tmp_path / "zeros.fd"
    zeros.write_bytes(bytes(4096))
    result = digest.compute(make_vm(zeros))
    assert result.variants[0].launch_digest.hex() == \
        "ad7facb2586fc6e966c004d7d1d16b024f5805ff7cb47c7a85dabd8b48892ca7"
    assert result.firmware.total_len is None and result.firmware.ap_reset_address is None
    with pytest.raises(DiagnosticError, match="no SEV-ES reset block"):
        digest.compute(make_vm(zeros, type="sev-es", cpu_models=("EPYC-v4",)))
    with pytest.raises(DiagnosticError, match="no SEV hash-table entry"):
        digest.compute(make_vm(zeros, kernel=empty_file))


@pytest.mark.parametrize("size", [0, 1, 49])
def test_n5_short_firmware(tmp_path, size):  # N-5
    short = tmp_path / "short.fd"
    short.write_bytes(bytes(size))
    with pytest.raises(DiagnosticError, match=f"{short} is {size} bytes, too short") as exc:
        digest.compute(make_vm(short))
    assert exc.value.exit_code == 2


@pytest.mark.parametrize("vcpus", [0, -1])
def test_n6_no_vcpus(vcpus):  # N-6
    vm = make_vm(FIXTURES["A"], type="sev-es", vcpus=(vcpus,), cpu_models=("EPYC-v4",))
    with pytest.raises(DiagnosticError, match="vcpus must be at least 1"):
        digest.compute(vm)


@pytest.mark.parametrize("extra", [{"initrd": "empty"}, {"cmdline": "quiet"}])
def test_n7_initrd_or_cmdline_without_kernel(extra, empty_file):  # N-7
    kwargs = {k: empty_file if v == "empty" else v for k, v in extra.items()}
    with pytest.raises(DiagnosticError, match="needs a kernel"):
        digest.compute(make_vm(FIXTURES["A"], **kwargs))


@pytest.mark.parametrize("vcpus", [1, 2])
def test_n8_zero_reset_address(tmp_path, vcpus):  # N-8 (QEMU refuses R = 0 for any count)
    fw = write_firmware(tmp_path / "r0.fd", FirmwareSpec(size=8192, reset_address=0))
    with pytest.raises(DiagnosticError, match="reset address is zero") as exc:
        digest.compute(make_vm(fw, type="sev-es", vcpus=(vcpus,), cpu_models=("EPYC-v4",)))
    assert str(fw) in messages(exc)


def test_sev_es_qemu_needs_cpu():
    with pytest.raises(DiagnosticError, match="needs a cpu model"):
        digest.compute(make_vm(FIXTURES["A"], type="sev-es"))


def test_sev_features_only_for_qemu():
    vm = make_vm(FIXTURES["A"], type="sev-es", vmms=("ec2",), sev_features=(0x20,))
    with pytest.raises(DiagnosticError, match="only modelled for vmm qemu"):
        digest.compute(vm)


def test_unusable_small_hash_area(tmp_path, empty_file):  # QEMU also checks size >= 176
    fw = write_firmware(tmp_path / "small.fd", FirmwareSpec(size=8192, hash_table=(0x810C00, 175)))
    with pytest.raises(DiagnosticError, match="size 0xaf"):
        digest.compute(make_vm(fw, kernel=empty_file))
    ok = write_firmware(tmp_path / "ok.fd", FirmwareSpec(size=8192, hash_table=(0x810C00, 176)))
    digest.compute(make_vm(ok, kernel=empty_file))


# ---- malformed footer tables ------------------------------------------------------------

def craft(tmp_path, table: bytes, total_len: int | None = None, size: int = 4096):
    """A file ending in ``table ‖ u16 total_len ‖ footer GUID ‖ 32 reset bytes``."""
    if total_len is None:
        total_len = len(table) + 18
    tail = table + struct.pack("<H", total_len) + ovmf.FOOTER_GUID + bytes(32)
    path = tmp_path / "crafted.fd"
    path.write_bytes(bytes(size - len(tail)) + tail)
    return path


RESET = entry(ovmf.SEV_ES_RESET_BLOCK_GUID, struct.pack("<I", 0x80B004))
HASHES = entry(ovmf.SEV_HASH_TABLE_RV_GUID, struct.pack("<II", 0x810C00, 0x400))


@pytest.mark.parametrize("case,table,total_len,size,needle", [
    ("total_len below 18", b"", 17, 4096, "shorter than the footer itself"),
    ("total_len beyond file", RESET, 200, 100, "runs past the start of the file"),
    ("entry_len below 18", RESET[:4] + b"\x10\x00" + RESET[6:], None, 4096, "minimum 18"),
    ("entry past table", b"\x00" * 4 + RESET, len(RESET) + 18 + 1, 4096, "form no entry"),
    ("entry longer than table", RESET[:4] + b"\x40\x00" + RESET[6:], None, 4096,
     "runs past the start of the table"),
    ("duplicate GUIDs", RESET + RESET, None, 4096, "two entries with GUID 00f771de"),
    ("truncated reset data", entry(ovmf.SEV_ES_RESET_BLOCK_GUID, b"\x04\xb0"), None, 4096,
     "has 2 bytes of data, 4 expected"),
    ("truncated area data", entry(ovmf.SEV_HASH_TABLE_RV_GUID, b"\x00" * 4) + RESET, None, 4096,
     "has 4 bytes of data, 8 expected"),
])
def test_corrupt_table(tmp_path, case, table, total_len, size, needle):
    path = craft(tmp_path, table, total_len, size)
    with pytest.raises(DiagnosticError) as exc:
        inspect_firmware(path)
    assert needle in messages(exc) and str(path) in messages(exc), case
    assert exc.value.exit_code == 2
    vm = make_vm(path)
    assert digest.firmware_diagnostics(vm)[0].message == messages(exc)
    with pytest.raises(DiagnosticError):
        digest.compute(vm)


def test_table_walk_finds_entries(tmp_path):
    unknown = entry(bytes(range(16)), b"xyz")
    info = inspect_firmware(craft(tmp_path, unknown + HASHES + RESET))
    assert [e.name for e in info.entries] == ["unknown", "sev-hash-table", "sev-es-reset-block"]
    assert info.ap_reset_address == 0x80B004 and info.hash_table == (0x810C00, 0x400)
    assert info.secret_area is None and not info.has_sev_metadata


def test_empty_table(tmp_path):
    info = inspect_firmware(craft(tmp_path, b""))
    assert info.total_len == 18 and info.entries == () and info.ap_reset_address is None


def test_legacy_reset_block_position(tmp_path):  # facts §5: block ending 32 bytes before EOF
    fw = write_firmware(tmp_path / "old.fd", FirmwareSpec(size=4096, legacy_reset_block=True,
                                                          reset_address=0x80A004))
    info = inspect_firmware(fw)
    assert info.total_len is None and info.ap_reset_address == 0x80A004 and info.reset_block_legacy
    vm = make_vm(fw, type="sev-es", vcpus=(2,), cpu_models=("EPYC-v4",))
    assert len(digest.compute(vm).variants) == 1


def test_table_beats_legacy_position(tmp_path):
    info = inspect_firmware(write_firmware(tmp_path / "t.fd", FirmwareSpec(size=4096)))
    assert not info.reset_block_legacy and info.ap_reset_address == 0x0080B004


# ---- files that are not firmware --------------------------------------------------------

def test_missing_firmware_names_path(tmp_path):
    missing = tmp_path / "nope.fd"
    with pytest.raises(DiagnosticError, match=f"cannot read firmware {missing}: no such file"):
        digest.compute(make_vm(missing))


def test_directory_fifo_device_socket(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    sock_path = tmp_path / "sock"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(sock_path))
    try:
        for path, kind in ((tmp_path, "a directory"), (fifo, "a FIFO"),
                           ("/dev/zero", "a device"), (sock_path, "a socket")):
            with pytest.raises(DiagnosticError, match=f"is not a regular file \\({kind}\\)"):
                inspect_firmware(path)
            with pytest.raises(DiagnosticError, match="kernel .* is not a regular file"):
                digest.compute(make_vm(FIXTURES["A"], kernel=path))
    finally:
        sock.close()


def test_huge_firmware_rejected(tmp_path):
    big = tmp_path / "disk.img"
    with open(big, "wb") as handle:
        handle.truncate(ovmf.MAX_FIRMWARE_SIZE + 4096)  # sparse: nothing is written
    with pytest.raises(DiagnosticError, match="larger than any OVMF image"):
        inspect_firmware(big)


def test_unreadable_file(tmp_path, monkeypatch):
    locked = tmp_path / "locked.fd"
    locked.write_bytes(bytes(4096))

    def deny(path, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))
    monkeypatch.setattr(os, "open", deny)  # works as root too
    with pytest.raises(DiagnosticError, match=f"cannot read firmware {locked}: permission denied"):
        inspect_firmware(locked)


def test_pin_mismatch_names_both_digests(empty_file):
    wrong = "0" * 64
    vm = make_vm(FIXTURES["A"], kernel=empty_file, pins={"kernel": wrong})
    with pytest.raises(DiagnosticError) as exc:
        digest.compute(vm)
    text = messages(exc)
    assert f"kernel {empty_file} does not match its pinned sha256" in text
    assert wrong in text and "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" in text
    good = make_vm(FIXTURES["A"], kernel=empty_file, pins={
        "firmware": "8f765dfabc127fc0a938a0744a3103ec15864d7d794eb4c398aa976b6d6ab16c"})
    assert digest.compute(good).artefact_digests["firmware"].startswith("8f765dfa")


def test_all_problems_reported_together(tmp_path):
    vm = make_vm(tmp_path / "nofw", kernel=tmp_path / "nok", initrd=tmp_path / "noi")
    with pytest.raises(DiagnosticError) as exc:
        digest.compute(vm)
    assert len(exc.value.diagnostics) == 1  # the firmware is needed before anything else
    ok = make_vm(FIXTURES["A"], kernel=tmp_path / "nok", initrd=tmp_path / "noi")
    with pytest.raises(DiagnosticError) as exc:
        digest.compute(ok)
    assert {d.message.split(":")[0] for d in exc.value.diagnostics} == \
        {f"cannot read kernel {tmp_path / 'nok'}", f"cannot read initrd {tmp_path / 'noi'}"}


@pytest.mark.parametrize("size", [4000, 5000, 8193])
def test_firmware_size_is_a_multiple_of_4k(tmp_path, size):
    """QEMU maps the image as pflash and refuses (or, below 4 KiB, pads) any other size, so
    the digest of such a file is not the one a guest would report."""
    firmware = tmp_path / "fw.fd"
    write_firmware(firmware, FirmwareSpec(size=size))
    for mode in ("sev", "sev-es"):
        vm = make_vm(firmware, type=mode, cpu_models=("EPYC",))
        with pytest.raises(DiagnosticError) as exc:
            digest.compute(vm)
        assert f"is {size} bytes, not a multiple of 4 KiB" in messages(exc)
        assert exc.value.exit_code == 1
        assert [d.message for d in digest.firmware_diagnostics(vm)] == [messages(exc)]


def test_qemu_refuses_a_pflash_image_that_is_not_a_multiple_of_4k(tmp_path):
    """The rule above is QEMU's own (hw/i386/pc_sysfw.c), checked against QEMU itself."""
    import subprocess
    firmware = tmp_path / "fw.fd"
    write_firmware(firmware, FirmwareSpec(size=5000))
    done = subprocess.run(["qemu-system-x86_64", "-machine", "q35", "-accel", "tcg",
                           "-drive", f"if=pflash,format=raw,unit=0,file={firmware},readonly=on",
                           "-display", "none", "-S", "-nodefaults", "-monitor", "none"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "must be a non-zero multiple of 0x1000" in done.stderr, done.stderr
