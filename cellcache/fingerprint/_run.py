"""One ``fingerprint()`` call: the walk over a value, its graph of code nodes, and the pickler hooks.

Routes, fastest first:

- Exact ``str``/``bytes``/``int``/``float``/``bool``/``None``/``complex``:
  hashed directly (no pickler).
- Numpy arrays with a plain dtype and pandas objects: ``values``.
- Everything else: a protocol-5 C pickle stream fed to xxh3 as it is
  written. Out-of-band buffers are hashed in place, never copied. Two hooks
  make the stream deterministic and keyed by value:

  * ``reducer_override`` (the C pickler calls it only for objects that are
    not atoms, dicts, lists, tuples or sets, so the common case costs
    nothing) looks the object's type up in the dispatch table the kinds
    register into (``values``, ``code``, ``modules``): arrays and pandas
    objects become their digests, modules and installed functions and
    classes their name and version, and functions, classes and code defined
    in the notebook or in local modules placeholders: those are nodes of a
    graph, each hashed once by its code, then combined (cycles included) in
    ``_Run.resolve``;
  * ``persistent_id`` (called for every object; in C where the optional
    routine is built) replaces exact sets and frozensets, which the C
    pickler writes in hash order and which bypass ``reducer_override``, by a
    canonical digest.

  Both key sharing: a mutable object met again in the stream is written as a
  back reference to its first occurrence (``_Pickler``), so cycles end
  there, and the pickler's own memo, which would also key the identity of
  immutable parts, is never used. Objects without a kind of their own are
  hashed by their reduce, made deterministic and complete (``objects``).
  A value deeper than the stack is walked again on a deep one (``_deep``).
"""
from __future__ import annotations

import functools
import pickle
import weakref
import sys
from collections.abc import Callable
from types import MappingProxyType, ModuleType
from typing import Any

import xxhash

from cellcache.errors import Unfingerprintable
from cellcache.fingerprint._base import (
    _atom_digest,
    _Buffers,
    _hash,
    _Node,
    _Recorder,
    _ref,
    _Sink,
    _type_name,
    _unfingerprintable,
)
from cellcache.fingerprint.code import Bound, CodeKinds
from cellcache.fingerprint.objects import ObjectKinds, tracked
from cellcache.fingerprint.pointers import _atoms
from cellcache.fingerprint.values import ValueKinds, _array_digest, _buffer_safe


