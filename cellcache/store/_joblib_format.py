"""The pickler and unpickler of ``format``, built on joblib's; imported on first use (see ``format._joblib``).

Classes defined here that a blob names (the array wrapper) say they live in
``cellcache.store.format``, where blobs have always found them.
"""
from __future__ import annotations

import collections
import dis
import functools
import importlib
import inspect
import io
import marshal
import os
import pickle
import types
import weakref
from typing import Any

import cloudpickle
from joblib.numpy_pickle import NumpyArrayWrapper, NumpyPickler, NumpyUnpickler

from cellcache.errors import EntryCorrupt
from cellcache.fingerprint.mapped import MAP_THRESHOLD, PAGE
from cellcache.store.reducers import (
    RENAMED,
    array_view,
    BufferReader,
    ClosedFile,
    closed_file,
    exhausted_generator,
    Unpickler,
    by_reference,
    cached_property_of,
    defined_in_notebook,
    rebuild_function,
    read_only,
    rebuild_subclass,
    self_dict_object,
    set_state_keeping_dict,
)


class _ClassPickler(cloudpickle.Pickler):
    """cloudpickle, plus functools.cached_property, which holds an RLock until 3.12 and so does not pickle."""

    dispatch_table = collections.ChainMap(
        {functools.cached_property: lambda p: (cached_property_of, (p.func, p.attrname, p.__doc__))},
        cloudpickle.Pickler.dispatch_table,
    )


class PageAlignedArrayWrapper(NumpyArrayWrapper):
    """joblib's wrapper for a large array whose bytes start on a page boundary.

    joblib's own padding length is one byte (at most 255), too short to reach a
    page; this one writes it in four. ``joblib.load`` still reads these blobs,
    through ``read_array`` below.
    """

    def write_array(self, array: Any, pickler: Any) -> None:
        position = pickler.file_handle.tell() + 4
        padding = -position % PAGE
        pickler.file_handle.write(padding.to_bytes(4, "little") + b"\xff" * padding)
        if array.flags.c_contiguous or array.flags.f_contiguous:
            # Contiguous data goes out in one write, without joblib's 16 MB temporary chunks.
            data = array.T if self.order == "F" else array
            pickler.file_handle.write(memoryview(data.reshape(-1).view(pickler.np.uint8)))
            return
        saved, self.numpy_array_alignment_bytes = self.numpy_array_alignment_bytes, None
        try:
            super().write_array(array, pickler)
        finally:
            self.numpy_array_alignment_bytes = saved

    def skip_padding(self, handle: Any) -> None:
        padding = int.from_bytes(handle.read(4), "little")
        handle.seek(padding, os.SEEK_CUR)

    def read_array(self, unpickler: Any, ensure_native_byte_order: bool) -> Any:
        # Reached only through joblib.load: cellcache's own loader maps or reads the bytes itself.
        self.skip_padding(unpickler.file_handle)
        saved, self.numpy_array_alignment_bytes = self.numpy_array_alignment_bytes, None
        try:
            return super().read_array(unpickler, ensure_native_byte_order)
        finally:
            self.numpy_array_alignment_bytes = saved


