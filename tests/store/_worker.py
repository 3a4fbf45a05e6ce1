"""A kernel-like process on a shared store, for the concurrency, kill and new-store tests.

Runs a real IPython InteractiveShell with cellcache loaded and prints one JSON
line of figures at the end. Roles:
- ``cells``: misses and hits of a few steps whose values depend on an input; every
  restored value is checked against what the cell computes.
- ``janitor``: invalidate, gc and clear, against the others.
- ``big``: one step with a large output; prints ``ran`` when the cell returned and
  ``saved`` once the write-behind finished, then waits to be killed.
"""
from __future__ import annotations

import json
import random
import sys
import time
import warnings

from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from traitlets.config import Config


def shell() -> InteractiveShell:
    config = Config()
    config.HistoryManager.hist_file = ":memory:"
    sh = InteractiveShell.instance(config=config)
    sh.run_line_magic("load_ext", "cellcache")
    return sh


def expected(k: int) -> tuple[int, int]:
    return (k * 7 + 1, sum(range(k * 100)))


CELL = (
    "%%cached step{s}\n"
    "import numpy as np\n"
    "small = k * 7 + 1\n"
    "total = sum(range(k * 100))\n"
    "arr = np.arange(k * 1000, k * 1000 + {n})\n"
)


def run_cell(sh: InteractiveShell, source: str) -> tuple[list[str], bool]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = sh.run_cell(source, store_history=False)
    import cellcache

    messages = [str(w.message) for w in caught if issubclass(w.category, cellcache.CacheWarning)]
    return messages, result.success


def cells(sh: InteractiveShell, deadline: float, seed: int) -> dict:
    import cellcache

    rng = random.Random(seed)
    figures = {"ops": 0, "hits": 0, "misses": 0, "wrong": 0, "failed": 0, "over_one_warning": 0, "warnings": 0,
               "broken_after_store": 0}
    while time.time() < deadline or figures["ops"] < 6:
        k = rng.randrange(12)
        s = k % 4
        n = 300_000 if rng.random() < 0.15 else 1000  # some bundles large enough to be written behind
        sh.user_ns["k"] = k
        for attempt in range(2):  # a miss, then (usually) a hit of what it stored
            messages, ok = run_cell(sh, CELL.format(s=s, n=n))
            run = cellcache.last_run()
            figures["ops"] += 1
            figures["warnings"] += len(messages)
            if messages and len(figures.setdefault("messages", [])) < 10:
                figures["messages"].append(f"{run.reason if run else '-'} | " + " || ".join(messages))
            figures["over_one_warning"] += len(messages) > 1
            if not ok or run is None:
                figures["failed"] += 1
                continue
            figures["hits" if run.hit else "misses"] += 1
            ns = sh.user_ns
            arr = ns["arr"]
            small, total = expected(k)
            if (ns["small"], ns["total"]) != (small, total) or len(arr) != n or int(arr[0]) != k * 1000 or int(arr[-1]) != k * 1000 + n - 1:
                figures["wrong"] += 1
            if attempt == 1 and not run.hit and "broken" in run.reason:
                figures["broken_after_store"] += 1  # an entry this process just stored, found half there
    return figures


def janitor(sh: InteractiveShell, deadline: float, seed: int) -> dict:
    rng = random.Random(seed)
    figures = {"ops": 0, "invalidate": 0, "gc": 0, "clear": 0, "failed": 0}
    while time.time() < deadline:
        time.sleep(rng.uniform(0.05, 0.4))
        op = rng.choices(["invalidate", "gc", "clear"], weights=[5, 3, 1])[0]
        try:
            if op == "invalidate":
                sh.run_line_magic("cellcache", f"invalidate step{rng.randrange(4)}")
            elif op == "gc":
                sh.run_line_magic("cellcache", f"gc --max-size {rng.choice(['0B', '100KB', '5MB'])} --yes")
            else:
                sh.run_line_magic("cellcache", "clear")
        except UsageError:
            pass  # a step nobody stored yet
        except Exception as exc:  # noqa: BLE001 - counted: a store command must not fail
            figures["failed"] += 1
            print(f"janitor {op}: {type(exc).__name__}: {exc}", file=sys.stderr)
        figures["ops"] += 1
        figures[op] += 1
    return figures


def big(sh: InteractiveShell, n: int) -> None:
    import cellcache

    sh.user_ns["k"] = 3
    messages, ok = run_cell(sh, CELL.format(s=9, n=n))
    run = cellcache.last_run()
    print(json.dumps({"ran": True, "hit": run.hit, "ok": ok, "warnings": messages,
                      "right": int(sh.user_ns["arr"][-1]) == 3000 + n - 1 and sh.user_ns["small"] == 22}), flush=True)
    cellcache.api.active.writer.flush()
    print(json.dumps({"saved": True}), flush=True)
    time.sleep(60)


def _barrier(folder: str, name: str) -> None:
    """Start together: each process marks itself ready, then waits for all of them (at most 60 s).

    ``folder`` is ``<dir>:<count>``; the shells are started before, so the fresh store
    is first touched by every process in the same few milliseconds.
    """
    import os
    from pathlib import Path

    where, _, count = folder.rpartition(":")
    ready = Path(where)
    ready.mkdir(parents=True, exist_ok=True)
    (ready / name).touch()
    give_up = time.time() + 60
    while len(os.listdir(ready)) < int(count) and time.time() < give_up:
        time.sleep(0.002)


def main() -> None:
    role, arg = sys.argv[1], sys.argv[2]
    sh = shell()
    if role == "big":
        big(sh, int(arg))
        return
    _barrier(sys.argv[3], sys.argv[4])
    deadline = time.time() + float(arg)
    figures = (janitor if role == "janitor" else cells)(sh, deadline, seed=hash((role, sys.argv[-1])) & 0xFFFF)
    import cellcache

    cellcache.api.active.writer.flush()
    print(json.dumps(figures), flush=True)


if __name__ == "__main__":
    main()
