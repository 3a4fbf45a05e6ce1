"""cellcache benchmarks: ratios against baselines measured in the same run.

    python benchmarks/run.py            # the issue's sizes (1 GiB arrays, 2M-row DataFrame)
    python benchmarks/run.py --quick    # small sizes, to check the script itself

Absolute times on a shared 2-core machine are noise; the ratios are the result.
"""
from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import joblib
import numpy as np
import pandas as pd
import xxhash
from IPython.core.interactiveshell import InteractiveShell
from traitlets.config import Config


def best(fn: Callable[[], object], repeat: int, setup: Callable[[], object] | None = None) -> float:
    times = []
    for _ in range(repeat):
        if setup is not None:
            setup()
        gc.collect()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def median(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def make_shell(store: Path) -> InteractiveShell:
    os.environ["CELLCACHE_DIR"] = str(store)
    InteractiveShell.clear_instance()
    config = Config()
    config.HistoryManager.hist_file = ":memory:"
    shell = InteractiveShell.instance(config=config)
    shell.run_line_magic("load_ext", "cellcache")
    return shell


def cell(shell: InteractiveShell, source: str) -> None:
    result = shell.run_cell(source)
    result.raise_error()


def expect_hit(shell: InteractiveShell) -> None:
    import cellcache

    run = cellcache.last_run()
    if run is None or not run.hit:
        raise SystemExit(f"benchmark setup error: expected a hit, got {run}")


class Report:
    def __init__(self) -> None:
        self.rows: list[tuple[str, float, float, str]] = []

    def add(self, name: str, ratio: float, bar: float, detail: str) -> None:
        self.rows.append((name, ratio, bar, detail))
        verdict = "ok" if ratio <= bar else "OVER BAR"
        print(f"{name:<58} {ratio:7.3f}x  (bar {bar}x, {verdict})  {detail}", flush=True)


def bench_input_array(shell: InteractiveShell, report: Report, n_bytes: int, repeat: int) -> None:
    a = np.random.default_rng(0).random(n_bytes // 8)
    shell.user_ns["a"] = a
    cell(shell, "%%cached bench_input\ns = float(a[0])")
    raw = best(lambda: xxhash.xxh3_128(memoryview(a)).digest(), repeat)
    hit = best(lambda: cell(shell, "%%cached bench_input\ns = float(a[0])"), repeat)
    expect_hit(shell)
    report.add(f"hit, {n_bytes / 2**30:.2f} GiB float64 input / raw xxh3_128", hit / raw, 1.5, f"hit {hit*1e3:.1f} ms, xxh3 {raw*1e3:.1f} ms")
    jh = best(lambda: joblib.hash(a), 1)
    print(f"{'   (for scale) joblib.hash of that array / raw xxh3':<58} {jh / raw:7.1f}x", flush=True)
    del shell.user_ns["a"]


def bench_restore_array(shell: InteractiveShell, report: Report, n_bytes: int, repeat: int, tmp: Path) -> None:
    source = f"%%cached bench_restore\nimport numpy as np\nbig = np.full({n_bytes // 8}, 1.5)"
    cell(shell, source)
    np.save(tmp / "baseline.npy", shell.user_ns["big"])
    del shell.user_ns["big"]
    loaded = best(lambda: np.load(tmp / "baseline.npy"), repeat)

    hit_time = best(lambda: cell(shell, source), repeat, setup=lambda: shell.user_ns.pop("big", None))
    expect_hit(shell)
    report.add(f"hit restoring a {n_bytes / 2**30:.2f} GiB array / np.load", hit_time / loaded, 1.6, f"hit {hit_time*1e3:.1f} ms, np.load {loaded*1e3:.1f} ms")
    shell.user_ns.pop("big", None)
    (tmp / "baseline.npy").unlink()


def bench_one_line(shell: InteractiveShell, report: Report, repeat: int) -> None:
    def noop(line: str, body: str) -> None:
        shell.run_cell(body, store_history=False)

    shell.register_magic_function(noop, "cell", "noop")

    shell.user_ns["x0"] = 1
    cell(shell, "%%cached bench_tiny\ny0 = x0 + 1")
    plain = median(lambda: cell(shell, "y0 = x0 + 1"), repeat)
    baseline = median(lambda: cell(shell, "%%noop\ny0 = x0 + 1"), repeat)
    hit = median(lambda: cell(shell, "%%cached bench_tiny\ny0 = x0 + 1"), repeat)
    expect_hit(shell)
    report.add(
        "hit on a one-line cell / no-op cell magic running its body",
        hit / baseline,
        2.5,
        f"hit {hit*1e3:.2f} ms, no-op magic {baseline*1e3:.2f} ms, plain cell {plain*1e3:.2f} ms",
    )


def bench_frame_and_dicts(shell: InteractiveShell, report: Report, rows: int, n_dicts: int, repeat: int) -> None:
    frame = pd.DataFrame(
        {
            "user": pd.Series([f"user_{i}" for i in range(rows)], dtype=object),
            "count": np.arange(rows, dtype=np.int64),
            "score": np.linspace(0, 1, rows),
        }
    )
    records = [{"id": i, "name": f"n{i}", "score": i * 0.5} for i in range(n_dicts)]
    shell.user_ns.update(frame=frame, records=records)
    source = "%%cached bench_frame\nsummary = (len(frame), len(records))"
    cell(shell, source)
    hit = best(lambda: cell(shell, source), repeat)
    expect_hit(shell)
    jh = best(lambda: (joblib.hash(frame), joblib.hash(records)), 1)
    report.add(
        f"hit, {rows:,}-row DataFrame (object str col) + {n_dicts:,} dicts / joblib.hash",
        hit / jh,
        0.1,
        f"hit {hit*1e3:.0f} ms, joblib.hash {jh*1e3:.0f} ms",
    )
    del shell.user_ns["frame"], shell.user_ns["records"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes: checks the script, not the bars")
    args = parser.parse_args(argv)
    quick = args.quick
    array_bytes = 2**24 if quick else 2**30
    rows, n_dicts = (20_000, 3_000) if quick else (2_000_000, 300_000)
    repeat = 2 if quick else 5
    report = Report()
    print(f"cellcache benchmarks ({'quick' if quick else 'full'}), python {sys.version.split()[0]}, numpy {np.__version__}, pandas {pd.__version__}")
    with tempfile.TemporaryDirectory(prefix="cellcache-bench-") as tmp_name:
        tmp = Path(tmp_name)
        shell = make_shell(tmp / "store")
        bench_input_array(shell, report, array_bytes, repeat)
        bench_restore_array(shell, report, array_bytes, repeat, tmp)
        bench_one_line(shell, report, 50 if quick else 300)
        bench_frame_and_dicts(shell, report, rows, n_dicts, repeat)
        shell.run_line_magic("unload_ext", "cellcache")
        InteractiveShell.clear_instance()
    over = [name for name, ratio, bar, _ in report.rows if ratio > bar]
    print(f"{len(report.rows) - len(over)} within bar, {len(over)} over bar")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
