"""The statistics table: the row model the panel shows, and the same table as text.

Everything here is pure (rows in, strings out), so the panel in
``cellcache.widget`` stays a thin view and both forms show identical cells.

The text table is laid out by hand rather than with rich: rich measures and
wraps every cell, which takes 0.3-0.6 s for 500 steps, over the 300 ms bar
for ``%cellcache stats`` (see ``benchmarks/panel_bench.py``). A fixed-width
layout does the same job in a few milliseconds. ``stats_table`` still gives a
rich ``Table`` of the same cells for callers that print to a rich console.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterable, Mapping, Sequence

from cellcache.store.index import StepStats
# The formatters live in cellcache.units, the bottom of the package; the names stay importable from here.
from cellcache.units import format_age, format_rate, format_seconds, format_size  # noqa: F401

if TYPE_CHECKING:  # rich costs ~40 ms to import, and only stats_table needs it
    from rich.table import Table

# ---------------------------------------------------------------- totals


def totals(rows: Sequence[StepStats]) -> tuple[float | None, float, int]:
    """(overall hit rate, total time saved, store size) over ``rows``."""
    hits = sum(r.hits for r in rows)
    looked_up = hits + sum(r.misses for r in rows)
    return (hits / looked_up if looked_up else None), sum(r.saved_seconds for r in rows), sum(r.size_bytes for r in rows)


def totals_line(rows: Sequence[StepStats], location: str) -> str:
    """The line under the table: it is about the whole store, whatever the panel's filter."""
    rate, saved, size = totals(rows)
    return f"total: hit rate {format_rate(rate)}, saved {format_seconds(saved)}, store {format_size(size)} at {location}"


def shown_location(location: str, cwd: str | None = None) -> str:
    """The store's path as the user would type it: relative when it is inside the working folder.

    ``.cellcache/`` says where the store is; ``/tmp/tmpa8x1/.cellcache`` in an executed docs page, or a
    long home path in a saved notebook, says more about the machine than about the store.
    """
    import os

    try:
        relative = os.path.relpath(location, cwd or os.getcwd())
    except ValueError:  # another drive, on Windows
        return location
    if relative == "." or relative.startswith(".."):
        return location
    return relative.replace(os.sep, "/") + "/"


def title_line(rows: Sequence[StepStats]) -> str:
    return f"cellcache: {len(rows)} step{'s' if len(rows) != 1 else ''}"


# ---------------------------------------------------------------- row model


@dataclass(frozen=True)
class Column:
    key: str  # the RowView field it shows
    header: str
    numeric: bool  # right-aligned in the text table


COLUMNS: tuple[Column, ...] = (
    Column("name", "step", False),
    Column("runs", "runs", True),
    Column("hits", "hits", True),
    Column("misses", "misses", True),
    Column("errors", "errors", True),
    Column("hit_rate", "hit rate", True),
    Column("saved", "saved", True),
    Column("last_seconds", "last run", True),
    Column("last_age", "last age", True),
    Column("entries", "entries", True),
    Column("size", "size", True),
    Column("reason", "last reason", False),
)


@dataclass(frozen=True)
class RowView:
    """One step as displayed: every cell already formatted, plus the bar's fill."""

    name: str
    runs: str
    hits: str
    misses: str
    errors: str
    hit_rate: str
    saved: str
    last_seconds: str
    last_age: str
    entries: str
    size: str
    reason: str
    bar: float  # the hit rate in [0, 1]; 0 when the step was never looked up

    def cells(self) -> tuple[str, ...]:
        return tuple(getattr(self, c.key) for c in COLUMNS)


@dataclass(frozen=True)
class StepErrors:
    """How often a step failed, and the last failure's text (the index's runs with status "error")."""

    count: int = 0
    last: str | None = None
    last_run_reason: str | None = None  # the reason of the step's latest run, whatever its status


def step_errors(store: object) -> dict[tuple[str, str], StepErrors]:
    """``{(notebook, step): StepErrors}`` from the index's run history; empty if it can't be read.

    StepStats does not carry errors (yet): read them here rather than widen the hit path's bookkeeping.
    """
    try:
        # StepStats carries the last *miss*'s reason: after a hit the panel showed the first run's
        # "first run of this step". The latest run's own reason is what "last reason" means.
        return {
            step: StepErrors(count=count, last=error, last_run_reason=latest)
            for step, (count, error, latest) in store.index.run_reasons().items()  # type: ignore[attr-defined]
        }
    except Exception:  # noqa: BLE001 - a missing column or a locked index only loses this column
        return {}


