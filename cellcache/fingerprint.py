"""Deterministic 128-bit fingerprints of Python values, for cache keys.

``fingerprint(value)`` is pure and deterministic across processes and
``PYTHONHASHSEED`` values, and type-tagged: every hash input starts with a
tag naming how the rest was produced, so values of different kinds cannot
produce the same input.

Routes, fastest first:

- Exact ``str``/``bytes``/``int``/``float``/``bool``/``None``/``complex``:
  hashed directly (no pickler).
- Numpy arrays with a plain dtype: dtype, shape and the bytes of the values
  they show, fed to xxh3 in place when C-contiguous, in bounded chunks
  otherwise.
- pandas DataFrame/Series/Index: labels, index, dtypes, and each column
  through the array route, or for object columns a fast-mode pickle when
  ``infer_dtype`` proves they hold only scalars.
- Everything else: a protocol-5 C pickle stream fed to xxh3 as it is
  written. Out-of-band buffers are hashed in place, never copied. Two hooks
  make the stream deterministic and keyed by value:

  * ``reducer_override`` (the C pickler calls it only for objects that are
    not atoms, dicts, lists, tuples or sets, so the common case costs
    nothing) replaces arrays and pandas objects by their digests, modules
    and installed functions and classes by name and version, and
    functions, classes and code defined in the notebook or in local modules
    by placeholders: those are nodes of a graph, each hashed once by its
    code, then combined (cycles included) in ``_Run.resolve``;
  * ``persistent_id`` (called for every object) replaces exact sets and
    frozensets, which the C pickler writes in hash order and which bypass
    ``reducer_override``, by a canonical digest.

Whatever cannot be hashed deterministically raises ``Unfingerprintable``.
"""
from __future__ import annotations

import ast
import copyreg
import dis
import functools
import importlib.machinery
import importlib.metadata
import importlib.util
import os
import pickle
import re
import struct
import sys
import sysconfig
from collections.abc import Callable, Iterator
from types import BuiltinFunctionType, CodeType, FunctionType, MappingProxyType, ModuleType
from typing import Any, Mapping, NamedTuple

import xxhash

from cellcache.errors import Unfingerprintable

DIGEST_SIZE = 16

# Non-contiguous arrays are copied at most this many bytes at a time.
_CHUNK_BYTES = 16 << 20
# Object columns are turned into lists this many items at a time.
_CHUNK_ITEMS = 1 << 20
# Numpy kinds whose buffer holds the values themselves (no pointers).
_BUFFER_KINDS = frozenset("biufcmMSUV")
# infer_dtype(skipna=True) results that guarantee scalars only: no container
# can hide in them, so a fast-mode (memo-less) pickle is safe and exact.
_SCALAR_KINDS = frozenset(
    {"string", "bytes", "integer", "floating", "mixed-integer-float", "boolean", "complex", "decimal", "empty"}
)
# Class-dict entries that are not part of a class's behaviour: the
# __dict__/__weakref__ slots, caches that pickling and abc fill in lazily
# (so the digest would depend on history), and source positions.
_CLASS_NOISE = frozenset(
    {"__dict__", "__weakref__", "__slotnames__", "_abc_impl", "__firstlineno__", "__static_attributes__"}
)
_GLOBAL_LOADS = frozenset({"LOAD_GLOBAL", "LOAD_NAME", "LOAD_FROM_DICT_OR_GLOBALS"})
_HEAPTYPE = 1 << 9  # Py_TPFLAGS_HEAPTYPE: classes created at run time (class statements).
_EMPTY_CELL = xxhash.xxh3_128(b"empty closure cell").digest()
_CANNOT_PICKLE = re.compile(r"cannot pickle '([^']+)' object")


def _token(*args: object) -> None:
    """Stands in a hashed pickle stream for a value replaced by its digest.

    It is pickled by reference (as ``cellcache.fingerprint._token``); the
    streams are only hashed, so it is never called.
    """
    raise TypeError("cellcache fingerprint streams are hashed, never unpickled")


def _ref(*token: object) -> tuple[Any, ...]:
    """A reduce value that pickles as ``_token(*token)``."""
    return (_token, token)


# --------------------------------------------------------------------------
# Public API


def fingerprint(value: object) -> bytes:
    """The 16-byte xxh3_128 digest of ``value``; raises ``Unfingerprintable``."""
    try:
        return _Run().root(value)
    except Unfingerprintable:
        raise
    except Exception as exc:  # a failure anywhere means "no key", never a guess
        raise _unfingerprintable(value, exc) from exc


