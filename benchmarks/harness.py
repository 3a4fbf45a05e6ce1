"""What every benchmark script shares: timing, a shell with history in memory, a report of ratios.

At the bottom of benchmarks/: the scripts import it, it imports none of them.
"""
from __future__ import annotations

import gc
import os
import statistics
import time
from pathlib import Path
from typing import Callable

from IPython.core.interactiveshell import InteractiveShell
from traitlets.config import Config

import cellcache


def timed(fn: Callable[[], object]) -> float:
    gc.collect()
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def make_shell(store: Path) -> InteractiveShell:
    os.environ["CELLCACHE_DIR"] = str(store)
    InteractiveShell.clear_instance()
    config = Config()
    config.HistoryManager.hist_file = ":memory:"
    shell = InteractiveShell.instance(config=config)
    shell.run_line_magic("load_ext", "cellcache")
    session = cellcache.api.session(shell)
    session.config = session.config.with_overrides(marker=False)  # the marker line would flood the report
    return shell


def cell(shell: InteractiveShell, source: str) -> None:
    shell.run_cell(source, store_history=True).raise_error()


def expect(hit: bool) -> None:
    run = cellcache.last_run()
    if run is None or run.hit != hit:
        raise SystemExit(f"benchmark setup error: expected {'a hit' if hit else 'a miss'}, got {run}")


def timed_hit(shell: InteractiveShell, source: str) -> float:
    seconds = timed(lambda: cell(shell, source))
    expect(hit=True)
    return seconds


class Report:
    def __init__(self, judge: bool) -> None:
        self.judge = judge
        self.rows: list[tuple[str, float, float]] = []

    def ratio(self, name: str, ratios: list[float], bar: float, detail: str, unit: str = "x") -> None:
        value = statistics.median(ratios)
        self.rows.append((name, value, bar))
        verdict = ("ok" if value <= bar else "OVER BAR") if self.judge else "quick: not judged"
        spread = f"[{min(ratios):.3f}-{max(ratios):.3f}]" if len(ratios) > 1 else ""
        print(f"{name:<62} {value:8.3f}{unit} {spread:<15} (bar {bar}{unit}, {verdict})", flush=True)
        print(f"{'':<6}{detail}", flush=True)

    def versus(self, name: str, hits: list[float], baseline: list[float], bar: float) -> None:
        """The per-round ratio of two hit timings taken in the same rounds."""
        self.ratio(name, [h / b for h, b in zip(hits, baseline)], bar, f"hit {ms(hits)} vs {ms(baseline)}")

    def note(self, text: str) -> None:
        print(f"{'':<6}{text}", flush=True)


def ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1e3:.1f} ms"
