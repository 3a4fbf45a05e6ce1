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
import tempfile
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from cellcache import config as _config
from cellcache.batch import replay as _replay, sweep as _sweep
from cellcache.errors import BatchError
from cellcache.store.atomic import atomic_write_bytes
from cellcache.batch.kernel import kernel_env, NotebookRun
from cellcache.batch.notebook import notebooks_in, read_notebook, runnable, step_hint
from cellcache.batch.results import BatchResult, CellResult, Job, Listener, NOT_RUN, NotebookResult, RunOptions

if TYPE_CHECKING:
    pass

# nbformat and nbclient are imported where they are used: nbformat pulls in jsonschema and its
# format checkers, seconds of import time that the store commands of the CLI should not pay.



_DASK_HINT = "the Dask executor needs the dask extra: pip install 'cellcache[dask]'"



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
_ACTIVE: dict[int, NotebookRun] = {}



_ACTIVE_LOCK = threading.Lock()



_STOPPING = threading.Event()



def run_job(job: Job, options: RunOptions = RunOptions(), listener: Listener | None = None) -> NotebookResult:
    """Execute one job in a fresh kernel and describe every code cell. Also what a Dask worker runs."""
    import nbformat

    listener = listener or Listener()
    path = Path(job.path)
    nb = _sweep.inject(read_notebook(path), job.parameters.as_dict())
    listener.notebook_started(job, sum(runnable(c) for c in nb.cells))
    env = kernel_env(path.parent.resolve(), notebook=path, store_dir=options.store_dir)
    ticket = replay_ticket(nb, path, options, env)
    replayed = _replay.replay(nb, ticket, path.parent.resolve()) if ticket is not None else None
    note = None
    if replayed is not None:
        _replay.count(ticket, replayed)  # type: ignore[arg-type]  # a replay has a ticket
        cells: list[CellResult] = list(replayed.cells)
        for cell in cells:
            listener.cell_started(job, cell.index, cell.step)
            listener.cell_finished(job, cell)
        error = None
    else:
        with tempfile.TemporaryDirectory(prefix="cellcache-run-") as tmp:
            run = NotebookRun(job, nb, options, listener, Path(tmp) / "report.jsonl", str(ticket.store_dir) if ticket else None)
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
            cells = run.results
            if ticket is not None and error is None and run.trace_file is not None and not run.user_stopped:
                note = _replay.remember(nb, ticket, cells, run.trace_file)
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
        cells=tuple(cells),
        error=error,
        output=out,
        parameters=job.parameters,
        interrupted=replayed is None and run.user_stopped,
        replayed=replayed.since if replayed is not None else None,
        replay_note=note,
    )
    listener.notebook_finished(job, result)
    return result



def replay_ticket(nb: Any, path: Path, options: RunOptions, env: dict[str, str]) -> _replay.Ticket | None:
    """The notebook's replay ticket when this run may replay it or record itself for a replay; None when not.

    Only auto mode: a user who annotated cells chose what is cached. Never with ``--force`` (run everything),
    in ``status`` (which reports on cells), nor with cellcache disabled.
    """
    if options.force or options.restore_only:
        return None
    try:
        config = _config.resolve(cwd=path.parent.resolve(), env=env)
    except Exception:  # noqa: BLE001 - a broken config is reported by the kernel that loads it
        return None
    if not (options.auto or config.auto) or not config.auto_replay or config.disable:
        return None  # (disabled: every cell is to run plainly, and a replay runs none)
    kernel = options.kernel or nb.metadata.get("kernelspec", {}).get("name") or "python3"
    return _replay.ticket(nb, path, kernel, env, replace(config, dir=Path(env["CELLCACHE_DIR"])))



def run_notebook(path: Path, options: RunOptions = RunOptions(), listener: Listener | None = None) -> NotebookResult:
    """Execute one notebook, without parameters."""
    path = Path(path)
    return run_job(Job(path, output=output_path(path, options)), options, listener)



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
    rows = tuple(CellResult(i, step_hint(c), NOT_RUN, 0.0, 0.0, None, reason) for i, c in enumerate(cells) if runnable(c))
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
    return sum(runnable(c) for c in nb.cells)



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



