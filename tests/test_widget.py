"""The cache panel's widget state, driven through a real shell: rows, actions, live updates, text form."""
from __future__ import annotations

import gc
import time
import weakref

import ipywidgets
import ipywidgets.widgets.widget as widget_module
import pytest
from IPython.utils.capture import capture_output

import cellcache
from cellcache.cell import reasons
from cellcache.report import format_rate, format_seconds, format_size, render_text, row_view, shown_location, step_errors
from cellcache.store.base import RunRecord, StepRef
from cellcache.widget import CachePanel, css_name
from tests.conftest import run


def cached(shell, name: str, body: str) -> cellcache.StepRun:
    run(shell, f"%%cached {name}\n{body}")
    last = cellcache.last_run()
    assert last is not None and last.name == name
    return last


def session_of(shell):
    return cellcache.api.session(shell)


@pytest.fixture
def three_steps(shell):
    """load: miss then hit; clean: miss; fit: miss, hit, hit."""
    shell.user_ns["n"] = 3
    cached(shell, "load", "data = list(range(n))")
    cached(shell, "load", "data = list(range(n))")
    cached(shell, "clean", "cleaned = [x * 2 for x in data]")
    cached(shell, "fit", "model = sum(cleaned)")
    cached(shell, "fit", "model = sum(cleaned)")
    cached(shell, "fit", "model = sum(cleaned)")
    return shell


@pytest.fixture
def panels():
    """Panels made by a test are closed after it, so no live link outlives the test."""
    made: list[CachePanel] = []
    yield made
    for panel in made:
        panel.close()


def open_panel(shell, panels: list[CachePanel], **kwargs) -> CachePanel:
    panel = CachePanel(session_of(shell).store, session=session_of(shell), **kwargs)
    panels.append(panel)
    return panel


def shown(panel: CachePanel) -> list[str]:
    return list(panel.rows)


# --------------------------------------------------------------------------- rows


def test_rows_match_the_index_after_hits_and_misses(three_steps, panels):
    shell = three_steps
    shell.user_ns["n"] = 4  # load's input changes: a miss with a reason
    cached(shell, "load", "data = list(range(n))")
    panel = open_panel(shell, panels)
    expected = session_of(shell).store.step_rows()

    assert shown(panel) == ["clean", "fit", "load"] == [s.name for s in expected]
    # Counts known from the script, so a panel and an index that agree on wrong numbers still fail.
    counts = {name: (row.stats.runs, row.stats.hits, row.stats.misses) for name, row in panel.rows.items()}
    assert counts == {"load": (3, 1, 2), "clean": (1, 0, 1), "fit": (3, 2, 1)}
    for s in expected:
        row = panel.rows[s.name]
        assert row.stats == s
        labels = {key: row.cell_text(key) for key in row.labels}
        assert f'title="{s.name}"' in row.labels["name"].value  # the full name as a tooltip
        assert labels["name"] == s.name
        assert (labels["runs"], labels["hits"], labels["misses"]) == (str(s.runs), str(s.hits), str(s.misses))
        assert labels["hit_rate"] == format_rate(s.hit_rate)
        assert row.rate_bar.value == pytest.approx(s.hit_rate)
        assert labels["saved"] == format_seconds(s.saved_seconds)
        assert labels["last_seconds"] == format_seconds(s.last_seconds)
        assert labels["last_age"] == "just now" or labels["last_age"].endswith(" ago")
        assert labels["entries"] == str(s.entries)
        assert labels["size"] == format_size(s.size_bytes)
        # issue 25: the last run's reason, not the last miss's ("first run of this step" after two hits).
        last_run = {"load": "input `n` changed (3 → 4)", "clean": reasons.FIRST_RUN, "fit": reasons.HIT}[s.name]
        assert labels["reason"].startswith(last_run)  # a hit may add "; restoring costs ..."
        errors = step_errors(session_of(shell).store).get((s.notebook, s.name))
        assert tuple(labels.values()) == row_view(s, panel.refreshed_at, errors).cells()
        assert row.invalidate_button.description == "Invalidate"
        assert repr(s.name) in row.invalidate_button.tooltip
        assert f"cellcache-row-{css_name(s.name)}" in row.box._dom_classes
    assert panel.rows["load"].labels["hit_rate"].value == "33%"
    assert panel.rows["fit"].labels["hit_rate"].value == "67%"
    assert "changed" in panel.rows["load"].cell_text("reason")  # the input n changed
    assert panel.rows["load"].labels["entries"].value == "2"  # one per value of n
    assert panel.totals.value.startswith("total: hit rate 43%")  # 3 hits of 7 lookups
    assert str(session_of(shell).store.root) in panel.totals.value
    assert "3 steps" in panel.title.value


