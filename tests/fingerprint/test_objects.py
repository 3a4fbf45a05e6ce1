"""Objects in general: cycles, dict subclasses, what a reduce builds, drops or changes, caches, weak references."""
from __future__ import annotations

import collections
import functools
import os
import subprocess
import sys
import weakref
from pathlib import Path

import numpy as np
import pytest

from cellcache.errors import Unfingerprintable
from cellcache.fingerprint import fingerprint

from tests.fingerprint.helpers import define

ROOT = Path(__file__).resolve().parents[2]


# --------------------------------------------------------------------------
# Cycles and dict subclasses


def test_a_dict_whose_dict_is_itself() -> None:
    # statsmodels' datasets (Dataset) and other "attribute dicts" do this.
    ns = define(
        """
        class Bunch(dict):
            def __init__(self, **kw):
                dict.__init__(self, kw)
                self.__dict__ = self
        """
    )
    bunch = ns["Bunch"](data=[1, 2], names=("a", "b"))
    digest = fingerprint(bunch)
    assert fingerprint(ns["Bunch"](data=[1, 2], names=("a", "b"))) == digest
    assert fingerprint(ns["Bunch"](data=[1, 3], names=("a", "b"))) != digest


def test_statsmodels_datasets() -> None:
    sm = pytest.importorskip("statsmodels.api")
    data = sm.datasets.longley.load()
    assert fingerprint(data) == fingerprint(sm.datasets.longley.load())
    assert fingerprint(data) != fingerprint(sm.datasets.stackloss.load())


def test_objects_in_a_cycle() -> None:
    ns = define("class Node:\n    pass\n")
    a, b = ns["Node"](), ns["Node"]()
    a.other, b.other, a.value, b.value = b, a, 1, 2
    c, d = ns["Node"](), ns["Node"]()
    c.other, d.other, c.value, d.value = d, c, 1, 2
    assert fingerprint(a) == fingerprint(c)
    d.value = 3
    assert fingerprint(a) != fingerprint(c)
    # A cycle is not its unrolling.
    e, f = ns["Node"](), ns["Node"]()
    e.other, e.value, f.value = f, 1, 2
    f.other = ns["Node"]()
    f.other.other, f.other.value = f, 1
    assert fingerprint(a) != fingerprint(e)


def test_dict_subclasses_with_attributes() -> None:
    ns = define(
        """
        import collections
        class Tagged(dict):
            pass
        class Counted(collections.Counter):
            pass
        class Defaulted(collections.defaultdict):
            pass
        """
    )
    for cls, make in ((ns["Tagged"], lambda c: c(a=1)), (ns["Counted"], lambda c: c("aab")), (ns["Defaulted"], lambda c: c(list, a=[1]))):
        one, two = make(cls), make(cls)
        assert fingerprint(one) == fingerprint(two)
        one.note = "x"
        two.note = "y"
        # Counter's and defaultdict's reduce drop a subclass's attributes; the digest keeps them.
        assert fingerprint(one) != fingerprint(two), cls
    assert fingerprint(collections.OrderedDict(a=1)) != fingerprint({"a": 1})


# --------------------------------------------------------------------------
# Functions, closures, bound methods, weak references


def test_objects_holding_functions_closures_and_bound_methods() -> None:
    ns = define(
        """
        def make(k):
            def scale(x):
                return k * x
            return scale
        class Model:
            def __init__(self, f):
                self.f = f
            def predict(self, x):
                return self.f(x)
        """
    )
    model = ns["Model"](ns["make"](2))
    assert fingerprint(model) == fingerprint(ns["Model"](ns["make"](2)))
    assert fingerprint(model) != fingerprint(ns["Model"](ns["make"](3)))  # a closure value
    assert fingerprint({"p": model.predict}) == fingerprint({"p": ns["Model"](ns["make"](2)).predict})
    assert fingerprint({"p": model.predict}) != fingerprint({"p": ns["Model"](ns["make"](3)).predict})
    assert fingerprint(functools.partial(model.predict)) != fingerprint(functools.partial(ns["Model"](ns["make"](3)).predict))


def test_weak_references_are_their_referents() -> None:
    ns = define("class Thing:\n    def __init__(self, v):\n        self.v = v\n")
    one, two, three = ns["Thing"](1), ns["Thing"](1), ns["Thing"](2)
    assert fingerprint(weakref.ref(one)) == fingerprint(weakref.ref(two))
    assert fingerprint(weakref.ref(one)) != fingerprint(weakref.ref(three))
    # A reference to a part of the value is that part, shared.
    assert fingerprint([one, weakref.ref(one)]) != fingerprint([one, weakref.ref(two)])
    holder = ns["Thing"](weakref.WeakValueDictionary({"a": one}))
    assert fingerprint(holder) != fingerprint(ns["Thing"](weakref.WeakValueDictionary({"a": three})))
    assert fingerprint(weakref.WeakSet([one])) == fingerprint(weakref.WeakSet([two]))
    dead = weakref.ref(ns["Thing"](5))
    assert fingerprint(dead) == fingerprint(dead)


# --------------------------------------------------------------------------
# What a reduce builds, drops or changes


SET_ORDER = """
import sys
sys.path.insert(0, {root!r})
from cellcache.fingerprint import fingerprint
class Symbols:
    def __init__(self, names):
        self.names = set(names)
        self.order = {{name: i for i, name in enumerate(sorted(names))}}
    def __reduce__(self):
        # As lmfit's Parameters: a dict built from a set, in the set's (hash seed's) order.
        return Symbols, (), {{"table": {{name: len(name) for name in self.names}}, "order": self.order}}
    def __setstate__(self, state):
        pass
print(fingerprint(Symbols(["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta"])).hex())
"""


