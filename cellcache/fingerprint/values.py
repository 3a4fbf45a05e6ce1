"""Values with a fast path: numpy arrays and pandas objects, hashed over their buffers.

Plain-dtype arrays feed their bytes to xxh3 in place (in bounded chunks
when not C-contiguous); pandas frames, series and indexes hash their
labels, index, dtypes and each column through the array route, or for
object columns a fast-mode pickle when ``infer_dtype`` proves they hold
only scalars. An object column of exact immutable builtins is then
remembered by its pointers (``pointers``), so an unchanged one is not
pickled again. numpy and pandas are never imported here: they are looked
up in ``sys.modules``, so a kernel that never imported them pays nothing.
"""
from __future__ import annotations

import functools
import pickle
import sys
from collections.abc import Callable
from typing import Any

import xxhash

from cellcache.fingerprint import mapped
from cellcache.fingerprint import pointers
from cellcache.fingerprint._base import Kinds, _ref, _str_digest

# Non-contiguous arrays are copied at most this many bytes at a time.
_CHUNK_BYTES = 16 << 20
# Object columns are turned into lists this many items at a time.
_CHUNK_ITEMS = 1 << 20
# Numpy kinds whose buffer holds the values themselves (no pointers).
_BUFFER_KINDS = frozenset("biufcmMSUV")
# infer_dtype(skipna=True) results that guarantee scalars only: no container
# can hide in them, so a fast-mode (memo-less) pickle is safe and exact. They are
# the kinds of atoms, plus complex and Decimal objects.
_SCALAR_KINDS = pointers.ATOM_KINDS | {"complex", "decimal"}

# The compiled routine, or None where it wasn't built: then the pickler's route, same digests, slower.
_atoms = pointers._atoms

# ``_atoms``' bits for the kinds it met. infer_dtype(skipna=True) skips None and NaN, and is
# in _SCALAR_KINDS for atoms of one kind, or ints with floats ("mixed-integer-float");
# "mixed" or "mixed-integer" otherwise (tests/fingerprint/test_atoms.py holds the two equal).
_BOOL, _INT, _FLOAT, _STR, _BYTES = 2, 4, 8, 32, 64
_KINDS = _BOOL | _INT | _FLOAT | _STR | _BYTES
_SCALARS_ONLY = frozenset({0, _BOOL, _INT, _FLOAT, _STR, _BYTES, _INT | _FLOAT})