def test_empty_store_says_so(shell, panels):
    panel = open_panel(shell, panels)
    assert panel.rows == {}
    assert panel.rows_box.children == (panel.empty_label,)
    assert "No steps yet" in panel.empty_label.value


# --------------------------------------------------------------------------- actions


def test_invalidate_button_drops_exactly_that_step(three_steps, panels):
    shell = three_steps
    panel = open_panel(shell, panels)
    panel.rows["clean"].invalidate_button.click()

    assert "clean" in panel.feedback.value and "1 entry dropped" in panel.feedback.value
    assert panel.rows["clean"].labels["entries"].value == "0"  # the panel updated at once
    assert panel.rows["load"].labels["entries"].value == "1"
    assert panel.rows["fit"].labels["entries"].value == "1"

    assert cached(shell, "load", "data = list(range(n))").hit
    again = cached(shell, "clean", "cleaned = [x * 2 for x in data]")
    assert not again.hit and again.reason == "invalidated"
    assert cached(shell, "fit", "model = sum(cleaned)").hit


def test_clear_all_asks_before_deleting(three_steps, panels):
    shell = three_steps
    store = session_of(shell).store
    panel = open_panel(shell, panels)
    before = sum(s.entries for s in store.step_rows())
    assert before == 3

    panel.clear_button.click()
    assert panel.confirming and panel.clear_button.disabled
    assert "3 entries" in panel.confirm_label.value
    assert sum(s.entries for s in store.step_rows()) == before  # asking deletes nothing

    panel.cancel_button.click()
    assert not panel.confirming and not panel.clear_button.disabled
    assert "Nothing" in panel.feedback.value
    assert sum(s.entries for s in store.step_rows()) == before

    panel.clear_button.click()
    panel.confirm_button.click()
    assert not panel.confirming
    assert "3 entries dropped" in panel.feedback.value
    assert sum(s.entries for s in store.step_rows()) == 0
    assert all(row.labels["entries"].value == "0" for row in panel.rows.values())
    assert not cached(shell, "fit", "model = sum(cleaned)").hit


def test_refresh_button_reads_changes_made_elsewhere(three_steps, panels):
    panel = open_panel(three_steps, panels)
    cellcache.invalidate("fit")  # not a cell run: no live update
    assert panel.rows["fit"].labels["entries"].value == "1"
    panel.refresh_button.click()
    assert panel.rows["fit"].labels["entries"].value == "0"
    assert panel.feedback.value.startswith("Refreshed")


def test_filter_and_sort_change_the_visible_rows(shell, panels):
    # Hit rates: fast_a 0%, fast_b 50%, slow 67%. Sizes: big > the rest. Time saved: slow's hits.
    cached(shell, "fast_a", "a = 1")
    cached(shell, "fast_b", "b = 2")
    cached(shell, "fast_b", "b = 2")
    cached(shell, "big", "blob = 'x' * 200_000")
    cached(shell, "big", "blob = 'x' * 200_000")
    cached(shell, "big", "blob = 'x' * 200_000")
    for _ in range(3):
        cached(shell, "slow", "import time; time.sleep(0.15); s = 3")
    panel = open_panel(shell, panels)
    assert shown(panel) == ["big", "fast_a", "fast_b", "slow"]

    panel.filter_text.value = "FAST"
    assert shown(panel) == ["fast_a", "fast_b"]
    assert "of 2 matching" in panel.title.value
    panel.filter_text.value = "nothing-like-this"
    assert shown(panel) == [] and "No step name contains" in panel.empty_label.value
    panel.filter_text.value = ""

    panel.sort_dropdown.value = "hit rate"
    assert shown(panel) == ["big", "slow", "fast_b", "fast_a"]  # 67% (big before slow by name), 67%, 50%, 0%
    panel.sort_dropdown.value = "size"
    assert shown(panel)[0] == "big"
    panel.sort_dropdown.value = "time saved"
    assert shown(panel)[0] == "slow"
    # The rows box shows the same order as the handles (a hint line, should a hit here be dearer than its run, follows its row).
    assert [r.box for r in panel.rows.values()] == [c for c in panel.rows_box.children if "cellcache-hint" not in c._dom_classes]
    panel.sort_dropdown.value = "name"
    assert shown(panel) == ["big", "fast_a", "fast_b", "slow"]


