"""cellcache: a run-cache for Jupyter cells.

``%load_ext cellcache`` registers ``%%cached`` and ``%cellcache``.

Importing the package loads almost nothing: a kernel that loads the extension pays for the
runner, the fingerprints and the store at the first cell that needs them (``extension``).
The public names below are imported when first used.
"""
from __future__ import annotations

import sys
from importlib import import_module
from typing import Any

from cellcache.errors import CacheError, CacheWarning, CellcacheError

__all__ = [
    "CacheError",
    "CacheWarning",
    "CellcacheError",
    "StepRun",
    "StepStats",
    "clear",
    "flush",
    "invalidate",
    "last_run",
    "load_ipython_extension",
    "panel",
    "stats",
    "unload_ipython_extension",
]
__version__ = "0.1.0"

_WHERE = {
    "clear": "cellcache.api",
    "flush": "cellcache.api",
    "invalidate": "cellcache.api",
    "last_run": "cellcache.api",
    "panel": "cellcache.api",
    "stats": "cellcache.api",
    "StepRun": "cellcache.cell.stage",
    "StepStats": "cellcache.store.index",
}
_EXTENSION_ATTR = "_cellcache_extension"


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        value = getattr(import_module(_WHERE[name]), name)
        globals()[name] = value
        return value
    if not name.startswith("_"):
        try:  # a submodule, as `cellcache.api` after `import cellcache` (the batch's setup code reads it so)
            return import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])


def load_ipython_extension(shell: Any) -> None:
    from cellcache import config
    from cellcache.extension import Extension
    from cellcache.magic import CellcacheMagics

    if getattr(shell, _EXTENSION_ATTR, None) is not None:
        return  # loading twice keeps the one session, its hooks and its last run
    extension = Extension(shell, config.resolve())
    setattr(shell, _EXTENSION_ATTR, extension)
    shell.register_magics(CellcacheMagics(shell, extension))
    extension.install()


def unload_ipython_extension(shell: Any) -> None:
    extension = getattr(shell, _EXTENSION_ATTR, None)
    if extension is None:
        return
    session = extension.built
    if session is not None:
        session.close()
        session.auto.uninstall()
    extension.uninstall()
    magics = shell.magics_manager.magics
    magics["cell"].pop("cached", None)
    magics["line"].pop("cellcache", None)
    setattr(shell, _EXTENSION_ATTR, None)
    api = sys.modules.get("cellcache.api")
    if session is not None and api is not None and api.active is session:
        api.active = None
