"""End to end: the cache panel and the hit marker in JupyterLab 4 and Debian's chromium.

Open a notebook with three ``%%cached`` steps, the panel, and a fourth step
after it (which the shown panel must pick up live); run it twice (misses,
then hits, each hit with its marker), click one step's Invalidate in the
rendered panel, run again, and check that exactly that step missed. Then
check the panel's layout at 1024, 1280 (file browser open) and 1600 px, in
the light and the dark theme, with assertions that do not depend on pixels.

Screenshots go to the test's temporary folder; ``docs/img/panel.png`` is
rewritten only with ``CELLCACHE_UPDATE_SCREENSHOTS=1``.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from playwright.sync_api import Locator, expect

from .jupyterlab import REPO_ROOT, JupyterLabServer, LabPage, is_png, write_notebook

pytestmark = pytest.mark.browser

WIDGETS_PLUGIN = "@jupyter-widgets/jupyterlab-manager:plugin"
SCREENSHOT = REPO_ROOT / "docs" / "img" / "panel.png"
UPDATE_SCREENSHOTS = os.environ.get("CELLCACHE_UPDATE_SCREENSHOTS") == "1"

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
STEPS = ("load", "features", "fit", "report")
LONG_NAME = "saved_step_with_a_name_longer_than_its_column"


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


def settle(lab: LabPage) -> None:
    """Two animation frames: Lumino lays widgets out on the frame after a resize."""
    lab.page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")


def set_theme(lab: LabPage, dark: bool) -> None:
    theme = "JupyterLab Dark" if dark else "JupyterLab Light"
    lab.page.evaluate("(t) => window.jupyterapp.commands.execute('apputils:change-theme', {theme: t})", theme)
    lab.page.wait_for_function("(light) => document.body.dataset.jpThemeLight === light", arg="false" if dark else "true")


def set_file_browser(lab: LabPage, open_: bool) -> None:
    if open_:
        lab.page.evaluate("() => window.jupyterapp.commands.execute('filebrowser:activate')")
        lab.page.wait_for_function("() => !window.jupyterapp.shell.leftCollapsed")
    else:
        lab.page.evaluate("() => window.jupyterapp.shell.collapseLeft()")
        lab.page.wait_for_function("() => window.jupyterapp.shell.leftCollapsed")


LAYOUT_JS = """(panel) => {
  const vw = document.documentElement.clientWidth;
  const visible = (el) => el.offsetParent !== null && getComputedStyle(el).display !== 'none';
  const col = (el) => [...el.classList].find(c => c.startsWith('cellcache-col-'));
  const header = panel.querySelector('.cellcache-header');
  const headerCells = [...header.children].filter(visible);
  const rows = [...panel.querySelectorAll('.cellcache-row')];
  const misaligned = [];
  for (const r of rows) {
    const cells = [...r.children].filter(visible);
    if (cells.map(col).join() !== headerCells.map(col).join()) misaligned.push(r.className + ': other columns');
    cells.forEach((c, i) => {
      const h = headerCells[i];
      const a = c.getBoundingClientRect(), b = h && h.getBoundingClientRect();
      if (b && (Math.abs(a.left - b.left) > 1 || Math.abs(a.width - b.width) > 1))
        misaligned.push(`${col(c)}: row ${a.left.toFixed(0)}+${a.width.toFixed(0)}, header ${b.left.toFixed(0)}+${b.width.toFixed(0)}`);
    });
  }
  // Nothing inside the panel scrolls on its own; only the table as a whole may.
  const scrolling = [...panel.querySelectorAll('*')].filter(el =>
      !el.classList.contains('cellcache-table') && el.scrollWidth > el.clientWidth + 1 &&
      ['auto', 'scroll'].includes(getComputedStyle(el).overflowX)).map(el => el.className);
  const reasons = rows.map(r => r.querySelector('.cellcache-reason').getBoundingClientRect());
  return {
    vw, misaligned, scrolling,
    reasonRight: Math.max(...reasons.map(b => b.right)),
    reasonWidth: Math.min(...reasons.map(b => b.width)),
    shownColumns: headerCells.map(col),
  };
}"""


def test_panel_renders_marks_hits_invalidates_and_holds_up_at_real_sizes(
    lab: LabPage, jupyter_server: JupyterLabServer, tmp_path: Path
) -> None:
    write_notebook(jupyter_server.root_dir, "panel_e2e.ipynb", CELLS)
    lab.open("panel_e2e.ipynb")
    assert lab.plugin_active(WIDGETS_PLUGIN), f"{WIDGETS_PLUGIN} is not active in JupyterLab"
    markers = lab.panel.locator(".cellcache-marker")

    # 1. First run: every step misses, and no cell says "restored"; the panel shows every step.
    lab.run_all()
    assert statuses(lab) == dict.fromkeys(STEPS, "miss")
    expect(markers).to_have_count(0)
    panel = the_panel(lab)
    for step in ("load", "features", "fit"):
        expect(row(panel, step)).to_be_visible()
        expect_cells(panel, step, runs=1, hits=0, misses=1)
    expect(row(panel, "report")).to_be_visible()  # ran after the panel was displayed
    expect(panel.locator(".cellcache-totals")).to_contain_text(str(jupyter_server.cellcache_dir))

    # 2. Second run in the same kernel: every step hits, and each shows one quiet marker line.
    lab.run_all()
    assert statuses(lab) == dict.fromkeys(STEPS, "hit")
    expect(markers).to_have_count(len(STEPS))
    expect(markers.first).to_contain_text("↺ restored from cache · step load · saved")
    assert offscreen_panels(lab) == 1  # the first run's panel: its view went with the cleared output
    panel = the_panel(lab)
    expect_cells(panel, "features", runs=2, hits=1, misses=1)

    # 3. Invalidate one step from the panel: the click goes to the kernel and the panel answers.
    lab.click_button("Invalidate", within=row(panel, "features"))
    expect(panel.locator(".cellcache-feedback")).to_contain_text("features': 1 entry dropped")
    expect(cell(panel, "features", "entries")).to_have_text("0")
    expect(cell(panel, "load", "entries")).to_have_text("1")

    # 4. Run again: exactly that step misses (and has no marker), the others are restored.
    lab.run_all()
    assert statuses(lab) == {"load": "hit", "features": "miss", "fit": "hit", "report": "hit"}
    expect(markers).to_have_count(3)
    assert offscreen_panels(lab) == 2
    panel = the_panel(lab)
    expect_cells(panel, "features", runs=3, hits=1, misses=2)
    expect(cell(panel, "features", "reason")).to_have_text("invalidated")
    # issue 25: the last run's reason (a hit's), not the first run's; long, so clipped, the whole text in its tooltip.
    expect(cell(panel, "load", "reason")).to_contain_text("hit: code, inputs and files unchanged")
    expect(cell(panel, "load", "reason").locator(".cellcache-clip")).to_have_attribute("title", re.compile(r"^hit: code, inputs and files unchanged"))
    # The live panel hides its own saved form (the HTML snapshot output before it).
    expect(lab.panel.locator(".cellcache-snapshot")).to_be_hidden()

    # 5. Real window sizes, both themes: the reason stays readable and in view, the header and
    #    the rows line up, and nothing scrolls on its own.
    lab.page.mouse.move(0, 0)  # no hover highlight or tooltip in the pictures
    # 1024 px with the file browser open too: the narrowest common case, where "saved" used to go first.
    for width, browser in ((1024, False), (1024, True), (1280, True), (1600, False)):
        for dark in (False, True):
            lab.page.set_viewport_size({"width": width, "height": 900})
            set_file_browser(lab, open_=browser)
            set_theme(lab, dark)
            settle(lab)
            panel.scroll_into_view_if_needed()
            got = panel.evaluate(LAYOUT_JS)
            where = f"at {width} px{' with the file browser' if browser else ''}, {'dark' if dark else 'light'}: {got}"
            assert got["misaligned"] == [], where
            assert got["scrolling"] == [], where
            assert got["reasonRight"] <= got["vw"], where
            assert got["reasonWidth"] >= 150, where  # "first run of this step" and "invalidated" read in full
            assert "cellcache-col-name" in got["shownColumns"] and "cellcache-col-button" in got["shownColumns"], where
            assert "cellcache-col-saved" in got["shownColumns"], where  # issue 25: saved stays at every width
            shot = lab.screenshot(panel, tmp_path / f"panel-{width}{'-files' if browser else ''}-{'dark' if dark else 'light'}.png")
            assert is_png(shot)
            if UPDATE_SCREENSHOTS and width == 1600 and not dark:
                SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
                SCREENSHOT.write_bytes(shot.read_bytes())
    set_theme(lab, False)


def test_saved_and_reopened_notebook_shows_the_html_table(
    lab: LabPage, jupyter_server: JupyterLabServer
) -> None:
    write_notebook(
        jupyter_server.root_dir,
        "panel_saved.ipynb",
        ["%load_ext cellcache", f"%%cached {LONG_NAME}\nvalue = 41 + 1", "%cellcache"],
    )
    lab.open("panel_saved.ipynb")
    lab.run_all()
    expect(lab.panel.locator(".cellcache-panel")).to_be_visible()
    # A long name is cut with an ellipsis, and its tooltip holds all of it.
    name = lab.panel.locator(f".cellcache-row-{LONG_NAME} .cellcache-name .cellcache-clip")
    expect(name).to_have_attribute("title", LONG_NAME)
    clipped = name.evaluate("(el) => [el.scrollWidth > el.clientWidth, getComputedStyle(el).textOverflow]")
    assert clipped == [True, "ellipsis"], clipped
    lab.page.evaluate("() => window.jupyterapp.commands.execute('docmanager:save')")
    lab.page.wait_for_function(
        "() => !window.jupyterapp.shell.currentWidget.context.model.dirty", timeout=30_000
    )
    # A new kernel, as after closing JupyterLab: the widget's model is gone with the old one.
    jupyter_server.shutdown_all_kernels()
    lab.open("panel_saved.ipynb")
    snapshot = lab.panel.locator(".cellcache-snapshot")
    expect(snapshot).to_be_visible()
    expect(snapshot).to_contain_text(LONG_NAME)
    expect(lab.panel.get_by_text("Error displaying widget")).to_be_hidden()