def describe(value: object) -> str:
    """A short description for ``--explain``; never raises and never walks big values."""
    try:
        return _describe(value)
    except Exception:
        return _type_name(value)


def module_version(name: str) -> str | None:
    """``"numpy==2.4.6"`` for an installed module, ``"stdlib"``, or None.

    None means not importable or not installed (a local module, for
    instance: those are keyed by ``module_digest``).
    """
    top = name.partition(".")[0]
    if top in sys.builtin_module_names or top in sys.stdlib_module_names:
        return "stdlib"
    spec = _find_spec(top)
    if spec is None or _spec_is_local(spec):
        return None
    versions = _installed_versions()
    dists = versions.distributions_of(top)
    if not dists:
        return None
    return ",".join(sorted(f"{dist}=={versions.version(dist)}" for dist in set(dists)))


def module_digest(name: str) -> bytes | None:
    """The digest of a local module's source and of the local modules it imports.

    Imports are found by parsing source files, never by importing them, and
    followed transitively (cycle-safe). Importing ``a.b`` runs ``a``'s
    ``__init__``, so parent packages are included. None for a module that is
    not local (or not found).
    """
    spec = _find_spec(name)
    if spec is None or not _spec_is_local(spec):
        return None
    parts: dict[str, bytes] = {}
    seen: set[str] = set()
    todo = [name]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        spec = _find_spec(current)
        if spec is None:
            # A local module importing a module that does not exist: if it
            # appears later, the digest must change.
            parts[current] = _MISSING_MODULE
            continue
        if not _spec_is_local(spec):
            continue
        info = _source_info(spec)
        parts[current] = info.digest
        todo.extend(_parents(current))
        todo.extend(_imported_modules(current, spec.submodule_search_locations is not None, info.imports))
    hasher = xxhash.xxh3_128(b"M")
    for module in sorted(parts):
        hasher.update(_str_digest(module))
        hasher.update(parts[module])
    return hasher.digest()


@functools.lru_cache(maxsize=4096)
def is_local_module_file(path: str) -> bool:
    """True if ``path`` is user code: outside the stdlib, site-/dist-packages and the interpreter prefixes."""
    if not path or path in ("built-in", "frozen"):
        return False
    for candidate in {os.path.abspath(path), os.path.realpath(path)}:
        parts = candidate.split(os.sep)
        if "site-packages" in parts or "dist-packages" in parts:
            return False
        if any(candidate == root or candidate.startswith(root + os.sep) for root in _non_local_roots()):
            return False
    return True


# --------------------------------------------------------------------------
# One fingerprint() call


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


