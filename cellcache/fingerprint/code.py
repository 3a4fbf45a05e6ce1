"""Code, hashed by what it does: functions, code objects, classes and the wrappers around them.

A function is its bytecode and constants, defaults, closure values, the
globals it loads and the modules it imports; a class is its name, metaclass,
bases and class dict. Those are nodes of the walk's graph (``_run``), so
recursion and cycles between them cost nothing special. Functions and
classes from installed packages are keyed by name and version instead.
"""
from __future__ import annotations

import dis
import functools
from collections.abc import Callable, Mapping
from types import BuiltinFunctionType, CodeType, FunctionType, ModuleType
from typing import Any

import xxhash

from cellcache.fingerprint._base import Bound as Bound
from cellcache.fingerprint._base import _ref, _str_digest, _token
from cellcache.fingerprint.modules import ModuleKinds

# Class-dict entries that are not part of a class's behaviour: the
# __dict__/__weakref__ slots, caches that pickling and abc fill in lazily
# (so the digest would depend on history), and source positions.
_CLASS_NOISE = frozenset(
    {"__dict__", "__weakref__", "__slotnames__", "_abc_impl", "__firstlineno__", "__static_attributes__"}
)
_GLOBAL_LOADS = frozenset({"LOAD_GLOBAL", "LOAD_NAME", "LOAD_FROM_DICT_OR_GLOBALS"})
_HEAPTYPE = 1 << 9  # Py_TPFLAGS_HEAPTYPE: classes created at run time (class statements).
_EMPTY_CELL = xxhash.xxh3_128(b"empty closure cell").digest()
_LRU_WRAPPER = type(functools.lru_cache(maxsize=None)(lambda: None))
_BOUND_BY_CALLER = xxhash.xxh3_128(b"global bound by the caller before any call").digest()



class _Slotted:
    """Only here to reach the slot and __weakref__ descriptor types."""

    __slots__ = ("x", "__weakref__")


class CodeKinds(ModuleKinds):
    """The walk's hooks for functions, code, classes and wrappers (which need modules: where code comes from)."""

    bound: Bound | None = None

    def register_code(self, table: dict[type, Callable[[Any], Any]]) -> None:
        table.update(
            {
                FunctionType: self.function_token,
                BuiltinFunctionType: self.builtin_token,
                CodeType: lambda code: self.node(code, b"code", self._code_local),
                type: self.class_token,
                # These do not pickle, or pickle without the function they wrap.
                staticmethod: lambda sm: _ref("staticmethod", self.digest(sm.__func__)),
                classmethod: lambda cm: _ref("classmethod", self.digest(cm.__func__)),
                property: lambda p: _ref("property", self.digest((p.fget, p.fset, p.fdel, p.__doc__))),
                functools.cached_property: lambda cp: _ref("cached_property", self.digest(cp.func)),
                # Pickled by name, which would hide an edit of the code it wraps.
                _LRU_WRAPPER: self.lru_cache_token,
                # Slot and __dict__ descriptors in class dicts; the slot names
                # are in __slots__ already.
                type(_Slotted.x): lambda d: _ref("descriptor", d.__name__),  # type: ignore[attr-defined]
                type(_Slotted.__dict__["__weakref__"]): lambda d: _ref("descriptor", d.__name__),
            }
        )

    def function_token(self, fn: FunctionType) -> object:
        if fn is _token:
            return NotImplemented  # pickled by reference
        version = self.installed_version(fn.__module__, fn.__qualname__, fn)
        # A notebook's wrapper put in a library's place under its name (functools.wraps copies
        # __module__ and __qualname__) is the notebook's code: hashed by it, not as the library's.
        if version is not None and fn.__globals__.get("__name__") != "__main__":
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
        bound = self.bound[1] if self.bound is not None and namespace is self.bound[0] else frozenset()
        # A bound name counts present or not: the caller's first run (before it existed) and later ones agree.
        present = [name for name in names if name in bound or name in namespace]
        hasher.update(len(present).to_bytes(4, "little"))
        for name in present:
            hasher.update(_str_digest(name))
            if name in bound:
                hasher.update(_BOUND_BY_CALLER)
            else:
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

    def lru_cache_token(self, wrapper: Any) -> object:
        version = self.installed_version(wrapper.__module__, wrapper.__qualname__, wrapper)
        if version is not None:
            return _ref("function", version, wrapper.__module__, wrapper.__qualname__)
        return _ref("lru_cache", self.digest(wrapper.__wrapped__), self.digest(wrapper.cache_parameters()))

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
