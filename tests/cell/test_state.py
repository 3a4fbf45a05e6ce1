"""State probes (cellcache.cell.state): process state a cell sets through calls comes back on a hit.

Each probe: the run's change is applied on a hit, in the same kernel and in a new one; its value
keys the cells it can affect and no others.
"""
from __future__ import annotations



import pytest

import cellcache
from cellcache.cell import state
from tests.conftest import run
from tests.cell.helpers import cached, hit, kernel


# What each probe's setting cell does, how to undo it (as a new kernel would not have it), and what to read after.
CASES = {
    "matplotlib": ("import matplotlib.pyplot as plt", "plt.rc('figure', figsize=(16, 8))", "plt.rcdefaults()",
                   "out = list(plt.rcParams['figure.figsize'])", [16.0, 8.0]),
    "style": ("import matplotlib.pyplot as plt", "plt.style.use('ggplot')", "plt.rcdefaults()",
              "out = plt.rcParams['axes.facecolor']", "#E5E5E5"),
    "numpy-print": ("import numpy as np", "np.set_printoptions(precision=2)", "np.set_printoptions(precision=8)",
                    "out = np.get_printoptions()['precision']", 2),
    "numpy-err": ("import numpy as np", "np.seterr(divide='raise')", "np.seterr(divide='warn')",
                  "out = np.geterr()['divide']", "raise"),
    "pandas": ("import pandas as pd", "pd.set_option('display.max_rows', 7)", "pd.reset_option('display.max_rows')",
               "out = pd.get_option('display.max_rows')", 7),
    "warnings": ("import warnings", "warnings.filterwarnings('ignore', message='cellcache-test')",
                 "warnings.filters[:] = [f for f in warnings.filters if getattr(f[1], 'pattern', None) != 'cellcache-test']",
                 "out = any(f[1] is not None and f[1].pattern == 'cellcache-test' for f in warnings.filters)", True),
    "decimal": ("import decimal", "decimal.getcontext().prec = 5", "decimal.getcontext().prec = 28",
                "out = decimal.getcontext().prec", 5),
    "environ": ("import os", "os.environ.update({'CC_' + 'PROBED': 'on'})", "os.environ.pop('CC_PROBED', None)",
                "out = os.environ.get('CC_PROBED')", "on"),
    "sys.path": ("import sys", "sys.path.append('/cellcache-probe-test')", "sys.path.remove('/cellcache-probe-test')",
                 "out = '/cellcache-probe-test' in sys.path", True),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_state_set_through_a_call_is_applied_on_a_hit(counted, case):
    setup, setter, undo, read, expected = CASES[case]
    run(counted, setup)
    cell = cached(setter + "\nx = 1")
    try:
        run(counted, cell)
        run(counted, undo)
        run(counted, cell)
        assert hit() and counted.user_ns["runs"].n == 1
        run(counted, read)
        assert counted.user_ns["out"] == expected
    finally:
        run(counted, undo)


@pytest.mark.parametrize("case", ["style", "numpy-print", "pandas", "decimal", "environ"])
def test_state_is_applied_on_a_hit_in_a_new_kernel(workdir, store_dir, case):
    setup, setter, _, read, expected = CASES[case]
    cell = f"%%cached probe\n{setup}\n{setter}\nx = 1"
    first = kernel(workdir, store_dir, cell, read)
    second = kernel(workdir, store_dir, cell, read)
    assert not first["hit"] and second["hit"]  # last_run is the cached cell: the read after it is plain
    assert first["out"] == second["out"] == expected


def test_a_first_import_that_styles_at_once_is_applied_in_a_new_kernel(workdir, store_dir):
    cell = "%%cached styled\nimport matplotlib.pyplot as plt\nplt.rc('lines', linewidth=7)\nx = 1"
    read = "out = plt.rcParams['lines.linewidth']"
    kernel(workdir, store_dir, cell)
    again = kernel(workdir, store_dir, cell, read)
    assert again["out"] == 7


def test_working_directory_is_applied_relative_to_where_the_kernel_started(workdir, store_dir):
    (workdir / "sub").mkdir()
    cell = "%%cached moves\nimport os\nos.chdir('sub')\nx = 1"
    read = "import os\nout = os.path.basename(os.getcwd())"
    kernel(workdir, store_dir, cell)
    again = kernel(workdir, store_dir, cell, read)
    assert again["out"] == "sub"


def test_a_style_change_keys_the_cells_that_draw_and_no_others(counted):
    run(counted, "import matplotlib.pyplot as plt\nimport numpy as np\nvalues = [1, 2, 3]")
    draws = cached("fig, ax = plt.subplots()\nax.plot(values)\nplt.close(fig)", "draws")
    computes = cached("total = sum(values)", "computes")
    try:
        for cell in (draws, computes):
            run(counted, cell)
        run(counted, "plt.rc('figure', figsize=(3, 3))")
        run(counted, computes)
        assert hit()
        run(counted, draws)
        assert not hit() and "process state matplotlib.rcParams changed" in cellcache.last_run().reason
    finally:
        run(counted, "plt.rcdefaults()")


def test_print_options_key_cells_that_show_numpy_values_only(counted):
    run(counted, "import numpy as np\na = np.arange(3.0)")
    shows = cached("a / 3", "shows")
    silent = cached("b = a / 3", "silent")
    try:
        for cell in (shows, silent):
            run(counted, cell)
        run(counted, "np.set_printoptions(precision=3)")
        run(counted, silent)
        assert hit()
        run(counted, shows)
        assert not hit()
    finally:
        run(counted, "np.set_printoptions(precision=8)")


def test_pandas_options_key_cells_that_use_pandas(counted):
    run(counted, "import pandas as pd\nframe = pd.DataFrame({'a': range(30)})\nn = 4")
    uses = cached("head = frame.head(n)", "uses")
    other = cached("m = n * 2", "other")
    try:
        for cell in (uses, other):
            run(counted, cell)
        run(counted, "pd.set_option('display.max_rows', 5)")
        run(counted, other)
        assert hit()
        run(counted, uses)
        assert not hit()
    finally:
        run(counted, "pd.reset_option('display.max_rows')")


PLUGIN = '''
from cellcache.cell.state import Probe

SETTINGS = {"level": 1}

def _read():
    return dict(SETTINGS)

def _apply(values, unset):
    SETTINGS.update(values)

PROBE = Probe("cc_probe_plugin.settings", _read, _apply, lambda use: "cc_probe_plugin" in use.modules, "cc_probe_plugin")
'''


def test_a_library_adds_a_probe_through_the_entry_point(workdir, store_dir):
    (workdir / "cc_probe_plugin.py").write_text(PLUGIN)
    dist = workdir / "cc_probe_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: cc-probe-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[cellcache.state]\nsettings = cc_probe_plugin:PROBE\n")
    cell = "%%cached plugin\nimport cc_probe_plugin\ncc_probe_plugin.SETTINGS['level'] = 9\nx = 1"
    read = "out = cc_probe_plugin.SETTINGS['level']"
    kernel(workdir, store_dir, cell)
    again = kernel(workdir, store_dir, cell, read)
    assert again["out"] == 9