class _Run:
    """The state of one ``fingerprint`` call.

    Functions, classes and code objects are nodes of a graph (so are sets
    that contain any): a reference to one becomes a placeholder, and its own
    content is hashed later, once, from a work queue. No recursion follows
    references, so cycles (recursive functions, a class and its methods,
    interlinked classes) cost nothing special, and the walk is linear.
    Nodes are found by ``id()``, which is safe within a call because the
    node keeps its object alive; nothing is kept across calls.
    """

    def __init__(self) -> None:
        self.nodes: dict[int, _Node] = {}
        self.queue: list[tuple[_Node, Callable[[Any], bytes]]] = []
        self.recorders: list[_Recorder] = []
        # Sets without node references get an inline token: id -> (set, token).
        self.inline_sets: dict[int, tuple[object, tuple[str, bytes]]] = {}
        self.module_memo: dict[str, tuple[str, ...]] = {}
        self.version_memo: dict[str, str | None] = {}
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
        hasher = xxhash.xxh3_128(b"P")
        buffers = _Buffers()
        pickler = _Pickler(self, hasher, buffers) if fast else _SetPickler(self, hasher, buffers)
        # Fast mode skips the memo (a big saving on long lists of strings);
        # only used on lists of scalars, which cannot contain cycles.
        pickler.fast = fast
        try:
            pickler.dump(value)
        except Unfingerprintable:
            raise
        except Exception as exc:
            raise _unfingerprintable(value, exc) from exc
        if buffers.hasher is None:
            return hasher.digest()
        return _hash(b"B", hasher.digest(), buffers.hasher.digest())

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
            FunctionType: self.function_token,
            BuiltinFunctionType: self.builtin_token,
            CodeType: lambda code: self.node(code, b"code", self._code_local),
            ModuleType: self.module_value_token,
            type: self.class_token,
            # These do not pickle, or pickle without the function they wrap.
            staticmethod: lambda sm: _ref("staticmethod", self.digest(sm.__func__)),
            classmethod: lambda cm: _ref("classmethod", self.digest(cm.__func__)),
            property: lambda p: _ref("property", self.digest((p.fget, p.fset, p.fdel, p.__doc__))),
            functools.cached_property: lambda cp: _ref("cached_property", self.digest(cp.func)),
            # Slot and __dict__ descriptors in class dicts; the slot names
            # are in __slots__ already.
            type(_Slotted.x): lambda d: _ref("descriptor", d.__name__),  # type: ignore[attr-defined]
            type(_Slotted.__dict__["__weakref__"]): lambda d: _ref("descriptor", d.__name__),
            MappingProxyType: lambda mp: _ref("mappingproxy", self.digest(dict(mp))),
        }
        np = sys.modules.get("numpy")
        if np is not None:
            table[np.ndarray] = self.ndarray_token
        pd = sys.modules.get("pandas")
        if pd is not None:
            table[pd.DataFrame] = lambda frame: _ref("pandas", self.frame_digest(frame))
            table[pd.Series] = lambda series: _ref("pandas", self.series_digest(series))
            for cls in _pandas_index_types(pd):
                table[cls] = lambda index: _ref("pandas", self.index_digest(index))
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
        else:
            handler = self.reduce
        self.dispatch[cls] = handler
        return handler

    def reduce(self, obj: object) -> object:
        """What the pickler would do, except that a global reference gets its package version.

        Objects whose ``__reduce__`` returns a name (numpy's array-function
        dispatchers such as ``np.mean``, ufuncs, ``pd.NA``...) are otherwise
        pickled as a bare name, and a package upgrade could change them.
        """
        reducer = copyreg.dispatch_table.get(type(obj))
        reduced = reducer(obj) if reducer is not None else obj.__reduce_ex__(5)
        if not isinstance(reduced, str):
            return reduced
        module = getattr(obj, "__module__", None)
        if not isinstance(module, str):
            return NotImplemented  # the pickler finds the module itself
        version = self.version(module) if module != "__main__" else None
        return _ref("global", module, reduced, version or "")

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

    # ---- functions and code ---------------------------------------------

    def function_token(self, fn: FunctionType) -> object:
        if fn is _token:
            return NotImplemented  # pickled by reference
        version = self.installed_version(fn.__module__, fn.__qualname__, fn)
        if version is not None:
            return _ref("function", version, fn.__module__, fn.__qualname__)
        return self.node(fn, b"function", self._function_local)

    def _function_local(self, fn: FunctionType) -> bytes:
        owner = f"function {fn.__qualname__!r}"
        code = fn.__code__
        hasher = xxhash.xxh3_128(b"F")
        hasher.update(self.digest(code))
        hasher.update(self.part(fn.__defaults__, owner, "defaults"))
        hasher.update(self.part(fn.__kwdefaults__, owner, "keyword defaults"))
        for name, cell in zip(code.co_freevars, fn.__closure__ or ()):
            try:
                content = cell.cell_contents
            except ValueError:  # not assigned yet
                hasher.update(_EMPTY_CELL)
            else:
                hasher.update(self.part(content, owner, f"closure variable {name!r}"))
        names, imports = _code_refs(code)
        namespace = fn.__globals__
        present = [name for name in names if name in namespace]
        hasher.update(len(present).to_bytes(4, "little"))
        for name in present:
            hasher.update(_str_digest(name))
            hasher.update(self.part(namespace[name], owner, f"global {name!r}"))
        package = namespace.get("__package__") or ""
        for level, name in imports:
            hasher.update(self.digest(self.import_token(level, name, package)))
        if fn.__dict__:
            hasher.update(self.part(fn.__dict__, owner, "attributes"))
        return hasher.digest()

    def _code_local(self, code: CodeType) -> bytes:
        # Line numbers, positions and the file name are left out: moving a
        # function must not change its key. co_consts carries nested code
        # objects (nodes) and frozensets (canonical).
        return self.pickle_digest(
            (
                code.co_name,
                code.co_argcount,
                code.co_posonlyargcount,
                code.co_kwonlyargcount,
                code.co_flags,
                code.co_code,
                getattr(code, "co_exceptiontable", b""),
                code.co_consts,
                code.co_names,
                code.co_varnames,
                code.co_freevars,
                code.co_cellvars,
            )
        )

    def builtin_token(self, fn: BuiltinFunctionType) -> object:
        owner = fn.__self__
        if owner is not None and not isinstance(owner, ModuleType):
            return NotImplemented  # a bound method: pickled as getattr(owner, name)
        module = fn.__module__ or getattr(owner, "__name__", None)
        if module is None:
            return NotImplemented
        return _ref("builtin", module, fn.__qualname__, self.version(module) or "")

    # ---- classes -----------------------------------------------------------

    def class_token(self, cls: type) -> tuple[Any, ...]:
        if not cls.__flags__ & _HEAPTYPE:
            # A static (C) type: its code is not inspectable; its name and
            # the version of the package defining it identify it.
            return _ref("type", cls.__module__, cls.__qualname__, self.version(cls.__module__) or "")
        version = self.installed_version(cls.__module__, cls.__qualname__, cls)
        if version is not None:
            return _ref("class", version, cls.__module__, cls.__qualname__)
        return self.node(cls, b"class", self._class_local)

    def _class_local(self, cls: type) -> bytes:
        owner = f"class {cls.__qualname__!r}"
        hasher = xxhash.xxh3_128(b"K")
        hasher.update(_str_digest(cls.__qualname__))
        hasher.update(self.part(type(cls), owner, "metaclass"))
        hasher.update(self.part(cls.__bases__, owner, "bases"))
        for name, value in cls.__dict__.items():
            if name in _CLASS_NOISE:
                continue
            hasher.update(_str_digest(name))
            hasher.update(self.part(value, owner, f"attribute {name!r}"))
        return hasher.digest()

    # ---- where code comes from ---------------------------------------------

    def version(self, module: str) -> str | None:
        if module not in self.version_memo:
            self.version_memo[module] = module_version(module)
        return self.version_memo[module]

    def installed_version(self, module_name: str | None, qualname: str, obj: object) -> str | None:
        """The version that identifies ``obj`` if it comes from an installed package, else None.

        None (hash by code) for the notebook (``__main__``, or a module
        without a file), for local modules, and for objects that cannot be
        reached by their qualified name (made by a factory: two such objects
        can share a name and differ).
        """
        if not module_name or module_name == "__main__":
            return None
        module = sys.modules.get(module_name)
        if module is None:
            return None
        path = getattr(module, "__file__", None)
        if path is None:
            if module_name.partition(".")[0] not in sys.builtin_module_names:
                return None
        elif is_local_module_file(path):
            return None
        version = self.version(module_name)
        if version is None or _resolve_qualname(module, qualname) is not obj:
            return None
        return version

    # ---- modules ---------------------------------------------------------

    def module_value_token(self, module: ModuleType) -> tuple[Any, ...]:
        name = module.__name__
        if sys.modules.get(name) is not module:
            raise Unfingerprintable(
                f"module object {name!r} is not the module imported under that name", type_name="module"
            )
        token = self.module_token(name)
        if token[-1] == "missing":
            raise Unfingerprintable(f"module {name!r} has no spec to key it by", type_name="module")
        return _ref(*token)

    def import_token(self, level: int, name: str, package: str) -> tuple[str, ...]:
        try:
            absolute = importlib.util.resolve_name("." * level + name, package) if level else name
        except (ImportError, ValueError):
            return ("import", level, name, package)
        return self.module_token(absolute)

    def module_token(self, name: str) -> tuple[str, ...]:
        hit = self.module_memo.get(name)
        if hit is not None:
            return hit
        spec = _find_spec(name)
        if spec is None:
            token: tuple[str, ...] = ("module", name, "missing")
        elif _spec_is_local(spec):
            digest = module_digest(name)
            token = ("module", name, "local", digest.hex() if digest else "missing")
        else:
            version = self.version(name)
            if version is not None:
                token = ("module", name, version)
            elif spec.has_location and spec.origin and os.path.isfile(spec.origin):
                # Outside site-packages yet not from a distribution (a file
                # dropped into the interpreter's prefix): key by its content.
                token = ("module", name, "file", _source_info(spec).digest.hex())
            else:
                token = ("module", name, "missing")
        self.module_memo[name] = token
        return token

    # ---- numpy and pandas --------------------------------------------------

    def ndarray_token(self, array: Any) -> object:
        if _buffer_safe(array.dtype):
            return _ref("ndarray", _array_digest(array))
        return self.reduce(array)  # object arrays: numpy pickles their items

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
        else:
            # Arrow-backed, interval, sparse and third-party arrays: their
            # values as Python objects, which with the dtype define them.
            hasher.update(b"objects" + self.object_values_digest(np.asarray(values, dtype=object)))
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

    def object_values_digest(self, values: Any) -> bytes:
        """Object column values: a fast-mode pickle when they are scalars only."""
        pd = sys.modules["pandas"]
        flat = values.reshape(-1)
        fast = pd.api.types.infer_dtype(flat, skipna=True) in _SCALAR_KINDS
        hasher = xxhash.xxh3_128(b"O" + (b"f" if fast else b"g"))
        hasher.update(pickle.dumps(values.shape, protocol=5))
        for start in range(0, len(flat), _CHUNK_ITEMS):
            hasher.update(self.pickle_digest(flat[start : start + _CHUNK_ITEMS].tolist(), fast=fast))
        return hasher.digest()


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


