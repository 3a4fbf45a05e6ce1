"""``cellcache`` on the command line: parse, call ``cellcache.batch`` or the store, print.

Exit codes, for every command: 0 on success; 1 when the work failed (a cell
raised, a broken entry was found and not repaired); 2 for usage errors (a
missing notebook, a bad option), reported by click with a message and no
traceback; 130 when `run` or `status` was stopped with Ctrl-C.
"""
from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from cellcache import batch
from cellcache.batch import sweep as _sweep
from cellcache.errors import BatchError
from cellcache.units import format_seconds
from cellcache.cli import store as _store_verbs
from cellcache.cli.common import DURATION, SIZE, Group, dir_option, make_console, plural

_STATUS_LABEL = {
    batch.HIT: "hit",
    batch.MISS: "miss",
    batch.PLAIN: "plain",
    batch.ERROR: "error",
    batch.NOT_RUN: "not run",
    batch.INTERRUPTED: "interrupted",
    batch.WOULD_RUN: "would run",
    batch.AFTER_MISS: "after a miss",
}
_STATUS_STYLE = {
    batch.HIT: "green",
    batch.MISS: "yellow",
    batch.ERROR: "bold red",
    batch.WOULD_RUN: "yellow",
    batch.NOT_RUN: "dim",
    batch.INTERRUPTED: "bold red",
}
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report a command stopped by Ctrl-C


def _skip_iri_format_checker() -> None:
    """Keep jsonschema from importing rfc3987_syntax in this process.

    nbformat validates notebooks with jsonschema, which imports rfc3987_syntax
    for its "iri" format checker when that package is installed (JupyterLab
    brings it); it builds a grammar at import, about 2 s, on every `cellcache
    run`. The notebook schema has no "iri" field and nbformat checks no
    formats, so without it nothing changes but the start-up time. An entry of
    None in sys.modules makes the import fail, and jsonschema then skips that
    one checker, as it does when the package is not installed.
    """
    if "jsonschema" not in sys.modules:
        sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]



@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="cellcache")
def main() -> None:
    """cellcache: a run-cache for Jupyter cells.

    Run notebooks in batch with `%%cached` cells restored instead of re-run,
    and manage the store. Every command finds the same store: --dir if given,
    else CELLCACHE_DIR, else [tool.cellcache] dir in pyproject.toml, else
    .cellcache/ at the project root (the nearest folder upward, from the
    notebook or the working directory, that holds pyproject.toml or .git).
    A relative path is relative to that root.
    """
    _skip_iri_format_checker()


# run and status ------------------------------------------------------------------

_notebooks_argument = click.argument(
    "notebooks",
    nargs=-1,
    required=True,
    metavar="NB.ipynb|DIR...",
    type=click.Path(exists=True, path_type=Path),
)