class ValueKinds(Kinds):
    """The walk's hooks for arrays and pandas objects."""

    # One digest per object per call: without the pickler's memo, an array
    # met twice in one value would otherwise be hashed twice.
    value_memo: dict[int, tuple[object, bytes]]

    def register_values(self, table: dict[type, Callable[[Any], Any]]) -> None:
        np = sys.modules.get("numpy")
        if np is not None:
            table[np.ndarray] = self.ndarray_token
        pd = sys.modules.get("pandas")
        if pd is not None:
            table[pd.DataFrame] = lambda frame: _ref("pandas", self.memoized(frame, self.frame_digest))
            table[pd.Series] = lambda series: _ref("pandas", self.memoized(series, self.series_digest))
            for cls in _pandas_index_types(pd):
                table[cls] = lambda index: _ref("pandas", self.memoized(index, self.index_digest))

    def memoized(self, value: Any, compute: Callable[[Any], bytes]) -> bytes:
        hit = self.value_memo.get(id(value))
        if hit is None:
            hit = self.value_memo[id(value)] = (value, compute(value))  # keeps value alive: ids stay unique
        return hit[1]

    def ndarray_token(self, array: Any) -> object:
        if _buffer_safe(array.dtype):
            return _ref("ndarray", self.memoized(array, _array_digest))
        return self.reduce(array)  # object arrays: numpy pickles their items

    def ndarray_subclass_token(self, array: Any) -> object:
        """A subclass by its class, its values and its instance attributes (a ``unit``, a mask).

        numpy's own reduce drops the instance ``__dict__``, so two arrays that
        differ only there would get one digest.
        """
        np = sys.modules["numpy"]
        if isinstance(array, np.memmap):
            # A map is its values; its __dict__ holds the mmap object itself.
            base = np.asarray(array).view(np.ndarray)
            return _ref("memmap", self.digest(base))
        base = array.view(np.ndarray)
        attributes = getattr(array, "__dict__", None) or {}
        owner = f"{type(array).__qualname__} array"
        return _ref(
            "ndarray-subclass",
            self.digest(type(array)),
            self.part(base, owner, "values"),
            self.part(attributes, owner, "attributes"),
        )

    def pandas_digest(self, value: object) -> bytes | None:
        pd = sys.modules.get("pandas")
        if pd is None:
            return None
        kind = type(value)
        if kind is pd.DataFrame:
            return self.frame_digest(value)
        if kind is pd.Series:
            return self.series_digest(value)
        if kind in _pandas_index_types(pd):
            return self.index_digest(value)
        return None

    def frame_digest(self, frame: Any) -> bytes:
        known = mapped.unchanged_digest(frame)
        if known is not None:
            return known  # a frame a hit mapped, unchanged in layout and pages: the manifest's digest
        hasher = xxhash.xxh3_128(b"D")
        hasher.update(pickle.dumps(frame.shape, protocol=5))
        hasher.update(self.index_digest(frame.columns))
        hasher.update(self.index_digest(frame.index))
        # _iter_column_arrays yields each column's array without building a
        # Series (25x cheaper on wide frames); the public route is the fallback.
        columns = getattr(frame, "_iter_column_arrays", None)
        arrays = columns() if columns is not None else (frame.iloc[:, i].array for i in range(frame.shape[1]))
        for values in arrays:
            hasher.update(self.values_digest(values))
        if frame.attrs:
            hasher.update(self.digest(frame.attrs))
        return hasher.digest()

    def series_digest(self, series: Any) -> bytes:
        hasher = xxhash.xxh3_128(b"S")
        hasher.update(self.digest(series.name))
        hasher.update(self.index_digest(series.index))
        hasher.update(self.values_digest(series.array))
        if series.attrs:
            hasher.update(self.digest(series.attrs))
        return hasher.digest()

    def index_digest(self, index: Any) -> bytes:
        pd = sys.modules["pandas"]
        np = sys.modules["numpy"]
        hasher = xxhash.xxh3_128(b"I")
        hasher.update(_str_digest(type(index).__name__))
        hasher.update(self.digest(list(index.names)))
        if isinstance(index, pd.RangeIndex):
            hasher.update(pickle.dumps((index.start, index.stop, index.step), protocol=5))
        elif isinstance(index, pd.MultiIndex):
            for level in index.levels:
                hasher.update(self.index_digest(level))
            for codes in index.codes:
                hasher.update(_array_digest(np.asarray(codes)))
        else:
            hasher.update(self.values_digest(index.array))
            if isinstance(index, (pd.DatetimeIndex, pd.TimedeltaIndex)):
                hasher.update(self.digest(index.freq))
        return hasher.digest()

    def values_digest(self, values: Any) -> bytes:
        """The digest of a column's values: a numpy array or a pandas extension array."""
        pd = sys.modules["pandas"]
        np = sys.modules["numpy"]
        if type(values) is pd.arrays.NumpyExtensionArray:
            values = values.to_numpy()  # a view on the wrapped ndarray
        if isinstance(values, np.ndarray):
            if type(values) is np.ndarray and _buffer_safe(values.dtype):
                return _array_digest(values)
            if values.dtype == object:
                return self.object_values_digest(values)
            return self.pickle_digest(values)
        hasher = xxhash.xxh3_128(b"E")
        hasher.update(self.dtype_digest(values.dtype))
        if isinstance(values, pd.Categorical):
            hasher.update(b"codes" + _array_digest(values.codes))
        elif isinstance(values, (pd.arrays.DatetimeArray, pd.arrays.TimedeltaArray, pd.arrays.PeriodArray)):
            hasher.update(b"i8" + _array_digest(values.asi8))
        elif isinstance(values, (pd.arrays.IntegerArray, pd.arrays.FloatingArray, pd.arrays.BooleanArray)):
            # Values under the mask are arbitrary, so they are zeroed.
            numpy_dtype = values.dtype.numpy_dtype
            mask = np.asarray(values.isna())
            data = values.to_numpy(dtype=numpy_dtype, na_value=numpy_dtype.type(0))
            hasher.update(b"masked" + _array_digest(mask) + _array_digest(data))
        elif isinstance(values, pd.arrays.NumpyExtensionArray):
            # StringArray (pandas' python-storage "str"): an object ndarray.
            hasher.update(b"ndarray" + self.object_values_digest(np.asarray(values)))
        elif (strings := _arrow_strings_digest(values)) is not None:
            hasher.update(b"arrow-strings" + strings)  # pandas 3's default str: over its Arrow buffers
        else:
            # Arrow-backed, interval, sparse and third-party arrays: their
            # values as Python objects, which with the dtype define them.
            hasher.update(b"objects" + self.object_values_digest(np.asarray(values, dtype=object), lasting=False))
        return hasher.digest()

    def dtype_digest(self, dtype: Any) -> bytes:
        """An extension dtype by its defining fields (categories, tz, unit, storage, na_value...).

        Not by pickling it: pandas dtypes are shared instances whose pickled
        state grows a ``_cache`` once a cached property is read, so the digest
        would depend on history. ``_metadata`` is the list of fields pandas
        itself uses for dtype equality and hashing.
        """
        fields = tuple(getattr(dtype, name) for name in getattr(dtype, "_metadata", ()))
        return self.digest((type(dtype), str(dtype), fields))

    def object_values_digest(self, values: Any, *, lasting: bool = True) -> bytes:
        """Object column values: a fast-mode pickle when they are scalars only.

        A ``lasting`` array (one that outlives this call: a column's own
        buffer, not a conversion) of exact immutable builtins is remembered by
        its pointers, so hashing it again while it is unchanged skips the items.
        """
        known = pointers.known_digest(values) if lasting else None
        if known is not None:
            return known
        flat = values.reshape(-1)
        streamed = _atoms_digest(values.shape, flat)
        if streamed is not None:
            digest, fast, kept = streamed
            if fast and lasting:
                pointers.remember(values, digest, kept)
            return digest
        pd = sys.modules["pandas"]
        fast = pd.api.types.infer_dtype(flat, skipna=True) in _SCALAR_KINDS
        exact, kept, parts = fast, [], []
        for start in range(0, len(flat), _CHUNK_ITEMS):
            items = flat[start : start + _CHUNK_ITEMS].tolist()
            if fast:
                part, plain = self.scalars_digest(items)
                exact = exact and plain
                if lasting:
                    kept.append(items)
            else:
                part = self.pickle_digest(items)
            parts.append(part)
        digest = _object_digest(values.shape, fast, parts)
        if exact and lasting:
            pointers.remember(values, digest, kept)
        return digest


