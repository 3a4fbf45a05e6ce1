"""How long the cache browser takes on a big store: 500 steps, 50k entries, 100k runs.

    /work/venv/bin/python benchmarks/panel_bench.py [--steps 500 --entries 50000 --runs 100000 --repeat 5]

The bar (issue item 6) is 300 ms to build, for both the panel and the text
table that ``%cellcache stats`` prints. Every figure is the best of
``--repeat`` runs, and is shown with its ratio to the bar. The index is
filled by writing rows straight through ``Index`` in one transaction (no
blobs, no manifests): the panel reads only the index.

Measured:
- ``step_rows()``: the one SQL pass both forms start from;
- ``render_text``: ``%cellcache stats`` (query + layout);
- ``CachePanel(store)``: query + the first page of rows (widgets built);
- a live refresh: what every ``%%cached`` cell costs an open panel;
- showing all 500 rows ("Show more" until none is hidden), to say why the panel pages;
- ``CachePanel(store)`` again inside an in-process ipykernel, where every
  widget also sends its comm-open message, as in a notebook.

``step_rows()`` dominates on a big index: its GROUP BY queries walk the
``runs`` and ``entries`` tables row by row through ``runs_step`` and
``entries_step``. If the index lacks the two covering indexes below, the
figures are measured a second time with them added to this scratch index,
to show what adding them to ``cellcache/store/index.py``'s SCHEMA gives.
"""
from __future__ import annotations

import argparse
import gc
import logging
import os
import random
import sqlite3
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

BAR_SECONDS = 0.300

# Covering indexes for step_rows(): the aggregates then read only the index,
# never the wide run rows (they carry the reason text) or entry rows.
PROPOSED_INDEXES = {
    "runs_stats": "CREATE INDEX IF NOT EXISTS runs_stats ON runs(step, status, saved)",
    "entries_step_size": "CREATE INDEX IF NOT EXISTS entries_step_size ON entries(step, size)",
}

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from cellcache.report import render_text  # noqa: E402
from cellcache.store.index import Index  # noqa: E402
from cellcache.store.local import LocalStore  # noqa: E402

REASONS = (
    "first run of this step",
    "code changed",
    "input `df` changed (DataFrame 1000x3 → DataFrame 1200x3)",
    "file data/raw.csv changed",
    "invalidated",
    "ttl expired",
)


def fill_index(index: Index, steps: int, entries: int, runs: int, seed: int = 0) -> None:
    """Write ``steps`` steps, ``entries`` entries and ``runs`` runs in one transaction.

    Shaped like a long-lived store: a few steps have many entries (a
    parameter sweep), runs are mostly hits, and timestamps span 30 days.
    """
    rng = random.Random(seed)
    now = time.time()
    names = [f"step_{i:03d}_{rng.choice(['load', 'clean', 'features', 'fit', 'plot', 'report'])}" for i in range(steps)]
    weights = [1.0 / (1 + i % 50) for i in range(steps)]  # uneven: some steps hold most entries
    entry_rows = []
    for n in range(entries):
        step = names[n] if n < steps else rng.choices(names, weights)[0]  # every step gets at least one entry
        created = now - rng.uniform(0, 30 * 86400)
        key = f"{n:032x}"
        entry_rows.append(
            dict(
                key=key, variant="", notebook="", step=step, created=created, last_used=created,
                size=rng.randint(1_000, 5_000_000), seconds=rng.uniform(0.01, 60), blob=key,
            )  # fmt: skip
        )
    run_rows = []
    for n in range(runs):
        step = names[n % steps] if n < steps else rng.choices(names, weights)[0]
        status = "miss" if n < steps or rng.random() < 0.25 else "hit"
        reason = rng.choice(REASONS) if status == "miss" else "hit: code, inputs and files unchanged"
        run_rows.append(
            dict(
                notebook="",
                step=step,
                key=f"{rng.randrange(entries):032x}",
                status=status,
                seconds=rng.uniform(0.001, 30),
                saved=rng.uniform(0.5, 30) if status == "hit" else 0.0,
                at=now - (runs - n) * 20.0,
                reason=reason,
            )
        )
    with index._tx() as db:
        _insert(db, "entries", entry_rows)
        _insert(db, "steps", [dict(notebook="", name=name) for name in names])
        _insert(db, "runs", run_rows)


def _insert(db: sqlite3.Connection, table: str, rows: list[dict[str, object]]) -> None:
    """Insert into the columns the table has: the schema may gain or lose a column without breaking this."""
    columns = [c[1] for c in db.execute(f"PRAGMA table_info({table})")]
    used = [c for c in columns if c in rows[0]]
    db.executemany(
        f"INSERT INTO {table}({', '.join(used)}) VALUES ({', '.join('?' * len(used))})",
        [tuple(r[c] for c in used) for r in rows],
    )


@dataclass(frozen=True)
class Timing:
    wall: float  # what the user waits; the bar applies to it
    cpu: float  # this process's CPU time: about what the wall time is on an idle machine

    def over(self, bar: float) -> bool:
        return self.wall > bar


def best(fn: Callable[[], object], repeat: int) -> Timing:
    walls, cpus = [], []
    for _ in range(repeat):
        gc.collect()
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        cpus.append(time.process_time() - cpu)
        walls.append(time.perf_counter() - wall)
    return Timing(min(walls), min(cpus))