def test_show_more_pages_through_many_steps(shell, panels):
    for i in range(5):
        cached(shell, f"s{i}", f"v{i} = {i}")
    panel = open_panel(shell, panels, page_size=2)
    assert shown(panel) == ["s0", "s1"]
    assert panel.more_button.layout.display != "none"
    assert "3 not shown" in panel.more_button.description
    panel.more_button.click()
    assert shown(panel) == ["s0", "s1", "s2", "s3"]
    panel.more_button.click()
    assert shown(panel) == ["s0", "s1", "s2", "s3", "s4"]
    assert panel.more_button.layout.display == "none"
    panel.filter_text.value = "s"  # a new view starts from the first page again
    assert shown(panel) == ["s0", "s1"]


def test_action_errors_are_reported_in_the_panel(three_steps, panels, monkeypatch):
    panel = open_panel(three_steps, panels)

    def broken(name: str) -> int:
        raise OSError("disk on fire")

    monkeypatch.setattr(panel.store, "invalidate", broken)
    panel.rows["fit"].invalidate_button.click()  # must not raise into the notebook
    assert "Could not invalidate 'fit'" in panel.feedback.value and "disk on fire" in panel.feedback.value
    assert panel.feedback.style.text_color


# --------------------------------------------------------------------------- live updates


def test_an_open_panel_updates_after_every_cached_cell(three_steps, panels):
    shell = three_steps
    panel = shell.run_line_magic("cellcache", "")
    panels.append(panel)
    assert panel.rows["fit"].labels["runs"].value == "3"

    cached(shell, "fit", "model = sum(cleaned)")  # no refresh() call anywhere below
    assert panel.rows["fit"].labels["runs"].value == "4"
    assert panel.rows["fit"].labels["hits"].value == "3"
    assert "'fit'" in panel.feedback.value and "hit" in panel.feedback.value

    cached(shell, "report", "summary = model + 1")
    assert "report" in panel.rows
    assert panel.rows["report"].labels["misses"].value == "1"


def test_close_stops_live_updates_and_frees_the_widgets(three_steps):
    shell = three_steps
    listeners = session_of(shell).listeners
    before_listeners = list(listeners)
    before_widgets = len(widget_module._instances)
    panel = cellcache.panel()
    assert len(listeners) == len(before_listeners) + 1
    assert len(widget_module._instances) > before_widgets

    panel.close()
    assert listeners == before_listeners
    # Every widget the panel made (rows, layouts, styles) is out of ipywidgets' registry.
    assert len(widget_module._instances) == before_widgets
    cached(shell, "fit", "model = sum(cleaned)")
    assert panel.rows == {}  # closed: nothing rebuilt


def test_the_session_does_not_keep_a_panel_alive(shell):
    # The session holds the link; the link holds its panel weakly and leaves once it is gone.
    # (A real panel is also held by its comm until close(); any stand-in object shows the link.)
    from cellcache.widget import _LiveLink

    class StandIn:
        def __init__(self) -> None:
            self.runs: list[str] = []

        def _on_step_run(self, step: cellcache.StepRun) -> None:
            self.runs.append(step.name)

    listeners = session_of(shell).listeners
    target = StandIn()
    link = _LiveLink(target, listeners)  # type: ignore[arg-type]
    listeners.append(link)
    cached(shell, "one", "x = 1")
    assert target.runs == ["one"]
    gone = weakref.ref(target)
    del target
    gc.collect()
    assert gone() is None
    cached(shell, "two", "y = 2")  # the dead link removes itself, and the cell is fine
    assert link not in listeners


