"""Hidden state: what a cell reads and does beyond the names it binds (cellcache/effects.py).

Each case changes the hidden state and expects a miss, and makes an
irrelevant change that must still hit, in a real InteractiveShell; cases
that need a fresh kernel run two processes on one store.
"""
from __future__ import annotations

import sys
import textwrap

import pytest

import cellcache
from cellcache.cell.analysis import analyze
from cellcache.errors import CacheWarning
from tests.cell.helpers import cached, hit, kernel, runs
from tests.conftest import run


# --------------------------------------------------------------------------
# 1. effects beyond the bound names


def test_global_mutated_by_a_helper_is_keyed_and_restored(counted):
    run(counted, "log = []\ndef helper(x):\n    log.append(x)\n    return x * 2")
    cell = cached("y = helper(3)")
    run(counted, cell)
    assert counted.user_ns["log"] == [3] and runs(counted) == 1
    counted.user_ns["log"] = []  # as before the first run: the same key
    run(counted, cell)
    assert hit() and runs(counted) == 1
    assert counted.user_ns["log"] == [3]  # left as the run left it
    counted.user_ns["log"] = ["other"]  # the helper reads it: another key
    run(counted, cell)
    assert not hit() and counted.user_ns["log"] == ["other", 3]


def test_del_is_replayed_even_when_the_name_was_absent_at_store_time(counted):
    cell = cached("tmp = 5\ny = tmp + 1\ndel tmp")
    run(counted, cell)
    assert "tmp" not in counted.user_ns
    counted.user_ns["tmp"] = 99  # not an input: the cell binds it before reading it
    run(counted, cell)
    assert hit() and "tmp" not in counted.user_ns


@pytest.mark.parametrize(
    ("setup", "draw", "reseed"),
    [
        ("import random", "y = random.random()", "random.seed({n})"),
        ("import numpy as np", "y = float(np.random.rand())", "np.random.seed({n})"),
        ("from random import random as rnd", "y = rnd()", "import random; random.seed({n})"),
        ("import numpy as np\ndef noise():\n    return float(np.random.normal())", "y = noise()", "np.random.seed({n})"),
    ],
    ids=["random", "numpy-legacy", "from-import", "through-a-helper"],
)
def test_global_rng_state_is_keyed_and_advanced_exactly_on_a_hit(counted, setup, draw, reseed):
    run(counted, setup)
    run(counted, reseed.format(n=1))
    run(counted, cached(draw))
    first = counted.user_ns["y"]
    run(counted, "after_run = " + draw.partition("= ")[2])
    run(counted, reseed.format(n=1))
    run(counted, cached(draw))
    assert hit() and counted.user_ns["y"] == first and runs(counted) == 1
    run(counted, "after_hit = " + draw.partition("= ")[2])
    assert counted.user_ns["after_hit"] == counted.user_ns["after_run"]  # advanced exactly as the run did
    run(counted, reseed.format(n=2))
    run(counted, cached(draw))
    assert not hit() and counted.user_ns["y"] != first


def test_rng_drawn_through_code_the_analysis_cannot_see_is_keyed_from_then_on(counted, workdir, monkeypatch):
    (workdir / "drawer.py").write_text("import random\n\ndef draw():\n    return random.random()\n")
    monkeypatch.syspath_prepend(str(workdir))
    run(counted, "import random, drawer")
    cell = cached("y = drawer.draw()")
    run(counted, "random.seed(1)")
    run(counted, cell)
    first = counted.user_ns["y"]
    run(counted, "random.seed(1)")
    run(counted, cell)
    assert hit() and counted.user_ns["y"] == first
    run(counted, "random.seed(2)")
    run(counted, cell)
    assert not hit() and counted.user_ns["y"] != first
    sys.modules.pop("drawer", None)


