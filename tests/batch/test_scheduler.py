"""cellcache.batch, the plain API behind `cellcache run` and `status`: real kernels, no mocks.

Each kernel costs one to two seconds here, so the notebooks are tiny and each
test starts only the kernels its claim needs.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Sequence

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from cellcache import batch
from cellcache.batch import RunOptions
from cellcache.store.local import LocalStore

REPO = Path(__file__).resolve().parents[2]


def write_nb(path: Path, *sources: str, ids: Sequence[str] | None = None) -> Path:
    """A notebook of code cells ("md:" makes a markdown cell), nbformat 4.5 with the given cell ids."""
    cells = [new_markdown_cell(s[3:]) if s.startswith("md:") else new_code_cell(s) for s in sources]
    for cell, cell_id in zip(cells, ids or ()):
        cell.id = cell_id
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def statuses(result: batch.NotebookResult) -> dict[int, tuple[str | None, str]]:
    return {c.index: (c.step, c.status) for c in result.cells}


def outputs_text(cell: nbformat.NotebookNode) -> str:
    parts = []
    for out in cell.outputs:
        parts.append(out.get("text", "") or out.get("data", {}).get("text/plain", ""))
    return "".join(parts)


@pytest.fixture
def store(store_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CELLCACHE_DIR", str(store_dir))
    return store_dir


class Recorder(batch.Listener):
    def __init__(self) -> None:
        self.events: list[tuple] = []

    def notebook_started(self, job: batch.Job, code_cells: int) -> None:
        self.events.append(("notebook", code_cells))

    def cell_started(self, job: batch.Job, index: int, step: str | None) -> None:
        self.events.append(("start", index, step))

    def cell_finished(self, job: batch.Job, result: batch.CellResult) -> None:
        self.events.append(("done", result.index, result.status))

    def notebook_finished(self, job: batch.Job, result: batch.NotebookResult) -> None:
        self.events.append(("finished", result.ok))


# without a kernel --------------------------------------------------------------------


def _cell(source: str, cell_id: str | None = "abc-123") -> nbformat.NotebookNode:
    cell = new_code_cell(source)
    if cell_id is None:
        del cell["id"]
    else:
        cell.id = cell_id
    return cell


@pytest.mark.parametrize(
    ("source", "sent"),
    [
        ("%%cached\nx = 1", "%%cached abc-123\nx = 1"),
        ("%%cached -d data.csv -s input_hash\nx = 1", "%%cached abc-123 -d data.csv -s input_hash\nx = 1"),
        ("\n%%cached --explain\nx = 1", "\n%%cached abc-123 --explain\nx = 1"),
        ("%%cached fit\nx = 1", "%%cached fit\nx = 1"),  # named by the user: untouched
        # `-d` takes every word after it, so this cell has no NAME: its id goes in front.
        ("%%cached -d a b fit\nx = 1", "%%cached abc-123 -d a b fit\nx = 1"),
        ("x = 1", "x = 1"),
        ("%%cachedx\nx = 1", "%%cachedx\nx = 1"),
        ("%%cached --bogus\nx = 1", "%%cached --bogus\nx = 1"),  # the kernel reports a bad line, not us
    ],
)
def test_source_for_kernel_names_unnamed_cached_cells_by_id(source: str, sent: str) -> None:
    assert batch.source_for_kernel(_cell(source)) == sent


def test_cells_without_ids_or_with_option_like_ids_keep_the_digest_default() -> None:
    assert batch.source_for_kernel(_cell("%%cached\nx = 1", cell_id=None)) == "%%cached\nx = 1"
    assert batch.source_for_kernel(_cell("%%cached\nx = 1", cell_id="-x")) == "%%cached\nx = 1"


def test_kernel_env_resolves_the_store_once_from_the_notebook_folder(tmp_path: Path) -> None:
    nb_dir = tmp_path / "project" / "notebooks"
    nb_dir.mkdir(parents=True)
    assert batch.kernel_env(nb_dir, {"CELLCACHE_DIR": "rel"})["CELLCACHE_DIR"] == str((nb_dir / "rel").resolve())
    assert batch.kernel_env(nb_dir, {})["CELLCACHE_DIR"] == str((nb_dir / ".cellcache").resolve())
    (tmp_path / "project" / "pyproject.toml").write_text('[tool.cellcache]\ndir = "store"\n')
    assert batch.kernel_env(nb_dir, {})["CELLCACHE_DIR"] == str((tmp_path / "project" / "store").resolve())


def test_check_refuses_what_cannot_work(tmp_path: Path) -> None:
    nb = write_nb(tmp_path / "a.ipynb", "x = 1")
    (tmp_path / "sub").mkdir()
    twin = write_nb(tmp_path / "sub" / "a.ipynb", "x = 2")
    (tmp_path / "junk.ipynb").write_text("{not json")
    with pytest.raises(batch.BatchError, match="exclude each other"):
        batch.check([nb], RunOptions(inplace=True, output_dir=tmp_path / "out"))
    with pytest.raises(batch.BatchError, match="both be written"):
        batch.check([nb, twin], RunOptions(output_dir=tmp_path / "out"))
    with pytest.raises(batch.BatchError, match="not a readable notebook"):
        batch.check([tmp_path / "junk.ipynb"], RunOptions())
    with pytest.raises(batch.BatchError, match="does not exist"):
        batch.check([tmp_path / "missing.ipynb"], RunOptions())
    with pytest.raises(batch.BatchError, match="no kernel named 'nope'"):
        batch.check([nb], RunOptions(kernel="nope"))
    foreign = nbformat.read(nb, as_version=4)
    foreign.metadata["kernelspec"] = {"name": "no-such-kernel", "display_name": "?", "language": "?"}
    nbformat.write(foreign, tmp_path / "foreign.ipynb")
    with pytest.raises(batch.BatchError, match="asks for kernel 'no-such-kernel'.*choose one with --kernel"):
        batch.check([tmp_path / "foreign.ipynb"], RunOptions())
    batch.check([tmp_path / "foreign.ipynb"], RunOptions(kernel="python3"))
    batch.check([nb, twin], RunOptions())  # without an output dir, same names are fine


# with real kernels -------------------------------------------------------------------

PIPELINE = (
    "md:# a pipeline",
    "import os\nn = 3\nprint(os.getcwd())",
    "%%cached total\nimport time\ntime.sleep(0.6)\ntotal = sum(range(n + 1))\nprint('computed', total)\ntotal",
    "%%cached double\ndoubled = 2 * total",
    "print('doubled', doubled)",
)


@pytest.mark.kernel
def test_second_run_is_all_hits_and_the_written_notebook_keeps_the_outputs(tmp_path: Path, store: Path) -> None:
    nb = write_nb(tmp_path / "pipe.ipynb", *PIPELINE)
    source = nb.read_bytes()
    recorder = Recorder()

    [first] = batch.run_notebooks([nb], RunOptions(), recorder)
    assert first.ok and first.output is None
    assert statuses(first) == {1: (None, "plain"), 2: ("total", "miss"), 3: ("double", "miss"), 4: (None, "plain")}
    assert nb.read_bytes() == source, "by default the source notebook is left untouched"
    assert recorder.events[0] == ("notebook", 4)
    assert [e for e in recorder.events if e[0] == "start"] == [("start", 1, None), ("start", 2, "total"), ("start", 3, "double"), ("start", 4, None)]
    assert recorder.events[-1] == ("finished", True)

    [second] = batch.run_notebooks([nb], RunOptions(output_dir=tmp_path / "out"))
    assert statuses(second) == {1: (None, "plain"), 2: ("total", "hit"), 3: ("double", "hit"), 4: (None, "plain")}
    assert (second.hits, second.misses) == (2, 0)
    total = second.cells[1]
    assert total.saved_seconds > 0.3, "the 0.6 s sleep was saved (less the time a hit takes on a busy machine)"
    assert total.seconds < 0.6
    assert second.output == tmp_path / "out" / "pipe.ipynb"
    written = nbformat.read(second.output, as_version=4)
    assert outputs_text(written.cells[1]).strip() == str(tmp_path), "the kernel runs in the notebook's folder"
    assert outputs_text(written.cells[2]) == "computed 6\n6", "a hit replays the printed text and the value"
    assert outputs_text(written.cells[4]) == "doubled 12\n"
    assert [c.source for c in written.cells] == [c.source for c in nbformat.read(nb, as_version=4).cells]
    assert nb.read_bytes() == source


@pytest.mark.kernel
def test_editing_a_parameter_reruns_only_the_steps_downstream(tmp_path: Path, store: Path) -> None:
    cells = [
        "a = 1\nb = 10",
        "%%cached from_a\nx = a + 1",
        "%%cached from_b\ny = b * 2",
        "%%cached from_x\nz = x * 100",
        "%%cached from_y\nw = y - 1",
    ]
    nb = write_nb(tmp_path / "p.ipynb", *cells)
    [first] = batch.run_notebooks([nb])
    assert [c.status for c in first.cells] == ["plain", "miss", "miss", "miss", "miss"]

    write_nb(nb, "a = 1\nb = 11", *cells[1:])
    [second] = batch.run_notebooks([nb])
    assert statuses(second) == {
        0: (None, "plain"),
        1: ("from_a", "hit"),
        2: ("from_b", "miss"),
        3: ("from_x", "hit"),
        4: ("from_y", "miss"),
    }
    assert "input `b` changed (10 → 11)" in second.cells[2].reason, "a scalar shows old → new"
    assert "input `y` changed" in second.cells[4].reason


@pytest.mark.kernel
def test_status_lists_two_independent_stale_branches_and_runs_no_cached_body(tmp_path: Path, store: Path) -> None:
    log = "def log(what):\n    with open('ran.log', 'a') as f:\n        f.write(what + '\\n')"
    cells = [
        log + "\nseed = 1\nrate = 0.5\nlog('params')",
        "%%cached stable\nstable = 5\nlog('stable')",
        "%%cached seeded\nvalue = seed * stable\nlog('seeded')",  # branch 1 goes stale here
        "%%cached rated\nscaled = rate * 10\nlog('rated')",  # branch 2, independent of branch 1
        "%%cached later\nlater = value + 1\nlog('later')",  # downstream of seeded, directly
        "shown = later * 2\nlog('plain-downstream')",  # a plain cell downstream: not executed
        "%%cached through\nfinal = shown + scaled\nlog('through')",  # downstream of both, through the plain cell
        "%%cached untouched\nkept = stable + 1\nlog('untouched')",  # after the stale steps, but reads none of them
        "log('after')",
    ]
    nb = write_nb(tmp_path / "s.ipynb", *cells)
    [filled] = batch.run_notebooks([nb])
    assert filled.ok, filled.error
    ran = tmp_path / "ran.log"
    assert len(ran.read_text().split()) == 9

    write_nb(nb, cells[0].replace("seed = 1", "seed = 2").replace("rate = 0.5", "rate = 0.25"), *cells[1:])
    ran.unlink()
    [status] = batch.status_notebooks([nb])
    assert ran.read_text().split() == ["params", "after"], "no cached body, and no plain cell downstream of a stale step"
    assert status.ok and status.output is None
    assert statuses(status) == {
        0: (None, "plain"),
        1: ("stable", "hit"),
        2: ("seeded", "would-run"),
        3: ("rated", "would-run"),
        4: ("later", "would-run"),
        5: (None, "not run"),
        6: ("through", "would-run"),
        7: ("untouched", "hit"),
        8: (None, "plain"),
    }
    reasons = {c.index: c.reason for c in status.cells}
    assert "input `seed` changed" in reasons[2] and "input `rate` changed" in reasons[3]
    assert reasons[4] == "reads value from seeded"
    assert reasons[5] == "reads later from later"  # issue 25: the producer of `later`, not its upstream
    assert reasons[6] in ("reads scaled from rated", "reads shown from seeded")
    cells_json = json.loads(json.dumps(batch.to_json([status])))["notebooks"][0]["cells"]
    assert [c["status"] for c in cells_json].count("would-run") == 4


@pytest.mark.kernel
def test_status_does_not_run_a_strategy_off_body(tmp_path: Path, store: Path) -> None:
    nb = write_nb(tmp_path / "off.ipynb", "%%cached -s off\nopen('ran.log', 'w').write('ran')")
    [status] = batch.status_notebooks([nb])
    assert not (tmp_path / "ran.log").exists()
    assert status.cells[0].status == "would-run"


@pytest.mark.kernel
def test_force_reruns_every_cached_cell_and_replaces_its_entry(tmp_path: Path, store: Path) -> None:
    nb = write_nb(tmp_path / "f.ipynb", "n = 2", "%%cached square\nsq = n * n", "%%cached cube\ncube = n ** 3")
    batch.run_notebooks([nb])
    before = {r.step: (r.key, r.created) for r in LocalStore(store).index.entries()}

    [forced] = batch.run_notebooks([nb], RunOptions(force=True))
    assert [c.status for c in forced.cells] == ["plain", "miss", "miss"]
    assert {c.reason for c in forced.cells[1:]} == {"forced (--force)"}
    after = {r.step: (r.key, r.created) for r in LocalStore(store).index.entries()}
    assert set(after) == {"square", "cube"}
    for step in after:
        assert after[step][0] == before[step][0], "same key"
        assert after[step][1] > before[step][1], "a new entry replaced the old one"


@pytest.mark.kernel
def test_two_notebooks_in_parallel_share_steps_and_the_store(tmp_path: Path, store: Path) -> None:
    shared = "%%cached shared\nimport time\ntime.sleep(0.2)\nbase = list(range(1000))"
    one = write_nb(tmp_path / "one.ipynb", "k = 1", shared, "%%cached own_one\nmine = [v + k for v in base]")
    (tmp_path / "two").mkdir()
    two = write_nb(tmp_path / "two" / "two.ipynb", "k = 2", shared, "%%cached own_two\nmine = [v * k for v in base]")

    first = batch.run_notebooks([one, two], RunOptions(jobs=2, output_dir=tmp_path / "out"))
    assert [r.path for r in first] == [one, two], "results in the order given"
    assert all(r.ok for r in first), [r.error for r in first]
    for name in ("one.ipynb", "two.ipynb"):
        written = nbformat.read(tmp_path / "out" / name, as_version=4)
        assert not any(o.get("name") == "stderr" for c in written.cells for o in c.get("outputs", [])), "no CacheWarning"

    second = batch.run_notebooks([one, two], RunOptions(jobs=2))
    assert [statuses(r) for r in second] == [
        {0: (None, "plain"), 1: ("shared", "hit"), 2: ("own_one", "hit")},
        {0: (None, "plain"), 1: ("shared", "hit"), 2: ("own_two", "hit")},
    ]
    assert sorted(r.step for r in LocalStore(store).index.entries()) == ["own_one", "own_two", "shared"]


@pytest.mark.kernel
def test_cell_ids_name_unnamed_steps_across_reordering_and_inplace_keeps_the_source(tmp_path: Path, store: Path) -> None:
    params, first_cell, second_cell = "p = 4", "%%cached\nplus = p + 1", "%%cached --explain\ntimes = p * 2"
    nb = write_nb(tmp_path / "ids.ipynb", params, first_cell, second_cell, ids=["params", "step-plus", "step-times"])
    [run1] = batch.run_notebooks([nb])
    assert statuses(run1) == {0: (None, "plain"), 1: ("step-plus", "miss"), 2: ("step-times", "miss")}

    write_nb(nb, params, second_cell, first_cell, ids=["params", "step-times", "step-plus"])
    [run2] = batch.run_notebooks([nb], RunOptions(inplace=True))
    assert statuses(run2) == {0: (None, "plain"), 1: ("step-times", "hit"), 2: ("step-plus", "hit")}
    assert run2.output == nb
    rewritten = nbformat.read(nb, as_version=4)
    assert [c.source for c in rewritten.cells] == [params, second_cell, first_cell], "the id is sent, never written"
    assert [c.id for c in rewritten.cells] == ["params", "step-times", "step-plus"]
    assert [c.execution_count for c in rewritten.cells] == [1, 2, 3], "--inplace wrote the executed notebook"
    assert "cellcache: step-times: hit" in outputs_text(rewritten.cells[1])


@pytest.mark.kernel
def test_a_failing_cell_stops_the_notebook_unless_errors_are_allowed(tmp_path: Path, store: Path) -> None:
    nb = write_nb(tmp_path / "bad.ipynb", "x = 1", "%%cached boom\nraise ValueError('bad input')", "y = 2")
    [stopped] = batch.run_notebooks([nb])
    assert not stopped.ok
    assert statuses(stopped) == {0: (None, "plain"), 1: ("boom", "error"), 2: (None, "not run")}
    assert stopped.cells[2].reason == "after cell 1 (step boom) failed"
    assert stopped.cells[1].error == "ValueError: bad input"
    assert stopped.error == "cell 1 (step boom) failed: ValueError: bad input"

    [kept_going] = batch.run_notebooks([nb], RunOptions(allow_errors=True, output_dir=tmp_path / "out"))
    assert statuses(kept_going) == {0: (None, "plain"), 1: ("boom", "error"), 2: (None, "plain")}
    assert not kept_going.ok and [c.index for c in kept_going.failed_cells] == [1]
    written = nbformat.read(tmp_path / "out" / "bad.ipynb", as_version=4)
    assert written.cells[1].outputs[-1]["ename"] == "ValueError"
    assert LocalStore(store).index.entries() == [], "an error is never cached"


@pytest.mark.kernel
def test_a_cell_over_the_timeout_fails_with_its_index(tmp_path: Path, store: Path) -> None:
    nb = write_nb(tmp_path / "slow.ipynb", "x = 1", "%%cached nap\nimport time\ntime.sleep(30)", "y = 2")
    [result] = batch.run_notebooks([nb], RunOptions(timeout=1))
    assert statuses(result) == {0: (None, "plain"), 1: ("nap", "error"), 2: (None, "not run")}
    assert result.error == "cell 1 (step nap) failed: timed out after 1 s"
    assert result.cells[1].seconds < 10


@pytest.mark.kernel
def test_the_quickstart_notebook_misses_then_hits_then_reruns_only_the_fit(tmp_path: Path, store: Path) -> None:
    nb = tmp_path / "quickstart.ipynb"
    shutil.copy(REPO / "notebooks" / "quickstart.ipynb", nb)
    source = nbformat.read(nb, as_version=4)
    steps = ["generate", "clean", "features", "fit", "evaluate"]

    [cold] = batch.run_notebooks([nb])
    assert cold.ok, cold.error
    assert [c.step for c in cold.cells if c.step] == steps
    assert {c.status for c in cold.cells if c.step} == {"miss"}
    assert any(c.step is None and c.status == "plain" for c in cold.cells), "a plain parameter cell"

    [warm] = batch.run_notebooks([nb])
    assert {c.status for c in warm.cells if c.step} == {"hit"}
    assert warm.saved_seconds > 1.0, "the slow fit is saved"

    # What the notebook's markdown promises: a new learning rate re-runs the fit and what follows it.
    params = next(c for c in source.cells if c.get("id") == "params")
    assert "learning_rate = 0.05 " in params.source
    params.source = params.source.replace("learning_rate = 0.05 ", "learning_rate = 0.04 ")
    nbformat.write(source, nb)
    [edited] = batch.run_notebooks([nb])
    assert {c.step: c.status for c in edited.cells if c.step} == {
        "generate": "hit",
        "clean": "hit",
        "features": "hit",
        "fit": "miss",
        "evaluate": "miss",
    }


@pytest.mark.kernel
def test_runs_from_inside_a_running_event_loop(tmp_path: Path, store: Path) -> None:
    # As when called from a Jupyter kernel. The outer loop gets a thread of its own, so that this
    # test does not depend on whether something else already runs a loop in the main thread.
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    nb = write_nb(tmp_path / "loop.ipynb", "%%cached looped\nv = 41 + 1\nprint(v)")

    async def inside_a_loop() -> list:
        return batch.run_notebooks([nb])

    with ThreadPoolExecutor(max_workers=1) as pool:
        [result] = pool.submit(asyncio.run, inside_a_loop()).result()
    assert result.error is None and [c.status for c in result.cells] == ["miss"]


@pytest.mark.kernel
def test_kernel_output_goes_to_a_log_quoted_only_when_the_kernel_dies(tmp_path: Path, store: Path, capfd) -> None:
    noisy = write_nb(tmp_path / "noisy.ipynb", "import sys\nprint('kernel-noise-123', file=sys.__stderr__, flush=True)\nv = 1")
    [quiet] = batch.run_notebooks([noisy])
    assert quiet.error is None
    assert "kernel-noise-123" not in capfd.readouterr().err  # not on the caller's terminal

    dying = write_nb(tmp_path / "dying.ipynb", "import os\nos.write(2, b'dying words 456\\n')\nos._exit(3)")
    [died] = batch.run_notebooks([dying])
    assert died.error is not None and "the kernel died" in died.error and "dying words 456" in died.error
