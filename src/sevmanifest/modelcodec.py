"""The model and its diagnostics as JSON text, for the compiled-manifest cache.

Why not pickle: a cache directory can come from somewhere less trusted than the code (CI
systems restore caches saved by other branches), and unpickling runs whatever the data
names.  This decoder builds only the frozen dataclasses and enums of ``model`` and
``diagnostics``, through their own constructors; anything else is a ``ValueError``.

Encoding: JSON's own types for None, bool, int and str; every other value is a one-key
tagged object (so every JSON object in the text is one): ``{"T": [...]}`` tuple,
``{"M": [[k, v], ...]}`` mapping, ``{"B": hex}`` bytes, ``{"P": str}`` path,
``{"S": [file, line, column, end_line, end_column]}`` source span (the commonest node),
``{"E": [class, value]}`` enum member, ``{"C": [class, [value, ...]]}`` dataclass
(the values of its constructor's parameters, in order: an entry is only read by the code
that wrote it, ``compilecache``'s key says so).  Lists stay lists.  Undecodable file-name bytes (surrogate escapes) survive:
``json`` writes lone surrogates as ``\\udcXX`` and reads them back.
"""
from __future__ import annotations

import dataclasses
import enum
import json
from collections.abc import Mapping
from operator import attrgetter
from pathlib import Path

from . import diagnostics, model


def _allowed() -> dict[str, type]:
    classes = {}
    for module in (model, diagnostics):
        for name, obj in vars(module).items():
            if not isinstance(obj, type) or obj.__module__ != module.__name__:
                continue
            frozen = dataclasses.is_dataclass(obj) and obj.__dataclass_params__.frozen
            if frozen or issubclass(obj, enum.Enum):
                classes[name] = obj
    return classes


_CLASSES = _allowed()


def dumps(value: object) -> str:
    """JSON text for ``value``; ``TypeError`` for a type the decoder would not rebuild."""
    return _JSON.encode(_encode(value))


# One encoder for every call, without json's cycle check: _encode built the tree just now
# (and a cycle in the value would have ended its recursion already).  A quarter fewer
# instructions than json.dumps with separators, which makes an encoder per call.
_JSON = json.JSONEncoder(separators=(",", ":"), check_circular=False)


def loads(text: str) -> object:
    """The value ``dumps`` encoded; ``ValueError`` for anything it would not have written."""
    return json.loads(text, object_hook=_decode)


def _encode(value: object) -> object:
    if value is None or type(value) in (bool, int, str):
        return value
    if type(value) is model.Span:  # the most common node by far: kept compact
        return {"S": [value.file, value.line, value.column, value.end_line, value.end_column]}
    if isinstance(value, enum.Enum):  # before int: IntFlag members are ints
        return {"E": [_class_name(value), value.value]}
    fields = _FIELDS.get(type(value))
    if fields is not None:
        return {"C": [type(value).__name__, [_encode(v) for v in fields(value)]]}
    if isinstance(value, tuple):
        return {"T": [_encode(v) for v in value]}
    if isinstance(value, list):
        return [_encode(v) for v in value]
    if isinstance(value, Mapping):
        return {"M": [[_encode(k), _encode(v)] for k, v in value.items()]}
    if isinstance(value, bytes):
        return {"B": value.hex()}
    if isinstance(value, Path):
        return {"P": str(value)}
    if isinstance(value, (str, int)):  # a subclass (e.g. a parser token): its plain value
        return str(value) if isinstance(value, str) else int(value)
    raise TypeError(f"cannot encode {type(value).__name__}")


def _class_name(value: object) -> str:
    name = type(value).__name__
    if _CLASSES.get(name) is not type(value):
        raise TypeError(f"{name} is not a model class")
    return name


# model class -> the names its constructor takes, in order (dataclasses.fields() per value
# was a third of the encoder's time); any other dataclass is refused below, by type
_INIT_FIELDS = {cls: tuple(f.name for f in dataclasses.fields(cls) if f.init)
                for cls in _CLASSES.values() if dataclasses.is_dataclass(cls)}
# and a function that returns their values as a tuple (attrgetter: one call, in C)
_FIELDS = {cls: (attrgetter(*names) if len(names) > 1 else
                 (lambda value, name=names[0]: (getattr(value, name),)))
           for cls, names in _INIT_FIELDS.items()}


def _decode(obj: dict) -> object:
    if len(obj) != 1:
        raise ValueError("not a tagged value")
    (tag, payload), = obj.items()
    decode = _DECODERS.get(tag)
    if decode is None or not isinstance(payload, _PAYLOAD_TYPES[tag]):
        raise ValueError(f"unknown tagged value {tag!r}")
    return decode(payload)


def _span(payload: list) -> model.Span:
    file, line, column, end_line, end_column = payload
    return model.Span(file, line, column, end_line, end_column)


def _member(payload: list) -> enum.Enum:
    name, value = payload
    cls = _CLASSES.get(name) if isinstance(name, str) else None
    if cls is None or not issubclass(cls, enum.Enum):
        raise ValueError(f"not a model enum: {name!r}")
    return cls(value)


def _instance(payload: list) -> object:
    name, values = payload
    cls = _CLASSES.get(name) if isinstance(name, str) else None
    if cls is None or issubclass(cls, enum.Enum) or not isinstance(values, list):
        raise ValueError(f"not a model class: {name!r}")
    if len(values) != len(_INIT_FIELDS[cls]):  # (a default would hide a missing value)
        raise ValueError(f"{name} takes {len(_INIT_FIELDS[cls])} values, got {len(values)}")
    return cls(*values)


_DECODERS = {"T": tuple, "M": lambda pairs: {k: v for k, v in pairs}, "B": bytes.fromhex,
             "P": Path, "S": _span, "E": _member, "C": _instance}
_PAYLOAD_TYPES = {"T": list, "M": list, "B": str, "P": str, "S": list, "E": list, "C": list}