def row_view(row: StepStats, now: float | None = None, errors: StepErrors | None = None) -> RowView:
    now = time.time() if now is None else now
    errors = errors or StepErrors()
    reason = errors.last_run_reason or row.last_miss_reason or "-"
    if row.last_status == "error" and errors.last:
        reason = f"error: {errors.last}"  # a failing step must not look like one that never ran
    return RowView(
        name=row.name,
        runs=str(row.runs),
        hits=str(row.hits) + (f" ({row.remote_hits} remote)" if row.remote_hits else ""),
        misses=str(row.misses),
        errors=str(errors.count),
        hit_rate=format_rate(row.hit_rate),
        saved=format_seconds(row.saved_seconds),
        last_seconds=format_seconds(row.last_seconds),
        last_age=format_age(row.last_run_at, now),
        entries=str(row.entries),
        size=format_size(row.size_bytes),
        reason=reason,
        bar=row.hit_rate or 0.0,
    )


def slower_hit_hint(row: StepStats) -> str | None:
    """What ``stats`` and the panel say under a step whose hits cost more than its runs; None otherwise.

    One wording for both: the comparison itself is ``StepStats.slower_hit``.
    """
    slower = row.slower_hit
    return f"{slower}; it may be cheaper without %%cached" if slower else None


# ---------------------------------------------------------------- sorting and filtering

# The panel's sort choices. Numbers sort largest first (the steps that matter
# most on top); a step never looked up has no hit rate and goes last. Ties fall
# back to the name so the order is stable from one refresh to the next.
SORTS: dict[str, Callable[[StepStats], float | None]] = {
    # The notebook's own order, the order the steps run in: the default, as a reader expects.
    # Steps whose cell is not found (renamed, or a plain IPython session) follow, by name.
    "cell order": lambda r: None,
    "name": lambda r: None,
    "hit rate": lambda r: r.hit_rate,
    "time saved": lambda r: r.saved_seconds,
    "size": lambda r: float(r.size_bytes),
    "last run": lambda r: r.last_run_at,
}
SORT_OPTIONS: tuple[str, ...] = tuple(SORTS)


def sort_rows(rows: Iterable[StepStats], by: str = "name", order: Mapping[tuple[str, str], int] | None = None) -> list[StepStats]:
    """``order`` maps (notebook, step) to the step's cell index, for "cell order"."""
    if by not in SORTS:
        raise ValueError(f"unknown sort {by!r}; choose one of {', '.join(SORT_OPTIONS)}")
    by_name = sorted(rows, key=lambda r: (r.name, group_key(r)))
    if by == "name":
        return by_name
    if by == "cell order":
        order = order or {}
        return sorted(by_name, key=lambda r: (group_key(r), order.get((group_key(r), r.name)) is None, order.get((group_key(r), r.name), 0)))
    key = SORTS[by]
    # sorted() is stable: sorting the name-ordered list keeps name order among ties.
    return sorted(by_name, key=lambda r: (key(r) is None, -(key(r) or 0.0)))


def filter_rows(rows: Iterable[StepStats], text: str) -> list[StepStats]:
    """Steps whose name contains every word of ``text``, ignoring case; all of them for a blank filter."""
    words = text.lower().split()
    return [r for r in rows if all(w in _qualified(r).lower() for w in words)]


def _qualified(row: StepStats) -> str:
    return getattr(row, "qualified_name", row.name)


def group_key(row: StepStats) -> str:
    """The notebook a step belongs to ("" for a plain IPython session)."""
    return getattr(row, "notebook", "") or ""


def notebook_label(notebook: str) -> str:
    return notebook or "(IPython sessions)"


@dataclass(frozen=True)
class Selection:
    """What the panel shows: the first ``limit`` matching rows, in order."""

    shown: tuple[StepStats, ...]
    matched: int  # rows that pass the filter
    total: int  # rows in the store

    @property
    def hidden(self) -> int:
        """Matching rows left out by the limit (behind "show more")."""
        return self.matched - len(self.shown)


