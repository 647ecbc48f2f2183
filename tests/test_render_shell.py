"""Injection safety of the shell script: random cmdlines and paths, rendered into the
script and run by /bin/sh with a stand-in QEMU that records its argv, arrive byte-identical
to the argv list (and to the manifest's bytes)."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from render_support import make_vm, run_script
from render_support_gen import TRICKY, cmdline_bytes

from sevmanifest import render

# directory names: any bytes a Linux file name may hold (no NUL, no "/"), tricky ones favoured
dir_names = st.one_of(
    st.text(alphabet=TRICKY.replace("/", ""), min_size=1, max_size=16).map(lambda s: s.encode()),
    st.binary(min_size=1, max_size=12).map(lambda b: b.replace(b"\0", b"_").replace(b"/", b"_")),
).filter(lambda b: b not in (b".", b".."))


def _render_and_run(vm, directory: Path, extra=()) -> tuple[list[bytes], list[str]]:
    variant = render.select_variant(vm, "vcpus=4")
    script = render.encode_output(render.render_qemu(vm, variant).text)
    received = run_script(script, directory, list(extra))
    return received, render.qemu_command(vm, variant).argv


@settings(max_examples=100, deadline=None)
@given(cmdline=cmdline_bytes, name=dir_names, extra=st.lists(st.text(alphabet=TRICKY, max_size=8),
                                                             max_size=2))
def test_script_delivers_argv_byte_for_byte(cmdline, name, extra):
    base = Path(tempfile.mkdtemp(prefix="sevm-sh-"))
    try:
        directory = Path(os.fsdecode(os.fsencode(base) + b"/" + name))
        vm = make_vm(directory, cmdline=cmdline)
        received, argv = _render_and_run(vm, base, extra)
        assert received == [os.fsencode(a) for a in argv[1:]] + [a.encode() for a in extra]
        assert received[received.index(b"-append") + 1] == cmdline
        assert received[received.index(b"-kernel") + 1] == os.fsencode(directory) + b"/vmlinuz"
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_hostile_manifest_strings_do_not_execute(tmp_path: Path):
    marker = tmp_path / "pwned"
    hostile = f"$(touch {marker}) `touch {marker}` '; touch {marker}; ' \"; touch {marker}\"".encode()
    vm = make_vm(tmp_path / f"x'$(touch {marker})", cmdline=hostile)
    received, _ = _render_and_run(vm, tmp_path)
    assert received[received.index(b"-append") + 1] == hostile
    assert not marker.exists()


def test_script_layout(tmp_path: Path):
    vm = make_vm(tmp_path, name="web\nfrontend")
    text = render.render_qemu(vm, render.select_variant(vm, "vcpus=4")).text
    lines = text.splitlines()
    assert lines[0] == "#!/bin/sh"
    assert "# vm:             web\\nfrontend (sev-es, policy 0x00000005)" in lines  # no raw newline
    assert f"# manifest:       {tmp_path}/test.sevm" in lines
    assert "# variant:        vcpus=4,cpu=EPYC-Milan,vmm=qemu,legacy-vm-type=on,sev-features=0x0" in lines
    launch_digest = render.launch_digest(vm, render.select_variant(vm, "vcpus=4")).hex()
    assert any(launch_digest in line for line in lines if line.startswith("#"))
    start = lines.index('exec "${QEMU:-qemu-system-x86_64}" \\')
    assert lines[start + 1] == "    -accel kvm \\" and lines[-1] == '    "$@"'
    assert all(line.endswith(" \\") for line in lines[start + 1:-1] if line.startswith("    -"))
