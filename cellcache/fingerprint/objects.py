"""Objects in general: what their ``__reduce__`` says, made deterministic and complete.

A library's ``__reduce__`` (or ``__getstate__``) is its own statement of what
an object is: it leaves out handles, timestamps and caches on purpose, so it
is what the walk hashes. Three things are fixed on the way:

- **Presentation order.** A dict the reduce builds anew on every call is a
  presentation of the state, not part of it: lmfit's ``Parameters`` builds
  one from a set of symbol names, in an order that changes with
  ``PYTHONHASHSEED``. Such dicts are hashed in a canonical order. A dict the
  reduce returns by reference (the object's own ``__dict__``, or a mapping
  it holds) keeps its order, which code can see. The reduce is called twice
  to tell the two apart: only a reduce written in Python (those iterate
  sets) that returned a dict. A scalar that differs between the two calls
  means pickling changes the object: it is refused.
- **Lost state.** A reduce inherited from a base that knows nothing of a
  subclass's attributes (``defaultdict``, ``Counter``) returns no state; the
  instance ``__dict__`` is then hashed as the state. A class that writes its
  own reduce without state is trusted: it says what it is.
- **Caches filled when read.** ``functools.cached_property`` values, the
  ``_cache`` dicts of pandas' and statsmodels' cached attributes, and
  attributes listed in ``_DERIVED`` (scipy sparse's canonical-format flags)
  are derived from the rest of the state: they are left out, so reading
  them doesn't change the digest.

Which objects are *mutable* is decided here too (``tracked``): the walk
keys which mutable parts of a value are the same object (``_run``).
Weak references are hashed by their referent.
"""
from __future__ import annotations

import copy
import copyreg
import functools
import weakref
from collections.abc import Callable
from types import (
    BuiltinFunctionType,
    CodeType,
    FunctionType,
    MethodType,
    ModuleType,
)
from typing import Any

from cellcache.errors import Unfingerprintable
from cellcache.fingerprint._base import Kinds, _atom_digest, _ref, _type_name

# Attributes that are not an object's state, by the qualified name of the
# class that defines them; they are left out. Caches a class fills in from
# the rest of the state when they are read: scipy sparse matrices set these
# flags the first time a method asks whether the indices are sorted or
# canonical. Scratch space: statsmodels' GLM keeps an uninitialized buffer
# (np.empty_like) for its Hessian, whose bytes differ from process to process.
_DERIVED: dict[str, tuple[str, ...]] = {
    "scipy.sparse._base._spbase": ("_has_canonical_format", "_has_sorted_indices"),
    "statsmodels.genmod.generalized_linear_model.GLM": ("_tmp_like_exog",),
}
# Tables a class builds from the rest of its state the first time it is used, by the qualified name of
# the class: hashed as built, built yet or not, since a hit skips the use that builds them (a draw).
def _colormap_built(cmap: Any, state: Any) -> Any:
    # matplotlib's colormaps build their lookup table (_lut) when they first map a value. Built on a
    # copy: the object is not changed. An edited table (the transparency recipe) is hashed as it is.
    if type(state) is not dict or state.get("_isinit") is not False:
        return state
    try:
        twin = copy.copy(cmap)
        twin._init()
        return {**state, "_isinit": True, "_lut": twin._lut}
    except Exception:  # noqa: BLE001 - a colormap that can't build its table is hashed as it is
        return state


_BUILT_WHEN_USED: dict[str, Callable[[Any, Any], Any]] = {"matplotlib.colors.Colormap": _colormap_built}
# Descriptors that store what they compute in a dict attribute of the
# instance, by (module, class name): pandas' cache_readonly, statsmodels'
# cache_readonly and cache_writable. They name the dict ``cachename``, or ``_cache``.
_CACHING_DESCRIPTORS = frozenset(
    {
        ("pandas._libs.properties", "CachedProperty"),
        ("statsmodels.tools._decorators", "CachedAttribute"),  # and its subclasses, cache_readonly...
    }
)
# Kinds whose identity the walk never keys: immutable builtins, and objects
# that are hashed by what they are (code, modules, classes: nodes and names).
# A bound method is made anew on every attribute access; its __self__ is keyed.
_UNTRACKED = frozenset(
    {FunctionType, BuiltinFunctionType, MethodType, CodeType, ModuleType, type, staticmethod, classmethod, property}
)
_IMMUTABLE_BASES = (tuple, str, bytes, int, float, complex, frozenset, range, slice)
_REDUCE_NAMES = ("__reduce_ex__", "__reduce__", "__getstate__")
_ATOMS = frozenset({int, float, complex, str, bytes, bool, type(None)})


