"""The reducers a blob names: how notebook functions, classes and array subclasses come back.

A pickle stream refers to these by module and name, so they live in a module of
their own at the bottom of the store. Blobs written before a module moved name
its classes and functions by their old paths: ``RENAMED`` maps those to where
they live now, and every unpickler of the store resolves names through it.
"""
from __future__ import annotations

import functools
import io
import marshal
import os
import pickle
import sys
import types
from typing import Any


def defined_in_notebook(obj: Any) -> bool:
    return getattr(obj, "__module__", None) == "__main__"


def rebuild_function(
    code: bytes, name: str, qualname: str, defaults: Any, kwdefaults: Any, closure: tuple, attrs: dict
) -> types.FunctionType:
    # The notebook's namespace is __main__'s, in a kernel as in a script: a restored function
    # reads the live globals, exactly as the function the cell defined did.
    namespace = vars(sys.modules["__main__"])
    cells = tuple(types.CellType(v) for v in closure)
    fn = types.FunctionType(marshal.loads(code), namespace, name, defaults, cells or None)
    fn.__qualname__, fn.__kwdefaults__ = qualname, kwdefaults
    fn.__dict__.update(attrs)
    return fn


def live_or_rebuilt(qualname: str, digest: bytes, rebuild: Any, args: tuple) -> Any:
    """The notebook's live function or class of that name if it still has the code it was stored with; else a copy.

    After Restart & Run All, or a re-run of the class's cell, the live class
    is a new object with the same code: restoring by reference to it keeps
    ``isinstance`` and ``==`` working against objects made by later cells.
    A changed or missing definition gets the stored copy, by value.
    """
    from cellcache.fingerprint import fingerprint

    live: Any = sys.modules["__main__"]
    for part in qualname.split("."):
        live = getattr(live, part, None)
    if live is not None:
        try:
            if fingerprint(live) == digest:
                return live
        except Exception:  # noqa: BLE001 - no digest for the live object: the stored copy is the safe answer
            pass
    return rebuild(*args)


def by_reference(obj: Any, rebuild: Any, args: tuple) -> tuple[Any, tuple]:
    """A reduce value: by reference to ``__main__`` when ``obj`` is the live object there, by value otherwise."""
    from cellcache.fingerprint import fingerprint

    live: Any = sys.modules.get("__main__")
    for part in obj.__qualname__.split("."):
        live = getattr(live, part, None)
    if live is obj:
        try:
            return live_or_rebuilt, (obj.__qualname__, fingerprint(obj), rebuild, args)
        except Exception:  # noqa: BLE001 - no digest: by value only
            pass
    return rebuild, args


def cached_property_of(func: Any, attrname: str | None, doc: str | None) -> Any:
    prop = functools.cached_property(func)
    prop.attrname, prop.__doc__ = attrname, doc
    return prop


def rebuild_subclass(cls: type, data: Any, attrs: dict) -> Any:
    """An ndarray subclass with its instance attributes, which numpy's own pickling drops."""
    array = data.view(cls)
    array.__dict__.update(attrs)
    return array


def array_view(root: Any, offset: int, shape: tuple, strides: tuple, dtype: Any, writeable: bool) -> Any:
    """An array over ``root``'s memory, ``offset`` bytes into it: a view again, as it was when stored.

    Two arrays of a value that were windows on one buffer (``x = data[:, 0]``,
    ``y = data[:, 1]``) stay so: writing through one is seen through the other,
    as before the round trip, and the digest keys exactly that.
    """
    import numpy as np

    flat = root.ravel(order="K").view(np.uint8)  # root is contiguous: a view, in memory order, of any dtype
    array = np.ndarray(shape, dtype=dtype, buffer=flat, offset=offset, strides=strides)
    if not writeable:
        array.flags.writeable = False
    return array


