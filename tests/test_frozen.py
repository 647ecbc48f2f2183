"""``frozen_dataclass`` shares ``__eq__``, ``__hash__``, ``__repr__`` and ordering between the
model's classes instead of letting ``dataclasses`` generate them per class.  Each class is
compared here with a twin that ``dataclasses`` makes from the same fields: on every model
object the shipped and test manifests compile to, and on generated spans."""
from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sevmanifest import model
from sevmanifest.diagnostics import Diagnostic, error, warning
from sevmanifest.frontend import compile_file
from sevmanifest.frozen import frozen_dataclass

ROOT = Path(__file__).resolve().parent.parent
MANIFESTS = sorted(str(p) for base in ("manifests", "tests") for p in (ROOT / base).rglob("*.sevm"))
CLASSES = (model.Span, model.Artefact, model.Cpu, model.Policy, model.HostMatrix, model.Disk,
           model.Launch, model.Variant, model.VM, model.Manifest, Diagnostic)


def twin_class(cls):
    """What ``@dataclass(frozen=True[, order=True])`` makes of ``cls``'s fields."""
    specs = []
    for f in dataclasses.fields(cls):
        options = dict(compare=f.compare, repr=f.repr, hash=f.hash)
        if f.default is not dataclasses.MISSING:
            options["default"] = f.default
        if f.default_factory is not dataclasses.MISSING:
            options["default_factory"] = f.default_factory
        specs.append((f.name, f.type, dataclasses.field(**options)))
    return dataclasses.make_dataclass(cls.__name__, specs, frozen=True,
                                      order="__lt__" in vars(cls))


TWINS = {cls: twin_class(cls) for cls in CLASSES}


def twin(obj):
    return TWINS[type(obj)](*(getattr(obj, f.name) for f in dataclasses.fields(obj)))


def model_objects() -> dict[type, list]:
    """Every model object (and diagnostic) the manifests compile to, by class."""
    found: dict[type, list] = {cls: [] for cls in CLASSES}
    seen: dict[int, object] = {}  # (the objects too: an id is unique only while its object lives)

    def walk(value) -> None:
        if id(value) in seen:
            return
        seen[id(value)] = value
        if type(value) in found:
            found[type(value)].append(value)
            for f in dataclasses.fields(value):
                walk(getattr(value, f.name))
        elif isinstance(value, (tuple, list)):
            for item in value:
                walk(item)
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)

    for path in MANIFESTS:
        compilation = compile_file(path)
        walk(compilation.manifest)
        walk(compilation.diagnostics)
        if compilation.manifest is not None:
            walk([list(vm.variants()) for vm in compilation.manifest.vms])
    return found


OBJECTS = model_objects()


def test_the_manifests_give_objects_of_every_class():
    missing = [cls.__name__ for cls, objects in OBJECTS.items() if not objects]
    assert not missing, f"no instances of {missing}"


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_equality_hash_and_repr_are_those_dataclasses_generates(cls):
    objects = OBJECTS[cls][:60]
    # equal copies made anew, and objects that differ only where equality does not look
    copies = [dataclasses.replace(o) for o in objects]
    copies += [dataclasses.replace(o, span=None) for o in objects if hasattr(o, "span")]
    pairs = itertools.product(objects, objects + copies)
    compared = 0
    for a, b in pairs:
        ta, tb = twin(a), twin(b)
        assert (a == b) == (ta == tb), (a, b)
        assert (a != b) == (ta != tb), (a, b)
        compared += 1
    assert compared >= len(objects) ** 2
    for obj in objects + copies:
        assert hash(obj) == hash(twin(obj))
        assert repr(obj) == repr(twin(obj))
        assert obj.__eq__(twin(obj)) is NotImplemented  # another class, however alike
        assert obj != object()


def test_unequal_objects_are_found_unequal():
    """Not only equal pairs: distinct manifests give distinct vms, artefacts and spans."""
    for cls in (model.VM, model.Artefact, model.Span, model.Variant):
        objects = OBJECTS[cls]
        assert any(a != b for a, b in itertools.combinations(objects[:30], 2)), cls


spans = st.builds(model.Span, st.sampled_from(["a.sevm", "b.sevm", "x"]), st.integers(1, 4),
                  st.integers(1, 4), st.integers(1, 4), st.integers(1, 4))


@given(spans, spans)
def test_span_order_is_the_generated_order(a, b):
    ta, tb = twin(a), twin(b)
    assert (a < b, a <= b, a > b, a >= b, a == b) == (ta < tb, ta <= tb, ta > tb, ta >= tb, ta == tb)
    assert sorted([b, a]) == sorted([a, b])


def test_order_and_equality_need_the_same_class():
    span = model.Span("a", 1, 1, 1, 2)
    with pytest.raises(TypeError):
        span < (1, 2)  # noqa: B015
    assert span != ("a", 1, 1, 1, 2)
    assert warning("SEVM101", "x") != error("x")

    class Stricter(model.Policy):
        pass

    class TwinStricter(TWINS[model.Policy]):
        pass

    assert (model.Policy(1) == Stricter(1)) == (TWINS[model.Policy](1) == TwinStricter(1)) is False


def test_objects_stay_frozen_dataclasses():
    span = model.Span("a", 1, 1, 1, 2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        span.line = 2
    with pytest.raises(dataclasses.FrozenInstanceError):
        del span.line
    assert dataclasses.is_dataclass(span) and span.__dataclass_params__.frozen
    assert dataclasses.replace(span, line=3).line == 3
    assert dataclasses.astuple(span) == ("a", 1, 1, 1, 2)


def test_a_recursive_repr_is_cut_short_as_generated():
    mine, theirs = [], []
    launch = model.Launch(extra=mine)
    mine.append(launch)
    other = TWINS[model.Launch](extra=theirs)
    theirs.append(other)
    assert repr(launch) == repr(other) == ("Launch(disks=(), net=None, console='serial', "
                                           "extra=[...])")


def test_the_decorator_works_without_parentheses_and_with_order():
    @frozen_dataclass
    class Plain:
        a: int
        hidden: int = dataclasses.field(default=0, compare=False, repr=False)

    @frozen_dataclass(order=True)
    class Ordered:
        a: int

    assert Plain(1, 5) == Plain(1, 6) and hash(Plain(1, 5)) == hash(Plain(1, 6))
    assert repr(Plain(1, 5)) == "test_the_decorator_works_without_parentheses_and_with_order.<locals>.Plain(a=1)"
    assert Ordered(1) < Ordered(2) <= Ordered(2)
    with pytest.raises(TypeError):
        Plain(1) < Plain(2)  # noqa: B015