def test_a_panel_off_screen_does_no_work_per_cell(three_steps, panels, monkeypatch):
    shell = three_steps
    panel = open_panel(shell, panels)
    reads: list[int] = []
    real = panel.store.step_rows
    monkeypatch.setattr(panel.store, "step_rows", lambda: reads.append(1) or real())

    panel._view_count = 1  # what the front end reports when it shows the panel
    cached(shell, "fit", "model = sum(cleaned)")
    assert len(reads) == 1 and panel.rows["fit"].labels["runs"].value == "4"

    panel._view_count = 0  # its output was cleared: nobody can see it
    cached(shell, "fit", "model = sum(cleaned)")
    cached(shell, "fit", "model = sum(cleaned)")
    assert len(reads) == 1 and panel.rows["fit"].labels["runs"].value == "4"

    panel._view_count = 1  # shown again (the notebook reopened): it catches up once
    assert len(reads) == 2 and panel.rows["fit"].labels["runs"].value == "6"


def test_no_live_link_in_a_terminal(three_steps, panels):
    # A terminal shows the text form only; a subscribed panel would be refreshed unseen forever.
    class TerminalInteractiveShell:  # stands in for IPython.terminal's class, matched by name
        pass

    real = session_of(three_steps)
    terminal = type("TerminalSession", (), {"shell": TerminalInteractiveShell(), "listeners": [], "store": real.store})()
    panel = CachePanel(real.store, session=terminal)  # type: ignore[arg-type]
    panels.append(panel)
    assert terminal.listeners == [] and shown(panel) == ["clean", "fit", "load"]


# --------------------------------------------------------------------------- text form and magics


def test_plain_text_repr_is_the_stats_table(three_steps, panels, monkeypatch):
    shell = three_steps
    store = session_of(shell).store
    frozen = time.time()
    # One clock for both, so the "last age" column cannot differ by a millisecond.
    monkeypatch.setattr(time, "time", lambda: frozen)
    panel = open_panel(shell, panels)
    panel.filter_text.value = "fit"  # the text form is the whole table, whatever the panel shows

    bundle = panel._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert bundle["text/plain"] == render_text(store.step_rows(), shown_location(str(store.root)), now=frozen, errors=step_errors(store))
    with capture_output() as out:
        run(shell, "%cellcache stats")
    assert out.stdout.rstrip("\n") == bundle["text/plain"]
    # What IPython itself shows for the object: the HTML snapshot first, then the widget with text/plain.
    from IPython.display import display

    with capture_output() as shown_out:
        display(panel)
    snapshot, widget_view = shown_out.outputs
    assert widget_view.data["text/plain"] == bundle["text/plain"]
    assert "application/vnd.jupyter.widget-view+json" in widget_view.data
    assert 'class="cellcache-snapshot"' in snapshot.data["text/html"]
    assert all(name in bundle["text/plain"] for name in ("load", "clean", "fit"))


def test_cellcache_magic_and_api_return_the_panel(three_steps, panels):
    shell = three_steps
    for made in (shell.run_line_magic("cellcache", ""), shell.run_line_magic("cellcache", "panel"), cellcache.panel()):
        panels.append(made)
        assert isinstance(made, CachePanel) and isinstance(made, ipywidgets.VBox)
        assert made.session is session_of(shell)
        assert shown(made) == ["clean", "fit", "load"]


def test_panel_without_a_session_reads_the_configured_store(three_steps, panels, monkeypatch):
    store = session_of(three_steps).store
    panel = CachePanel(store)
    panels.append(panel)
    assert panel.session is None and shown(panel) == ["clean", "fit", "load"]


# --------------------------------------------------------------------------- errors, notebooks, entries, saved form


def test_a_failing_step_shows_its_error_count_and_last_error(shell, panels):
    shell.user_ns["n"] = 1
    run(shell, "%%cached fit\nmodel = n * 2")
    shell.run_cell("%%cached fit\nraise ValueError('boom in fit')")  # another key; it fails
    panel = open_panel(shell, panels)
    labels = {k: panel.rows["fit"].cell_text(k) for k in panel.rows["fit"].labels}
    assert labels["errors"] == "1"
    assert labels["reason"] == "error: ValueError: boom in fit"
    assert "boom in fit" in panel.html() and "boom in fit" in panel.text()


