"""cellcache.graph: the pipeline picture's model, its Graphviz drawing and its text fallback; the panel's graph view."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

import cellcache
from cellcache import graph
from cellcache.widget import CachePanel

from .conftest import run

SOURCES = [
    "%load_ext cellcache\nimport numpy as np",
    "seed = 1\nn = 10",
    "%%cached generate\nraw = list(range(n * seed))",
    "%%cached clean\nX_clean = [r for r in raw if r % 2]",
    "%%cached features\nfeats = [x * 2 for x in X_clean]",
    "%%cached fit\nw = sum(feats) + sum(raw)",
    "print(w)",
]


def notebook(path: Path, sources: list[str] = SOURCES, tag_parameters: int | None = 1) -> Path:
    nb = new_notebook(cells=[new_code_cell(s) for s in sources])
    if tag_parameters is not None:
        nb.cells[tag_parameters].metadata["tags"] = ["parameters"]
    nbformat.write(nb, path)
    return path


def test_steps_in_cell_order_and_an_arrow_from_each_writer_to_its_readers(tmp_path: Path) -> None:
    cells = graph.cells_of(nbformat.read(notebook(tmp_path / "p.ipynb"), as_version=4))
    drawn = graph.build("p.ipynb", cells, {"generate": graph.StepInfo(graph.FRESH, 2.0, "hit")})
    assert [n.id for n in drawn.nodes] == ["cell 1", "generate", "clean", "features", "fit"]
    assert drawn.nodes[0].label == "cell 1: parameters" and drawn.nodes[0].state == graph.UNCACHED
    edges = {(e.source, e.target): e.names for e in drawn.edges}
    assert edges == {
        ("cell 1", "generate"): ("n", "seed"),
        ("generate", "clean"): ("raw",),
        ("clean", "features"): ("X_clean",),
        ("features", "fit"): ("feats",),
        ("generate", "fit"): ("raw",),
    }, "no arrow from the import cell, none from the plain print cell that only reads"
    assert [n.state for n in drawn.nodes[1:]] == [graph.FRESH, graph.NEVER_RUN, graph.NEVER_RUN, graph.NEVER_RUN]


def test_the_text_list_says_what_the_picture_says(tmp_path: Path) -> None:
    cells = graph.cells_of(nbformat.read(notebook(tmp_path / "p.ipynb"), as_version=4))
    text = graph.to_text(graph.build("p.ipynb", cells, {"generate": graph.StepInfo(graph.FRESH, 2.0, "hit")}))
    assert "p.ipynb: 4 steps, in cell order" in text
    assert "  [2] generate: fresh, saved 2.0 s; reads n, seed from cell 1" in text
    assert "  [5] fit: never run; reads feats from features; raw from generate" in text


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot draws the SVG")
def test_graphviz_draws_every_step_coloured_by_state_and_40_steps_stay_one_readable_column(tmp_path: Path) -> None:
    cells = graph.cells_of(nbformat.read(notebook(tmp_path / "p.ipynb"), as_version=4))
    states = {"generate": graph.StepInfo(graph.FRESH, 1.0), "clean": graph.StepInfo(graph.WOULD_RUN)}
    svg = graph.to_svg(graph.build("p.ipynb", cells, states))
    assert svg is not None and svg.startswith("<svg")
    for index in (1, 2, 3, 4, 5):
        assert f'id="cellcache&#45;step&#45;{index}"' in svg or f'id="cellcache-step-{index}"' in svg
    assert graph.STATES[graph.FRESH][0] in svg and graph.STATES[graph.WOULD_RUN][0] in svg
    assert "saved 1.0 s" in svg
    # 40 steps, each reading the one before: one column, top to bottom in cell order, narrow enough for 1024 px.
    many = [graph.Cell(i, f"step{i:02d}", frozenset({f"v{i - 1}"}), frozenset({f"v{i}"})) for i in range(40)]
    big = graph.to_svg(graph.build("big.ipynb", many, {}))
    assert big is not None
    width = float(re.search(r'<svg width="([\d.]+)pt"', big).group(1))
    assert width * 96 / 72 < 800, width
    tops = [float(y) for y in re.findall(r'<text text-anchor="middle" x="[\d.-]+" y="([\d.-]+)"[^>]*>step\d\d</text>', big)]
    assert len(tops) == 40 and tops == sorted(tops), "cell order, top to bottom"


def test_without_dot_the_svg_degrades_to_the_text_list(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no dot anywhere
    cells = graph.cells_of(nbformat.read(notebook(tmp_path / "p.ipynb"), as_version=4))
    drawn = graph.build("p.ipynb", cells, {})
    assert graph.to_svg(drawn) is None
    kind, written = graph.write(drawn, tmp_path / "out" / "pipeline.svg")
    assert written == tmp_path / "out" / "pipeline.svg.txt" and "dot is not installed" in kind
    assert "p.ipynb: 4 steps" in written.read_text() and "cell 6" not in written.read_text()
    assert "<pre>" in graph.to_html(drawn)


def test_dot_and_html_files(tmp_path: Path) -> None:
    drawn = graph.build("p.ipynb", graph.cells_of(nbformat.read(notebook(tmp_path / "p.ipynb"), as_version=4)), {})
    kind, path = graph.write(drawn, tmp_path / "p.dot")
    assert kind == "dot" and path.read_text().startswith("digraph pipeline {") and '"generate" -> "clean"' in path.read_text()


# ---------------------------------------------------------------- the panel's graph view


def test_the_panel_graph_view_colours_by_state_and_a_click_shows_the_reason_and_invalidates(shell, tmp_path: Path, monkeypatch) -> None:
    nb = notebook(tmp_path / "pipe.ipynb", ["x = 2", "%%cached double\ny = x * 2", "%%cached plus\nz = y + 1", "%%cached never\nq = z"])
    session = cellcache.api.session(shell)
    monkeypatch.setattr(type(session), "notebook", property(lambda self: "pipe.ipynb"), raising=False)
    run(shell, "x = 2")
    run(shell, "%%cached double\ny = x * 2")
    run(shell, "%%cached plus\nz = y + 1")
    run(shell, "%%cached plus\nz = y + 1")  # a hit: the last reason is the hit's
    panel = CachePanel(session.store, session=session)
    try:
        panel._root = lambda: tmp_path  # type: ignore[method-assign]
        assert panel.sort_dropdown.value == "cell order"
        panel.view_toggle.value = "graph"
        view = panel.graph_view
        assert view is not None and view.box in panel.children and panel.table not in panel.children
        assert [n["id"] for n in view.drawing.nodes] == ["cell 0", "double", "plus", "never"]
        states = {n.id: n.state for n in view.graph.nodes}
        assert states == {"cell 0": graph.UNCACHED, "double": graph.FRESH, "plus": graph.FRESH, "never": graph.NEVER_RUN}
        assert ("double", "plus") in {(e.source, e.target) for e in view.graph.edges}
        if shutil.which("dot"):
            assert view.drawing.svg.startswith("<svg")
            assert "<svg" in panel.html(), "a saved notebook shows the picture"
        else:
            assert "<pre>" in panel.html() and "double" in panel.html(), "without dot: the list"
        view.select("plus")  # what a click in the picture sets
        assert "last reason" in view.detail.value and "hit: code, inputs and files unchanged" in view.detail.value
        assert view.invalidate_button.layout.display is None
        view.invalidate_button.click()
        assert {n.id: n.state for n in view.graph.nodes}["plus"] == graph.WOULD_RUN, "its entries are gone: it runs next time"
        assert panel.feedback.value.startswith("Invalidated "), panel.feedback.value
        panel.view_toggle.value = "table"
        assert panel.table in panel.children
    finally:
        panel.close()
    assert nb.exists() and cellcache.last_run() is not None


def test_without_dot_the_panel_lists_the_steps_and_still_takes_clicks(shell, tmp_path: Path, monkeypatch) -> None:
    notebook(tmp_path / "pipe.ipynb", ["x = 2", "%%cached double\ny = x * 2"], tag_parameters=None)
    session = cellcache.api.session(shell)
    monkeypatch.setattr(type(session), "notebook", property(lambda self: "pipe.ipynb"), raising=False)
    run(shell, "x = 2")
    run(shell, "%%cached double\ny = x * 2")
    monkeypatch.setenv("PATH", str(tmp_path / "nothing-here"))
    panel = CachePanel(session.store, session=session)
    try:
        panel._root = lambda: tmp_path  # type: ignore[method-assign]
        panel.view_toggle.value = "graph"
        view = panel.graph_view
        assert view.drawing.svg == "" and "dot is not installed" in view.note.value
        assert [n["text"] for n in view.drawing.nodes] == ["[0] cell 0: uncached", "[1] double: fresh"]
        view.select("double")
        assert "first run of this step" in view.detail.value
        assert "<pre>" in panel.html() and "[1] double: fresh" in panel.html()
    finally:
        panel.close()