class _Run(ValueKinds, CodeKinds, ObjectKinds):
    """The state of one ``fingerprint`` call.

    Functions, classes and code objects are nodes of a graph (so are sets
    that contain any): a reference to one becomes a placeholder, and its own
    content is hashed later, once, from a work queue. No recursion follows
    references, so cycles (recursive functions, a class and its methods,
    interlinked classes) cost nothing special, and the walk is linear.
    Nodes are found by ``id()``, which is safe within a call because the
    node keeps its object alive; nothing is kept across calls.
    """

    def __init__(self, bound: Bound | None = None) -> None:
        self.bound = bound
        self.nodes: dict[int, _Node] = {}
        self.queue: list[tuple[_Node, Callable[[Any], bytes]]] = []
        self.recorders: list[_Recorder] = []
        # Sets without node references get an inline token: id -> (set, token).
        self.inline_sets: dict[int, tuple[object, tuple[str, bytes]]] = {}
        self.module_memo: dict[str, tuple[str, ...]] = {}
        self.version_memo: dict[str, str | None] = {}
        self.value_memo: dict[int, tuple[object, bytes]] = {}
        self.tracking: dict[type, bool] = {}
        self.dispatch: dict[type, Callable[[Any], Any]] = self._dispatch_table()

    # ---- entry points ---------------------------------------------------

    def root(self, value: object) -> bytes:
        local, edges = self.recorded(self.digest, value)
        while self.queue:
            node, compute = self.queue.pop()
            node.local, node.edges = self.recorded(compute, node.obj)
        if not edges:
            return local
        self.resolve(edges)
        return _hash(b"G", local, *(node.final for node in edges))  # type: ignore[misc]

    def recorded(self, compute: Callable[[Any], bytes], value: object) -> tuple[bytes, list[_Node]]:
        """``compute(value)`` with its node references recorded apart."""
        recorder = _Recorder()
        self.recorders.append(recorder)
        try:
            return compute(value), recorder.edges
        finally:
            self.recorders.pop()

    def digest(self, value: object) -> bytes:
        """The local digest of a value (references to nodes are placeholders)."""
        atom = _atom_digest(value)
        if atom is not None:
            return atom
        np = sys.modules.get("numpy")
        if np is not None and type(value) is np.ndarray and _buffer_safe(value.dtype):
            return _array_digest(value)
        whole = self.pandas_digest(value)
        if whole is not None:
            return whole
        return self.pickle_digest(value)

    def pickle_digest(self, value: object, *, fast: bool = False) -> bytes:
        # Never the pickler's memo: with it, a second occurrence of any object
        # is written as a reference, so the stream would depend on identities
        # that are not part of the value (interned strings, `split()` against
        # a literal). The picklers key the identities that are (``_Pickler``).
        if fast:  # lists of scalars: no sets to canonicalize, nothing mutable inside
            return self.stream_digest(value, _Pickler, b"P")
        return self.stream_digest(value, _SetPickler, b"P")

    def scalars_digest(self, items: list[Any]) -> tuple[bytes, bool]:
        digest, pickler = self.stream(items, _ScalarPickler, b"P")
        return digest, not pickler.hooked  # type: ignore[attr-defined]

    def stream_digest(self, value: object, kind: type[_Pickler], tag: bytes) -> bytes:
        return self.stream(value, kind, tag)[0]

    def stream(self, value: object, kind: type[_Pickler], tag: bytes) -> tuple[bytes, _Pickler]:
        hasher = xxhash.xxh3_128(tag)
        buffers = _Buffers()
        pickler = kind(self, hasher, buffers)
        pickler.fast = True
        try:
            pickler.dump(value)
        except (Unfingerprintable, RecursionError):
            raise  # RecursionError: the caller walks again where the stack is deep enough (_deep)
        except Exception as exc:
            raise _unfingerprintable(value, exc) from exc
        if buffers.hasher is None:
            return hasher.digest(), pickler
        return _hash(b"B", hasher.digest(), buffers.hasher.digest()), pickler

    def part(self, value: object, owner: str, what: str) -> bytes:
        """The digest of a component of ``owner``, naming it if it fails."""
        try:
            return self.digest(value)
        except Unfingerprintable as exc:
            raise Unfingerprintable(f"{owner} {what}: {exc}", type_name=exc.type_name) from exc

    # ---- the graph of nodes -----------------------------------------------

    def node(self, obj: object, tag: bytes, compute: Callable[[Any], bytes]) -> tuple[Any, ...]:
        """A reduce value standing for a node; its content is hashed later, from the queue."""
        node = self.nodes.get(id(obj))
        if node is None:
            node = self.nodes[id(obj)] = _Node(obj, tag)
            self.queue.append((node, compute))
        return _ref(*self.recorders[-1].placeholder(node))

    def resolve(self, roots: list[_Node]) -> None:
        """Give a final digest to every node reachable from ``roots``.

        Strongly connected components (Tarjan, iterative) in dependency
        order: outside a cycle a node's final digest is its local digest and
        its successors' final digests (a Merkle hash). Inside a component of
        m nodes, 2m - 1 rounds of colour refinement: each round rehashes every
        member from the previous round's digests of its successors, set
        elements sorted. Then each member's digest depends on the whole
        component's content and wiring, in the unfolding that code can
        observe, and not on the order in which anything was visited: a node
        cannot tell which member the walk entered by. 2m - 1 rounds separate
        any two components of m nodes that refinement can separate.
        """
        index: dict[int, int] = {}
        low: dict[int, int] = {}
        stack: list[_Node] = []
        on_stack: set[int] = set()
        for start in roots:
            if start.final is not None or id(start) in index:
                continue
            work = [(start, iter(start.successors()))]
            index[id(start)] = low[id(start)] = len(index)
            stack.append(start)
            on_stack.add(id(start))
            while work:
                node, successors = work[-1]
                for successor in successors:
                    if successor.final is not None:
                        continue
                    if id(successor) not in index:
                        index[id(successor)] = low[id(successor)] = len(index)
                        stack.append(successor)
                        on_stack.add(id(successor))
                        work.append((successor, iter(successor.successors())))
                        break
                    if id(successor) in on_stack:
                        low[id(node)] = min(low[id(node)], index[id(successor)])
                else:
                    work.pop()
                    if work:
                        parent = work[-1][0]
                        low[id(parent)] = min(low[id(parent)], low[id(node)])
                    if low[id(node)] == index[id(node)]:
                        members: list[_Node] = []
                        while True:
                            member = stack.pop()
                            on_stack.discard(id(member))
                            members.append(member)
                            if member is node:
                                break
                        self.finalize(members)

    @staticmethod
    def finalize(members: list[_Node]) -> None:
        digests = {id(member): member.local for member in members}

        def current(node: _Node) -> bytes:
            digest = digests.get(id(node))
            return digest if digest is not None else node.final  # type: ignore[return-value]

        for _ in range(2 * len(members) - 1):
            updated = {}
            for member in members:
                parts = [member.tag, member.local, *map(current, member.edges)]
                if member.elements is not None:
                    parts.extend(
                        sorted(
                            _hash(b"E", digest, *map(current, edges)) if edges else digest
                            for digest, edges in member.elements
                        )
                    )
                updated[id(member)] = _hash(*parts)
            digests = updated
        for member in members:
            member.final = digests[id(member)]

    # ---- hooks dispatch ---------------------------------------------------

    def _dispatch_table(self) -> dict[type, Callable[[Any], Any]]:
        table: dict[type, Callable[[Any], Any]] = {
            MappingProxyType: lambda mp: _ref("mappingproxy", self.digest(dict(mp))),
        }
        self.register_code(table)
        self.register_modules(table)
        self.register_values(table)
        self.register_objects(table)
        return table

    def classify(self, cls: type) -> Callable[[Any], Any]:
        """The hook for a type met for the first time in this call."""
        handler: Callable[[Any], Any]
        if issubclass(cls, type):
            handler = self.class_token
        elif issubclass(cls, (set, frozenset)):
            handler = self.set_subclass_ref
        elif issubclass(cls, ModuleType):
            handler = self.module_value_token
        elif _is_ndarray_subclass(cls):
            handler = self.ndarray_subclass_token
        elif issubclass(cls, weakref.ref):
            handler = self.weakref_token
        else:
            handler = self.reduce
        self.dispatch[cls] = handler
        return handler

    # ---- sets ------------------------------------------------------------

    def set_token(self, value: set[Any] | frozenset[Any]) -> tuple[str, Any]:
        """A set's token: inline if no element refers to a node, else a node placeholder.

        Canonical order: sorted element digests (iteration order depends on
        PYTHONHASHSEED and on insertion history).
        """
        key = id(value)
        inline = self.inline_sets.get(key)
        if inline is not None:
            return inline[1]
        node = self.nodes.get(key)
        if node is not None:
            return self.recorders[-1].placeholder(node)
        # Registered first, so that an element leading back to this set
        # refers to it instead of recursing.
        node = self.nodes[key] = _Node(value, b"set")
        owner = _type_name(value)
        node.local, node.edges = self.recorded(self._set_kind, value)
        node.elements = [self.recorded(lambda item: self.part(item, owner, "element"), item) for item in value]
        if node.edges or any(edges for _, edges in node.elements):
            return self.recorders[-1].placeholder(node)
        del self.nodes[key]
        token = ("set", _hash(b"C", node.local, *sorted(digest for digest, _ in node.elements)))
        self.inline_sets[key] = (value, token)
        return token

    def set_subclass_ref(self, value: set[Any] | frozenset[Any]) -> tuple[Any, ...]:
        return _ref(*self.set_token(value))

    def _set_kind(self, value: set[Any] | frozenset[Any]) -> bytes:
        if type(value) is set:
            return _hash(b"s")
        if type(value) is frozenset:
            return _hash(b"f")
        attributes = self.part(getattr(value, "__dict__", None), _type_name(value), "attributes")
        return _hash(b"x", self.digest(type(value)), attributes)


