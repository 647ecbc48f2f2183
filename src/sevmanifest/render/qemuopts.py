"""QEMU's ``key=value,key=value`` option syntax (QemuOpts / keyval), both directions.

A comma inside a value is written doubled (``,,``).  The first item may omit its key
(``-machine q35`` means ``type=q35``); ``implied`` names that key.
"""
from __future__ import annotations

import json
import re


def escape(value: str) -> str:
    return value.replace(",", ",,")


def join(first: str | None, props: list[tuple[str, str]]) -> str:
    """``join("sev-guest", [("id", "sev0")])`` -> ``"sev-guest,id=sev0"``."""
    items = [escape(first)] if first is not None else []
    items.extend(f"{key}={escape(value)}" for key, value in props)
    return ",".join(items)


def split(text: str) -> list[str]:
    """Split at single commas; ``,,`` stands for a literal comma."""
    items, current, i = [], [], 0
    while i < len(text):
        if text[i] == ",":
            if text[i + 1:i + 2] == ",":
                current.append(",")
                i += 2
                continue
            items.append("".join(current))
            current = []
        else:
            current.append(text[i])
        i += 1
    items.append("".join(current))
    return items


def parse(text: str, implied: str | None = None) -> dict[str, str]:
    """Parse one option argument into a dict; later keys override earlier ones, like QEMU.

    A JSON object (``-object '{"qom-type": ...}'``, as libvirt writes it) is accepted too;
    its values are converted to QEMU's text forms (booleans as on/off)."""
    if text.startswith("{"):
        return {k: _json_text(v) for k, v in json.loads(text).items()}
    props: dict[str, str] = {}
    for index, item in enumerate(split(text)):
        key, sep, value = item.partition("=")
        if not sep:
            if index == 0 and implied is not None:
                props[implied] = item
                continue
            props[item] = "on"  # QemuOpts' bare flag form
            continue
        props[key] = value
    return props


# qemu_global_option's first form: sscanf("%63[^.=].%63[^=]%n") followed by "="
_GLOBAL_DOTTED = re.compile(r"([^.=]{1,63})\.([^=]{1,63})=")


def parse_global(text: str) -> tuple[str, str, str]:
    """``-global``'s argument as ``(driver, property, value)``, read as QEMU's
    qemu_global_option reads it: ``DRIVER.PROPERTY=VALUE``, else the QemuOpts form
    ``driver=D,property=P,value=V`` (later keys win; a missing key is "")."""
    dotted = _GLOBAL_DOTTED.match(text)
    if dotted:
        return dotted.group(1), dotted.group(2), text[dotted.end():]
    props: dict[str, str] = {}
    for item in split(text):
        key, sep, value = item.partition("=")
        props[key] = value if sep else "on"
    return props.get("driver", ""), props.get("property", ""), props.get("value", "")


def cpu_type(driver: str) -> bool:
    """Whether a qdev driver name is an x86 CPU type (``EPYC-Milan-x86_64-cpu``,
    ``x86_64-cpu``) or the abstract ``cpu``: a ``-global`` on it reaches the vCPUs."""
    driver = driver.lower()
    return driver == "cpu" or driver.endswith("-cpu")


def _json_text(value) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


_TRUE = {"on", "yes", "true", "y"}
_FALSE = {"off", "no", "false", "n"}


def boolean(value: str, what: str) -> bool:
    """QEMU's boolean words (qapi_bool_parse)."""
    word = value.lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ValueError(f"{what}: expected on or off, got {value!r}")
