"""Loading the extension: light at load, the session built at the first cell that needs it, nothing missed before."""
from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

import cellcache
from cellcache import api
from cellcache.errors import CacheWarning
from tests.conftest import run, run_in_fresh_shell

HEAVY = ["cellcache.cell.runner", "cellcache.store.local", "cellcache.fingerprint._run", "cellcache.cell.analysis"]


def _loaded(tmp_path: Path, body: str, prelude: str = "") -> dict:
    """Which heavy modules a fresh interpreter had imported after the load, and after ``body``."""
    script = "\n".join(
        [
            "import json, sys",
            f"heavy = {HEAVY!r}",
            "after_load = [m for m in heavy if m in sys.modules]",
            textwrap.dedent(body).strip(),
            'print(json.dumps({"load": after_load, "after": [m for m in heavy if m in sys.modules]}))',
        ]
    )
    out = run_in_fresh_shell(script, tmp_path / "store", tmp_path, prelude=prelude)
    return json.loads(out.strip().splitlines()[-1])


def test_loading_imports_no_runner_store_or_walk(tmp_path):
    seen = _loaded(tmp_path, "sh.run_cell('x = 1')")
    assert seen == {"load": [], "after": []}  # a plain cell needs no session either


def test_the_first_cached_cell_builds_the_session(tmp_path):
    seen = _loaded(tmp_path, "sh.run_cell('%%cached first\\ny = 2').raise_error()\nassert sh.user_ns['y'] == 2")
    assert seen["load"] == [] and seen["after"] == HEAVY


def test_auto_mode_from_settings_makes_the_first_cell_a_stage(tmp_path):
    prelude = "import os; os.environ['CELLCACHE_AUTO'] = '1'"
    seen = _loaded(
        tmp_path,
        """
        import time
        sh.run_cell('import time\\ntime.sleep(0.08)\\nslow = 3', cell_id='c1').raise_error()
        import cellcache
        run = cellcache.last_run()
        assert (run.name, run.status) == ('c1', 'miss'), run
        """,
        prelude=prelude,
    )
    assert seen["load"] == [] and seen["after"] == HEAVY


def test_a_generator_seeded_before_any_session_is_keyed(shell):
    # The seeding cell runs before any %%cached cell: the light hook must still see it, or the generator's
    # state would be left out of the key and a re-seeded run would be served the old draw.
    run(shell, "import random\nrandom.seed(1)")
    assert api.session(shell, build=False) is not None  # a seeding cell builds the session
    run(shell, "%%cached draw\nx = random.random()")
    first = shell.user_ns["x"]
    run(shell, "random.seed(2)")
    run(shell, "%%cached draw\nx = random.random()")
    assert not cellcache.last_run().hit and shell.user_ns["x"] != first
    run(shell, "random.seed(1)")
    run(shell, "%%cached draw\nx = random.random()")
    assert cellcache.last_run().hit and shell.user_ns["x"] == first


def test_a_plain_cell_leaves_the_session_unbuilt(shell):
    run(shell, "a = 1\nprint(a)")
    assert api.session(shell, build=False) is None
    assert cellcache.last_run() is None and cellcache.flush() is None  # answered without building it
    assert api.session(shell, build=False) is None
    assert api.session(shell) is api.session(shell, build=False)  # asking for it builds it, once


def test_a_module_imported_before_the_session_is_read_as_imported(shell, workdir):
    # Imported by a plain cell, edited on disk, then used by the first cached cell. The source must have
    # been read after the import cell, before any session existed: the cell runs the imported code and is
    # keyed on it, and the edit is reported. Read only when the session is built, the edit would be keyed.
    (workdir / "helper_mod.py").write_text("def f():\n    return 1\n")
    run(shell, "import sys; sys.path.insert(0, '.')\nimport helper_mod")
    assert api.session(shell, build=False) is None
    (workdir / "helper_mod.py").write_text("def f():\n    return 2  # edited\n")
    with pytest.warns(CacheWarning, match="helper_mod changed on disk since it was imported"):
        run(shell, "%%cached uses\nv = helper_mod.f()")
    assert shell.user_ns["v"] == 1


def test_unloading_lets_go_of_the_store_files(shell):
    import gc
    import os

    run(shell, "%%cached opened\nx = 1")
    shell.run_line_magic("unload_ext", "cellcache")
    gc.collect()
    gc.disable()  # a file some earlier test left to the collector must not close mid-count
    try:
        before = len(os.listdir("/proc/self/fd"))
        for n in range(3):
            shell.run_line_magic("load_ext", "cellcache")
            run(shell, f"%%cached opened\nx = {n}")
            shell.run_line_magic("unload_ext", "cellcache")
        assert len(os.listdir("/proc/self/fd")) == before  # the index, its journal files, the writer registry
    finally:
        gc.enable()
    shell.run_line_magic("load_ext", "cellcache")  # the fixture unloads it
