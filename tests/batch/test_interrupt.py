"""Ctrl-C during `cellcache run`: SIGINT to the real command, with a real kernel in the middle of a cell."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cellcache.store.local import LocalStore

from .helpers import REPO, write_nb


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state not in ("Z", "X")  # a zombie has exited: only its parent's bookkeeping is left


@pytest.mark.kernel
@pytest.mark.timeout(120)
def test_ctrl_c_stops_the_run_says_interrupted_exits_130_and_keeps_finished_entries(tmp_path: Path) -> None:
    pid_file = tmp_path / "kernel.pid"
    nb = write_nb(
        tmp_path / "long.ipynb",
        "%%cached done_first\nfirst = 41 + 1",
        f"import os, time\nopen({str(pid_file)!r}, 'w').write(str(os.getpid()))\ntime.sleep(60)",
        "%%cached never\nnever = 1",
    )
    store = tmp_path / "store"
    env = {**os.environ, "CELLCACHE_DIR": str(store), "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "cellcache", "run", str(nb)], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 60
        while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
        assert pid_file.exists(), "the long cell never started"
        kernel_pid = int(pid_file.read_text())
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=45)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, out + err
    assert time.monotonic() - started < 30, "Ctrl-C stops the run promptly"
    assert "Traceback" not in err and "AssertionError" not in err, err
    assert "cellcache: interrupted" in err
    lines = {line.split("│")[1].strip(): line for line in out.splitlines() if line.count("│") > 4 and line.split("│")[1].strip().isdigit()}
    assert "hit" in lines["0"] or "miss" in lines["0"]
    assert "interrupted" in lines["1"]
    assert "not run" in lines["2"]
    deadline = time.monotonic() + 10
    while _alive(kernel_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(kernel_pid), "no kernel is left behind"
    assert [r.step for r in LocalStore(store).entries()] == ["done_first"], "the finished entry is kept"
