"""Auto mode in a real InteractiveShell: every cell a stage where it pays, side effects never skipped."""
from __future__ import annotations

import socket
import sys
import threading
from pathlib import Path
import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from traitlets.config import Config

import cellcache
from cellcache import config as _config
from cellcache.cell import auto, cost
from cellcache.errors import ConfigError
from cellcache.store.local import LocalStore
from tests.conftest import run

SLOW = "import time\ntime.sleep(0.08)\n"  # over the default 50 ms: worth caching


@pytest.fixture
def project(workdir: Path) -> Path:
    (workdir / "pyproject.toml").write_text("[project]\nname = 'demo'\n")
    return workdir


@pytest.fixture
def auto_shell(shell: InteractiveShell, project: Path) -> InteractiveShell:
    shell.run_line_magic("cellcache", "auto")
    return shell


def fresh_shell(store_dir: Path) -> InteractiveShell:
    InteractiveShell.clear_instance()
    config = Config()
    config.HistoryManager.hist_file = ":memory:"
    sh = InteractiveShell.instance(config=config)
    sh.run_line_magic("load_ext", "cellcache")
    return sh


def entries(store_dir: Path) -> int:
    return len(LocalStore(store_dir).index.entries())


# the switches -----------------------------------------------------------------------------


def test_magic_switches_auto_mode_on_and_off(auto_shell: InteractiveShell) -> None:
    run(auto_shell, SLOW + "a = 1", cell_id="c1")
    assert (cellcache.last_run().name, cellcache.last_run().status) == ("c1", "miss")
    run(auto_shell, SLOW + "a = 1", cell_id="c1")
    assert cellcache.last_run().status == "hit"
    auto_shell.run_line_magic("cellcache", "auto off")
    run(auto_shell, SLOW + "b = 2", cell_id="c2")
    assert cellcache.last_run().name == "c1"  # not a stage: nothing reported
    assert auto_shell.user_ns["b"] == 2


def test_magic_refuses_a_malformed_auto_command(shell: InteractiveShell) -> None:
    with pytest.raises(UsageError):
        shell.run_line_magic("cellcache", "auto sideways")


