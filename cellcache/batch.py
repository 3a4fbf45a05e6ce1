"""Execute notebooks in batch with the extension preloaded: the logic behind ``cellcache run`` and ``status``.

Each notebook runs in its own real kernel through nbclient. Before the first
cell, a silent setup snippet loads cellcache in the kernel and switches its
Session to batch mode: the Session then appends one JSON line per ``%%cached``
cell to a report file private to this run. After every cell we read the new
lines to classify the cell:

- a line with status ``hit`` / ``miss`` / ``error`` gives that status;
- ``uncached`` (a ``%%cached`` cell that ran plainly: strategy off, cellcache
  disabled, an input that can't be fingerprinted) is reported as ``plain``,
  because that is what happened: the body ran and nothing was stored;
- ``would-run`` (restore-only mode) is the cell where ``status`` stopped;
- a code cell with no line is ``plain``, or ``error`` if it failed.

A failed execution always wins over the report: a hit whose replay raised is
an ``error``.

Cell indexes count from 0 over all cells of the notebook, markdown included,
as nbformat and nbclient count them.
"""
from __future__ import annotations

import asyncio
import json
import os
import re
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from cellcache import config as _config
from cellcache.errors import BatchError
from cellcache.store.atomic import atomic_write_bytes

if TYPE_CHECKING:
    from nbformat import NotebookNode
    from traitlets.config import Config

# nbformat and nbclient are imported where they are used: nbformat pulls in jsonschema and its
# format checkers, seconds of import time that the store commands of the CLI should not pay.

HIT = "hit"
MISS = "miss"
PLAIN = "plain"
ERROR = "error"
WOULD_RUN = "would-run"  # `status` only: the first cached cell that would miss
AFTER_MISS = "after-miss"  # `status` only: every code cell after it

# The Session's StepRun.status -> the cell's status in a batch result.
_FROM_SESSION = {"hit": HIT, "miss": MISS, "error": ERROR, "uncached": PLAIN, "would-run": WOULD_RUN}

NOTEBOOK_ENV = _config.NOTEBOOK_ENV

_CACHED_LINE = re.compile(r"^%%cached(?=\s|$)(.*)$")
_STOP_AT_MISS = "StopAtMiss"


@dataclass(frozen=True)
class RunOptions:
    """How to execute: one value shared by every notebook of a batch."""

    force: bool = False  # every cached cell re-runs and its entry is replaced
    restore_only: bool = False  # `status`: restore hits, stop at the first miss without running it
    inplace: bool = False  # write the executed notebook over its source
    output_dir: Path | None = None  # or write it into this folder, under its own name
    timeout: float | None = None  # seconds per cell; None: no limit
    kernel: str | None = None  # kernel name; None: the notebook's own kernelspec (python3 if none)
    allow_errors: bool = False  # keep executing after a failing cell
    jobs: int = 1  # notebooks executed at once, each in its own kernel
    startup_timeout: float = 60.0


@dataclass(frozen=True)
class CellResult:
    index: int
    step: str | None  # the step name for a %%cached cell, None for a plain one
    status: str  # hit, miss, plain, error; and for `status`: would-run, after-miss
    seconds: float
    saved_seconds: float
    error: str | None = None  # "ename: evalue" when status is error
    reason: str | None = None  # why a cached cell hit, missed or would run


@dataclass(frozen=True)
class NotebookResult:
    path: Path
    cells: tuple[CellResult, ...]
    error: str | None = None  # why the notebook stopped early (a failed cell, a dead kernel), if it did
    output: Path | None = None  # where the executed notebook was written, if it was

    @property
    def hits(self) -> int:
        return sum(c.status == HIT for c in self.cells)

    @property
    def misses(self) -> int:
        return sum(c.status == MISS for c in self.cells)

    @property
    def saved_seconds(self) -> float:
        return sum(c.saved_seconds for c in self.cells)

    @property
    def failed_cells(self) -> tuple[CellResult, ...]:
        return tuple(c for c in self.cells if c.status == ERROR)

    @property
    def ok(self) -> bool:
        return self.error is None and not self.failed_cells


