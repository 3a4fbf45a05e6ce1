"""The statistics row model, sorting and filtering, and the text table (no shell, no widgets)."""
from __future__ import annotations

import dataclasses
import io

import pytest
from rich.console import Console

from cellcache.report import (
    COLUMNS,
    SORT_OPTIONS,
    RowView,
    filter_rows,
    format_age,
    format_rate,
    format_seconds,
    format_size,
    StepErrors,
    distinguishing,
    render_html,
    render_text,
    row_view,
    select_rows,
    sort_rows,
    stats_table,
    totals,
    totals_line,
)
from cellcache.store.index import StepStats

NOW = 1_700_000_000.0


def step(name: str, hits: int = 0, misses: int = 0, saved: float = 0.0, size: int = 0, entries: int = 0, **kw) -> StepStats:
    fields = dict(
        name=name,
        runs=hits + misses,
        hits=hits,
        misses=misses,
        saved_seconds=saved,
        last_seconds=None,
        last_run_at=None,
        last_status=None,
        last_miss_reason=None,
        entries=entries,
        size_bytes=size,
    )
    fields.update(kw)
    return StepStats(**fields)


ROWS = [
    step("load", hits=1, misses=1, saved=4.0, size=2_000, entries=1),
    step("features", hits=3, misses=1, saved=90.0, size=5_000_000, entries=2),
    step("fit_model", hits=0, misses=2, saved=0.0, size=800, entries=2),
    step("never_looked_up"),
]


# --------------------------------------------------------------------------- formatting


@pytest.mark.parametrize(
    "seconds, text",
    [(None, "-"), (0.0123, "12 ms"), (1.5, "1.5 s"), (119.0, "119.0 s"), (600, "10.0 min"), (7200, "2.0 h")],
)
def test_format_seconds(seconds, text):
    assert format_seconds(seconds) == text


def test_format_size_rate_age():
    assert [format_size(n) for n in (0, 999, 1_500, 2_500_000, 3_000_000_000, 4e12)] == [
        "0 B", "999 B", "1.5 KB", "2.5 MB", "3.0 GB", "4000.0 GB",
    ]  # fmt: skip
    assert format_rate(None) == "-" and format_rate(2 / 3) == "67%" and format_rate(1.0) == "100%"
    assert format_age(None, NOW) == "-"
    assert format_age(NOW - 90, NOW) == "90.0 s ago"
    assert format_age(NOW - 0.4, NOW) == "just now"
    assert format_age(NOW + 5, NOW) == "just now"  # a clock step backwards is not a negative age


def test_totals_cover_every_row():
    rate, saved, size = totals(ROWS)
    assert rate == pytest.approx(4 / 8) and saved == 94.0 and size == 5_002_800
    assert totals([]) == (None, 0, 0)
    assert totals_line(ROWS, "/store") == "total: hit rate 50%, saved 94.0 s, store 5.0 MB at /store"


# --------------------------------------------------------------------------- row model


def test_columns_show_every_cell_of_a_row_view():
    cells = {f.name for f in dataclasses.fields(RowView)} - {"bar"}
    assert [c.key for c in COLUMNS] == [k for k in (f.name for f in dataclasses.fields(RowView)) if k in cells]


def test_a_failing_step_shows_its_errors_and_last_error():
    row = step("fit", misses=2, last_status="error", last_miss_reason="code changed")
    view = row_view(row, NOW, StepErrors(count=2, last="ValueError: boom"))
    assert (view.errors, view.reason) == ("2", "error: ValueError: boom")
    # Once it succeeds again, the reason is the miss reason; the count stays.
    ok = row_view(dataclasses.replace(row, last_status="miss"), NOW, StepErrors(count=2, last="ValueError: boom"))
    assert (ok.errors, ok.reason) == ("2", "code changed")


def test_distinguishing_names_only_what_differs():
    comps = [{"code": "aa", "input:lr": "1", "input:n": "9"}, {"code": "aa", "input:lr": "2", "input:n": "9"}]
    descs = [{"input:lr": "float 0.05"}, {"input:lr": "float 0.1"}]
    assert distinguishing(comps, descs) == ["lr = float 0.05", "lr = float 0.1"]
    assert distinguishing([{"code": "aa"}, {"code": "bb"}], [{}, {}]) == ["code aa", "code bb"]


def test_html_table_groups_by_notebook_and_escapes():
    rows = [dataclasses.replace(step("load<x>"), notebook="a.ipynb"), dataclasses.replace(step("load"), notebook="b.ipynb")]
    page = render_html(rows, "/store")
    assert page.count("<tr>") == 5 and "load&lt;x&gt;" in page and "load<x>" not in page
    assert page.index("a.ipynb") < page.index("load&lt;x&gt;") < page.index("b.ipynb")


def test_selection_keeps_each_notebooks_steps_together():
    rows = [
        dataclasses.replace(step("b"), notebook="one.ipynb"),
        dataclasses.replace(step("a"), notebook="two.ipynb"),
        dataclasses.replace(step("c"), notebook="one.ipynb"),
    ]
    shown = select_rows(rows).shown
    assert [(r.notebook, r.name) for r in shown] == [("one.ipynb", "b"), ("one.ipynb", "c"), ("two.ipynb", "a")]


def test_row_view_formats_every_cell():
    row = step(
        "features", hits=3, misses=1, saved=90.0, size=5_000_000, entries=2,
        last_seconds=0.25, last_run_at=NOW - 30, last_status="hit", last_miss_reason="code changed",
    )  # fmt: skip
    view = row_view(row, NOW)
    assert view.cells() == ("features", "4", "3", "1", "0", "75%", "90.0 s", "250 ms", "30.0 s ago", "2", "5.0 MB", "code changed")
    assert view.bar == 0.75
    never = row_view(step("never"), NOW)
    assert (never.hit_rate, never.bar, never.last_age, never.reason) == ("-", 0.0, "-", "-")