def test_steps_are_grouped_by_notebook(shell, panels, monkeypatch):
    session = session_of(shell)
    shell.user_ns["n"] = 1
    for notebook in ("b.ipynb", "a.ipynb"):
        monkeypatch.setattr(session, "notebook", notebook, raising=False)
        run(shell, f"%%cached load\ndata_{notebook[0]} = n")
    panel = open_panel(shell, panels)
    assert list(panel.rows) == ["a.ipynb:load", "b.ipynb:load"]
    children = panel.rows_box.children
    groups = [c.value for c in children if "cellcache-group" in c._dom_classes]
    assert groups == ["a.ipynb", "b.ipynb"]
    assert children.index(panel.rows["a.ipynb:load"].box) < children.index(panel._groups["b.ipynb"])
    # Each row's Invalidate drops its own notebook's step only.
    panel.rows["a.ipynb:load"].invalidate_button.click()
    entries = {f"{s.notebook}:{s.name}": s.entries for s in session.store.step_rows()}
    assert entries == {"a.ipynb:load": 0, "b.ipynb:load": 1}


def test_an_opened_row_lists_entries_and_invalidates_one(shell, panels):
    for lr in (0.05, 0.1):
        shell.user_ns["lr"] = lr
        run(shell, "%%cached fit\nmodel = lr * 2")
    run(shell, "%%cached fit\nmodel = lr * 2")  # a hit of the lr=0.1 entry
    panel = open_panel(shell, panels)
    row = panel.rows["fit"]
    row.toggle_button.click()
    assert row.is_open and row.details in panel.rows_box.children
    lines = [box.children[0].value for box in row.details.children]
    assert len(lines) == 2
    newest, oldest = lines
    assert "lr = 0.1" in newest and "1 hit" in newest and "lr = 0.05" in oldest and "0 hits" in oldest
    # Drop the older entry only: the step keeps one, and lr=0.05 is a miss again.
    list(row.entry_buttons.values())[1].click()
    assert session_of(shell).store.step_rows()[0].entries == 1
    assert len(panel.rows["fit"].details.children) == 1
    shell.user_ns["lr"] = 0.05
    run(shell, "%%cached fit\nmodel = lr * 2")
    assert not cellcache.last_run().hit
    shell.user_ns["lr"] = 0.1
    run(shell, "%%cached fit\nmodel = lr * 2")
    assert cellcache.last_run().hit
    row.toggle_button.click()
    assert not panel.rows["fit"].is_open


def test_clear_all_is_not_the_loudest_control(three_steps, panels):
    panel = open_panel(three_steps, panels)
    assert panel.clear_button.button_style == "" and panel.clear_button.icon == ""
    assert panel.confirm_button.button_style == "danger"  # the loud one is the confirmation


def test_header_and_rows_share_one_table_and_the_same_column_classes(three_steps, panels):
    panel = open_panel(three_steps, panels)
    assert panel.header in panel.table.children and panel.rows_box in panel.table.children
    header = [c._dom_classes[-1] for c in panel.header.children]
    for row in panel.rows.values():
        cols = [next(k for k in c._dom_classes if k.startswith("cellcache-col-")) for c in row.box.children]
        assert cols == header
        assert [c.layout.width for c in row.box.children] == [c.layout.width for c in panel.header.children]


def test_the_saved_form_is_an_html_table_kept_up_to_date(three_steps, panels):
    from IPython.display import display

    shell = three_steps
    panel = open_panel(shell, panels)
    updates: list[dict] = []
    publish = shell.display_pub.publish

    def spy(data=None, metadata=None, *args, **kwargs):
        if kwargs.get("update") or kwargs.get("transient"):
            updates.append({"data": data, **kwargs})
        return publish(data, metadata, *args, **kwargs)

    shell.display_pub.publish = spy
    try:
        with capture_output() as out:
            display(panel)
        snapshot = out.outputs[0].data["text/html"]
        assert all(f">{name}<" in snapshot for name in ("load", "clean", "fit"))
        updates.clear()
        cached(shell, "report", "summary = 1")  # a live refresh: the saved form follows
        assert any(u.get("update") and ">report<" in u["data"]["text/html"] for u in updates)
    finally:
        shell.display_pub.publish = publish