class BundlePickler(NumpyPickler):
    """joblib's pickler, plus what a notebook namespace needs to survive a new kernel.

    Functions and classes the notebook defined live in ``__main__``; pickled by
    reference they could only be loaded where they already exist, so they are
    stored by value. Modules are stored by name and imported on load. Arrays
    are memoized, so two names bound to one array are one array again on load.
    """

    arrays_written = 0

    def _create_array_wrapper(self, array: Any) -> Any:
        wrapper = super()._create_array_wrapper(array)
        if array.nbytes >= MAP_THRESHOLD and not array.dtype.hasobject:
            wrapper.__class__ = PageAlignedArrayWrapper
        return wrapper

    def save(self, obj: Any) -> None:  # joblib's save takes no save_persistent_id
        np = self.np
        kind = type(obj)
        if np is not None and kind in (np.ndarray, np.matrix, np.memmap):
            # joblib writes arrays before the memo is consulted, which would split aliases into copies.
            known = self.memo.get(id(obj))
            if known is not None:
                self.write(self.get(known[0]))
                return
            root = _view_root(obj, np) if kind is np.ndarray else None
            if root is not None:
                # Saved as a window on its root, so views of one buffer are views of one buffer again.
                offset = obj.__array_interface__["data"][0] - root.__array_interface__["data"][0]
                args = (root, offset, obj.shape, obj.strides, obj.dtype, bool(obj.flags.writeable))
                self.save_reduce(array_view, args, obj=obj)
                return
            super().save(obj)
            self.arrays_written += 1
            self.memoize(obj)
            return
        if np is not None and kind is pickle.PickleBuffer and _is_arrow_buffer(obj):
            # Arrow's buffers (pandas' str columns) pickle as in-band bytearrays. pyarrow.py_buffer takes any
            # buffer, so a large one is saved as an array (mapped on load), a small one as bytes, or as a
            # bytearray where it was writable: whether a buffer is read-only is in its digest.
            raw = obj.raw()
            if raw.nbytes >= MAP_THRESHOLD:
                array = np.frombuffer(raw, dtype=np.uint8)
                if raw.readonly:
                    self.save_reduce(read_only, (array,))
                else:
                    self.save(array)
            else:
                self.save(raw.tobytes() if raw.readonly else bytearray(raw))
            return
        if np is not None and isinstance(obj, np.ndarray) and kind is not np.memmap and _plain_reduce(kind, np):
            # numpy's reduce drops a subclass's instance attributes: keep them, and the data as a plain array.
            self.save_reduce(rebuild_subclass, (kind, obj.view(np.ndarray), dict(getattr(obj, "__dict__", {}))), obj=obj)
            return
        super().save(obj)

    def reducer_override(self, obj: Any) -> Any:
        kind = type(obj)
        if kind is types.ModuleType:
            return importlib.import_module, (obj.__name__,)
        if isinstance(obj, io.IOBase) and obj.closed and kind is not ClosedFile:
            # `with open(p) as fh:` leaves a closed file in nearly every notebook: it comes back closed.
            return closed_file, (_plain_or_none(getattr(obj, "name", None)), _plain_or_none(getattr(obj, "mode", None)), kind.__name__)
        if kind is types.GeneratorType and inspect.getgeneratorstate(obj) == inspect.GEN_CLOSED:
            return exhausted_generator, ()
        if kind is types.FunctionType and defined_in_notebook(obj):
            closure = tuple(c.cell_contents for c in obj.__closure__ or ())
            return by_reference(
                obj,
                rebuild_function,
                (
                    marshal.dumps(obj.__code__),
                    obj.__name__,
                    obj.__qualname__,
                    obj.__defaults__,
                    obj.__kwdefaults__,
                    closure,
                    dict(obj.__dict__),
                ),
            )
        if isinstance(obj, type) and defined_in_notebook(obj):
            return by_reference(obj, cloudpickle.loads, (_class_by_value(obj),))
        if isinstance(obj, dict) and getattr(obj, "__dict__", None) is obj and _default_reduce(kind):
            # statsmodels' Dataset and other attribute dicts: the items are the attributes, one dict.
            return self_dict_object, (kind,), None, None, iter(obj.items())
        setstate = getattr(kind, "__setstate__", None)
        if type(setstate) is types.FunctionType and _ignores_state(setstate) and _object_reduce(kind):
            # The state is the instance __dict__, which that __setstate__ would drop.
            reduced = obj.__reduce_ex__(self.proto)
            if isinstance(reduced, tuple) and len(reduced) >= 3 and type(reduced[2]) is dict and reduced[2]:
                return (*reduced[:5], *(None,) * (5 - len(reduced)), set_state_keeping_dict)
        return NotImplemented


