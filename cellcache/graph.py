"""A notebook's pipeline as a picture: its steps in cell order, an arrow from each step to the steps reading its outputs.

Pure up to the drawing: ``build`` takes the notebook's cells and what is known
of each step (from the store, or from ``cellcache status``) and returns a
``Graph`` value; ``to_dot`` writes it in Graphviz's language; ``to_svg`` asks
Graphviz's ``dot`` (through the ``graphviz`` package) to lay it out, and
returns None where ``dot`` is not installed, so every caller can fall back to
``to_text``, a plain list that says the same.

The layout is Graphviz's, not ours: top to bottom in cell order (data only
flows forward in a notebook run top to bottom), one rank per cell, so 40
steps stay a readable column however the arrows cross.
"""
from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from cellcache.units import format_seconds

# A step's state, and how it is drawn: fill colour, border, and the words of the legend.
FRESH = "fresh"
WOULD_RUN = "would re-run"
NEVER_RUN = "never run"
UNCACHED = "uncached"
STATES: dict[str, tuple[str, str, str]] = {
    FRESH: ("#d4f4dd", "#2e7d32", "fresh: its next run is a hit"),
    WOULD_RUN: ("#fff1c2", "#b26a00", "would re-run: something it depends on changed"),
    NEVER_RUN: ("#eeeeee", "#757575", "never run: no entry yet"),
    UNCACHED: ("#ffffff", "#9e9e9e", "uncached: a plain cell, or a step that stores nothing"),
}


@dataclass(frozen=True)
class StepInfo:
    """What is known of one step before drawing it."""

    state: str
    saved_seconds: float = 0.0
    reason: str | None = None


@dataclass(frozen=True)
class Node:
    id: str  # unique in the graph: the step's name, or "cell N" for a plain cell
    index: int  # the cell's index in the notebook
    label: str
    state: str
    saved_seconds: float = 0.0
    reason: str | None = None
    step: str | None = None  # None for a plain cell

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "index": self.index, "label": self.label, "state": self.state,
            "saved_seconds": self.saved_seconds, "reason": self.reason, "step": self.step,
        }  # fmt: skip


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    names: tuple[str, ...]  # the values that flow along it

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "target": self.target, "names": list(self.names)}


@dataclass(frozen=True)
class Graph:
    notebook: str
    nodes: tuple[Node, ...] = ()
    edges: tuple[Edge, ...] = ()

    def node(self, node_id: str) -> Node | None:
        return next((n for n in self.nodes if n.id == node_id), None)

    def to_json(self) -> dict[str, Any]:
        return {"notebook": self.notebook, "nodes": [n.to_json() for n in self.nodes], "edges": [e.to_json() for e in self.edges]}


@dataclass(frozen=True)
class Cell:
    """One code cell as the graph needs it: its index, its step (None if plain), what it reads and writes."""

    index: int
    step: str | None
    reads: frozenset[str]
    writes: frozenset[str]
    label: str | None = None  # how a plain cell is named in the picture ("parameters"); "cell N" if None


def cells_of(nb: Any) -> list[Cell]:
    """The code cells of a notebook (an nbformat node), with the names each reads and writes."""
    from cellcache import batch

    found = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or not cell.source.strip():
            continue
        names = batch.cell_names(cell.source)
        step = batch.step_hint(cell) if batch.is_cached(cell.source) else None
        reads = frozenset(names.reads) if names is not None else frozenset()
        # A name bound by an import is a module, not a result: an arrow from `import numpy as np`
        # to every step would hide the data's arrows.
        bound = {alias for alias, _ in names.aliases} if names is not None else set()
        writes = frozenset((names.writes | names.deletes) - bound) if names is not None else frozenset()
        label = "parameters" if "parameters" in cell.metadata.get("tags", []) else None
        found.append(Cell(index, step, reads, writes, label))
    return found


