"""Execute notebooks in batch with the extension preloaded: the logic behind ``cellcache run`` and ``status``.

A batch is a list of jobs, one per (notebook, parameters) pair. Each job runs
in its own real kernel through nbclient; jobs run one at a time, in a local
pool (``jobs``), or on a Dask cluster (``executor``). Before the first cell, a
silent setup snippet loads cellcache in the kernel and switches its Session to
batch mode: the Session then appends one JSON line per ``%%cached`` cell to a
report file private to this job, and every ``CacheWarning`` the kernel shows is
copied there too. After every cell we read the new lines to classify the cell:

- a line with status ``hit`` / ``miss`` / ``error`` gives that status;
- ``uncached`` (a ``%%cached`` cell that ran plainly: strategy off, cellcache
  disabled, an input that can't be fingerprinted) is reported as ``plain``,
  because that is what happened: the body ran and nothing was stored;
- ``would-run`` (restore-only mode, ``status``) is a cached cell that would run;
- a code cell with no line is ``plain``, or ``error`` if it failed.

A failed execution always wins over the report: a hit whose replay raised is
an ``error``. After a failure (or Ctrl-C) every later code cell is ``not run``.

``status`` never executes a cached body. At the first step that would run it
keeps going: the cells' reads and writes (``cellcache.cell.analysis`` on the
transformed source) tell which later cells read what a would-run step writes,
directly or through other cells; those are not executed at all, and are
reported as ``would run: reads w from fit`` (cached) or ``not run`` (plain).
Every other cell runs or is restored as usual.

Cell indexes count from 0 over all cells of the notebook, markdown included,
as nbformat and nbclient count them; an injected-parameters cell counts too.
"""
from __future__ import annotations

import asyncio
import functools
import json
import os
import re
import tempfile
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

from cellcache import config as _config
from cellcache.batch import sweep as _sweep
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
NOT_RUN = "not run"  # after a failure or Ctrl-C; in `status`, a plain cell that reads a would-run step's outputs
INTERRUPTED = "interrupted"  # the cell that was running when the run was stopped
WOULD_RUN = "would-run"  # `status` only: a cached cell that would run
AFTER_MISS = "after-miss"  # kept for readers of older JSON; `status` no longer stops at a miss

# The Session's StepRun.status -> the cell's status in a batch result.
_FROM_SESSION = {"hit": HIT, "miss": MISS, "error": ERROR, "uncached": PLAIN, "plain": PLAIN, "would-run": WOULD_RUN}

NOTEBOOK_ENV = _config.NOTEBOOK_ENV

_CACHED_LINE = re.compile(r"^%%cached(?=\s|$)(.*)$")
_STOP_AT_MISS = "StopAtMiss"
_DASK_HINT = "the Dask executor needs the dask extra: pip install 'cellcache[dask]'"


@dataclass(frozen=True)
class RunOptions:
    """How to execute: one value shared by every job of a batch."""

    force: bool = False  # every cached cell re-runs and its entry is replaced
    restore_only: bool = False  # `status`: restore hits, never run a cached body
    inplace: bool = False  # write the executed notebook over its source
    output_dir: Path | None = None  # or write it into this folder, under its own (or its parameters') name
    timeout: float | None = None  # seconds per cell; None: no limit
    kernel: str | None = None  # kernel name; None: the notebook's own kernelspec (python3 if none)
    allow_errors: bool = False  # keep executing after a failing cell
    jobs: int = 1  # jobs executed at once, each in its own kernel
    startup_timeout: float = 60.0
    store_dir: Path | None = None  # the store every kernel uses; None: found from each notebook's project
    log_output: bool = False  # stream the cells' output to the listener as it comes
    executor: str | None = None  # "dask://HOST:PORT": run the jobs on that Dask cluster
    auto: bool = False  # auto mode: every code cell a stage where caching pays (also on if the project's config says so)


@dataclass(frozen=True)
class Job:
    """One notebook with one set of parameters: the unit that gets a kernel of its own."""

    path: Path
    parameters: _sweep.Combination = field(default_factory=_sweep.Combination)
    output: Path | None = None  # where the executed notebook goes, if anywhere

    @property
    def label(self) -> str:
        params = self.parameters.label()
        return f"{self.path} [{params}]" if params else str(self.path)

    @property
    def title(self) -> str:
        """The heading of this job's table: the path and every parameter given, ``nb.ipynb [lr=0.01, epochs=100]``."""
        params = self.parameters.title()
        return f"{self.path} {params}" if params else str(self.path)


@dataclass(frozen=True)
class CellResult:
    index: int
    step: str | None  # the step name for a %%cached cell, None for a plain one
    status: str  # hit, miss, plain, error, not run, interrupted; and for `status`: would-run
    seconds: float
    saved_seconds: float
    error: str | None = None  # "ename: evalue" when status is error
    reason: str | None = None  # why a cached cell hit, missed or would run; why a cell was not run
    warnings: tuple[str, ...] = ()  # the CacheWarnings the kernel showed while this cell ran

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "step": self.step,
            "status": self.status,
            "seconds": round(self.seconds, 6),
            "saved_seconds": round(self.saved_seconds, 6),
            "reason": self.reason,
            "error": self.error,
            "warnings": list(self.warnings),
        }