def _atoms_digest(shape: tuple[int, ...], flat: Any) -> tuple[bytes, bool, list[list[Any]]] | None:
    """``object_values_digest``'s result in one pass of ``_atoms``, if every item is an exact atom.

    The digest is the one the pickler's route gives (the tests hold them equal),
    with ``infer_dtype``'s verdict read off the kinds met. Returns the digest,
    whether the column is scalars-only, and the lists of its items; None where
    the route doesn't apply (no compiled ``_atoms``, a strided array, an item
    that isn't an atom), for the pickler's route to take.
    """
    if _atoms is None or not flat.flags.c_contiguous:
        return None
    address = flat.__array_interface__["data"][0]
    parts, kept, seen = [], [], 0
    for start in range(0, len(flat), _CHUNK_ITEMS):
        count = min(_CHUNK_ITEMS, len(flat) - start)
        part = xxhash.xxh3_128(b"P")
        result = _atoms.stream(address + start * flat.itemsize, count, part.update)
        if result is None:
            return None
        seen |= result[0]
        kept.append(result[1])
        parts.append(part.digest())
    fast = (seen & _KINDS) in _SCALARS_ONLY
    return _object_digest(shape, fast, parts), fast, kept


def _object_digest(shape: tuple[int, ...], fast: bool, parts: list[bytes]) -> bytes:
    """An object array's digest from its chunks' digests: one definition for both routes, so keys agree."""
    hasher = xxhash.xxh3_128(b"O" + (b"f" if fast else b"g"))
    hasher.update(pickle.dumps(shape, protocol=5))
    for part in parts:
        hasher.update(part)
    return hasher.digest()


def _arrow_string_buffers_digest(array: Any) -> bytes:
    """One Arrow (large_)string array by its values: lengths as int64 offsets from 0, then the UTF-8 bytes.

    Not by its raw buffers: chunking, a slice's offset, the offsets' width and
    the bytes under a null slot are layout, not value.
    """
    np = sys.modules["numpy"]
    hasher = xxhash.xxh3_128(b"A")
    n, nulls = len(array), array.null_count
    hasher.update(pickle.dumps((n, nulls), protocol=5))
    if not n:
        return hasher.digest()
    if nulls:
        import pyarrow.compute as pc

        hasher.update(_array_digest(array.is_null().to_numpy(zero_copy_only=False)))
        array = pc.fill_null(array, "")
    width = np.int64 if array.type.id == sys.modules["pyarrow"].large_string().id else np.int32
    offsets = np.frombuffer(array.buffers()[1], dtype=width)[array.offset : array.offset + n + 1]
    start, end = int(offsets[0]), int(offsets[-1])
    if start or width is not np.int64:
        offsets = offsets.astype(np.int64) - start
    hasher.update(offsets)
    data = array.buffers()[2]
    if data is not None and end > start:
        hasher.update(memoryview(data)[start:end])
    return hasher.digest()