@pytest.mark.parametrize(
    "read",
    ['os.environ["CC_TEST_VAR"]', 'os.getenv("CC_TEST_VAR", "")', 'os.environ.get("CC_TEST_VAR")'],
)
def test_environment_variables_read_by_literal_name_are_inputs(counted, monkeypatch, read):
    monkeypatch.setenv("CC_TEST_VAR", "a")
    run(counted, "import os")
    cell = cached(f"y = {read}")
    run(counted, cell)
    monkeypatch.setenv("CC_OTHER_VAR", "irrelevant")
    run(counted, cell)
    assert hit()
    monkeypatch.setenv("CC_TEST_VAR", "b")
    run(counted, cell)
    assert not hit() and counted.user_ns["y"] == "b"
    assert "environment variable CC_TEST_VAR changed" in cellcache.last_run().reason


def test_percent_env_read_is_an_input(counted, monkeypatch):
    monkeypatch.setenv("CC_TEST_VAR", "a")
    cell = cached("%env CC_TEST_VAR\ny = 1")
    run(counted, cell)
    run(counted, cell)
    assert hit()
    monkeypatch.setenv("CC_TEST_VAR", "b")
    run(counted, cell)
    assert not hit()


# --------------------------------------------------------------------------
# 2. runtime state the cell reads


def test_module_attribute_set_by_another_cell_is_keyed(counted, workdir, monkeypatch):
    (workdir / "settings_mod.py").write_text("LR = 0.1\nOTHER = 1\n")
    monkeypatch.syspath_prepend(str(workdir))
    cell = cached("import settings_mod\nlr = settings_mod.LR * 2")
    run(counted, cell)
    run(counted, cell)
    assert hit()
    run(counted, "settings_mod.OTHER = 2")  # an attribute the cell does not read
    run(counted, cell)
    assert hit()
    run(counted, "settings_mod.LR = 0.5")
    run(counted, cell)
    assert not hit() and counted.user_ns["lr"] == 1.0
    assert "attribute settings_mod.LR changed" in cellcache.last_run().reason
    sys.modules.pop("settings_mod", None)


def test_monkeypatched_library_function_is_keyed(counted):
    run(counted, "import numpy as np\noriginal = np.mean")
    cell = cached("y = float(np.mean([1.0, 3.0]))")
    run(counted, cell)
    run(counted, cell)
    assert hit()
    try:
        run(counted, "np.mean = lambda values: 100.0")
        run(counted, cell)
        assert not hit() and counted.user_ns["y"] == 100.0
    finally:
        run(counted, "np.mean = original")


def test_a_library_function_of_a_module_the_cell_imports_keys_alike_loaded_or_not(workdir, store_dir):
    """`from matplotlib import pyplot as plt; plt.rc(...)`: after `%matplotlib inline` ran, pyplot was loaded
    and `plt.rc` keyed; after that cell hit, it was not, and the import cell missed in every first new
    kernel (sm_glm, sm_predict, issue 24). The unpatched function is what the import gives either way.
    (matplotlib itself is loaded in both kernels, as the magic's hit loads it to apply its style.)"""
    cell = "%%cached styles\nfrom matplotlib import pyplot as plt\nplt.rc('lines', linewidth=5)\nx = 1"
    kernel(workdir, store_dir, "import matplotlib.pyplot", cell)
    assert kernel(workdir, store_dir, "import matplotlib", cell)["hit"]


@pytest.mark.parametrize("patch", ["lambda *a, **k: 'patched'", "functools.wraps(original)(lambda *a, **k: 'patched')"])
def test_a_patched_function_of_a_module_the_cell_imports_is_keyed(counted, patch):
    run(counted, "import functools, json\noriginal = json.dumps")
    cell = cached("import json\ns = json.dumps([1])")
    run(counted, cell)
    try:
        run(counted, f"json.dumps = {patch}")
        run(counted, cell)
        assert not hit() and counted.user_ns["s"] == "patched"
    finally:
        run(counted, "json.dumps = original")


def test_a_library_function_patched_under_its_own_name_is_keyed(counted):
    """functools.wraps copies the module and name onto the notebook's wrapper: it was keyed as the original."""
    run(counted, "import functools, json\noriginal = json.dumps")
    cell = cached("s = json.dumps([1])")
    run(counted, cell)
    try:
        run(counted, "json.dumps = functools.wraps(original)(lambda *a, **k: 'patched')")
        run(counted, cell)
        assert not hit() and counted.user_ns["s"] == "patched"
    finally:
        run(counted, "json.dumps = original")