@dataclass(frozen=True)
class NotebookResult:
    path: Path
    cells: tuple[CellResult, ...]
    error: str | None = None  # why the notebook stopped early (a failed cell, a dead kernel, Ctrl-C), if it did
    output: Path | None = None  # where the executed notebook was written, if it was
    parameters: _sweep.Combination = field(default_factory=_sweep.Combination)
    interrupted: bool = False

    def count(self, status: str) -> int:
        return sum(c.status == status for c in self.cells)

    @property
    def hits(self) -> int:
        return self.count(HIT)

    @property
    def misses(self) -> int:
        return self.count(MISS)

    @property
    def saved_seconds(self) -> float:
        return sum(c.saved_seconds for c in self.cells)

    @property
    def failed_cells(self) -> tuple[CellResult, ...]:
        return tuple(c for c in self.cells if c.status == ERROR)

    @property
    def ok(self) -> bool:
        return self.error is None and not self.failed_cells

    @property
    def label(self) -> str:
        return Job(self.path, self.parameters).label

    @property
    def title(self) -> str:
        return Job(self.path, self.parameters).title

    def to_json(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "parameters": self.parameters.to_json(),
            "output": str(self.output) if self.output else None,
            "error": self.error,
            "interrupted": self.interrupted,
            "cells": [c.to_json() for c in self.cells],
        }


_COUNTED = (HIT, MISS, PLAIN, ERROR, NOT_RUN, WOULD_RUN)


@dataclass(frozen=True)
class BatchResult:
    """A whole `cellcache run` or `status`: every job, the store they used, and how it ended."""

    notebooks: tuple[NotebookResult, ...]
    store: Path | None
    interrupted: bool = False
    notes: tuple[str, ...] = ()  # things the user should know about the run as a whole

    def counts(self) -> dict[str, int]:
        totals = {status: sum(r.count(status) for r in self.notebooks) for status in _COUNTED}
        totals[NOT_RUN] += sum(r.count(INTERRUPTED) for r in self.notebooks)
        return totals

    @property
    def saved_seconds(self) -> float:
        return sum(r.saved_seconds for r in self.notebooks)

    @property
    def ok(self) -> bool:
        return not self.interrupted and all(r.ok for r in self.notebooks)

    def to_json(self) -> dict[str, Any]:
        return {
            "store": str(self.store) if self.store else None,
            "interrupted": self.interrupted,
            "notes": list(self.notes),
            "summary": {**{k.replace(" ", "_").replace("-", "_"): v for k, v in self.counts().items()}, "saved_seconds": round(self.saved_seconds, 6)},
            "notebooks": [r.to_json() for r in self.notebooks],
        }


class Listener:
    """Progress callbacks; the CLI draws them with rich. Called from worker threads when jobs > 1."""

    def notebook_started(self, job: Job, code_cells: int) -> None:
        pass

    def cell_started(self, job: Job, index: int, step: str | None) -> None:
        pass

    def cell_output(self, job: Job, index: int, text: str) -> None:
        """A piece of a cell's output, as it comes (only with ``log_output``)."""

    def cell_finished(self, job: Job, result: CellResult) -> None:
        pass

    def notebook_finished(self, job: Job, result: NotebookResult) -> None:
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
    from cellcache.cell.spec import SpecError, parse_line  # the magic's own grammar

    try:
        return parse_line(match.group(1).strip())
    except SpecError:
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


def auto_configured(path: Path) -> bool:
    """Whether the notebook's project turns auto mode on (``auto = true``, ``CELLCACHE_AUTO=1``)."""
    try:
        return _config.resolve(cwd=Path(path).parent.resolve()).auto
    except Exception:  # noqa: BLE001 - a broken config is reported by the kernel that loads it
        return False


def auto_source(cell: NotebookNode, sent: str) -> str:
    """What auto mode sends for a cell: its id, or its ``no-cache`` tag, as a last comment line."""
    from cellcache.cell import auto

    return auto.mark(sent, cell.get("id"), cell.get("metadata", {}).get("tags", ()))


def auto_step_hint(cell: NotebookNode) -> str | None:
    """An auto-mode stage's name before it runs: its cell id (None for a cell with its own magic or tagged no-cache)."""
    from cellcache.cell import auto

    if cell.cell_type != "code" or auto.own_rule(cell.source) is not None or auto.NO_CACHE_TAG in cell.get("metadata", {}).get("tags", ()):
        return None
    return cell.get("id") or None


def _runnable(cell: NotebookNode) -> bool:
    return cell.cell_type == "code" and bool(cell.source.strip())


# one notebook ------------------------------------------------------------------


def cell_names(source: str) -> Any | None:
    """What a cell reads and writes, as the kernel will see it: the body of a ``%%cached`` cell, else the
    whole cell, after IPython's transform (so magics and ``!`` lines are calls, not syntax errors).

    None when the cell is not valid Python even then: the caller treats it as reading everything.
    """
    from IPython.core.inputtransformer2 import TransformerManager

    from cellcache.cell.analysis import analyze

    body = source
    first = _first_line(source)
    if first is not None and _CACHED_LINE.match(first[1]):
        body = "\n".join(source.split("\n")[first[0] + 1 :])
    try:
        return analyze(TransformerManager().transform_cell(body))
    except (SyntaxError, ValueError, RecursionError):
        return None


def read_notebook(path: Path) -> NotebookNode:
    """Read and validate a notebook: a malformed one is a usage error with the reason, never a traceback later."""
    import nbformat

    try:
        nb = nbformat.read(path, as_version=4)
    except FileNotFoundError:
        raise BatchError(f"notebook {str(path)!r} does not exist") from None
    except Exception as exc:  # noqa: BLE001 - nbformat raises several kinds for a file that is not a notebook
        raise BatchError(f"{path} is not a readable notebook: {exc}") from None
    try:
        nbformat.validate(nb)
    except nbformat.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) if getattr(exc, "absolute_path", None) else "the notebook"
        raise BatchError(f"{path} is not a valid notebook: {where}: {exc.message}") from None
    return nb