class Listener:
    """Progress callbacks; the CLI draws them with rich. Called from worker threads when jobs > 1."""

    def notebook_started(self, path: Path, code_cells: int) -> None:
        pass

    def cell_started(self, path: Path, index: int, step: str | None) -> None:
        pass

    def cell_finished(self, path: Path, result: CellResult) -> None:
        pass

    def notebook_finished(self, result: NotebookResult) -> None:
        pass


# the %%cached line -------------------------------------------------------------


def _first_line(source: str) -> tuple[int, str] | None:
    """Index and text of the first non-blank line: IPython drops leading blank lines before a cell magic."""
    for number, line in enumerate(source.split("\n")):
        if line.strip():
            return number, line
    return None


def cached_args(source: str) -> Any | None:
    """The parsed ``%%cached`` line of a cell (argparse namespace), or None for any other cell.

    A line the magic itself would reject also gives None: the kernel reports that error, not us.
    """
    first = _first_line(source)
    if first is None:
        return None
    match = _CACHED_LINE.match(first[1])
    if match is None:
        return None
    from IPython.core.magic_arguments import parse_argstring

    from cellcache.magic import CellcacheMagics

    try:
        return parse_argstring(CellcacheMagics.cached, match.group(1).strip())
    except Exception:  # noqa: BLE001 - IPython's UsageError, or argparse's own exit
        return None


def is_cached(source: str) -> bool:
    first = _first_line(source)
    return first is not None and _CACHED_LINE.match(first[1]) is not None


def source_for_kernel(cell: NotebookNode) -> str:
    """The source to send: an unnamed ``%%cached`` cell gets its cell id as NAME.

    nbclient does not send cell ids to the kernel, so without this every unnamed
    step would be named by its code digest and lose its history on every edit.
    Interactive front ends send the id and the Session names the step by it, so
    the names agree. The written notebook keeps the user's source: this string
    is only sent. Cells without an id (nbformat < 4.5) keep the digest default,
    as does an id that starts with "-" (argparse would take it for an option).
    """
    source = cell.source
    cell_id = cell.get("id")
    if not cell_id or cell_id.startswith("-"):
        return source
    args = cached_args(source)
    if args is None or args.name is not None:
        return source
    number, line = _first_line(source)  # type: ignore[misc] - cached_args found it
    lines = source.split("\n")
    lines[number] = f"%%cached {cell_id}" + _CACHED_LINE.match(line).group(1)  # type: ignore[union-attr]
    renamed = "\n".join(lines)
    check = cached_args(renamed)
    return renamed if check is not None and check.name == cell_id else source


def step_hint(cell: NotebookNode) -> str | None:
    """The step's name as far as it is known before the cell runs: its NAME or its cell id.

    None for a plain cell, and for an unnamed cell without an id, whose name
    (``cell-<digest>``) only the kernel computes.
    """
    if cell.cell_type != "code" or not is_cached(cell.source):
        return None
    args = cached_args(source_for_kernel(cell))
    return args.name if args is not None else None


def _runnable(cell: NotebookNode) -> bool:
    return cell.cell_type == "code" and bool(cell.source.strip())


# one notebook ------------------------------------------------------------------


def read_notebook(path: Path) -> NotebookNode:
    import nbformat

    try:
        return nbformat.read(path, as_version=4)
    except FileNotFoundError:
        raise BatchError(f"notebook {str(path)!r} does not exist") from None
    except Exception as exc:  # noqa: BLE001 - nbformat raises several kinds for a file that is not a notebook
        raise BatchError(f"{path} is not a readable notebook: {exc}") from None