@functools.lru_cache(maxsize=256)
def _ignores_state(setstate: types.FunctionType) -> bool:
    """Whether a ``__setstate__`` written in Python never reads its state argument."""
    code = setstate.__code__
    if code.co_argcount != 2 or code.co_flags & (inspect.CO_VARARGS | inspect.CO_VARKEYWORDS):
        return False
    name = code.co_varnames[1]
    if name in code.co_cellvars:
        return False
    return not any(op.opname.startswith("LOAD_FAST") and op.argval == name for op in dis.get_instructions(code))


def _object_reduce(kind: type) -> bool:
    """Whether ``kind`` pickles by object's own reduce and state: its state is its ``__dict__``."""
    return (
        kind.__reduce_ex__ is object.__reduce_ex__
        and kind.__reduce__ is object.__reduce__
        and getattr(kind, "__getstate__", object.__getstate__) is object.__getstate__
    )


def _default_reduce(kind: type) -> bool:
    """Whether ``kind`` pickles by object's own reduce and state, with nothing of its own to run on load."""
    return (
        _object_reduce(kind)
        and getattr(kind, "__setstate__", None) is None
        and not any("__slots__" in vars(klass) for klass in kind.__mro__)
    )


def _plain_or_none(value: Any) -> Any:
    return value if isinstance(value, (str, bytes, int)) else None


def _class_by_value(cls: type) -> bytes:
    buffer = io.BytesIO()
    _ClassPickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(cls)
    return buffer.getvalue()


def _view_root(array: Any, np: Any) -> Any:
    """The array whose memory ``array`` is a view of, if storing that instead is cheap; else None.

    Storing the whole root costs what the view leaves out of it, so it is
    done where the root is small, or at most four times the view (a column
    of a table of a few columns). A view of a bigger root is stored on its
    own, as a copy: a value holding two such views then loses their sharing,
    and the cell after a hit re-runs (a miss, never a wrong hit).
    """
    root = array
    while isinstance(root.base, np.ndarray):
        root = root.base
    if root is array or array.dtype.hasobject or root.dtype.hasobject or not array.nbytes:
        return None
    if type(root) not in (np.ndarray, np.memmap) or not (root.flags.c_contiguous or root.flags.f_contiguous):
        return None
    if root.nbytes > max(4 * array.nbytes, MAP_THRESHOLD):
        return None
    return root


def _plain_reduce(kind: type, np: Any) -> bool:
    """A subclass that pickles through ndarray's own reduce (masked arrays and others bring their own)."""
    if kind is np.ndarray or kind is np.matrix:
        return False
    return kind.__reduce_ex__ is np.ndarray.__reduce_ex__ and kind.__reduce__ is np.ndarray.__reduce__


def _is_arrow_buffer(buffer: pickle.PickleBuffer) -> bool:
    try:
        return type(buffer.raw().obj).__module__.startswith("pyarrow")
    except (AttributeError, BufferError, ValueError):
        return False


def _array_from(wrapper: NumpyArrayWrapper, reader: BufferReader, mapped: bool) -> Any:
    """The array whose bytes start at the reader's position: a view of the buffer where mapped, else a copy."""
    import numpy as np

    if isinstance(wrapper, PageAlignedArrayWrapper):
        wrapper.skip_padding(reader)
    elif wrapper.safe_get_numpy_array_alignment_bytes() is not None:
        padding = reader.read(1)
        reader.seek(padding[0] if padding else 0, os.SEEK_CUR)
    count = int(np.prod(wrapper.shape, dtype=np.int64)) if len(wrapper.shape) else 1
    nbytes = count * wrapper.dtype.itemsize
    if reader.pos + nbytes > len(reader.view):
        raise EntryCorrupt(f"array data ends after {len(reader.view) - reader.pos} of {nbytes} bytes")
    array = np.frombuffer(reader.owner, dtype=wrapper.dtype, count=count, offset=reader.pos)
    reader.pos += nbytes
    # Byte order stays as stored: a big-endian array comes back big-endian, and its digest with it.
    array = array.reshape(wrapper.shape[::-1]).transpose() if wrapper.order == "F" else array.reshape(wrapper.shape)
    if not (mapped and nbytes >= MAP_THRESHOLD):
        array = array.copy(order="K")  # a small array owns its memory instead of pinning the whole blob
    return array