def _kernel_options(command: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(
        [
            click.option(
                "-p",
                "--parameters",
                "params",
                nargs=2,
                multiple=True,
                metavar="NAME VALUE",
                help="A parameter, as papermill takes it; give a name again to sweep its values.",
            ),
            click.option("-y", "--parameters-yaml", "params_yaml", multiple=True, metavar="YAML", help="Parameters as a YAML mapping."),
            click.option(
                "-f",
                "--parameters-file",
                "params_files",
                multiple=True,
                type=click.Path(exists=True, dir_okay=False, path_type=Path),
                metavar="FILE",
                help="Parameters from a YAML file.",
            ),
            click.option(
                "--grid",
                type=click.Path(exists=True, dir_okay=False, path_type=Path),
                default=None,
                metavar="FILE",
                help="Sweep: a YAML mapping of parameter names to lists of values; every combination runs.",
            ),
            click.option(
                "--timeout",
                type=click.FloatRange(min=0, min_open=True),
                default=None,
                metavar="S",
                help="Fail a cell that runs longer than S seconds (default: no limit).",
            ),
            click.option("--kernel", metavar="NAME", default=None, help="Kernel to use (default: the notebook's own, or python3)."),
            click.option(
                "-j", "--jobs", type=click.IntRange(min=1), default=1, show_default=True, help="Jobs run at once, each in its own kernel."
            ),
            click.option(
                "--executor",
                metavar="dask://HOST:PORT",
                default=None,
                help="Run each job on a worker of this Dask cluster (needs the dask extra).",
            ),
            click.option("--log-output", is_flag=True, help="Stream the cells' output to stderr as it comes, as papermill does."),
            click.option("--json", "as_json", is_flag=True, help="Print the results as JSON on stdout, and nothing else there."),
            dir_option,
        ]
    ):
        command = option(command)
    return command


class _ProgressListener(batch.Listener):
    """One rich progress line per job: cells done of n, the current cell and step, hits so far."""

    def __init__(self, progress: Progress, log_output: bool) -> None:
        self.progress = progress
        self.log_output = log_output
        self.tasks: dict[int, Any] = {}
        self.hits: dict[int, int] = {}

    def _task(self, job: batch.Job) -> Any:
        return self.tasks.get(id(job))

    def notebook_started(self, job: batch.Job, code_cells: int) -> None:
        self.hits[id(job)] = 0
        self.tasks[id(job)] = self.progress.add_task(job.label, total=code_cells, now="starting the kernel", hits=0)

    def cell_started(self, job: batch.Job, index: int, step: str | None) -> None:
        self.progress.update(self._task(job), now=f"cell {index}" + (f" · {step}" if step else ""))

    def cell_output(self, job: batch.Job, index: int, text: str) -> None:
        if self.log_output and text:
            prefix = f"[{job.label} · cell {index}] "
            for line in text.rstrip("\n").split("\n"):
                self.progress.console.print(prefix + line, highlight=False, markup=False, soft_wrap=True)

    def cell_finished(self, job: batch.Job, result: batch.CellResult) -> None:
        if self._task(job) is None:
            return
        self.hits[id(job)] += result.status == batch.HIT
        self.progress.update(self._task(job), advance=1, hits=self.hits[id(job)])

    def notebook_finished(self, job: batch.Job, result: batch.NotebookResult) -> None:
        task = self._task(job)
        if task is None:
            return
        self.progress.update(task, completed=self.progress.tasks[task].total, now="failed" if not result.ok else "done")


def _progress(log_output: bool) -> Progress:
    console = Console(stderr=True)
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[now]}"),
        TextColumn("hits {task.fields[hits]}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        # A live display only makes sense on a terminal; logs and pipes get the final tables alone.
        # --log-output streams through the same console, so it must not be disabled then.
        disable=not console.is_terminal and not log_output,
    )


def _combinations(params: Sequence[tuple[str, str]], params_yaml: Sequence[str], params_files: Sequence[Path], grid: Path | None) -> list[_sweep.Combination]:
    return _sweep.combinations(params=params, yaml_strings=params_yaml, files=params_files, grid=grid)


def _run_options(kw: dict[str, Any], **extra: Any) -> batch.RunOptions:
    """The options `run` and `status` share (from `_kernel_options`), plus each command's own."""
    return batch.RunOptions(
        timeout=kw["timeout"],
        kernel=kw["kernel"],
        jobs=kw["jobs"],
        store_dir=kw["store_dir"].resolve() if kw["store_dir"] else None,
        log_output=kw["log_output"],
        executor=kw["executor"],
        **extra,
    )


def _kernel_combinations(kw: dict[str, Any]) -> list[_sweep.Combination]:
    return _combinations(kw["params"], kw["params_yaml"], kw["params_files"], kw["grid"])


def _execute(notebooks: Sequence[Path], options: batch.RunOptions, combinations: list[_sweep.Combination]) -> batch.BatchResult:
    try:
        paths = batch.notebooks_in(notebooks)
        batch.check(paths, options)  # usage errors (exit 2) before any kernel starts
        jobs = batch.plan(paths, options, combinations)
    except BatchError as exc:
        raise click.UsageError(str(exc), click.get_current_context()) from None
    for warning in batch.parameter_warnings(jobs):
        click.echo(f"cellcache: warning: {warning}", err=True)
    with _progress(options.log_output) as progress:
        return batch.run_batch(jobs, options, _ProgressListener(progress, options.log_output))