def _arrow_strings_digest(values: Any) -> bytes | None:
    """An Arrow-backed pandas string array, or None if ``values`` is not one."""
    pa = sys.modules.get("pyarrow")
    chunked = getattr(values, "_pa_array", None)
    if pa is None or chunked is None or not isinstance(chunked, pa.ChunkedArray):
        return None
    if not (pa.types.is_string(chunked.type) or pa.types.is_large_string(chunked.type)):
        return None
    array = chunked.chunk(0) if chunked.num_chunks == 1 else chunked.combine_chunks()
    return _arrow_string_buffers_digest(array)


def _buffer_safe(dtype: Any) -> bool:
    """True if an array's buffer is its values (no object pointers, no string arena)."""
    return not dtype.hasobject and dtype.kind in _BUFFER_KINDS


def _array_digest(array: Any) -> bytes:
    known = mapped.unchanged_digest(array)
    if known is not None:
        return known  # an array a hit mapped, none of its pages written since: the manifest's digest
    dtype = array.dtype
    # dtype.str loses field names and types of structured dtypes; descr keeps them.
    dtype_key = dtype.str if dtype.fields is None and dtype.subdtype is None else dtype.descr
    hasher = xxhash.xxh3_128(b"N")
    hasher.update(pickle.dumps((dtype_key, array.shape), protocol=5))
    if array.nbytes:
        _feed_values(hasher, array)
    return hasher.digest()


def _feed_values(hasher: Any, array: Any) -> None:
    """Feed the bytes of ``array``'s values in C order: in place if contiguous.

    The padding between the fields of a structured dtype is not a value:
    nothing reads it, and whoever fills the array leaves it as it was (scikit-learn's
    tree nodes come back from a pickle with other bytes there). It is fed as zeros.
    """
    np = sys.modules["numpy"]
    fields = _field_bytes(array.dtype) if array.dtype.fields is not None else None
    update = hasher.update if fields is None else functools.partial(_update_fields, hasher, fields)
    if array.flags.c_contiguous:
        # A uint8 view: datetime and structured dtypes do not export a buffer.
        update(array.reshape(-1).view(np.uint8))
        return
    if array.nbytes <= _CHUNK_BYTES:
        update(np.ascontiguousarray(array).reshape(-1).view(np.uint8))
        return
    # Bounded copies, in C order, so the stream equals the contiguous copy's.
    row_bytes = array[0].nbytes
    if row_bytes >= _CHUNK_BYTES:
        for row in array:
            _feed_values(hasher, row)
        return
    step = _CHUNK_BYTES // row_bytes
    for start in range(0, array.shape[0], step):
        update(np.ascontiguousarray(array[start : start + step]).reshape(-1).view(np.uint8))


def _update_fields(hasher: Any, fields: Any, data: Any) -> None:
    """Feed ``data`` (the bytes of whole items), its padding bytes zeroed, a bounded copy at a time."""
    items = data.reshape(-1, fields.size)
    step = max(1, _CHUNK_BYTES // fields.size)
    for start in range(0, items.shape[0], step):
        hasher.update(items[start : start + step] & fields)


def _field_bytes(dtype: Any) -> Any:
    """A mask over one item of a structured dtype: 0xFF where a field's bytes are, 0 in padding; None if no padding."""
    np = sys.modules["numpy"]
    mask = np.zeros(dtype.itemsize, dtype=np.uint8)

    def cover(kind: Any, offset: int) -> None:
        if kind.fields is not None:
            for field in kind.fields.values():
                cover(field[0], offset + field[1])
        elif kind.subdtype is not None and kind.subdtype[0].fields is not None:
            base, shape = kind.subdtype
            for index in range(int(np.prod(shape))):
                cover(base, offset + index * base.itemsize)
        else:
            mask[offset : offset + kind.itemsize] = 0xFF

    cover(dtype, 0)
    return None if mask.all() else mask


def _pandas_index_types(pd: Any) -> tuple[type, ...]:
    return (
        pd.Index,
        pd.RangeIndex,
        pd.MultiIndex,
        pd.DatetimeIndex,
        pd.TimedeltaIndex,
        pd.PeriodIndex,
        pd.CategoricalIndex,
        pd.IntervalIndex,
    )
