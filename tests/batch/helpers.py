"""Notebooks and commands for the batch tests."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Sequence

import nbformat
from nbformat.v4 import new_code_cell, new_notebook

REPO = Path(__file__).resolve().parents[2]


def write_nb(path: Path, *sources: str, parameters: int | None = None) -> Path:
    """A notebook of code cells; ``parameters`` is the index of the cell tagged "parameters", if any."""
    cells = [new_code_cell(s) for s in sources]
    if parameters is not None:
        cells[parameters].metadata["tags"] = ["parameters"]
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def cellcache(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """`python -m cellcache`, as a user runs it, with this checkout first on the path."""
    full = dict(os.environ if env is None else env)
    full["PYTHONPATH"] = os.pathsep.join([str(REPO), full.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-m", "cellcache", *args], cwd=cwd, env=full, capture_output=True, text=True, timeout=timeout)


def step_counts(rows: Sequence[object], step: str) -> tuple[int, int]:
    """(misses, hits) of one step over results' cells."""
    cells = [c for r in rows for c in r.cells if c.step == step]  # type: ignore[attr-defined]
    return sum(c.status == "miss" for c in cells), sum(c.status == "hit" for c in cells)
