"""The `cellcache` command line: click's CliRunner for arguments and output, and a few
real runs of the installed entry point for exit codes. Kernels are real."""
from __future__ import annotations

from cellcache.store.base import RunRecord, StepRef

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from click.testing import CliRunner
from nbformat.v4 import new_code_cell, new_notebook

from cellcache import api
from cellcache.cli.main import main
from cellcache.store.local import LocalStore
from cellcache.store.manifest import Manifest


def write_nb(path: Path, *sources: str) -> Path:
    nb = new_notebook(cells=[new_code_cell(s) for s in sources])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def cellcache(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The installed `cellcache` script, as a user runs it."""
    script = Path(sys.executable).with_name("cellcache")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "cellcache.cli.main"]
    return subprocess.run([*command, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


@pytest.fixture
def store(store_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CELLCACHE_DIR", str(store_dir))
    return store_dir


@pytest.fixture
def cli() -> CliRunner:
    return CliRunner()


def put(store: LocalStore, step: str, value: object, created: float) -> Manifest:
    key = step.encode().hex().ljust(32, "0")
    blob = store.put_blob({"ns": {step: value}, "record": {}})
    manifest = Manifest(
        key=key, step=step, created=created, seconds=2.0, blob=blob.digest, blob_size=blob.size, blob_loader=blob.loader, outputs=(step,)
    )
    store.commit(manifest)
    store.record_run(RunRecord(step, key, "miss", 2.0, 0.0, "first run of this step"))
    return manifest


def listed_steps(cli: CliRunner, *args: str) -> list[str]:
    result = cli.invoke(main, ["ls", *args])
    assert result.exit_code == 0, result.output
    return re.findall(r"│ [0-9a-f]{32} │ (\w+)", result.output)


# arguments and usage errors: no kernel -------------------------------------------------


def test_every_command_has_help_and_its_whole_description_in_the_overview(cli: CliRunner) -> None:
    overview = cli.invoke(main, ["--help"], terminal_width=80)
    assert overview.exit_code == 0
    assert set(main.commands) >= {"run", "status", "stats", "ls", "show", "invalidate", "clear", "gc", "verify"}
    for name, command in main.commands.items():
        first = " ".join((command.help or "").split("\n\n")[0].split())
        assert len(first) > 20 and f"{name}  " in overview.output
        assert first in " ".join(overview.output.split()), f"{name}'s description is cut in `cellcache --help`"
    for name in main.commands:
        result = cli.invoke(main, [name, "--help"])
        assert result.exit_code == 0, name
        assert result.output.startswith(f"Usage: main {name}") or result.output.startswith(f"Usage: cellcache {name}")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "missing.ipynb"], "'missing.ipynb' does not exist"),
        (["invalidate", "--notebook", "x.ipynb", "nope"], "nope"),
        (["status", "missing.ipynb"], "'missing.ipynb' does not exist"),
        (["run"], "Missing argument 'NB.ipynb|DIR...'"),
        (["run", "-p", "lr", "0.1", "--inplace", "-p", "lr", "0.2", "ok.ipynb"], "--inplace with a sweep"),
        (["run", "-p", "not-a-name", "1", "ok.ipynb"], "must be a Python identifier"),
        (["run", "-y", "[1, 2]", "ok.ipynb"], "-y YAML must be a YAML mapping"),
        (["run", "--executor", "tcp://host:1", "ok.ipynb"], "give the Dask scheduler as dask://HOST:PORT"),
        (["run", "emptydir"], "holds no notebook"),
        (["run", "malformed.ipynb"], "malformed.ipynb is not a valid notebook: cells/0"),
        (["clear", "--json"], "clear --json cannot ask for confirmation: add --yes"),
        (["show", "ab"], "too short"),
        (["run", "--bogus", "ok.ipynb"], "No such option '--bogus'"),
        (["run", "--jobs", "0", "ok.ipynb"], "0 is not in the range x>=1"),
        (["run", "--timeout", "-1", "ok.ipynb"], "--timeout"),
        (["run", "--inplace", "--output-dir", "out", "ok.ipynb"], "--inplace and --output-dir exclude each other"),
        (["run", "--kernel", "no-such-kernel", "ok.ipynb"], "no kernel named 'no-such-kernel'"),
        (["run", "junk.ipynb"], "junk.ipynb is not a readable notebook"),
        (["gc"], "give --max-size, --older-than or both"),
        (["gc", "--max-size", "5XB"], "invalid size '5XB'"),
        (["gc", "--older-than", "soon"], "invalid duration 'soon'"),
        # issue 25: a bare number once meant bytes or seconds, and emptied a store
        (["gc", "--max-size", "5"], "size '5' has no unit: add one of B, KB, MB, GB or TB"),
        (["gc", "--older-than", "5"], "duration '5' has no unit: add one of s, m, h, d or w"),
        (["remote", "gc", "--max-size", "5"], "size '5' has no unit"),
        (["remote", "gc", "--older-than", "30"], "duration '30' has no unit"),
        (["invalidate"], "Missing argument '[NB:]STEP'"),
    ],
)
def test_usage_errors_exit_2_with_a_message_and_no_traceback(
    cli: CliRunner, tmp_path: Path, store: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    write_nb(tmp_path / "ok.ipynb", "x = 1")
    (tmp_path / "junk.ipynb").write_text("{ not a notebook")
    (tmp_path / "emptydir").mkdir()
    # issue 13: a cell without cell_type, or with a number as its source, is a message, not a traceback
    (tmp_path / "malformed.ipynb").write_text(
        json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [{"id": "a", "metadata": {}, "source": 3}]})
    )
    result = cli.invoke(main, args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_a_bad_setting_in_pyproject_is_a_usage_error(cli: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.cellcache]\nsecret = "x"\n')
    monkeypatch.chdir(tmp_path)
    result = cli.invoke(main, ["stats"])
    assert result.exit_code == 2
    assert "unknown [tool.cellcache] setting(s) ['secret']" in result.output
    assert "Traceback" not in result.output


def test_a_missing_notebook_from_the_real_entry_point(tmp_path: Path, store: Path) -> None:
    done = cellcache("run", "nowhere.ipynb", cwd=tmp_path)
    assert done.returncode == 2
    assert "Error: Invalid value for 'NB.ipynb|DIR...': Path 'nowhere.ipynb' does not exist." in done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert done.stdout == ""


# the store commands: no kernel ----------------------------------------------------------


@pytest.fixture
def filled(store: Path) -> dict[str, Manifest]:
    """Three entries, least recently used first: bravo, charlie, alpha (alpha was just hit)."""
    local = LocalStore(store)
    now = time.time()
    entries = {
        "alpha": put(local, "alpha", list(range(100)), now - 30),
        "bravo": put(local, "bravo", list(range(200)), now - 20),
        "charlie": put(local, "charlie", list(range(300)), now - 10),
    }
    local.record_run(RunRecord(StepRef("", "alpha"), entries["alpha"].key, "hit", 0.01, 1.99, "hit"))
    local.index.close()  # its run records are written behind: in, before another store reads them
    return entries


def test_stats_prints_what_the_magic_prints(cli: CliRunner, filled: dict[str, Manifest], store: Path) -> None:
    def masked(text: str) -> str:
        # The ages move between the two calls, and the column widths with them.
        text = re.sub(r"[\d.]+ (ms|s|min|h) ago|just now", "AGO", text)
        return re.sub(r" +", " ", re.sub(r"─+", "─", text))

    result = cli.invoke(main, ["stats"])
    assert result.exit_code == 0
    expected = api.stats_text(LocalStore(store))
    assert masked(result.output) == masked(expected) + "\n"
    assert "alpha" in result.output and "charlie" in result.output


def test_ls_lists_every_entry_or_one_step(cli: CliRunner, filled: dict[str, Manifest]) -> None:
    result = cli.invoke(main, ["ls"])
    assert "3 entries in" in result.output
    for step, manifest in filled.items():
        assert f"│ {manifest.key} │ {step}" in result.output
    assert listed_steps(cli) == ["alpha", "bravo", "charlie"]
    assert listed_steps(cli, "bravo") == ["bravo"]
    nothing = cli.invoke(main, ["ls", "zulu"])
    assert nothing.exit_code == 0 and "no entries for step 'zulu'" in nothing.output


def test_invalidate_drops_one_step(cli: CliRunner, filled: dict[str, Manifest]) -> None:
    result = cli.invoke(main, ["invalidate", "bravo"])
    assert result.exit_code == 0
    assert "invalidated step 'bravo' (1 entry dropped)" in result.output
    assert listed_steps(cli) == ["alpha", "charlie"]
    assert "(0 entries dropped)" in cli.invoke(main, ["invalidate", "bravo"]).output


def test_clear_asks_first_and_then_drops_everything(cli: CliRunner, filled: dict[str, Manifest], store: Path) -> None:
    declined = cli.invoke(main, ["clear"], input="n\n")
    assert declined.exit_code == 1 and "Drop 3 entries from the store at" in declined.output
    assert listed_steps(cli) == ["alpha", "bravo", "charlie"], "nothing dropped without a yes"
    result = cli.invoke(main, ["clear"], input="y\n")
    assert result.exit_code == 0 and "(3 entries dropped)" in result.output
    assert json.loads(cli.invoke(main, ["clear", "--yes", "--json"]).output) == {"store": str(store.resolve()), "dropped": 0}
    assert listed_steps(cli) == []
    assert not [p for p in store.rglob("*") if p.is_file() and "blobs" in p.parts]


def test_gc_drops_the_least_recently_used_first(cli: CliRunner, filled: dict[str, Manifest], store: Path) -> None:
    sizes = {r.step: r.size for r in LocalStore(store).index.entries()}
    kept = cli.invoke(main, ["gc", "--max-size", "5GB", "--older-than", "30d"])
    assert kept.exit_code == 0 and "dropped 0 entries" in kept.output
    # Room for two entries: bravo, the least recently used, goes; alpha was hit last, so it stays.
    result = cli.invoke(main, ["gc", "--max-size", f"{sizes['alpha'] + sizes['charlie']}B"])
    assert result.exit_code == 0, result.output
    assert "gc dropped 1 entry" in result.output
    assert listed_steps(cli) == ["alpha", "charlie"]
    assert "dropped 2 entries" in cli.invoke(main, ["gc", "--older-than", "0s", "--yes"]).output
    assert listed_steps(cli) == []


def test_a_gc_that_would_drop_most_of_the_store_asks_first(cli: CliRunner, filled: dict[str, Manifest], store: Path) -> None:
    # issue 25: two of three entries is more than half: ask, and a "no" (or no terminal) keeps them all.
    sizes = {r.step: r.size for r in LocalStore(store).index.entries()}
    declined = cli.invoke(main, ["gc", "--max-size", f"{sizes['alpha']}B"], input="n\n")
    assert declined.exit_code == 1, declined.output
    assert "gc would drop 2 of 3 entries from the store at" in declined.output
    assert listed_steps(cli) == ["alpha", "bravo", "charlie"]
    # One of three is not: no question.
    quiet = cli.invoke(main, ["gc", "--max-size", f"{sizes['alpha'] + sizes['charlie']}B"])
    assert quiet.exit_code == 0 and "Go on?" not in quiet.output and "gc dropped 1 entry" in quiet.output
    agreed = cli.invoke(main, ["gc", "--max-size", "1B"], input="y\n")
    assert agreed.exit_code == 0 and "gc would drop 2 of 2 entries" in agreed.output and "gc dropped 2 entries" in agreed.output
    assert listed_steps(cli) == []


def test_a_bare_number_from_the_real_entry_point_drops_nothing(tmp_path: Path, filled: dict[str, Manifest], store: Path) -> None:
    done = cellcache("gc", "--max-size", "5", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "size '5' has no unit" in done.stderr and "Traceback" not in done.stderr
    # And with a unit but no terminal to answer, a gc that would empty the store stops too.
    emptying = cellcache("gc", "--max-size", "5B", cwd=tmp_path)
    assert emptying.returncode == 1 and "gc would drop 3 of 3 entries" in emptying.stderr
    assert sorted(r.step for r in LocalStore(store).index.entries()) == ["alpha", "bravo", "charlie"]


def test_verify_reports_broken_entries_and_repair_drops_them(cli: CliRunner, filled: dict[str, Manifest], store: Path) -> None:
    local = LocalStore(store)
    sound = cli.invoke(main, ["verify"])
    assert sound.exit_code == 0 and "checked 3 entries" in sound.output and "all sound" in sound.output

    blob = local.blob_path(filled["alpha"].blob)
    blob.write_bytes(b"x" * blob.stat().st_size)  # same size, other content: only a full check sees it
    manifest = local.manifest_path(filled["bravo"].key)
    manifest.write_text(manifest.read_text().replace('"seconds":2.0', '"seconds":0.5'))  # tampered

    broken = cli.invoke(main, ["verify"])
    assert broken.exit_code == 1
    assert f"broken: {filled['alpha'].key}: blob {filled['alpha'].blob} content does not match its digest" in broken.output
    assert f"broken: {filled['bravo'].key}: manifest signature does not match" in broken.output
    assert "2 broken; run with --repair to drop them" in broken.output
    assert listed_steps(cli) == ["alpha", "bravo", "charlie"], "without --repair nothing is dropped"

    repaired = cli.invoke(main, ["verify", "--repair"])
    assert repaired.exit_code == 0 and "2 broken, dropped" in repaired.output
    assert listed_steps(cli) == ["charlie"]
    again = cli.invoke(main, ["verify"])
    assert again.exit_code == 0 and "checked 1 entry" in again.output and "all sound" in again.output


# run and status with real kernels -------------------------------------------------------


@pytest.mark.kernel
def test_run_prints_a_table_then_status_reports_what_would_run(cli: CliRunner, tmp_path: Path, store: Path) -> None:
    cells = ["n = 5", "%%cached square\nsq = n * n", "%%cached plus\nplus = sq + 1", "print(plus)"]
    nb = write_nb(tmp_path / "nb.ipynb", *cells)

    done = cellcache("run", str(nb), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    table = done.stdout
    assert str(nb) in table
    assert re.search(r"│ +1 │ square +│ miss", table) and re.search(r"│ +2 │ plus +│ miss", table)
    assert re.search(r"│ +3 │ - +│ plain", table)
    assert re.search(r"│ +1 │ square +│ miss +│ .* │ +- +│ first run of this step", table)
    assert " ".join(table.split()).endswith(f"0 hits, 2 misses, 0 errors, 0 not run, 0 ms saved in 1 notebook; store {store.resolve()}")

    write_nb(nb, "n = 6", *cells[1:])
    status = cli.invoke(main, ["status", str(nb)])
    assert status.exit_code == 0, status.output
    assert re.search(r"│ +1 │ square +│ would run +│ .*│ input `n` changed", status.output)
    assert re.search(r"│ +2 │ plus +│ would run +│ .*│ reads sq from square", status.output)
    assert re.search(r"│ +3 │ - +│ not run +│ .*│ reads plus from plus", status.output)
    assert "2 would run, 0 hits, 0 errors, 1 not run in 1 notebook" in " ".join(status.output.split())


@pytest.mark.kernel
def test_json_output_and_a_failing_cell_from_the_real_entry_point(tmp_path: Path, store: Path) -> None:
    good = write_nb(tmp_path / "good.ipynb", "x = 2", "%%cached twice\ny = x * 2")
    bad = write_nb(tmp_path / "bad.ipynb", "x = 1", "%%cached boom\nraise ValueError('bad input')", "z = 3")

    done = cellcache("run", "--json", "--jobs", "2", str(good), str(bad), cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)  # stdout holds the JSON document and nothing else
    assert [n["path"] for n in report["notebooks"]] == [str(good), str(bad)]
    good_cells, bad_cells = (n["cells"] for n in report["notebooks"])
    assert [(c["index"], c["step"], c["status"]) for c in good_cells] == [(0, None, "plain"), (1, "twice", "miss")]
    assert [(c["index"], c["step"], c["status"]) for c in bad_cells] == [(0, None, "plain"), (1, "boom", "error"), (2, None, "not run")]
    assert bad_cells[2]["reason"] == "after cell 1 (step boom) failed"
    for cell in good_cells + bad_cells:
        assert set(cell) == {"index", "step", "status", "seconds", "saved_seconds", "reason", "error", "warnings"}
        assert cell["seconds"] >= 0 and cell["saved_seconds"] == 0
    assert bad_cells[1]["error"] == "ValueError: bad input"
    assert report["notebooks"][0]["error"] is None
    assert report["summary"] == {"hit": 0, "miss": 1, "plain": 2, "error": 1, "not_run": 1, "would_run": 0, "saved_seconds": 0}
    assert report["store"] == str(store.resolve())
    assert f"cellcache: {bad}: cell 1 (step boom) failed: ValueError: bad input" in done.stderr
    assert "Traceback" not in done.stderr

    again = cellcache("run", "--json", str(good), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    [cells] = [n["cells"] for n in json.loads(again.stdout)["notebooks"]]
    assert cells[1]["status"] == "hit"


def test_every_store_command_takes_dir_and_names_the_store(cli: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    other = tmp_path / "elsewhere"
    put(LocalStore(other), "alpha", 1, time.time())
    assert json.loads(cli.invoke(main, ["stats", "--json", "--dir", str(other)]).output)["store"] == str(other.resolve())
    listed = json.loads(cli.invoke(main, ["ls", "--json", "--dir", str(other)]).output)
    assert [e["step"] for e in listed["entries"]] == ["alpha"]
    for args in (["gc", "--older-than", "30d"], ["verify"], ["clear", "--yes"]):
        done = cli.invoke(main, [*args, "--dir", str(other)])
        assert done.exit_code == 0 and str(other.resolve()) in done.output, (args, done.output)
    assert not (tmp_path / ".cellcache").exists(), "the default store was never touched"


def test_python_dash_m_cellcache_is_the_command_line(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "cellcache", "--help"], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 0 and done.stdout.startswith("Usage: cellcache")


def test_a_folder_stands_for_its_notebooks_in_name_order(tmp_path: Path) -> None:
    from cellcache import batch

    for name in ("b.ipynb", "a.ipynb", ".hidden.ipynb", "notes.txt"):
        (tmp_path / name).write_text("{}")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.ipynb").write_text("{}")
    assert batch.notebooks_in([tmp_path, tmp_path / "sub" / "c.ipynb"]) == [tmp_path / "a.ipynb", tmp_path / "b.ipynb", tmp_path / "sub" / "c.ipynb"]


@pytest.mark.kernel
def test_status_graph_draws_the_pipeline_to_a_file(cli: CliRunner, tmp_path: Path, store: Path) -> None:
    # issue 25: the same picture as the panel's graph view, for CI artifacts and the docs.
    import shutil

    cells = ["n = 5", "%%cached square\nsq = n * n", "%%cached plus\nplus = sq + 1", "%%cached other\nk = n + 1"]
    nb = write_nb(tmp_path / "nb.ipynb", *cells)
    assert cli.invoke(main, ["run", str(nb)]).exit_code == 0
    write_nb(nb, "n = 6", *cells[1:3], "%%cached other\nk = 7")  # other no longer reads n
    text = tmp_path / "graph.txt"
    done = cli.invoke(main, ["status", str(nb), "--graph", str(text)])
    assert done.exit_code == 0, done.output
    assert f"drew the pipeline of {nb} to {text} (text)" in done.stderr
    listed = text.read_text()
    assert "[1] square: would re-run; reads n from cell 0" in listed
    assert "[2] plus: would re-run; reads sq from square" in listed
    assert "[3] other: would re-run" in listed  # its code changed
    if shutil.which("dot"):
        svg = tmp_path / "graph.svg"
        assert cli.invoke(main, ["status", str(nb), "--graph", str(svg)]).exit_code == 0
        assert svg.read_text().startswith("<svg") and "square" in svg.read_text()


def test_verify_names_the_two_kinds_of_leftovers(cli: CliRunner, filled: dict[str, Manifest], store: Path) -> None:
    orphan = LocalStore(store).blob_path("ab" * 16)
    orphan.parent.mkdir(parents=True, exist_ok=True)
    orphan.write_bytes(b"a blob no manifest names, put by a writer that died")
    report = cli.invoke(main, ["verify"])
    assert report.exit_code == 0 and "0 temporary file(s) of dead writers, 1 orphan blob(s)" in report.output
    repaired = cli.invoke(main, ["verify", "--repair"])
    assert "1 orphan blob(s)" in repaired.output and not orphan.exists()
