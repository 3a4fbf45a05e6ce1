"""The real-world corpus in CI: a bounded subset (``ci = true`` in corpus.toml), through real kernels.

For each notebook of the subset, the harness runs it plainly, cached cold, cached warm in a new
kernel, and mutated both ways (see harness.py). The tests hold cellcache to what the notebook's
``[notebook.expected]`` section records of today:

- no stale hit and no output difference that is not listed; the listed ones are strict xfails,
  so the suite turns red (XPASS) the day they are fixed, and the manifest is updated then;
- every warm non-hit is listed, with its cause; a new one fails. A listed one that now hits
  is only reported (a warning), since that is progress;
- no needless miss after a mutation that is not listed.

The whole corpus is `python tests/realworld/run_corpus.py`; its figures are in README.md.
"""
from __future__ import annotations

import base64
import io
import warnings
from pathlib import Path
from typing import Any, Callable

import pytest

from tests.realworld import harness

MANIFEST = harness.load_manifest()
SUBSET = [e for e in MANIFEST if e.get("ci")]


def _expected(entry: dict[str, Any]) -> dict[str, Any]:
    return entry.get("expected", {})


def _cause_kind(cause: str) -> str:
    return cause.split(":", 1)[0].split(" (")[0]


def _params(kind: str) -> list[Any]:
    """One param per subset notebook; a strict xfail where the manifest lists today's defects of this kind."""
    out = []
    for entry in SUBSET:
        known = _expected(entry).get(kind)
        marks = [pytest.mark.xfail(strict=True, reason=f"known today ({kind}): {known}")] if known else []
        out.append(pytest.param(entry["id"], marks=marks, id=entry["id"]))
    return out


@pytest.fixture(scope="module")
def judged(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], harness.NotebookReport]:
    """Each subset notebook's runs, made once for all the tests that look at them."""
    done: dict[str, harness.NotebookReport] = {}
    base = tmp_path_factory.mktemp("realworld")
    with pytest.MonkeyPatch.context() as mp:
        # Module scope: the suite's function-scoped isolation has not run yet, so isolate here too.
        for name in ("CELLCACHE_DIR", "CELLCACHE_REMOTE", "CELLCACHE_KEY", "CELLCACHE_DISABLE", "CELLCACHE_AUTO"):
            mp.delenv(name, raising=False)
        mp.setenv("IPYTHONDIR", str(base / "ipython"))
        mp.setenv("XDG_CONFIG_HOME", str(base / "config"))

        def get(ident: str) -> harness.NotebookReport:
            if ident not in done:
                with pytest.MonkeyPatch.context() as inner:
                    inner.setenv("IPYTHONDIR", str(base / "ipython"))
                    inner.setenv("XDG_CONFIG_HOME", str(base / "config"))
                    done[ident] = harness.run_notebook(harness.entry_by_id(ident, MANIFEST), base)
            return done[ident]

        yield get


def _stale(report: harness.NotebookReport) -> set[str]:
    return {f"{v.run}/{cell}" for v in report.verdicts if v.run != "cold" for cell in v.stale}


def _differs(report: harness.NotebookReport) -> set[str]:
    return {f"{v.run}/{cell}" for v in report.verdicts if v.run != "cold" for cell in v.differs}


def _details(report: harness.NotebookReport, attr: str) -> str:
    return "\n".join(f"{v.run}/{cell}: {d}" for v in report.verdicts for cell, d in getattr(v, attr).items())


pytestmark = [pytest.mark.realworld, pytest.mark.kernel, pytest.mark.timeout(900)]


@pytest.mark.parametrize("ident", [e["id"] for e in SUBSET])
def test_plain_run_is_clean(judged: Callable[[str], harness.NotebookReport], ident: str) -> None:
    """The notebook itself runs without an error, so every comparison below compares something."""
    report = judged(ident)
    assert report.plain_error is None
    assert all(v.error is None for v in report.verdicts), [(v.run, v.error) for v in report.verdicts]


@pytest.mark.parametrize("ident", _params("stale"))
def test_no_stale_hits(judged: Callable[[str], harness.NotebookReport], ident: str) -> None:
    report = judged(ident)
    assert not _stale(report), "stale hits:\n" + _details(report, "stale")