@pytest.mark.parametrize("how", ["env", "pyproject"])
def test_auto_is_on_when_the_extension_loads(how: str, project: Path, store_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CELLCACHE_DIR", str(store_dir))
    if how == "env":
        monkeypatch.setenv("CELLCACHE_AUTO", "1")
    else:
        (project / "pyproject.toml").write_text("[tool.cellcache]\nauto = true\n")
    sh = fresh_shell(store_dir)
    try:
        run(sh, SLOW + "v = 3", cell_id="loaded")
        assert (cellcache.last_run().name, cellcache.last_run().status) == ("loaded", "miss")
    finally:
        sh.run_line_magic("unload_ext", "cellcache")
        InteractiveShell.clear_instance()


def test_thresholds_are_durations_with_a_unit(tmp_path: Path) -> None:
    assert _config.resolve(cwd=tmp_path, env={"CELLCACHE_AUTO_MIN_SECONDS": "20ms"}).auto_min_seconds == pytest.approx(0.02)
    with pytest.raises(ConfigError, match="unit"):
        _config.resolve(cwd=tmp_path, env={"CELLCACHE_AUTO_MIN_SECONDS": "20"})
    (tmp_path / "pyproject.toml").write_text("[tool.cellcache]\nauto_min_seconds = 0.02\n")
    with pytest.raises(ConfigError, match="unit"):
        _config.resolve(cwd=tmp_path, env={})


# naming and the cells that are not stages -------------------------------------------------------


def test_a_cell_without_an_id_is_named_from_its_code(auto_shell: InteractiveShell) -> None:
    run(auto_shell, SLOW + "n = 1")
    assert cellcache.last_run().name.startswith("cell-") and len(cellcache.last_run().name) == 13


def test_explicit_cached_wins(auto_shell: InteractiveShell) -> None:
    run(auto_shell, "%%cached mine\n" + SLOW + "m = 1", cell_id="c9")
    assert (cellcache.last_run().name, cellcache.last_run().status) == ("mine", "miss")
    run(auto_shell, "%%cached mine\n" + SLOW + "m = 1", cell_id="c9")
    assert (cellcache.last_run().name, cellcache.last_run().status) == ("mine", "hit")
    rows = {r.name: r for r in cellcache.stats()}
    assert not rows["mine"].auto  # an explicit step is not counted as auto mode's


def test_a_cell_with_its_own_magic_runs_through_it(auto_shell: InteractiveShell) -> None:
    run(auto_shell, "%%capture captured\nprint('hidden')\nk = 4", cell_id="cap")
    assert cellcache.last_run() is None
    assert auto_shell.user_ns["k"] == 4 and "hidden" in auto_shell.user_ns["captured"].stdout


def test_first_line_off_runs_plainly(auto_shell: InteractiveShell, store_dir: Path) -> None:
    run(auto_shell, "# cellcache: off\n" + SLOW + "o = 1", cell_id="off")
    assert (cellcache.last_run().status, cellcache.last_run().reason) == ("plain", auto.OFF)
    assert entries(store_dir) == 0


def test_batch_markers_carry_the_id_and_the_tag() -> None:
    sent = auto.mark("x = 1\n", "abc")
    assert auto.unmark(sent) == ("x = 1\n", "abc", False)
    assert auto.unmark(auto.mark("x = 1", "abc", ["no-cache"]))[2] is True
    assert auto.mark("%%time\nx = 1", "abc") == "%%time\nx = 1"  # its body would carry the comment


def test_a_marked_cell_is_named_by_its_marker_and_no_cache_runs_plainly(auto_shell: InteractiveShell, store_dir: Path) -> None:
    run(auto_shell, auto.mark(SLOW + "t = 1", "from-batch"))
    assert (cellcache.last_run().name, cellcache.last_run().status) == ("from-batch", "miss")
    run(auto_shell, auto.mark(SLOW + "u = 1", "tagged", ["no-cache"]))
    assert (cellcache.last_run().status, cellcache.last_run().reason) == ("plain", auto.NO_CACHE)
    assert entries(store_dir) == 1


# what a plain run shows is what an auto run shows --------------------------------------------------


def _shown(shell: InteractiveShell, capsys: pytest.CaptureFixture[str], source: str) -> str:
    shell.run_cell(source, store_history=True)
    return capsys.readouterr().out


def test_tracebacks_and_out_are_as_in_a_plain_run(shell: InteractiveShell, project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shell.colors = "nocolor"
    cells = ["x = 21\nx * 2", "x * 2;", "def f():\n    return 1 / 0\nf()"]
    plain = [_shown(shell, capsys, c).replace(f"In[{n}]", "In[N]") for n, c in enumerate(cells, start=1)]
    shell.run_line_magic("cellcache", "auto")
    capsys.readouterr()
    start = shell.execution_count
    shown = [_shown(shell, capsys, c).replace(f"In[{n}]", "In[N]") for n, c in enumerate(cells, start=start)]
    assert [s.replace(f"Out[{start}]", "Out[1]") for s in shown] == plain
    assert "ZeroDivisionError" in shown[2] and "----> 2     return 1 / 0" in shown[2]
    assert shell.user_ns["Out"][start] == 42


# the cost rule ------------------------------------------------------------------------------------


class Counted:
    """An input whose fingerprint is counted: cellcache's pickle fallback calls __reduce_ex__."""

    calls = 0

    def __reduce_ex__(self, protocol: int) -> tuple:
        Counted.calls += 1
        return (Counted, ())


def test_a_cheap_cell_decides_at_its_end_then_is_never_fingerprinted(auto_shell: InteractiveShell, store_dir: Path) -> None:
    auto_shell.user_ns["c"] = Counted()
    Counted.calls = 0
    run(auto_shell, "c\ny = 1", cell_id="cheap")
    first = cellcache.last_run()
    assert first.status == "plain" and first.reason.startswith("cheap: ") and first.reason.endswith(" ms")
    assert Counted.calls > 0  # a new cell: fingerprinted, in case it turns out expensive
    Counted.calls = 0
    for _ in range(3):
        run(auto_shell, "c\ny = 1", cell_id="cheap")
        assert cellcache.last_run().status == "plain"
    assert Counted.calls == 0
    assert entries(store_dir) == 0


def test_a_cheap_cell_in_a_new_session_is_known_from_the_store(auto_shell: InteractiveShell, store_dir: Path) -> None:
    run(auto_shell, "y = 1", cell_id="known")
    cellcache.stats()  # the session's run records are written, as when its kernel exits
    auto_shell.run_line_magic("unload_ext", "cellcache")
    auto_shell.run_line_magic("load_ext", "cellcache")
    auto_shell.run_line_magic("cellcache", "auto")
    auto_shell.user_ns["c"] = Counted()
    Counted.calls = 0
    run(auto_shell, "c\ny = 1", cell_id="known")  # new code, same step: its history says cheap
    assert cellcache.last_run().reason.startswith("cheap")
    assert Counted.calls == 0


def test_an_expensive_cell_is_stored_and_restored(auto_shell: InteractiveShell, store_dir: Path) -> None:
    run(auto_shell, SLOW + "big = list(range(10))", cell_id="slow")
    assert cellcache.last_run().status == "miss"
    auto_shell.user_ns.pop("big")
    run(auto_shell, SLOW + "big = list(range(10))", cell_id="slow")
    assert cellcache.last_run().status == "hit" and auto_shell.user_ns["big"] == list(range(10))
    assert {r.name: r.auto for r in cellcache.stats()}["slow"] is True
    assert "auto mode: 1 step, 1 hits, 1 misses, 0 plain" in cellcache.api.stats_text()


def test_a_cell_that_became_expensive_is_cached_from_then_on(auto_shell: InteractiveShell) -> None:
    auto_shell.user_ns["pause"] = 0.0
    run(auto_shell, "import time\ntime.sleep(pause)\nslept = pause", cell_id="grows")
    assert cellcache.last_run().reason.startswith("cheap")
    auto_shell.user_ns["pause"] = 0.08
    run(auto_shell, "import time\ntime.sleep(pause)\nslept = pause", cell_id="grows")  # decided on last time's cost: plain
    assert cellcache.last_run().status == "plain"
    run(auto_shell, "import time\ntime.sleep(pause)\nslept = pause", cell_id="grows")  # this time's cost: a stage
    assert cellcache.last_run().status == "miss"


def test_a_cell_that_only_imports_runs_plainly_however_slow(auto_shell: InteractiveShell, store_dir: Path) -> None:
    run(auto_shell, SLOW + "import json\nfrom os.path import join", cell_id="imports")
    assert (cellcache.last_run().status, cellcache.last_run().reason) == ("plain", auto.IMPORTS)
    run(auto_shell, SLOW + "import json\nfrom os.path import join", cell_id="imports")
    assert (cellcache.last_run().status, cellcache.last_run().reason) == ("plain", auto.IMPORTS)
    assert entries(store_dir) == 0
    run(auto_shell, SLOW + "import json\nprint('shown')", cell_id="imports-and-shows")
    assert cellcache.last_run().status == "miss"  # what it showed is worth a hit


def test_thresholds_are_settings(project: Path, store_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CELLCACHE_DIR", str(store_dir))
    monkeypatch.setenv("CELLCACHE_AUTO", "1")
    monkeypatch.setenv("CELLCACHE_AUTO_MIN_SECONDS", "1s")
    sh = fresh_shell(store_dir)
    try:
        run(sh, SLOW + "w = 1", cell_id="under-a-second")
        assert (cellcache.last_run().status, cellcache.last_run().reason[:6]) == ("plain", "cheap:")
    finally:
        sh.run_line_magic("unload_ext", "cellcache")
        InteractiveShell.clear_instance()


def test_a_cell_whose_restore_would_cost_more_is_not_stored(project: Path, store_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CELLCACHE_DIR", str(store_dir))
    monkeypatch.setenv("CELLCACHE_AUTO", "1")
    monkeypatch.setenv("CELLCACHE_AUTO_HIT_SECONDS", "2s")  # as if a hit were that slow
    sh = fresh_shell(store_dir)
    try:
        run(sh, SLOW + "r = 1", cell_id="dear")
        assert cellcache.last_run().status == "plain"
        assert cellcache.last_run().reason.startswith("restore would cost more: 2.0 s > ")
        assert entries(store_dir) == 0
    finally:
        sh.run_line_magic("unload_ext", "cellcache")
        InteractiveShell.clear_instance()


def test_the_rule_uses_measured_restores_over_estimates() -> None:
    th = cost.Thresholds(min_seconds=0.01, hit_seconds=0.004)
    assert cost.decide(0.005, cost.StepCost(), th) == cost.Decision(False, "cheap: 5 ms")
    assert cost.decide(0.1, cost.StepCost(), th).cache
    measured = cost.StepCost(run_seconds=0.04, restore_seconds=0.12)
    assert cost.decide(0.04, measured, th) == cost.Decision(False, "restore would cost more: 120 ms > 40 ms")
    big = cost.StepCost(run_seconds=0.1, output_bytes=400_000_000)  # a second to read back, estimated
    assert not cost.before_run(big, th).cache
    assert cost.before_run(None, th).cache  # a new step decides at its end


def test_explain_gives_each_decision(auto_shell: InteractiveShell, capsys: pytest.CaptureFixture[str]) -> None:
    auto_shell.run_line_magic("cellcache", "auto --explain")
    run(auto_shell, "e = 1", cell_id="ex")
    run(auto_shell, "e = 1", cell_id="ex")
    out = capsys.readouterr().out
    assert out.count("cellcache: ex: plain: cheap: ") == 2


# side effects -------------------------------------------------------------------------------------


def test_writes_inside_the_project_become_outs(auto_shell: InteractiveShell, project: Path) -> None:
    cell = SLOW + "from pathlib import Path\nPath('results.csv').write_text('a,b\\n1,2\\n')"
    run(auto_shell, cell, cell_id="writer")
    assert cellcache.last_run().status == "miss"
    (project / "results.csv").unlink()
    run(auto_shell, cell, cell_id="writer")
    assert cellcache.last_run().status == "hit"
    assert (project / "results.csv").read_text() == "a,b\n1,2\n"  # written back by the hit


def test_appending_to_a_file_makes_the_cell_plain(auto_shell: InteractiveShell, project: Path) -> None:
    cell = SLOW + "with open('log.txt', 'a') as log:\n    log.write('ran\\n')\nlogged = True"
    for expected in ("ran\n", "ran\nran\n"):
        run(auto_shell, cell, cell_id="appends")
        assert (cellcache.last_run().status, cellcache.last_run().reason) == ("plain", "side effect: appends to log.txt")
        assert (project / "log.txt").read_text() == expected  # each run appends, as without cellcache


def test_removing_a_file_makes_the_cell_plain_and_an_atomic_write_is_an_out(auto_shell: InteractiveShell, project: Path) -> None:
    (project / "old.csv").write_text("x")
    run(auto_shell, SLOW + "import os\nos.remove('old.csv')\ngone = True", cell_id="remover")
    assert (cellcache.last_run().status, cellcache.last_run().reason) == ("plain", "side effect: removes old.csv")
    atomic = SLOW + "import os\nopen('new.tmp', 'w').write('v1')\nos.replace('new.tmp', 'new.csv')\ndone = True"
    run(auto_shell, atomic, cell_id="atomic")
    assert cellcache.last_run().status == "miss"
    (project / "new.csv").unlink()
    run(auto_shell, atomic, cell_id="atomic")
    assert cellcache.last_run().status == "hit" and (project / "new.csv").read_text() == "v1"
    assert not (project / "new.tmp").exists()


def test_writes_outside_the_project_make_the_cell_plain_from_then_on(auto_shell: InteractiveShell, tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    cell = SLOW + f"open({str(outside)!r}, 'w').write('x')"
    run(auto_shell, cell, cell_id="out")
    assert cellcache.last_run().status == "plain"
    assert cellcache.last_run().reason == f"side effect: writes {outside}"
    outside.unlink()
    run(auto_shell, cell, cell_id="out")
    assert cellcache.last_run().reason == f"side effect: writes {outside}"
    assert outside.exists()  # the write happened again


def test_network_connections_make_the_cell_plain(auto_shell: InteractiveShell) -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    accepted: list[object] = []

    def accept() -> None:
        for _ in range(2):
            conn, _ = server.accept()
            accepted.append(conn)
            conn.close()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    cell = SLOW + f"import socket\ns = socket.create_connection(('127.0.0.1', {port}))\ns.close()"
    try:
        for _ in range(2):
            run(auto_shell, cell, cell_id="net")
            assert cellcache.last_run().status == "plain"
            assert cellcache.last_run().reason == f"uses the network (127.0.0.1:{port})"
        thread.join(timeout=5)
        assert len(accepted) == 2  # connected both times: never skipped
    finally:
        server.close()


def test_subprocesses_make_the_cell_plain(auto_shell: InteractiveShell, project: Path) -> None:
    cell = f"import subprocess\nsubprocess.run([{sys.executable!r}, '-c', 'open(\"ran.txt\", \"a\").write(\"x\")'], check=True)"
    for expected in ("x", "xx"):
        run(auto_shell, cell, cell_id="proc")
        assert cellcache.last_run().status == "plain"
        assert cellcache.last_run().reason.startswith("side effect: starts a subprocess (")
        assert (project / "ran.txt").read_text() == expected


def test_interactive_widgets_make_the_cell_plain(auto_shell: InteractiveShell) -> None:
    cell = SLOW + (
        "from IPython.display import display\n"
        "display({'application/vnd.jupyter.widget-view+json': {'model_id': 'm', 'version_major': 2, 'version_minor': 0},"
        " 'text/plain': 'IntSlider()'}, raw=True)"
    )
    run(auto_shell, cell, cell_id="widget")
    assert (cellcache.last_run().status, cellcache.last_run().reason) == ("plain", "side effect: shows an interactive widget")


def test_cells_that_only_display_are_cached_with_their_displays(auto_shell: InteractiveShell, capsys: pytest.CaptureFixture[str]) -> None:
    cell = SLOW + "print('table:')\nfrom IPython.display import display, Markdown\ndisplay(Markdown('**bold**'))"
    run(auto_shell, cell, cell_id="shows")
    first = capsys.readouterr().out
    run(auto_shell, cell, cell_id="shows")
    assert cellcache.last_run().status == "hit"
    again = capsys.readouterr().out
    assert "table:" in again and "Markdown" in again and again.count("table:") == first.count("table:")

