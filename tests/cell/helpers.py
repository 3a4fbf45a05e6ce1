"""What the cell tests share: a counter of real executions, cached cells, and a fresh kernel on one store."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cellcache


class Counter:
    """Counts real executions of a cached body; fingerprints as a constant."""

    def __init__(self) -> None:
        self.n = 0

    def append(self, _: int) -> None:
        self.n += 1

    def __reduce__(self):  # constant in the key and in the store
        return (Counter, ())


def cached(body: str, step: str = "step") -> str:
    return f"%%cached {step}\nruns.append(1)\n{body}"


def runs(shell) -> int:
    return shell.user_ns["runs"].n


def hit() -> bool:
    return cellcache.last_run().hit


# two kernels on one store: each call is a fresh process

KERNEL = """
import json, sys
from IPython.core.interactiveshell import InteractiveShell
from traitlets.config import Config
config = Config()
config.HistoryManager.hist_file = ":memory:"
shell = InteractiveShell.instance(config=config)
shell.run_line_magic("load_ext", "cellcache")
import cellcache
for source in json.loads(sys.argv[1]):
    shell.run_cell(source).raise_error()
last = cellcache.last_run()
print(json.dumps({"hit": last is not None and last.hit, "out": shell.user_ns.get("out")}))
"""


def kernel(workdir: Path, store_dir: Path, *cells: str) -> dict:
    env = {**os.environ, "CELLCACHE_DIR": str(store_dir), "PYTHONPATH": os.pathsep.join([str(workdir), *sys.path])}
    done = subprocess.run(
        [sys.executable, "-c", KERNEL, json.dumps(list(cells))],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    return json.loads(done.stdout.strip().splitlines()[-1])
