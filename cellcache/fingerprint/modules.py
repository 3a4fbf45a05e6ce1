"""Modules: which are local, what installed ones are versioned as, what local ones are made of.

An installed module is keyed by its distributions' versions; a local one by
the digest of its source and, transitively, of the local modules it
imports, found by parsing, never by importing. ``is_local_module_file``
draws the line between the two.
"""
from __future__ import annotations

import ast
import functools
import importlib.machinery
import importlib.util
import os
import sys
import sysconfig
from collections.abc import Callable, Iterator
from types import CodeType, FunctionType, ModuleType
from typing import Any, Mapping, NamedTuple

import xxhash

from cellcache.errors import Unfingerprintable
from cellcache.fingerprint._base import Kinds, _ref, _str_digest


class ModuleKinds(Kinds):
    """The walk's hooks for module values and imports, and the versions that identify installed code."""

    module_memo: dict[str, tuple[str, ...]]
    version_memo: dict[str, str | None]

    def register_modules(self, table: dict[type, Callable[[Any], Any]]) -> None:
        table[ModuleType] = self.module_value_token

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
        info = _loaded_source(current, spec)
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
    # Either spelling outside the user's code is enough; most loaded modules are, by their plain path,
    # so realpath (an lstat per path component) is only paid for the rest.
    return _local_spelling(os.path.abspath(path)) and _local_spelling(os.path.realpath(path))


def _local_spelling(candidate: str) -> bool:
    parts = candidate.split(os.sep)
    if "site-packages" in parts or "dist-packages" in parts:
        return False
    return not any(candidate == root or candidate.startswith(root + os.sep) for root in _non_local_roots())


def _resolve_qualname(module: ModuleType, qualname: str) -> object:
    if "<locals>" in qualname:
        return None
    obj: object = module
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


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
        except RecursionError:
            raise  # the stack, not the finder: the walk is made again on a deep one (_deep)
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
    digest = xxhash.xxh3_128(data).digest()
    if path.endswith(tuple(importlib.machinery.SOURCE_SUFFIXES)):
        try:
            tree = ast.parse(data, filename=path)
            imports = _parse_imports(tree)
            # The code, not its formatting: a comment or a blank line changes nothing a cell computes,
            # as for the cell's own code (key.code_digest).
            digest = xxhash.xxh3_128(b"ast:" + ast.dump(tree, annotate_fields=False, include_attributes=False).encode()).digest()
        except (SyntaxError, ValueError, RecursionError):
            pass  # the digest of the bytes still keys it
    info = _SourceInfo(digest, imports)
    _SOURCE_CACHE[path] = (key, info)
    return info


# A loaded module runs the code it was imported from, whatever its file says now: the source
# as first keyed (or when the extension loaded), per spec object, which a reload replaces.
_AS_IMPORTED: dict[str, tuple[Any, _SourceInfo]] = {}
_STALE: list[str] = []  # modules found edited since import, not reported yet
_REPORTED: set[str] = set()


def _loaded_source(name: str, spec: Any) -> _SourceInfo:
    info = _source_info(spec)
    module = sys.modules.get(name)
    if module is None:
        _AS_IMPORTED.pop(name, None)
        return info
    loaded = getattr(module, "__spec__", None)
    first = _AS_IMPORTED.get(name)
    if first is None or first[0] is not loaded:  # first sight, or reloaded since (a new spec)
        first = _AS_IMPORTED[name] = (loaded, info)
        _REPORTED.discard(name)
    if first[1].digest != info.digest and _runs_source_on_disk(module, spec.origin):
        # Reloaded in place (IPython 9's %autoreload patches functions into the same module and spec):
        # the code that runs is the file's now, so that is what the key holds, and nothing is stale.
        first = _AS_IMPORTED[name] = (loaded, info)
        _REPORTED.discard(name)
    if first[1].digest != info.digest and name not in _REPORTED:
        _REPORTED.add(name)
        _STALE.append(name)
    return first[1]


def _same_code(a: CodeType, b: CodeType) -> bool:
    if a.co_code != b.co_code or a.co_names != b.co_names or len(a.co_consts) != len(b.co_consts):
        return False
    for x, y in zip(a.co_consts, b.co_consts):
        if isinstance(x, CodeType) or isinstance(y, CodeType):
            if not (isinstance(x, CodeType) and isinstance(y, CodeType) and _same_code(x, y)):
                return False
        elif type(x) is not type(y) or x != y:
            return False
    return True


def _runs_source_on_disk(module: Any, path: str) -> bool:
    """Whether every function the module defines runs the code its file holds now (only asked once they differ)."""
    try:
        with open(path, "rb") as file:
            code = compile(file.read(), path, "exec", dont_inherit=True)
    except (OSError, SyntaxError, ValueError):
        return False
    on_disk = {c.co_name: c for c in code.co_consts if isinstance(c, CodeType)}
    live = {
        value.__name__: value.__code__
        for value in list(vars(module).values())
        if isinstance(value, FunctionType) and value.__module__ == module.__name__ and value.__name__ in on_disk
    }
    # Nothing to compare (a module of constants): no proof, so the warning stands.
    return bool(live) and all(_same_code(code, on_disk[name]) for name, code in live.items())


_SEEN = {"count": 0}
_NOT_LOCAL: set[str] = set()


def remember_loaded() -> None:
    """Record the source of every newly loaded local module, as it is now.

    Called when the extension loads and after every cell, so that the source
    is read right after the import, before the user can edit the file. O(1)
    when no module was imported since the last call.
    """
    if len(sys.modules) == _SEEN["count"]:
        return
    _SEEN["count"] = len(sys.modules)
    for name, module in list(sys.modules.items()):
        if name in _AS_IMPORTED or name in _NOT_LOCAL:
            continue
        if name == "cellcache" or name.startswith("cellcache."):
            # Not the user's code: in an editable install (a checkout, the test kernels) parsing
            # cellcache's own thirty modules would cost every kernel start about a second.
            _NOT_LOCAL.add(name)
            continue
        spec = getattr(module, "__spec__", None)
        if spec is None or not (spec.origin and spec.has_location) or not is_local_module_file(spec.origin):
            _NOT_LOCAL.add(name)
            continue
        try:
            _loaded_source(name, spec)
        except OSError:
            continue


def take_stale() -> list[str]:
    """Local modules found edited on disk since they were imported, each reported once (until reloaded)."""
    found = sorted(set(_STALE))
    _STALE.clear()
    return found


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
        from importlib import metadata  # here, not at the top: the extension's load path imports this module

        try:
            dist = metadata.distribution(top)
        except (metadata.PackageNotFoundError, ValueError):
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
            from importlib import metadata

            self._all = metadata.packages_distributions()
        return self._all

    def version(self, dist: str) -> str:
        if dist not in self._versions:
            from importlib import metadata

            try:
                self._versions[dist] = metadata.version(dist)
            except metadata.PackageNotFoundError:
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
