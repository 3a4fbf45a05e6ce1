"""Outputs that can't be stored: the rest of the entry is, and a placeholder is rebuilt only when a cell uses it."""
from __future__ import annotations

import warnings

import pytest

import cellcache
from cellcache.errors import CacheWarning
from tests.conftest import run
from tests.cell.helpers import kernel

MAKES_A_LOCK = "%%cached makes\nimport threading\nruns.append(1)\nlock = threading.Lock()\nx = 42"


def again(shell, cell: str) -> None:
    """Run ``cell`` once more after dropping what it bound: a hit must bring it back."""
    for name in ("lock", "x", "fh", "text", "gen"):
        shell.user_ns.pop(name, None)
    run(shell, cell)


def test_one_unpicklable_output_does_not_cost_the_others_their_entry(counted):
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)  # a placeholder is no storage trouble
        run(counted, MAKES_A_LOCK)
        again(counted, MAKES_A_LOCK)
    last = cellcache.last_run()
    assert last.hit and counted.user_ns["runs"].n == 1 and counted.user_ns["x"] == 42
    assert "lock" not in counted.user_ns and "`lock`" in last.reason


@pytest.mark.parametrize("user", ["held = lock.locked()", "%%cached uses\nheld = lock.locked()"], ids=["plain", "cached"])
def test_a_cell_that_uses_a_placeholder_runs_its_step_again_first(counted, capsys, user):
    run(counted, MAKES_A_LOCK.replace("x = 42", "x = 42\nprint('made the lock')"))
    again(counted, MAKES_A_LOCK.replace("x = 42", "x = 42\nprint('made the lock')"))
    capsys.readouterr()
    with pytest.warns(CacheWarning, match=r"running step 'makes' again to rebuild `lock`"):
        run(counted, user)
    assert counted.user_ns["held"] is False and counted.user_ns["runs"].n == 2
    assert "made the lock" not in capsys.readouterr().out  # the cell shows what a run of it shows, not the step's output
    run(counted, "other = lock.locked()")
    assert counted.user_ns["runs"].n == 2  # rebuilt once


def test_nobody_pays_for_a_placeholder_nobody_uses(counted):
    run(counted, MAKES_A_LOCK)
    again(counted, MAKES_A_LOCK)
    run(counted, "y = x + 1")
    assert counted.user_ns["runs"].n == 1 and counted.user_ns["y"] == 43


def test_explain_names_the_placeholders(counted, capsys):
    cell = MAKES_A_LOCK.replace("%%cached makes", "%%cached makes --explain")
    run(counted, cell)
    again(counted, cell)
    assert "`lock` could not be stored" in capsys.readouterr().out


def test_a_closed_file_and_an_exhausted_generator_come_back_closed(counted, workdir):
    (workdir / "notes.txt").write_text("hello")
    cell = "%%cached reads\nwith open('notes.txt') as fh:\n    text = fh.read()\ngen = (c for c in text)\nletters = list(gen)"
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)
        run(counted, cell)
        again(counted, cell)
    ns = counted.user_ns
    assert cellcache.last_run().hit and ns["fh"].closed and ns["fh"].name == "notes.txt" and ns["fh"].mode == "r"
    assert list(ns["gen"]) == [] and ns["text"] == "hello"
    with pytest.raises(ValueError):
        ns["fh"].read()


def test_a_placeholder_is_rebuilt_in_a_new_kernel(workdir, store_dir):
    cell = "%%cached makes\nimport threading\nlock = threading.Lock()\nx = 42"
    kernel(workdir, store_dir, cell)
    second = kernel(workdir, store_dir, cell, "out = [x, lock.locked()]")
    assert second["hit"] and second["out"] == [42, False]


def test_a_rebuilt_step_draws_what_its_run_drew_and_leaves_the_generator_where_the_hit_did(counted):
    # sm_kernel_density: a fit that can't be stored, made from draws of the seeded generator. Rebuilt from
    # where the hit left the generator, the step drew anew: another sample, and every later draw shifted.
    step = "%%cached draws\nruns.append(1)\nsample = np.random.rand(3).tolist()\nhandle = (v for v in sample)"
    run(counted, "import numpy as np\nnp.random.seed(0)")
    run(counted, step)
    made = counted.user_ns["sample"]
    run(counted, "next_draw = float(np.random.rand())")
    expected_next = counted.user_ns["next_draw"]
    run(counted, "np.random.seed(0)")
    run(counted, step)
    assert cellcache.last_run().hit and "handle" not in counted.user_ns
    with pytest.warns(CacheWarning, match="rebuild `handle`"):
        run(counted, "used = list(handle)\nnext_draw = float(np.random.rand())")
    assert counted.user_ns["runs"].n == 2
    assert counted.user_ns["used"] == counted.user_ns["sample"] == made
    assert counted.user_ns["next_draw"] == expected_next
