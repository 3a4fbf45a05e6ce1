"""Sweep benchmark: 16 combinations of the quickstart's `fit` step, against 16 plain papermill runs.

    python benchmarks/sweep_bench.py                 # 1 round, epochs 100
    python benchmarks/sweep_bench.py --epochs 700 --rounds 3

The sweep: learning_rate x batch_size, 4 x 4 values, over notebooks/quickstart.ipynb
(only `fit` and `evaluate` read them; `generate`, `clean` and `features` do not).
In each round, interleaved:

- papermill: the 16 combinations executed one after another with papermill's own
  engine and CELLCACHE_DISABLE=1, so every cell runs (the baseline);
- `cellcache run` (the batch API), 16 jobs, --jobs 1 and then --jobs 2, each from
  an empty store: the upstream steps run once, then hit in the other 15 jobs;
- the same on a Dask LocalCluster of 2 worker processes on localhost (one shared
  local store, as on one filesystem), from an empty store.

Figures: cellcache --jobs 1 / papermill, --jobs 2 / papermill, and Dask / --jobs 2,
each the median over rounds. On a shared 2-core machine absolute times are noise;
the ratios are the result.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cellcache import batch  # noqa: E402

from cellcache.batch import sweep

REPO = Path(__file__).resolve().parents[1]
RATES = ("0.02", "0.05", "0.1", "0.2")
BATCHES = ("32", "64", "128", "256")


def _combos(epochs: int) -> list[sweep.Combination]:
    params = [("learning_rate", r) for r in RATES] + [("batch_size", b) for b in BATCHES] + [("epochs", str(epochs))]
    combos = sweep.combinations(params=params)
    assert len(combos) == 16
    return combos


def papermill_runs(nb: Path, out: Path, combos: list[sweep.Combination]) -> float:
    import papermill

    old = os.environ.get("CELLCACHE_DISABLE")
    os.environ["CELLCACHE_DISABLE"] = "1"
    try:
        start = time.perf_counter()
        for i, combo in enumerate(combos):
            papermill.execute_notebook(str(nb), str(out / f"pm-{i}.ipynb"), parameters=combo.as_dict(), progress_bar=False, kernel_name="python3")
        return time.perf_counter() - start
    finally:
        if old is None:
            os.environ.pop("CELLCACHE_DISABLE", None)
        else:
            os.environ["CELLCACHE_DISABLE"] = old


def cellcache_sweep(nb: Path, store: Path, combos: list[sweep.Combination], jobs: int = 1, executor: str | None = None) -> float:
    shutil.rmtree(store, ignore_errors=True)
    options = batch.RunOptions(jobs=jobs, store_dir=store, executor=executor)
    start = time.perf_counter()
    result = batch.run_batch(batch.plan([nb], options, combos), options)
    seconds = time.perf_counter() - start
    bad = [r.error for r in result.notebooks if not r.ok]
    if bad:
        raise SystemExit(f"a sweep job failed: {bad[0]}")
    misses = sum(c.status == "miss" for r in result.notebooks for c in r.cells if c.step == "generate")
    assert misses == 1, f"the upstream step ran {misses} times"
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=100, help="the fit's epochs (the quickstart has 700)")
    args = parser.parse_args()
    combos = _combos(args.epochs)
    import distributed

    with tempfile.TemporaryDirectory(prefix="cellcache-sweep-bench-") as tmp:
        work = Path(tmp)
        nb = work / "quickstart.ipynb"
        shutil.copy(REPO / "notebooks" / "quickstart.ipynb", nb)
        (work / "out").mkdir()
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None, silence_logs=40)
        address = cluster.scheduler_address.replace("tcp://", "dask://")
        rows: dict[str, list[float]] = {name: [] for name in ("papermill", "jobs1", "jobs2", "dask")}
        try:
            for round_ in range(args.rounds):
                order = ["papermill", "jobs1", "jobs2", "dask"]
                if round_ % 2:
                    order.reverse()  # interleaved: neither side always runs first on a warming machine
                for name in order:
                    if name == "papermill":
                        seconds = papermill_runs(nb, work / "out", combos)
                    elif name == "dask":
                        seconds = cellcache_sweep(nb, work / "store", combos, executor=address)
                    else:
                        seconds = cellcache_sweep(nb, work / "store", combos, jobs=int(name[-1]))
                    rows[name].append(seconds)
                    print(f"round {round_ + 1}: {name:9s} {seconds:7.1f} s", flush=True)
        finally:
            cluster.close()
    med = {name: statistics.median(values) for name, values in rows.items()}
    print()
    print(f"16-combination sweep of `fit` (epochs {args.epochs}), median of {args.rounds} round(s):")
    print(f"  papermill, 16 plain runs one after another: {med['papermill']:.1f} s (baseline)")
    print(f"  cellcache run --jobs 1:                     {med['jobs1']:.1f} s = {med['jobs1'] / med['papermill']:.2f} x papermill")
    print(f"  cellcache run --jobs 2:                     {med['jobs2']:.1f} s = {med['jobs2'] / med['papermill']:.2f} x papermill")
    print(f"  cellcache run --executor dask:// (2 workers): {med['dask']:.1f} s = {med['dask'] / med['jobs2']:.2f} x --jobs 2")


if __name__ == "__main__":
    main()
