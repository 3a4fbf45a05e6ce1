"""End to end: the cache panel in JupyterLab 4 and Debian's chromium.

Open a notebook with three ``%%cached`` steps, the panel, and a fourth step
after it (which the shown panel must pick up live); run it twice (misses,
then hits), click one step's Invalidate in the rendered panel, run again,
and check that exactly that step missed. A screenshot of the final panel
goes to ``docs/img/panel.png`` for the README.
"""
from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Locator, expect

from .jupyterlab import REPO_ROOT, JupyterLabServer, LabPage, is_png, write_notebook

pytestmark = pytest.mark.browser

WIDGETS_PLUGIN = "@jupyter-widgets/jupyterlab-manager:plugin"
SCREENSHOT = REPO_ROOT / "docs" / "img" / "panel.png"

CELLS = [
    "%load_ext cellcache",
    "%%cached load\nimport time\nrows = list(range(20_000))\ntime.sleep(0.4)  # a slow read",
    "%%cached features\nfeatures = [r % 7 for r in rows]\ntime.sleep(0.3)",
    "%%cached fit\nmodel = sum(features) / len(features)\ntime.sleep(0.2)",
    "%cellcache",
    # Runs after the panel is shown: the panel must pick this step up by itself (live update).
    "%%cached report\nsummary = f'model={model:.3f}'",
    'import cellcache\nprint("STATUS " + " ".join(f"{s.name}={s.last_status}" for s in cellcache.stats()))',
    # Panels whose output Run All cleared must know they are off screen (and skip live refreshes).
    "from ipywidgets.widgets.widget import _instances\nfrom cellcache.widget import CachePanel\n"
    'print("OFFSCREEN", sum(not w.on_screen for w in list(_instances.values()) if isinstance(w, CachePanel)))',
]


def statuses(lab: LabPage) -> dict[str, str]:
    line = lab.output("STATUS ").inner_text().strip()
    return dict(pair.split("=", 1) for pair in line.removeprefix("STATUS ").split())


def offscreen_panels(lab: LabPage) -> int:
    return int(lab.output("OFFSCREEN ").inner_text().split()[1])


def the_panel(lab: LabPage) -> Locator:
    """The rendered panel (only one is on the page: Run All clears the previous outputs)."""
    panel = lab.panel.locator(".cellcache-panel")
    expect(panel).to_have_count(1)
    expect(panel).to_be_visible()
    return panel


def row(panel: Locator, step: str) -> Locator:
    return panel.locator(f".cellcache-row-{step}")


def cell(panel: Locator, step: str, column: str) -> Locator:
    """One cell of a step's row: column is a class suffix, "runs", "last-age", "reason", ..."""
    return row(panel, step).locator(f".cellcache-{column}")


def expect_cells(panel: Locator, step: str, runs: int, hits: int, misses: int) -> None:
    expect(cell(panel, step, "name")).to_have_text(step)
    expect(cell(panel, step, "runs")).to_have_text(str(runs))
    expect(cell(panel, step, "hits")).to_have_text(str(hits))
    expect(cell(panel, step, "misses")).to_have_text(str(misses))


def test_panel_renders_invalidates_one_step_and_updates_live(
    lab: LabPage, jupyter_server: JupyterLabServer, tmp_path: Path
) -> None:
    write_notebook(jupyter_server.root_dir, "panel_e2e.ipynb", CELLS)
    lab.open("panel_e2e.ipynb")
    assert lab.plugin_active(WIDGETS_PLUGIN), f"{WIDGETS_PLUGIN} is not active in JupyterLab"

    # 1. First run: every step misses; the panel shows all of them, "report" through a live update.
    lab.run_all()
    assert statuses(lab) == {"load": "miss", "features": "miss", "fit": "miss", "report": "miss"}
    panel = the_panel(lab)
    for step in ("load", "features", "fit"):
        expect(row(panel, step)).to_be_visible()
        expect_cells(panel, step, runs=1, hits=0, misses=1)
    expect(row(panel, "report")).to_be_visible()  # ran after the panel was displayed
    expect(panel.locator(".cellcache-totals")).to_contain_text(str(jupyter_server.cellcache_dir))

    # 2. Second run in the same kernel: every step hits.
    lab.run_all()
    assert statuses(lab) == {"load": "hit", "features": "hit", "fit": "hit", "report": "hit"}
    assert offscreen_panels(lab) == 1  # the first run's panel: its view went with the cleared output
    panel = the_panel(lab)
    expect_cells(panel, "features", runs=2, hits=1, misses=1)

    # 3. Invalidate one step from the panel: the click goes to the kernel and the panel answers.
    lab.click_button("Invalidate", within=row(panel, "features"))
    expect(panel.locator(".cellcache-feedback")).to_contain_text("Invalidated 'features': 1 entry dropped")
    expect(cell(panel, "features", "entries")).to_have_text("0")
    expect(cell(panel, "load", "entries")).to_have_text("1")

    # 4. Run again: exactly that step misses, the others are restored.
    lab.run_all()
    assert statuses(lab) == {"load": "hit", "features": "miss", "fit": "hit", "report": "hit"}
    assert offscreen_panels(lab) == 2
    panel = the_panel(lab)
    expect_cells(panel, "features", runs=3, hits=1, misses=2)
    expect(cell(panel, "features", "reason")).to_have_text("invalidated")
    expect_cells(panel, "load", runs=3, hits=2, misses=1)

    # 5. At 1280 px with the file browser open, every column fits, Invalidate included.
    assert _rows_fit(panel), "a row of the panel is wider than the output area"

    # 6. The screenshot for the README, in a wider window so the miss reasons show in full.
    lab.page.set_viewport_size({"width": 1440, "height": 1000})
    reason = cell(panel, "load", "reason")
    reason.wait_for(state="visible")
    lab.page.wait_for_function("(el) => el.clientWidth > 150", arg=reason.element_handle())
    lab.page.mouse.move(0, 0)  # no hover highlight or tooltip in the picture
    shot = lab.screenshot(panel, tmp_path / "panel.png")
    assert is_png(shot)
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    SCREENSHOT.write_bytes(shot.read_bytes())
    box = panel.bounding_box()
    assert box is not None and box["width"] > 600 and box["height"] > 150


def _rows_fit(panel: Locator) -> bool:
    """Every row is within the panel's width (no column pushed off the visible area)."""
    return bool(
        panel.evaluate(
            """(el) => [...el.querySelectorAll('.cellcache-row')].every(
                 r => r.scrollWidth <= r.clientWidth + 1)"""
        )
    )
