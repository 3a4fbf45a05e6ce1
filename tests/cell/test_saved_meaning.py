"""Issue 25: "saved" is net (the run time skipped, minus what the hit took) and one figure everywhere."""
from __future__ import annotations

import cellcache
from cellcache.units import format_seconds

from tests.conftest import run


def test_explain_last_run_and_stats_give_one_net_saved_figure(shell, capsys):
    cell = "%%cached slow --explain\nimport time\ntime.sleep(0.3)\nx = 1"
    run(shell, cell)
    ran = cellcache.last_run()
    capsys.readouterr()
    run(shell, cell)
    out = capsys.readouterr().out
    hit = cellcache.last_run()
    assert hit.hit and 0 < hit.saved_seconds < ran.seconds, "net: the run's time minus the hit's"
    figure = format_seconds(hit.saved_seconds)
    assert f"(saved {figure})" in out, out  # --explain; the marker is given the same value
    [row] = [s for s in cellcache.stats() if s.name == "slow"]
    assert format_seconds(row.saved_seconds) == figure