class _ClassInfo:
    """What the walk needs to know about a class, worked out once per class."""

    __slots__ = ("built", "derived", "own_reduce", "python_reduce", "tracked", "__weakref__")

    def __init__(self, cls: type) -> None:
        self.built = _built_when_used(cls)
        self.derived = _derived_names(cls)
        self.own_reduce = _reduce_owner(cls) is cls
        self.python_reduce = _reduce_is_python(cls)
        self.tracked = _is_tracked(cls)


_INFO: weakref.WeakKeyDictionary[type, _ClassInfo] = weakref.WeakKeyDictionary()


def class_info(cls: type) -> _ClassInfo:
    try:
        return _INFO[cls]
    except KeyError:
        info = _INFO[cls] = _ClassInfo(cls)
        return info
    except TypeError:  # a class that can't be weakly referenced: not cached
        return _ClassInfo(cls)


def tracked(cls: type) -> bool:
    """Whether objects of ``cls`` are mutable, so that which of them are the same object counts."""
    return class_info(cls).tracked


class ObjectKinds(Kinds):
    """The walk's hooks for objects without a kind of their own."""

    owner_name = ""  # the object whose two reduces ``settled`` compares, for its error

    def register_objects(self, table: dict[type, Callable[[Any], Any]]) -> None:
        table[weakref.ref] = self.weakref_token
        table[weakref.WeakSet] = lambda ws: _ref("weakset", type(ws), set(ws))
        table[weakref.WeakValueDictionary] = lambda wd: _ref("weakvaluedict", type(wd), dict(wd.items()))
        table[weakref.WeakKeyDictionary] = lambda wd: _ref("weakkeydict", type(wd), dict(wd.items()))

    def weakref_token(self, ref: weakref.ref[Any]) -> tuple[Any, ...]:
        # The referent is pickled inline, in the same stream: a reference to
        # a part of the value is keyed as that part, shared.
        if type(ref) is weakref.ref:
            return _ref("weakref", ref())
        return _ref("weakref", type(ref), ref(), getattr(ref, "__dict__", None))

    def reduce(self, obj: object) -> object:
        """What the pickler would do, made deterministic and complete (see the module docstring).

        A global reference gets its package version: objects whose
        ``__reduce__`` returns a name (numpy's array-function dispatchers such
        as ``np.mean``, ufuncs, ``pd.NA``...) are otherwise pickled as a bare
        name, and a package upgrade could change them.
        """
        reducer = copyreg.dispatch_table.get(type(obj))
        reduced = reducer(obj) if reducer is not None else obj.__reduce_ex__(5)
        if isinstance(reduced, str):
            module = getattr(obj, "__module__", None)
            if not isinstance(module, str):
                return NotImplemented  # the pickler finds the module itself
            version = self.version(module) if module != "__main__" else None
            return _ref("global", module, reduced, version or "")
        if not isinstance(reduced, tuple) or len(reduced) < 2:
            return reduced  # the pickler raises its own error
        info = class_info(type(obj))
        parts = list(reduced)
        if info.python_reduce and _holds_dict(parts[1:3]):
            # Called again only where there is a dict to compare: a reduce that
            # serializes a whole model to bytes is not paid for twice.
            again = reducer(obj) if reducer is not None else obj.__reduce_ex__(5)
            if isinstance(again, tuple) and len(again) == len(reduced):
                self.owner_name = _type_name(obj)
                parts[1] = self.settled(parts[1], again[1])
                if len(parts) > 2:
                    parts[2] = self.settled(parts[2], again[2])
        state = parts[2] if len(parts) > 2 else None
        if state is None and not info.own_reduce:
            # A reduce inherited from a base that knows nothing of the
            # subclass's attributes lost them. (A class that writes its own
            # reduce without state says what it is: trusted.)
            attributes = getattr(obj, "__dict__", None)
            if type(attributes) is dict and attributes and not isinstance(obj, type):
                state = attributes
        if info.built is not None and state is not None:
            state = info.built(obj, state)
        if info.derived and state is not None:
            state = _without(state, info.derived)
        if not info.tracked and state is not None:
            # A value (a frozen dataclass) met twice holds one __dict__: a
            # copy keeps the dict's identity from being keyed as sharing.
            state = _copied(state)
        if len(parts) > 2 or state is not None:
            parts[2:3] = [state]
        return tuple(parts)

    def settled(self, first: Any, second: Any) -> Any:
        """``first`` with every dict that is not the same object in ``second`` in canonical order.

        ``first`` and ``second`` are two results of one reduce: what is the
        same object in both is held by the object; what differs was built by
        the reduce, so its order is the reduce's, not the object's. Two
        different scalars mean the reduce changes the object (or reads a
        clock): refused, as no digest of it would hold.
        """
        if first is second:
            return first
        kind = type(first)
        if kind is dict and type(second) is dict and first.keys() == second.keys():
            items = [(key, self.settled(value, second[key])) for key, value in first.items()]
            items.sort(key=lambda item: self.digest(item[0]))
            return dict(items)
        if (kind is list or kind is tuple) and type(second) is kind and len(first) == len(second):
            if all(map(_same, first, second)):
                return first
            settled = [self.settled(a, b) for a, b in zip(first, second)]
            return settled if kind is list else tuple(settled)
        if kind in _ATOMS and _atom_digest(first) != _atom_digest(second):
            # matplotlib's CallbackRegistry.__getstate__ advances a counter:
            # no digest of such an object is the same twice.
            why = f"cannot fingerprint a {self.owner_name} value: pickling it changes it"
            if self.owner_name == "matplotlib.cbook.CallbackRegistry":
                why += (
                    "; every matplotlib figure, axes and artist holds one, so a cell that draws on a figure"
                    " another cell made runs uncached: make and draw the figure in one cell"
                )
            raise Unfingerprintable(why, type_name=self.owner_name)
        return first


