"""`cellcache run --auto`: unmodified notebooks in real kernels, as plain nbclient runs them, but incremental."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from cellcache import batch
from cellcache.batch import RunOptions
from tests.batch.helpers import cellcache

SOURCES = [
    "import time\nfrom pathlib import Path\nfrom IPython.display import Markdown, display",
    "time.sleep(0.3)\ndata = [i * i for i in range(10)]\nprint('computed', len(data))\nsum(data)",
    "display(Markdown(f'**total** {sum(data)}'))\ntime.sleep(0.1)",
    "Path('results.csv').write_text('\\n'.join(map(str, data)))\ntime.sleep(0.1)",
    "print(Path('results.csv').read_text().splitlines()[-1])",
    "%%cached explicit\ntime.sleep(0.1)\nexplicit = len(data)",
    "# cellcache: off\ntime.sleep(0.06)\nprint('off', explicit)",
    "time.sleep(0.06)\nprint('tagged')",
]


def auto_notebook(folder: Path) -> Path:
    (folder / "pyproject.toml").write_text("[project]\nname = 'demo'\n")
    cells = [new_markdown_cell("# An unmodified notebook")] + [new_code_cell(s) for s in SOURCES]
    cells[-1].metadata["tags"] = ["no-cache"]
    for n, cell in enumerate(cells):
        cell.id = f"cell{n}"
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = folder / "analysis.ipynb"
    nbformat.write(nb, path)
    return path


def plain_outputs(path: Path, tmp: Path) -> list[list[dict]]:
    """What jupyter-cache's executor gets: nbclient runs the whole notebook, no cellcache anywhere."""
    from nbclient import NotebookClient

    folder = tmp / "plain"
    shutil.copytree(path.parent, folder)
    nb = nbformat.read(folder / path.name, as_version=4)
    nb.cells[6].source = nb.cells[6].source.replace("%%cached explicit\n", "")  # plain Python: the same body
    NotebookClient(nb, resources={"metadata": {"path": str(folder)}}).execute()
    return _outputs(nb)


def _outputs(nb: nbformat.NotebookNode) -> list[list[dict]]:
    return [_coalesced([_comparable(o) for o in c.outputs]) for c in nb.cells if c.cell_type == "code"]


def _coalesced(outputs: list[dict]) -> list[dict]:
    # A kernel flushes a stream when its timer fires, so one print may arrive in two messages: a front end shows
    # them as one text, and so does this comparison.
    merged: list[dict] = []
    for out in outputs:
        if merged and out.get("output_type") == "stream" and merged[-1].get("output_type") == "stream" and merged[-1].get("name") == out.get("name"):
            merged[-1] = {**merged[-1], "text": merged[-1]["text"] + out["text"]}
        else:
            merged.append(out)
    return merged


def _comparable(output: dict) -> dict:
    kept = {k: v for k, v in output.items() if k in ("output_type", "name", "text", "data", "execution_count")}
    return json.loads(json.dumps(kept))


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "book"
    folder.mkdir()
    monkeypatch.delenv("CELLCACHE_DIR", raising=False)
    monkeypatch.delenv("CELLCACHE_AUTO", raising=False)
    return folder


def test_an_unmodified_notebook_gives_the_plain_outputs_cold_and_warm(project: Path, tmp_path: Path) -> None:
    path = auto_notebook(project)
    expected = plain_outputs(path, tmp_path)
    options = RunOptions(auto=True, output_dir=tmp_path / "out")
    cold = batch.run_notebook(path, options)
    assert cold.ok, cold
    got = _outputs(nbformat.read(cold.output, as_version=4))
    assert got == expected, [(n, g, e) for n, (g, e) in enumerate(zip(got, expected)) if g != e]
    (project / "results.csv").unlink()
    warm = batch.run_notebook(path, options)
    assert warm.ok, warm
    got = _outputs(nbformat.read(warm.output, as_version=4))
    assert got == expected, [(n, g, e) for n, (g, e) in enumerate(zip(got, expected)) if g != e]
    assert (project / "results.csv").read_text().endswith("\n81")  # the writer cell's out, written back by its hit

    by_index = {c.index: c for c in warm.cells}
    assert [by_index[i].status for i in (2, 3, 4)] == ["hit", "hit", "hit"]
    assert (by_index[2].step, by_index[4].step) == ("cell2", "cell4")
    assert by_index[1].status == by_index[5].status == "plain"
    assert by_index[1].reason.startswith("cheap: ") and by_index[5].reason.startswith("cheap: ")
    assert (by_index[6].step, by_index[6].status) == ("explicit", "hit")  # an explicit %%cached wins
    assert (by_index[7].status, by_index[7].reason) == ("plain", "off: # cellcache: off")
    assert (by_index[8].status, by_index[8].reason) == ("plain", "off: tagged no-cache")
    cold_by_index = {c.index: c for c in cold.cells}
    assert [cold_by_index[i].status for i in (2, 3, 4)] == ["miss", "miss", "miss"]