def kernel_env(nb_dir: Path, env: dict[str, str] | None = None, notebook: Path | None = None) -> dict[str, str]:
    """The kernel's environment, with the store resolved exactly once, here.

    The store is resolved as a kernel started in the notebook's folder would
    resolve it (CELLCACHE_DIR, pyproject, default), and passed as an absolute
    path, so a relative CELLCACHE_DIR can't come out differently in two places.
    The notebook's path goes where Jupyter Server puts it, so the kernel's
    steps belong to the source notebook (not to an output copy).
    """
    env = dict(os.environ if env is None else env)
    env["CELLCACHE_DIR"] = str(_config.resolve(cwd=nb_dir, env=env).dir)
    if notebook is not None:
        env[NOTEBOOK_ENV] = str(Path(notebook).resolve())
    return env


def _setup_code(report: Path | None, force: bool, restore_only: bool) -> str:
    # load_ipython_extension, not %load_ext: IPython's extension manager would then answer a
    # notebook's own `%load_ext cellcache` with "already loaded" in the cell's output. Called
    # directly, the notebook's %load_ext loads it once more, which the extension makes a silent no-op.
    return (
        "import cellcache as _cc\n"
        "_cc.load_ipython_extension(get_ipython())\n"
        f"get_ipython()._cellcache_session.configure_batch(report={str(report) if report else None!r}, force={force!r}, restore_only={restore_only!r})\n"
        "del _cc\n"
    )


def kernel_config() -> Config:
    """Encrypt the kernel's channels where both ends can (ipykernel declares CurveZMQ support).

    It is the safer transport, and it spares every run ipykernel's warning about
    plain-text TCP. Kernels that don't declare support run as before.
    """
    import zmq
    from traitlets.config import Config

    config = Config()
    config.KernelManager.transport_encryption = "auto" if zmq.has("curve") else "disabled"
    return config


async def setup_kernel(client: Any, report: Path | None = None, force: bool = False, restore_only: bool = False) -> None:
    """Load cellcache in the kernel of an nbclient client, silently, before its first cell."""
    kc = client.kc
    if kc is None:
        raise _SetupFailed("no kernel client")
    code = _setup_code(report, force, restore_only)
    msg_id = kc.execute(code, silent=True, store_history=False)
    reply = await client.async_wait_for_reply(msg_id)
    content = (reply or {}).get("content", {})
    if content.get("status") != "ok":
        raise _SetupFailed(f"{content.get('ename', 'error')}: {content.get('evalue', 'no reply')}")


async def flush_kernel(client: Any) -> None:
    """Wait for the kernel's write-behind entries: nbclient gives a shutting-down kernel only seconds."""
    kc = client.kc
    if kc is None:
        return
    code = "_cc_session = getattr(get_ipython(), '_cellcache_session', None)\n_cc_session and _cc_session.flush()\ndel _cc_session\n"
    await client.async_wait_for_reply(kc.execute(code, silent=True, store_history=False))