class _Pickler(pickle.Pickler):
    """The C pickler, writing into a hasher, with the run's hooks for non-builtin objects."""

    def __init__(self, run: _Run, hasher: Any, buffers: _Buffers) -> None:
        super().__init__(_Sink(hasher.update), protocol=5, buffer_callback=buffers)
        self._run = run

    def reducer_override(self, obj: object) -> object:
        run = self._run
        kind = type(obj)
        try:
            handler = run.dispatch[kind]
        except KeyError:
            handler = run.classify(kind)
        return handler(obj)


class _SetPickler(_Pickler):
    """The general-path pickler: also canonicalizes exact sets and frozensets."""

    def persistent_id(self, obj: object) -> object:
        # Called for every object, so kept to the bare minimum (see the
        # benchmark); set subclasses go through reducer_override.
        kind = type(obj)
        if kind is set or kind is frozenset:
            return self._run.set_token(obj)  # type: ignore[arg-type]
        return None


class _Slotted:
    """Only here to reach the slot and __weakref__ descriptor types."""

    __slots__ = ("x", "__weakref__")


# --------------------------------------------------------------------------
# Atoms and arrays


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


def _buffer_safe(dtype: Any) -> bool:
    """True if an array's buffer is its values (no object pointers, no string arena)."""
    return not dtype.hasobject and dtype.kind in _BUFFER_KINDS


