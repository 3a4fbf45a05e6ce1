"""End to end: the panel's graph view in JupyterLab 4 and Debian's chromium, at 1024 and 1600 px.

A notebook of a parameters cell and five steps runs once; the panel switches to its graph view: the
picture Graphviz drew shows every step in cell order, coloured by state, with arrows between them;
clicking a step shows its last reason and Invalidate, and invalidating it recolours it.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from playwright.sync_api import expect

from .jupyterlab import JupyterLabServer, LabPage, is_png, write_notebook
from .test_panel import set_file_browser, settle, the_panel

pytestmark = pytest.mark.browser

STEPS = ("generate", "clean", "features", "fit", "evaluate")
CELLS = [
    # A store of its own: the server's kernels share one, and test_panel counts every step in it.
    "import os\nos.environ['CELLCACHE_DIR'] = 'graph-e2e-store'\n%load_ext cellcache",
    "seed = 3\nsize = 2000",
    "%%cached generate\nraw = list(range(size * seed))",
    "%%cached clean\nX_clean = [r for r in raw if r % 3]",
    "%%cached features\nfeats = [x * 2 for x in X_clean]",
    "%%cached fit\nw = sum(feats) / len(raw)",
    "%%cached evaluate\nscore = w * 2",
    "%cellcache",
]

GRAPH_JS = """(view) => {
  const svg = view.querySelector('.cellcache-graph-svg svg');
  const box = svg.getBoundingClientRect();
  const nodes = [...svg.querySelectorAll('g.node')];
  const labels = nodes.map(g => [...g.querySelectorAll('text')].map(t => t.textContent).join(' '));
  const tops = nodes.map(g => g.getBoundingClientRect().top);
  const fontPx = Math.min(...nodes.map(g => parseFloat(getComputedStyle(g.querySelector('text')).fontSize) *
      (g.querySelector('text').getBoundingClientRect().height / (parseFloat(getComputedStyle(g.querySelector('text')).fontSize) || 1))));
  return { left: box.left, right: box.right, width: box.width, vw: document.documentElement.clientWidth,
           labels, tops, edges: svg.querySelectorAll('g.edge').length, fontPx };
}"""


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot draws the picture (.ci/browser-deps.sh installs it)")
def test_graph_view_draws_the_steps_and_a_click_invalidates_at_1024_and_1600(
    lab: LabPage, jupyter_server: JupyterLabServer, tmp_path: Path
) -> None:
    write_notebook(jupyter_server.root_dir, "graph_e2e.ipynb", CELLS)
    lab.open("graph_e2e.ipynb")
    lab.run_all()
    panel = the_panel(lab)
    lab.click_button("graph", within=panel)
    view = panel.locator(".cellcache-graph-view")
    expect(view.locator("svg g.node")).to_have_count(len(STEPS) + 1)  # and the parameters cell

    for width in (1024, 1600):
        lab.page.set_viewport_size({"width": width, "height": 900})
        set_file_browser(lab, open_=False)
        settle(lab)
        view.scroll_into_view_if_needed()
        got = view.evaluate(GRAPH_JS)
        where = f"at {width} px: {got}"
        assert got["right"] <= got["vw"] and got["left"] >= 0, where  # the whole picture in view, no sideways scroll
        # Top to bottom in cell order: the plain cell the steps read, then the steps.
        by_top = [label for _, label in sorted(zip(got["tops"], got["labels"]))]
        order = [label.split()[0] + (" " + label.split()[1] if label.startswith("cell") else "") for label in by_top]
        assert order == ["cell 1", *STEPS], where
        assert len(set(got["tops"])) == len(got["tops"]), where  # one step per row
        assert got["edges"] >= len(STEPS), where
        assert got["fontPx"] >= 9, where  # readable
        assert is_png(lab.screenshot(view, tmp_path / f"graph-{width}.png"))

    fit = view.locator("svg g.node", has_text="fit")
    expect(fit.locator("text").first).to_be_visible()
    assert "#d4f4dd" in fit.inner_html()  # fresh: it just ran and was stored
    fit.click()
    detail = panel.locator(".cellcache-graph-detail")
    expect(detail).to_contain_text("last reason: first run of this step")
    lab.click_button("Invalidate", within=panel.locator(".cellcache-graph-box"))
    expect(panel.locator(".cellcache-feedback")).to_contain_text("fit': 1 entry dropped")
    fit = view.locator("svg g.node", has_text="fit")
    expect(fit).to_have_count(1)
    lab.page.wait_for_function(
        "(el) => el.querySelector('svg') && [...el.querySelectorAll('g.node')].some(g => g.textContent.includes('fit') && g.innerHTML.includes('#fff1c2'))",
        arg=view.element_handle(),
    )
