"""`papermill in.ipynb out.ipynb --engine cellcache`: the engine entry point, with a real papermill and real kernels."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

PAPERMILL = [sys.executable, "-m", "papermill"]


def test_importing_the_engine_is_cheap_and_does_not_need_papermill_first() -> None:
    # papermill imports the entry point while importing itself: importing the engine module must not
    # import papermill (a cycle), and the engine must work when our module was imported first.
    code = (
        "import sys, cellcache.batch.papermill_engine as e\n"
        "assert 'papermill' not in sys.modules, 'the engine module imported papermill'\n"
        "import nbformat\n"
        "nb = nbformat.v4.new_notebook(metadata={'kernelspec': {'name': 'python3', 'display_name': 'P', 'language': 'python'}})\n"
        "print(e.CellcacheEngine.nb_kernel_name(nb))\n"
        "import papermill.engines as pe\n"
        "print(pe.papermill_engines.get_engine('cellcache').__name__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["python3", "CellcacheEngine"]


def _params_notebook(path: Path) -> Path:
    params = new_code_cell("alpha = 1")
    params.metadata["tags"] = ["parameters"]
    cells = [
        params,
        new_code_cell("%%cached stamp\nimport time\nstamp = time.time()"),
        new_code_cell("%%cached scaled\nscaled = alpha * 10"),
        new_code_cell("print(repr(stamp), scaled, __import__('cellcache').api.session().notebook)"),
    ]
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def _printed(path: Path) -> list[str]:
    nb = nbformat.read(path, as_version=4)
    return "".join(o.get("text", "") for o in nb.cells[-1].outputs).split()


@pytest.mark.kernel
def test_papermill_runs_with_the_extension_loaded_and_the_project_store(tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / "nbs").mkdir(parents=True)
    (project / "pyproject.toml").write_text("[project]\nname = 'p'\n")
    nb = _params_notebook(project / "nbs" / "a.ipynb")

    def papermill(out: str, alpha: int) -> list[str]:
        done = subprocess.run(
            [*PAPERMILL, str(nb), str(tmp_path / out), "--engine", "cellcache", "-p", "alpha", str(alpha), "--no-progress-bar"],
            cwd=tmp_path,  # not the project: the store is still the project's
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        return _printed(tmp_path / out)

    first = papermill("one.ipynb", 1)
    second = papermill("two.ipynb", 2)
    assert first[1] == "10" and second[1] == "20"
    # The steps belong to the source notebook, relative to the project root, not to the output copy.
    assert first[2] == second[2] == "nbs/a.ipynb"
    assert second[0] == first[0], "the untouched step was restored, not re-run"
    store = project / ".cellcache"
    assert store.is_dir(), "the engine used the project's store"
    from cellcache.store.local import LocalStore

    steps = {row.step for row in LocalStore(store).index.entries(None)}
    assert steps == {"stamp", "scaled"}