def test_past_outputs_are_inputs(counted):
    run(counted, "40 + 2")
    number = counted.execution_count - 1
    for cell in (cached("y = _ + 1", "underscore"), cached(f"y = _{number} + 1", "numbered"), cached(f"y = Out[{number}] + 1", "out")):
        run(counted, cell)
        assert counted.user_ns["y"] == 43
        run(counted, "unrelated = 1")  # no output: `_` is unchanged
        run(counted, cell)
        assert hit(), cell
    run(counted, "10")
    run(counted, cached("y = _ + 1", "underscore"))
    assert not hit() and counted.user_ns["y"] == 11


def test_namespace_lookups_by_literal_name_are_reads(counted):
    counted.user_ns["x"] = 1
    for body in ('y = globals()["x"] + 1', 'y = get_ipython().user_ns["x"] + 1'):
        counted.user_ns["x"] = 1
        cell = cached(body, "ns")
        run(counted, cell)
        counted.user_ns["unrelated"] = 5
        run(counted, cell)
        assert hit()
        counted.user_ns["x"] = 2
        run(counted, cell)
        assert not hit() and counted.user_ns["y"] == 3


def test_namespace_lookup_by_computed_name_runs_uncached_with_a_warning(counted):
    counted.user_ns.update(x=1, name="x")
    with pytest.warns(CacheWarning, match=r"computed name"):
        run(counted, cached("y = globals()[name] + 1"))
    assert cellcache.last_run().status == "uncached" and counted.user_ns["y"] == 2


def test_percent_run_binds_outputs_and_the_script_is_a_dep(counted, workdir):
    (workdir / "script.py").write_text("made = 3\n")
    cell = cached("%run script.py\nw = made + 1")
    with_warnings = []
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run(counted, cell)
        with_warnings.extend(caught)
    assert not [w for w in with_warnings if issubclass(w.category, CacheWarning)]  # IPython's plumbing is not stored
    del counted.user_ns["made"], counted.user_ns["w"]
    run(counted, cell)
    assert hit() and counted.user_ns["made"] == 3 and counted.user_ns["w"] == 4
    (workdir / "script.py").write_text("made = 4\n")
    run(counted, cell)
    assert not hit() and counted.user_ns["w"] == 5


# --------------------------------------------------------------------------
# 3. values: aliasing among inputs


def test_aliasing_among_inputs_is_keyed_and_survives_a_restore(counted):
    cell = cached("a.append(2)\nn = len(b)")
    run(counted, "a = [1]\nb = a")
    run(counted, cell)
    assert counted.user_ns["n"] == 2
    run(counted, "a = [1]\nb = a")
    run(counted, cell)
    assert hit() and counted.user_ns["a"] is counted.user_ns["b"] and counted.user_ns["a"] == [1, 2]
    run(counted, "a = [1]\nb = [1]")  # equal values, not one object: another result
    run(counted, cell)
    assert not hit() and counted.user_ns["n"] == 1


def test_ignore_hint_says_what_ignoring_costs(counted):
    run(counted, "def gen():\n    yield 1\ng = gen()")
    with pytest.warns(CacheWarning, match=r"--ignore g` would leave it out of the key: the cell would then never re-run"):
        run(counted, cached("y = next(g)"))


def test_a_hit_that_leaves_out_an_ignored_output_says_so_once(shell):
    # issue 25: following the --ignore advice, the next session's hit left `g` undefined, silently.
    import warnings

    cell = "%%cached make --ignore g\ndef gen():\n    yield 1\ng = gen()\nx = 1"
    run(shell, cell)
    del shell.user_ns["g"]  # a new kernel: nothing defines g before this cell
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run(shell, cell)
    said = [str(w.message) for w in caught if issubclass(w.category, CacheWarning)]
    assert cellcache.last_run().hit and "g" not in shell.user_ns
    assert len(said) == 1 and "step 'make' was restored without `g`" in said[0], said


# --------------------------------------------------------------------------
# 4. names the cell binds for itself


