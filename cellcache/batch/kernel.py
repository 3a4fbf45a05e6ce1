"""One notebook in one kernel: the kernel's environment and setup, and the execution that classifies each cell."""
from __future__ import annotations

import asyncio
import functools
import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from cellcache import config as _config
from cellcache.batch.notebook import auto_configured, auto_source, auto_switched, auto_step_hint, cell_names, is_cached, runnable, source_for_kernel, step_hint
from cellcache.batch.results import CellResult, ERROR, FROM_SESSION, HIT, INTERRUPTED, Job, Listener, NOT_RUN, NOTEBOOK_ENV, PLAIN, RunOptions, WOULD_RUN
from cellcache.units import format_seconds

if TYPE_CHECKING:
    from nbformat import NotebookNode
    from traitlets.config import Config

# nbformat and nbclient are imported where they are used: nbformat pulls in jsonschema and its
# format checkers, seconds of import time that the store commands of the CLI should not pay.



_STOP_AT_MISS = "StopAtMiss"



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



def _setup_code(report: Path | None, force: bool, restore_only: bool, auto: bool = False, trace: str | None = None) -> str:
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
    if trace is not None:  # the whole run's dependencies, for a later replay (cellcache.batch.trace)
        also = [str(report.parent)] if report is not None else []
        lines += ["import cellcache.batch.trace as _cct", f"_cct.start(*{[trace, *also]!r})", "del _cct"]
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
    client: Any, report: Path | None = None, force: bool = False, restore_only: bool = False, auto: bool = False, trace: str | None = None
) -> None:
    """Load cellcache in the kernel of an nbclient client, silently, before its first cell.

    ``trace``: the store's folder, to record the whole run's dependencies for a later replay.
    """
    kc = client.kc
    if kc is None:
        raise _SetupFailed("no kernel client")
    code = _setup_code(report, force, restore_only, auto, trace)
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



async def flush_kernel(client: Any, trace_file: Path | None = None) -> None:
    """Wait for the kernel's write-behind entries: nbclient gives a shutting-down kernel only seconds."""
    kc = client.kc
    if kc is None:
        return
    # Then let push = "auto" finish: a job on another machine may be waiting for these entries.
    code = "import cellcache as _cc\n_cc.flush(push_timeout=30)\ndel _cc\n"
    if trace_file is not None:
        code += f"import cellcache.batch.trace as _cct\n_cct.dump({str(trace_file)!r})\ndel _cct\n"
    await client.async_wait_for_reply(kc.execute(code, silent=True, store_history=False))



class _Stopped(Exception):
    """Raised from a hook to stop a notebook (a real failure during `status`, which runs with errors allowed)."""



class NotebookRun:
    """The state of one job's execution, fed by nbclient's hooks."""

    def __init__(
        self, job: Job, nb: NotebookNode, options: RunOptions, listener: Listener, report: Path, trace: str | None = None
    ) -> None:
        """``trace``: the store's folder, when the run is recorded for a replay (cellcache.batch.replay)."""
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
        self.trace = trace
        self.trace_file = report.with_name("trace.json") if trace is not None else None

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
        self.last_code = max((i for i, c in enumerate(nb.cells) if runnable(c)), default=-1)
        self.auto = options.auto or auto_configured(job.path)
        self.auto_cells = auto_switched(nb.cells)  # cells after the notebook's own `%cellcache auto`
        if options.log_output:
            self.client.on_output = lambda index, out: self.listener.cell_output(job, index, _output_text(out))

    async def _setup(self, notebook: NotebookNode) -> None:
        await setup_kernel(self.client, self.report, self.options.force, self.options.restore_only, self.auto, self.trace)

    def _before_cell(self, cell: NotebookNode, cell_index: int) -> None:
        self.current = cell_index
        self.step = step_hint(cell)
        sent = source_for_kernel(cell)
        if self.auto or cell_index in self.auto_cells:  # the cell's id and tags travel as a last comment line, which auto mode reads and drops
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
            await flush_kernel(self.client, self.trace_file)
            raise
        failed = (execute_reply or {}).get("content", {}).get("status") == "error"
        if cell_index == self.last_code or (failed and not self.client.allow_errors):
            await flush_kernel(self.client, self.trace_file)

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
        status = FROM_SESSION.get(run.get("status"), PLAIN)
        reason = run.get("reason")
        if ename == _STOP_AT_MISS or status == WOULD_RUN:
            return CellResult(index, run.get("name"), WOULD_RUN, 0.0, 0.0, None, reason, warned)
        if error is not None:
            status, reason = ERROR, error
        elif status == HIT:
            remote = "remote, " if (reason or "").startswith("hit (remote)") else ""
            reason = f"hit ({remote}saved {format_seconds(saved)})"
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
            if index not in done and runnable(cell) and (not self.results or index > self.results[-1].index):
                self._add(CellResult(index, step_hint(cell), NOT_RUN, 0.0, 0.0, None, reason))



class _SetupFailed(Exception):
    pass



class _KernelStartFailed(Exception):
    """Every try to start the job's kernel failed; the notebook counts as failed."""



def _tail(log_path: Path, lines: int = 15) -> str:
    try:
        text = log_path.read_text(errors="replace").strip()
    except OSError:
        return ""
    return ("\nkernel log (last lines):\n" + "\n".join(text.splitlines()[-lines:])) if text else ""
