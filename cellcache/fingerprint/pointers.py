"""Object columns remembered by the pointers they hold: an unchanged one is not pickled again.

An object array's buffer is a row of pointers. When every item it points to
is an exact ``str``, ``bytes``, ``int``, ``float``, ``bool`` or ``None``, no
item can change in place, so the array's value is fixed by its pointers,
provided an address can't come to stand for another object. The memo holds a
reference to every item it saw, so none of them can be freed, and no address
reused, while its entry lives. A later call on an array with the same owner,
address, shape and strides whose pointer row hashes the same (8 bytes per
item, about a tenth of what pickling reads) gets the digest without touching
the items. Any write to the array (an item set, a sort, a fill) changes the
row, and the items are hashed again.

An entry lives as long as the array that owns the buffer (a weak reference
drops it) and the memo is bounded, least recently used first, by the items
it keeps alive: replaced items stay alive only until their entry goes.
The lists that keep them are taken out of the cycle collector: only the
memo holds them, so they can't be in a cycle, and a collector pass would
otherwise touch every item of every list, about 15 ms per million.

A hit's restore seeds the memo too (``watch``): an object array whose
stream named no class gets an entry with no digest of its own, kept by the
very list numpy filled it from. A restored frame or array then takes its
manifest's digest (``mapped``) while ``unchanged_atoms`` holds, which costs
a pointer hash and, once, a check of the items' kinds.
"""
from __future__ import annotations

import ctypes
import os
import sys
import threading
import weakref
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Any

import xxhash

try:
    from cellcache.fingerprint import _atoms
except ImportError:  # not compiled here: pandas' and Python's checks, same verdicts, slower
    _atoms = None  # type: ignore[assignment]

# Below this many items pickling is cheap enough that nothing is remembered.
MIN_ITEMS = 1 << 16
# Items kept alive across all entries (8 bytes of list per item).
MAX_ITEMS = 1 << 24

_CPYTHON = sys.implementation.name == "cpython"
if _CPYTHON:
    # What CPython does by itself for tuples and dicts of atoms, done for the lists that keep items.
    # pythonapi is a PyDLL: the call keeps the GIL, as the C API requires.
    _untrack = ctypes.pythonapi.PyObject_GC_UnTrack
    _untrack.argtypes, _untrack.restype = [ctypes.py_object], None

_Key = tuple[int, int, tuple[int, ...], tuple[int, ...]]

# What infer_dtype(skipna=True) says of items that are all atoms, given that none is of a class a
# stream had to name: str, bytes, int, float, bool, None. Containers and arrays are "mixed".
ATOM_KINDS = frozenset({"string", "bytes", "integer", "floating", "mixed-integer-float", "boolean", "empty"})
_ATOM_TYPES = frozenset({str, bytes, int, float, bool, type(None)})


@dataclass(frozen=True)
class _Entry:
    owner: weakref.ReferenceType
    pointers: bytes
    digest: bytes | None  # None for an array a hit restored (``watch``), whose digest is its manifest's
    keep: tuple[list[Any], ...]  # the items, so no address in ``pointers`` can be reused
    items: int
    atoms: bool | None = None  # every item an exact immutable builtin: None until asked, for a watched array


_entries: OrderedDict[_Key, _Entry] = OrderedDict()
_kept = 0
# Re-entrant: a collection that runs inside the lock can free an owner, whose callback takes the lock.
_lock = threading.RLock()


def _locate(values: Any) -> tuple[_Key, Any] | None:
    """``values``' key and the array that owns its buffer, or None if it can't be remembered."""
    np = sys.modules["numpy"]
    if type(values) is not np.ndarray or values.dtype != object or values.size < MIN_ITEMS:
        return None
    if not values.flags.c_contiguous:
        return None
    owner = values
    while isinstance(owner.base, np.ndarray):
        owner = owner.base
    if owner.base is not None:
        return None  # memory numpy doesn't own: nothing to watch
    return (id(owner), values.ctypes.data, values.shape, values.strides), owner


def _pointers(values: Any) -> bytes:
    row = (ctypes.c_char * values.nbytes).from_address(values.ctypes.data)
    return xxhash.xxh3_128_digest(row)