@pytest.mark.parametrize(
    "body",
    [
        "for i in range(3):\n    pass\nj = i",
        "from math import *\nq = sqrt(4)",
        "vals = [(m := k) for k in range(3)]\nlast = m",
        "def f():\n    return base * 2\nbase = 3\nr = f()",
    ],
    ids=["for-target", "star-import", "walrus", "global-of-a-cell-function"],
)
def test_a_rerun_of_a_cell_that_binds_its_own_conditional_reads_is_a_hit(counted, body):
    run(counted, cached(body))
    run(counted, cached(body))
    assert hit() and runs(counted) == 1


def test_a_conditional_read_that_was_there_before_still_counts(counted):
    cell = cached("if flag:\n    v = 10\nw = v + 1")
    counted.user_ns.update(flag=False, v=1)
    run(counted, cell)
    assert counted.user_ns["w"] == 2
    counted.user_ns["v"] = 5  # read: the branch did not bind it
    run(counted, cell)
    assert not hit() and counted.user_ns["w"] == 6


def test_a_cell_testing_for_names_gets_no_second_key(counted):
    names = analyze("try:\n    x\nexcept NameError:\n    x = 0\ny = x")
    assert names.guarded
    cell = cached("try:\n    print(x)\nexcept NameError:\n    pass\nx = 5")
    run(counted, cell)
    run(counted, cell)
    assert not hit()  # with x present the body prints it: a real run differs


HELPERS = {
    "direct": "def g():\n    return z * 2",
    "nested": "def h():\n    return z * 2\ndef g():\n    return h()",
    "method": "class C:\n    def twice(self):\n        return z * 2\ndef g():\n    return C().twice()",
}


@pytest.mark.parametrize("helper", HELPERS.values(), ids=HELPERS.keys())
@pytest.mark.parametrize(
    "body",
    [
        "z = 5\nruns.append(1)\nout = g()",
        "import math\nz = 5\nruns.append(1)\nout = [g() for _ in range(2)][0]",
        "z = 5\nruns.append(1)\nif True:\n    out = g()",
    ],
    ids=["straight", "in-a-comprehension", "in-a-branch"],
)
def test_a_global_the_cell_binds_before_it_calls_a_helper_is_no_input(counted, helper, body):
    run(counted, helper)
    counted.user_ns["z"] = 1
    run(counted, f"%%cached fit\n{body}")
    assert counted.user_ns["out"] == 10 and runs(counted) == 1
    counted.user_ns["z"] = 2  # the helper can only see the cell's z = 5
    run(counted, f"%%cached fit\n{body}")
    assert hit() and runs(counted) == 1
    assert counted.user_ns["out"] == 10 and counted.user_ns["z"] == 5


@pytest.mark.parametrize(
    ("body", "made"),
    [
        ("out = g()\nz = 5", "out"),  # called before the binding
        ("if flag:\n    z = 5\nout = g()", "out"),  # bound in a branch that did not run
        ("acc = []\nfor i in range(2):\n    acc.append(g())\n    z = 5", "acc"),  # the first pass reads the old z
        ("first = list(map(lambda _: g(), [0]))\nz = 5\nout = g()", "first"),  # handed on as a callback before
        ("first = g()\nz = 5\nout = g()", "first"),  # called once before, once after
        ("try:\n    w = g()\n    z = 5\nexcept ValueError:\n    pass\nout = w", "out"),
        ("z = 5\nout = g()\ndel z", None),  # unbound at the end: kept, though nothing here reads the old z
        ("[(z := 5) for _ in range(0)]\nout = g()", "out"),  # a walrus in a comprehension that may not run
        ("@functools.lru_cache\ndef f():\n    return g()\nfirst = f()\nz = 5\nout = g()", "first"),
    ],
    ids=["call-before", "conditional", "loop", "callback", "before-and-after", "try", "del", "walrus", "decorated"],
)
def test_a_global_a_helper_may_read_before_the_cell_binds_it_stays_an_input(counted, body, made):
    run(counted, "import functools\ndef g():\n    return z * 2")
    counted.user_ns.update(z=1, flag=False)
    cell = cached(body, "fit")
    run(counted, cell)
    first = counted.user_ns.get(made)
    counted.user_ns.update(z=2, flag=False)
    run(counted, cell)
    assert not hit() and runs(counted) == 2
    if made is not None:
        assert counted.user_ns[made] != first  # what a hit would have returned: stale


