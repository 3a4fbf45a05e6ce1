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

Any doubt answers "don't know", and the caller hashes: another platform, an
unreadable pagemap, a page written (even if written back to the same bytes),
swapped out or migrated, an array that is not the object the hit produced,
or a view cellcache can't trace to its mapping. A wrong "unchanged" is
impossible by construction; blobs are never written in place, so the file
under the mapping doesn't change either.
"""
from __future__ import annotations

import mmap
import os
import sys
import weakref
from dataclasses import dataclass
from typing import Any, Mapping

PAGE = mmap.PAGESIZE
_PRESENT = 1 << 63
_SWAPPED = 1 << 62
_FILE = 1 << 61


@dataclass(frozen=True)
class _Mapped:
    ref: weakref.ReferenceType
    digest: bytes
    layout: tuple[Any, ...]  # shape, strides, dtype, data pointer: what a value-preserving page check can't see


_known: dict[int, _Mapped] = {}
_pagemap_fd: int | None = None
_available = sys.platform.startswith("linux")


def _layout(array: Any) -> tuple[Any, ...]:
    return (array.shape, array.strides, array.dtype, array.ctypes.data)


def remember(values: Mapping[str, Any], digests: Mapping[str, str] | None) -> None:
    """After a hit: note the fingerprints of the restored arrays that are whole, contiguous maps of their blob."""
    if not _available or not digests:
        return
    np = sys.modules.get("numpy")
    if np is None:
        return
    from cellcache.store.format import MAP_THRESHOLD, mapping_of

    for name, value in values.items():
        digest = digests.get(name)
        if digest is None or type(value) is not np.ndarray or value.nbytes < MAP_THRESHOLD or not value.flags.c_contiguous:
            continue
        region = mapping_of(value)
        if region is None:
            continue
        key = id(value)
        _known[key] = _Mapped(weakref.ref(value, lambda _, key=key: _known.pop(key, None)), bytes.fromhex(digest), _layout(value))


def unchanged_digest(array: Any) -> bytes | None:
    """The recorded fingerprint of ``array`` if it provably still holds its blob's bytes; else None."""
    known = _known.get(id(array))
    if known is None or known.ref() is not array:
        return None
    try:
        if _layout(array) != known.layout or not pages_unwritten(array.ctypes.data, array.nbytes):
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