def notebooks_in(paths: Iterable[Path | str]) -> list[Path]:
    """Notebook arguments as given, a folder standing for its notebooks in name order (not recursing)."""
    found: list[Path] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            inside = sorted(p for p in path.glob("*.ipynb") if p.is_file() and not p.name.startswith("."))
            if not inside:
                raise BatchError(f"the folder {str(path)!r} holds no notebook (*.ipynb)")
            found.extend(inside)
        else:
            found.append(path)
    return found


def kernel_env(
    nb_dir: Path, env: dict[str, str] | None = None, notebook: Path | None = None, store_dir: Path | None = None
) -> dict[str, str]:
    """The kernel's environment, with the store resolved exactly once, here.

    The store is resolved as a kernel started in the notebook's folder would
    resolve it (CELLCACHE_DIR against the project root, pyproject, default),
    and passed as an absolute path, so a relative CELLCACHE_DIR can't come out
    differently in two places. The notebook's path goes where Jupyter Server
    puts it, so the kernel's steps belong to the source notebook (not to an
    output copy, nor to one combination of a sweep).
    """
    env = dict(os.environ if env is None else env)
    env["CELLCACHE_DIR"] = str(Path(store_dir).resolve() if store_dir else _config.resolve(cwd=nb_dir, env=env).dir)
    if notebook is not None:
        env[NOTEBOOK_ENV] = str(Path(notebook).resolve())
    return env


def _setup_code(report: Path | None, force: bool, restore_only: bool, auto: bool = False) -> str:
    # load_ipython_extension, not %load_ext: IPython's extension manager would then answer a
    # notebook's own `%load_ext cellcache` with "already loaded" in the cell's output. Called
    # directly, the notebook's %load_ext loads it once more, which the extension makes a silent no-op.
    lines = ["import cellcache as _cc", "_cc.load_ipython_extension(get_ipython())"]
    if report is not None:
        lines += [
            "import cellcache.batch as _ccb",
            f"_ccb.report_warnings({str(report)!r})",
            "del _ccb",
            f"_cc.api.configure_batch(report={str(report)!r}, force={force!r}, restore_only={restore_only!r})",
        ]
    if auto:
        lines.append("_cc.api.configure_auto(True)")
    lines.append("del _cc")
    return "\n".join(lines) + "\n"


def report_warnings(report: str) -> None:
    """In the kernel: copy every CacheWarning shown into the job's report, and still show it as usual.

    "always" for CacheWarning only: the default filter shows a message once per place, and in a
    batch each of them belongs in the table.
    """
    import warnings

    from cellcache.errors import CacheWarning

    shown = warnings.showwarning

    def showwarning(message: Any, category: type, filename: str, lineno: int, file: Any = None, line: str | None = None) -> None:
        if isinstance(category, type) and issubclass(category, CacheWarning):
            try:
                with open(report, "a", encoding="utf-8") as f:
                    f.write(json.dumps({"warning": str(message)}) + "\n")
            except OSError:
                pass  # the report is a courtesy; the warning is still shown below
        shown(message, category, filename, lineno, file, line)

    warnings.showwarning = showwarning
    warnings.simplefilter("always", CacheWarning)


async def setup_kernel(
    client: Any, report: Path | None = None, force: bool = False, restore_only: bool = False, auto: bool = False
) -> None:
    """Load cellcache in the kernel of an nbclient client, silently, before its first cell."""
    kc = client.kc
    if kc is None:
        raise _SetupFailed("no kernel client")
    code = _setup_code(report, force, restore_only, auto)
    msg_id = kc.execute(code, silent=True, store_history=False)
    reply = await client.async_wait_for_reply(msg_id)
    content = (reply or {}).get("content", {})
    if content.get("status") != "ok":
        raise _SetupFailed(f"{content.get('ename', 'error')}: {content.get('evalue', 'no reply')}")


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


_SHUTDOWN_POLL = 0.01  # seconds between checks that a shut-down kernel has exited (jupyter_client's: 0.1)
# Tries to start a job's kernel. Ports are chosen before the kernel binds them, so with several kernels starting
# at once on a loaded machine one can die with "Address already in use"; a new try picks new ports.
KERNEL_START_TRIES = 3


@functools.lru_cache(maxsize=1)
def _kernel_manager_class() -> type:
    """jupyter_client's async kernel manager, noticing a kernel's exit within 10 ms instead of 100.

    A batch of notebooks waits for each kernel to exit; polling every 0.1 s added
    50 ms to each notebook on average, up to 100.
    """
    from jupyter_client.manager import AsyncKernelManager

    class _KernelManager(AsyncKernelManager):  # type: ignore[misc, valid-type]
        async def _async_finish_shutdown(
            self, waittime: float | None = None, pollinterval: float = 0.1, restart: bool = False
        ) -> None:
            await super()._async_finish_shutdown(waittime, min(pollinterval, _SHUTDOWN_POLL), restart)

    return _KernelManager


def _client_class() -> type:
    """nbclient's client, plus a hook on every output message (for --log-output)."""
    from nbclient import NotebookClient

    class _Client(NotebookClient):  # type: ignore[misc, valid-type]
        on_output: Callable[[int, Any], None] | None = None

        def output(self, outs: Any, msg: Any, display_id: Any, cell_index: int) -> Any:
            out = super().output(outs, msg, display_id, cell_index)
            if out is not None and self.on_output is not None:
                self.on_output(cell_index, out)
            return out

    return _Client


def _output_text(out: Any) -> str:
    if out.get("output_type") == "stream":
        return "".join(out.get("text", ""))
    if out.get("output_type") == "error":
        return f"{out.get('ename')}: {out.get('evalue')}\n"
    data = out.get("data", {})
    text = data.get("text/plain")
    return "".join(text) + "\n" if text else ""