def build(notebook: str, cells: Sequence[Cell], steps: Mapping[str, StepInfo]) -> Graph:
    """Steps in cell order, and an arrow from the last cell to write a name to each later step that reads it.

    A plain cell is drawn only when a later cell reads what it writes (a parameters cell that steps
    read, a plain cell between two steps): elsewhere it is noise in a picture of the steps.
    """
    writer: dict[str, str] = {}
    flows: dict[tuple[str, str], set[str]] = {}
    ids: dict[int, str] = {}
    for cell in cells:
        node_id = cell.step or f"cell {cell.index}"
        ids[cell.index] = node_id
        for name in sorted(cell.reads):
            if name in writer and writer[name] != node_id:
                flows.setdefault((writer[name], node_id), set()).add(name)
        for name in cell.writes:
            writer[name] = node_id
    # A plain cell is drawn when a step reads what it writes (parameters, a plain cell between two
    # steps); one that only reads (a print at the end) adds nothing to a picture of the steps.
    linked = {a for a, _ in flows}
    nodes = []
    seen: set[str] = set()
    for cell in cells:
        node_id = ids[cell.index]
        if node_id in seen or (cell.step is None and node_id not in linked):
            continue
        seen.add(node_id)
        info = steps.get(cell.step) if cell.step else None
        if info is None:
            info = StepInfo(NEVER_RUN) if cell.step else StepInfo(UNCACHED)
        label = cell.step or (f"cell {cell.index}: {cell.label}" if cell.label else f"cell {cell.index}")
        nodes.append(Node(node_id, cell.index, label, info.state, info.saved_seconds, info.reason, cell.step))
    shown = {n.id for n in nodes}
    edges = tuple(Edge(a, b, tuple(sorted(names))) for (a, b), names in flows.items() if a in shown and b in shown)
    return Graph(notebook, tuple(nodes), edges)


def from_status(result: Any) -> Graph:
    """The graph of one notebook's ``cellcache status`` result: every key checked against the store."""
    from cellcache import batch
    from cellcache.cell import reasons
    from cellcache.batch import read_notebook

    infos = {}
    for cell in result.cells:
        if not cell.step:
            continue
        if cell.status == batch.HIT:
            state = FRESH
        elif cell.status == batch.WOULD_RUN:
            state = NEVER_RUN if cell.reason == reasons.FIRST_RUN else WOULD_RUN
        elif cell.status == batch.PLAIN:
            state = UNCACHED
        else:
            state = WOULD_RUN
        infos[cell.step] = StepInfo(state, cell.saved_seconds, cell.reason)
    return build(str(result.path), cells_of(read_notebook(Path(result.path))), infos)


# ---------------------------------------------------------------- drawing


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def node_label(node: Node) -> str:
    if node.step is None:
        return node.label
    saved = f"saved {format_seconds(node.saved_seconds)}" if node.saved_seconds else node.state
    return f"{node.label}\n{saved}"


def to_dot(graph: Graph) -> str:
    """The graph in Graphviz's language: top to bottom in cell order, coloured by state."""
    lines = [
        "digraph pipeline {",
        '  graph [rankdir=TB, nodesep=0.25, ranksep=0.3, fontname="sans-serif", bgcolor="transparent"];',
        '  node [shape=box, style="rounded,filled", fontname="sans-serif", fontsize=11, margin="0.12,0.05"];',
        '  edge [color="#607d8b", arrowsize=0.6, fontname="sans-serif", fontsize=9];',
    ]
    for node in graph.nodes:
        fill, border, _ = STATES.get(node.state, STATES[UNCACHED])
        tooltip = f"{node.label}: {node.state}" + (f" - last reason: {node.reason}" if node.reason else "")
        style = '"rounded,filled"' if node.step else '"rounded,filled,dashed"'
        lines.append(
            f"  {_quote(node.id)} [id={_quote('cellcache-step-' + str(node.index))}, label={_quote(node_label(node))}, "
            f'fillcolor="{fill}", color="{border}", style={style}, tooltip={_quote(tooltip)}, '
            f'class={_quote("cellcache-node state-" + node.state.replace(" ", "-"))}];'
        )
    # Invisible links down the cells keep cell order even where no value flows between neighbours.
    for a, b in zip(graph.nodes, graph.nodes[1:]):
        lines.append(f"  {_quote(a.id)} -> {_quote(b.id)} [style=invis, weight=5];")
    for edge in graph.edges:
        shown = ", ".join(edge.names[:3]) + (f" +{len(edge.names) - 3}" if len(edge.names) > 3 else "")
        lines.append(f"  {_quote(edge.source)} -> {_quote(edge.target)} [tooltip={_quote(shown)}];")
    lines.append("}")
    return "\n".join(lines)


def to_svg(graph: Graph) -> str | None:
    """The picture as SVG; None when Graphviz's ``dot`` (or the ``graphviz`` package) is not installed."""
    if not graph.nodes:
        return None
    try:
        import graphviz
    except ImportError:
        return None
    try:
        svg = graphviz.Source(to_dot(graph)).pipe(format="svg", encoding="utf-8")
    except (graphviz.ExecutableNotFound, graphviz.CalledProcessError, OSError):
        return None
    # The XML prologue and doctype are not allowed inside HTML, where the panel puts the picture.
    start = svg.find("<svg")
    return svg[start:] if start >= 0 else None


