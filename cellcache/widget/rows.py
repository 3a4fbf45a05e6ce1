"""One step's row in the panel: its cells, its bar, its entries and its actions."""
from __future__ import annotations

import re
from typing import TYPE_CHECKING, Callable

import ipywidgets as widgets
from ipywidgets.widgets.widget_int import ProgressStyle
from ipywidgets.widgets.widget_string import HTMLStyle, LabelStyle

from cellcache.report import (
    COLUMNS,
    RowView,
    group_key,
    slower_hit_hint,
)
from cellcache.store.base import StepRef
from cellcache.store.index import StepStats

if TYPE_CHECKING:
    pass


# Fixed column widths keep the per-row HBoxes aligned like a table; the reason
# takes what is left (clipped with "…", the full text in its tooltip). When the
# panel is narrow, the less telling columns give way before the reason does:
# see _CSS. Keys are cellcache.report.COLUMNS keys plus "toggle", "bar" and "button".
_WIDTHS: dict[str, int] = {
    "toggle": 28,
    "name": 120,
    "runs": 34,
    "hits": 34,
    "misses": 54,
    "errors": 48,
    "hit_rate": 58,
    "bar": 48,
    "saved": 60,
    "last_seconds": 64,
    "last_age": 88,
    "entries": 56,
    "size": 62,
    "button": 96,
}


_MARGIN = 4  # an ipywidget's default margin, both sides together


REASON_MIN = 200  # below this the whole table scrolls sideways, as one


# Cells that may be cut with "…" carry their full text as a tooltip. A Label's `tooltip` lands
# on its (absent) description in ipywidgets 8, not on the text, so these are HTML with a title.
_TITLED = frozenset({"name", "reason"})


def _titled(text: str) -> str:
    import html

    return f'<span class="cellcache-clip" title="{html.escape(text, quote=True)}">{html.escape(text)}</span>'


def css_name(step: str) -> str:
    """A CSS-class-safe form of a step name, for ``cellcache-row-<name>``."""
    return re.sub(r"[^A-Za-z0-9_-]", "-", step)


def _bar_style(rate: float | None) -> str:
    if rate is None:
        return ""
    return "success" if rate >= 0.5 else "warning"


class Parts:
    """Layouts and styles shared by every row of one panel.

    Sharing them halves the cost of a row: each widget would otherwise build
    its own Layout and Style widgets (~0.3 ms for three instead of ~0.15 ms).
    """

    def __init__(self) -> None:
        self.layouts: dict[str, widgets.Layout] = {
            key: widgets.Layout(width=f"{width}px", min_width=f"{width}px", flex="0 0 auto") for key, width in _WIDTHS.items()
        }
        # The reason grows into the room left; the columns of _GIVE_WAY go before it shrinks below REASON_MIN.
        self.layouts["reason"] = widgets.Layout(flex="1 1 0", min_width=f"{REASON_MIN}px")
        self.row_layout = widgets.Layout(align_items="center", width="100%")
        self.label_style = LabelStyle()
        self.html_style = HTMLStyle()
        self.header_style = LabelStyle(font_weight="bold")
        self.bar_style = ProgressStyle()
        self.button_style = widgets.ButtonStyle()
        # A hint line starts under the step's name (past the toggle and its margins), so it reads as that row's.
        self.hint_layout = widgets.Layout(margin=f"0 0 4px {_WIDTHS['toggle'] + _MARGIN + _MARGIN // 2}px")
        self.hint_style = LabelStyle(font_style="italic")

    def widgets(self) -> list[widgets.Widget]:
        return [
            *self.layouts.values(), self.row_layout, self.label_style, self.html_style, self.header_style, self.bar_style,
            self.button_style, self.hint_layout, self.hint_style,
        ]  # fmt: skip


