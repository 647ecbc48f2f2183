"""The libvirt domain XML of one variant (facts §10).

libvirt drives the same QEMU as the script, so the checks and decisions of
:mod:`sevmanifest.render.target` apply unchanged.  What libvirt cannot express is an
error rather than a domain that would measure differently from the manifest.
"""
from __future__ import annotations

import re

from ..diagnostics import DiagnosticError, error
from ..model import VM, Variant

TEMPLATE = "libvirt-domain.xml.j2"
_XSD_LINE_BREAKS = ("\n", "\r")
# Characters XML 1.0 cannot carry at all (C0 controls other than tab, LF, CR; surrogates
# stand for bytes that are not UTF-8, which an XML document cannot carry either).
XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def check(vm: VM, variant: Variant, context: dict) -> None:
    """Refuse what a libvirt domain cannot carry faithfully."""
    if not variant.legacy_vm_type:
        raise DiagnosticError(error(
            f"vm {vm.name}: libvirt cannot set sev-guest's legacy-vm-type, so QEMU would use "
            "'auto' (the legacy KVM init) and the guest would not measure as this "
            "legacy-vm-type off variant; render it for QEMU instead (sevm render qemu)",
            vm.origins.get("host.legacy-vm-type", vm.span)))
    where = vm.origins.get
    # (what, value, where in the manifest); names and paths must also be single lines
    lines = [("vm name", vm.name, vm.span),
             ("firmware path", context["vm"]["firmware"]["path"], where("firmware", vm.span))]
    for role in ("kernel", "initrd"):
        if context["vm"][role] is not None:
            lines.append((f"{role} path", context["vm"][role]["path"], where(role, vm.span)))
    for disk in context["vm"]["launch"]["disks"]:
        lines.append(("disk path", disk["path"], where("launch.disk", vm.span)))
    values = lines + [("machine", context["qemu"]["machine"], where("machine", vm.span))]
    if context["variant"]["cpu"] is not None:
        values.append(("cpu model", context["variant"]["cpu"]["name"], where("cpu", vm.span)))
    if context["vm"]["cmdline"] is not None:
        values.append(("cmdline", context["vm"]["cmdline"], where("cmdline", vm.span)))
    values += [("extra argument", arg, where("launch.extra", vm.span))
               for arg in context["vm"]["launch"]["extra"]]
    for what, value, span in lines:
        _check_line(vm, what, value, span)
    for what, value, span in values:
        if bad := XML_INVALID.search(value):
            shown = "" if what == "cmdline" else f" {_shown(value)}"
            raise DiagnosticError(error(f"vm {vm.name}: the {what}{shown} contains "
                                        f"{describe_character(bad.group())}, which cannot appear "
                                        "in XML, so a libvirt domain cannot carry it", span))


def describe_character(char: str) -> str:
    """``byte 0xff`` for a surrogate escape (a byte that is not UTF-8), else ``character U+FFFF``."""
    if "\udc80" <= char <= "\udcff":
        return f"byte 0x{ord(char) & 0xff:02x}"
    return f"character U+{ord(char):04X}"


def _shown(value: str) -> str:
    """``value`` quoted, its non-UTF-8 bytes as ``\\xNN``."""
    try:
        return repr(value.encode("utf-8", "surrogateescape"))[1:]
    except UnicodeEncodeError:
        return repr(value)


def _check_line(vm: VM, what: str, value: str, span) -> None:
    # libvirt's schema only allows single-line names and paths (pattern ".+")
    if any(c in value for c in _XSD_LINE_BREAKS):
        raise DiagnosticError(error(f"vm {vm.name}: the {what} {value!r} contains a line break, "
                                    "which a libvirt domain cannot carry", span))
