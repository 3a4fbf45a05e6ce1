"""``cellcache`` on the command line: parse, call ``cellcache.batch`` or the store, print.

Exit codes, for every command: 0 on success; 1 when the work failed (a cell
raised, a broken entry was found and not repaired); 2 for usage errors (a
missing notebook, a bad option), reported by click with a message and no
traceback.
"""
from __future__ import annotations

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
from cellcache.errors import BatchError, CellcacheError, ConfigError, StepError
from cellcache.spec import parse_duration, parse_size
from cellcache.report import format_age, format_seconds, format_size
from cellcache.store.local import LocalStore

_STATUS_LABEL = {
    batch.HIT: "hit",
    batch.MISS: "miss",
    batch.PLAIN: "plain",
    batch.ERROR: "error",
    batch.WOULD_RUN: "would run",
    batch.AFTER_MISS: "after a miss",
}
_STATUS_STYLE = {batch.HIT: "green", batch.MISS: "yellow", batch.ERROR: "bold red", batch.WOULD_RUN: "yellow"}


def _console(stderr: bool = False) -> Console:
    console = Console(stderr=stderr)
    # Piped or captured output gets a fixed, wide layout instead of 80 columns, so tables don't wrap in logs.
    return console if console.is_terminal else Console(stderr=stderr, width=160)