def _is_ndarray_subclass(cls: type) -> bool:
    np = sys.modules.get("numpy")
    return np is not None and issubclass(cls, np.ndarray) and cls is not np.ndarray


class _Pickler(pickle.Pickler):
    """The C pickler, writing into a hasher, with the run's hooks for non-builtin objects.

    It keys which mutable parts of the value are the same object. The first
    time a mutable object is met it is written in full and numbered; after
    that it is written as ``("shared", number)``. So ``[s, s]`` and ``[[1], [1]]``
    differ (code that appends through one sees it in the other), a cycle is
    a back reference instead of a recursion, and immutable parts (strings,
    tuples, numbers, frozensets) are written in full every time, whatever
    their identity. Numpy arrays that overlap in memory are keyed as views
    of one another (``array_relation``).
    """

    def __init__(self, run: _Run, hasher: Any, buffers: _Buffers) -> None:
        self._run = run
        # id -> number, of the mutable objects met. The value holds them, and
        # ``_alive`` holds what reduces build (the only other place they come
        # from), so no id is reused while the stream lasts.
        self._seen: dict[int, int] = {}
        self._alive: list[object] = []
        # For each buffer owner, the byte spans of the arrays met that lie in it.
        self._spans: dict[int, tuple[object, list[tuple[int, int, int, int]]]] = {}
        self.hook()
        super().__init__(_Sink(hasher.update), protocol=5, buffer_callback=buffers)

    def hook(self) -> None:
        """Set hooks the C pickler looks up when it is initialized."""

    def reducer_override(self, obj: object) -> object:
        run = self._run
        kind = type(obj)
        try:
            handler = run.dispatch[kind]
        except KeyError:
            handler = run.classify(kind)
        track = run.tracking.get(kind)
        if track is None:
            track = run.tracking[kind] = tracked(kind)
        if track:
            seen = self._seen
            number = len(seen)
            first = seen.setdefault(id(obj), number)
            if first != number:
                return _ref("shared", first)
            if hasattr(obj, "__array_interface__") and _is_ndarray(obj):
                reduced = self.array_relation(obj, number, handler(obj))
                self._alive.append(reduced)
                return reduced
        reduced = handler(obj)
        self._alive.append(reduced)
        return reduced

    def array_relation(self, array: Any, number: int, token: object) -> object:
        """An array's token, with where it lies in an earlier array's memory if the two overlap.

        Writing through one changes the other, so ``[a, a[:]]`` and
        ``[a, a.copy()]`` are different values. Arrays that share a buffer
        without overlapping (a frame's columns) are independent, and keyed so.
        """
        lo, hi, address = _byte_bounds(array)
        if hi == lo:
            return token
        owner = array
        while _is_ndarray(owner.base):
            owner = owner.base
        if owner.base is not None:
            owner = owner.base  # bytes, a memory map, a foreign buffer
        spans = self._spans.setdefault(id(owner), (owner, []))[1]
        relation = next(
            (
                (other, address - other_address)
                for other_lo, other_hi, other, other_address in spans
                if lo < other_hi and other_lo < hi
            ),
            None,
        )
        spans.append((lo, hi, number, address))
        if relation is None:
            return token
        return _ref("view", relation[0], relation[1], array.strides, token)