def test_a_dict_a_reduce_builds_from_a_set_does_not_depend_on_the_hash_seed() -> None:
    script = SET_ORDER.format(root=str(ROOT))
    digests = set()
    for seed in ("1", "2", "3", "4"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        digests.add(subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True).stdout)
    assert len(digests) == 1


def test_a_dict_the_object_holds_keeps_its_order() -> None:
    ns = define(
        """
        class Ordered:
            def __init__(self, mapping):
                self.mapping = mapping
            def __getstate__(self):
                return {"mapping": self.mapping}
        """
    )
    assert fingerprint(ns["Ordered"]({"a": 1, "b": 2})) != fingerprint(ns["Ordered"]({"b": 2, "a": 1}))


def test_state_a_reduce_drops_is_kept() -> None:
    ns = define(
        """
        import collections
        class Window(collections.deque):
            pass
        class Scaled(collections.defaultdict):
            pass
        """
    )
    one, two = ns["Scaled"](int), ns["Scaled"](int)
    one.scale, two.scale = 1, 2
    assert fingerprint(one) != fingerprint(two)


def test_an_object_whose_pickling_changes_it_is_refused_every_time() -> None:
    ns = define(
        """
        import itertools
        class Ticket:
            def __init__(self):
                self.counter = itertools.count()
            def __getstate__(self):
                return {"next": next(self.counter)}
        """
    )
    ticket = ns["Ticket"]()
    for _ in range(2):
        with pytest.raises(Unfingerprintable, match="pickling it changes it"):
            fingerprint(ticket)


# --------------------------------------------------------------------------
# Caches an object fills in when it is read


def test_cached_property_values_are_not_state() -> None:
    ns = define(
        """
        import functools
        class Lazy:
            def __init__(self, x):
                self.x = x
            @functools.cached_property
            def double(self):
                return [2 * self.x]
        """
    )
    lazy = ns["Lazy"](3)
    before = fingerprint(lazy)
    assert lazy.double == [6]
    assert fingerprint(lazy) == before
    lazy.x = 4
    assert fingerprint(lazy) != before


def test_scipy_sparse_canonical_format_flags_are_not_state() -> None:
    sparse = pytest.importorskip("scipy.sparse")
    dense = np.array([[0, 1, 0], [2, 0, 3]], dtype=float)
    for make in (sparse.csr_matrix, sparse.csc_matrix, sparse.csr_array):
        matrix = make(dense)
        before = fingerprint(matrix)
        matrix.has_sorted_indices, matrix.has_canonical_format  # noqa: B018 - read: sets the flags
        matrix.sum()
        assert fingerprint(matrix) == before
        matrix.data[0] = 9.0
        assert fingerprint(matrix) != before


def test_a_colormap_digests_alike_before_and_after_its_first_use() -> None:
    """A colormap builds its lookup table when it first maps a value; a hit skips the draw that built it, so
    `plt.cm.gray_r` keyed the next drawing cell otherwise than after a run (sk_digits_classification, issue 24)."""
    colors = pytest.importorskip("matplotlib.colors")
    fresh = colors.LinearSegmentedColormap.from_list("cc_test", ["white", "black"])
    used = fresh.copy()
    used(0.5)  # builds the table
    assert not fresh._isinit and used._isinit
    assert fingerprint(fresh) == fingerprint(used)
    assert not fresh._isinit  # digesting does not build it
    used._lut[:, -1] = 0.5  # the transparency recipe: an edited table is state
    assert fingerprint(fresh) != fingerprint(used)
    assert fingerprint(fresh) != fingerprint(colors.LinearSegmentedColormap.from_list("cc_test", ["white", "red"]))


def test_statsmodels_results_cache_is_not_state() -> None:
    sm = pytest.importorskip("statsmodels.api")
    data = sm.datasets.longley.load_pandas()
    results = sm.OLS(data.endog, sm.add_constant(data.exog)).fit()
    before = fingerprint(results)
    results.bse, results.tvalues, results.rsquared  # noqa: B018 - read: fills the results' cache
    assert fingerprint(results) == before


def test_pandas_lookup_engines_are_not_state() -> None:
    import pandas as pd

    frame = pd.DataFrame({"v": [1.0, 2.0, 3.0]}, index=pd.Index(["a", "b", "c"], dtype=object))
    holder = {"frame": frame, "index": frame.index}
    before = fingerprint(holder)
    frame.index.get_loc("b"), frame.loc["c"], frame.index.is_unique  # noqa: B018 - builds the engine and caches
    assert fingerprint(holder) == before


# --------------------------------------------------------------------------
# lmfit: fit results that differed in every kernel


LMFIT = """
import sys
sys.path.insert(0, {root!r})
import lmfit, numpy as np
from cellcache.fingerprint import fingerprint
params = lmfit.Parameters()
params.add("a", value=1.0, min=0)
params.add("b", expr="2 * a")
x = np.linspace(0, 1, 20)
model = lmfit.models.LinearModel()
result = model.fit(3 * x + 1, model.make_params(slope=1, intercept=0), x=x)
print(fingerprint(params).hex(), fingerprint(result).hex())
"""


def test_lmfit_parameters_and_results_do_not_depend_on_the_hash_seed() -> None:
    pytest.importorskip("lmfit")
    script = LMFIT.format(root=str(ROOT))
    outputs = set()
    for seed in ("1", "2", "3"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        outputs.add(subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True).stdout)
    assert len(outputs) == 1


def test_a_matplotlib_figure_is_refused_with_a_reason_a_user_can_act_on() -> None:
    plt = pytest.importorskip("matplotlib.pyplot")
    fig, axes = plt.subplots(1, 2)
    try:
        with pytest.raises(Unfingerprintable, match="figure, axes and artist.*make and draw the figure in one cell"):
            fingerprint(axes)
    finally:
        plt.close(fig)