def set_state_keeping_dict(obj: Any, state: dict) -> None:
    """``obj.__setstate__(state)``, then the attributes it left out, as they were.

    Used for classes whose ``__setstate__`` never reads its state (scikit-learn's
    ``Bunch``, which so drops instance attributes that pickles of old releases
    held): the object comes back with the attributes it had when stored, and
    whatever that ``__setstate__`` sets itself wins.
    """
    obj.__setstate__(state)
    attributes = obj.__dict__
    for name, value in state.items():
        if name not in attributes:
            attributes[name] = value


def read_only(array: Any) -> Any:
    """``array``, not writeable: a large read-only Arrow buffer comes back read-only (a mapping is writable)."""
    array.flags.writeable = False
    return array


class BufferReader:
    """A read-only file over a buffer (the mapping, or the bytes read): what the unpicklers need."""

    def __init__(self, buffer: Any) -> None:
        self.owner = buffer
        self.view = memoryview(buffer).cast("B")
        self.pos = 0

    def read(self, n: int = -1) -> bytes:
        end = len(self.view) if n is None or n < 0 else min(self.pos + n, len(self.view))
        data = self.view[self.pos : end].tobytes()
        self.pos = end
        return data

    def readinto(self, target: Any) -> int:
        out = memoryview(target).cast("B")
        n = min(len(out), len(self.view) - self.pos)
        out[:n] = self.view[self.pos : self.pos + n]
        self.pos += n
        return n

    def readline(self) -> bytes:
        end = bytes(self.view[self.pos : self.pos + 4096]).find(b"\n")
        if end < 0:
            return self.read()
        return self.read(end + 1)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        self.pos = offset if whence == os.SEEK_SET else self.pos + offset if whence == os.SEEK_CUR else len(self.view) + offset
        return self.pos

    def tell(self) -> int:
        return self.pos


class ClosedFile(io.IOBase):
    """What a file left closed by ``with open(p) as fh:`` comes back as: closed, with its name and mode.

    A real file object can't be pickled; a closed one holds nothing to restore but what it was.
    """

    def __init__(self, name: Any = None, mode: Any = None, kind: str = "") -> None:
        super().__init__()
        self.name, self.mode, self.kind = name, mode, kind
        self.close()

    def read(self, *args: Any) -> Any:
        raise ValueError("I/O operation on closed file.")

    write = read

    def __repr__(self) -> str:
        return f"<closed file {self.name!r} mode={self.mode!r} (restored by cellcache)>"


def closed_file(name: Any, mode: Any, kind: str) -> ClosedFile:
    return ClosedFile(name, mode, kind)


def self_dict_object(cls: type) -> Any:
    """An empty instance of a dict subclass whose attributes are its items (``self.__dict__ = self``).

    Pickle's default would give it a ``__dict__`` of its own, a copy of the
    items: setting an attribute would then no longer set an item, and the
    object would digest otherwise. Its items follow in the stream, set after
    this, so an item that refers to the object itself finds it.
    """
    obj = cls.__new__(cls)
    obj.__dict__ = obj
    return obj


def exhausted_generator() -> Any:
    """A generator that is done, as an exhausted one was: next() raises StopIteration."""
    done = (item for item in ())
    next(done, None)
    return done


# (old module, old name) -> (module, name): what blobs written before a move name, and where it is now.
RENAMED: dict[tuple[str, str], tuple[str, str]] = {
    ("cellcache.store.format", "_rebuild_function"): (__name__, "rebuild_function"),
    ("cellcache.store.format", "_live_or_rebuilt"): (__name__, "live_or_rebuilt"),
    ("cellcache.store.format", "_cached_property"): (__name__, "cached_property_of"),
    ("cellcache.store.format", "_rebuild_subclass"): (__name__, "rebuild_subclass"),
    ("cellcache.effects", "_Absent"): ("cellcache.cell.effects", "_Absent"),
}


class Unpickler(pickle.Unpickler):
    """The C unpickler, resolving the names of moved classes and functions (``RENAMED``)."""

    def find_class(self, module: str, name: str) -> Any:
        return super().find_class(*RENAMED.get((module, name), (module, name)))
