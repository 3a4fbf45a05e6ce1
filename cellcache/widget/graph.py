"""The panel's graph view: the notebook's steps drawn by Graphviz, a click shows a step's reason and Invalidate."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import ipywidgets as widgets

from cellcache.report import (
    format_seconds,
)
from cellcache.store.base import StepRef

if TYPE_CHECKING:
    pass

_GRAPH_ESM = r"""
function render({ model, el }) {
  el.classList.add("cellcache-graph-view");
  const draw = () => {
    const nodes = model.get("nodes");
    const svg = model.get("svg");
    const selected = model.get("selected");
    el.replaceChildren();
    const pick = (id) => { model.set("selected", id); model.save_changes(); };
    if (svg) {
      const box = document.createElement("div");
      box.className = "cellcache-graph-svg";
      box.innerHTML = svg;
      for (const node of nodes) {
        const g = box.querySelector(`#cellcache-step-${node.index}`);
        if (!g) continue;
        g.style.cursor = "pointer";
        g.dataset.step = node.id;
        if (node.id === selected) g.classList.add("cellcache-selected");
        g.addEventListener("click", () => pick(node.id));
      }
      el.appendChild(box);
    } else {
      // No Graphviz here: the same steps as a list, each still clickable.
      const list = document.createElement("ol");
      list.className = "cellcache-graph-list";
      for (const node of nodes) {
        const item = document.createElement("li");
        const button = document.createElement("button");
        button.textContent = node.text;
        button.dataset.step = node.id;
        if (node.id === selected) button.classList.add("cellcache-selected");
        button.addEventListener("click", () => pick(node.id));
        item.appendChild(button);
        list.appendChild(item);
      }
      el.appendChild(list);
    }
  };
  model.on("change:svg", draw);
  model.on("change:nodes", draw);
  model.on("change:selected", draw);
  draw();
}
export default { render };
"""

_GRAPH_CSS = """
.cellcache-graph-view .cellcache-graph-svg { max-width: 100%; max-height: 70vh; overflow: auto; }
.cellcache-graph-view .cellcache-graph-svg svg { max-width: 100%; height: auto; }
.cellcache-graph-view g.cellcache-selected path, .cellcache-graph-view g.cellcache-selected polygon { stroke-width: 3px; }
.cellcache-graph-view .cellcache-graph-list { margin: 4px 0; padding-left: 24px; }
.cellcache-graph-view .cellcache-graph-list button { all: unset; cursor: pointer; }
.cellcache-graph-view .cellcache-graph-list button.cellcache-selected { font-weight: bold; }
"""


def _graph_widget_class() -> type:
    """The drawing widget, built on first use: anywidget is imported only when a graph is shown."""
    global _GraphWidget
    if _GraphWidget is None:
        import anywidget
        import traitlets

        class PipelineGraph(anywidget.AnyWidget):  # type: ignore[misc]
            """The SVG Graphviz drew (or, without it, a list), and which step was clicked."""

            _esm = _GRAPH_ESM
            _css = _GRAPH_CSS
            svg = traitlets.Unicode("").tag(sync=True)
            nodes = traitlets.List().tag(sync=True)
            selected = traitlets.Unicode("").tag(sync=True)

        _GraphWidget = PipelineGraph
    return _GraphWidget


_GraphWidget: type | None = None


class GraphView:
    """The panel's graph view: the picture of one notebook's steps, and the clicked step's last reason and Invalidate.

    The picture is Graphviz's (``cellcache.graph``), drawn in the kernel; the front end only shows
    it and reports clicks, through a small anywidget, which JupyterLab, Notebook 7 and VS Code load.
    """

    def __init__(self, on_invalidate: Callable[[StepRef], None]) -> None:
        self.graph: Any = None
        self.drawing = _graph_widget_class()()
        self.note = widgets.HTML(_dom_classes=("cellcache-graph-note",))
        self.detail = widgets.HTML(_dom_classes=("cellcache-graph-detail",))
        self.invalidate_button = widgets.Button(
            description="Invalidate", _dom_classes=("cellcache-graph-invalidate",), layout=widgets.Layout(display="none")
        )
        self.box = widgets.VBox(
            [self.note, self.drawing, widgets.HBox([self.detail, self.invalidate_button])], _dom_classes=("cellcache-graph-box",)
        )
        self._on_invalidate = on_invalidate
        self.drawing.observe(lambda _c: self._show_selected(), names="selected")
        self.invalidate_button.on_click(lambda _b: self._invalidate())

    def widgets(self) -> list[widgets.Widget]:
        return [self.note, self.drawing, self.detail, self.invalidate_button, *self.box.children, self.box]

    def show(self, graph: Any, note: str = "") -> None:
        from cellcache import graph as _graph

        self.graph = graph
        svg = _graph.to_svg(graph) if graph is not None else None
        nodes = []
        for node in graph.nodes if graph is not None else ():
            saved = f", saved {format_seconds(node.saved_seconds)}" if node.saved_seconds else ""
            nodes.append({"id": node.id, "index": node.index, "text": f"[{node.index}] {node.label}: {node.state}{saved}"})
        if graph is not None and graph.nodes and svg is None:
            note = note or "Graphviz's dot is not installed: the steps as a list (apt-get install graphviz draws the picture)."
        legend = ", ".join(f"{state}" for state in _graph.STATES)
        self.note.value = html_escape(note) if note else f"<small>click a step · colours: {html_escape(legend)}</small>"
        if nodes != self.drawing.nodes:
            self.drawing.nodes = nodes
        if (svg or "") != self.drawing.svg:
            self.drawing.svg = svg or ""
        self._show_selected()

    def select(self, step: str) -> None:
        """What a click does (tests call it too)."""
        self.drawing.selected = step

    def _node(self) -> Any:
        return self.graph.node(self.drawing.selected) if self.graph is not None and self.drawing.selected else None

    def _show_selected(self) -> None:
        node = self._node()
        if node is None:
            self.detail.value = ""
            self.invalidate_button.layout.display = "none"
            return
        saved = f" · saved {format_seconds(node.saved_seconds)}" if node.saved_seconds else ""
        reason = node.reason or "-"
        self.detail.value = (
            f"<b>{html_escape(node.label)}</b>: {html_escape(node.state)}{html_escape(saved)}"
            f"<br>last reason: <span class='cellcache-graph-reason'>{html_escape(reason)}</span>"
        )
        self.invalidate_button.layout.display = None if node.step else "none"
        self.invalidate_button.tooltip = f"Invalidate step {node.label!r}: drop its stored entries, so it runs next time"

    def _invalidate(self) -> None:
        node = self._node()
        if node is not None and node.step and self.graph is not None:
            self._on_invalidate(StepRef(self.graph.notebook, node.step))


def html_escape(text: str) -> str:
    import html

    return html.escape(text)
