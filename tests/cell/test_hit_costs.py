"""A hit that costs more than its run says so; a hit fingerprints each input once."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from rich.console import Console

import cellcache
from cellcache import batch
from cellcache.cli import main as cli
from cellcache.cell import reasons, stage
from tests.conftest import run


def test_slower_hit_wording():
    assert reasons.slower_hit(0.099, 0.094) == "restoring costs 99 ms, running 94 ms"
    assert reasons.slower_hit(0.05, 0.094) is None


def test_a_hit_dearer_than_its_run_says_so_in_explain_and_stats(shell, capsys):
    # calloc makes 50 MB of zeros for free; a hit reads, hashes and unpickles 50 MB.
    run(shell, "%%cached cheap\ny = bytes(50_000_000)")
    run(shell, "%%cached -e cheap\ny = bytes(50_000_000)")
    last = cellcache.last_run()
    assert last.hit and "restoring costs" in last.reason
    assert "cellcache: cheap: restoring costs" in capsys.readouterr().out
    [row] = [r for r in cellcache.stats() if r.name == "cheap"]
    assert row.hit_seconds > row.run_seconds and row.slower_hit.startswith("restoring costs")
    shell.run_line_magic("cellcache", "stats")
    assert "hint: cheap: restoring costs" in capsys.readouterr().out


def test_a_hit_cheaper_than_its_run_has_no_hint(shell, capsys):
    run(shell, "%%cached slow\nimport time\ntime.sleep(0.3)\nz = 2")
    run(shell, "%%cached -e slow\nimport time\ntime.sleep(0.3)\nz = 2")
    assert cellcache.last_run().hit and cellcache.last_run().reason == reasons.HIT
    assert "restoring costs" not in capsys.readouterr().out
    [row] = [r for r in cellcache.stats() if r.name == "slow"]
    assert row.slower_hit is None


def test_the_run_table_shows_the_hint():
    cells = (
        batch.CellResult(1, "cheap", batch.HIT, 0.099, 0.0, reason=f"{reasons.HIT}; restoring costs 99 ms, running 94 ms"),
        batch.CellResult(2, "slow", batch.HIT, 0.01, 2.0, reason=reasons.HIT),
    )
    console = Console(width=200, record=True)
    console.print(cli._cell_table(batch.NotebookResult(Path("nb.ipynb"), cells), ))
    text = console.export_text()
    assert "restoring costs 99 ms, running 94 ms" in text and "2.0 s" in text


def test_each_input_is_fingerprinted_once_per_hit(shell, monkeypatch):
    shell.user_ns["a"] = np.arange(1000.0)
    shell.user_ns["b"] = shell.user_ns["a"]  # two names, one object
    source = "%%cached both\ns = float(a.sum() + b.sum())"
    run(shell, source)
    calls: list[int] = []
    real = stage.fingerprint

    def counting(value, *rest):
        calls.append(id(value))
        return real(value, *rest)

    monkeypatch.setattr(stage, "fingerprint", counting)
    run(shell, source)
    assert cellcache.last_run().hit
    assert calls.count(id(shell.user_ns["a"])) == 1