class StepRow:
    """The widgets of one step's row.

    ``labels`` maps each ``cellcache.report.COLUMNS`` key ("name", "runs", "hits", ...)
    to its Label; ``rate_bar`` is the hit-rate FloatProgress;
    ``invalidate_button`` drops the step's entries; ``stats`` is the
    ``StepStats`` the row shows and ``view`` its formatted cells;
    ``hint_label`` is the line the panel shows under the row while the step's
    hits cost more than its runs, else None.
    """

    def __init__(
        self,
        row: StepStats,
        view: RowView,
        parts: Parts,
        on_invalidate: Callable[[StepRef], None],
        on_toggle: Callable[[StepRow], None] | None = None,
    ) -> None:
        self.name = row.name
        self.ref = StepRef(group_key(row), row.name)
        self.stats = row
        self.view = view
        self._parts = parts
        self.details: widgets.VBox | None = None  # the entry list, while the row is open
        self.hint_label: widgets.Label | None = None
        self.entry_buttons: dict[str, widgets.Button] = {}
        # CSS classes go into the constructors: set afterwards, each would be one more state
        # message per widget to the front end.
        self.labels: dict[str, widgets.Label | widgets.HTML] = {}
        for column, cell in zip(COLUMNS, view.cells()):
            css = column.key.replace("_", "-")
            # cellcache-runs, cellcache-last-age, ... for tests; cellcache-col-* for the stylesheet
            common = dict(_dom_classes=(f"cellcache-{css}", f"cellcache-col-{css}"), layout=parts.layouts[column.key])
            if column.key in _TITLED:
                self.labels[column.key] = widgets.HTML(value=_titled(cell), style=parts.html_style, **common)
            else:
                self.labels[column.key] = widgets.Label(value=cell, style=parts.label_style, **common)
        self.rate_bar = widgets.FloatProgress(
            value=view.bar, min=0.0, max=1.0, bar_style=_bar_style(row.hit_rate), layout=parts.layouts["bar"], style=parts.bar_style,
            _dom_classes=("cellcache-col-bar",),
        )
        self.toggle_button = widgets.Button(
            description="▸",
            tooltip=f"List the entries of step {row.name!r}",
            _dom_classes=("cellcache-toggle", "cellcache-col-toggle"),
            layout=parts.layouts["toggle"],
            style=parts.button_style,
        )
        if on_toggle is not None:
            self.toggle_button.on_click(lambda _button: on_toggle(self))
        self.invalidate_button = widgets.Button(
            description="Invalidate",
            tooltip=f"Invalidate step {row.name!r}: drop its stored entries, so it runs next time",
            _dom_classes=("cellcache-invalidate", "cellcache-col-button"),
            layout=parts.layouts["button"],
            style=parts.button_style,
        )
        # The callback reaches the panel (its bound method), and the panel owns the row:
        # one cycle, collected with the panel.
        self.invalidate_button.on_click(lambda _button: on_invalidate(self.ref))
        cells: list[widgets.Widget] = [self.labels[c.key] for c in COLUMNS]
        rate_at = [c.key for c in COLUMNS].index("hit_rate") + 1
        cells.insert(rate_at, self.rate_bar)
        self.box = widgets.HBox(
            [self.toggle_button, *cells, self.invalidate_button],
            _dom_classes=("cellcache-row", f"cellcache-row-{css_name(row.name)}"),
            layout=parts.row_layout,
        )
        self._update_hint(row)

    @property
    def hint(self) -> str | None:
        """The hint line shown under the row, or None."""
        return self.hint_label.value if self.hint_label is not None else None

    def _update_hint(self, row: StepStats) -> None:
        text = slower_hit_hint(row)
        if text is None:
            if self.hint_label is not None:
                # Closed rather than hidden: most steps never need one, and a hidden widget still costs its comm.
                self.hint_label.close()
                self.hint_label = None
            return
        value = f"hint: {text}"
        if self.hint_label is None:
            self.hint_label = widgets.Label(
                value=value,
                style=self._parts.hint_style,
                layout=self._parts.hint_layout,
                _dom_classes=("cellcache-hint", f"cellcache-hint-{css_name(row.name)}"),
            )
        else:
            self.hint_label.value = value

    def cell_text(self, key: str) -> str:
        """The text a cell shows (a COLUMNS key), without its markup."""
        return getattr(self.view, key)

    def update(self, row: StepStats, view: RowView) -> None:
        """Show new numbers; a trait set to its current value sends nothing to the front end."""
        self.stats = row
        self._update_hint(row)  # the timings behind it are not among the view's cells
        if view == self.view:
            return
        self.view = view
        for column, cell in zip(COLUMNS, view.cells()):
            self.labels[column.key].value = _titled(cell) if column.key in _TITLED else cell
        self.rate_bar.value = view.bar
        self.rate_bar.bar_style = _bar_style(row.hit_rate)

    @property
    def is_open(self) -> bool:
        return self.details is not None

    def widgets(self) -> list[widgets.Widget]:
        hint = [self.hint_label] if self.hint_label is not None else []
        return [*self.labels.values(), self.rate_bar, self.toggle_button, self.invalidate_button, self.box, *hint, *self._detail_widgets()]

    def _detail_widgets(self) -> list[widgets.Widget]:
        if self.details is None:
            return []
        found: list[widgets.Widget] = []
        stack: list[widgets.Widget] = [self.details]
        while stack:
            widget = stack.pop()
            found.append(widget)
            stack.extend(getattr(widget, "children", ()))
        return found

    def close_details(self) -> None:
        for widget in self._detail_widgets():
            widget.close()
        self.details = None
        self.entry_buttons = {}
        self.toggle_button.description = "▸"

    def close(self) -> None:
        for widget in self.widgets():
            widget.close()