def _array_digest(array: Any) -> bytes:
    dtype = array.dtype
    # dtype.str loses field names and types of structured dtypes; descr keeps them.
    dtype_key = dtype.str if dtype.fields is None and dtype.subdtype is None else dtype.descr
    hasher = xxhash.xxh3_128(b"N")
    hasher.update(pickle.dumps((dtype_key, array.shape), protocol=5))
    if array.nbytes:
        _feed_values(hasher, array)
    return hasher.digest()


def _feed_values(hasher: Any, array: Any) -> None:
    """Feed the bytes of ``array``'s values in C order: in place if contiguous."""
    np = sys.modules["numpy"]
    if array.flags.c_contiguous:
        # A uint8 view: datetime and structured dtypes do not export a buffer.
        hasher.update(array.reshape(-1).view(np.uint8))
        return
    if array.nbytes <= _CHUNK_BYTES:
        hasher.update(np.ascontiguousarray(array).reshape(-1).view(np.uint8))
        return
    # Bounded copies, in C order, so the stream equals the contiguous copy's.
    row_bytes = array[0].nbytes
    if row_bytes >= _CHUNK_BYTES:
        for row in array:
            _feed_values(hasher, row)
        return
    step = _CHUNK_BYTES // row_bytes
    for start in range(0, array.shape[0], step):
        hasher.update(np.ascontiguousarray(array[start : start + step]).reshape(-1).view(np.uint8))


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


# --------------------------------------------------------------------------
# Code inspection