def to_text(graph: Graph) -> str:
    """The same picture as a list: where the SVG can't be drawn (no ``dot``) or shown (a terminal, a log)."""
    if not graph.nodes:
        return f"{graph.notebook}: no steps"
    into: dict[str, list[str]] = {}
    for edge in graph.edges:
        into.setdefault(edge.target, []).append(f"{', '.join(edge.names)} from {edge.source}")
    steps = sum(n.step is not None for n in graph.nodes)
    lines = [f"{graph.notebook}: {steps} step{'s' if steps != 1 else ''}, in cell order"]
    for node in graph.nodes:
        saved = f", saved {format_seconds(node.saved_seconds)}" if node.saved_seconds else ""
        reads = f"; reads {'; '.join(into[node.id])}" if node.id in into else ""
        lines.append(f"  [{node.index}] {node.label}: {node.state}{saved}{reads}")
    return "\n".join(lines)


def to_html(graph: Graph, svg: str | None = None) -> str:
    """A standalone page or fragment: the SVG and a legend, or the text list in a <pre> where there is no SVG."""
    svg = to_svg(graph) if svg is None else svg  # "" means: no picture, show the list
    legend = "".join(
        f'<span style="display:inline-block;margin-right:12px"><span style="display:inline-block;width:10px;height:10px;'
        f'background:{fill};border:1px solid {border};margin-right:4px"></span>{html.escape(words)}</span>'
        for fill, border, words in STATES.values()
    )
    body = svg if svg else f"<pre>{html.escape(to_text(graph))}</pre>"
    return f'<div class="cellcache-graph"><div style="font-size:12px">{legend}</div>{body}</div>'


def write(graph: Graph, path: Path) -> tuple[str, Path]:
    """Write the picture: SVG for .svg, DOT for .dot/.gv, HTML for .html, else the text list; return (format, path).

    Without Graphviz's ``dot``, an .svg becomes the text list next to it (``FILE.svg.txt``), so a CI
    artifact is never an SVG file holding text.
    """
    suffix = path.suffix.lower()
    if suffix in (".dot", ".gv"):
        text, kind = to_dot(graph), "dot"
    elif suffix == ".html":
        text, kind = to_html(graph), "html"
    elif suffix == ".svg":
        svg = to_svg(graph)
        if svg is None:
            text, kind, path = to_text(graph) + "\n", "text: Graphviz's dot is not installed", path.with_name(path.name + ".txt")
        else:
            text, kind = svg, "svg"
    else:
        text, kind = to_text(graph) + "\n", "text"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return kind, path


# ---------------------------------------------------------------- reading notebooks, for the panel

_READ: dict[Path, tuple[int, list[Cell]]] = {}


def notebook_cells(path: Path) -> list[Cell] | None:
    """The code cells of the notebook file at ``path``, or None if it can't be read; re-read only when it changed."""
    try:
        mtime = path.stat().st_mtime_ns
    except OSError:
        return None
    known = _READ.get(path)
    if known is not None and known[0] == mtime:
        return known[1]
    try:
        import nbformat

        cells = cells_of(nbformat.read(str(path), as_version=4))
    except Exception:  # noqa: BLE001 - a notebook being saved, or not a notebook: no order, no graph
        return None
    _READ[path] = (mtime, cells)
    return cells


def step_order(root: Path, notebooks: Iterable[str]) -> dict[tuple[str, str], int]:
    """``{(notebook, step): cell index}`` for the panel's "cell order" sort, from the notebooks' files."""
    order: dict[tuple[str, str], int] = {}
    for notebook in set(notebooks):
        cells = notebook_cells(root / notebook) if notebook else None
        for cell in cells or ():
            if cell.step is not None:
                order.setdefault((notebook, cell.step), cell.index)
    return order


def for_panel(root: Path, notebook: str, rows: Sequence[Any], last_reasons: Mapping[str, str]) -> tuple[Graph, str]:
    """The panel's graph of ``notebook``, and a note when it had to do without the notebook's file."""
    infos = {}
    for row in rows:
        if (row.notebook or "") != notebook:
            continue
        if row.runs == 0 and row.entries == 0:
            state = NEVER_RUN
        elif row.last_status in ("plain", "off"):
            state = UNCACHED
        elif row.entries and row.last_status in ("hit", "miss", None):
            state = FRESH
        else:
            state = WOULD_RUN  # its last run failed, or its entries were dropped: it runs next time
        infos[row.name] = StepInfo(state, row.saved_seconds, last_reasons.get(row.name) or row.last_miss_reason)
    cells = notebook_cells(root / notebook) if notebook else None
    if cells is None:
        # No file to read the order and the arrows from (plain IPython, an unsaved notebook): the steps alone.
        steps = [Cell(i, name, frozenset(), frozenset()) for i, name in enumerate(sorted(infos))]
        where = "this IPython session" if not notebook else notebook
        return build(notebook, steps, infos), f"{where}: no notebook file to read the cell order and arrows from; steps by name"
    return build(notebook, cells, infos), ""
