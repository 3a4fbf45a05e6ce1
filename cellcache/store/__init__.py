"""Where entries live: the local store (and, through it, a remote one)."""
from __future__ import annotations

from importlib import import_module
from typing import Any

__all__ = ["LocalStore", "Manifest", "StepStats", "VerifyReport"]

# Loaded when first asked for: a module that needs one room of the store (``format`` for a file's
# digest, on the extension's load path) does not pay for the SQLite ledger and the upkeep.
_WHERE = {
    "LocalStore": "cellcache.store.local",
    "Manifest": "cellcache.store.manifest",
    "StepStats": "cellcache.store.index",
    "VerifyReport": "cellcache.store.maintenance",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(_WHERE[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