def _is_ndarray(obj: object) -> bool:
    np = sys.modules.get("numpy")
    return np is not None and isinstance(obj, np.ndarray)


def _byte_bounds(array: Any) -> tuple[int, int, int]:
    """The lowest and one-past-highest byte address an array's elements occupy, and its data address."""
    address = array.__array_interface__["data"][0]
    if array.size == 0:
        return address, address, address
    lo = hi = address
    for extent, stride in zip(array.shape, array.strides):
        reach = (extent - 1) * stride
        if reach < 0:
            lo += reach
        else:
            hi += reach
    return lo, hi + array.itemsize, address


class _ScalarPickler(_Pickler):
    """The object-column pickler: its stream is ``_Pickler``'s, and it notes whether any item needed a hook.

    The C pickler skips ``reducer_override`` only for exact builtins, so an
    unhooked stream of a scalars-only column proves every item immutable.
    """

    hooked = False

    def reducer_override(self, obj: object) -> object:
        self.hooked = True
        return super().reducer_override(obj)


class _SetPickler(_Pickler):
    """The general-path pickler: also canonicalizes exact sets and frozensets."""

    def hook(self) -> None:
        if _atoms is not None and hasattr(_atoms, "persistent_id"):
            # The same function in C: no Python frame for each object. Set on
            # the instance before the C pickler looks persistent_id up.
            self.persistent_id = functools.partial(_atoms.persistent_id, self._seen, self._run.set_token)

    def persistent_id(self, obj: object) -> object:  # type: ignore[override]
        # Called for every object, so kept to the bare minimum (see the
        # benchmark); _atoms.persistent_id does the same in C. Set
        # subclasses and other mutable objects go through reducer_override.
        kind = type(obj)
        if kind is dict or kind is list or kind is set or kind is bytearray:
            seen = self._seen
            number = len(seen)
            if seen.setdefault(id(obj), number) != number:
                return ("shared", seen[id(obj)])
            if kind is set:
                return self._run.set_token(obj)  # type: ignore[arg-type]
            return None
        if kind is frozenset:
            return self._run.set_token(obj)  # type: ignore[arg-type]
        return None