def test_the_cli_flag_and_json_report_each_decision(project: Path) -> None:
    path = auto_notebook(project)
    out = cellcache("run", "--auto", "--json", str(path), cwd=project)
    assert out.returncode == 0, out.stderr
    cells = {c["index"]: c for c in json.loads(out.stdout)["notebooks"][0]["cells"]}
    assert cells[2]["status"] == "miss" and cells[1]["reason"].startswith("cheap: ")
    table = cellcache("run", "--auto", str(path), cwd=project)
    assert table.returncode == 0, table.stderr
    assert "cheap:" in table.stdout and "tagged no-cache" in table.stdout
    stats = cellcache("stats", cwd=project)
    # cell1..cell5, cheap ones included; not `explicit`, nor the batch's own silent requests
    assert "auto mode: 5 steps, 3 hits, 3 misses, 4 plain" in stats.stdout, stats.stdout
    assert "cell-" not in stats.stdout


def test_a_subprocess_cell_runs_every_time_in_batch(project: Path, tmp_path: Path) -> None:
    (project / "pyproject.toml").write_text("[tool.cellcache]\nauto = true\n")  # on from the project's config, no flag
    nb = new_notebook(cells=[new_code_cell(f"import subprocess\nsubprocess.run([{sys.executable!r}, '-c', 'open(\"ran.txt\", \"a\").write(\"x\")'], check=True)")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, project / "proc.ipynb")
    for expected in ("x", "xx"):
        result = batch.run_notebook(project / "proc.ipynb", RunOptions())
        assert result.cells[0].status == "plain" and result.cells[0].reason.startswith("side effect: starts a subprocess")
        assert (project / "ran.txt").read_text() == expected


def test_the_papermill_engine_takes_the_same_switch(project: Path, tmp_path: Path) -> None:
    pytest.importorskip("papermill")
    import papermill

    nb = new_notebook(cells=[new_code_cell("import time\ntime.sleep(0.2)\nvalue = 7\nvalue")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, project / "pm.ipynb")
    for _ in range(2):
        papermill.execute_notebook(str(project / "pm.ipynb"), str(tmp_path / "pm-out.ipynb"), engine_name="cellcache", auto=True, progress_bar=False)
    from cellcache.store.local import LocalStore
    from cellcache import config

    rows = LocalStore(config.resolve(cwd=project).dir).step_rows()
    out = nbformat.read(tmp_path / "pm-out.ipynb", as_version=4)
    assert [(r.name, r.hits, r.misses, r.auto) for r in rows] == [(out.cells[0].id, 1, 1, True)]  # named by its cell id
    assert [o["data"]["text/plain"] for o in out.cells[0].outputs if o["output_type"] == "execute_result"] == ["7"]
    assert "# cellcache" not in out.cells[0].source


@pytest.mark.kernel
def test_a_notebook_that_turns_auto_on_itself_names_its_cells_by_id_in_batch(tmp_path: Path) -> None:
    # Interactively the front end sends each cell's id, which names an auto-mode stage. nbclient sends none: without
    # the batch noticing the notebook's own `%cellcache auto`, the same cell would be `cell-<hash>` in batch, and a
    # run from JupyterLab and one from `cellcache run` would keep two histories of one step.
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'demo'\n")
    cells = [
        new_code_cell("import time\nbefore = 1"),  # before the switch: a plain cell, never a step
        new_code_cell("%load_ext cellcache\n%cellcache auto"),
        new_code_cell("time.sleep(0.2)\nslow = before + 1"),
        new_code_cell("%cellcache auto off"),
        new_code_cell("time.sleep(0.2)\nafter = slow + 1"),  # auto mode is off again: plain
    ]
    for n, (cell, name) in enumerate(zip(cells, ["setup", "switch", "slow", "switch-off", "after"])):
        cell.id = name
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path / "self_switched.ipynb"
    nbformat.write(nb, path)

    [cold] = batch.run_notebooks([path], RunOptions())
    assert cold.ok, cold.error
    [warm] = batch.run_notebooks([path], RunOptions())
    assert warm.ok, warm.error
    steps = {c.index: (c.step, c.status) for c in warm.cells}
    assert steps[2] == ("slow", "hit"), steps
    assert steps[0][0] is None and steps[4][0] is None, steps  # outside the switched span: no step
