"""``frozen_dataclass``: ``@dataclass(frozen=True)`` whose ``__eq__``, ``__hash__``, ``__repr__``
(and, with ``order=True``, comparisons) are shared functions instead of code generated per
class.

They behave as the generated ones do (tests/test_frozen.py compares them with twins made
by ``dataclasses``): equality and ordering only between instances of the same class, over
the fields that compare, as tuples; the hash of the tuple of the hashed fields; the repr of
the fields that show, with recursion cut short.  Why not let ``dataclasses`` generate them:
it compiles each method from source with ``exec`` at import time, and every ``sevm``
command imports the model: shared methods save ~12 M instructions (~4 ms) of each start.
"""
from __future__ import annotations

import sys
import types


class _InspectOnDemand(types.ModuleType):
    """``inspect`` as ``dataclasses`` sees it until it reads an attribute of it; then the
    real module, which replaces this one in ``dataclasses``' namespace."""

    def __getattr__(self, name: str):
        import importlib
        real = importlib.import_module("inspect")
        dataclasses = sys.modules.get("dataclasses")
        if dataclasses is not None and getattr(dataclasses, "inspect", None) is self:
            dataclasses.inspect = real
        return getattr(real, name)


def _import_dataclasses_without_inspect() -> None:
    """``dataclasses`` imports ``inspect`` (with ``ast``, ``dis`` and ``tokenize``, whose
    import compiles regular expressions: ~19 ms of every start, medians of 31 interleaved
    runs) for one use: the ``__doc__`` of a dataclass that has none, which no class of
    sevm's lacks.  So it is imported here with a stand-in that loads ``inspect`` on first
    use.  Nothing else sees the stand-in: ``import inspect`` anywhere else, before or after,
    is the real module (tests/test_frozen.py)."""
    if "dataclasses" in sys.modules or "inspect" in sys.modules:
        return
    stand_in = sys.modules["inspect"] = _InspectOnDemand("inspect")
    try:
        import dataclasses  # noqa: F401
    finally:
        if sys.modules.get("inspect") is stand_in:
            del sys.modules["inspect"]


_import_dataclasses_without_inspect()
from dataclasses import dataclass, field, fields  # noqa: E402,F401 - field: for model.py
from reprlib import recursive_repr  # noqa: E402


def frozen_dataclass(cls=None, /, *, order: bool = False):
    """Use as ``@frozen_dataclass`` or ``@frozen_dataclass(order=True)``."""
    def wrap(cls):
        cls = dataclass(frozen=True, eq=False, repr=False)(cls)
        every = fields(cls)
        cls._compared_fields = tuple(f.name for f in every if f.compare)
        cls._hashed_fields = tuple(f.name for f in every
                                   if (f.compare if f.hash is None else f.hash))
        cls._shown_fields = tuple(f.name for f in every if f.repr)
        cls.__eq__ = _eq
        cls.__hash__ = _hash
        cls.__repr__ = _repr
        if order:
            cls.__lt__, cls.__le__, cls.__gt__, cls.__ge__ = _lt, _le, _gt, _ge
        return cls
    return wrap if cls is None else wrap(cls)


def _values(obj, names: tuple[str, ...]) -> tuple:
    return tuple([getattr(obj, name) for name in names])


def _compared(a, b):
    """The two tuples to compare, or None when ``b`` is not of ``a``'s very class."""
    if b.__class__ is not a.__class__:
        return None
    names = a._compared_fields
    return _values(a, names), _values(b, names)


def _eq(self, other):
    pair = _compared(self, other)
    return NotImplemented if pair is None else pair[0] == pair[1]


def _lt(self, other):
    pair = _compared(self, other)
    return NotImplemented if pair is None else pair[0] < pair[1]


def _le(self, other):
    pair = _compared(self, other)
    return NotImplemented if pair is None else pair[0] <= pair[1]


def _gt(self, other):
    pair = _compared(self, other)
    return NotImplemented if pair is None else pair[0] > pair[1]


def _ge(self, other):
    pair = _compared(self, other)
    return NotImplemented if pair is None else pair[0] >= pair[1]


def _hash(self) -> int:
    return hash(_values(self, self._hashed_fields))


@recursive_repr()
def _repr(self) -> str:
    shown = ", ".join([f"{name}={getattr(self, name)!r}" for name in self._shown_fields])
    return f"{self.__class__.__qualname__}({shown})"