# --------------------------------------------------------------------------- hits that cost more than runs

SLOWER = "hint: restoring costs 99 ms, running 94 ms; it may be cheaper without %%cached"


def record(shell, step: str, *runs: tuple[str, float]) -> None:
    """Runs of ``step`` in the index with known times, as the runner records them (status, seconds)."""
    store = session_of(shell).store
    for status, seconds in runs:
        saved = 0.0 if status == "miss" else 1.0
        store.record_run(RunRecord(StepRef("", step), "k" * 32, status, seconds, saved, "first run" if status == "miss" else "hit"))


def hint_lines(panel: CachePanel) -> list[str]:
    return [c.value for c in panel.rows_box.children if "cellcache-hint" in c._dom_classes]


def test_a_step_whose_hits_cost_more_than_its_runs_shows_the_hint_under_its_row(shell, panels):
    cached(shell, "first", "a = 1")  # a real step: one miss, so nothing to compare yet
    record(shell, "dear", ("miss", 0.094), ("hit", 0.099))
    panel = open_panel(shell, panels)
    row = panel.rows["dear"]
    assert row.stats.slower_hit == "restoring costs 99 ms, running 94 ms"
    assert row.hint == SLOWER
    assert "cellcache-hint-dear" in row.hint_label._dom_classes
    # Attached to its row: the line right after the row's box, and the only hint in the panel.
    children = list(panel.rows_box.children)
    assert children[children.index(row.box) + 1] is row.hint_label
    assert hint_lines(panel) == [SLOWER]
    assert panel.rows["first"].hint is None
    # The text form (what `%cellcache stats` prints) and the saved HTML say the same.
    assert "hint: dear: restoring costs 99 ms, running 94 ms; it may be cheaper without %%cached" in panel.text()
    assert "restoring costs 99 ms, running 94 ms" in panel.html()


def test_a_step_whose_hits_are_cheaper_shows_no_hint(shell, panels):
    cached(shell, "first", "a = 1")
    record(shell, "cheap", ("miss", 2.0), ("hit", 0.01), ("hit", 0.02))
    panel = open_panel(shell, panels)
    row = panel.rows["cheap"]
    assert (row.stats.hits, row.stats.misses) == (2, 1)  # the recorded runs are what the panel read
    assert row.hint is None and row.hint_label is None
    assert hint_lines(panel) == []
    assert "restoring costs" not in panel.text() and "restoring costs" not in panel.html()


def test_the_hint_goes_when_a_refresh_finds_the_hits_cheaper(shell, panels):
    cached(shell, "first", "a = 1")
    record(shell, "dear", ("miss", 0.094), ("hit", 0.099))
    panel = open_panel(shell, panels)
    label = panel.rows["dear"].hint_label
    assert panel.rows["dear"].hint == SLOWER

    record(shell, "dear", ("miss", 10.0))  # runs now average 5.0 s: a hit (99 ms) is the cheap way
    assert panel.rows["dear"].hint == SLOWER  # nothing re-read the index yet
    cached(shell, "second", "b = 2")  # any %%cached cell refreshes the panel on screen
    assert "'second'" in panel.feedback.value
    row = panel.rows["dear"]
    assert row.stats.run_seconds == pytest.approx(5.047) and row.stats.slower_hit is None
    assert row.hint is None and row.hint_label is None
    assert hint_lines(panel) == [] and label not in panel.rows_box.children
    assert label.comm is None  # closed, not left in ipywidgets' registry

    record(shell, "dear", ("hit", 9.0), ("hit", 9.0))  # hits average 6.0 s against 5.0 s runs: back
    panel.refresh_button.click()
    assert panel.rows["dear"].hint == "hint: restoring costs 6.0 s, running 5.0 s; it may be cheaper without %%cached"
    assert hint_lines(panel) == [panel.rows["dear"].hint]
