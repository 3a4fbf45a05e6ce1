"""cellcache: a run-cache for Jupyter cells.

``%load_ext cellcache`` registers ``%%cached`` and ``%cellcache``.
"""
from __future__ import annotations

from typing import Any

from cellcache.api import clear, flush, invalidate, last_run, panel, stats
from cellcache.errors import CacheError, CacheWarning, CellcacheError
from cellcache.cell.runner import StepRun
from cellcache.store.index import StepStats

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

_SESSION_ATTR = "_cellcache_session"


def load_ipython_extension(shell: Any) -> None:
    from cellcache import api, config
    from cellcache.magic import CellcacheMagics
    from cellcache.cell.runner import Session

    if getattr(shell, _SESSION_ATTR, None) is not None:
        return  # loading twice keeps the one session, its hooks and its last run
    settings = config.resolve()
    session = Session(shell, settings)
    setattr(shell, _SESSION_ATTR, session)
    shell.register_magics(CellcacheMagics(shell, session))
    shell.events.register("pre_run_cell", session.pre_run_cell)
    shell.events.register("post_run_cell", session.post_run_cell)
    api.active = session
    if settings.auto:  # `auto = true` or CELLCACHE_AUTO=1: every cell a stage from the next one on
        session.auto.switch(True)


def unload_ipython_extension(shell: Any) -> None:
    from cellcache import api

    session = getattr(shell, _SESSION_ATTR, None)
    if session is None:
        return
    session.flush()
    session.auto.uninstall()
    shell.events.unregister("pre_run_cell", session.pre_run_cell)
    shell.events.unregister("post_run_cell", session.post_run_cell)
    magics = shell.magics_manager.magics
    magics["cell"].pop("cached", None)
    magics["line"].pop("cellcache", None)
    setattr(shell, _SESSION_ATTR, None)
    if api.active is session:
        api.active = None