def select_rows(
    rows: Sequence[StepStats], text: str = "", by: str = "name", limit: int | None = None, order: Mapping[tuple[str, str], int] | None = None
) -> Selection:
    matched = sort_rows(filter_rows(rows, text), by, order)
    if len({group_key(r) for r in matched}) > 1:
        # Steps of one notebook stay together, in the chosen order inside each group (sorted() is stable).
        matched = sorted(matched, key=group_key)
    shown = matched if limit is None else matched[: max(limit, 0)]
    return Selection(shown=tuple(shown), matched=len(matched), total=len(rows))


# ---------------------------------------------------------------- the text form

_GAP = "  "
_MIN_SHRUNK = {"reason": 16, "name": 12}  # the columns that give way, in this order, when the table is too wide


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


def render_text(
    rows: Sequence[StepStats],
    location: str,
    width: int = 160,
    now: float | None = None,
    errors: dict[tuple[str, str], StepErrors] | None = None,
) -> str:
    """The table ``%cellcache stats`` prints and the panel's plain-text repr.

    Columns are as wide as their widest cell; if the table is wider than
    ``width``, the miss reason and then the step name are clipped with "…".
    """
    now = time.time() if now is None else now
    errors = errors or {}
    body = [row_view(r, now, errors.get((group_key(r), r.name))).cells() for r in rows]
    headers = tuple(c.header for c in COLUMNS)
    widths = [max(len(h), *(len(cells[i]) for cells in body)) if body else len(h) for i, h in enumerate(headers)]
    excess = sum(widths) + len(_GAP) * (len(widths) - 1) - width
    for key, floor in _MIN_SHRUNK.items():
        if excess <= 0:
            break
        i = next(n for n, c in enumerate(COLUMNS) if c.key == key)
        give = min(excess, max(widths[i] - max(floor, len(headers[i])), 0))
        widths[i] -= give
        excess -= give

    def line(cells: Sequence[str]) -> str:
        parts = [
            _clip(text, w).rjust(w) if col.numeric else _clip(text, w).ljust(w)
            for text, w, col in zip(cells, widths, COLUMNS)
        ]
        return _GAP.join(parts).rstrip()

    out = [title_line(rows), line(headers), _GAP.join("─" * w for w in widths)]
    out.extend(line(cells) for cells in body)
    if not body:
        out.append("(no steps yet: run a %%cached cell)")
    out.extend(f"hint: {r.qualified_name}: {hint}" for r in rows if (hint := slower_hit_hint(r)))
    auto = [r for r in rows if getattr(r, "auto", False)]
    if auto:  # auto mode's steps, counted apart from the %%cached ones
        hits, misses, runs = sum(r.hits for r in auto), sum(r.misses for r in auto), sum(r.runs for r in auto)
        out.append(f"auto mode: {len(auto)} step{'s' if len(auto) != 1 else ''}, {hits} hits, {misses} misses, {runs - hits - misses} plain")
    out.append(totals_line(rows, location))
    return "\n".join(out)


def stats_table(rows: Sequence[StepStats], location: str, now: float | None = None) -> Table:
    """The same cells as a rich ``Table``, for a rich console (colours, boxes).

    It is slow for hundreds of steps (rich measures every cell); ``render_text``
    is what ``%cellcache stats`` uses.
    """
    from rich.table import Table

    table = Table(title=title_line(rows), title_justify="left")
    for column in COLUMNS:
        table.add_column(column.header, justify="right" if column.numeric else "left")
    now = time.time() if now is None else now
    for r in rows:
        table.add_row(*row_view(r, now).cells())
    table.caption = totals_line(rows, location)
    table.caption_justify = "left"
    return table


# ---------------------------------------------------------------- one step's entries


@dataclass(frozen=True)
class EntryView:
    """One stored entry of a step, as the panel lists it when its row is opened."""

    key: str
    variant: str
    created: str  # "created 3.0 min ago"
    size: str
    hits: str  # "2 hits"
    inputs: str  # what tells this entry apart from the step's others


def distinguishing(components: Sequence[dict[str, str]], descriptions: Sequence[dict[str, str]]) -> list[str]:
    """For each entry, the components whose value differs among the entries, in words."""
    names = sorted({c for comps in components for c in comps})
    varying = [c for c in names if len({comps.get(c) for comps in components}) > 1]
    phrases = []
    for comps, descs in zip(components, descriptions):
        parts = []
        for c in varying:
            kind, _, name = c.partition(":")
            value = comps.get(c)
            if value is None:
                parts.append(f"no {c}")
            elif kind == "input":
                parts.append(f"{name} = {descs.get(c) or value[:8]}")
            elif kind == "code":
                parts.append(f"code {value[:8]}")
            else:
                parts.append(f"{c} {value[:12]}")
        phrases.append(", ".join(parts))
    return phrases


