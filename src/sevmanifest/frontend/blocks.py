"""Lowering the ``host``, ``policy`` and ``launch`` blocks (see ``lower.py``)."""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from ..model import POLICY_FIELDS, Disk, GuestType, HostMatrix, Launch, Policy, PolicyBit, Vmm
from . import ast
from .strings import unprintable

if TYPE_CHECKING:
    from .lower import Lowering

DEFAULT_QEMU_VERSION = (9, 2)
_VERSION = re.compile(r"([0-9]{1,4})\.([0-9]{1,4})(?:\.[0-9]{1,4})?")  # ASCII digits only
# QEMU's default policy is 0x1 (NODBG): debugging is denied unless the manifest allows it.
DEFAULT_POLICY = PolicyBit.NODBG


def _block_setting(low: "Lowering", block: str, key: str) -> ast.Setting | None:
    found = low.r.blocks[block].get(key)
    if found is not None:
        low.origins[f"{block}.{key}"] = found.span
    return found


def _distinct(low: "Lowering", setting: ast.Setting, convert) -> tuple:
    out = []
    for v in setting.values:
        item = convert(v)
        if item in out:
            low.fail(f"{setting.key} lists {v.text} twice", v.span)
        else:
            out.append(item)
    return tuple(out)


def lower_host(low: "Lowering") -> HostMatrix:
    get = lambda key: _block_setting(low, "host", key)  # noqa: E731
    version = DEFAULT_QEMU_VERSION
    if (s := get("qemu-version")) is not None:
        match = _VERSION.fullmatch(s.values[0].value.decode("utf-8", "replace"))
        if match is None:
            low.fail('qemu-version must look like "9.2" or "7.2.1"', s.values[0].span)
        else:
            version = (int(match.group(1)), int(match.group(2)))
    vmms = _distinct(low, s, lambda v: Vmm(v.value)) if (s := get("vmm")) else (Vmm.QEMU,)
    legacy_setting = get("legacy-vm-type")
    legacy = _distinct(low, legacy_setting, lambda v: v.value == "on") if legacy_setting else (True,)
    if False in legacy and version < (9, 1):
        low.fail("legacy-vm-type off (KVM_SEV_INIT2) needs QEMU 9.1 or later; "
                 f"host.qemu-version is {version[0]}.{version[1]}", legacy_setting.span)
    features = (0,)
    if (s := get("sev-features")) is not None:
        features = _distinct(low, s, lambda v: v.value)
        for v in s.values:
            if v.value >= 1 << 64:
                low.fail("sev-features is a 64-bit value", v.span)
        if False in legacy and any(features):
            low.fail("sev-features other than 0 cannot occur with legacy-vm-type off: QEMU "
                     "requests no VMSA features under KVM_SEV_INIT2 for SEV-ES", s.span)
    cbitpos = _ranged(low, get("cbitpos"), 51, 32, 63)
    reduced = _ranged(low, get("reduced-phys-bits"), 1, 1, 63)
    return HostMatrix(vmms=vmms, legacy_vm_types=legacy, sev_features=features,
                      qemu_version=version, cbitpos=cbitpos, reduced_phys_bits=reduced,
                      profile_stated=legacy_setting is not None)


def _ranged(low: "Lowering", s: ast.Setting | None, default: int, lo: int, hi: int) -> int:
    if s is None:
        return default
    value = s.values[0].value
    if not lo <= value <= hi:
        low.fail(f"{s.key} must be between {lo} and {hi}, got {value}", s.values[0].span)
    return value


def lower_policy(low: "Lowering", guest: GuestType) -> Policy:
    es_bit = PolicyBit.ES if guest is GuestType.SEV_ES else 0
    raw = low.r.policy_raw
    if raw is not None:
        low.origins["policy"] = raw.span
        value = raw.values[0].value
        span = raw.values[0].span
        if value >= 1 << 32:
            low.fail("a policy is a 32-bit value", span)
            value &= 0xFFFFFFFF
        if bool(value & PolicyBit.ES) != bool(es_bit):
            low.fail(f"policy 0x{value:x} {'sets' if value & PolicyBit.ES else 'clears'} the ES bit "
                     f"(0x4) but type is {guest.value}; the ES bit must follow type", span)
        if value & 0xFFC0:
            low.fail(f"policy bits 6-15 are reserved and must be 0 (0x{value & 0xFFC0:x} set)", span)
    else:
        value = DEFAULT_POLICY | es_bit
    for name, bit in POLICY_FIELDS.items():
        if (s := _block_setting(low, "policy", name)) is not None:
            # ~int(bit), not ~bit: ~ of an IntFlag member keeps only the other *flags*,
            # which dropped the API version bits of an inherited raw policy
            value = (value | bit) if s.values[0].value == "deny" else (value & ~int(bit))
    if (s := _block_setting(low, "policy", "min-api")) is not None:
        major, minor = s.values[0].value
        if major > 255 or minor > 255:
            low.fail("min-api major and minor are 0-255 each", s.values[0].span)
        value = (value & 0x0000FFFF) | (major & 0xFF) << 16 | (minor & 0xFF) << 24
    return Policy(int(value) & 0xFFFFFFFF)


def lower_launch(low: "Lowering") -> Launch:
    launch = low.r.blocks["launch"]
    disks = []
    if (s := _block_setting(low, "launch", "disk")) is not None:
        written = s.values[0].value.decode("utf-8", "surrogateescape")
        if (bad := unprintable(written, name=False)) is not None:
            low.fail(f"disk path {written!r} contains {bad}: paths are printed into terminals, "
                     "logs and launch scripts; rename the file", s.values[0].span)
        fmt = s.option("format")
        base = os.path.dirname(os.path.abspath(s.span.file))
        disks.append(Disk(written, fmt.value if fmt else "raw",
                          Path(os.path.normpath(os.path.join(base, written)))))
    net = launch["net"].values[0].value if "net" in launch else None
    console = launch["console"].values[0].value if "console" in launch else "serial"
    extra = ()
    if (s := _block_setting(low, "launch", "extra")) is not None:
        extra = tuple(v.value.decode("utf-8", "surrogateescape") for v in s.values)
    for key in ("net", "console"):
        _block_setting(low, "launch", key)
    return Launch(disks=tuple(disks), net=net, console=console, extra=extra)