def _load_object_array(reader: BufferReader) -> Any:
    """The nested stream of an object array, through the C unpickler (many times faster than joblib's).

    numpy fills the array from a list of its items. When the stream names no
    class but numpy's own (so every item was built by pickle's opcodes, not by
    a class: no subclass, no enum, no numpy scalar), that list is handed to
    ``pointers.watch``, which keeps the items alive so the array's pointer row
    can later prove it unchanged without pickling it again.
    """
    start = reader.pos
    inner = _ObjectArrayUnpickler(reader)
    value = inner.load()
    foreign = inner.foreign
    inner.memo = {}  # the memo holds the placeholder (and a bound method of inner)
    del inner
    if type(value) is not _Pending:
        return value
    array, state, placeholder = value.array, value.state, weakref.ref(value)
    del value
    if placeholder() is not None:
        # Something still holds the placeholder: the array is among its own items. Read it again, plainly.
        reader.seek(start)
        return Unpickler(reader).load()
    if not foreign and isinstance(state, tuple) and len(state) == 5 and state[3] is False and type(state[4]) is list:
        from cellcache.fingerprint import pointers

        pointers.watch(array, state[4])
    return array


class _Pending:
    """What the stream's one ``_reconstruct`` call returns: it takes the array's state, so its item list is seen."""

    __slots__ = ("array", "state", "__weakref__")

    def __init__(self, array: Any) -> None:
        self.array, self.state = array, None

    def __setstate__(self, state: Any) -> None:
        self.array.__setstate__(state)
        self.state = state


class _ObjectArrayUnpickler(Unpickler):
    """The C unpickler, noting in ``foreign`` whether the stream named any class but numpy's own."""

    def __init__(self, reader: BufferReader) -> None:
        import codecs

        import numpy as np

        super().__init__(reader)
        self._reconstruct = np._core.multiarray._reconstruct if hasattr(np, "_core") else np.core.multiarray._reconstruct
        # _reconstruct builds the array, ndarray and dtype are its arguments, codecs.encode
        # spells bytes in protocol 2 (the array's flag, and bytes items, which are exact and immutable).
        self._plain = (np.ndarray, np.dtype, codecs.encode)
        self.foreign = False
        self._calls = 0

    def find_class(self, module: str, name: str) -> Any:
        found = super().find_class(module, name)
        if found is self._reconstruct:
            return self.reconstruct
        if not any(found is plain for plain in self._plain):
            self.foreign = True
        return found

    def reconstruct(self, *args: Any) -> Any:
        self._calls += 1
        array = self._reconstruct(*args)
        if self._calls > 1 or self.foreign:
            # An array among the items, or inside an object that is not a plain array: where it is expected.
            self.foreign = True
            return array
        return _Pending(array)


class BundleUnpickler(NumpyUnpickler):
    """joblib's unpickler, reading arrays out of one buffer: views where it is a mapping."""

    dispatch = NumpyUnpickler.dispatch.copy()

    def __init__(self, name: str, reader: BufferReader, mapped: bool) -> None:
        super().__init__(name, reader, ensure_native_byte_order=False)
        self.reader, self.mapped = reader, mapped

    def find_class(self, module: str, name: str) -> Any:
        return super().find_class(*RENAMED.get((module, name), (module, name)))

    def load_build(self) -> None:
        pickle._Unpickler.load_build(self)  # type: ignore[attr-defined]
        wrapper = self.stack[-1]
        if isinstance(wrapper, NumpyArrayWrapper):
            self.stack.pop()
            if wrapper.dtype.hasobject:
                self.stack.append(_load_object_array(self.reader))
            else:
                self.stack.append(_array_from(wrapper, self.reader, self.mapped))

    dispatch[pickle.BUILD[0]] = load_build


PageAlignedArrayWrapper.__module__ = "cellcache.store.format"  # pickled by that name, as blobs always were