@functools.lru_cache(maxsize=8192)
def _code_refs(code: CodeType) -> tuple[tuple[str, ...], tuple[tuple[int, str], ...]]:
    """The global names a code object (and the code nested in it) loads, and its imports.

    Read from the bytecode rather than co_names, which also holds attribute
    names: ``self.data`` must not pull in an unrelated global ``data``.
    Cached by the code object itself (code compares by value), never by id.
    """
    names: set[str] = set()
    imports: set[tuple[int, str]] = set()
    previous: list[Any] = [None, None]
    for instruction in dis.get_instructions(code):
        if instruction.opname in _GLOBAL_LOADS:
            names.add(instruction.argval)
        elif instruction.opname == "IMPORT_NAME":
            # Preceded by LOAD_CONST level, LOAD_CONST fromlist.
            level = previous[0] if isinstance(previous[0], int) else 0
            imports.add((level, instruction.argval))
        previous = [previous[1], instruction.argval]
    for const in code.co_consts:
        if isinstance(const, CodeType):
            nested_names, nested_imports = _code_refs(const)
            names.update(nested_names)
            imports.update(nested_imports)
    return tuple(sorted(names)), tuple(sorted(imports))


def _resolve_qualname(module: ModuleType, qualname: str) -> object:
    if "<locals>" in qualname:
        return None
    obj: object = module
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


# --------------------------------------------------------------------------
# Modules: specs, locality, versions, source digests


_MISSING_MODULE = xxhash.xxh3_128(b"missing module").digest()


def _find_spec(name: str) -> Any:
    """``importlib.util.find_spec`` without importing parent packages.

    find_spec("a.b") imports ``a``; this walks the meta path with the
    parent's search locations instead, so nothing of the user's is executed.
    """
    module = sys.modules.get(name)
    if module is not None:
        return getattr(module, "__spec__", None)
    parent = name.rpartition(".")[0]
    path = None
    if parent:
        parent_spec = _find_spec(parent)
        if parent_spec is None or parent_spec.submodule_search_locations is None:
            return None
        path = list(parent_spec.submodule_search_locations)
    for finder in sys.meta_path:
        find = getattr(finder, "find_spec", None)
        if find is None:
            continue
        try:
            spec = find(name, path)
        except Exception:  # a misbehaving finder must not break keying
            continue
        if spec is not None:
            return spec
    return None


def _spec_is_local(spec: Any) -> bool:
    if spec.origin and spec.has_location:
        return is_local_module_file(spec.origin)
    # A namespace package: local if one of its directories is.
    locations = spec.submodule_search_locations or ()
    return any(is_local_module_file(os.path.join(location, "__init__.py")) for location in locations)


@functools.lru_cache(maxsize=1)
def _non_local_roots() -> tuple[str, ...]:
    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    paths = sysconfig.get_paths()
    roots.update(paths[key] for key in ("stdlib", "platstdlib", "purelib", "platlib") if key in paths)
    expanded = {os.path.abspath(root) for root in roots} | {os.path.realpath(root) for root in roots}
    return tuple(sorted(expanded))


class _SourceInfo(NamedTuple):
    digest: bytes
    imports: tuple[tuple[int, str, tuple[str, ...]], ...]  # (level, module, names imported from it)


_SOURCE_CACHE: dict[str, tuple[tuple[int, int, int], _SourceInfo]] = {}


def _source_info(spec: Any) -> _SourceInfo:
    """A module file's digest and imports, cached by (path, mtime_ns, size, inode)."""
    if not (spec.origin and spec.has_location):
        return _SourceInfo(xxhash.xxh3_128(b"namespace package").digest(), ())
    path = spec.origin
    try:
        stat = os.stat(path)
    except OSError:
        return _SourceInfo(_MISSING_MODULE, ())
    key = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
    hit = _SOURCE_CACHE.get(path)
    if hit is not None and hit[0] == key:
        return hit[1]
    with open(path, "rb") as file:
        data = file.read()
    imports: tuple[tuple[int, str, tuple[str, ...]], ...] = ()
    if path.endswith(tuple(importlib.machinery.SOURCE_SUFFIXES)):
        try:
            imports = _parse_imports(ast.parse(data, filename=path))
        except (SyntaxError, ValueError):
            pass  # the digest of the bytes still keys it
    info = _SourceInfo(xxhash.xxh3_128(data).digest(), imports)
    _SOURCE_CACHE[path] = (key, info)
    return info


