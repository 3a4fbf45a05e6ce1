"""Deterministic 128-bit fingerprints of Python values, for cache keys.

``fingerprint(value)`` is pure and deterministic across processes and
``PYTHONHASHSEED`` values, and type-tagged: every hash input starts with a
tag naming how the rest was produced, so values of different kinds cannot
produce the same input. Whatever cannot be hashed deterministically raises
``Unfingerprintable``.

The package, bottom up: ``_base`` (hash primitives, tokens, graph nodes),
the kinds that sit on it (``values``: arrays and pandas; ``code``:
functions and classes; ``modules``: modules and versions), and ``_run``,
the walk that dispatches to them.
"""
from __future__ import annotations

import sys
from types import BuiltinFunctionType, FunctionType, ModuleType
from typing import Any

from cellcache.errors import Unfingerprintable
# _token is re-exported: hashed streams name it cellcache.fingerprint._token.
from cellcache.fingerprint._base import DIGEST_SIZE, _atom_digest, _type_name, _unfingerprintable
from cellcache.fingerprint._base import _token as _token
from cellcache.fingerprint._base import Bound
from cellcache.fingerprint.modules import is_local_module_file, module_digest, module_version

__all__ = [
    "Bound",
    "DIGEST_SIZE",
    "describe",
    "fingerprint",
    "fingerprints",
    "is_local_module_file",
    "module_digest",
    "module_version",
]


def _walk() -> tuple[Any, Any]:
    """The walk and its deep-recursion fallback, imported at the first value that needs a walk.

    Not at the top: the extension's load path imports this package for ``modules`` alone (what a
    cell imported, as imported), and the walk with the kinds under it is most of its import time.
    """
    from cellcache.fingerprint._deep import deep
    from cellcache.fingerprint._run import _Run

    return _Run, deep


def fingerprint(value: object, bound: Bound | None = None) -> bytes:
    """The 16-byte xxh3_128 digest of ``value``; raises ``Unfingerprintable``.

    ``bound``: (namespace, names) whose values the functions of that namespace
    are not keyed on, because whoever calls them binds those names first.
    """
    atom = _atom_digest(value)
    if atom is not None:
        return atom  # what a walk would give, without building one (the dispatch table costs more than the hash)
    _Run, deep = _walk()
    try:
        try:
            return _Run(bound).root(value)
        except RecursionError:
            return deep(lambda: _Run(bound).root(value), value)
    except Unfingerprintable:
        raise
    except Exception as exc:  # a failure anywhere means "no key", never a guess
        raise _unfingerprintable(value, exc) from exc


def fingerprints(values: list[object]) -> list[bytes | None]:
    """``fingerprint`` of each value, None where it raises; one walk shares what the values share.

    Module versions, shared functions and classes are looked up and hashed
    once for all of them: the cheap way to key many small values (the
    attributes a cell reads from ``np``, say).
    """
    _Run, deep = _walk()
    run = _Run()
    digests: list[bytes | None] = []
    for value in values:
        try:
            digests.append(run.root(value))
        except RecursionError:
            run = _Run()
            try:
                digests.append(deep(lambda: _Run().root(value), value))  # noqa: B023 - called at once
            except Exception:  # noqa: BLE001
                digests.append(None)
        except Exception:  # noqa: BLE001 - Unfingerprintable or a failure inside: no digest, never a guess
            run = _Run()  # a failed walk may leave half-made nodes behind
            digests.append(None)
    return digests


def describe(value: object) -> str:
    """A short description for ``--explain``; never raises and never walks big values."""
    try:
        return _describe(value)
    except Exception:
        return _type_name(value)


_SHOWN_STR = 40


def _describe(value: object) -> str:
    kind = type(value)
    name = kind.__name__
    if value is None:
        return "None"
    if kind in (bool, int, float, complex) or (kind is str and len(value) <= _SHOWN_STR):  # type: ignore[arg-type]
        # A scalar's value, so a miss reads "input `lr` changed (0.05 → 0.1)", as dvc status shows params.
        text = repr(value)
        return text if len(text) <= _SHOWN_STR + 2 else name
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
