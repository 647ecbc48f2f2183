"""Generated manifests for the render tests: .sevm text compiled by the real front end."""
from __future__ import annotations

from pathlib import Path

from hypothesis import strategies as st

from sevmanifest.frontend import compile_text
from sevmanifest.model import VM, Vmm

from render_support import REPO

IMAGES = REPO / "manifests" / "images"
AMDSEV_FW = IMAGES / "OVMF.synthetic-amdsev.fd"
GENERIC_FW = IMAGES / "OVMF.synthetic-generic.fd"
KERNEL = IMAGES / "vmlinuz.synthetic"
INITRD = IMAGES / "initrd.synthetic.img"

# Characters that break naive quoting: shell metacharacters, quotes, whitespace, non-ASCII.
TRICKY = "'\"$`\\!;&|<>(){}*?~#%= \t\n\r,aZ09-_/.:é€\u00a0😀"
QEMU_VERSIONS = [(7, 2), (8, 2), (9, 0), (9, 1), (9, 2), (10, 1)]
# (manifest form, signature, first QEMU with the model)
CPU_FORMS = [('"EPYC-Milan"', 0x00A00F11, (7, 2)), ('"EPYC-Rome-v2"', 0x00830F10, (7, 2)),
             ('"EPYC-v4"', 0x00800F12, (8, 1)), ('"EPYC-Genoa"', 0x00A10F10, (8, 1)),
             ('"EPYC-Turin"', 0x00B00F00, (10, 1)),
             ("family 25 model 1 stepping 1", 0x00A00F11, (7, 2)),
             ("signature 0x00830f10", 0x00830F10, (7, 2)),
             ("family 25 model 17 stepping 0", 0x00A10F10, (8, 1))]

cmdline_bytes = st.one_of(
    st.text(alphabet=TRICKY, max_size=40).map(lambda s: s.encode("utf-8")),
    st.binary(max_size=24).map(lambda b: b.replace(b"\0", b"\x01")),
)


def sevm_string(data: bytes) -> str:
    """A .sevm string literal whose decoded bytes are ``data``."""
    out = []
    for byte in data:
        char = chr(byte)
        if char in '"\\':
            out.append("\\" + char)
        elif 0x20 <= byte < 0x7F:
            out.append(char)
        else:
            out.append(f"\\x{byte:02x}")
    return '"' + "".join(out) + '"'


def _quote_path(path: Path) -> str:
    return sevm_string(str(path).encode())


@st.composite
def manifests(draw) -> str:
    """The text of a valid one-vm manifest with a random matrix."""
    es = draw(st.booleans())
    qemu = draw(st.sampled_from(QEMU_VERSIONS))
    boot = draw(st.sampled_from(["measured", "unmeasured", "disk"]))
    lines = [f"type {'sev-es' if es else 'sev'}"]
    lines.append(f"firmware {_quote_path(AMDSEV_FW if boot == 'measured' else GENERIC_FW)}")
    if boot != "disk":
        lines.append(f"kernel {_quote_path(KERNEL)}")
        if draw(st.booleans()):
            lines.append(f"initrd {_quote_path(INITRD)}")
        if draw(st.booleans()):
            lines.append(f"cmdline {sevm_string(draw(cmdline_bytes))}")
    lines.append(f"kernel-hashes {'on' if boot == 'measured' else 'off'}")
    lines.append("vcpus " + ", ".join(map(str, draw(st.lists(st.integers(1, 16), min_size=1,
                                                             max_size=3, unique=True)))))
    forms = [f for f in CPU_FORMS if f[2] <= qemu]
    if es or draw(st.booleans()):
        chosen = draw(st.lists(st.sampled_from(forms), min_size=1, max_size=2,
                               unique_by=lambda f: f[1]))
        lines.append("cpu " + ", ".join(f[0] for f in chosen))
    lines.append(f"memory {draw(st.sampled_from(['512MiB', '1GiB', '1536MiB', '4GiB']))}")
    lines.append('machine "q35"')
    lines.append(_host(draw, qemu, es))
    lines.append(_policy(draw))
    net = draw(st.sampled_from(["user", "none"]))
    console = draw(st.sampled_from(["serial", "none"]))
    lines.append(f"launch {{\n    net {net}\n    console {console}\n}}")
    return 'vm "gen" {\n' + "\n".join(lines) + "\n}\n"


def _host(draw, qemu, es) -> str:
    legacy = ["on"]
    if qemu >= (9, 1):
        legacy = draw(st.sampled_from([["on"], ["off"], ["on", "off"]]))
    features = ["0x0"]
    if es and legacy == ["on"] and draw(st.booleans()):
        features = ["0x0", "0x20"]
    return (f'host {{\n    vmm qemu\n    qemu-version "{qemu[0]}.{qemu[1]}"\n'
            f"    legacy-vm-type {', '.join(legacy)}\n    sev-features {', '.join(features)}\n"
            "    cbitpos 51\n    reduced-phys-bits 1\n}")


def _policy(draw) -> str:
    fields = ["debug", "key-sharing", "send", "send-outside-domain", "send-to-non-sev"]
    body = "".join(f"    {f} {draw(st.sampled_from(['allow', 'deny']))}\n" for f in fields)
    major, minor = draw(st.integers(0, 255)), draw(st.integers(0, 255))
    return f"policy {{\n{body}    min-api {major}.{minor}\n}}"


def compile_vm(text: str, directory: Path) -> VM:
    result = compile_text(text, str(directory / "gen.sevm"))
    errors = [d.message for d in result.diagnostics if d.is_error]
    assert not errors and result.manifest is not None, (errors, text)
    return result.manifest.vms[0]


def qemu_variants(vm: VM):
    return [v for v in vm.variants() if v.vmm is Vmm.QEMU]