def _parse_imports(tree: ast.AST) -> tuple[tuple[int, str, tuple[str, ...]], ...]:
    found: list[tuple[int, str, tuple[str, ...]]] = []
    for node in ast.walk(tree):  # anywhere: in functions and try blocks too
        if isinstance(node, ast.Import):
            found.extend((0, alias.name, ()) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            found.append((node.level, node.module or "", tuple(alias.name for alias in node.names)))
    return tuple(found)


def _parents(name: str) -> Iterator[str]:
    while "." in name:
        name = name.rpartition(".")[0]
        yield name


def _imported_modules(
    name: str, is_package: bool, imports: tuple[tuple[int, str, tuple[str, ...]], ...]
) -> Iterator[str]:
    """The module names a module's imports refer to.

    ``from pkg import x`` refers to ``pkg.x`` only if that is a module; it is
    looked up only when ``pkg`` is local, so installed packages cost nothing.
    """
    package = name if is_package else name.rpartition(".")[0]
    for level, module, names in imports:
        if level:
            try:
                base = importlib.util.resolve_name("." * level + module, package)
            except (ImportError, ValueError):
                continue
        else:
            base = module
        yield base
        spec = _find_spec(base) if names else None
        if spec is None or not _spec_is_local(spec) or spec.submodule_search_locations is None:
            continue
        for imported in names:
            if imported != "*" and _find_spec(f"{base}.{imported}") is not None:
                yield f"{base}.{imported}"


class _Versions:
    """Top-level module -> distributions, and distribution versions, for one state of sys.path.

    ``packages_distributions()`` scans every installed distribution (a
    quarter of a second here, paid by the first cached cell of every
    kernel), so a module is first looked up as the distribution of the same
    name, which is the common case (numpy, pandas), and the full scan runs
    only for the others (sklearn, yaml, PIL).
    """

    def __init__(self) -> None:
        self._all: Mapping[str, list[str]] | None = None
        self._of: dict[str, list[str]] = {}
        self._versions: dict[str, str] = {}

    def distributions_of(self, top: str) -> list[str]:
        if top not in self._of:
            self._of[top] = self._same_name(top) or self._scan().get(top, [])
        return self._of[top]

    def _same_name(self, top: str) -> list[str]:
        try:
            dist = importlib.metadata.distribution(top)
        except (importlib.metadata.PackageNotFoundError, ValueError):
            return []
        provided = (dist.read_text("top_level.txt") or "").split()
        if provided and top not in provided:
            return []  # a distribution that happens to share the name but ships other modules
        if not provided and not any(
            str(f).split("/", 1)[0] in (top, f"{top}.py") for f in dist.files or ()
        ):
            return []
        name = dist.metadata["Name"] or top
        self._versions.setdefault(name, dist.version)
        return [name]

    def _scan(self) -> Mapping[str, list[str]]:
        if self._all is None:
            self._all = importlib.metadata.packages_distributions()
        return self._all

    def version(self, dist: str) -> str:
        if dist not in self._versions:
            try:
                self._versions[dist] = importlib.metadata.version(dist)
            except importlib.metadata.PackageNotFoundError:
                self._versions[dist] = "unknown"
        return self._versions[dist]


_VERSIONS: dict[tuple[tuple[str, int], ...], _Versions] = {}


def _installed_versions() -> _Versions:
    # Installing or upgrading a package adds or removes a .dist-info
    # directory, which changes the mtime of its sys.path directory.
    signature = []
    for entry in sys.path:
        try:
            signature.append((entry, os.stat(entry or ".").st_mtime_ns))
        except OSError:
            continue
    key = tuple(signature)
    versions = _VERSIONS.get(key)
    if versions is None:
        _VERSIONS.clear()
        versions = _VERSIONS[key] = _Versions()
    return versions


# --------------------------------------------------------------------------
# Errors and descriptions


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


def _describe(value: object) -> str:
    kind = type(value)
    name = kind.__name__
    if value is None:
        return "None"
    if kind in (bool, int, float, complex):
        return name
    if isinstance(value, (str, bytes, bytearray, list, tuple, dict, set, frozenset)):
        return f"{name} len {len(value)}"
    if isinstance(value, FunctionType):
        return f"function {value.__qualname__}"
    if isinstance(value, BuiltinFunctionType):
        return f"builtin {value.__qualname__}"
    if isinstance(value, type):
        return f"class {value.__qualname__}"
    if isinstance(value, ModuleType):
        return f"module {value.__name__}"
    np = sys.modules.get("numpy")
    if np is not None and isinstance(value, np.ndarray):
        return f"{name} {value.dtype} {value.shape}"
    pd = sys.modules.get("pandas")
    if pd is not None:
        if isinstance(value, pd.DataFrame):
            rows, columns = value.shape
            return f"{name} {rows}x{columns}"
        if isinstance(value, (pd.Series, pd.Index)):
            return f"{name} {value.dtype} len {len(value)}"
    return _type_name(value)