async def flush_kernel(client: Any) -> None:
    """Wait for the kernel's write-behind entries: nbclient gives a shutting-down kernel only seconds."""
    kc = client.kc
    if kc is None:
        return
    # Then let push = "auto" finish: a job on another machine may be waiting for these entries.
    code = "import cellcache as _cc\n_cc.flush(push_timeout=30)\ndel _cc\n"
    await client.async_wait_for_reply(kc.execute(code, silent=True, store_history=False))


class _Stopped(Exception):
    """Raised from a hook to stop a notebook (a real failure during `status`, which runs with errors allowed)."""


class _NotebookRun:
    """The state of one job's execution, fed by nbclient's hooks."""

    def __init__(self, job: Job, nb: NotebookNode, options: RunOptions, listener: Listener, report: Path) -> None:
        self.job = job
        self.path = job.path
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
        # `status`: names a would-run step (or a cell downstream of one) writes -> that step; cells skipped for it.
        self.tainted: dict[str, str] = {}
        self.skipped: dict[int, tuple[str, str, bool]] = {}
        self.loop: asyncio.AbstractEventLoop | None = None
        self.task: asyncio.Task[Any] | None = None
        self.user_stopped = False

        timeout = options.timeout
        self.client = _client_class()(
            nb,
            kernel_name=options.kernel or "",
            # timeout_func, not timeout: nbclient's `timeout` trait only takes whole seconds.
            timeout_func=(lambda cell: timeout) if timeout else None,
            startup_timeout=int(max(options.startup_timeout, 1)),
            # `status` keeps going past a would-run step (StopAtMiss); a real failure stops it from _after_cell.
            allow_errors=options.allow_errors or options.restore_only,
            resources={"metadata": {"path": str(job.path.parent)}},
            on_notebook_start=self._setup,
            on_cell_execute=self._before_cell,
            on_cell_executed=self._cell_executed,
            config=kernel_config(),
            kernel_manager_class=_kernel_manager_class(),
        )
        self.last_code = max((i for i, c in enumerate(nb.cells) if _runnable(c)), default=-1)
        self.auto = options.auto or auto_configured(job.path)
        if options.log_output:
            self.client.on_output = lambda index, out: self.listener.cell_output(job, index, _output_text(out))

    async def _setup(self, notebook: NotebookNode) -> None:
        await setup_kernel(self.client, self.report, self.options.force, self.options.restore_only, self.auto)

    def _before_cell(self, cell: NotebookNode, cell_index: int) -> None:
        self.current = cell_index
        self.step = step_hint(cell)
        sent = source_for_kernel(cell)
        if self.auto:  # the cell's id and tags travel as a last comment line, which auto mode reads and drops
            sent = auto_source(cell, sent)
            self.step = self.step or auto_step_hint(cell)
        if self.options.restore_only and self.tainted:
            names = cell_names(cell.source)
            reads = sorted(self.tainted) if names is None else sorted(n for n in names.reads if n in self.tainted)
            if reads:
                self.skipped[cell_index] = (reads[0], self.tainted[reads[0]], is_cached(cell.source))
                sent = "pass"  # never executed: it reads what a would-run step would change
        if sent != cell.source:
            self.originals[cell_index] = cell.source
            cell.source = sent
        self.listener.cell_started(self.job, cell_index, self.step)
        self.started = time.perf_counter()

    def _after_cell(self, cell: NotebookNode, cell_index: int, execute_reply: dict[str, Any] | None) -> None:
        seconds = time.perf_counter() - self.started
        self._restore_source(cell_index)
        content = (execute_reply or {}).get("content", {})
        failed = content.get("status") == "error"
        error = f"{content.get('ename', 'Error')}: {content.get('evalue', '')}" if failed else None
        result = self._classify(cell_index, seconds, error, content.get("ename") if failed else None)
        if cell_index in self.skipped:
            cell.outputs = []
            cell.execution_count = None
        self._add(result)
        if self.options.restore_only:
            if result.status in (WOULD_RUN, NOT_RUN):
                self._taint(cell, result)
            elif result.status == ERROR and not self.options.allow_errors:
                raise _Stopped(result.error)

    async def _cell_executed(self, cell: NotebookNode, cell_index: int, execute_reply: dict[str, Any] | None) -> None:
        try:
            self._after_cell(cell, cell_index, execute_reply)
        except _Stopped:
            await flush_kernel(self.client)
            raise
        failed = (execute_reply or {}).get("content", {}).get("status") == "error"
        if cell_index == self.last_code or (failed and not self.client.allow_errors):
            await flush_kernel(self.client)

    def _taint(self, cell: NotebookNode, result: CellResult) -> None:
        names = cell_names(cell.source)
        # The producer is this cell, even when it was itself skipped for reading an earlier step's
        # output: "reads X_clean from clean", not "from generate", which never wrote X_clean.
        origin = result.step or f"cell {result.index}"
        for name in (names.writes | names.deletes) if names is not None else ():
            self.tainted.setdefault(name, origin)

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
        lines = []
        for line in complete.splitlines():
            try:
                lines.append(json.loads(line))
            except ValueError:
                continue  # a line we cannot read describes nothing we can report
        return lines

    def _classify(self, index: int, seconds: float, error: str | None, ename: str | None) -> CellResult:
        lines = self._new_lines()
        warned = tuple(str(line["warning"]) for line in lines if "warning" in line)
        runs = [line for line in lines if "warning" not in line]
        if index in self.skipped:
            name, origin, cached = self.skipped[index]
            status = WOULD_RUN if cached else NOT_RUN
            return CellResult(index, self.step, status, 0.0, 0.0, None, f"reads {name} from {origin}", warned)
        if not runs:
            return CellResult(index, None, ERROR if error else PLAIN, seconds, 0.0, error, error, warned)
        run = runs[-1]  # one %%cached per cell; a cell that calls the magic twice is described by its last step
        saved = sum(float(line.get("saved_seconds") or 0.0) for line in runs)
        status = _FROM_SESSION.get(run.get("status"), PLAIN)
        reason = run.get("reason")
        if ename == _STOP_AT_MISS or status == WOULD_RUN:
            return CellResult(index, run.get("name"), WOULD_RUN, 0.0, 0.0, None, reason, warned)
        if error is not None:
            status, reason = ERROR, error
        elif status == HIT:
            remote = "remote, " if (reason or "").startswith("hit (remote)") else ""
            reason = f"hit ({remote}saved {_seconds(saved)})"
        return CellResult(index, run.get("name"), status, seconds, saved if status == HIT else 0.0, error, reason, warned)

    def _add(self, result: CellResult) -> None:
        self.results.append(result)
        self.listener.cell_finished(self.job, result)

    async def execute(self, env: dict[str, str]) -> str | None:
        """Run every cell; return why the notebook stopped early, or None."""
        self.loop = asyncio.get_running_loop()
        self.task = asyncio.current_task()
        # The kernel's own stdout/stderr (shutdown noise from ipykernel and zmq, among others) would
        # land on the user's terminal; it goes to a log, quoted only when the kernel itself fails.
        log_path = self.report.with_name("kernel.log")
        with open(log_path, "wb") as log:
            return await self._execute(env, log, log_path)

    def stop(self) -> None:
        """Ctrl-C, from another thread: interrupt the running cell, then end the job (the kernel is shut down)."""
        self.user_stopped = True
        loop, task = self.loop, self.task
        if loop is None or task is None:
            return

        async def interrupt_then_cancel() -> None:
            km = self.client.km
            try:
                if km is not None and self.current is not None:
                    await asyncio.wait_for(asyncio.ensure_future(km.interrupt_kernel()), 5)
            except Exception:  # noqa: BLE001 - a kernel that can't be interrupted is shut down all the same
                pass
            task.cancel()

        try:
            loop.call_soon_threadsafe(lambda: loop.create_task(interrupt_then_cancel()))
        except RuntimeError:
            pass  # the loop already finished: nothing left to stop

    async def _start_kernel(self, env: dict[str, str], log: Any) -> None:
        """Start the job's kernel and load cellcache in it, with a bounded number of tries.

        Done here rather than inside nbclient's execute: a start that fails there
        leaves its atexit cleanup registered, which prints a traceback when the
        batch exits, and gives no second chance.
        """
        from jupyter_core.utils import ensure_async

        client = self.client
        for attempt in range(1, KERNEL_START_TRIES + 1):
            if self.user_stopped:
                raise asyncio.CancelledError
            client.km = client.create_kernel_manager()
            try:
                await client.async_start_new_kernel(env=env, stdout=log, stderr=log)
                client.kc = client.km.client()
                await ensure_async(client.kc.start_channels())
                await ensure_async(client.kc.wait_for_ready(timeout=client.startup_timeout))
                client.kc.allow_stdin = False
            except Exception as exc:  # noqa: BLE001 - the kernel died at start, a port was taken, it never answered
                await self._discard_kernel()
                if attempt == KERNEL_START_TRIES:
                    raise _KernelStartFailed(f"{type(exc).__name__}: {exc} ({attempt} tries)") from exc
                log.write(f"cellcache: kernel start {attempt} failed ({type(exc).__name__}: {exc}); trying again\n".encode())
                log.flush()
                await asyncio.sleep(0.2 * attempt)
                continue
            except BaseException:
                await self._discard_kernel()
                raise
            break
        try:
            await self._setup(self.nb)  # nbclient's on_notebook_start, which its own start would have run
        except BaseException:
            await self._discard_kernel()
            raise

    async def _discard_kernel(self) -> None:
        """Stop and forget a kernel that did not start (or whose setup failed): nothing of it outlives the job."""
        from jupyter_core.utils import ensure_async

        client = self.client
        km, kc = client.km, client.kc
        client.km = client.kc = None
        try:
            if kc is not None:
                await ensure_async(kc.stop_channels())
            if km is not None:
                if await ensure_async(km.is_alive()):
                    await ensure_async(km.shutdown_kernel(now=True))
                await ensure_async(km.cleanup_resources())
        except Exception:  # noqa: BLE001 - a kernel that never started may have nothing left to stop
            pass

    async def _execute(self, env: dict[str, str], log: Any, log_path: Path) -> str | None:
        from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

        try:
            if self.user_stopped:
                raise asyncio.CancelledError
            await self._start_kernel(env, log)
            await self.client.async_execute(env=env, stdout=log, stderr=log)
            return None
        except asyncio.CancelledError:
            return self._interrupted_by_user()
        except _Stopped:
            return self._failure_message()
        except CellExecutionError:
            return self._failure_message()
        except CellTimeoutError:
            return self._interrupted(f"timed out after {self.options.timeout:g} s")
        except DeadKernelError:
            if self.user_stopped:
                return self._interrupted_by_user()
            return self._interrupted("the kernel died" + _tail(log_path))
        except _SetupFailed as exc:
            return f"the kernel could not load cellcache: {exc}"
        except _KernelStartFailed as exc:
            if self.user_stopped:
                return self._interrupted_by_user()
            return f"the kernel did not start: {exc}{_tail(log_path)}"
        except Exception as exc:  # noqa: BLE001 - a kernel that can't start, a broken connection: report, don't crash the batch
            if self.user_stopped:
                return self._interrupted_by_user()
            if self.current is not None:
                return self._interrupted(f"{type(exc).__name__}: {exc}")
            return f"the kernel did not start: {type(exc).__name__}: {exc}{_tail(log_path)}"
        finally:
            for index in list(self.originals):
                self._restore_source(index)

    def _failure_message(self) -> str:
        failed = next((r for r in reversed(self.results) if r.status == ERROR), None)
        if failed is None:
            return "a cell failed"
        step = f" (step {failed.step})" if failed.step else ""
        return f"cell {failed.index}{step} failed: {failed.error}"

    def _interrupted(self, why: str) -> str:
        """A cell that never got its reply: record it as the failure it is."""
        index = self.current
        if index is None:
            return why
        if not self.results or self.results[-1].index != index:
            seconds = time.perf_counter() - self.started
            self._new_lines()  # skip whatever the cell managed to report
            self._add(CellResult(index, self.step, ERROR, seconds, 0.0, why, why))
        step = f" (step {self.step})" if self.step else ""
        return f"cell {index}{step} failed: {why}"

    def _interrupted_by_user(self) -> str:
        index = self.current
        if index is not None and (not self.results or self.results[-1].index != index):
            seconds = time.perf_counter() - self.started
            self._new_lines()
            self._add(CellResult(index, self.step, INTERRUPTED, seconds, 0.0, None, "interrupted (Ctrl-C)"))
        return "interrupted"

    def finish(self, why: str | None) -> None:
        """Every runnable cell without a result after a stop is listed as not run, with the reason."""
        if why is None:
            return
        done = {r.index for r in self.results}
        reason = "interrupted" if self.user_stopped else "after " + why.split(":")[0]
        for index, cell in enumerate(self.nb.cells):
            if index not in done and _runnable(cell) and (not self.results or index > self.results[-1].index):
                self._add(CellResult(index, step_hint(cell), NOT_RUN, 0.0, 0.0, None, reason))


