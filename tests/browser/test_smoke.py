"""Smoke test of the browser harness: JupyterLab + ipywidgets + Debian's chromium.

It proves the pieces the cellcache panel tests build on: a notebook written to
disk opens with a live kernel, "Run All" finishes, outputs are found by text,
a widget renders and reacts to a click, and an element can be screenshotted.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import expect

from .jupyterlab import BrowserTestError, JupyterLabServer, LabPage, is_png, notebook_json, write_notebook

pytestmark = pytest.mark.browser

WIDGETS_PLUGIN = "@jupyter-widgets/jupyterlab-manager:plugin"

WIDGET_CELL = """\
import ipywidgets as widgets

label = widgets.Label("hello-widget")
button = widgets.Button(description="Press me")

def on_click(_button):
    label.value = "pressed"

button.on_click(on_click)
widgets.VBox([label, button])
"""


def test_notebook_json_is_valid_nbformat() -> None:
    # write_notebook() builds the JSON by hand (fast); nbformat must accept it.
    import nbformat

    nb = nbformat.from_dict(notebook_json(["1 + 1", ("markdown", "# title"), ("raw", "raw text")]))
    nbformat.validate(nb)


def test_widget_click_and_outputs(lab: LabPage, jupyter_server: JupyterLabServer, tmp_path: Path) -> None:
    write_notebook(
        jupyter_server.root_dir,
        "smoke_widget.ipynb",
        [
            WIDGET_CELL,
            'print("marker-output-42")',
            'import os; print("cache-dir=" + os.environ.get("CELLCACHE_DIR", "<unset>"))',
        ],
    )
    lab.open("smoke_widget.ipynb")
    # Without the ipywidgets lab extension the cell shows only a text repr
    # ("VBox(children=...)") and the click below would time out obscurely.
    assert lab.plugin_active(WIDGETS_PLUGIN), f"{WIDGETS_PLUGIN} is not active in JupyterLab"

    lab.run_all()

    assert lab.output("marker-output-42").inner_text().strip() == "marker-output-42"
    # Kernels get the private cache store of this test session, not ~/.cellcache.
    cache_line = lab.output("cache-dir=").inner_text().strip()
    assert cache_line == f"cache-dir={jupyter_server.cellcache_dir}"

    widget = lab.output("hello-widget")
    label = widget.locator(".widget-label")
    expect(label).to_have_text("hello-widget")

    lab.click_button("Press me", within=widget)
    # The click goes to the kernel (on_click) and back through the comm.
    expect(label).to_have_text("pressed")

    shot = lab.screenshot(widget, tmp_path / "widget.png")
    assert shot.stat().st_size > 0
    assert is_png(shot)


def test_restart_and_run_all_uses_a_new_kernel(lab: LabPage, jupyter_server: JupyterLabServer) -> None:
    # The empty cell never gets a count: the waits must not hang on it.
    write_notebook(
        jupyter_server.root_dir, "smoke_restart.ipynb", ['import os; print(f"pid={os.getpid()}")', ""]
    )
    lab.open("smoke_restart")
    lab.run_all()
    first = lab.output("pid=").inner_text().strip()

    lab.restart_and_run_all()
    second = lab.output("pid=").inner_text().strip()
    assert first != second, "the kernel process did not change on restart"
    assert lab.prompts() == ["[1]:", "[ ]:"], "execution counts did not start again at 1"


def test_run_all_reports_a_failing_cell(lab: LabPage, jupyter_server: JupyterLabServer) -> None:
    # "Run All" stops at a cell that raises; the wait must end there (not time
    # out on the cells that never run) and say which error it was.
    write_notebook(
        jupyter_server.root_dir,
        "smoke_error.ipynb",
        ['print("before")', 'raise ValueError("boom-in-cell-2")', 'print("never-printed")'],
    )
    lab.open("smoke_error")
    with pytest.raises(BrowserTestError, match="cell 1: ValueError: boom-in-cell-2"):
        lab.run_all(timeout_ms=60_000)
    # Whether the cell after the error runs is a race inside ipykernel (it aborts only the
    # requests it has already received), so only the cells up to the error are checked.
    assert lab.prompts()[:2] == ["[1]:", "[2]:"]
    # allow_errors: the same state is returned instead of raised.
    lab.run_all(allow_errors=True)
    assert lab.prompts()[:2] == ["[3]:", "[4]:"]
    assert lab.cell_errors() == [{"cell": 1, "ename": "ValueError", "evalue": "boom-in-cell-2"}]
