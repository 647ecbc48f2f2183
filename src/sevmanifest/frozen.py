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

from dataclasses import dataclass, fields
from reprlib import recursive_repr


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