def test_the_value_the_cell_binds_is_keyed_by_its_code(counted):
    run(counted, "def g():\n    return z * 2")
    counted.user_ns["z"] = 1
    run(counted, "%%cached fit\nz = 5\nruns.append(1)\nout = g()")
    counted.user_ns["z"] = 2
    run(counted, "%%cached fit\nz = 5\nruns.append(1)\nout = g()")
    assert hit() and counted.user_ns["out"] == 10
    run(counted, "%%cached fit\nz = 6\nruns.append(1)\nout = g()")
    assert not hit() and counted.user_ns["out"] == 12 and runs(counted) == 2


def test_a_rerun_of_a_cell_binding_a_helpers_global_for_the_first_time_is_a_hit(counted):
    run(counted, "def g():\n    return base * 2")
    cell = "%%cached step\nbase = 3\nruns.append(1)\nr = g()"  # `base` did not exist when the key was first made
    run(counted, cell)
    run(counted, cell)
    assert hit() and runs(counted) == 1 and counted.user_ns["r"] == 6


# --------------------------------------------------------------------------
# two kernels on one store

def test_attribute_writes_are_replayed_in_a_new_kernel(workdir, store_dir):
    (workdir / "knobs.py").write_text("LR = 0.1\n")
    cell = "%%cached knobs\nimport knobs\nimport pandas as pd\nknobs.LR = 0.5\npd.options.display.max_rows = 7\nx = 1"
    check = "out = [knobs.LR, pd.options.display.max_rows]"
    first = kernel(workdir, store_dir, cell, check)
    second = kernel(workdir, store_dir, cell, check)
    assert first["out"] == second["out"] == [0.5, 7]
    fresh = kernel(workdir, store_dir, "import knobs, pandas as pd", check)
    assert fresh["out"] != [0.5, 7]  # the values really come from the replay
    assert kernel(workdir, store_dir, cell)["hit"]


def test_environment_writes_are_replayed_in_a_new_kernel(workdir, store_dir):
    cell = '%%cached envw\nimport os\nos.environ["CC_WRITTEN"] = "yes"\n%env CC_MAGIC=1\nx = 1'
    check = 'out = [os.environ.get("CC_WRITTEN"), os.environ.get("CC_MAGIC")]'
    kernel(workdir, store_dir, cell)
    again = kernel(workdir, store_dir, cell, "import os", check)
    assert again["out"] == ["yes", "1"]


def test_rng_is_advanced_on_a_hit_in_a_new_kernel(workdir, store_dir):
    seed = "import numpy as np\nnp.random.seed(3)"
    cell = "%%cached draw\na = float(np.random.rand())"
    after = "out = float(np.random.rand())"
    first = kernel(workdir, store_dir, seed, cell, after)
    second = kernel(workdir, store_dir, seed, cell, after)
    assert not first["hit"] and second["hit"] and second["out"] == first["out"]


def test_a_seeded_generator_drawn_by_code_the_analysis_cant_see_is_keyed_in_a_new_kernel(workdir, store_dir):
    # The draw is inside a module: in the first kernel, only the run shows it (the key is extended then).
    # A new kernel must key the generator from the start, or its key never meets the stored one.
    (workdir / "sampler.py").write_text("import numpy as np\n\ndef sample():\n    return float(np.random.rand())\n")
    seed = "%%cached seed\nimport numpy as np\nnp.random.seed({n})"
    cell = "%%cached draw\nimport sampler\na = sampler.sample()"
    after = "out = [a, float(np.random.rand())]"
    first = kernel(workdir, store_dir, seed.format(n=3), cell, after)
    second = kernel(workdir, store_dir, seed.format(n=3), cell, after)
    assert not first["hit"] and second["hit"] and second["out"] == first["out"]
    other = kernel(workdir, store_dir, seed.format(n=4), cell, after)  # another seed: never the stored draw
    assert not other["hit"] and other["out"] != first["out"]
    assert kernel(workdir, store_dir, seed.format(n=4), cell, after)["hit"]