def _cell_table(result: batch.NotebookResult) -> Table:
    table = Table()
    table.add_column("cell", justify="right")
    table.add_column("step")
    table.add_column("status")
    table.add_column("time", justify="right")
    table.add_column("saved", justify="right")
    table.add_column("reason")
    for cell in result.cells:
        status = _STATUS_LABEL.get(cell.status, cell.status)
        reason = cell.reason or cell.error or "-"
        if cell.status == batch.HIT and reason.startswith("hit (") and reason.endswith(")"):
            if reason.startswith("hit (remote"):
                status = "hit (remote)"  # fetched from the shared store this run; the next one is local
            reason = reason[len("hit (") : -1]  # the status column already says hit
        style = _STATUS_STYLE.get(cell.status)
        table.add_row(
            str(cell.index),
            cell.step or "-",
            f"[{style}]{status}[/]" if style else status,
            format_seconds(cell.seconds) if cell.seconds else "-",
            format_seconds(cell.saved_seconds) if cell.saved_seconds else "-",
            reason,
        )
    return table


def _summary(result: batch.BatchResult, restore_only: bool) -> str:
    counts = result.counts()
    jobs = plural(len(result.notebooks), "notebook")
    if restore_only:
        parts = [f"{counts[batch.WOULD_RUN]} would run", plural(counts[batch.HIT], "hit")]
    else:
        parts = [plural(counts[batch.HIT], "hit"), plural(counts[batch.MISS], "miss", "misses")]
    parts += [plural(counts[batch.ERROR], "error"), f"{counts[batch.NOT_RUN]} not run"]
    saved = "" if restore_only else f", {format_seconds(result.saved_seconds)} saved"
    return f"{', '.join(parts)}{saved} in {jobs}; store {result.store}"


def _report_failures(result: batch.BatchResult) -> bool:
    """Print, on stderr, where each job failed: notebook, cell index, step, error. True if any did."""
    failed = False
    for nb in result.notebooks:
        if nb.interrupted:
            continue
        messages = [f"cell {c.index}" + (f" (step {c.step})" if c.step else "") + f" failed: {c.error}" for c in nb.failed_cells]
        if not messages and nb.error:
            messages = [nb.error]
        for message in messages:
            failed = True
            click.echo(f"cellcache: {nb.label}: {message}", err=True)
    return failed


def _print_results(result: batch.BatchResult, as_json: bool, restore_only: bool) -> None:
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2))
    else:
        console = make_console()
        for nb in result.notebooks:
            # The path and parameters on a line of their own, not as the table's title: a title wraps at the
            # table's width. The parameters tell apart the tables of a sweep.
            console.print(nb.title, style="bold", highlight=False, soft_wrap=True, markup=False)
            console.print(_cell_table(nb))
            if nb.replayed:
                console.print(f"replayed without a kernel: the notebook and all it read are as in the run of {nb.replayed}", highlight=False)
            elif nb.replay_note:
                console.print(nb.replay_note, style="dim", highlight=False, markup=False, soft_wrap=True)
            for cell in nb.cells:
                for warning in cell.warnings:
                    where = f"cell {cell.index}" + (f" ({cell.step})" if cell.step else "")
                    console.print(f"warning: {where}: {warning}", style="yellow", highlight=False, markup=False, soft_wrap=True)
            if nb.output is not None:
                console.print(f"written to {nb.output}", highlight=False)
        console.print(_summary(result, restore_only), highlight=False, soft_wrap=True)
    for note in result.notes:
        click.echo(f"cellcache: note: {note}", err=True)


def _finish(result: batch.BatchResult, as_json: bool, restore_only: bool, also_failed: bool = False) -> None:
    _print_results(result, as_json, restore_only)
    failed = _report_failures(result) or also_failed
    if result.interrupted:
        click.echo("cellcache: interrupted; finished entries are kept in the store", err=True)
        sys.exit(EXIT_INTERRUPTED)
    if failed:
        sys.exit(1)


