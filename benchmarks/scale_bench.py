"""Scale (issue 11.6): a store of 100k entries against an empty one, interleaved in one shell.

    python benchmarks/scale_bench.py               # 100k entries
    python benchmarks/scale_bench.py --entries 5000

Both stores hold the tiny step's entry; the big one also holds N others, spread
over 500 steps, each with one run row. The shell's session is switched between
the two stores round by round, so history, imports and caches are alike.

The bars: a tiny-cell hit <= 1.1x the same hit on an empty store; `stats`
<= 100 ms; a miss <= 1.2x a miss on an empty store.
"""
from __future__ import annotations

import cellcache

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cellcache import api  # noqa: E402
from cellcache.store.base import RunRecord, StepRef  # noqa: E402
from cellcache.store.local import LocalStore  # noqa: E402
from cellcache.store.manifest import Manifest  # noqa: E402


def populate(store: LocalStore, entries: int) -> None:
    blob = store.put_blob({"ns": {"v": 1}, "record": {}})
    now = time.time()
    for i in range(entries):
        step = f"step{i % 500:03d}"
        key = f"{i:032x}"
        store.commit(
            Manifest(key=key, step=step, created=now, seconds=0.5, blob=blob.digest, blob_size=blob.size,
                     blob_loader=blob.loader, outputs=("v",), components={"code": key})
        )
        store.record_run(RunRecord(StepRef("", step), key, "miss", 0.5, 0.0, "first run of this step"))
    store.index.flush(timeout_ms=10_000)


def main(argv: list[str] | None = None, shell=None) -> list[tuple[str, float, float, str]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args(argv)
    from benchmarks.harness import make_shell

    results = []
    with tempfile.TemporaryDirectory(prefix="cellcache-scale-") as tmp_name:
        tmp = Path(tmp_name)
        started = time.perf_counter()
        big = LocalStore(tmp / "big")
        populate(big, args.entries)
        print(f"populated {args.entries:,} entries in {time.perf_counter() - started:.0f} s", flush=True)
        shell = make_shell(tmp / "empty")
        session = cellcache.api.session(shell)
        stores = {"empty": session.store, "big": big}
        big.verify_local = session.store.verify_local
        shell.user_ns["x"] = 1
        tiny = "%%cached tiny\ny = x + 1"
        for store in stores.values():
            session._store = store
            shell.run_cell(tiny).raise_error()
        times: dict[str, dict[str, list[float]]] = {name: {"hit": [], "miss": []} for name in stores}
        counter = 0
        for _ in range(args.repeat):
            for name, store in stores.items():
                session._store = store
                start = time.perf_counter()
                shell.run_cell(tiny).raise_error()
                times[name]["hit"].append(time.perf_counter() - start)
                counter += 1
                shell.user_ns["z"] = counter  # a new input value: a miss, stored
                start = time.perf_counter()
                shell.run_cell("%%cached grows\nw = z * 2").raise_error()
                times[name]["miss"].append(time.perf_counter() - start)
        stats_times = []
        for _ in range(7):
            start = time.perf_counter()
            api.stats_text(big)
            stats_times.append(time.perf_counter() - start)
        med = {n: {k: statistics.median(v) for k, v in d.items()} for n, d in times.items()}
        hit_ratio = med["big"]["hit"] / med["empty"]["hit"]
        miss_ratio = med["big"]["miss"] / med["empty"]["miss"]
        results = [
            (f"tiny-cell hit, {args.entries:,} entries / empty store", hit_ratio, 1.1,
             f"{med['big']['hit'] * 1e3:.2f} ms vs {med['empty']['hit'] * 1e3:.2f} ms"),
            (f"`stats` with {args.entries:,} entries (s)", statistics.median(stats_times), 0.1,
             f"best {min(stats_times) * 1e3:.0f} ms"),
            (f"tiny-cell miss, {args.entries:,} entries / empty store", miss_ratio, 1.2,
             f"{med['big']['miss'] * 1e3:.2f} ms vs {med['empty']['miss'] * 1e3:.2f} ms"),
        ]
        for name, value, bar, detail in results:
            print(f"{name:<62} {value:8.3f}  (bar {bar}, {'ok' if value <= bar else 'OVER BAR'})  {detail}", flush=True)
        shell.run_line_magic("unload_ext", "cellcache")
    return results


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