class _SetupFailed(Exception):
    pass


class _KernelStartFailed(Exception):
    """Every try to start the job's kernel failed; the notebook counts as failed."""


def _seconds(value: float) -> str:
    from cellcache.units import format_seconds

    return format_seconds(value)


def _tail(log_path: Path, lines: int = 15) -> str:
    try:
        text = log_path.read_text(errors="replace").strip()
    except OSError:
        return ""
    return ("\nkernel log (last lines):\n" + "\n".join(text.splitlines()[-lines:])) if text else ""


def _run_to_completion(coroutine: Any) -> Any:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    # Called from code that already runs an event loop in this thread (a Jupyter kernel,
    # Playwright's sync API): asyncio.run would refuse, so the notebook gets a thread of its own.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="cellcache-run") as pool:
        return pool.submit(asyncio.run, coroutine).result()


# the running jobs, so that Ctrl-C in the main thread can stop them
_ACTIVE: dict[int, _NotebookRun] = {}
_ACTIVE_LOCK = threading.Lock()
_STOPPING = threading.Event()


def run_job(job: Job, options: RunOptions = RunOptions(), listener: Listener | None = None) -> NotebookResult:
    """Execute one job in a fresh kernel and describe every code cell. Also what a Dask worker runs."""
    import nbformat

    listener = listener or Listener()
    path = Path(job.path)
    nb = _sweep.inject(read_notebook(path), job.parameters.as_dict())
    listener.notebook_started(job, sum(_runnable(c) for c in nb.cells))
    env = kernel_env(path.parent.resolve(), notebook=path, store_dir=options.store_dir)
    with tempfile.TemporaryDirectory(prefix="cellcache-run-") as tmp:
        run = _NotebookRun(job, nb, options, listener, Path(tmp) / "report.jsonl")
        with _ACTIVE_LOCK:
            _ACTIVE[id(run)] = run
            if _STOPPING.is_set():
                run.user_stopped = True
        try:
            error = _run_to_completion(run.execute(env))
        finally:
            with _ACTIVE_LOCK:
                _ACTIVE.pop(id(run), None)
        run.finish(error)
    out = job.output
    if out is not None:
        # Written even after a failure, as papermill does: the traceback is in the cell's outputs.
        # Atomic, so an interrupted write never leaves a truncated notebook (least of all with --inplace).
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(out, nbformat.writes(nb).encode("utf-8"))
        except OSError as exc:
            error = error or f"the executed notebook could not be written to {out}: {exc}"
            out = None
    result = NotebookResult(
        path=path,
        cells=tuple(run.results),
        error=error,
        output=out,
        parameters=job.parameters,
        interrupted=run.user_stopped,
    )
    listener.notebook_finished(job, result)
    return result


