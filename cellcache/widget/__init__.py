"""The cache panel: one row per step, with actions, made only of standard ipywidgets 8 widgets.

No front-end code of its own, so it renders wherever ipywidgets does
(JupyterLab 4, Notebook 7, VS Code). It is a view: the rows come from
``store.step_rows()``, the actions call ``store.invalidate`` / ``store.clear``,
and sorting, filtering and cell formatting live in ``cellcache.report``.

Scale: an ipywidget costs ~0.15 ms to build even with shared layouts and
styles, and a row is 14 of them, so 500 rows would take over a second. The
panel therefore builds at most ``page_size`` rows (25) and offers "Show more"
for the rest; rows are cached by step name and updated in place on refresh,
so a live update after a cell re-uses every widget already built. Figures are
in ``benchmarks/panel_bench.py``. A step whose hits cost more than its runs
gets one more widget, a hint line under its row (``StepStats.slower_hit``).
"""
from __future__ import annotations

import time
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import ipywidgets as widgets

from cellcache.report import (
    COLUMNS,
    SORT_OPTIONS,
    StepErrors,
    entry_views,
    format_seconds,
    format_size,
    group_key,
    notebook_label,
    render_html,
    render_text,
    row_view,
    select_rows,
    shown_location,
    step_errors,
    totals_line,
)
from cellcache.store.base import StepRef
from cellcache.store.index import StepStats
from cellcache.widget.graph import GraphView
from cellcache.widget.rows import REASON_MIN, StepRow, Parts, css_name

__all__ = ["CachePanel", "GraphView", "StepRow", "css_name", "drop_entry"]

if TYPE_CHECKING:
    from cellcache.cell.runner import Session, StepRun
    from cellcache.store.local import LocalStore


PAGE_SIZE = 25


# The panel's headers where the text table's are too wide for the column.
_SHORT_HEADERS = {"last_age": "age", "reason": "last reason"}


_ERROR_COLOR = "#c62828"


# The order in which columns give way as the panel narrows, with the panel width (px) under which each goes.
# At 1280 px with JupyterLab's file browser open the output area is about 850 px wide, at 1024 px
# without it about 880 px: both keep a reason column of 250 px or more.
_GIVE_WAY: tuple[tuple[int, tuple[str, ...]], ...] = (
    (1150, ("bar", "last_seconds")),
    (1000, ("runs", "misses", "entries")),
    (820, ("size", "last_age")),
    # "saved" never gives way: it is what the cache is for, and it said less than the reason did at 1024 px.
    (640, ("errors", "hit_rate")),
)


# ipywidgets boxes scroll on their own (overflow: auto), which made each row scroll
# sideways apart from the header. One stylesheet, scoped to the panel, makes the
# table one scroll area and lets columns give way by the panel's own width
# (a container query), whatever the window and side panels around it.
_CSS = (
    ".cellcache-panel{container-type:inline-size;container-name:cellcache}"
    ".cellcache-panel .cellcache-table{overflow-x:auto;overflow-y:visible}"
    ".cellcache-panel .cellcache-table .widget-box{overflow:visible}"
    f".cellcache-panel .cellcache-row,.cellcache-panel .cellcache-header{{min-width:fit-content}}"
    # contain:inline-size: a long reason (the latest run's, "hit: ...; restoring costs ...") must not
    # widen its row past the header; it is clipped, and its tooltip holds the whole text.
    f".cellcache-panel .cellcache-col-reason{{min-width:{REASON_MIN}px;contain:inline-size}}"
    ".cellcache-panel .cellcache-table .widget-label{overflow:hidden;text-overflow:ellipsis;white-space:nowrap}"
    ".cellcache-panel .cellcache-table .widget-html-content{overflow:hidden}"
    ".cellcache-panel .cellcache-clip{display:block;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}"
    ".cellcache-panel .cellcache-group{font-weight:bold;margin-top:6px}"
    ".cellcache-panel button.cellcache-toggle{padding:0}"
    ".cellcache-panel .cellcache-entry-list{margin-left:30px;font-size:0.9em}"
    ".cellcache-panel .cellcache-clear button,.cellcache-panel button.cellcache-clear{opacity:0.8}"
    + "".join(
        f"@container cellcache (max-width:{width}px){{"
        + ",".join(f".cellcache-panel .cellcache-col-{key.replace('_', '-')}" for key in keys)
        + "{display:none!important}}"
        for width, keys in _GIVE_WAY
    )
)


