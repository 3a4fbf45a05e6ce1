"""Restore-or-run, in a real InteractiveShell with a fresh store per test."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
from IPython.utils.capture import capture_output

import cellcache
from cellcache.cell import key as key_module
from cellcache.errors import CacheWarning
from tests.conftest import run


def counting_cell(body: str, flags: str = "step") -> str:
    """A cached cell that also counts its real executions in `runs`."""
    return f"%%cached {flags}\nruns.append(1)\n{body}"


def executions(shell) -> int:
    return len(shell.user_ns["runs"])


@pytest.fixture
def counted(shell):
    # `runs` is a list the cell appends to; it is mutated, so it is an input and an output.
    # Use a separate counter outside the namespace instead, so counting never changes a key.
    shell.user_ns["runs"] = _Counter()
    return shell


class _Counter:
    """Counts real executions; fingerprints as a constant, so it never changes the key."""

    def __init__(self) -> None:
        self.n = 0

    def append(self, _: int) -> None:
        self.n += 1

    def __len__(self) -> int:
        return self.n

    def __reduce__(self):  # constant fingerprint and pickle: counting must not be part of the key
        return (_Counter, ())


# ---------------------------------------------------------------- hits and misses


def test_second_run_is_a_hit_and_restores_outputs(counted):
    run(counted, "x = 21")
    cell = counting_cell("y = x * 2\nz = [y, y]")
    run(counted, cell)
    assert cellcache.last_run().hit is False
    assert counted.user_ns["y"] == 42
    del counted.user_ns["y"], counted.user_ns["z"]
    run(counted, cell)
    run_info = cellcache.last_run()
    assert run_info.hit is True and run_info.status == "hit"
    assert executions(counted) == 1
    assert counted.user_ns["y"] == 42 and counted.user_ns["z"] == [42, 42]


def test_step_run_fields(counted):
    run(counted, counting_cell("import time\ntime.sleep(0.2)\nv = 1", "timed"))
    first = cellcache.last_run()
    assert (first.name, first.hit, first.saved_seconds) == ("timed", False, 0.0)
    assert first.seconds >= 0.2 and len(first.key) == 32 and first.reason
    run(counted, counting_cell("import time\ntime.sleep(0.2)\nv = 1", "timed"))
    second = cellcache.last_run()
    assert second.hit and second.key == first.key
    assert second.saved_seconds > 0.1 and second.seconds < first.seconds


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ("y = x + 1", "y = x + 2"),  # code
        ("y = x + 1", "y = x + 1\nw = 0"),  # code: an added statement
    ],
)
def test_code_change_is_a_miss(counted, before, after):
    run(counted, "x = 1")
    run(counted, counting_cell(before))
    run(counted, counting_cell(after))
    assert executions(counted) == 2
    assert cellcache.last_run().reason == "code changed"


def test_comment_and_formatting_changes_are_hits(counted):
    run(counted, "x = 1")
    run(counted, counting_cell("y = x + 1"))
    run(counted, counting_cell("# a comment\ny   =   x+1   # trailing\n\n"))
    assert executions(counted) == 1 and cellcache.last_run().hit


def test_input_value_change_is_a_miss(counted):
    run(counted, "x = 1")
    run(counted, counting_cell("y = x + 1"))
    run(counted, "x = 2")
    run(counted, counting_cell("y = x + 1"))
    assert executions(counted) == 2 and counted.user_ns["y"] == 3
    assert cellcache.last_run().reason.startswith("input `x` changed")


def test_unrelated_variable_change_is_a_hit(counted):
    run(counted, "x = 1\nunrelated = 1")
    run(counted, counting_cell("y = x + 1"))
    run(counted, "unrelated = 2")
    run(counted, counting_cell("y = x + 1"))
    assert executions(counted) == 1


def test_name_bound_before_it_is_read_is_not_an_input(counted):
    run(counted, "x = 1")
    cell = counting_cell("x = 10\ny = x + 1")
    run(counted, cell)
    run(counted, "x = 2")
    run(counted, cell)
    assert executions(counted) == 1 and counted.user_ns["y"] == 11


def test_name_bound_in_one_branch_is_an_input(counted):
    run(counted, "x = 1\nflag = False")
    cell = counting_cell("if flag:\n    x = 10\ny = x + 1")
    run(counted, cell)
    run(counted, "x = 2")
    run(counted, cell)
    assert executions(counted) == 2 and counted.user_ns["y"] == 3


def test_input_that_becomes_defined_is_a_miss(counted):
    # `len` is a builtin until the user shadows it: the new input must not be ignored.
    cell = counting_cell("n = len([1, 2])")
    run(counted, cell)
    run(counted, "len = lambda seq: 99")
    run(counted, cell)
    assert executions(counted) == 2 and counted.user_ns["n"] == 99
    assert cellcache.last_run().reason == "input `len` is new"


def test_function_body_change_is_a_miss(counted):
    run(counted, "def f(v):\n    return v + 1")
    cell = counting_cell("y = f(1)")
    run(counted, cell)
    run(counted, "def f(v):\n    return v + 2")
    run(counted, cell)
    assert executions(counted) == 2 and counted.user_ns["y"] == 3


def test_strategy_is_part_of_the_key(counted):
    run(counted, "x = 1")
    run(counted, counting_cell("y = x", "step"))
    run(counted, counting_cell("y = x", "step -s input_hash"))
    assert executions(counted) == 2
    assert cellcache.last_run().reason.startswith("strategy changed (code_hash → input_hash)")


def test_input_hash_ignores_code_edits_but_not_inputs(counted):
    run(counted, "x = 1")
    run(counted, counting_cell("y = x + 1", "step -s input_hash"))
    run(counted, counting_cell("y = x + 1  # now with a note\nnote = 'edited'", "step -s input_hash"))
    assert executions(counted) == 1
    run(counted, "x = 5")
    run(counted, counting_cell("y = x + 1", "step -s input_hash"))
    assert executions(counted) == 2


def test_python_version_is_part_of_the_key(counted, monkeypatch):
    run(counted, counting_cell("y = 1"))
    monkeypatch.setattr(key_module, "PYTHON_VERSION", "CPython 9.9.9")
    run(counted, counting_cell("y = 1"))
    assert executions(counted) == 2
    assert cellcache.last_run().reason.startswith("Python version changed")


def test_format_version_is_part_of_the_key(counted, monkeypatch):
    run(counted, counting_cell("y = 1"))
    monkeypatch.setattr(key_module, "FORMAT_VERSION", "999")
    run(counted, counting_cell("y = 1"))
    assert executions(counted) == 2
    assert cellcache.last_run().reason == "cache format changed"


def test_local_module_edit_is_a_miss(counted, workdir):
    (workdir / "helpers_mod.py").write_text("def g():\n    return 1\n")
    sys.path.insert(0, str(workdir))
    try:
        cell = counting_cell("import helpers_mod\ny = helpers_mod.g()")
        run(counted, cell)
        run(counted, cell)
        assert executions(counted) == 1
        (workdir / "helpers_mod.py").write_text("def g():\n    return 2\n")
        sys.modules.pop("helpers_mod", None)
        run(counted, cell)
        assert executions(counted) == 2 and counted.user_ns["y"] == 2
        assert cellcache.last_run().reason == "module helpers_mod changed"
    finally:
        sys.path.remove(str(workdir))
        sys.modules.pop("helpers_mod", None)


def test_a_comment_only_edit_in_a_local_module_is_a_hit(counted, workdir):
    (workdir / "commented_mod.py").write_text("def g():\n    return 1\n")
    sys.path.insert(0, str(workdir))
    try:
        cell = counting_cell("import commented_mod\ny = commented_mod.g()")
        run(counted, cell)
        (workdir / "commented_mod.py").write_text("# why g returns 1\n\ndef g():\n    return 1  # the answer\n")
        sys.modules.pop("commented_mod", None)
        run(counted, cell)
        assert executions(counted) == 1 and cellcache.last_run().hit
    finally:
        sys.path.remove(str(workdir))
        sys.modules.pop("commented_mod", None)


def test_step_name_is_not_part_of_the_key(counted):
    run(counted, counting_cell("y = 1", "first_name"))
    run(counted, counting_cell("y = 1", "renamed"))
    assert executions(counted) == 1


def test_default_name_is_the_cell_id_then_a_code_digest(counted):
    run(counted, "%%cached\ny = 1", cell_id="c0ffee-cell")
    assert cellcache.last_run().name == "c0ffee-cell"
    run(counted, "%%cached\nw = 2")
    name = cellcache.last_run().name
    assert name.startswith("cell-") and len(name) == len("cell-") + 8


# ---------------------------------------------------------------- outputs


def test_aliasing_between_outputs_survives_and_values_are_fresh_copies(counted):
    cell = counting_cell("a = [1, 2]\nb = a\nc = {'k': a}")
    run(counted, cell)
    run(counted, cell)
    ns = counted.user_ns
    assert ns["b"] is ns["a"] and ns["c"]["k"] is ns["a"]
    ns["a"].append(3)  # mutating a restored value must not leak into the next restore
    run(counted, cell)
    assert counted.user_ns["a"] == [1, 2] and executions(counted) == 1


def test_mutated_input_is_restored(counted):
    run(counted, "data = [3, 1, 2]")
    cell = counting_cell("data.sort()\ntotal = sum(data)")
    run(counted, cell)
    assert counted.user_ns["data"] == [1, 2, 3]
    run(counted, "data = [3, 1, 2]")
    run(counted, cell)
    assert executions(counted) == 1
    assert counted.user_ns["data"] == [1, 2, 3] and counted.user_ns["total"] == 6


def test_deletes_are_replayed(counted):
    run(counted, "tmp = 5")
    cell = counting_cell("y = tmp * 2\ndel tmp")
    run(counted, cell)
    assert "tmp" not in counted.user_ns
    run(counted, "tmp = 5")
    run(counted, cell)
    assert executions(counted) == 1 and "tmp" not in counted.user_ns and counted.user_ns["y"] == 10


def test_stdout_stderr_displays_and_last_value_are_replayed_in_order(counted):
    cell = counting_cell(
        textwrap.dedent(
            """
            import sys
            from IPython.display import display, HTML
            print("first line")
            print("to stderr", file=sys.stderr)
            display(HTML("<b>bold</b>"))
            print("after display")
            41 + 1
            """
        )
    )
    with capture_output() as miss:
        run(counted, cell)
    with capture_output() as hit:
        run(counted, cell)
    assert executions(counted) == 1
    for captured in (miss, hit):
        assert "first line\n" in captured.stdout and "after display\n" in captured.stdout
        assert "to stderr" in captured.stderr
        # The hit marker is cellcache's own display, not the cell's.
        assert [o.data.get("text/html") for o in captured.outputs if "cellcache" not in (o.metadata or {})] == ["<b>bold</b>"]
        assert "42" in captured.stdout  # Out[] of the last expression
    assert hit.stdout.index("first line") < hit.stdout.index("after display") < hit.stdout.index("42")


def test_semicolon_suppresses_the_replayed_value(counted):
    with capture_output() as miss:
        run(counted, counting_cell("41 + 1;"))
    with capture_output() as hit:
        run(counted, counting_cell("41 + 1;"))
    assert executions(counted) == 1
    assert "42" not in miss.stdout and "42" not in hit.stdout


def test_last_value_that_is_an_output_is_the_restored_object(counted):
    cell = counting_cell("frame = {'a': 1}\nframe")
    run(counted, cell)
    run(counted, cell)
    assert counted.user_ns["_"] is counted.user_ns["frame"]


def test_matplotlib_inline_figure_is_replayed(counted):
    pytest.importorskip("matplotlib")
    from matplotlib_inline.backend_inline import configure_inline_support

    # What `%matplotlib inline` does in a kernel; a terminal-less InteractiveShell has no GUI hooks for the magic.
    run(counted, "import matplotlib\nmatplotlib.use('module://matplotlib_inline.backend_inline')")
    configure_inline_support(counted, "module://matplotlib_inline.backend_inline")
    cell = counting_cell("import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nplt.title('trend')\nplt.show()")
    with capture_output() as miss:
        run(counted, cell)
    with capture_output() as hit:
        run(counted, cell)
    assert executions(counted) == 1
    miss_png = [o.data["image/png"] for o in miss.outputs if "image/png" in o.data]
    hit_png = [o.data["image/png"] for o in hit.outputs if "image/png" in o.data]
    assert len(miss_png) == 1 and hit_png == miss_png


# ---------------------------------------------------------------- a miss behaves like no magic


def test_exception_is_not_cached_and_fails_the_cell(counted):
    cell = counting_cell("y = 1\nraise ValueError('boom')")
    with capture_output() as captured:
        result = counted.run_cell(cell)
    assert not result.success and isinstance(result.error_in_exec, ValueError)
    assert "boom" in captured.stdout + captured.stderr
    # the traceback points at the user's line, not at cellcache's frames
    tb = re.sub(r"\x1b\[[0-9;]*m", "", captured.stdout + captured.stderr)
    assert "raise ValueError('boom')" in tb and "cellcache/runner.py" not in tb
    counted.run_cell(cell)
    assert executions(counted) == 2  # nothing was stored
    assert cellcache.last_run().status == "error"


def test_line_magics_and_shell_commands_work(counted, workdir):
    cell = counting_cell("%time v = 6 * 7\nlisting = !echo shell-says-hi\nw = listing[0]")
    with capture_output() as captured:
        run(counted, cell)
    assert counted.user_ns["v"] == 42 and counted.user_ns["w"] == "shell-says-hi"
    assert "Wall time" in captured.stdout
    run(counted, cell)
    assert executions(counted) == 1 and counted.user_ns["w"] == "shell-says-hi"


def test_live_output_appears_once_on_a_miss(counted):
    with capture_output() as captured:
        run(counted, counting_cell("print('live')"))
    assert captured.stdout.count("live") == 1


# ---------------------------------------------------------------- switches


def test_force_reruns_and_replaces(counted):
    run(counted, counting_cell("import time\ny = time.perf_counter_ns()"))
    first = counted.user_ns["y"]
    run(counted, counting_cell("import time\ny = time.perf_counter_ns()", "step --force"))
    forced = counted.user_ns["y"]
    assert executions(counted) == 2 and cellcache.last_run().reason == "forced (--force)"
    run(counted, counting_cell("import time\ny = time.perf_counter_ns()"))
    assert executions(counted) == 2 and counted.user_ns["y"] == forced != first


def test_strategy_off_always_runs_and_stores_nothing(counted, store_dir):
    for _ in range(2):
        run(counted, counting_cell("y = 1", "step -s off"))
    assert executions(counted) == 2
    assert cellcache.last_run().status == "uncached"
    assert not list((store_dir / "entries").glob("*/*/*.json"))


def test_ignore_leaves_a_variable_out_of_the_key(counted):
    run(counted, "x = 1\nlogger = 'a'")
    run(counted, counting_cell("y = x\nz = logger", "step -i logger"))
    run(counted, "logger = 'b'")
    run(counted, counting_cell("y = x\nz = logger", "step -i logger"))
    assert executions(counted) == 1


def test_disable_env_runs_plainly(store_dir, workdir, monkeypatch):
    from IPython.core.interactiveshell import InteractiveShell

    monkeypatch.setenv("CELLCACHE_DISABLE", "1")
    monkeypatch.setenv("CELLCACHE_DIR", str(store_dir))
    InteractiveShell.clear_instance()
    sh = InteractiveShell.instance()
    try:
        sh.run_line_magic("load_ext", "cellcache")
        sh.user_ns["runs"] = _Counter()
        run(sh, counting_cell("y = 1"))
        run(sh, counting_cell("y = 1"))
        assert executions(sh) == 2 and not store_dir.exists()
        assert cellcache.last_run().reason == "cellcache disabled"
    finally:
        sh.run_line_magic("unload_ext", "cellcache")
        InteractiveShell.clear_instance()


def test_on_off_switch(counted):
    run(counted, counting_cell("y = 1"))
    run(counted, "%cellcache off")
    run(counted, counting_cell("y = 1"))
    assert executions(counted) == 2
    run(counted, "%cellcache on")
    run(counted, counting_cell("y = 1"))
    assert executions(counted) == 2


def test_ttl_expired_entry_is_a_miss(counted, monkeypatch):
    import time as time_module

    run(counted, counting_cell("y = 1", "step --ttl 30m"))
    real_time = time_module.time
    monkeypatch.setattr(time_module, "time", lambda: real_time() + 3600)
    run(counted, counting_cell("y = 1", "step --ttl 30m"))
    assert executions(counted) == 2 and cellcache.last_run().reason == "ttl expired"
    run(counted, counting_cell("y = 1", "step --ttl 30m"))
    assert executions(counted) == 2  # the fresh entry is within its ttl


def test_explain_prints_the_reason(counted):
    run(counted, "x = [1, 2]")
    with capture_output() as first:
        run(counted, counting_cell("y = x", "step -e"))
    run(counted, "x = [1, 2, 3]")
    with capture_output() as second:
        run(counted, counting_cell("y = x", "step -e"))
    with capture_output() as third:
        run(counted, counting_cell("y = x", "step -e"))
    assert "miss: first run of this step" in first.stdout
    assert "miss: input `x` changed (list len 2 → list len 3)" in second.stdout
    assert "step: hit" in third.stdout


# ---------------------------------------------------------------- bad input: clear message, nothing lost


def test_unpicklable_output_keeps_the_value_and_stores_the_rest(counted, store_dir):
    """Issue 24.4 reverses the old all-or-nothing rule: one unpicklable output no longer costs the others."""
    cell = counting_cell("import threading\ngood = 1\nlock = threading.Lock()")
    run(counted, cell)
    assert counted.user_ns["good"] == 1 and counted.user_ns["lock"] is not None  # the run's values stay
    assert list((store_dir / "entries").glob("*/*/*.json"))  # `good` was stored
    del counted.user_ns["good"], counted.user_ns["lock"]
    run(counted, cell)
    assert executions(counted) == 1 and counted.user_ns["good"] == 1 and "lock" not in counted.user_ns
    assert "`lock`" in cellcache.last_run().reason


def test_unfingerprintable_input_runs_uncached_with_a_warning(counted):
    run(counted, "gen = (i for i in range(3))")
    with pytest.warns(CacheWarning, match=r"input `gen` can't be fingerprinted.*--ignore gen"):
        run(counted, counting_cell("y = sum(gen)"))
    assert counted.user_ns["y"] == 3 and cellcache.last_run().status == "uncached"


def test_corrupt_blob_is_a_miss_not_a_crash(counted, store_dir):
    cell = counting_cell("y = list(range(1000))")
    run(counted, cell)
    blobs = [p for p in (store_dir / "blobs").glob("*/*") if p.parent.name != "tmp"]
    assert blobs
    for blob in blobs:
        data = bytearray(blob.read_bytes())
        data[len(data) // 2 :] = b"\x00" * (len(data) - len(data) // 2)
        blob.write_bytes(bytes(data))
    del counted.user_ns["y"]
    with pytest.warns(CacheWarning, match="broken entry"):
        run(counted, cell)
    assert executions(counted) == 2 and counted.user_ns["y"] == list(range(1000))


def test_truncated_blob_and_tampered_manifest_are_misses(counted, store_dir):
    cell = counting_cell("y = 'value'")
    run(counted, cell)
    manifest = next((store_dir / "entries").glob("*/*/*.json"))
    manifest.write_text(manifest.read_text().replace('"step":"step"', '"step":"evil"'))
    with pytest.warns(CacheWarning, match="signature"):
        run(counted, cell)
    assert executions(counted) == 2
    blob = next(p for p in (store_dir / "blobs").glob("*/*") if p.parent.name != "tmp")
    blob.write_bytes(blob.read_bytes()[:10])
    with pytest.warns(CacheWarning, match="expected"):
        run(counted, cell)
    assert executions(counted) == 3


def _can_chattr(path: Path) -> bool:
    probe = path / "probe"
    probe.mkdir()
    ok = subprocess.run(["chattr", "+i", str(probe)], capture_output=True).returncode == 0
    if ok:
        subprocess.run(["chattr", "-i", str(probe)], check=True)
    probe.rmdir()
    return ok


def test_read_only_store_keeps_the_value(counted, store_dir, tmp_path):
    if os.geteuid() != 0 or not _can_chattr(tmp_path):
        pytest.skip("needs root and chattr to make a store read-only for root")
    run(counted, counting_cell("first = 1", "warmup"))  # the store exists and works
    frozen = [store_dir, *[p for p in store_dir.rglob("*") if p.is_dir()]]
    subprocess.run(["chattr", "+i", *map(str, frozen)], check=True)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            run(counted, counting_cell("big = list(range(10))", "ro"))
        assert counted.user_ns["big"] == list(range(10))
        messages = [str(w.message) for w in caught if issubclass(w.category, CacheWarning)]
        assert any("'ro' was not stored" in m for m in messages), messages
    finally:
        subprocess.run(["chattr", "-i", *map(str, frozen)], check=True)


def test_full_disk_keeps_the_value(counted, store_dir, tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a tiny tmpfs")
    store_dir.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(store_dir)], capture_output=True).returncode:
        pytest.skip("mount is not permitted here")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            run(counted, counting_cell("import os\npayload = os.urandom(2_000_000)", "big"))
            counted.run_line_magic("cellcache", "flush")  # 2 MB is written behind: flush waits, and tells its failure
        assert len(counted.user_ns["payload"]) == 2_000_000
        messages = [str(w.message) for w in caught if issubclass(w.category, CacheWarning)]
        assert any("'big' was not stored" in m and "No space left" in m for m in messages), messages
        assert not list((store_dir / "blobs").glob("*/*.tmp"))  # no half-written blob left behind
    finally:
        subprocess.run(["umount", "-l", str(store_dir)], check=True)


# ---------------------------------------------------------------- across processes


SCRIPT = """
import os, sys
from IPython.core.interactiveshell import InteractiveShell
from traitlets.config import Config
cfg = Config(); cfg.HistoryManager.hist_file = ":memory:"
sh = InteractiveShell.instance(config=cfg)
sh.run_line_magic("load_ext", "cellcache")
sh.run_cell("names = {'b', 'a', 'c'}\\nweights = {'x': 1.5, 'y': 2.5}\\ndef scale(v):\\n    return v * 2")
r = sh.run_cell("%%cached xproc\\nresult = sorted(names), scale(weights['x'])")
r.raise_error()
import cellcache
run = cellcache.last_run()
print("RESULT", run.hit, run.key, sh.user_ns["result"])
"""


def test_hit_across_processes_and_hash_seeds(tmp_path, store_dir):
    outputs = []
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "CELLCACHE_DIR": str(store_dir), "IPYTHONDIR": str(tmp_path / "ipy")}
        proc = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        outputs.append(next(line for line in proc.stdout.splitlines() if line.startswith("RESULT")).split(maxsplit=3))
    (_, hit1, key1, value1), (_, hit2, key2, value2) = outputs
    assert (hit1, hit2) == ("False", "True")
    assert key1 == key2 and value1 == value2


def test_flags_outside_the_key_keep_a_hit(counted):
    # The strategy/format/Python components stay the same when only these change.
    run(counted, "x = 1")
    run(counted, counting_cell("y = x", "first"))
    for flags in ("renamed", "renamed --explain", "renamed --ttl 7d", "renamed -i unrelated_name"):
        run(counted, counting_cell("y = x", flags))
    assert executions(counted) == 1



def test_restore_only_never_runs_a_body_and_records_nothing(counted, store_dir):
    run(counted, counting_cell("y = 1", "kept"))
    before = {s.name: s.runs for s in cellcache.stats()}
    cellcache.api.configure_batch(restore_only=True)
    try:
        run(counted, counting_cell("y = 1", "kept"))  # a hit is restored
        assert cellcache.last_run().hit
        for flags in ("other", "other -s off"):
            result = counted.run_cell(counting_cell("z = 2", flags))
            assert not result.success and cellcache.last_run().status == "would-run"
        gen_cell = counting_cell("w = next(gen)", "ungen")
        counted.user_ns["gen"] = (i for i in range(3))
        with pytest.warns(CacheWarning):
            assert not counted.run_cell(gen_cell).success
    finally:
        cellcache.api.configure_batch()
    assert executions(counted) == 1 and "z" not in counted.user_ns and "w" not in counted.user_ns
    assert {s.name: s.runs for s in cellcache.stats()} == before


def test_aliasing_between_array_outputs_survives(counted):
    cell = counting_cell("import numpy as np\na = np.arange(6.0)\nb = a\npair = (a, b)\nframe = {'m': a}")
    run(counted, cell)
    for name in ("a", "b", "pair", "frame"):
        del counted.user_ns[name]
    run(counted, cell)
    ns = counted.user_ns
    assert executions(counted) == 1
    assert ns["b"] is ns["a"] and ns["pair"][0] is ns["a"] and ns["frame"]["m"] is ns["a"]
    ns["a"][0] = 99.0  # a mutation through one name shows through every alias, as before caching
    assert ns["b"][0] == 99.0


# ---------------------------------------------------------------- errors as the shell shows them


def _shown(shell, source: str) -> tuple[str, int]:
    with capture_output() as captured:
        result = shell.run_cell(source, store_history=True)
    return re.sub(r"\x1b\[[0-9;]*m", "", captured.stdout + captured.stderr), result.execution_count


def test_a_syntax_error_shows_exactly_the_shells_traceback(shell):
    body = "x = (1 +\n"
    plain, plain_number = _shown(shell, body)
    cached, cached_number = _shown(shell, "%%cached broken\n" + body)
    assert "During handling" not in cached and "cellcache" not in cached and "runner.py" not in cached
    assert cached.replace(f"In[{cached_number}]", "In[N]") == plain.replace(f"In[{plain_number}]", "In[N]")


def test_tracebacks_name_the_cell_the_user_ran(shell):
    shown, number = _shown(shell, "%%cached failing\ny = 1\n1 / 0")
    assert f"Cell In[{number}], line 2" in shown and f"In[{number + 1}]" not in shown


def test_invalidate_drops_every_entry_the_step_would_hit_whatever_name_stored_it(counted):
    cell = "y = x * 2"
    counted.user_ns["x"] = 4
    run(counted, counting_cell(cell, "first_name"))
    run(counted, counting_cell(cell, "second_name"))  # a renamed cell: the same key, a hit on first_name's entry
    assert cellcache.last_run().hit
    run(counted, "%cellcache invalidate second_name")
    run(counted, counting_cell(cell, "second_name"))
    assert not cellcache.last_run().hit and executions(counted) == 2


def test_invalidate_of_an_unknown_step_lists_the_known_ones_and_leaves_no_row(counted):
    from IPython.core.error import UsageError

    run(counted, counting_cell("y = 1", "known_step"))
    with pytest.raises(UsageError, match="known_step"):
        counted.run_line_magic("cellcache", "invalidate no_such_step")
    assert [s.name for s in cellcache.stats()] == ["known_step"]