def _same(a: object, b: object) -> bool:
    return a is b


def _holds_dict(value: Any, depth: int = 3) -> bool:
    """Whether a dict is in ``value`` within ``depth`` levels of lists and tuples."""
    kind = type(value)
    if kind is dict:
        return True
    if depth and (kind is tuple or kind is list) and len(value) <= 64:
        return any(_holds_dict(item, depth - 1) for item in value)
    return False


def _without(state: Any, names: frozenset[str]) -> Any:
    """``state`` (a dict, or the (dict, slots) pair of objects with __slots__) without ``names``."""
    if type(state) is dict:
        if names.isdisjoint(state):
            return state
        return {key: value for key, value in state.items() if key not in names}
    if type(state) is tuple and len(state) == 2:
        return tuple(_without(part, names) if type(part) is dict else part for part in state)
    return state


def _copied(state: Any) -> Any:
    if type(state) is dict:
        return dict(state)
    if type(state) is tuple and len(state) == 2:
        return tuple(dict(part) if type(part) is dict else part for part in state)
    return state


def _derived_names(cls: type) -> frozenset[str]:
    names: set[str] = set()
    for klass in cls.__mro__:
        names.update(_DERIVED.get(f"{klass.__module__}.{klass.__qualname__}", ()))
        for attribute in vars(klass).values():
            if isinstance(attribute, functools.cached_property):
                if attribute.attrname:
                    names.add(attribute.attrname)
                continue
            if any((kind.__module__, kind.__qualname__) in _CACHING_DESCRIPTORS for kind in type(attribute).__mro__):
                cachename = getattr(attribute, "cachename", None)
                names.add(cachename if isinstance(cachename, str) else "_cache")
    return frozenset(names)


def _built_when_used(cls: type) -> Callable[[Any, Any], Any] | None:
    for klass in cls.__mro__:
        built = _BUILT_WHEN_USED.get(f"{klass.__module__}.{klass.__qualname__}")
        if built is not None:
            return built
    return None


def _reduce_owner(cls: type) -> type | None:
    """The class that defines the reduce pickling uses for ``cls`` (None: object's, or copyreg's)."""
    if cls in copyreg.dispatch_table:
        return None
    for klass in cls.__mro__:
        if klass is object:
            return None
        if "__reduce_ex__" in vars(klass) or "__reduce__" in vars(klass):
            return klass
    return None


def _reduce_is_python(cls: type) -> bool:
    """Whether the reduce that pickling uses for ``cls`` is code written in Python (it may iterate a set)."""
    if cls in copyreg.dispatch_table:
        return isinstance(copyreg.dispatch_table[cls], FunctionType)
    for name in _REDUCE_NAMES:
        for klass in cls.__mro__:
            if klass is object:
                break
            if name in vars(klass):
                if isinstance(vars(klass)[name], FunctionType):
                    return True
                break
    return False


def _is_tracked(cls: type) -> bool:
    if cls in _UNTRACKED or issubclass(cls, _IMMUTABLE_BASES):
        return False
    hasher = getattr(cls, "__hash__", None)
    # Unhashable (list, ndarray, DataFrame, a dataclass with eq) or hashed by
    # identity (a plain class): mutable. Hashed by value (a frozen dataclass,
    # Decimal, datetime, a numpy scalar, an enum member): a value.
    return hasher is None or hasher is object.__hash__