def report(label: str, timing: Timing, bar: float | None = BAR_SECONDS) -> None:
    ratio = ""
    if bar:
        ratio = f"{timing.wall / bar:5.2f}x the {bar * 1000:.0f} ms bar ({'OVER' if timing.over(bar) else 'ok'})"
    print(f"{label:<50} {timing.wall * 1000:7.1f} ms wall {timing.cpu * 1000:7.1f} ms cpu  {ratio}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--entries", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)

    import ipywidgets

    with tempfile.TemporaryDirectory(prefix="cellcache-panel-bench-") as tmp:
        store = LocalStore(Path(tmp) / "store")
        started = time.perf_counter()
        fill_index(store.index, args.steps, args.entries, args.runs)
        print(
            f"index: {args.steps} steps, {args.entries:,} entries, {args.runs:,} runs "
            f"(filled in {time.perf_counter() - started:.1f} s); ipywidgets {ipywidgets.__version__}, best of {args.repeat}; "
            f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
        )
        steps = len(store.step_rows())
        assert steps == args.steps, f"expected {args.steps} steps, got {steps}"
        measure(store, args.repeat)
        missing = [name for name in PROPOSED_INDEXES if not _has_index(store, name)]
        if missing:
            print(f"\n-- again, with the covering indexes {', '.join(missing)} added to this scratch index:")
            for name in missing:
                store.index.db.execute(PROPOSED_INDEXES[name])
            measure(store, args.repeat)
        measure_in_kernel(store, args.repeat)
    return 0


def _has_index(store: LocalStore, name: str) -> bool:
    return store.index.db.execute("SELECT 1 FROM sqlite_master WHERE type='index' AND name=?", (name,)).fetchone() is not None


class _FixedRows:
    """A store stand-in that hands out rows read once: times the widgets without the query."""

    def __init__(self, store: LocalStore) -> None:
        self.root = store.root
        self._rows = store.step_rows()

    def step_rows(self) -> list:
        return self._rows


def measure(store: LocalStore, repeat: int) -> int:
    """Print every figure; return how many are over the bar."""
    from cellcache.widget import PAGE_SIZE, CachePanel

    location = str(store.root)
    rows = store.step_rows()
    report("step_rows() (the one SQL pass)", best(store.step_rows, repeat), None)
    report("render_text(rows) alone", best(lambda: render_text(rows, location), repeat), None)
    failures = 0
    stats_time = best(lambda: render_text(store.step_rows(), location), repeat)
    report("%cellcache stats: step_rows + render_text", stats_time)
    failures += stats_time.over(BAR_SECONDS)

    panels: list[CachePanel] = []
    fixed = _FixedRows(store)
    report(f"CachePanel widgets alone: first {PAGE_SIZE} rows", best(lambda: panels.append(CachePanel(fixed)), repeat), None)  # type: ignore[arg-type]
    panel_time = best(lambda: panels.append(CachePanel(store)), repeat)
    report(f"CachePanel(store): query + first {PAGE_SIZE} rows", panel_time)
    failures += panel_time.over(BAR_SECONDS)
    panel = panels[-1]
    assert len(panel.rows) == min(PAGE_SIZE, len(rows))
    report("panel.refresh() (live update after a cell)", best(panel.refresh, repeat))
    report("panel.text() (its plain-text repr)", best(panel.text, repeat))
    report(f"all {len(rows)} rows: 'Show more' until none is hidden", best(lambda: _show_all(fixed), 1), None)
    for p in panels:
        p.close()
    print("=> within the bar" if not failures else f"=> {failures} figure(s) over the bar", flush=True)
    return failures


def measure_in_kernel(store: LocalStore, repeat: int) -> None:
    """The panel built in a real (in-process) ipykernel: widgets open real comms there."""
    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")  # ipykernel's debugger: no frozen-modules warning
    try:
        from ipykernel.inprocess.manager import InProcessKernelManager
    except ImportError:
        print("(ipykernel missing: no in-kernel figure)")
        return
    from cellcache.widget import CachePanel

    manager = InProcessKernelManager()
    manager.start_kernel()
    try:
        shell = manager.kernel.shell
        shell.user_ns.update(store=store, best=best, CachePanel=CachePanel, made=[])
        shell.run_cell(f"in_kernel = best(lambda: made.append(CachePanel(store)), {repeat})")
        print()
        report("in an ipykernel: CachePanel(store)", shell.user_ns["in_kernel"])
        for panel in shell.user_ns["made"]:
            panel.close()
    finally:
        manager.shutdown_kernel()
        # The in-process kernel leaves an IOPub task that asyncio reports at exit ("Task was
        # destroyed but it is pending!"): ipykernel's noise, not the benchmark's.
        logging.getLogger("asyncio").setLevel(logging.CRITICAL)


def _show_all(store: LocalStore | _FixedRows) -> None:
    from cellcache.widget import CachePanel

    panel = CachePanel(store)  # type: ignore[arg-type]
    while panel.more_button.layout.display != "none":
        panel.more_button.click()
    panel.close()


if __name__ == "__main__":
    raise SystemExit(main())
