"""Parameters and sweeps: cellcache.batch.sweep without a kernel, then a real 2×2 sweep through the command line."""
from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from click.testing import CliRunner
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from cellcache.batch import sweep
from cellcache.cli.main import main
from cellcache.errors import BatchError
from cellcache.store.local import LocalStore

from .helpers import write_nb


@pytest.mark.parametrize(
    ("text", "value"), [("True", True), ("False", False), ("None", None), ("3", 3), ("0.1", 0.1), ("1e-3", 0.001), ("adam", "adam")]
)
def test_p_values_are_read_as_papermill_reads_them(text: str, value: object) -> None:
    assert sweep.parse_value(text) == value and type(sweep.parse_value(text)) is type(value)


def test_one_value_per_name_is_one_job_and_later_sources_win(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text("lr: 0.5\nname: base\nlayers: [1, 2]\n")
    [combo] = sweep.combinations(params=[("lr", "0.1")], yaml_strings=["name: yaml"], files=[params])
    assert combo.as_dict() == {"lr": 0.1, "name": "yaml", "layers": [1, 2]}, "-p over -y over -f; a list in YAML is a value"
    assert combo.swept == () and combo.label() == ""
    assert sweep.combinations() == [sweep.Combination()]


def test_repeated_names_and_a_grid_sweep_the_product_in_the_order_given(tmp_path: Path) -> None:
    combos = sweep.combinations(params=[("lr", "0.01"), ("epochs", "100"), ("lr", "0.1"), ("epochs", "200"), ("seed", "7")])
    assert [c.as_dict() for c in combos] == [
        {"seed": 7, "lr": 0.01, "epochs": 100},
        {"seed": 7, "lr": 0.01, "epochs": 200},
        {"seed": 7, "lr": 0.1, "epochs": 100},
        {"seed": 7, "lr": 0.1, "epochs": 200},
    ]
    assert combos[3].label() == "lr=0.1,epochs=200"
    assert sweep.output_name(Path("nbs/train.ipynb"), combos[3]) == "train-lr=0.1-epochs=200.ipynb"
    grid = tmp_path / "grid.yaml"
    grid.write_text("opt: [adam, 'sgd/2']\nwidth: [8]\n")
    combos = sweep.combinations(grid=grid)
    assert [c.as_dict() for c in combos] == [{"width": 8, "opt": "adam"}, {"width": 8, "opt": "sgd/2"}]
    assert sweep.output_name(Path("t.ipynb"), combos[1]) == "t-opt=sgd_2.ipynb", "safe as a file name"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"yaml_strings": ["- a"]}, "must be a YAML mapping"),
        ({"yaml_strings": ["a: ["]}, "not valid YAML"),
        ({"params": [("1x", "2")]}, "must be a Python identifier"),
        ({"files": [Path("/nonexistent/p.yaml")]}, "cannot read the parameters file"),
    ],
)
def test_bad_parameters_are_clear_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(BatchError, match=message):
        sweep.combinations(**kwargs)


def test_the_injected_cell_follows_the_parameters_cell_and_replaces_an_old_one() -> None:
    tagged = new_code_cell("lr = 0.05")
    tagged.metadata["tags"] = ["parameters"]
    nb = new_notebook(cells=[new_markdown_cell("# t"), tagged, new_code_cell("print(lr)")])
    sweep.inject(nb, {"lr": 0.1, "name": "a'b", "inf": float("inf"), "opts": {"k": [1, None]}})
    injected = nb.cells[2]
    assert injected.metadata["tags"] == ["injected-parameters"]
    namespace: dict = {}
    exec(injected.source, namespace)  # the source is plain Python that gives the values back
    assert (namespace["lr"], namespace["name"], namespace["inf"], namespace["opts"]) == (0.1, "a'b", float("inf"), {"k": [1, None]})
    sweep.inject(nb, {"lr": 0.2})
    assert len(nb.cells) == 4 and nb.cells[2].source == "# Parameters\nlr = 0.2\n", "replaced, as papermill does"
    plain = new_notebook(cells=[new_code_cell("x = 1")])
    assert sweep.inject(plain, {"x": 2}).cells[0].source == "# Parameters\nx = 2\n", "no parameters cell: first"
    nbformat.validate(nb)


