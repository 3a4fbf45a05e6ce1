"""The store's verbs: ``stats``, ``ls``, ``show``, ``invalidate``, ``clear``, ``gc``, ``verify``.

Click commands of a few lines each over the store's public methods; ``main`` adds them.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Sequence

import click
from rich.table import Table

from cellcache import api
from cellcache.cli.common import json_option, DURATION, SIZE, Command, dir_option, json_of, make_console, plural, store_for
from cellcache.store.local import LocalStore
from cellcache.units import format_age, format_seconds, format_size



def _by_notebook(rows: Sequence[Any]) -> list[tuple[str, list[Any]]]:
    groups: dict[str, list[Any]] = {}
    for row in rows:
        groups.setdefault(getattr(row, "notebook", "") or "", []).append(row)
    return sorted(groups.items())


@click.command(cls=Command)
@dir_option
@json_option("the statistics")
def stats(store_dir: Path | None, as_json: bool) -> None:
    """Print the statistics of every step, grouped by notebook (the table `%cellcache stats` prints)."""
    store = store_for(store_dir)
    store.reconcile()  # entries a kill or a full disk kept from the index are counted too
    if as_json:
        rows = store.step_rows() if store.exists() else []
        click.echo(json.dumps({"store": str(store.root), "steps": [json_of(r) for r in rows]}, indent=2, default=str))
        return
    click.echo(api.stats_text(store))


@click.command(name="ls", cls=Command)
@click.argument("step", required=False)
@dir_option
@json_option("the entries")
def ls(step: str | None, store_dir: Path | None, as_json: bool) -> None:
    """List the stored entries, or those of one STEP, grouped by notebook: key, step, created, last used, size, run time."""
    store = store_for(store_dir)
    rows = store.entries(step)
    if as_json:
        click.echo(json.dumps({"store": str(store.root), "entries": [json_of(r) for r in rows]}, indent=2, default=str))
        return
    if not rows:
        click.echo(f"cellcache: no entries{f' for step {step!r}' if step else ''} in {store.root}")
        return
    console = make_console()
    console.print(f"{plural(len(rows), 'entry', 'entries')} in {store.root}", highlight=False, soft_wrap=True)
    for notebook, group in _by_notebook(rows):
        table = Table(title=notebook or "(no notebook: plain IPython)", title_justify="left")
        for header, justify in (("key", "left"), ("step", "left"), ("created", "right"), ("last used", "right"), ("size", "right"), ("seconds", "right")):
            table.add_column(header, justify=justify, no_wrap=header == "key")  # type: ignore[arg-type]
        for row in group:
            table.add_row(row.key, row.step, format_age(row.created), format_age(row.last_used), format_size(row.size), format_seconds(row.seconds))
        console.print(table)


@click.command(cls=Command)
@click.argument("key")
@dir_option
@json_option("the entry")
def show(key: str, store_dir: Path | None, as_json: bool) -> None:
    """Print one entry: its step, notebook, created time, size, inputs with their descriptions, files and outs."""
    from cellcache.store import maintenance as entries
    info = entries.describe_entry(store_for(store_dir), key)
    if as_json:
        click.echo(json.dumps(info.to_json(), indent=2))
    else:
        click.echo(info.render())


@click.command(cls=Command)
@click.argument("step", metavar="[NB:]STEP")
@click.option("--notebook", metavar="NB", default=None, help="The notebook the step belongs to (path relative to the project root).")
@dir_option
def invalidate(step: str, notebook: str | None, store_dir: Path | None) -> None:
    """Drop every entry of a step (NB:STEP, or STEP with --notebook, or a STEP unique in the project): its next run is a miss."""
    from cellcache.store import maintenance as entries
    store = store_for(store_dir)
    ref, dropped = entries.invalidate(store, step, notebook)
    click.echo(f"cellcache: invalidated step {ref} ({plural(dropped, 'entry', 'entries')} dropped) in {store.root}")


@click.command(cls=Command)
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON (needs --yes: there is no one to ask).")
@dir_option
def clear(yes: bool, as_json: bool, store_dir: Path | None) -> None:
    """Drop every entry of the store, after asking (or with --yes)."""
    store = store_for(store_dir)
    if as_json and not yes:
        raise click.UsageError("clear --json cannot ask for confirmation: add --yes")
    if not yes:
        count = len(store.entries()) if store.exists() else 0
        click.confirm(f"Drop {plural(count, 'entry', 'entries')} from the store at {store.root}?", abort=True, err=True)
    dropped = store.clear()
    if as_json:
        click.echo(json.dumps({"store": str(store.root), "dropped": dropped}))
        return
    click.echo(f"cellcache: cleared the store at {store.root} ({plural(dropped, 'entry', 'entries')} dropped)")


@click.command(cls=Command)
@click.option("--max-size", type=SIZE, default=None, metavar="SIZE", help="Shrink the store to SIZE (500MB, 5GB), least recently used first.")
@click.option("--older-than", type=DURATION, default=None, metavar="AGE", help="Drop entries not used for AGE (12h, 30d).")
@click.option("-y", "--yes", is_flag=True, help="Do not ask, even when more than half of the entries would go.")
@dir_option
def gc(max_size: int | None, older_than: float | None, yes: bool, store_dir: Path | None) -> None:
    """Drop entries, least recently used first, down to --max-size or older than --older-than.

    Sizes and ages need a unit (5GB, 30d): a bare number is a usage error. A gc
    that would drop more than half of the entries asks first, unless --yes.
    """
    if max_size is None and older_than is None:
        raise click.UsageError("give --max-size, --older-than or both (for example: cellcache gc --max-size 5GB --older-than 30d)")
    store = store_for(store_dir)
    if not yes and store.exists():
        _confirm_big_gc(store, max_size, older_than)
    count, freed = store.gc(max_size=max_size, older_than=older_than) if store.exists() else (0, 0)
    click.echo(f"cellcache: gc dropped {plural(count, 'entry', 'entries')}, freed {format_size(freed)} in {store.root}")


def _confirm_big_gc(store: LocalStore, max_size: int | None, older_than: float | None) -> None:
    from cellcache.report import gc_needs_confirmation

    victims, total = store.gc_plan(max_size, older_than)
    if gc_needs_confirmation(victims, total):
        click.confirm(
            f"gc would drop {victims} of {plural(total, 'entry', 'entries')} from the store at {store.root}. Go on?",
            abort=True,
            err=True,
        )


@click.command(cls=Command)
@click.option("--repair", is_flag=True, help="Drop the broken entries.")
@dir_option
def verify(repair: bool, store_dir: Path | None) -> None:
    """Check every manifest's signature and every blob's content, and report the broken entries.

    Exit code 1 if an entry is broken and --repair was not given.
    """
    store = store_for(store_dir)
    report = store.verify(repair=repair)
    for key, problem in report.broken:
        click.echo(f"broken: {key}: {problem}")
    broken = len(report.broken)
    verdict = "all sound" if not broken else f"{broken} broken" + (", dropped" if repair else "; run with --repair to drop them")
    click.echo(f"cellcache: checked {plural(report.checked, 'entry', 'entries')} in {store.root}: {verdict}")
    # Both kinds a dead writer leaves, by name: a user checking after a crash wants to know which.
    kinds = f"{report.temp_files} temporary file(s) of dead writers, {report.orphan_blobs} orphan blob(s)"
    if repair:
        click.echo(f"cellcache: reclaimed {format_size(report.reclaimed)} in {report.leftovers} leftover file(s) ({kinds}); index rebuilt")
    else:
        click.echo(f"cellcache: {format_size(report.reclaimable)} reclaimable in {report.leftovers} leftover file(s) ({kinds}) (verify --repair)")
    if broken and not repair:
        sys.exit(1)


COMMANDS = (stats, ls, show, invalidate, clear, gc, verify)
