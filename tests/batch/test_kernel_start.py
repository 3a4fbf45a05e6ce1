"""A kernel that fails to start (issue 23.2): retried a bounded number of times, then the notebook counts as failed.

Real kernels through nbclient: a kernelspec whose launcher exits at once (as a
kernel that lost its port to another does) the first time, marked by a file,
and runs ipykernel after; or one that never starts. `cellcache run --jobs 2`
as a user runs it, and no traceback at exit.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from cellcache import batch

from .helpers import cellcache, write_nb

LAUNCHER = """
import os, sys
marker = {marker!r}
if {always_fail!r} or not os.path.exists(marker):
    open(marker, "a").close()
    sys.stderr.write("zmq.error.ZMQError: Address already in use (addr='tcp://127.0.0.1:1')\\n")
    sys.exit(1)
os.execv(sys.executable, [sys.executable, "-m", "ipykernel_launcher", *sys.argv[1:]])
"""


def flaky_kernel(tmp_path: Path, name: str, always_fail: bool = False) -> tuple[Path, Path]:
    """A kernelspec in a JUPYTER_PATH of its own; returns (that path, the marker of its first failed start)."""
    jupyter = tmp_path / "jupyter"
    spec = jupyter / "kernels" / name
    spec.mkdir(parents=True)
    marker = tmp_path / f"{name}.failed-once"
    launcher = spec / "launch.py"
    launcher.write_text(LAUNCHER.format(marker=str(marker), always_fail=always_fail))
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, str(launcher), "-f", "{connection_file}"],
        "display_name": name,
        "language": "python",
    }))
    return jupyter, marker


@pytest.mark.kernel
@pytest.mark.timeout(240)
def test_a_kernel_that_dies_at_its_first_start_is_started_again(tmp_path, monkeypatch):
    jupyter, marker = flaky_kernel(tmp_path, "flaky")
    monkeypatch.setenv("JUPYTER_PATH", str(jupyter))
    nb = write_nb(tmp_path / "project" / "nb.ipynb", "%%cached one\nx = 6 * 7", "print(x)")
    (tmp_path / "project" / ".git").mkdir()
    result = batch.run_notebook(nb, batch.RunOptions(kernel="flaky", store_dir=tmp_path / "store"))
    assert marker.exists(), "the first start did fail"
    assert result.error is None, result.error
    assert [c.status for c in result.cells] == ["miss", "plain"]


@pytest.mark.kernel
@pytest.mark.timeout(240)
def test_run_jobs_survives_a_failed_start_and_counts_a_kernel_that_never_starts_as_failed(tmp_path):
    project = tmp_path / "project"
    (project / ".git").mkdir(parents=True)
    for i in range(2):
        write_nb(project / f"nb{i}.ipynb", f"%%cached s{i}\nx = {i}", "print(x)")
    jupyter, marker = flaky_kernel(tmp_path, "flaky")
    env = {**os.environ, "JUPYTER_PATH": str(jupyter)}
    done = cellcache("run", "--jobs", "2", "--kernel", "flaky", "--json", "nb0.ipynb", "nb1.ipynb", cwd=project, env=env)
    assert marker.exists()
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]

    dead, _ = flaky_kernel(tmp_path / "dead", "dead", always_fail=True)
    env["JUPYTER_PATH"] = str(dead)
    done = cellcache("run", "--jobs", "2", "--kernel", "dead", "nb0.ipynb", "nb1.ipynb", cwd=project, env=env)
    assert done.returncode == 1
    out = done.stdout + done.stderr
    assert "did not start" in out and f"{batch.KERNEL_START_TRIES} tries" in out, out[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