class _Group(click.Group):
    """Turn cellcache's own errors into click's: a message and an exit code, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (BatchError, ConfigError, StepError) as exc:
            raise click.UsageError(str(exc)) from None
        except CellcacheError as exc:
            raise click.ClickException(str(exc)) from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="cellcache")
def main() -> None:
    """cellcache: a run-cache for Jupyter cells.

    Run notebooks in batch with `%%cached` cells restored instead of re-run,
    and manage the store. The store is found as in a notebook: CELLCACHE_DIR,
    then [tool.cellcache] dir in pyproject.toml, then .cellcache/ in the
    working directory (for `run` and `status`: the notebook's folder).
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


# run and status ------------------------------------------------------------------


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

_notebooks_argument = click.argument(
    "notebooks",
    nargs=-1,
    required=True,
    metavar="NB.ipynb...",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
)


def _kernel_options(command: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(
        [
            click.option(
                "--timeout",
                type=click.FloatRange(min=0, min_open=True),
                default=None,
                metavar="S",
                help="Fail a cell that runs longer than S seconds (default: no limit).",
            ),
            click.option("--kernel", metavar="NAME", default=None, help="Kernel to use (default: the notebook's own, or python3)."),
            click.option(
                "-j", "--jobs", type=click.IntRange(min=1), default=1, show_default=True, help="Notebooks run at once, each in its own kernel."
            ),
            click.option("--json", "as_json", is_flag=True, help="Print the results as JSON on stdout, and nothing else there."),
        ]
    ):
        command = option(command)
    return command


class _ProgressListener(batch.Listener):
    """One rich progress line per notebook: cells done of n, the current cell and step, hits so far."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.tasks: dict[Path, Any] = {}
        self.hits: dict[Path, int] = {}

    def notebook_started(self, path: Path, code_cells: int) -> None:
        self.hits[path] = 0
        self.tasks[path] = self.progress.add_task(str(path), total=code_cells, now="starting the kernel", hits=0)

    def cell_started(self, path: Path, index: int, step: str | None) -> None:
        self.progress.update(self.tasks[path], now=f"cell {index}" + (f" · {step}" if step else ""))

    def cell_finished(self, path: Path, result: batch.CellResult) -> None:
        self.hits[path] += result.status == batch.HIT
        self.progress.update(self.tasks[path], advance=1, hits=self.hits[path])

    def notebook_finished(self, result: batch.NotebookResult) -> None:
        task = self.tasks[result.path]
        self.progress.update(task, completed=self.progress.tasks[task].total, now="failed" if not result.ok else "done")


def _progress() -> Progress:
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
        disable=not console.is_terminal,
    )


def _execute(
    runner: Callable[..., list[batch.NotebookResult]], notebooks: Sequence[Path], options: batch.RunOptions
) -> list[batch.NotebookResult]:
    try:
        batch.check(notebooks, options)  # usage errors (exit 2) before any kernel starts
    except BatchError as exc:
        raise click.UsageError(str(exc), click.get_current_context()) from None
    with _progress() as progress:
        return runner(notebooks, options, _ProgressListener(progress))


def _cell_table(result: batch.NotebookResult, with_reasons: bool) -> Table:
    table = Table()
    table.add_column("cell", justify="right")
    table.add_column("step")
    table.add_column("status")
    if with_reasons:
        table.add_column("reason")
    else:
        table.add_column("time", justify="right")
        table.add_column("saved", justify="right")
    for cell in result.cells:
        status = _STATUS_LABEL.get(cell.status, cell.status)
        if cell.status == batch.HIT and (cell.reason or "").startswith("hit (remote)"):
            status = "hit (remote)"  # fetched from the shared store this run; the next one is local
        style = _STATUS_STYLE.get(cell.status)
        row = [str(cell.index), cell.step or "-", f"[{style}]{status}[/]" if style else status]
        if with_reasons:
            row.append(cell.reason or (cell.error or "-"))
        else:
            row += [format_seconds(cell.seconds), format_seconds(cell.saved_seconds) if cell.saved_seconds else "-"]
        table.add_row(*row)
    return table


def _summary(results: Sequence[batch.NotebookResult], restore_only: bool) -> str:
    hits = sum(r.hits for r in results)
    notebooks = f"{len(results)} notebook{'s' * (len(results) != 1)}"
    if restore_only:
        stopped = sum(any(c.status == batch.WOULD_RUN for c in r.cells) for r in results)
        return f"{hits} hit{'s' * (hits != 1)}; {stopped} of {notebooks} would run from a miss"
    misses = sum(r.misses for r in results)
    saved = sum(r.saved_seconds for r in results)
    return f"{hits} hit{'s' * (hits != 1)}, {misses} miss{'es' * (misses != 1)}, {format_seconds(saved)} saved in {notebooks}"


def _report_failures(results: Sequence[batch.NotebookResult]) -> bool:
    """Print, on stderr, where each notebook failed: notebook, cell index, step, error. True if any did."""
    failed = False
    for result in results:
        messages = [
            f"cell {c.index}" + (f" (step {c.step})" if c.step else "") + f" failed: {c.error}" for c in result.failed_cells
        ]
        if not messages and result.error:
            messages = [result.error]
        for message in messages:
            failed = True
            click.echo(f"cellcache: {result.path}: {message}", err=True)
    return failed


@main.command()
@_notebooks_argument
@click.option("--force", is_flag=True, help="Re-run every cached cell and replace its entry.")
@click.option("--inplace", is_flag=True, help="Write the executed notebook over its source.")
@click.option(
    "--output-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    metavar="DIR",
    help="Write the executed notebooks into DIR (created if needed).",
)
@click.option("--allow-errors", is_flag=True, help="Keep executing after a failing cell (the exit code is still 1).")
@click.option("--push", "push_after", is_flag=True, help="Then push the entries of the steps that ran to the remote (the CI path; needs a signing key).")
@_kernel_options
def run(
    notebooks: tuple[Path, ...],
    force: bool,
    inplace: bool,
    output_dir: Path | None,
    allow_errors: bool,
    push_after: bool,
    timeout: float | None,
    kernel: str | None,
    jobs: int,
    as_json: bool,
) -> None:
    """Execute notebooks with cellcache loaded; `%%cached` cells are restored when nothing changed.

    Each notebook runs in a fresh kernel whose working directory is the
    notebook's folder; a `%load_ext cellcache` in the notebook is harmless.
    By default the notebooks are left untouched: use --inplace or
    --output-dir to keep the executed copy. With --jobs, notebooks run in
    parallel and share the store safely.

    At the end, one table per notebook shows each code cell (indexes count
    from 0 over all cells): hit, miss, plain (not cached, or a `%%cached` cell
    that ran uncached) or error; its time and the time saved.

    Exit code: 0 if every cell succeeded; 1 if a cell failed (the notebook,
    cell, step and error are printed on stderr); 2 for usage errors.
    """
    options = batch.RunOptions(
        force=force,
        inplace=inplace,
        output_dir=output_dir,
        timeout=timeout,
        kernel=kernel,
        allow_errors=allow_errors,
        jobs=jobs,
    )
    results = _execute(batch.run_notebooks, notebooks, options)
    _print_results(results, as_json, with_reasons=False)
    pushed = _remote_cli.push_after_run(results) if push_after else True
    if _report_failures(results) or not pushed:
        sys.exit(1)


@main.command()
@_notebooks_argument
@_kernel_options
def status(notebooks: tuple[Path, ...], timeout: float | None, kernel: str | None, jobs: int, as_json: bool) -> None:
    """Show which cells would run, without running any cached cell.

    Plain cells run (cached cells may need their values) and hits are
    restored; at the first `%%cached` cell that would miss, the notebook stops
    without running it. That cell is reported as "would run", with the reason,
    and every later code cell as "after a miss". Notebooks are never written.

    Exit code: 0 when the status was determined, misses or not; 1 if a plain
    cell (or a hit's replay) failed; 2 for usage errors.
    """
    options = batch.RunOptions(timeout=timeout, kernel=kernel, jobs=jobs)
    results = _execute(batch.status_notebooks, notebooks, options)
    _print_results(results, as_json, with_reasons=True)
    if _report_failures(results):
        sys.exit(1)


def _print_results(results: Sequence[batch.NotebookResult], as_json: bool, with_reasons: bool) -> None:
    if as_json:
        click.echo(json.dumps(batch.to_json(results, with_reasons=with_reasons), indent=2))
        return
    console = _console()
    for result in results:
        # The path on a line of its own, not as the table's title: a title wraps at the table's width.
        console.print(str(result.path), style="bold", highlight=False, soft_wrap=True)
        console.print(_cell_table(result, with_reasons))
        if result.output is not None:
            console.print(f"written to {result.output}", highlight=False)
    console.print(_summary(results, restore_only=with_reasons), highlight=False)


# the store -----------------------------------------------------------------------


def _store() -> LocalStore:
    return LocalStore(_config.resolve().dir)


@main.command()
def stats() -> None:
    """Print the statistics of every step (the table `%cellcache stats` prints)."""
    store = _store()
    store.reconcile()  # entries a kill or a full disk kept from the index are counted too
    click.echo(api.stats_text(store))


@main.command(name="ls")
@click.argument("step", required=False)
def ls(step: str | None) -> None:
    """List the stored entries, or those of one STEP: key, step, created, last used, size, run time."""
    store = _store()
    rows = store.entries(step)
    if not rows:
        click.echo(f"cellcache: no entries{f' for step {step!r}' if step else ''} in {store.root}")
        return
    table = Table(title=f"{len(rows)} entr{'y' if len(rows) == 1 else 'ies'} in {store.root}", title_justify="left")
    for header, justify in (("key", "left"), ("step", "left"), ("created", "right"), ("last used", "right"), ("size", "right"), ("seconds", "right")):
        table.add_column(header, justify=justify, no_wrap=header == "key")  # type: ignore[arg-type]
    for row in rows:
        table.add_row(row.key, row.step, format_age(row.created), format_age(row.last_used), format_size(row.size), format_seconds(row.seconds))
    _console().print(table)


@main.command()
@click.argument("step")
def invalidate(step: str) -> None:
    """Drop every entry of STEP: its next run is a miss."""
    store = _store()
    dropped = store.invalidate(step)
    click.echo(f"cellcache: invalidated step {step!r} ({dropped} entr{'y' if dropped == 1 else 'ies'} dropped)")


@main.command()
def clear() -> None:
    """Drop every entry of the store."""
    store = _store()
    dropped = store.clear()
    click.echo(f"cellcache: cleared the store at {store.root} ({dropped} entr{'y' if dropped == 1 else 'ies'} dropped)")


@main.command()
@click.option("--max-size", type=SIZE, default=None, metavar="SIZE", help="Shrink the store to SIZE (500MB, 5GB), least recently used first.")
@click.option("--older-than", type=DURATION, default=None, metavar="AGE", help="Drop entries not used for AGE (12h, 30d).")
def gc(max_size: int | None, older_than: float | None) -> None:
    """Drop entries: least recently used first. Give at least one of the options."""
    if max_size is None and older_than is None:
        raise click.UsageError("give --max-size, --older-than or both (for example: cellcache gc --max-size 5GB --older-than 30d)")
    store = _store()
    count, freed = store.gc(max_size=max_size, older_than=older_than) if store.exists() else (0, 0)
    click.echo(f"cellcache: gc dropped {count} entr{'y' if count == 1 else 'ies'}, freed {format_size(freed)}")


@main.command()
@click.option("--repair", is_flag=True, help="Drop the broken entries.")
def verify(repair: bool) -> None:
    """Check every manifest's signature and every blob's content; report the broken entries.

    Exit code 1 if an entry is broken and --repair was not given.
    """
    store = _store()
    report = store.verify(repair=repair)
    for key, problem in report.broken:
        click.echo(f"broken: {key}: {problem}")
    broken = len(report.broken)
    verdict = "all sound" if not broken else f"{broken} broken" + (", dropped" if repair else "; run with --repair to drop them")
    click.echo(f"cellcache: checked {report.checked} entr{'y' if report.checked == 1 else 'ies'} in {store.root}: {verdict}")
    if repair:
        click.echo(f"cellcache: reclaimed {format_size(report.reclaimed)} in {report.leftovers} leftover file(s); index rebuilt")
    else:
        click.echo(f"cellcache: {format_size(report.reclaimable)} reclaimable in {report.leftovers} leftover file(s) (verify --repair)")
    if broken and not repair:
        sys.exit(1)


# the shared remote: keys, push, pull, remote status|verify|gc (cellcache/remote_cli.py) ------

from cellcache import remote_cli as _remote_cli  # noqa: E402 - registers onto `main`, defined above

_remote_cli.register(main, SIZE, DURATION)


if __name__ == "__main__":  # pragma: no cover - `python -m cellcache.cli`
    main()