# --------------------------------------------------------------------------- sorting and filtering


def names(rows) -> list[str]:
    return [r.name for r in rows]


def test_sort_by_each_option():
    assert names(sort_rows(ROWS, "name")) == ["features", "fit_model", "load", "never_looked_up"]
    # Largest first; a step never looked up has no hit rate and goes last.
    assert names(sort_rows(ROWS, "hit rate")) == ["features", "load", "fit_model", "never_looked_up"]
    assert names(sort_rows(ROWS, "time saved")) == ["features", "load", "fit_model", "never_looked_up"]
    assert names(sort_rows(ROWS, "size")) == ["features", "load", "fit_model", "never_looked_up"]
    recent = [dataclasses.replace(r, last_run_at=NOW - i) for i, r in enumerate(ROWS)]
    assert names(sort_rows(recent, "last run")) == ["load", "features", "fit_model", "never_looked_up"]
    assert set(SORT_OPTIONS) == {"cell order", "name", "hit rate", "time saved", "size", "last run"}


def test_sort_ties_keep_name_order_and_unknown_sort_is_an_error():
    tied = [step("b", size=10), step("c", size=10), step("a", size=10), step("z", size=99)]
    assert names(sort_rows(tied, "size")) == ["z", "a", "b", "c"]
    with pytest.raises(ValueError, match="unknown sort 'speed'"):
        sort_rows(ROWS, "speed")


def test_filter_is_case_insensitive_and_needs_every_word():
    assert names(filter_rows(ROWS, "")) == names(ROWS)
    assert names(filter_rows(ROWS, "   ")) == names(ROWS)
    assert names(filter_rows(ROWS, "FI")) == ["fit_model"]
    assert names(filter_rows(ROWS, "e")) == ["features", "fit_model", "never_looked_up"]
    assert names(filter_rows(ROWS, "e model")) == ["fit_model"]
    assert filter_rows(ROWS, "nope") == []


def test_select_rows_filters_sorts_and_limits():
    selection = select_rows(ROWS, "e", "size", limit=2)
    assert names(selection.shown) == ["features", "fit_model"]
    assert (selection.matched, selection.total, selection.hidden) == (3, 4, 1)
    everything = select_rows(ROWS)
    assert names(everything.shown) == sorted(names(ROWS)) and everything.hidden == 0


# --------------------------------------------------------------------------- text table


def test_render_text_shows_every_row_and_the_totals():
    rows = sort_rows(ROWS)
    text = render_text(rows, "/store/.cellcache", now=NOW)
    lines = text.splitlines()
    assert lines[0] == "cellcache: 4 steps"
    assert lines[1].split() == ["step", "runs", "hits", "misses", "errors", "hit", "rate", "saved", "last", "run", "last", "age", "entries", "size", "last", "reason"]
    assert set(lines[2]) == {"─", " "}
    body = lines[3:-1]
    assert [line.split()[0] for line in body] == ["features", "fit_model", "load", "never_looked_up"]
    assert body[0].split() == ["features", "4", "3", "1", "0", "75%", "90.0", "s", "-", "-", "2", "5.0", "MB", "-"]
    assert lines[-1] == totals_line(rows, "/store/.cellcache")
    # Numbers are right-aligned under their header.
    assert lines[1].index("entries") + len("entries") == body[0].index(" 2 ") + 2


def test_render_text_clips_long_reasons_and_names_to_the_width():
    long = [step("x" * 60, misses=1, last_miss_reason="input `df` changed: " + "y" * 200)]
    text = render_text(long, "/s", width=120, now=NOW)
    table = text.splitlines()[:-1]  # the totals line carries the location, which is not clipped
    assert max(len(line) for line in table) <= 120
    assert "…" in table[3]
    assert render_text(long, "/s", width=1000, now=NOW).count("y" * 200) == 1  # wide enough: nothing clipped


def test_render_text_of_an_empty_store():
    text = render_text([], "/s", now=NOW)
    assert text.splitlines()[0] == "cellcache: 0 steps"
    assert "no steps yet" in text
    assert text.splitlines()[-1] == "total: hit rate -, saved 0 ms, store 0 B at /s"


def test_rich_table_has_the_same_cells():
    buffer = io.StringIO()
    Console(file=buffer, width=200, color_system=None).print(stats_table(ROWS, "/s", now=NOW))
    out = buffer.getvalue()
    for cell in row_view(ROWS[1], NOW).cells():
        assert cell in out
    assert totals_line(ROWS, "/s") in out


def test_the_store_location_is_shown_as_typed_from_the_working_folder(tmp_path):
    # issue 25: a docs page or a saved notebook showed /tmp/tmpa8x1/.cellcache; inside the folder, say .cellcache/.
    from cellcache.report import shown_location

    assert shown_location(str(tmp_path / ".cellcache"), cwd=str(tmp_path)) == ".cellcache/"
    assert shown_location(str(tmp_path / "a" / "store"), cwd=str(tmp_path)) == "a/store/"
    elsewhere = str(tmp_path.parent / "other" / ".cellcache")
    assert shown_location(elsewhere, cwd=str(tmp_path)) == elsewhere, "outside the folder: the whole path"
    assert shown_location(str(tmp_path), cwd=str(tmp_path)) == str(tmp_path)