@main.command()
@_notebooks_argument
@click.option("--force", is_flag=True, help="Re-run every cached cell and replace its entry.")
@click.option("--inplace", is_flag=True, help="Write the executed notebook over its source.")
@click.option(
    "--output-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    metavar="DIR",
    help="Write the executed notebooks into DIR (created if needed); a sweep's are named from their parameters.",
)
@click.option("--allow-errors", is_flag=True, help="Keep executing after a failing cell (the exit code is still 1).")
@click.option("--push", "push_after", is_flag=True, help="Then push the entries of the steps that ran to the remote (the CI path; needs a signing key).")
@click.option("--auto", "auto_mode", is_flag=True, help="Auto mode: run notebooks as they are, every code cell a stage where caching pays (no %%cached needed).")
@_kernel_options
def run(
    notebooks: tuple[Path, ...],
    force: bool,
    inplace: bool,
    output_dir: Path | None,
    allow_errors: bool,
    push_after: bool,
    auto_mode: bool,
    **kw: Any,
) -> None:
    """Execute notebooks with cellcache loaded; `%%cached` cells are restored when nothing changed.

    Each job (a notebook, with one set of parameters) runs in a fresh kernel
    whose working directory is the notebook's folder; a `%load_ext cellcache`
    in the notebook is harmless. A folder stands for its notebooks, in name
    order. By default the notebooks are left untouched: use --inplace or
    --output-dir to keep the executed copy.

    Parameters go into an `injected-parameters` cell after the cell tagged
    `parameters`, as papermill does: -p lr 0.1, -y 'lr: 0.1', -f params.yaml.
    Giving a name several times (-p lr 0.01 -p lr 0.1), or --grid FILE, runs
    every combination; steps that read no swept parameter run once.

    At the end, one table per job shows each code cell (indexes count from 0
    over all cells): hit, miss, plain, error or not run; its time, the time
    saved, and why.

    Exit code: 0 if every cell succeeded; 1 if a cell failed (the notebook,
    cell, step and error are printed on stderr); 2 for usage errors; 130 on
    Ctrl-C (running kernels are stopped; finished entries are kept).
    """
    options = _run_options(kw, force=force, inplace=inplace, output_dir=output_dir, allow_errors=allow_errors, auto=auto_mode)
    result = _execute(notebooks, options, _kernel_combinations(kw))
    pushed = True
    if push_after and not result.interrupted:
        pushed = _remote_cli.push_after_run(result.notebooks)
    if not inplace and output_dir is None:
        result = dataclasses.replace(result, notes=(*result.notes, batch.NOT_KEPT))
    _finish(result, kw["as_json"], restore_only=False, also_failed=not pushed)


@main.command()
@_notebooks_argument
@click.option("--remote", "with_remote", is_flag=True, help="Also look in the shared remote: steps it holds are fetched, checked and count as hits.")
@click.option(
    "--graph",
    "graph_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    metavar="FILE",
    help="Also draw each notebook's pipeline to FILE: .svg (needs Graphviz's dot), .html, .dot, or a text list otherwise. "
    "Several jobs write FILE's name with the notebook and parameters added.",
)
@_kernel_options
def status(notebooks: tuple[Path, ...], with_remote: bool, graph_file: Path | None, **kw: Any) -> None:
    """Show every cached step that would run, and why, without running any cached cell.

    Plain cells run (cached cells may need their values) and hits are
    restored. A cached cell that would miss is reported as "would run" with
    its reason, and is not run; later cells that read what it writes,
    directly or through other cells, are not executed either: cached ones
    are "would run: reads w from fit", plain ones "not run". Every other
    cell is checked as usual. Notebooks are never written.

    Exit code: 0 when the status was determined, misses or not; 1 if a plain
    cell (or a hit's replay) failed; 2 for usage errors; 130 on Ctrl-C.
    """
    options = _run_options(kw)
    with _remote_cli.remote_in_kernels(with_remote):
        result = _execute(notebooks, batch.status_options(options), _kernel_combinations(kw))
    if graph_file is not None and not result.interrupted:
        _write_graphs(result, graph_file)
    _finish(result, kw["as_json"], restore_only=True)


def _write_graphs(result: batch.BatchResult, target: Path) -> None:
    from cellcache import graph

    many = len(result.notebooks) > 1
    for nb in result.notebooks:
        path = target
        if many:
            tag = "".join(c if c.isalnum() or c in "=.-_" else "-" for c in f"{Path(nb.path).stem}-{nb.parameters.label()}".strip("-"))
            path = target.with_name(f"{target.stem}-{tag}{target.suffix}")
        try:
            kind, path = graph.write(graph.from_status(nb), path)
        except OSError as exc:
            raise click.ClickException(f"cannot draw the graph to {path}: {exc}") from None
        click.echo(f"cellcache: drew the pipeline of {nb.title} to {path} ({kind})", err=True)


# the shared remote: keys, push, pull, remote status|verify|gc (cellcache/remote_cli.py) ------

for _verb in _store_verbs.COMMANDS:
    main.add_command(_verb)

from cellcache.cli import remote as _remote_cli  # noqa: E402 - registers onto `main`, defined above

_remote_cli.register(main, SIZE, DURATION)


if __name__ == "__main__":  # pragma: no cover - `python -m cellcache.cli.main`
    main()