@pytest.mark.kernel
def test_a_2x2_sweep_runs_the_upstream_step_once_and_names_the_outputs(tmp_path: Path, store_dir: Path, monkeypatch) -> None:
    monkeypatch.setenv("CELLCACHE_DIR", str(store_dir))
    nb = write_nb(
        tmp_path / "train.ipynb",
        "lr = 0.05\nepochs = 1",
        "%%cached upstream\nimport time\ntime.sleep(0.2)\ndata = list(range(100))",
        "%%cached fit\nscore = sum(data) * lr * epochs",
        "print('score', score)",
        parameters=0,
    )
    out = tmp_path / "out"
    args = ["run", str(nb), "-p", "lr", "0.1", "-p", "lr", "0.2", "-p", "epochs", "1", "-p", "epochs", "2"]
    done = CliRunner().invoke(main, [*args, "--jobs", "2", "--output-dir", str(out), "--json"])
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout)
    assert [n["parameters"] for n in report["notebooks"]] == [
        {"lr": 0.1, "epochs": 1}, {"lr": 0.1, "epochs": 2}, {"lr": 0.2, "epochs": 1}, {"lr": 0.2, "epochs": 2}
    ]
    upstream = [c["status"] for n in report["notebooks"] for c in n["cells"] if c["step"] == "upstream"]
    assert sorted(upstream) == ["hit", "hit", "hit", "miss"], "the step that reads no swept parameter runs once"
    assert [c["status"] for n in report["notebooks"] for c in n["cells"] if c["step"] == "fit"] == ["miss"] * 4
    stats = {s.name: s for s in LocalStore(store_dir).step_rows()}
    assert (stats["upstream"].misses, stats["upstream"].hits) == (1, 3)

    names = sorted(p.name for p in out.iterdir())
    assert names == [f"train-lr={lr}-epochs={e}.ipynb" for lr in ("0.1", "0.2") for e in (1, 2)]
    written = nbformat.read(out / "train-lr=0.2-epochs=2.ipynb", as_version=4)
    assert written.cells[1].metadata["tags"] == ["injected-parameters"]
    assert "".join(o.get("text", "") for o in written.cells[-1].outputs) == f"score {sum(range(100)) * 0.2 * 2}\n"
    assert nbformat.read(nb, as_version=4).cells[0].source == "lr = 0.05\nepochs = 1", "the source is untouched"


@pytest.mark.kernel
def test_log_output_streams_and_kernel_cache_warnings_reach_the_terminal_and_the_json(tmp_path: Path, store_dir: Path, monkeypatch) -> None:
    monkeypatch.setenv("CELLCACHE_DIR", str(store_dir))
    # An input that can't be fingerprinted: the step runs uncached, with one CacheWarning from the kernel.
    nb = write_nb(tmp_path / "w.ipynb", "print('hello-from-the-kernel')\ngen = (i for i in range(3))", "%%cached uses\nfirst = next(gen)")
    result = CliRunner().invoke(main, ["run", str(nb), "--log-output", "--json"])
    assert result.exit_code == 0, result.output
    assert "cell 0] hello-from-the-kernel" in result.stderr, "streamed as it came, on stderr"
    [cells] = [n["cells"] for n in json.loads(result.stdout)["notebooks"]]
    assert cells[0]["warnings"] == []
    [warning] = cells[1]["warnings"]
    assert "step 'uses' ran uncached: input `gen` can't be fingerprinted" in warning
    table = CliRunner().invoke(main, ["run", str(nb)])
    assert "warning: cell 1 (uses): cellcache: step 'uses' ran uncached" in " ".join(table.stdout.split())


def test_a_table_title_names_every_parameter_and_a_label_the_swept_ones() -> None:
    combos = sweep.combinations(params=[("learning_rate", "0.01"), ("learning_rate", "0.1"), ("epochs", "100")])
    assert [c.title() for c in combos] == ["[epochs=100, learning_rate=0.01]", "[epochs=100, learning_rate=0.1]"]
    assert combos[0].label() == "learning_rate=0.01"
    assert sweep.Combination().title() == ""


def test_a_parameter_the_parameters_cell_does_not_define_is_found() -> None:
    nb = new_notebook(cells=[new_code_cell("lr = 0.1\nepochs, batch = 10, 32"), new_code_cell("x = lr")])
    nb.cells[0].metadata["tags"] = ["parameters"]
    assert sweep.unknown_parameters(nb, ["lr", "epochs", "batch"]) == []
    assert sweep.unknown_parameters(nb, ["lr", "learnig_rate", "x"]) == ["learnig_rate", "x"], "x is set later, not as a parameter"
    untagged = new_notebook(cells=[new_code_cell("lr = 0.1")])
    assert sweep.unknown_parameters(untagged, ["anything"]) == [], "no parameters cell: nothing to compare with"


@pytest.mark.kernel
def test_a_sweep_titles_its_tables_warns_of_unknown_names_and_says_outputs_are_not_kept(
    tmp_path: Path, store_dir: Path, monkeypatch
) -> None:
    monkeypatch.setenv("CELLCACHE_DIR", str(store_dir))
    nb = write_nb(tmp_path / "train.ipynb", "lr = 0.05", "%%cached fit\nscore = lr * 2", parameters=0)
    done = CliRunner().invoke(main, ["run", str(nb), "-p", "lr", "0.1", "-p", "lr", "0.2", "-p", "epocs", "3"])
    assert done.exit_code == 0, done.output
    out = done.stdout
    assert f"{nb} [epocs=3, lr=0.1]" in out and f"{nb} [epocs=3, lr=0.2]" in out
    err = done.stderr
    assert f"cellcache: warning: {nb}: parameter epocs not defined in the cell tagged 'parameters'" in err
    assert err.count("epocs not defined") == 1, "once per notebook, not once per job"
    assert "the executed notebooks are not kept: add --output-dir DIR (or --inplace)" in err
    kept = CliRunner().invoke(main, ["run", str(nb), "-p", "lr", "0.1", "--output-dir", str(tmp_path / "out")])
    assert kept.exit_code == 0, kept.output
    assert "not kept" not in kept.stderr and "warning" not in kept.stderr