def test_the_registry_documents_every_builtin_probe() -> None:
    names = [p.name for p in state.registry()]
    assert len(names) == len(set(names))
    for probe in state.BUILTIN:
        assert probe.doc and probe.name in names


def test_a_hit_keeps_the_warning_filters_earlier_cells_set(counted):
    run(counted, "import warnings")
    cell = cached("warnings.filterwarnings('ignore', message='cellcache-first')\nx = 1")
    run(counted, cell)
    run(counted, "warnings.filters[:] = [f for f in warnings.filters if getattr(f[1], 'pattern', None) != 'cellcache-first']")
    run(counted, "warnings.filterwarnings('error', message='cellcache-mine')")
    try:
        run(counted, cell)
        run(counted, "out = sorted(getattr(f[1], 'pattern', '') for f in warnings.filters if f[1] is not None)")
        assert hit() and {"cellcache-first", "cellcache-mine"} <= set(counted.user_ns["out"])
    finally:
        run(counted, "warnings.filters[:] = [f for f in warnings.filters if getattr(f[1], 'pattern', '') not in ('cellcache-first', 'cellcache-mine')]")


def test_a_hit_sets_only_the_pandas_options_its_run_changed(workdir, store_dir):
    """A run that first imported pandas stores its options whole. Setting every one of them on a hit fired
    pandas' option callbacks: `plotting.matplotlib.register_converters` imports matplotlib, which a run had
    not, and the matplotlib probe then keyed the next drawing cell (sk_kmeans_digits, issue 24)."""
    cell = "%%cached loads\nimport pandas as pd\nx = 1"
    read = "import sys\nout = 'matplotlib' in sys.modules"
    first = kernel(workdir, store_dir, cell, read)
    again = kernel(workdir, store_dir, cell, read)
    assert again["hit"] and first["out"] is again["out"] is False


def test_rcparams_read_as_an_attribute_is_keyed_as_its_probe_keys_it(counted):
    """`plt.rcParams[...] = ...` read `plt.rcParams` whole, backend and `interactive` included, which a hit of
    `%matplotlib inline` (or `matplotlib.interactive`) does not set again: the cell missed in every new kernel
    (sm_plots_boxplots, issue 24)."""
    run(counted, "import matplotlib\nimport matplotlib.pyplot as plt\nmatplotlib.interactive(False)\nplt.rcdefaults()")
    turns_on = cached("matplotlib.interactive(True)\nx = 1", "turns_on")
    styles = cached("plt.rcParams['lines.linewidth'] = 3\ny = 2", "styles")
    try:
        for cell in (turns_on, styles):
            run(counted, cell)
        run(counted, "matplotlib.interactive(False)\nplt.rcdefaults()")  # a new kernel
        run(counted, turns_on)
        assert hit()
        run(counted, styles)
        assert hit() and counted.user_ns["runs"].n == 2
        assert plt_rc(counted, "lines.linewidth") == 3
    finally:
        run(counted, "matplotlib.interactive(False)\nplt.rcdefaults()")


def test_a_cell_that_names_a_setting_the_probe_leaves_out_is_keyed_by_it(counted):
    run(counted, "import matplotlib\nimport matplotlib.pyplot as plt\nmatplotlib.interactive(False)")
    reads = cached("on = plt.rcParams['interactive']", "reads")
    try:
        run(counted, reads)
        run(counted, "matplotlib.interactive(True)")
        run(counted, reads)
        assert not hit() and counted.user_ns["on"] is True
    finally:
        run(counted, "matplotlib.interactive(False)")


def plt_rc(shell, name):
    return shell.user_ns["plt"].rcParams[name]


def test_a_cell_that_first_imports_matplotlib_and_styles_hits_when_run_again(workdir, store_dir):
    cell = "%%cached first\nimport matplotlib.pyplot as plt\nplt.rcParams['lines.linewidth'] = 2\nz = 1"
    assert kernel(workdir, store_dir, cell, cell)["hit"]
