"""The primitives every kind of fingerprint is built from.

The hash helpers, the tokens that stand in a hashed pickle stream for a
value replaced by its digest, the graph nodes of code and sets, and the sink
that feeds a pickler into a hasher. Everything above (``values``, ``code``,
``modules`` and the dispatcher ``_run``) imports from here, never the other
way round.
"""
from __future__ import annotations

import re
import struct
import pickle
from collections.abc import Callable, Mapping
from typing import Any

import xxhash

from cellcache.errors import Unfingerprintable

# (namespace, names): the globals of that namespace that a caller binds before it can call any
# function of it, so a function reads the caller's value of them, never the one there now.
Bound = tuple[Mapping[str, Any], frozenset[str]]

DIGEST_SIZE = 16

_CANNOT_PICKLE = re.compile(r"cannot pickle '([^']+)' object")


def _token(*args: object) -> None:
    """Stands in a hashed pickle stream for a value replaced by its digest.

    It is pickled by reference (as ``cellcache.fingerprint._token``); the
    streams are only hashed, so it is never called.
    """
    raise TypeError("cellcache fingerprint streams are hashed, never unpickled")


# Pickled by reference under the package's name, as before the split: the
# name is in every hashed stream, so moving it would change every key.
_token.__module__ = "cellcache.fingerprint"


def _ref(*token: object) -> tuple[Any, ...]:
    """A reduce value that pickles as ``_token(*token)``."""
    return (_token, token)




def _hash(*parts: bytes) -> bytes:
    return xxhash.xxh3_128(b"".join(parts)).digest()


def _str_digest(text: str) -> bytes:
    return xxhash.xxh3_128(b"as" + text.encode("utf-8", "surrogatepass")).digest()


def _atom_digest(value: object) -> bytes | None:
    kind = type(value)
    if kind is str:
        return _str_digest(value)  # type: ignore[arg-type]
    if kind is int:
        size = (value.bit_length() + 8) // 8  # type: ignore[attr-defined]
        return xxhash.xxh3_128(b"ai" + value.to_bytes(size, "little", signed=True)).digest()  # type: ignore[attr-defined]
    if kind is float:
        return xxhash.xxh3_128(b"af" + struct.pack("<d", value)).digest()
    if kind is bool:
        return xxhash.xxh3_128(b"aT" if value else b"aF").digest()
    if value is None:
        return xxhash.xxh3_128(b"aN").digest()
    if kind is bytes:
        hasher = xxhash.xxh3_128(b"ab")
        hasher.update(value)  # type: ignore[arg-type]
        return hasher.digest()
    if kind is complex:
        return xxhash.xxh3_128(b"ac" + struct.pack("<dd", value.real, value.imag)).digest()  # type: ignore[attr-defined]
    return None



def _type_name(value: object) -> str:
    kind = type(value)
    module = kind.__module__
    return kind.__qualname__ if module == "builtins" else f"{module}.{kind.__qualname__}"


def _unfingerprintable(value: object, exc: BaseException) -> Unfingerprintable:
    outer = _type_name(value)
    match = _CANNOT_PICKLE.search(str(exc))
    inner = match.group(1) if match else outer
    where = "" if inner == outer else f" (inside a {outer})"
    return Unfingerprintable(f"cannot fingerprint a {inner} value{where}: {exc}", type_name=inner)



class _Node:
    """A function, class, code object or set that refers to other such objects.

    ``local`` is the digest of its own content, in which each reference to
    another node is a placeholder numbered by first appearance (``edges``
    lists the nodes in that order). It does not depend on where the walk
    came from, so it is computed once per call; cycles only exist between
    nodes and are resolved afterwards, in ``_Run.resolve``.
    """

    __slots__ = ("obj", "tag", "local", "edges", "elements", "final")

    def __init__(self, obj: object, tag: bytes) -> None:
        self.obj = obj  # kept alive: nodes are found by id() during the call
        self.tag = tag
        self.local = b""
        self.edges: list[_Node] = []
        # Sets only: (digest, edges) per element, in no particular order.
        self.elements: list[tuple[bytes, list[_Node]]] | None = None
        self.final: bytes | None = None

    def successors(self) -> list[_Node]:
        if self.elements is None:
            return self.edges
        return self.edges + [node for _, edges in self.elements for node in edges]


class _Recorder:
    """The nodes referred to while one node's (or the root value's) local digest is computed."""

    __slots__ = ("edges", "index")

    def __init__(self) -> None:
        self.edges: list[_Node] = []
        self.index: dict[int, int] = {}

    def placeholder(self, node: _Node) -> tuple[str, int]:
        position = self.index.get(id(node))
        if position is None:
            position = self.index[id(node)] = len(self.edges)
            self.edges.append(node)
        return ("node", position)



class _Sink:
    """A file-like whose ``write`` is the hasher's C ``update``: no Python call per write."""

    __slots__ = ("write",)

    def __init__(self, write: Callable[[bytes], None]) -> None:
        self.write = write


class _Buffers:
    """``buffer_callback``: hashes out-of-band buffers in place.

    They go to a separate hasher, length-prefixed: the pickler may still hold
    the preceding opcodes in its frame when the callback runs, so the two
    streams are combined at the end rather than interleaved.
    """

    __slots__ = ("hasher",)

    def __init__(self) -> None:
        self.hasher: Any = None

    def __call__(self, buffer: pickle.PickleBuffer) -> None:
        if self.hasher is None:
            self.hasher = xxhash.xxh3_128()
        with buffer.raw() as raw:
            self.hasher.update(raw.nbytes.to_bytes(8, "little"))
            self.hasher.update(raw)
        # None (a false value) keeps the buffer out of band: no copy.



class Kinds:
    """What the kinds of values need from the walk that drives them (``_run._Run``).

    The kinds (``values.ValueKinds``, ``code.CodeKinds``,
    ``modules.ModuleKinds``) are mixins of the walk: they call back into it
    for the values they contain.
    """

    def digest(self, value: object) -> bytes:
        raise NotImplementedError

    def pickle_digest(self, value: object, *, fast: bool = False) -> bytes:
        raise NotImplementedError

    def scalars_digest(self, items: list[Any]) -> tuple[bytes, bool]:
        """``pickle_digest(items, fast=True)``, and whether every item was an exact builtin."""
        raise NotImplementedError

    def part(self, value: object, owner: str, what: str) -> bytes:
        raise NotImplementedError

    def node(self, obj: object, tag: bytes, compute: Callable[[Any], bytes]) -> tuple[Any, ...]:
        raise NotImplementedError

    def reduce(self, obj: object) -> object:
        raise NotImplementedError