def test_a_value_holding_the_seeded_generator_digests_alike_after_the_seeding_cell_hits(workdir, store_dir):
    # As scipy's distributions do (`stats.norm._random_state`): the value's digest is the generator's.
    # After np.random.seed, numpy's generator holds no SeedSequence; a new kernel's holds one from OS
    # entropy, which a hit that set only the state left there: the next cell missed in every kernel.
    setup = "import numpy as np\nholder = {'rs': np.random.mtrand._rand}"
    seed = "%%cached seed\nnp.random.seed(12345)"
    cell = "%%cached use\nout = sorted(holder)"
    assert not kernel(workdir, store_dir, setup, seed, cell)["hit"]
    assert kernel(workdir, store_dir, setup, seed, cell)["hit"]


def test_analysis_of_effects() -> None:
    names = analyze(
        textwrap.dedent(
            """
            import numpy as np, os
            settings.LR = 0.5
            y = settings.EPOCHS + np.mean(x) + os.environ["HOME"]
            z = globals()["w"]
            """
        )
    )
    assert ("settings", "LR") in names.attr_writes and ("settings", "EPOCHS") in names.attr_reads
    assert ("np", "mean") in names.attr_reads and names.env_reads == {"HOME"}
    assert "w" in names.reads and names.dynamic is None
    assert ("np", "numpy") in names.aliases


# --------------------------------------------------------------------------
# 7. classes and functions from earlier cells stay themselves

POINT = "import dataclasses\n@dataclasses.dataclass\nclass Point:\n    x: int\n    def norm(self):\n        return abs(self.x)\n"


def test_a_restored_instance_is_of_the_live_class_after_its_cell_is_rerun(counted):
    run(counted, POINT)
    cell = cached("p = Point(3)\nscale = lambda v: v * 2")
    run(counted, cell)
    run(counted, POINT)  # a new class object with the same code
    run(counted, cell)
    assert hit()
    run(counted, "same = isinstance(p, Point) and p == Point(3)")
    assert counted.user_ns["same"] is True


def test_a_changed_or_missing_live_class_gets_the_stored_copy(shell, tmp_path):
    from cellcache.store import format as fmt

    run(shell, POINT)
    with open(tmp_path / "blob", "wb") as f:
        info = fmt.dump({"p": shell.user_ns["Point"](3), "f": shell.user_ns["Point"].norm}, f)
    same = fmt.load(tmp_path / "blob", info.loader, info.digest)
    assert type(same["p"]) is shell.user_ns["Point"]  # by reference: the live class
    run(shell, POINT.replace("abs(self.x)", "-abs(self.x)"))  # the live class changed its code
    changed = fmt.load(tmp_path / "blob", info.loader, info.digest)
    assert type(changed["p"]) is not shell.user_ns["Point"] and changed["p"].norm() == 3  # the stored code
    del shell.user_ns["Point"]
    missing = fmt.load(tmp_path / "blob", info.loader, info.digest)
    assert missing["p"].norm() == 3


def test_a_notebook_class_with_a_cached_property_is_stored(counted):
    run(counted, "import functools\nclass Lazy:\n    @functools.cached_property\n    def v(self):\n        return 41 + 1\n")
    cell = cached("lazy = Lazy()\nvalue = lazy.v")
    run(counted, cell)
    del counted.user_ns["lazy"]
    run(counted, cell)
    assert hit() and counted.user_ns["lazy"].v == 42 and isinstance(counted.user_ns["lazy"], counted.user_ns["Lazy"])


def test_restart_and_run_all_restores_instances_of_the_live_class(workdir, store_dir):
    cells = [POINT, "%%cached make\np = Point(5)", "out = [isinstance(p, Point), p == Point(5), p.norm()]"]
    first = kernel(workdir, store_dir, *cells)
    second = kernel(workdir, store_dir, *cells)
    assert first["out"] == second["out"] == [True, True, 5]


