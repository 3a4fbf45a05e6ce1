"""Don't re-hash what cellcache mapped itself: unwritten copy-on-write pages are the blob's.

A hit restores a large array as a private mapping of its blob, whose bytes
were checked against the blob's digest. Until a page of that mapping is
written it is still the file's page; the first write makes it an anonymous
private copy. Linux tells which is which, per page, in ``/proc/self/pagemap``
(bit 61, "file-page or shared-anon"). So when the next cell reads the same
array object, with the same shape, strides, dtype and data pointer, and no
page of its data has been written, its fingerprint is the one the manifest
recorded when the entry was made: reading 2 MB of flags replaces hashing
1 GiB of data.

An object array a hit built is in no mapping; it is proven unchanged by
its row of pointers instead, while the items it was built from are kept
alive and are all exact immutable builtins (``fingerprint.pointers``).

Any doubt answers "don't know", and the caller hashes: another platform, an
unreadable pagemap, a page written (even if written back to the same bytes),
swapped out or migrated, an array that is not the object the hit produced,
or a view cellcache can't trace to its mapping. A wrong "unchanged" is
impossible by construction; blobs are never written in place, so the file
under the mapping doesn't change either.
"""
from __future__ import annotations

import ctypes
import mmap
import os
import sys
import weakref
from dataclasses import dataclass
from typing import Any, Mapping

import xxhash

# Arrays and Arrow buffers at least this big are page aligned in the blob and restored mapped.
MAP_THRESHOLD = 1 << 20
PAGE = mmap.PAGESIZE
_PRESENT = 1 << 63
_SWAPPED = 1 << 62
_FILE = 1 << 61


@dataclass(frozen=True)
class _Mapped:
    ref: weakref.ReferenceType
    digest: bytes
    layout: tuple[Any, ...]  # what a page check can't see: shape, strides, dtype, pointers, labels
    spans: tuple[tuple[int, int], ...]  # (address, length) of the mapped bytes the value's content is
    keep: tuple[Any, ...] = ()  # the parts whose ids are in the layout, kept alive so no id is reused
    objects: tuple[Any, ...] = ()  # object arrays, proven unchanged by their pointers instead of their pages


_known: dict[int, _Mapped] = {}
_pagemap_fd: int | None = None
_available = sys.platform.startswith("linux")

libc: Any = None
if sys.platform.startswith("linux"):
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mmap.restype = ctypes.c_void_p
        libc.mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long)
        libc.munmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
        libc.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
        libc.statfs.argtypes = (ctypes.c_char_p, ctypes.c_void_p)
    except (OSError, AttributeError):  # pragma: no cover - a libc without these: read instead
        libc = None

# Every mapping a restore made, by start address: only these hold a blob's checked bytes.
_MAPPINGS: weakref.WeakValueDictionary[int, Any] = weakref.WeakValueDictionary()


def map_private(fd: int, size: int) -> Any:
    """A copy-on-write mapping of the whole file, unmapped when the last view of it goes.

    Through libc rather than the mmap module: an ``mmap.mmap`` keeps a duplicate of
    the file descriptor open as long as it lives, so a notebook holding many restored
    arrays would run out of descriptors. The mapping itself needs no descriptor.
    """
    address = libc.mmap(None, size, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_PRIVATE, fd, 0)
    if address in (None, ctypes.c_void_p(-1).value):
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    region = (ctypes.c_ubyte * size).from_address(address)
    weakref.finalize(region, libc.munmap, address, size)
    _MAPPINGS[address] = region
    return region


def mapping_of(array: Any) -> tuple[int, int] | None:
    """(start, end) addresses of the cellcache mapping an array's data lies in, or None."""
    base = array
    while base is not None and not isinstance(base, ctypes.Array):
        base = getattr(base, "base", None)
    if base is None:
        return None
    start = ctypes.addressof(base)
    if _MAPPINGS.get(start) is not base:
        return None
    return start, start + ctypes.sizeof(base)


def drop_pages(region: Any) -> None:
    # The hash faulted every page in as our resident memory; the page cache keeps them, we don't
    # need to. Untouched private pages are the file's, so dropping them loses nothing.
    libc.madvise(ctypes.addressof(region), ctypes.sizeof(region), mmap.MADV_DONTNEED)


def _in_mapping(address: int, length: int) -> bool:
    return any(start <= address and address + length <= start + ctypes.sizeof(region) for start, region in list(_MAPPINGS.items()))


# What a value is checked by: its layout, the spans whose pages must be unwritten, the parts
# kept alive, and the object arrays whose pointers must be unchanged.
_Found = tuple[tuple[Any, ...], tuple[tuple[int, int], ...], tuple[Any, ...], tuple[Any, ...]]


def _array_layout(array: Any) -> _Found | None:
    from cellcache.fingerprint import pointers

    if not array.flags.c_contiguous:
        return None
    layout = (array.shape, array.strides, array.dtype, array.ctypes.data)
    if array.dtype.hasobject:
        return (layout, (), (), (array,)) if pointers.watched(array) else None
    if array.nbytes < MAP_THRESHOLD or mapping_of(array) is None:
        return None
    return layout, ((array.ctypes.data, array.nbytes),), (), ()