def _key(row: StepStats) -> str:
    """A row's identity in the panel: ``NB:STEP``, or the bare name for a plain IPython session."""
    return str(StepRef(group_key(row), row.name))


def drop_entry(store: Any, ref: StepRef, key: str, variant: str) -> bool:
    """Drop one entry of a step, under the lock ``cellcache invalidate`` takes; False if it was not there."""
    if not any((r.key, r.variant) == (key, variant) for r in store.entries(ref)):
        return False
    store.drop_entry(key, variant)
    return True


def _entries(n: int) -> str:
    return f"{n} entr{'y' if n == 1 else 'ies'}"


def _is_terminal(shell: Any) -> bool:
    """A terminal IPython shows only the text form: a live link there would refresh, unseen, after every cell."""
    return any(cls.__name__ == "TerminalInteractiveShell" for cls in type(shell).__mro__)


class _LiveLink:
    """A session listener that refreshes a panel without keeping it alive.

    The session holds this object, and this object holds the panel only
    weakly, so the session never is the reason a panel lives on: once the
    panel is collected the link removes itself. (An open ipywidget is also
    held by its comm until ``close()``, which detaches the link at once; a
    panel still open but no longer on screen skips its refreshes instead,
    see ``CachePanel._on_step_run``.)
    """

    def __init__(self, panel: CachePanel, listeners: list[Callable[[StepRun], None]]) -> None:
        self._panel = weakref.ref(panel)
        self._listeners = listeners

    def __call__(self, run: StepRun) -> None:
        panel = self._panel()
        if panel is None:
            self.detach()
            return
        panel._on_step_run(run)

    def detach(self) -> None:
        try:
            self._listeners.remove(self)
        except ValueError:
            pass