def test_a_cell_that_seeds_first_hits_in_a_new_kernel_and_leaves_the_seeded_state(workdir, store_dir):
    cell = "%%cached seeded\nimport numpy as np\nnp.random.seed(7)\na = float(np.random.rand())"
    after = "out = float(np.random.rand())"
    first = kernel(workdir, store_dir, cell, after)
    second = kernel(workdir, store_dir, cell, after)
    assert second["hit"] and second["out"] == first["out"]  # its earlier state is not keyed, its end state is restored


def test_a_cell_that_seeds_first_is_not_keyed_on_the_earlier_state(counted):
    run(counted, "import numpy as np")
    cell = cached("np.random.seed(7)\na = float(np.random.rand())")
    run(counted, cell)
    run(counted, "np.random.rand(5)")  # another cell draws: irrelevant to a cell that seeds first
    run(counted, cell)
    assert hit() and runs(counted) == 1
    assert analyze("np.random.rand()\nnp.random.seed(1)").reseeded == frozenset()  # seeding after a draw is no reseed


# --------------------------------------------------------------------------
# 8. randomness nobody seeded is not keyed; draws by imports and library internals don't key a generator


@pytest.mark.parametrize(
    ("setup", "draw"),
    [("import numpy as np", "out = float(np.random.rand())"), ("import random", "out = random.random()")],
    ids=["numpy-legacy", "random"],
)
def test_an_unseeded_draw_hits_in_a_new_kernel_with_the_earlier_draw(workdir, store_dir, setup, draw):
    cell = "%%cached unseeded\n" + draw
    first = kernel(workdir, store_dir, setup, cell)
    second = kernel(workdir, store_dir, setup, cell)
    assert not first["hit"] and second["hit"] and second["out"] == first["out"]


def test_explain_says_an_unseeded_generator_is_not_keyed(counted, capsys):
    run(counted, "import numpy as np")
    cell = cached("y = float(np.random.rand())").replace("%%cached step", "%%cached step --explain")
    run(counted, cell)
    run(counted, "np.random.rand(3)")  # the state moved: an unseeded generator is still no key component
    run(counted, cell)
    assert hit() and runs(counted) == 1
    assert "numpy generator was never seeded" in capsys.readouterr().out


def test_a_seed_in_a_plain_cell_brings_the_generator_into_the_key(counted):
    run(counted, "import numpy as np")
    cell = cached("y = float(np.random.rand())")
    run(counted, "np.random.seed(1)")
    run(counted, cell)
    run(counted, "np.random.seed(2)")  # seeded and changed: a different draw, so a miss
    run(counted, cell)
    assert not hit() and runs(counted) == 2


def test_an_unseeded_generator_keeps_its_own_state_on_a_hit(counted):
    run(counted, "import random")
    cell = cached("y = random.random()")
    run(counted, cell)
    run(counted, "random.random()")
    run(counted, "state = random.getstate()")
    run(counted, cell)
    run(counted, "kept = random.getstate() == state")
    assert hit() and counted.user_ns["kept"] is True  # not set to the stored run's end state


def test_an_import_that_draws_does_not_key_the_cell(workdir, store_dir):
    (workdir / "drawsonimport.py").write_text("import random\nTOKEN = random.random()\n")
    cell = "%%cached imports\nimport drawsonimport\nout = 1"
    first = kernel(workdir, store_dir, cell)
    second = kernel(workdir, store_dir, cell)
    assert not first["hit"] and second["hit"]
    seeded = kernel(workdir, store_dir, "import random\nrandom.seed(5)", cell)
    again = kernel(workdir, store_dir, "import random\nrandom.seed(5)", cell)
    assert again["hit"] and seeded["out"] == again["out"] == 1


def test_a_helper_with_its_own_generator_does_not_key_numpys_global_one(counted):
    run(counted, "import numpy as np\nnp.random.seed(0)")
    run(counted, "def noise(seed):\n    rng = np.random.default_rng(seed)\n    return float(rng.normal())")
    cell = cached("y = noise(3)")
    run(counted, cell)
    run(counted, "np.random.rand(4)")  # the legacy global generator moves; the helper never uses it
    run(counted, cell)
    assert hit() and runs(counted) == 1
    run(counted, "def noise(seed):\n    return float(np.random.normal())")  # now it does
    run(counted, cell)
    assert not hit()
