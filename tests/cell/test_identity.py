"""A hit restores a mutated input in place (cellcache.cell.identity): what earlier cells share with it stays shared."""
from __future__ import annotations

import cellcache
from cellcache.cell.identity import rebind
from tests.conftest import run
from tests.cell.helpers import Counter

SETUP = """
class Est:
    def fit(self, x):
        self.coef_ = sum(x)
        return self

class Pipe:
    def __init__(self, *steps):
        self.steps = [(type(s).__name__.lower(), s) for s in steps]
    def fit(self, x):
        for _, step in self.steps:
            step.fit(x)
        return self

scaler, lr = Est(), Est()
pipe = Pipe(scaler, lr)
data = [1, 2, 3]
"""


def test_a_fitted_pipeline_hit_leaves_the_estimator_bound_before_fitted_and_inside_it(shell):
    shell.user_ns["runs"] = Counter()
    cell = "%%cached fit\nruns.append(1)\npipe.fit(data)"
    run(shell, SETUP)
    run(shell, cell)
    run(shell, SETUP)  # new unfitted objects, the same values: the same key
    run(shell, cell)
    ns = shell.user_ns
    assert cellcache.last_run().hit and ns["runs"].n == 1
    assert ns["pipe"].steps[-1][1] is ns["lr"] and ns["pipe"].steps[0][1] is ns["scaler"]
    assert ns["lr"].coef_ == 6 and ns["scaler"].coef_ == 6


def test_containers_and_small_arrays_are_updated_in_place(shell):
    cell = "%%cached mutate\nd['k'] = 1\nitems.append(4)\na += 1"
    setup = "import numpy as np\nd = {}\nitems = [1]\na = np.zeros(3)\nholder = (d, items, a)"
    run(shell, setup)
    run(shell, cell)
    run(shell, setup)
    run(shell, cell)
    ns = shell.user_ns
    assert cellcache.last_run().hit
    assert ns["holder"][0] is ns["d"] and ns["d"] == {"k": 1}
    assert ns["holder"][1] is ns["items"] and ns["items"] == [1, 4]
    assert ns["holder"][2] is ns["a"] and list(ns["a"]) == [1.0, 1.0, 1.0]


def test_an_unmatchable_graph_takes_the_restored_value_and_leaves_the_live_one_untouched():
    class Slotted:
        __slots__ = ("v",)

    live = {"x": [1, 2], "s": Slotted()}
    live["s"].v = 1
    restored_s = Slotted()
    restored_s.v = 2
    kept = live["x"]
    values = rebind({"obj": live}, {"obj": {"x": [1, 2, 3], "s": restored_s}}, ["obj"])
    assert values["obj"] is live and live["x"] is kept and kept == [1, 2, 3]
    assert live["s"] is restored_s and restored_s.v == 2  # a slotted object is replaced, not updated


def test_a_dict_subclass_is_replaced_not_updated_through_its_attributes():
    class Bunch(dict):
        pass

    live, restored = Bunch(a=1), Bunch(a=2)
    values = rebind({"b": live}, {"b": restored}, ["b"])
    assert values["b"] is restored and live == {"a": 1}
