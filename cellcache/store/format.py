"""How values become bytes: joblib pickles, hashed while they are written.

This is the *format* axis (as in marimo's loaders); where the bytes live is
the store's business.
"""
from __future__ import annotations

import importlib
import io
import marshal
import pickle
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import cloudpickle
import xxhash
from joblib.numpy_pickle import NumpyArrayWrapper, NumpyPickler, NumpyUnpickler

from cellcache.errors import EntryCorrupt


class HashingWriter(io.RawIOBase):
    """A write-only file that digests everything passing through it."""

    def __init__(self, target: BinaryIO) -> None:
        self._target = target
        self._hasher = xxhash.xxh3_128()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:  # type: ignore[override]
        view = memoryview(data)
        self._hasher.update(view)
        self._target.write(view)
        self.size += view.nbytes
        return view.nbytes

    def tell(self) -> int:
        # joblib aligns array data on the write position, which keeps blobs memory-mappable.
        return self.size

    def hexdigest(self) -> str:
        return self._hasher.hexdigest()


def _defined_in_notebook(obj: Any) -> bool:
    return getattr(obj, "__module__", None) == "__main__"


def _rebuild_function(
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


# How a blob is read back: the loader axis, next to the store's place axis.
JOBLIB = "joblib"  # holds numpy arrays in joblib's layout (array bytes after their wrapper)
PICKLE = "pickle"  # no arrays: a plain pickle stream, which the C unpickler reads much faster


@dataclass(frozen=True)
class BlobInfo:
    digest: str
    size: int
    loader: str = JOBLIB


class BundlePickler(NumpyPickler):
    """joblib's pickler, plus what a notebook namespace needs to survive a new kernel.

    Functions and classes the notebook defined live in ``__main__``; pickled by
    reference they could only be loaded where they already exist, so they are
    stored by value. Modules are stored by name and imported on load. Arrays
    are memoized, so two names bound to one array are one array again on load.
    """

    arrays_written = 0

    def save(self, obj: Any) -> None:  # joblib's save takes no save_persistent_id
        if self.np is not None and type(obj) in (self.np.ndarray, self.np.matrix, self.np.memmap):
            # joblib writes arrays before the memo is consulted, which would split aliases into copies.
            known = self.memo.get(id(obj))
            if known is not None:
                self.write(self.get(known[0]))
                return
            super().save(obj)
            self.arrays_written += 1
            self.memoize(obj)
            return
        super().save(obj)

    def reducer_override(self, obj: Any) -> Any:
        kind = type(obj)
        if kind is types.ModuleType:
            return importlib.import_module, (obj.__name__,)
        if kind is types.FunctionType and _defined_in_notebook(obj):
            closure = tuple(c.cell_contents for c in obj.__closure__ or ())
            return _rebuild_function, (
                marshal.dumps(obj.__code__),
                obj.__name__,
                obj.__qualname__,
                obj.__defaults__,
                obj.__kwdefaults__,
                closure,
                dict(obj.__dict__),
            )
        if isinstance(obj, type) and _defined_in_notebook(obj):
            return cloudpickle.loads, (cloudpickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL),)
        return NotImplemented


def dump(value: Any, target: BinaryIO) -> BlobInfo:
    """Write ``value`` as a joblib pickle (readable by ``joblib.load``)."""
    writer = HashingWriter(target)
    pickler = BundlePickler(writer, protocol=pickle.HIGHEST_PROTOCOL)
    pickler.dump(value)
    return BlobInfo(writer.hexdigest(), writer.size, JOBLIB if pickler.arrays_written else PICKLE)


def _read_array(wrapper: NumpyArrayWrapper, f: BinaryIO, native: bool) -> Any:
    """Read one array's bytes straight into its buffer: one copy, as np.load does.

    joblib's own reader goes through an intermediate bytes object per chunk,
    which doubles the memory traffic of restoring a large array.
    """
    import numpy as np

    if wrapper.safe_get_numpy_array_alignment_bytes() is not None:
        padding = f.read(1)
        if padding and padding[0]:
            f.read(padding[0])
    count = int(np.prod(wrapper.shape, dtype=np.int64)) if len(wrapper.shape) else 1
    array = np.empty(count, dtype=wrapper.dtype)
    target = memoryview(array.view(np.uint8)) if array.nbytes else memoryview(b"")
    filled = 0
    while filled < len(target):
        n = f.readinto(target[filled:])
        if not n:
            raise EntryCorrupt(f"array data ends after {filled} of {len(target)} bytes")
        filled += n
    array = array.reshape(wrapper.shape[::-1]).transpose() if wrapper.order == "F" else array.reshape(wrapper.shape)
    if native and not array.dtype.isnative:
        array = array.byteswap().view(array.dtype.newbyteorder("="))
    return array


class BundleUnpickler(NumpyUnpickler):
    """joblib's unpickler with a faster read of plain numeric arrays."""

    dispatch = NumpyUnpickler.dispatch.copy()

    def load_build(self) -> None:
        pickle._Unpickler.load_build(self)  # type: ignore[attr-defined]
        wrapper = self.stack[-1]
        if isinstance(wrapper, NumpyArrayWrapper):
            self.stack.pop()
            if wrapper.dtype.hasobject:
                self.stack.append(wrapper.read(self, self.ensure_native_byte_order))
            else:
                self.stack.append(_read_array(wrapper, self.file_handle, self.ensure_native_byte_order))

    dispatch[pickle.BUILD[0]] = load_build


def load(path: Path, loader: str = JOBLIB) -> Any:
    """Load a blob written by ``dump`` (also readable by ``joblib.load``)."""
    try:
        with open(path, "rb") as f:
            if loader == PICKLE:
                return pickle.load(f)
            return BundleUnpickler(str(path), f, ensure_native_byte_order=True).load()
    except FileNotFoundError:
        raise
    except Exception as exc:  # unpickling a damaged file can raise almost anything
        raise EntryCorrupt(f"blob {path.name} cannot be read: {type(exc).__name__}: {exc}") from exc


def file_digest(path: Path, chunk: int = 1 << 24) -> str:
    hasher = xxhash.xxh3_128()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            hasher.update(block)
    return hasher.hexdigest()


def first_unpicklable(values: dict[str, Any]) -> tuple[str, Exception] | None:
    """Name the value that stops the bundle from pickling (only called after a failure)."""
    for name, value in values.items():
        try:
            BundlePickler(io.BytesIO(), protocol=pickle.HIGHEST_PROTOCOL).dump(value)
        except Exception as exc:
            return name, exc
    return None