def _frame_layout(frame: Any) -> _Found | None:
    """A DataFrame whose every column lies in a cellcache mapping (or in immutable bytes), by its layout.

    Only the plain case: a RangeIndex, no attrs, numeric numpy blocks, datetime
    and timedelta blocks, Arrow string blocks, and object blocks a hit built
    (``pointers.watch``). The labels are compared by value (an Index's name can
    be set in place); the blocks by identity, pointers and shapes, their bytes
    by their pages, and an object block's items by its row of pointers.
    """
    pd, np = sys.modules["pandas"], sys.modules["numpy"]
    index, columns = frame.index, frame.columns
    if frame.attrs or type(index) is not pd.RangeIndex:
        return None
    mgr = frame._mgr
    blocks: list[Any] = []
    spans: list[tuple[int, int]] = []
    keep: list[Any] = []
    objects: list[Any] = []
    from cellcache.fingerprint import pointers

    for block in mgr.blocks:
        values = block.values
        if type(values) is np.ndarray:
            if values.dtype.hasobject:
                if not pointers.watched(values):
                    return None
                objects.append(values)
            elif values.flags.c_contiguous and mapping_of(values) is not None:
                spans.append((values.ctypes.data, values.nbytes))
            else:
                return None
            blocks.append((id(values), values.ctypes.data, values.shape, values.strides, values.dtype.str))
            keep.append(values)
        elif type(values) in (pd.arrays.DatetimeArray, pd.arrays.TimedeltaArray):
            data = values._ndarray  # the M8/m8 ndarray the array wraps; its dtype (unit, tz) is compared apart
            if not data.flags.c_contiguous or mapping_of(data) is None:
                return None
            blocks.append((id(values), id(data), data.ctypes.data, data.shape, data.strides, str(values.dtype)))
            spans.append((data.ctypes.data, data.nbytes))
            keep.extend((values, data))
        elif type(values).__name__ == "ArrowStringArray":
            chunked = values._pa_array
            parts: list[Any] = [id(values), id(chunked), str(values.dtype), str(chunked.type)]
            for chunk in chunked.chunks:
                parts.append((chunk.offset, len(chunk), chunk.null_count))
                for buffer in chunk.buffers():
                    if buffer is None:
                        parts.append(None)
                        continue
                    if _in_mapping(buffer.address, buffer.size):
                        spans.append((buffer.address, buffer.size))
                    elif buffer.is_mutable and buffer.size < MAP_THRESHOLD:
                        # A small buffer that was writable comes back as a writable bytearray (whether a buffer is
                        # read-only is in the digest), outside any mapping: its bytes are part of the layout.
                        parts.append((buffer.address, buffer.size, xxhash.xxh3_128_digest(buffer)))
                        continue
                    elif buffer.is_mutable:
                        return None  # memory cellcache can't watch
                    parts.append((buffer.address, buffer.size))
            blocks.append(tuple(parts))
            keep.extend((values, chunked))
        else:
            return None
    layout = (
        tuple(columns.tolist()), columns.name, str(columns.dtype), type(columns),
        index.start, index.stop, index.step, index.name,
        tuple(blocks), mgr.blknos.tobytes(), mgr.blklocs.tobytes(),
    )
    return layout, tuple(spans), tuple(keep), tuple(objects)


def _layout(value: Any) -> _Found | None:
    np, pd = sys.modules.get("numpy"), sys.modules.get("pandas")
    try:
        if np is not None and type(value) is np.ndarray:
            return _array_layout(value)
        if pd is not None and type(value) is pd.DataFrame:
            return _frame_layout(value)
    except Exception:  # noqa: BLE001 - pandas internals moved: no shortcut, the value is hashed
        return None
    return None


def remember(values: Mapping[str, Any], digests: Mapping[str, str] | None) -> None:
    """After a hit: note the fingerprints of the restored arrays and frames whose bytes are maps of their blob."""
    if not _available or not digests:
        return
    for name, value in values.items():
        digest = digests.get(name)
        if digest is None:
            continue
        found = _layout(value)
        if found is None:
            continue
        layout, spans, keep, objects = found
        key = id(value)
        _known[key] = _Mapped(
            weakref.ref(value, lambda _, key=key: _known.pop(key, None)), bytes.fromhex(digest), layout, spans, keep, objects
        )


def unchanged_digest(value: Any) -> bytes | None:
    """The recorded fingerprint of ``value`` if it provably still holds its blob's bytes; else None."""
    known = _known.get(id(value))
    if known is None or known.ref() is not value:
        return None
    try:
        found = _layout(value)
        if found is None or found[0] != known.layout:
            return None
        if not all(pages_unwritten(address, length) for address, length in known.spans):
            return None
        from cellcache.fingerprint import pointers

        if not all(pointers.unchanged_atoms(values) for values in known.objects):
            return None
    except (OSError, ValueError):
        return None
    return known.digest


def pages_unwritten(address: int, length: int) -> bool:
    """True only if no page of [address, address + length) has been written since it was mapped from its file."""
    global _pagemap_fd, _available
    if not _available or length <= 0:
        return False
    if _pagemap_fd is None:
        try:
            _pagemap_fd = os.open("/proc/self/pagemap", os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except OSError:
            _available = False
            return False
    import numpy as np

    first, last = address // PAGE, (address + length - 1) // PAGE
    count = last - first + 1
    raw = os.pread(_pagemap_fd, count * 8, first * 8)
    if len(raw) != count * 8:
        return False
    entries = np.frombuffer(raw, dtype=np.uint64)
    present = (entries & np.uint64(_PRESENT)) != 0
    # A present page must still be the file's; an absent one must never have become anonymous
    # (an anonymous page that was written and then swapped or migrated shows the swap bit).
    file_backed = (entries & np.uint64(_FILE)) != 0
    swapped = (entries & np.uint64(_SWAPPED)) != 0
    return bool(np.all(np.where(present, file_backed, ~swapped)))


def forget() -> None:
    _known.clear()