def _entry(values: Any) -> tuple[_Key, _Entry] | None:
    """``values``' key and entry, if it has one whose owner is still its buffer's owner."""
    found = _locate(values)
    if found is None:
        return None
    key, owner = found
    with _lock:
        entry = _entries.get(key)
    if entry is None or entry.owner() is not owner:
        return None
    return key, entry


def _current(values: Any) -> tuple[_Key, _Entry] | None:
    """``values``' key and entry, if its pointer row is still the entry's; the entry becomes most recent."""
    found = _entry(values)
    if found is None or _pointers(values) != found[1].pointers:
        return None
    key = found[0]
    with _lock:
        if key in _entries:
            _entries.move_to_end(key)
    return found


def known_digest(values: Any) -> bytes | None:
    """The digest remembered for ``values`` if it provably holds the same items; else None."""
    current = _current(values)
    return None if current is None else current[1].digest


def remember(values: Any, digest: bytes, keep: list[list[Any]]) -> None:
    """Note ``digest`` for ``values``, whose items (all in ``keep``, which the memo then owns) are exact immutable builtins."""
    _add(values, digest, keep, atoms=True)


def watch(values: Any, items: list[Any]) -> None:
    """Watch an object array a hit just built from ``items``, which the memo then owns.

    The unpickler calls this only when the array's stream named no class but
    numpy's own, so every item is an exact builtin (containers included) made
    by pickle's opcodes. Whether all are atoms is asked only if ``unchanged_atoms`` is.
    """
    if len(items) == getattr(values, "size", -1):
        _add(values, None, [items], atoms=None)


def watched(values: Any) -> bool:
    """True if ``values`` has an entry (remembered or watched): whether it still holds is ``unchanged_atoms``'s to say."""
    return _entry(values) is not None


def unchanged_atoms(values: Any) -> bool:
    """True only if ``values`` holds the very items it held when its entry was made, all exact immutable builtins.

    Such an array is the value a hit restored (or a fingerprint hashed),
    unchanged. For a watched array the items' kinds are checked the first
    time it is asked (each item's type, by ``_atoms`` or else by ``infer_dtype``
    and, if it says "mixed", Python): the pointer row proves the items the same
    since, and an atom can't change in place.
    """
    current = _current(values)
    if current is None:
        return False
    key, entry = current
    if entry.atoms is None:
        atoms = _all_atoms(values.reshape(-1))
        with _lock:
            if _entries.get(key) is entry:
                _entries[key] = replace(entry, atoms=atoms)
        return atoms
    return entry.atoms


def _all_atoms(flat: Any) -> bool:
    if _atoms is not None and flat.flags.c_contiguous:
        return _atoms.exact(flat.__array_interface__["data"][0], len(flat))
    pd = sys.modules.get("pandas")
    if pd is None:
        return False  # without the compiled check, the kinds are pandas' to tell
    kind = pd.api.types.infer_dtype(flat, skipna=True)
    # "mixed" may be atoms of several kinds (str and int), or hide a container: each item's type says.
    return kind in ATOM_KINDS or (kind.startswith("mixed") and set(map(type, flat)) <= _ATOM_TYPES)


def _add(values: Any, digest: bytes | None, keep: list[list[Any]], atoms: bool | None) -> None:
    global _kept
    found = _locate(values) if _CPYTHON else None
    if found is None:
        return
    key, owner = found
    items = sum(map(len, keep))
    if items > MAX_ITEMS:
        return
    for part in keep:
        # Safe even with containers among a watched array's items: a list only this entry holds
        # can't be part of a cycle, and the items it holds stay tracked themselves.
        _untrack(part)
    entry = _Entry(weakref.ref(owner, lambda _, key=key: _drop(key)), _pointers(values), digest, tuple(keep), items, atoms)
    with _lock:
        old = _entries.pop(key, None)
        if old is not None:
            _kept -= old.items
        _entries[key] = entry
        _kept += items
        while _kept > MAX_ITEMS:
            _, evicted = _entries.popitem(last=False)
            _kept -= evicted.items


def _drop(key: _Key) -> None:
    global _kept
    with _lock:
        entry = _entries.pop(key, None)
        if entry is not None:
            _kept -= entry.items


def _after_fork_in_child() -> None:
    global _lock
    # A thread that held the lock at the fork doesn't exist in the child (a write-behind snapshot).
    _lock = threading.RLock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def forget() -> None:
    global _kept
    with _lock:
        _entries.clear()
        _kept = 0