class CachePanel(widgets.VBox):
    """The cache browser that ``%cellcache`` and ``cellcache.panel()`` return.

    Public handles (stable, used by the tests):

    - ``rows``: ``{step name: StepRow}`` of the rows shown, in display order;
    - ``filter_text`` (Text), ``sort_dropdown`` (Dropdown of ``cellcache.report.SORT_OPTIONS``);
    - ``refresh_button``, ``clear_button``, and the confirmation
      ``confirm_box`` with ``confirm_button`` / ``cancel_button``;
    - ``more_button`` ("Show more", when more than ``page_size`` steps match);
    - ``feedback`` (Label: the last action's outcome), ``title``, ``totals``;
    - ``text()``: the plain-text table, the same as ``%cellcache stats``.

    With a ``session`` (in a kernel, not a terminal) the panel refreshes
    itself after every ``%%cached`` cell while it is on screen, until ``close()``.
    """

    def __init__(self, store: LocalStore, session: Session | None = None, *, page_size: int = PAGE_SIZE, **kwargs: Any) -> None:
        # _view_count=0 asks the front end to count this panel's views (an ipywidgets
        # feature, off by default): once its output is cleared, live refreshes stop.
        kwargs.setdefault("_view_count", 0)
        super().__init__(**kwargs)
        self.store = store
        self.session = session
        self.page_size = max(int(page_size), 1)
        self._limit = self.page_size
        self._all: list[StepStats] = []
        self._now = time.time()
        self._row_cache: dict[str, StepRow] = {}
        self._shown: list[str] = []
        self._link: _LiveLink | None = None
        self._parts = Parts()

        self.title = widgets.HTML()
        self.filter_text = widgets.Text(
            placeholder="filter steps by name", continuous_update=True, layout=widgets.Layout(width="220px")
        )
        self.sort_dropdown = widgets.Dropdown(
            options=SORT_OPTIONS,
            value="cell order",
            description="sort by",
            tooltip="numbers sort largest first",
            style={"description_width": "initial"},
            layout=widgets.Layout(width="190px"),
        )
        self.refresh_button = widgets.Button(description="Refresh", icon="refresh", tooltip="Read the index again")
        # Plain and last in the toolbar: the one action that can't be undone is not the loudest control.
        self.clear_button = widgets.Button(
            description="Clear all…",
            tooltip="Drop every entry of every step (asks first)",
            _dom_classes=("cellcache-clear",),
            layout=widgets.Layout(width="auto", margin="2px 2px 2px auto"),
        )
        # Table or graph: the graph view (and anywidget) is built the first time it is asked for.
        self.view_toggle = widgets.ToggleButtons(
            options=("table", "graph"),
            value="table",
            tooltips=("one row per step", "the notebook's steps and what flows between them"),
            style=widgets.ToggleButtonsStyle(button_width="64px"),
            _dom_classes=("cellcache-view-toggle",),
        )
        self.graph_view: GraphView | None = None
        toolbar = widgets.HBox(
            [self.view_toggle, self.filter_text, self.sort_dropdown, self.refresh_button, self.clear_button],
            layout=widgets.Layout(width="100%", flex_flow="row wrap"),
        )
        self.confirm_label = widgets.Label()
        self.confirm_button = widgets.Button(description="Yes, clear all", button_style="danger")
        self.cancel_button = widgets.Button(description="Cancel")
        self.confirm_box = widgets.HBox(
            [self.confirm_label, self.confirm_button, self.cancel_button], layout=widgets.Layout(display="none")
        )
        self.feedback = widgets.Label()
        self.feedback.add_class("cellcache-feedback")
        self.style_html = widgets.HTML(f"<style>{_CSS}</style>", layout=widgets.Layout(height="0px", margin="0"))
        self.header = widgets.HBox(self._header_cells(), layout=self._parts.row_layout, _dom_classes=("cellcache-header",))
        self.rows_box = widgets.VBox()
        # One scroll area for the header and every row, so they can never drift apart.
        self.table = widgets.VBox([self.header, self.rows_box], _dom_classes=("cellcache-table",), layout=widgets.Layout(width="100%"))
        self.empty_label = widgets.Label()
        self.more_button = widgets.Button(description="Show more", layout=widgets.Layout(display="none", width="auto"))
        self.totals = widgets.Label()
        self.totals.add_class("cellcache-totals")
        self._groups: dict[str, widgets.HTML] = {}
        self._errors: dict[tuple[str, str], StepErrors] = {}
        self._snapshot_id: str | None = None
        self._own = [
            self.view_toggle, self.title, self.filter_text, self.sort_dropdown, self.refresh_button, self.clear_button, toolbar,
            self.confirm_label, self.confirm_button, self.cancel_button, self.confirm_box, self.feedback,
            self.style_html, self.header, self.rows_box, self.table, self.empty_label, self.more_button, self.totals,
        ]  # fmt: skip
        self.children = [
            self.style_html, self.title, toolbar, self.confirm_box, self.feedback, self.table, self.more_button, self.totals,
        ]  # fmt: skip
        self.add_class("cellcache-panel")

        self.refresh_button.on_click(lambda _b: self._on_refresh())
        self.clear_button.on_click(lambda _b: self._ask_clear())
        self.confirm_button.on_click(lambda _b: self._confirm_clear())
        self.cancel_button.on_click(lambda _b: self._cancel_clear())
        self.more_button.on_click(lambda _b: self._show_more())
        self.filter_text.observe(self._on_view_change, names="value")
        self.sort_dropdown.observe(self._on_view_change, names="value")
        self.view_toggle.observe(lambda _c: self._show_view(), names="value")

        self._stale = False
        self._was_shown = False
        self.observe(self._on_view_count, names="_view_count")

        self.refresh()
        if session is not None and not _is_terminal(session.shell):
            self._link = _LiveLink(self, session.listeners)
            session.listeners.append(self._link)
            # Also detach when the panel is collected without a cell running afterwards.
            weakref.finalize(self, self._link.detach)

    # ------------------------------------------------------------------ reading

    @property
    def rows(self) -> dict[str, StepRow]:
        """The rows shown, by step name (``NB:STEP`` for a notebook's step), in display order."""
        return {name: self._row_cache[name] for name in self._shown}

    @property
    def steps(self) -> list[StepStats]:
        """Every step of the store as last read, whatever the filter."""
        return list(self._all)

    @property
    def refreshed_at(self) -> float:
        """When the index was last read; the ages shown are relative to it."""
        return self._now

    @property
    def confirming(self) -> bool:
        return self.confirm_box.layout.display != "none"

    def text(self) -> str:
        """The plain-text table of every step: what ``%cellcache stats`` prints."""
        return render_text(self._all, shown_location(str(self.store.root)), now=self._now, errors=self._errors)

    def html(self) -> str:
        """The table (or, in the graph view, the picture) as static HTML: what a saved notebook shows without a kernel."""
        if self.view_toggle.value == "graph" and self.graph_view is not None and self.graph_view.graph is not None:
            from cellcache import graph as _graph

            # The SVG already drawn for the widget; without dot, the same steps as a text list.
            return _graph.to_html(self.graph_view.graph, self.graph_view.drawing.svg or "")
        return render_html(self._shown_rows(), shown_location(str(self.store.root)), now=self._now, errors=self._errors)

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        # Jupyter renders the widget; a terminal IPython shows text/plain, the stats table;
        # viewers without a widget manager (nbconvert, GitHub) take text/html.
        data = super()._repr_mimebundle_(**kwargs) or {}
        data["text/plain"] = self.text()
        data["text/html"] = self.html()
        return data

    def _snapshot_bundle(self) -> dict[str, str]:
        # JupyterLab renders the widget view whenever a bundle has one, and shows "model not found"
        # once the kernel is gone; so the HTML goes into an output of its own, before the widget.
        # Its stylesheet hides it while the live panel follows it, and hides the dead widget's error
        # once the panel is gone. (Where <style> is dropped, an untrusted notebook, both show.)
        hide = (
            ".jp-OutputArea-child:has(.cellcache-snapshot):has(+ .jp-OutputArea-child .cellcache-panel){display:none}"
            ".jp-OutputArea-child:has(.cellcache-snapshot) + .jp-OutputArea-child:not(:has(.cellcache-panel))"
            ":has(.jp-OutputArea-output.jupyter-widgets){display:none}"
        )
        return {
            "text/html": f'<div class="cellcache-snapshot"><style>{hide}</style>{self.html()}</div>',
            "text/plain": "cellcache panel (last table)",
        }

    def _ipython_display_(self) -> None:
        from IPython.display import display

        if self.session is not None and _is_terminal(self.session.shell):
            print(self.text())
            return
        if self._snapshot_id is None:
            import uuid

            self._snapshot_id = f"cellcache-panel-{uuid.uuid4().hex}"
        display(self._snapshot_bundle(), raw=True, display_id=self._snapshot_id)
        display(self._repr_mimebundle_(), raw=True)

    def _update_snapshot(self) -> None:
        if self._snapshot_id is None:
            return
        from IPython.display import update_display

        try:
            update_display(self._snapshot_bundle(), raw=True, display_id=self._snapshot_id)
        except Exception:  # noqa: BLE001 - a snapshot that can't be updated keeps its last table
            pass

    def _shown_rows(self) -> list[StepStats]:
        return [self._row_cache[name].stats for name in self._shown if name in self._row_cache]

    # ------------------------------------------------------------------ view

    def refresh(self) -> bool:
        """Read the index again and update the rows (only changed cells are sent); False if it failed."""
        try:
            rows = self.store.step_rows()
        except Exception as exc:  # noqa: BLE001 - a locked or broken index must not break the notebook
            self._say(f"Could not read the index: {exc}", error=True)
            return False
        self._all = rows
        self._errors = step_errors(self.store)
        self._now = time.time()
        self._render()
        self._update_snapshot()
        return True

    def _root(self) -> Path:
        if self.session is not None and getattr(self.session.config, "root", None) is not None:
            return Path(self.session.config.root)
        from cellcache import config as _config

        return _config.resolve().root or Path.cwd()

    def _order(self) -> dict[tuple[str, str], int]:
        if self.sort_dropdown.value != "cell order":
            return {}
        from cellcache import graph as _graph

        try:
            return _graph.step_order(self._root(), {group_key(r) for r in self._all})
        except Exception:  # noqa: BLE001 - without the order, steps fall back to their names
            return {}

    def _graph_notebook(self) -> str:
        """The notebook the graph shows: this kernel's, else the one the steps belong to, if only one."""
        if self.session is not None and self.session.notebook:
            return self.session.notebook
        notebooks = sorted({group_key(r) for r in self._all})
        return notebooks[0] if len(notebooks) == 1 else (self.session.notebook if self.session is not None else "")

    def _show_view(self) -> None:
        graph_mode = self.view_toggle.value == "graph"
        if graph_mode and self.graph_view is None:
            self.graph_view = GraphView(self._invalidate)
        shown = [self.graph_view.box] if graph_mode and self.graph_view is not None else [self.table, self.more_button]
        self.children = [self.style_html, self.title, self.children[2], self.confirm_box, self.feedback, *shown, self.totals]
        if graph_mode:
            self._render_graph()
        self._update_snapshot()  # a saved notebook shows the view that was on screen

    def _render_graph(self) -> None:
        if self.graph_view is None or self.view_toggle.value != "graph":
            return
        from cellcache import graph as _graph

        notebook = self._graph_notebook()
        reasons = {name: e.last_run_reason for (nb, name), e in self._errors.items() if nb == notebook and e.last_run_reason}
        try:
            drawn, note = _graph.for_panel(self._root(), notebook, self._all, reasons)
        except Exception as exc:  # noqa: BLE001 - a picture that can't be drawn must not break the panel
            self.graph_view.show(None, f"Could not draw the graph: {exc}")
            return
        self.graph_view.show(drawn, note)

    def _render(self) -> None:
        self._render_graph()
        selection = select_rows(self._all, self.filter_text.value, self.sort_dropdown.value, self._limit, self._order())
        alive = {_key(r) for r in self._all}
        for gone in [name for name in self._row_cache if name not in alive]:
            self._row_cache.pop(gone).close()
        grouped = len({group_key(r) for r in selection.shown}) > 1
        boxes: list[widgets.Widget] = []
        current: str | None = None
        for row in selection.shown:
            if grouped and group_key(row) != current:
                current = group_key(row)
                boxes.append(self._group_label(current))
            view = row_view(row, self._now, self._errors.get((group_key(row), row.name)))
            cached = self._row_cache.get(_key(row))
            if cached is None:
                cached = self._row_cache[_key(row)] = StepRow(row, view, self._parts, self._invalidate, self._toggle)
            else:
                cached.update(row, view)
            boxes.append(cached.box)
            if cached.hint_label is not None:
                boxes.append(cached.hint_label)
            if cached.details is not None:
                boxes.append(cached.details)
        self._shown = [_key(row) for row in selection.shown]

        if not self._all:
            self.empty_label.value = "No steps yet: run a %%cached cell."
            boxes = [self.empty_label]
        elif not selection.matched:
            self.empty_label.value = f"No step name contains {self.filter_text.value.strip()!r}."
            boxes = [self.empty_label]
        if tuple(boxes) != self.rows_box.children:
            self.rows_box.children = boxes

        if selection.hidden:
            self.more_button.description = f"Show {min(selection.hidden, self.page_size)} more ({selection.hidden} not shown)"
            self.more_button.layout.display = None
        else:
            self.more_button.layout.display = "none"
        title = f"<b>cellcache</b>: {selection.total} step{'s' if selection.total != 1 else ''}"
        if selection.matched != selection.total or selection.hidden:
            title += f", showing {len(selection.shown)}"
            if selection.matched != selection.total:
                title += f" of {selection.matched} matching"
        self.title.value = title
        # Relative to the kernel's folder when inside it: a saved notebook or a docs page shows
        # `.cellcache/`, not a temporary or home path of the machine that ran it.
        self.totals.value = totals_line(self._all, shown_location(str(self.store.root)))

    def _group_label(self, notebook: str) -> widgets.HTML:
        import html

        label = self._groups.get(notebook)
        if label is None:
            label = self._groups[notebook] = widgets.HTML(
                html.escape(notebook_label(notebook)), _dom_classes=("cellcache-group",)
            )
        return label

    def _header_cells(self) -> list[widgets.Widget]:
        parts = self._parts
        cells: list[widgets.Widget] = [widgets.Label("", layout=parts.layouts["toggle"], _dom_classes=("cellcache-col-toggle",))]
        for column in COLUMNS:
            header = _SHORT_HEADERS.get(column.key, column.header)
            css = f"cellcache-col-{column.key.replace('_', '-')}"
            cells.append(widgets.Label(header, layout=parts.layouts[column.key], style=parts.header_style, _dom_classes=(css,)))
            if column.key == "hit_rate":
                # The bar's column has no header of its own; an empty cell keeps the header in line with the rows.
                cells.append(widgets.Label("", layout=parts.layouts["bar"], _dom_classes=("cellcache-col-bar",)))
        cells.append(widgets.Label("", layout=parts.layouts["button"], style=parts.header_style, _dom_classes=("cellcache-col-button",)))
        self._header_labels = cells
        return cells

    def _say(self, message: str, error: bool = False) -> None:
        self.feedback.value = message
        self.feedback.style.text_color = _ERROR_COLOR if error else None

    # ------------------------------------------------------------------ actions

    def _on_view_change(self, _change: dict[str, Any]) -> None:
        self._limit = self.page_size  # a new filter or order starts again from the first page
        self._render()

    def _show_more(self) -> None:
        self._limit += self.page_size
        self._render()

    def _on_refresh(self) -> None:
        if self.refresh():
            self._say(f"Refreshed at {time.strftime('%H:%M:%S', time.localtime(self._now))}: {len(self._all)} steps.")

    def _invalidate(self, ref: StepRef | str) -> None:
        name = str(ref)
        try:
            dropped = self.store.invalidate(ref)
        except Exception as exc:  # noqa: BLE001 - report it in the panel; the store is unchanged or half-dropped
            self._say(f"Could not invalidate {name!r}: {exc}", error=True)
            self.refresh()
            return
        row = self._row_cache.get(name)
        if row is not None and row.is_open:
            row.close_details()
        self.refresh()
        self._say(f"Invalidated {name!r}: {_entries(dropped)} dropped; it runs next time.")

    def _toggle(self, row: StepRow) -> None:
        if row.is_open:
            row.close_details()
        else:
            self._open(row)
        self._render()

    def _open(self, row: StepRow) -> None:
        """List the step's entries under its row: created, size, what tells them apart, hits; each with Invalidate."""
        try:
            views = entry_views(self.store, row.ref, self._now)
        except Exception as exc:  # noqa: BLE001 - a broken index only costs the list
            self._say(f"Could not list the entries of {str(row.ref)!r}: {exc}", error=True)
            return
        lines: list[widgets.Widget] = []
        buttons: dict[str, widgets.Button] = {}
        for view in views:
            button = widgets.Button(
                description="Invalidate",
                tooltip=f"Drop this entry ({view.key[:12]}) only",
                _dom_classes=("cellcache-entry-invalidate",),
                layout=widgets.Layout(width="90px"),
            )
            button.on_click(lambda _b, v=view: self._invalidate_entry(row, v.key, v.variant))
            buttons[f"{view.key}/{view.variant}"] = button
            text = f"{view.created} · {view.size} · {view.hits} · {view.inputs}"
            lines.append(
                widgets.HBox(
                    [widgets.Label(text, tooltip=view.inputs, layout=widgets.Layout(flex="1 1 0", min_width="0")), button],
                    _dom_classes=("cellcache-entry",),
                )
            )
        if not lines:
            lines.append(widgets.Label("no stored entries (the next run stores one)"))
        row.details = widgets.VBox(lines, _dom_classes=("cellcache-entry-list",))
        row.entry_buttons = buttons
        row.toggle_button.description = "▾"

    def _invalidate_entry(self, row: StepRow, key: str, variant: str) -> None:
        try:
            dropped = drop_entry(self.store, row.ref, key, variant)
        except Exception as exc:  # noqa: BLE001
            self._say(f"Could not drop the entry {key[:12]}: {exc}", error=True)
            return
        row.close_details()
        self.refresh()
        if dropped:
            fresh = self._row_cache.get(str(row.ref))
            if fresh is not None:
                self._open(fresh)
                self._render()
        self._say(f"Dropped entry {key[:12]} of {str(row.ref)!r}." if dropped else f"Entry {key[:12]} was already gone.")

    def _ask_clear(self) -> None:
        self.refresh()  # the question must name what is in the store now
        count = sum(r.entries for r in self._all)
        size = sum(r.size_bytes for r in self._all)
        self.confirm_label.value = f"Delete all {_entries(count)} ({format_size(size)}) in {self.store.root}?"
        self.confirm_box.layout.display = "flex"
        self.clear_button.disabled = True
        self._say("Clear all? Confirm or cancel.")

    def _hide_confirm(self) -> None:
        self.confirm_box.layout.display = "none"
        self.clear_button.disabled = False

    def _confirm_clear(self) -> None:
        self._hide_confirm()
        try:
            dropped = self.store.clear()
        except Exception as exc:  # noqa: BLE001
            self._say(f"Could not clear the store: {exc}", error=True)
            self.refresh()
            return
        self.refresh()
        self._say(f"Cleared the store: {_entries(dropped)} dropped.")

    def _cancel_clear(self) -> None:
        self._hide_confirm()
        self._say("Nothing was cleared.")

    @property
    def on_screen(self) -> bool:
        """False once every view of a panel that was shown has gone (its output cleared).

        A front end that does not count views, and a terminal, leave the count
        at 0 without ever showing the panel: those panels count as on screen.
        """
        return bool(self._view_count) or not self._was_shown

    def _on_view_count(self, change: dict[str, Any]) -> None:
        if change["new"]:
            self._was_shown = True
            if self._stale:  # cells ran while it was off screen: catch up once
                self._stale = False
                self.refresh()

    def _on_step_run(self, run: StepRun) -> None:
        if not self.on_screen:
            # A forgotten panel costs the kernel nothing per cell: no query, no messages.
            self._stale = True
            return
        if not self.refresh():
            return
        detail = f", saved {format_seconds(run.saved_seconds)}" if run.hit else ""
        self._say(f"Updated after step {run.name!r}: {run.status}{detail}.")

    # ------------------------------------------------------------------ lifetime

    def close(self) -> None:
        """Stop live updates and close every widget of the panel.

        Closing only the VBox would leave its children (and their layouts and
        styles) open in ipywidgets' registry, which holds them forever.
        """
        link = getattr(self, "_link", None)  # close() also runs from __del__, maybe on a half-built panel
        if link is not None:
            link.detach()
            self._link = None
        parts = getattr(self, "_parts", None)
        doomed: list[widgets.Widget] = []
        for row in getattr(self, "_row_cache", {}).values():
            doomed.extend(row.widgets())
        graph_view = getattr(self, "graph_view", None)
        if graph_view is not None:
            doomed.extend(graph_view.widgets())
        for widget in [*getattr(self, "_own", []), *getattr(self, "_header_labels", []), *getattr(self, "_groups", {}).values(), self]:
            # Layouts and styles are widgets too (closing one twice, when shared, is harmless).
            doomed.extend(p for p in (getattr(widget, "layout", None), getattr(widget, "style", None)) if p is not None)
            if widget is not self:
                doomed.append(widget)
        if parts is not None:
            doomed.extend(parts.widgets())
        for widget in doomed:
            widget.close()
        if hasattr(self, "_row_cache"):
            self._row_cache.clear()
            self._shown = []
        super().close()