@pytest.mark.parametrize("ident", [e["id"] for e in SUBSET])
def test_stale_hits_are_only_the_known_ones(judged: Callable[[str], harness.NotebookReport], ident: str) -> None:
    report = judged(ident)
    known = set(_expected(harness.entry_by_id(ident, MANIFEST)).get("stale", []))
    assert _stale(report) <= known, "new stale hits:\n" + _details(report, "stale")


@pytest.mark.parametrize("ident", _params("differs"))
def test_warm_outputs_equal_plain(judged: Callable[[str], harness.NotebookReport], ident: str) -> None:
    report = judged(ident)
    assert not _differs(report) and not _stale(report), _details(report, "differs") + _details(report, "stale")


@pytest.mark.parametrize("ident", [e["id"] for e in SUBSET])
def test_output_differences_are_only_the_known_ones(judged: Callable[[str], harness.NotebookReport], ident: str) -> None:
    report = judged(ident)
    known = set(_expected(harness.entry_by_id(ident, MANIFEST)).get("differs", []))
    assert _differs(report) <= known, "new output differences:\n" + _details(report, "differs")


@pytest.mark.parametrize("ident", [e["id"] for e in SUBSET])
def test_every_warm_nonhit_is_explained(judged: Callable[[str], harness.NotebookReport], ident: str) -> None:
    """The warm hit rate's floor: every cell hits except those listed with today's cause."""
    report = judged(ident)
    warm = report.verdict("warm")
    known = {int(k): v for k, v in _expected(harness.entry_by_id(ident, MANIFEST)).get("warm_nonhit", {}).items()}
    unexplained = {c: why for c, why in warm.nonhits.items() if c not in known}
    changed = {c: (known[c], why) for c, why in warm.nonhits.items() if c in known and _cause_kind(known[c]) != _cause_kind(why)}
    assert not unexplained, f"warm non-hits not in the manifest: {unexplained}"
    assert not changed, f"warm non-hits whose cause changed (listed, now): {changed}"
    assert warm.hits >= warm.cells - len(known)
    now_hit = sorted(set(known) - set(warm.nonhits))
    if now_hit:
        warnings.warn(f"{ident}: cells {now_hit} now hit warm; update [notebook.expected] in corpus.toml", stacklevel=1)


@pytest.mark.parametrize("ident", _params("needless"))
def test_mutations_cause_no_needless_miss(judged: Callable[[str], harness.NotebookReport], ident: str) -> None:
    report = judged(ident)
    needless = {f"{v.run}/{c}": why for v in report.verdicts for c, why in v.needless.items()}
    assert not needless, needless


@pytest.mark.parametrize("ident", [e["id"] for e in SUBSET])
def test_needless_misses_are_only_the_known_ones(judged: Callable[[str], harness.NotebookReport], ident: str) -> None:
    report = judged(ident)
    known = set(_expected(harness.entry_by_id(ident, MANIFEST)).get("needless", {}))
    needless = {f"{v.run}/{c}" for v in report.verdicts for c in v.needless}
    assert needless <= known, f"new needless misses: {sorted(needless - known)}"


@pytest.mark.parametrize("ident", [e["id"] for e in SUBSET])
def test_a_mutation_misses_where_it_reaches(judged: Callable[[str], harness.NotebookReport], ident: str) -> None:
    """The mutated cell itself never hits: else the key missed the change (and its output would show it)."""
    report = judged(ident)
    entry = harness.entry_by_id(ident, MANIFEST)
    for m in entry.get("mutation", []):
        v = report.verdict(m["id"])
        if m["kind"] == "literal":
            assert m["cell"] in v.nonhits, f"{m['id']}: the mutated cell {m['cell']} hit"
        else:
            readers = [c for c in v.reached if Path(m["file"]).name in _source(entry, c)]
            assert readers and all(c in v.nonhits for c in readers), f"{m['id']}: a cell reading {m['file']} hit"


def _source(entry: dict[str, Any], cell: int) -> str:
    import nbformat

    return nbformat.read(harness.NOTEBOOKS / f"{entry['id']}.ipynb", as_version=4).cells[cell].source


# the harness itself: it must be able to see what it claims to see ------------------------


def _png(width: float, height: float) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(width, height), dpi=50)
    fig.gca().plot([0, 1], [0, 1])
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _cell(*outputs: dict[str, Any]) -> dict[str, Any]:
    return {"outputs": list(outputs)}


