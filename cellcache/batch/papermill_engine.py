"""``papermill in.ipynb out.ipynb --engine cellcache``: papermill's nbclient engine with cellcache loaded.

papermill imports every ``papermill.engine`` entry point while it is itself
being imported, so this module must import nothing heavy and never fail:
``CellcacheEngine`` is a plain class, and papermill is imported only when a
notebook is executed. (Subclassing ``NBClientEngine`` here would import
papermill from inside papermill's own import, a cycle that breaks ``import
papermill`` for everybody.)

The kernel gets what ``cellcache run`` gives its kernels: the store resolved
from the notebook's folder (so both find the same project store), the
notebook's path (so its steps are bookkept under that notebook), and the
extension loaded before the first cell.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def _local_path(path: Any) -> Path | None:
    """The input notebook as a local file, or None (stdin, s3://, an object papermill was handed)."""
    if not isinstance(path, (str, os.PathLike)):
        return None
    text = os.fspath(path)
    if "://" in text or text in ("-", ""):
        return None
    candidate = Path(text).expanduser()
    return candidate.resolve() if candidate.is_file() else None


def _kernel_env(input_path: Any, cwd: Any) -> dict[str, str]:
    from cellcache import batch

    notebook = _local_path(input_path)
    folder = notebook.parent if notebook is not None else Path(cwd or os.getcwd()).resolve()
    env = batch.kernel_env(folder)
    if notebook is not None:
        env[batch.NOTEBOOK_ENV] = str(notebook)
    return env


def _auto_configured(input_path: Any, cwd: Any) -> bool:
    from cellcache import batch

    notebook = _local_path(input_path)
    return batch.auto_configured(notebook if notebook is not None else Path(cwd or os.getcwd()).resolve() / "_")


class CellcacheEngine:
    """A papermill engine: ``NBClientEngine``, with the kernel set up as ``cellcache run`` sets it up."""

    @classmethod
    def execute_notebook(cls, nb: Any, kernel_name: str, **kwargs: Any) -> Any:
        return _engine().execute_notebook(nb, kernel_name, **kwargs)

    @classmethod
    def execute_managed_notebook(cls, nb_man: Any, kernel_name: str, **kwargs: Any) -> Any:
        return _engine().execute_managed_notebook(nb_man, kernel_name, **kwargs)

    @classmethod
    def nb_kernel_name(cls, nb: Any, name: str | None = None) -> str:
        return _engine().nb_kernel_name(nb, name)

    @classmethod
    def nb_language(cls, nb: Any, language: str | None = None) -> str:
        return _engine().nb_language(nb, language)


_ENGINE: Any = None


def _engine() -> Any:
    """The real engine class, built on first use, when papermill is fully imported."""
    global _ENGINE
    if _ENGINE is None:
        _ENGINE = _build_engine()
    return _ENGINE


def _build_engine() -> Any:
    from papermill.clientwrap import PapermillNotebookClient
    from papermill.engines import NBClientEngine
    from papermill.log import logger
    from nbclient.util import run_sync
    from papermill.utils import merge_kwargs, remove_args

    from cellcache import batch

    class _Engine(NBClientEngine):  # type: ignore[misc, valid-type]
        @classmethod
        def execute_managed_notebook(
            cls,
            nb_man: Any,
            kernel_name: str,
            log_output: bool = False,
            stdout_file: Any = None,
            stderr_file: Any = None,
            start_timeout: int = 60,
            execution_timeout: float | None = None,
            **kwargs: Any,
        ) -> Any:
            # As NBClientEngine does, plus an environment and a setup hook for the kernel.
            env = _kernel_env(kwargs.get("input_path"), kwargs.get("cwd"))
            # Auto mode: `execute_notebook(..., auto=True)`, or the project's `auto = true` / CELLCACHE_AUTO=1.
            auto = bool(kwargs.pop("auto", False)) or _auto_configured(kwargs.get("input_path"), kwargs.get("cwd"))
            kwargs = remove_args(["input_path", "timeout", "startup_timeout"], **kwargs)
            final_kwargs = merge_kwargs(
                kwargs,
                timeout=execution_timeout if execution_timeout else kwargs.get("timeout"),
                startup_timeout=start_timeout,
                kernel_name=kernel_name,
                log=logger,
                log_output=log_output,
                stdout_file=stdout_file,
                stderr_file=stderr_file,
            )
            client = (_AutoClient if auto else PapermillNotebookClient)(nb_man, **final_kwargs)

            async def setup(notebook: Any = None, **_: Any) -> None:
                await batch.setup_kernel(client, auto=auto)

            client.on_notebook_start = setup
            return client.execute(env=env)

    class _AutoClient(PapermillNotebookClient):  # type: ignore[misc, valid-type]
        """Sends each cell with its id and tags as a last comment line, as `cellcache run --auto` does."""

        async def async_execute_cell(self, cell: Any, cell_index: int, *args: Any, **kwargs: Any) -> Any:
            original = cell.source
            if cell.cell_type == "code":
                cell.source = batch.auto_source(cell, batch.source_for_kernel(cell))
            try:
                return await super().async_execute_cell(cell, cell_index, *args, **kwargs)
            finally:
                cell.source = original

        # nbclient's sync execute_cell wraps the base class's coroutine, not this one: papermill calls it.
        execute_cell = run_sync(async_execute_cell)

    _Engine.__name__ = _Engine.__qualname__ = "CellcacheEngine"
    return _Engine


__all__ = ["CellcacheEngine"]
