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

from cellcache import api, batch
from cellcache import config as _config
from cellcache.batch import sweep as _sweep
from cellcache.errors import BatchError, CellcacheError, ConfigError, StepError
from cellcache.units import format_age, format_seconds, format_size, parse_duration, parse_size
from cellcache.store.local import LocalStore, open_store

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
# An unknown or ambiguous step name is a usage error, like an unknown option.
_USAGE_ERRORS: tuple[type[Exception], ...] = (BatchError, ConfigError, StepError)
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report a command stopped by Ctrl-C


def _console(stderr: bool = False) -> Console:
    console = Console(stderr=stderr)
    # Piped or captured output gets a fixed, wide layout instead of 80 columns, so tables don't wrap in logs.
    return console if console.is_terminal else Console(stderr=stderr, width=160)


class _Command(click.Command):
    """A command whose line in `cellcache --help` is its whole first sentence, never cut at 45 characters."""

    def get_short_help_str(self, limit: int = 45) -> str:
        if self.short_help:
            return self.short_help
        first = (self.help or "").strip().split("\n\n")[0]
        return " ".join(first.split())


class _Group(click.Group):
    """Turn cellcache's own errors into click's: a message and an exit code, never a traceback."""

    command_class = _Command

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except _USAGE_ERRORS as exc:
            raise click.UsageError(str(exc)) from None
        except CellcacheError as exc:
            raise click.ClickException(str(exc)) from None

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # click shortens each line to fit the terminal; a description cut in half says nothing.
        rows = [(name, _Command.get_short_help_str(self.commands[name])) for name in self.list_commands(ctx) if not self.commands[name].hidden]
        if rows:
            with formatter.section("Commands"):
                width = max(len(name) for name, _ in rows)
                for name, text in rows:
                    formatter.write(f"  {name.ljust(width)}  {text}\n")


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
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