def test_harness_catches_a_figure_size_change() -> None:
    a, _ = harness.cell_outputs(_cell({"output_type": "display_data", "data": {"image/png": _png(4, 3)}, "metadata": {}}), [], 0)
    b, _ = harness.cell_outputs(_cell({"output_type": "display_data", "data": {"image/png": _png(8, 4)}, "metadata": {}}), [], 0)
    assert harness.differences(a, b) == ["image 0: 200x150 plain, 400x200 cached"]
    assert harness.differences(a, a) == []


def test_harness_catches_a_print_option_change_and_ignores_the_marker_and_cache_warnings() -> None:
    plain, _ = harness.cell_outputs(_cell({"output_type": "stream", "name": "stdout", "text": "[[13  0]\n [ 0 10]]\n"}), [], 0)
    hit, warned = harness.cell_outputs(
        _cell(
            {"output_type": "stream", "name": "stdout", "text": "[[13.  0.]\n [ 0. 10.]]\n"},
            {"output_type": "display_data", "data": {"text/plain": "↺ restored from cache"}, "metadata": {"cellcache": {"marker": True}}},
            {"output_type": "stream", "name": "stderr", "text": "/x.py:1: CacheWarning: cellcache: step 'c01' was not stored: why\n  warn()\n"},
        ),
        [],
        0,
    )
    assert warned == ["/x.py:1: CacheWarning: cellcache: step 'c01' was not stored: why"]
    assert harness.differences(plain, hit) == ["stdout line 1: '[[13  0]' plain, '[[13.  0.]' cached"]


def test_normalize_rules_apply_only_to_their_cells() -> None:
    rules = [{"cells": [2], "pattern": r"done in \d+\.\d+s", "with": "done in <s>s"}]
    assert harness.normalize_text("done in 0.125s at 0x7f00deadbeef", rules, 2) == "done in <s>s at 0x…"
    assert harness.normalize_text("done in 0.125s", rules, 3) == "done in 0.125s"


def test_unseeded_cells_compare_text_around_masked_numbers() -> None:
    rules = [{"cells": [4], "numbers": "masked", "images": "count"}]
    a, _ = harness.cell_outputs(_cell({"output_type": "stream", "name": "stdout", "text": "[ 5.07  0.51 -0.012]\n"}), rules, 4)
    b, _ = harness.cell_outputs(_cell({"output_type": "stream", "name": "stdout", "text": "[5.4e+00 3.8e-01 5.0e-03]\n"}), rules, 4)
    c, _ = harness.cell_outputs(_cell({"output_type": "stream", "name": "stdout", "text": "[[5.4 3.8 5.0]]\n"}), rules, 4)
    assert harness.differences(a, b) == []
    assert harness.differences(a, c) != []


def test_stdout_and_stderr_are_each_compared_whole() -> None:
    out, err = {"output_type": "stream", "name": "stdout", "text": "summary\n"}, {"output_type": "stream", "name": "stderr", "text": "warning\n"}
    a, _ = harness.cell_outputs(_cell(out, err), [], 0)
    b, _ = harness.cell_outputs(_cell(err, out), [], 0)
    assert harness.differences(a, b) == []
    c, _ = harness.cell_outputs(_cell(out), [], 0)
    assert harness.differences(a, c) != []


def test_reach_follows_names_functions_and_process_state() -> None:
    import nbformat

    nb = nbformat.v4.new_notebook()
    sources = [
        "import numpy as np",  # 0
        "a = 1",  # 1  <- mutated
        "def f():\n    return a",  # 2: reads a only when called
        "b = 2",  # 3: unreachable
        "c = f()",  # 4: calls f, which reads a
        "d = b + 1",  # 5: unreachable
        "e = c * 2",  # 6: reads c
    ]
    nb.cells = [nbformat.v4.new_code_cell(s) for s in sources]
    assert harness.reach(nb, cell=1) == {1, 2, 4, 6}
    nb.cells[1].source = "a = 1\nnp.set_printoptions(precision=2)"
    assert harness.reach(nb, cell=1) == {1, 2, 3, 4, 5, 6}
    nb.cells[3].source = "b = np.loadtxt('data.dat')"
    assert harness.reach(nb, data_file="data.dat") >= {3, 5}


def test_scale_data_keeps_headers_and_changes_values() -> None:
    assert harness.scale_data("x,y\n1.0, 2.0\n", 2.0) == "x,y\n1.0, 4.0\n"
    assert harness.scale_data("# c\n1 2\n3 4\n", 0.5) == "# c\n1  1.0\n3  2.0\n"