def run_notebook(path: Path, options: RunOptions = RunOptions(), listener: Listener | None = None) -> NotebookResult:
    """Execute one notebook, without parameters."""
    path = Path(path)
    return run_job(Job(path, output=output_path(path, options)), options, listener)


# a batch -----------------------------------------------------------------------


def output_path(path: Path, options: RunOptions, combination: _sweep.Combination | None = None) -> Path | None:
    if options.restore_only:
        return None  # `status` never writes a notebook
    if options.inplace:
        return path
    if options.output_dir is not None:
        name = _sweep.output_name(path, combination) if combination is not None and combination.swept else path.name
        return options.output_dir / name
    return None


def plan(
    paths: Sequence[Path], options: RunOptions, combinations: Sequence[_sweep.Combination] | None = None
) -> list[Job]:
    """The jobs of a batch: every notebook with every combination of parameters, with its output path."""
    combos = list(combinations or [_sweep.Combination()])
    if len(combos) > 1 and options.inplace:
        raise BatchError(f"--inplace with a sweep would write {len(combos)} runs over one notebook: use --output-dir")
    jobs = [Job(Path(p), combo, output_path(Path(p), options, combo)) for p in paths for combo in combos]
    seen: dict[Path, Job] = {}
    for job in jobs:
        if job.output is None or options.inplace:
            continue
        target = job.output.resolve()
        if target in seen:
            raise BatchError(f"{seen[target].label} and {job.label} would both be written to {job.output}")
        seen[target] = job
    return jobs