class _NotebookRun:
    """The state of one notebook's execution, fed by nbclient's hooks."""

    def __init__(self, path: Path, nb: NotebookNode, options: RunOptions, listener: Listener, report: Path) -> None:
        self.path = path
        self.nb = nb
        self.options = options
        self.listener = listener
        self.report = report
        self.offset = 0
        self.results: list[CellResult] = []
        self.current: int | None = None
        self.started = 0.0
        self.step: str | None = None
        self.originals: dict[int, str] = {}
        from nbclient import NotebookClient

        timeout = options.timeout
        self.client = NotebookClient(
            nb,
            kernel_name=options.kernel or "",
            # timeout_func, not timeout: nbclient's `timeout` trait only takes whole seconds.
            timeout_func=(lambda cell: timeout) if timeout else None,
            startup_timeout=int(max(options.startup_timeout, 1)),
            # `status` must stop at the first failure, which is how it stops at the first miss.
            allow_errors=options.allow_errors and not options.restore_only,
            resources={"metadata": {"path": str(path.parent)}},
            on_notebook_start=self._setup,
            on_cell_execute=self._before_cell,
            on_cell_executed=self._cell_executed,
            config=kernel_config(),
        )
        self.last_code = max((i for i, c in enumerate(nb.cells) if _runnable(c)), default=-1)

    async def _setup(self, notebook: NotebookNode) -> None:
        await setup_kernel(self.client, self.report, self.options.force, self.options.restore_only)

    def _before_cell(self, cell: NotebookNode, cell_index: int) -> None:
        self.current = cell_index
        self.step = step_hint(cell)
        sent = source_for_kernel(cell)
        if sent != cell.source:
            self.originals[cell_index] = cell.source
            cell.source = sent
        self.listener.cell_started(self.path, cell_index, self.step)
        self.started = time.perf_counter()

    def _after_cell(self, cell: NotebookNode, cell_index: int, execute_reply: dict[str, Any] | None) -> None:
        seconds = time.perf_counter() - self.started
        self._restore_source(cell_index)
        content = (execute_reply or {}).get("content", {})
        failed = content.get("status") == "error"
        error = f"{content.get('ename', 'Error')}: {content.get('evalue', '')}" if failed else None
        self._add(self._classify(cell_index, seconds, error, content.get("ename") if failed else None))

    async def _cell_executed(self, cell: NotebookNode, cell_index: int, execute_reply: dict[str, Any] | None) -> None:
        self._after_cell(cell, cell_index, execute_reply)
        failed = (execute_reply or {}).get("content", {}).get("status") == "error"
        if cell_index == self.last_code or (failed and not self.client.allow_errors):
            await flush_kernel(self.client)

    def _restore_source(self, index: int) -> None:
        if index in self.originals:
            self.nb.cells[index].source = self.originals.pop(index)

    def _new_lines(self) -> list[dict[str, Any]]:
        try:
            with self.report.open("rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return []
        # Only whole lines: the Session writes each line at once, but never trust a torn tail.
        complete = data[: data.rfind(b"\n") + 1]
        self.offset += len(complete)
        return [json.loads(line) for line in complete.splitlines() if line.strip()]

    def _classify(self, index: int, seconds: float, error: str | None, ename: str | None) -> CellResult:
        lines = self._new_lines()
        if not lines:
            return CellResult(index, None, ERROR if error else PLAIN, seconds, 0.0, error)
        run = lines[-1]  # one %%cached per cell; a cell that calls the magic twice is described by its last step
        saved = sum(float(line.get("saved_seconds") or 0.0) for line in lines)
        status = _FROM_SESSION.get(run.get("status"), PLAIN)
        if ename == _STOP_AT_MISS or status == WOULD_RUN:
            return CellResult(index, run.get("name"), WOULD_RUN, 0.0, 0.0, None, run.get("reason"))
        if error is not None:
            status = ERROR
        return CellResult(index, run.get("name"), status, seconds, saved if status == HIT else 0.0, error, run.get("reason"))

    def _add(self, result: CellResult) -> None:
        self.results.append(result)
        self.listener.cell_finished(self.path, result)

    async def execute(self, env: dict[str, str]) -> str | None:
        """Run every cell; return why the notebook stopped early, or None."""
        # The kernel's own stdout/stderr (shutdown noise from ipykernel and zmq, among others) would
        # land on the user's terminal; it goes to a log, quoted only when the kernel itself fails.
        log_path = self.report.with_name("kernel.log")
        with open(log_path, "wb") as log:
            return await self._execute(env, log, log_path)

    async def _execute(self, env: dict[str, str], log: Any, log_path: Path) -> str | None:
        from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

        try:
            await self.client.async_execute(env=env, stdout=log, stderr=log)
            return None
        except CellExecutionError as exc:
            if exc.ename == _STOP_AT_MISS:
                self._after_stop()
                return None
            failed = self.results[-1] if self.results else None
            step = f" (step {failed.step})" if failed is not None and failed.step else ""
            where = f"cell {failed.index}{step}" if failed is not None else "a cell"
            return f"{where} failed: {exc.ename}: {exc.evalue}"
        except CellTimeoutError:
            return self._interrupted(f"timed out after {self.options.timeout:g} s")
        except DeadKernelError:
            return self._interrupted("the kernel died" + _tail(log_path))
        except _SetupFailed as exc:
            return f"the kernel could not load cellcache: {exc}"
        except Exception as exc:  # noqa: BLE001 - a kernel that can't start, a broken connection: report, don't crash the batch
            if self.current is not None:
                return self._interrupted(f"{type(exc).__name__}: {exc}")
            return f"the kernel did not start: {type(exc).__name__}: {exc}{_tail(log_path)}"
        finally:
            for index in list(self.originals):
                self._restore_source(index)

    def _interrupted(self, why: str) -> str:
        """A cell that never got its reply: record it as the failure it is."""
        index = self.current
        if index is None:
            return why
        if not self.results or self.results[-1].index != index:
            seconds = time.perf_counter() - self.started
            self._new_lines()  # skip whatever the cell managed to report
            self._add(CellResult(index, self.step, ERROR, seconds, 0.0, why))
        step = f" (step {self.step})" if self.step else ""
        return f"cell {index}{step} failed: {why}"

    def _after_stop(self) -> None:
        """`status` stopped at a miss: every later code cell is reported, not run."""
        done = {r.index for r in self.results}
        last = self.results[-1].index if self.results else -1
        for index, cell in enumerate(self.nb.cells):
            if index > last and index not in done and _runnable(cell):
                self._add(CellResult(index, step_hint(cell), AFTER_MISS, 0.0, 0.0))


class _SetupFailed(Exception):
    pass


def _tail(log_path: Path, lines: int = 15) -> str:
    try:
        text = log_path.read_text(errors="replace").strip()
    except OSError:
        return ""
    return ("\nkernel log (last lines):\n" + "\n".join(text.splitlines()[-lines:])) if text else ""


def output_path(path: Path, options: RunOptions) -> Path | None:
    if options.restore_only:
        return None  # `status` never writes a notebook
    if options.inplace:
        return path
    if options.output_dir is not None:
        return options.output_dir / path.name
    return None


def _run_to_completion(coroutine: Any) -> Any:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    # Called from code that already runs an event loop in this thread (a Jupyter kernel,
    # Playwright's sync API): asyncio.run would refuse, so the notebook gets a thread of its own.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="cellcache-run") as pool:
        return pool.submit(asyncio.run, coroutine).result()


def run_notebook(path: Path, options: RunOptions = RunOptions(), listener: Listener | None = None) -> NotebookResult:
    """Execute one notebook in a fresh kernel and describe every code cell that ran."""
    import nbformat

    listener = listener or Listener()
    path = Path(path)
    nb = read_notebook(path)
    listener.notebook_started(path, sum(_runnable(c) for c in nb.cells))
    env = kernel_env(path.parent.resolve(), notebook=path)
    with tempfile.TemporaryDirectory(prefix="cellcache-run-") as tmp:
        run = _NotebookRun(path, nb, options, listener, Path(tmp) / "report.jsonl")
        error = _run_to_completion(run.execute(env))
    out = output_path(path, options)
    if out is not None:
        # Written even after a failure, as papermill does: the traceback is in the cell's outputs.
        # Atomic, so an interrupted write never leaves a truncated notebook (least of all with --inplace).
        try:
            atomic_write_bytes(out, nbformat.writes(nb).encode("utf-8"))
        except OSError as exc:
            error = error or f"the executed notebook could not be written to {out}: {exc}"
            out = None
    result = NotebookResult(path=path, cells=tuple(run.results), error=error, output=out)
    listener.notebook_finished(result)
    return result


# a batch -----------------------------------------------------------------------


def check(paths: Sequence[Path], options: RunOptions) -> None:
    """Refuse, before anything runs, a batch that can't work: raise BatchError with the reason."""
    if not paths:
        raise BatchError("no notebook given")
    if options.inplace and options.output_dir is not None:
        raise BatchError("--inplace and --output-dir exclude each other: choose one")
    if options.jobs < 1:
        raise BatchError(f"--jobs must be at least 1, not {options.jobs}")
    asked = {Path(p): read_notebook(Path(p)).metadata.get("kernelspec", {}).get("name") for p in paths}
    if options.output_dir is not None:
        seen: dict[str, Path] = {}
        for path in paths:
            name = Path(path).name
            if name in seen and Path(path).resolve() != seen[name].resolve():
                raise BatchError(f"{seen[name]} and {path} would both be written to {options.output_dir / name}")
            seen[name] = Path(path)
    _check_kernels(asked, options.kernel)


def _check_kernels(asked: dict[Path, str | None], kernel: str | None) -> None:
    """The kernel asked for, by --kernel or else by each notebook's metadata, must be installed."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    manager = KernelSpecManager()
    wanted: dict[str, Path | None] = {kernel: None} if kernel else {}
    if not kernel:
        for path, name in asked.items():
            if name:
                wanted.setdefault(name, path)
    for name, path in wanted.items():
        try:
            manager.get_kernel_spec(name)
        except NoSuchKernel:
            known = ", ".join(sorted(manager.find_kernel_specs())) or "none"
            if path is None:
                raise BatchError(f"no kernel named {name!r} (installed: {known})") from None
            raise BatchError(f"{path} asks for kernel {name!r}, which is not installed (installed: {known}); choose one with --kernel") from None


def run_notebooks(
    paths: Iterable[Path | str], options: RunOptions = RunOptions(), listener: Listener | None = None
) -> list[NotebookResult]:
    """Execute notebooks, ``options.jobs`` at a time; results come back in the order given.

    Each worker thread drives its own kernel with its own event loop; the kernels
    share the store, which is safe by construction (SQLite WAL, atomic renames).
    """
    paths = [Path(p) for p in paths]
    check(paths, options)
    if options.jobs == 1 or len(paths) == 1:
        return [run_notebook(p, options, listener) for p in paths]
    with ThreadPoolExecutor(max_workers=min(options.jobs, len(paths)), thread_name_prefix="cellcache-run") as pool:
        return list(pool.map(lambda p: run_notebook(p, options, listener), paths))


def status_notebooks(
    paths: Iterable[Path | str], options: RunOptions = RunOptions(), listener: Listener | None = None
) -> list[NotebookResult]:
    """Restore-only runs: plain cells run, hits are restored, each notebook stops at its first miss."""
    return run_notebooks(paths, replace(options, restore_only=True, force=False, inplace=False, output_dir=None), listener)


def to_json(results: Sequence[NotebookResult], with_reasons: bool = False) -> dict[str, Any]:
    """The ``--json`` document: ``{"notebooks": [{"path", "error", "cells": [...]}]}``."""

    def cell(c: CellResult) -> dict[str, Any]:
        data: dict[str, Any] = {
            "index": c.index,
            "step": c.step,
            "status": c.status,
            "seconds": round(c.seconds, 6),
            "saved_seconds": round(c.saved_seconds, 6),
        }
        if with_reasons:
            data["reason"] = c.reason
        return data

    return {"notebooks": [{"path": str(r.path), "error": r.error, "cells": [cell(c) for c in r.cells]} for r in results]}


__all__ = [
    "AFTER_MISS",
    "CellResult",
    "ERROR",
    "HIT",
    "Listener",
    "MISS",
    "NotebookResult",
    "PLAIN",
    "RunOptions",
    "WOULD_RUN",
    "check",
    "run_notebook",
    "run_notebooks",
    "status_notebooks",
    "to_json",
]