class _ParsedType(click.ParamType):
    """A click type over one of cellcache's parsers, so a bad value is a usage error (exit 2)."""

    def __init__(self, name: str, parse: Callable[[str], Any]) -> None:
        self.name = name
        self._parse = parse

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str):
            return value
        try:
            return self._parse(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


SIZE = _ParsedType("size", parse_size)
DURATION = _ParsedType("duration", parse_duration)

_dir_option = click.option(
    "--dir",
    "store_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    metavar="DIR",
    help="The store to use (default: found from the project root, see `cellcache --help`).",
)


def _store_path(store_dir: Path | None) -> Path:
    return store_dir.resolve() if store_dir is not None else _config.resolve().dir


def _store(store_dir: Path | None = None) -> LocalStore:
    config = _config.resolve()
    # Every setting the notebook's session uses (verify_local too); --dir only moves the folder.
    return open_store(config if store_dir is None else config.with_overrides(dir=store_dir.resolve()))


def _json_of(value: Any) -> Any:
    to_json = getattr(value, "to_json", None)
    if callable(to_json):
        return to_json()
    return dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value


def _plural(count: int, word: str, plural: str | None = None) -> str:
    return f"{count} {word if count == 1 else (plural or word + 's')}"


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
            _dir_option,
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
    jobs = _plural(len(result.notebooks), "notebook")
    if restore_only:
        parts = [f"{counts[batch.WOULD_RUN]} would run", _plural(counts[batch.HIT], "hit")]
    else:
        parts = [_plural(counts[batch.HIT], "hit"), _plural(counts[batch.MISS], "miss", "misses")]
    parts += [_plural(counts[batch.ERROR], "error"), f"{counts[batch.NOT_RUN]} not run"]
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
        console = _console()
        for nb in result.notebooks:
            # The path and parameters on a line of their own, not as the table's title: a title wraps at the
            # table's width. The parameters tell apart the tables of a sweep.
            console.print(nb.title, style="bold", highlight=False, soft_wrap=True, markup=False)
            console.print(_cell_table(nb))
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


# the store -----------------------------------------------------------------------


def _by_notebook(rows: Sequence[Any]) -> list[tuple[str, list[Any]]]:
    groups: dict[str, list[Any]] = {}
    for row in rows:
        groups.setdefault(getattr(row, "notebook", "") or "", []).append(row)
    return sorted(groups.items())


@main.command()
@_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print the statistics as JSON.")
def stats(store_dir: Path | None, as_json: bool) -> None:
    """Print the statistics of every step, grouped by notebook (the table `%cellcache stats` prints)."""
    store = _store(store_dir)
    store.reconcile()  # entries a kill or a full disk kept from the index are counted too
    if as_json:
        rows = store.step_rows() if store.exists() else []
        click.echo(json.dumps({"store": str(store.root), "steps": [_json_of(r) for r in rows]}, indent=2, default=str))
        return
    click.echo(api.stats_text(store))


@main.command(name="ls")
@click.argument("step", required=False)
@_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print the entries as JSON.")
def ls(step: str | None, store_dir: Path | None, as_json: bool) -> None:
    """List the stored entries, or those of one STEP, grouped by notebook: key, step, created, last used, size, run time."""
    store = _store(store_dir)
    rows = store.entries(step)
    if as_json:
        click.echo(json.dumps({"store": str(store.root), "entries": [_json_of(r) for r in rows]}, indent=2, default=str))
        return
    if not rows:
        click.echo(f"cellcache: no entries{f' for step {step!r}' if step else ''} in {store.root}")
        return
    console = _console()
    console.print(f"{_plural(len(rows), 'entry', 'entries')} in {store.root}", highlight=False, soft_wrap=True)
    for notebook, group in _by_notebook(rows):
        table = Table(title=notebook or "(no notebook: plain IPython)", title_justify="left")
        for header, justify in (("key", "left"), ("step", "left"), ("created", "right"), ("last used", "right"), ("size", "right"), ("seconds", "right")):
            table.add_column(header, justify=justify, no_wrap=header == "key")  # type: ignore[arg-type]
        for row in group:
            table.add_row(row.key, row.step, format_age(row.created), format_age(row.last_used), format_size(row.size), format_seconds(row.seconds))
        console.print(table)


@main.command()
@click.argument("key")
@_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print the entry as JSON.")
def show(key: str, store_dir: Path | None, as_json: bool) -> None:
    """Print one entry: its step, notebook, created time, size, inputs with their descriptions, files and outs."""
    from cellcache.store import maintenance as entries
    info = entries.describe_entry(_store(store_dir), key)
    if as_json:
        click.echo(json.dumps(info.to_json(), indent=2))
    else:
        click.echo(info.render())


@main.command()
@click.argument("step", metavar="[NB:]STEP")
@click.option("--notebook", metavar="NB", default=None, help="The notebook the step belongs to (path relative to the project root).")
@_dir_option
def invalidate(step: str, notebook: str | None, store_dir: Path | None) -> None:
    """Drop every entry of a step (NB:STEP, or STEP with --notebook, or a STEP unique in the project): its next run is a miss."""
    from cellcache.store import maintenance as entries
    store = _store(store_dir)
    ref, dropped = entries.invalidate(store, step, notebook)
    click.echo(f"cellcache: invalidated step {ref} ({_plural(dropped, 'entry', 'entries')} dropped) in {store.root}")


@main.command()
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON (needs --yes: there is no one to ask).")
@_dir_option
def clear(yes: bool, as_json: bool, store_dir: Path | None) -> None:
    """Drop every entry of the store, after asking (or with --yes)."""
    store = _store(store_dir)
    if as_json and not yes:
        raise click.UsageError("clear --json cannot ask for confirmation: add --yes")
    if not yes:
        count = len(store.entries()) if store.exists() else 0
        click.confirm(f"Drop {_plural(count, 'entry', 'entries')} from the store at {store.root}?", abort=True, err=True)
    dropped = store.clear()
    if as_json:
        click.echo(json.dumps({"store": str(store.root), "dropped": dropped}))
        return
    click.echo(f"cellcache: cleared the store at {store.root} ({_plural(dropped, 'entry', 'entries')} dropped)")


@main.command()
@click.option("--max-size", type=SIZE, default=None, metavar="SIZE", help="Shrink the store to SIZE (500MB, 5GB), least recently used first.")
@click.option("--older-than", type=DURATION, default=None, metavar="AGE", help="Drop entries not used for AGE (12h, 30d).")
@click.option("-y", "--yes", is_flag=True, help="Do not ask, even when more than half of the entries would go.")
@_dir_option
def gc(max_size: int | None, older_than: float | None, yes: bool, store_dir: Path | None) -> None:
    """Drop entries, least recently used first, down to --max-size or older than --older-than.

    Sizes and ages need a unit (5GB, 30d): a bare number is a usage error. A gc
    that would drop more than half of the entries asks first, unless --yes.
    """
    if max_size is None and older_than is None:
        raise click.UsageError("give --max-size, --older-than or both (for example: cellcache gc --max-size 5GB --older-than 30d)")
    store = _store(store_dir)
    if not yes and store.exists():
        _confirm_big_gc(store, max_size, older_than)
    count, freed = store.gc(max_size=max_size, older_than=older_than) if store.exists() else (0, 0)
    click.echo(f"cellcache: gc dropped {_plural(count, 'entry', 'entries')}, freed {format_size(freed)} in {store.root}")


def _confirm_big_gc(store: LocalStore, max_size: int | None, older_than: float | None) -> None:
    from cellcache.report import gc_needs_confirmation

    victims, total = store.gc_plan(max_size, older_than)
    if gc_needs_confirmation(victims, total):
        click.confirm(
            f"gc would drop {victims} of {_plural(total, 'entry', 'entries')} from the store at {store.root}. Go on?",
            abort=True,
            err=True,
        )


@main.command()
@click.option("--repair", is_flag=True, help="Drop the broken entries.")
@_dir_option
def verify(repair: bool, store_dir: Path | None) -> None:
    """Check every manifest's signature and every blob's content, and report the broken entries.

    Exit code 1 if an entry is broken and --repair was not given.
    """
    store = _store(store_dir)
    report = store.verify(repair=repair)
    for key, problem in report.broken:
        click.echo(f"broken: {key}: {problem}")
    broken = len(report.broken)
    verdict = "all sound" if not broken else f"{broken} broken" + (", dropped" if repair else "; run with --repair to drop them")
    click.echo(f"cellcache: checked {_plural(report.checked, 'entry', 'entries')} in {store.root}: {verdict}")
    # Both kinds a dead writer leaves, by name: a user checking after a crash wants to know which.
    kinds = f"{report.temp_files} temporary file(s) of dead writers, {report.orphan_blobs} orphan blob(s)"
    if repair:
        click.echo(f"cellcache: reclaimed {format_size(report.reclaimed)} in {report.leftovers} leftover file(s) ({kinds}); index rebuilt")
    else:
        click.echo(f"cellcache: {format_size(report.reclaimable)} reclaimable in {report.leftovers} leftover file(s) ({kinds}) (verify --repair)")
    if broken and not repair:
        sys.exit(1)


# the shared remote: keys, push, pull, remote status|verify|gc (cellcache/remote_cli.py) ------

from cellcache.cli import remote as _remote_cli  # noqa: E402 - registers onto `main`, defined above

_remote_cli.register(main, SIZE, DURATION)


if __name__ == "__main__":  # pragma: no cover - `python -m cellcache.cli.main`
    main()