def check(paths: Sequence[Path], options: RunOptions) -> None:
    """Refuse, before anything runs, a batch that can't work: raise BatchError with the reason."""
    if not paths:
        raise BatchError("no notebook given")
    if options.inplace and options.output_dir is not None:
        raise BatchError("--inplace and --output-dir exclude each other: choose one")
    if options.jobs < 1:
        raise BatchError(f"--jobs must be at least 1, not {options.jobs}")
    if options.executor is not None:
        dask_address(options.executor)
    asked = {Path(p): read_notebook(Path(p)).metadata.get("kernelspec", {}).get("name") for p in paths}
    if options.output_dir is not None:
        plan(paths, options)
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


def dask_address(executor: str) -> str:
    """``dask://HOST:PORT`` -> the scheduler address distributed connects to."""
    scheme, sep, rest = executor.partition("://")
    if scheme != "dask" or not sep or not rest:
        raise BatchError(f"--executor {executor!r}: give the Dask scheduler as dask://HOST:PORT")
    return f"tcp://{rest}"


def _waves(jobs: Sequence[Job]) -> list[list[int]]:
    """The first job of each notebook first, then the rest, when jobs run in parallel.

    Without this, every combination of a sweep would start at once, each miss the
    shared upstream steps, and run them all; after the first wave they are hits.
    """
    first: list[int] = []
    rest: list[int] = []
    seen: set[Path] = set()
    for i, job in enumerate(jobs):
        key = Path(job.path).resolve()
        (rest if key in seen else first).append(i)
        seen.add(key)
    return [first, rest] if rest else [first]


def _not_started(job: Job, reason: str) -> NotebookResult:
    try:
        cells = read_notebook(job.path).cells
    except BatchError:
        cells = []
    rows = tuple(CellResult(i, step_hint(c), NOT_RUN, 0.0, 0.0, None, reason) for i, c in enumerate(cells) if _runnable(c))
    return NotebookResult(job.path, rows, error=reason, parameters=job.parameters, interrupted=True)


def _stop_all() -> None:
    _STOPPING.set()
    with _ACTIVE_LOCK:
        runs = list(_ACTIVE.values())
    for run in runs:
        run.stop()


def _wait_all(futures: Sequence[Future[Any]], limit: float) -> None:
    deadline = time.monotonic() + limit
    pending = [f for f in futures if not f.done()]
    while pending and time.monotonic() < deadline:
        try:
            wait(pending, timeout=0.5)
        except KeyboardInterrupt:
            _stop_all()  # a second Ctrl-C: the same again, the kernels are already on their way out
        pending = [f for f in pending if not f.done()]


def _run_local(jobs: Sequence[Job], options: RunOptions, listener: Listener, results: list[NotebookResult | None]) -> bool:
    """Run the jobs in worker threads; the main thread only waits, so Ctrl-C reaches it. True if interrupted."""
    parallel = min(options.jobs, len(jobs))
    waves = _waves(jobs) if parallel > 1 else [list(range(len(jobs)))]
    with ThreadPoolExecutor(max_workers=max(parallel, 1), thread_name_prefix="cellcache-run") as pool:
        for wave in waves:
            futures: dict[Future[NotebookResult], int] = {}
            if parallel > 1:
                for i in wave:
                    futures[pool.submit(run_job, jobs[i], options, listener)] = i
            try:
                if parallel > 1:
                    pending = set(futures)
                    while pending:
                        done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                        for f in done:
                            results[futures[f]] = f.result()
                else:
                    for i in wave:  # one at a time, in order; still in a worker thread
                        future = pool.submit(run_job, jobs[i], options, listener)
                        futures[future] = i
                        while not future.done():
                            wait([future], timeout=0.5)
                        results[i] = future.result()
            except KeyboardInterrupt:
                _stop_all()
                for f in futures:
                    f.cancel()
                _wait_all(list(futures), limit=60.0)
                for f, i in futures.items():
                    if f.done() and not f.cancelled() and f.exception() is None:
                        results[i] = f.result()
                return True
    return False


