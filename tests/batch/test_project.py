"""One store per project, and steps that belong to their notebook: real kernels, the real command."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from cellcache import batch
from cellcache.cli.main import main
from cellcache.store.local import LocalStore

from .helpers import REPO, cellcache, write_nb


@pytest.mark.kernel
def test_the_readme_main_job_then_stats_from_the_project_root_shows_its_steps(tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / "notebooks").mkdir(parents=True)
    (project / "pyproject.toml").write_text("[project]\nname = 'demo'\n")
    shutil.copy(REPO / "notebooks" / "quickstart.ipynb", project / "notebooks" / "quickstart.ipynb")
    env_free = {k: v for k, v in os.environ.items() if k != "CELLCACHE_DIR"}

    # The README's job, with a shorter fit so the test stays quick; from the project root, as the README runs it.
    done = cellcache("run", "notebooks/quickstart.ipynb", "-p", "epochs", "20", cwd=project, env=env_free)
    assert done.returncode == 0, done.stdout + done.stderr
    store = project / ".cellcache"
    assert f"store {store}" in " ".join(done.stdout.split()), "the summary names the store"
    assert (store / ".gitignore").read_text().strip().endswith("*"), "git add -A never stages the store"

    for where in (project, project / "notebooks"):  # the store commands find the same store from anywhere in the project
        stats = cellcache("stats", "--json", cwd=where, env=env_free)
        assert stats.returncode == 0, stats.stderr
        report = json.loads(stats.stdout)
        assert report["store"] == str(store)
        assert {(s["notebook"], s["name"]) for s in report["steps"]} == {
            ("notebooks/quickstart.ipynb", step) for step in ("generate", "clean", "features", "fit", "evaluate")
        }
    table = cellcache("stats", cwd=project, env=env_free)  # grouping the text table by notebook is report.py's
    assert "fit" in table.stdout and "at .cellcache/" in table.stdout  # the store, as typed from the project root


@pytest.mark.kernel
def test_two_notebooks_with_a_same_named_step_keep_their_own_history(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".git").mkdir()
    monkeypatch.delenv("CELLCACHE_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    one = write_nb(tmp_path / "a" / "one.ipynb", "%%cached load\ndata = list(range(10))", "%%cached same\nv = 42")
    two = write_nb(tmp_path / "b" / "two.ipynb", "%%cached load\ndata = list(range(20))", "%%cached same\nv = 42")

    first, second = batch.run_notebooks([one, two])
    assert [(c.step, c.status) for c in first.cells] == [("load", "miss"), ("same", "miss")]
    # The second notebook's `load` is its own step: a first run, not "code changed" against the other one's.
    assert second.cells[0].status == "miss" and second.cells[0].reason == "first run of this step"
    # Identical cells still share their entry: the key does not change, only the bookkeeping.
    assert (second.cells[1].step, second.cells[1].status) == ("same", "hit")

    store = LocalStore(tmp_path / ".cellcache")
    assert sorted((r.notebook, r.name) for r in store.step_rows()) == [
        ("a/one.ipynb", "load"), ("a/one.ipynb", "same"), ("b/two.ipynb", "load"), ("b/two.ipynb", "same")
    ]
    cli = CliRunner()
    ambiguous = cli.invoke(main, ["invalidate", "load"])
    assert ambiguous.exit_code == 2 and "a/one.ipynb:load" in ambiguous.output and "b/two.ipynb:load" in ambiguous.output
    unknown = cli.invoke(main, ["invalidate", "nope"])
    assert unknown.exit_code == 2 and "no step 'nope'" in unknown.output and "a/one.ipynb:load" in unknown.output
    dropped = cli.invoke(main, ["invalidate", "a/one.ipynb:load"])
    assert dropped.exit_code == 0 and "1 entry dropped" in dropped.output, dropped.output
    also = cli.invoke(main, ["invalidate", "load", "--notebook", "b/two.ipynb"])
    assert also.exit_code == 0 and "1 entry dropped" in also.output, also.output
    assert sorted(r.step for r in store.entries()) == ["same"]

    listed = json.loads(cli.invoke(main, ["ls", "--json"]).output)
    assert {e["step"] for e in listed["entries"]} == {"same"}
    grouped = cli.invoke(main, ["ls"]).output
    assert "a/one.ipynb" in grouped or "b/two.ipynb" in grouped
    key = listed["entries"][0]["key"]
    shown = cli.invoke(main, ["show", key[:10]])
    assert shown.exit_code == 0, shown.output
    assert f"key:      {key}" in shown.output and "step:     same" in shown.output and "outputs:  v" in shown.output
    as_json = json.loads(cli.invoke(main, ["show", key, "--json"]).output)
    assert as_json["step"] == "same" and as_json["notebook"] in ("a/one.ipynb", "b/two.ipynb")