def entry_views(store: object, step: object, now: float | None = None) -> list[EntryView]:
    """The entries of one step (a StepRef), newest first, with what tells them apart and their hits."""
    now = time.time() if now is None else now
    index = store.index  # type: ignore[attr-defined]
    rows = sorted(index.entries(step), key=lambda r: r.created, reverse=True)
    manifests = [store.manifest(r.key, getattr(r, "variant", None) or None) for r in rows]  # type: ignore[attr-defined]
    components = [dict(m.components) if m is not None else {} for m in manifests]
    descriptions = [dict(m.descriptions) if m is not None else {} for m in manifests]
    apart = distinguishing(components, descriptions) if len(rows) > 1 else ["the only entry"] * len(rows)
    try:
        hits = index.hits_by_key(step)
    except Exception:  # noqa: BLE001 - an index without run history only loses the counts
        hits = {}
    return [
        EntryView(
            key=r.key,
            variant=getattr(r, "variant", ""),
            created=f"created {format_age(r.created, now)}",
            size=format_size(r.size),
            hits=f"{hits.get(r.key, 0)} hit{'s' if hits.get(r.key, 0) != 1 else ''}",
            inputs=phrase or "same components (differs in files the cell read)",
        )
        for r, phrase in zip(rows, apart)
    ]


# ---------------------------------------------------------------- the HTML form

_HTML_STYLE = (
    "border-collapse:collapse;font-size:12px;font-family:var(--jp-ui-font-family,sans-serif);"
    "color:var(--jp-ui-font-color1,inherit)"
)


def render_html(
    rows: Sequence[StepStats],
    location: str,
    now: float | None = None,
    errors: dict[tuple[str, str], StepErrors] | None = None,
) -> str:
    """The table as static HTML: what a saved notebook shows where the live panel was.

    Plain markup with inline styles (a notebook viewer may drop ``<style>``);
    grouped by notebook when steps come from more than one.
    """
    import html

    now = time.time() if now is None else now
    errors = errors or {}
    cell = "padding:2px 8px;border-bottom:1px solid var(--jp-border-color2,#ddd);white-space:nowrap"
    head = "".join(
        f'<th style="{cell};text-align:{"right" if c.numeric else "left"}">{html.escape(c.header)}</th>' for c in COLUMNS
    )
    body: list[str] = []
    grouped = len({group_key(r) for r in rows}) > 1
    current: str | None = None
    for r in rows:
        if grouped and group_key(r) != current:
            current = group_key(r)
            body.append(f'<tr><th colspan="{len(COLUMNS)}" style="{cell};text-align:left">{html.escape(notebook_label(current))}</th></tr>')
        cells = row_view(r, now, errors.get((group_key(r), r.name))).cells()
        body.append(
            "<tr>"
            + "".join(
                f'<td style="{cell};text-align:{"right" if c.numeric else "left"}">{html.escape(text)}</td>'
                for c, text in zip(COLUMNS, cells)
            )
            + "</tr>"
        )
        hint = slower_hit_hint(r)
        if hint:  # the saved form shows what the live panel showed under the row
            body.append(
                f'<tr class="cellcache-hint"><td colspan="{len(COLUMNS)}" style="{cell};font-style:italic">'
                f"hint: {html.escape(hint)}</td></tr>"
            )
    if not rows:
        body.append(f'<tr><td colspan="{len(COLUMNS)}" style="{cell}">no steps yet: run a %%cached cell</td></tr>')
    return (
        f'<div class="cellcache-table-html"><div><b>{html.escape(title_line(rows))}</b></div>'
        f'<table style="{_HTML_STYLE}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'
        f"<div>{html.escape(totals_line(rows, location))}</div></div>"
    )


# ---------------------------------------------------------------- gc plan


def gc_needs_confirmation(victims: int, entries: int) -> bool:
    """More than half of the store is a lot to lose to a typo: ask first (or take --yes)."""
    return entries > 0 and victims * 2 > entries
