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
    names = {"vm name": vm.name, "firmware path": context["vm"]["firmware"]["path"]}
    for role in ("kernel", "initrd"):
        if context["vm"][role] is not None:
            names[f"{role} path"] = context["vm"][role]["path"]
    for disk in context["vm"]["launch"]["disks"]:
        names["disk path"] = disk["path"]
        _check_line(vm, "disk path", disk["path"])
    for what, value in names.items():
        _check_line(vm, what, value)
    cmdline = context["vm"]["cmdline"]
    if cmdline is not None and (bad := XML_INVALID.search(cmdline)):
        shown = f"byte 0x{ord(bad.group()) & 0xff:02x}" if "\ud800" <= bad.group() <= "\udfff" \
            else f"character U+{ord(bad.group()):04X}"
        raise DiagnosticError(error(f"vm {vm.name}: the cmdline contains {shown}, which cannot "
                                    "appear in XML, so a libvirt domain cannot carry it",
                                    vm.origins.get("cmdline", vm.span)))


def _check_line(vm: VM, what: str, value: str) -> None:
    # libvirt's schema only allows single-line names and paths (pattern ".+")
    if any(c in value for c in _XSD_LINE_BREAKS):
        raise DiagnosticError(error(f"vm {vm.name}: the {what} {value!r} contains a line break, "
                                    "which a libvirt domain cannot carry", vm.span))