def _run_on_dask(jobs: Sequence[Job], options: RunOptions, listener: Listener, results: list[NotebookResult | None]) -> bool:
    """Each job to a worker of an existing cluster, through ``Client.get_executor()``. True if interrupted."""
    try:
        from distributed import Client
    except ImportError:
        raise BatchError(_DASK_HINT) from None
    address = dask_address(options.executor or "")
    try:
        client = Client(address, timeout=10, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise BatchError(f"cannot reach the Dask scheduler at {address}: {exc}") from None
    on_worker = replace(options, executor=None, jobs=1, log_output=False, **_absolute_dirs(options))
    try:
        executor = client.get_executor(pure=False)
        for wave in _waves(jobs):
            futures: dict[Future[NotebookResult], int] = {}
            for i in wave:
                listener.notebook_started(jobs[i], _code_cells(jobs[i]))
                futures[executor.submit(run_job, worker_job(jobs[i]), on_worker)] = i
            try:
                pending = set(futures)
                while pending:
                    done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                    for f in done:
                        i = futures[f]
                        try:
                            # Shown with the paths as the user gave them, not the worker's absolute ones.
                            result = replace(f.result(), path=jobs[i].path, output=jobs[i].output)
                        except Exception as exc:  # noqa: BLE001 - a lost worker is this job's failure, not the batch's
                            result = replace(_not_started(jobs[i], f"the Dask worker failed: {type(exc).__name__}: {exc}"), interrupted=False)
                        results[i] = result
                        for cell in result.cells:
                            listener.cell_finished(jobs[i], cell)
                        listener.notebook_finished(jobs[i], result)
            except KeyboardInterrupt:
                for f in futures:
                    f.cancel()
                return True
    finally:
        client.close()
    return False


def worker_job(job: Job) -> Job:
    """The job as a Dask worker gets it: absolute paths, since the worker's working folder is its own.

    A worker started outside the project read "notebooks/quickstart.ipynb" against its own folder
    and failed. With absolute paths it needs the project at the same path (or on a shared
    filesystem); its store is then found from the notebook's folder, as here.
    """
    output = Path(job.output).resolve() if job.output is not None else None
    return replace(job, path=Path(job.path).resolve(), output=output)


def _absolute_dirs(options: RunOptions) -> dict[str, Any]:
    return {"store_dir": Path(options.store_dir).resolve()} if options.store_dir is not None else {}


def _code_cells(job: Job) -> int:
    try:
        nb = _sweep.inject(read_notebook(job.path), job.parameters.as_dict())
    except BatchError:
        return 0
    return sum(_runnable(c) for c in nb.cells)


def _store_of(jobs: Sequence[Job], options: RunOptions) -> tuple[Path | None, list[str]]:
    if options.store_dir is not None:
        return Path(options.store_dir).resolve(), []
    stores = {}
    for job in jobs:
        stores.setdefault(_config.resolve(cwd=Path(job.path).parent.resolve()).dir, job.path)
    if len(stores) == 1:
        return next(iter(stores)), []
    return next(iter(stores)), [
        "the notebooks belong to different projects, with one store each: " + ", ".join(str(s) for s in stores)
    ]


NOT_KEPT = "the executed notebooks are not kept: add --output-dir DIR (or --inplace) to keep them"


def parameter_warnings(jobs: Sequence[Job]) -> list[str]:
    """One line per notebook given a parameter its ``parameters`` cell does not define (papermill warns too)."""
    warnings = []
    seen: set[Path] = set()
    for job in jobs:
        if job.path in seen or not job.parameters.values:
            continue
        seen.add(job.path)
        names = {name for j in jobs if j.path == job.path for name, _ in j.parameters.values}
        unknown = _sweep.unknown_parameters(read_notebook(job.path), names)
        if unknown:
            warnings.append(
                f"{job.path}: parameter{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} "
                "not defined in the cell tagged 'parameters'; injected anyway"
            )
    return warnings


def remote_note(store: Path | None) -> str:
    return (
        f"no remote store is configured: the workers share only what one filesystem holds (the store at {store}); "
        "set CELLCACHE_REMOTE for workers on several machines"
    )


def run_batch(jobs: Sequence[Job], options: RunOptions = RunOptions(), listener: Listener | None = None) -> BatchResult:
    """Execute jobs (see ``plan``); results come back in the order given, and Ctrl-C ends it cleanly.

    On Ctrl-C the running cells are interrupted and their kernels shut down;
    finished entries stay in the store, and the result says ``interrupted``.
    """
    listener = listener or Listener()
    jobs = list(jobs)
    store, notes = _store_of(jobs, options)
    if options.executor is not None and not _config.resolve(cwd=Path(jobs[0].path).parent.resolve()).remote:
        notes.append(remote_note(store))
    results: list[NotebookResult | None] = [None] * len(jobs)
    _STOPPING.clear()
    try:
        runner = _run_on_dask if options.executor is not None else _run_local
        interrupted = runner(jobs, options, listener, results)
    finally:
        _STOPPING.clear()
    final = tuple(r if r is not None else _not_started(jobs[i], "interrupted before it started") for i, r in enumerate(results))
    return BatchResult(notebooks=final, store=store, interrupted=interrupted, notes=tuple(notes))


def run_notebooks(
    paths: Iterable[Path | str],
    options: RunOptions = RunOptions(),
    listener: Listener | None = None,
    combinations: Sequence[_sweep.Combination] | None = None,
) -> list[NotebookResult]:
    """Execute notebooks (each with every combination of parameters), ``options.jobs`` at a time."""
    paths = notebooks_in(paths)
    check(paths, options)
    return list(run_batch(plan(paths, options, combinations), options, listener).notebooks)


def status_options(options: RunOptions) -> RunOptions:
    return replace(options, restore_only=True, force=False, inplace=False, output_dir=None)


def status_notebooks(
    paths: Iterable[Path | str], options: RunOptions = RunOptions(), listener: Listener | None = None
) -> list[NotebookResult]:
    """Restore-only runs: plain cells run, hits are restored, no cached body is ever executed."""
    return run_notebooks(paths, status_options(options), listener)


def to_json(results: Sequence[NotebookResult], with_reasons: bool = True) -> dict[str, Any]:
    """The ``--json`` document of a list of results (``BatchResult.to_json`` adds the store and a summary)."""
    return {"notebooks": [r.to_json() for r in results]}


__all__ = [
    "AFTER_MISS",
    "BatchResult",
    "CellResult",
    "ERROR",
    "HIT",
    "INTERRUPTED",
    "Job",
    "Listener",
    "MISS",
    "NOT_RUN",
    "NotebookResult",
    "PLAIN",
    "RunOptions",
    "WOULD_RUN",
    "check",
    "notebooks_in",
    "plan",
    "run_batch",
    "run_job",
    "run_notebook",
    "run_notebooks",
    "status_notebooks",
    "to_json",
]
