"""The plain Python API, shared by the magic, the panel and the CLI."""
from __future__ import annotations

from typing import Any, Literal, overload

from cellcache import config as _config
from cellcache.cell.runner import Session, StepRun
from cellcache.report import render_text, shown_location, step_errors
from cellcache.store.index import StepStats
from cellcache.store.local import LocalStore, open_store

# The session of the shell the extension is loaded in, once a cell or a call has built it (the extension sets
# it when it builds one after this module is imported; see the end of this module for one built before).
active: Session | None = None


def _loaded(build: bool = True) -> Session | None:
    """The active shell's session, None if the extension is not loaded (or, without ``build``, not built yet)."""
    try:
        return session(build=build)
    except RuntimeError:
        return None


def _store() -> LocalStore:
    found = _loaded()
    if found is not None:
        found.flush()  # what the store says includes the entries still being written behind
        return found.local
    return open_store(_config.resolve())


def flush(push_timeout: float | None = None) -> None:
    """Wait until every entry being written behind is stored; warn now about any that could not be.

    With ``push_timeout`` (seconds), then wait at most that long for the entries being pushed to the remote.
    """
    found = _loaded(build=False)  # a session not built yet has written nothing
    if found is not None:
        found.flush(push_timeout)


def configure_batch(report: str | None = None, force: bool = False, restore_only: bool = False) -> None:
    """In a kernel ``cellcache run`` or ``status`` started: report each step to ``report``, force every step, or run none.

    Called with no arguments, the session is interactive again.
    """
    session().configure_batch(report, force, restore_only)


def configure_auto(on: bool, explain: bool = False) -> None:
    """Auto mode on or off in this shell, as ``%cellcache auto [off]`` (``cellcache run --auto`` calls it in its kernels)."""
    session().auto.switch(on, explain=explain)


@overload
def session(shell: Any = None) -> Session: ...
@overload
def session(shell: Any = None, *, build: Literal[False]) -> Session | None: ...
@overload
def session(shell: Any = None, *, build: bool) -> Session | None: ...


def session(shell: Any = None, *, build: bool = True) -> Session | None:
    """The cellcache session of ``shell`` (the active shell's by default): its settings, its stores, its switches.

    The extension builds it at the first cell that needs it; with ``build=False``, None until then.
    """
    if shell is None and active is not None:
        return active
    if shell is None:
        from IPython import get_ipython

        shell = get_ipython()
    extension = getattr(shell, "_cellcache_extension", None)
    if extension is None:
        raise RuntimeError("cellcache is not loaded in this shell: %load_ext cellcache first")
    return extension.session if build else extension.built


def last_run() -> StepRun | None:
    found = _loaded(build=False)
    return found.last if found is not None else None


def stats(store: LocalStore | None = None) -> list[StepStats]:
    return (store or _store()).step_rows()


def invalidate(name: str, store: LocalStore | None = None) -> int:
    return (store or _store()).invalidate(name)


def clear(store: LocalStore | None = None) -> int:
    return (store or _store()).clear()


def stats_text(store: LocalStore | None = None) -> str:
    store = store or _store()
    # With the run history, as the panel: "last reason" is the latest run's, and failures are counted.
    # The store's path as typed from here (`.cellcache/`), not a temporary or home path, when it is inside.
    return render_text(store.step_rows(), shown_location(str(store.root)), errors=step_errors(store))


def info_text(session: Session) -> str:
    cfg = session.config
    return "\n".join(
        [
            f"cellcache: {'on' if session.enabled else 'off'}",
            f"store:  {cfg.dir}",
            *_remote_info(session),
            f"signing key: {_signing_key(session)}",
            f"last run: {session.last}" if session.last else "last run: -",
        ]
    )


def _signing_key(session: Session) -> str:
    try:
        return session.local.signing_key.describe()
    except Exception as exc:  # noqa: BLE001 - info must answer even when the key can't be read
        return f"unusable: {exc}"


def panel(session: Session | None = None) -> Any:
    from cellcache.widget import CachePanel  # ipywidgets is imported only when a panel is asked for

    session = session or _loaded()
    if session is None:
        return CachePanel(_store())
    return CachePanel(session.local, session=session)


def _remote_info(session: Session) -> list[str]:
    from cellcache.remote.commands import info_lines  # the remote's own account: configured, in use or down, trusted signers

    try:
        return info_lines(session.config, session.store)
    except Exception as exc:  # noqa: BLE001 - `info` must answer even when the remote's settings are broken
        return [f"remote: {session.config.remote} (unusable: {exc})"]


active = _loaded(build=False)
