"""Run the real-world corpus through the differential harness and print the report.

    python tests/realworld/run_corpus.py                 # every notebook, with mutations
    python tests/realworld/run_corpus.py sm_glm lm_model_gaussian --json report.json
    python tests/realworld/run_corpus.py --ci            # the subset CI runs

Figures: the warm hit rate (cells that hit in a new kernel, after the cold run stored them),
each warm non-hit with its cause, stale hits (a hit whose output differs from a plain run),
differences (a non-hit whose output differs), needless misses (after a mutation, a non-hit in
a cell the mutation can't reach that hit in the warm run), and warm / plain time.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root, when run as a script

from tests.realworld import harness  # noqa: E402


def coarse(cause: str) -> str:
    return cause.split(":", 1)[0].split(" (")[0]


def report(reports: list[harness.NotebookReport], out=sys.stdout) -> dict:
    rows = []
    header = f"{'notebook':28s} {'cells':>5s} {'hits':>4s} {'rate':>5s} {'stale':>5s} {'diff':>4s} {'needl':>5s} {'w/p':>5s}  non-hits by cause"
    print(header, file=out)
    print("-" * len(header), file=out)
    totals = Counter()
    causes = Counter()
    ratios = []
    for r in reports:
        w = r.verdict("warm")
        muts = [v for v in r.verdicts if v.run not in ("cold", "warm")]
        stale = sum(len(v.stale) for v in r.verdicts if v.run != "cold")
        differs = sum(len(v.differs) for v in r.verdicts if v.run != "cold")
        needless = sum(len(v.needless) for v in muts)
        by = Counter(coarse(c) for c in w.nonhits.values())
        causes.update(by)
        if w.plain_seconds:
            ratios.append(w.ratio)
        totals.update(cells=w.cells, hits=w.hits, stale=stale, differs=differs, needless=needless)
        rate = w.hits / w.cells if w.cells else 0.0
        print(
            f"{r.id:28s} {w.cells:5d} {w.hits:4d} {rate:5.0%} {stale:5d} {differs:4d} {needless:5d} {w.ratio:5.2f}  "
            + ", ".join(f"{k} {n}" for k, n in by.most_common()),
            file=out,
        )
        rows.append(r.to_json())
    rate = totals["hits"] / totals["cells"] if totals["cells"] else 0.0
    print("-" * len(header), file=out)
    print(
        f"{'total':28s} {totals['cells']:5d} {totals['hits']:4d} {rate:5.0%} {totals['stale']:5d} {totals['differs']:4d} {totals['needless']:5d}",
        file=out,
    )
    summary = {
        "notebooks": len(reports), "cells": totals["cells"], "warm_hits": totals["hits"], "warm_hit_rate": round(rate, 4),
        "warm_nonhits_by_cause": dict(causes), "stale_hits": totals["stale"], "differences": totals["differs"],
        "needless_misses": totals["needless"],
        "warm_over_plain_median": round(statistics.median(ratios), 3) if ratios else None,
        "warm_over_plain_max": round(max(ratios), 3) if ratios else None,
    }  # fmt: skip
    print(f"\nwarm hit rate {rate:.1%}; warm/plain time: median {summary['warm_over_plain_median']}, max {summary['warm_over_plain_max']}", file=out)
    print("warm non-hits by cause: " + ", ".join(f"{k} {n}" for k, n in causes.most_common()), file=out)
    print("\nstale hits (a hit whose output differs from the plain run):", file=out)
    for r in reports:
        for v in r.verdicts:
            for cell, diff in v.stale.items():
                print(f"  {r.id} [{v.run}] cell {cell}: {'; '.join(diff)}", file=out)
    if not totals["stale"]:
        print("  none", file=out)
    print("\ndifferences (a non-hit whose output differs from the plain run):", file=out)
    for r in reports:
        for v in r.verdicts:
            if v.run == "cold":
                continue
            for cell, diff in v.differs.items():
                print(f"  {r.id} [{v.run}] cell {cell}: {'; '.join(diff)}", file=out)
    print("\nneedless misses (mutation runs):", file=out)
    for r in reports:
        for v in r.verdicts:
            for cell, why in v.needless.items():
                print(f"  {r.id} [{v.run}] cell {cell}: {why}", file=out)
    print("\nnon-hits after a mutation in cells it can't reach that did not hit warm either:", file=out)
    for r in reports:
        for v in r.verdicts:
            for cell, why in v.unreached.items():
                if cell not in v.needless:
                    print(f"  {r.id} [{v.run}] cell {cell}: {why}", file=out)
    print("\nwarm non-hits:", file=out)
    for r in reports:
        for cell, why in r.verdict("warm").nonhits.items():
            print(f"  {r.id} cell {cell}: {why}", file=out)
    print("\nmutation runs:", file=out)
    for r in reports:
        for v in r.verdicts:
            if v.run in ("cold", "warm"):
                continue
            print(f"  {r.id} [{v.run}] reached {v.reached}; hits {v.hits}/{v.cells}; non-hits {sorted(v.nonhits)}", file=out)
    errors = [(r.id, v.run, v.error) for r in reports for v in r.verdicts if v.error]
    if errors:
        print("\nruns that stopped on an error:", file=out)
        for ident, run, err in errors:
            print(f"  {ident} [{run}]: {err}", file=out)
    return {"summary": summary, "notebooks": rows}


def expected_toml(nb: dict) -> str:
    """The [notebook.expected] section that records what cellcache does on one notebook today (from its JSON report)."""
    runs = nb["runs"]
    stale = sorted(f"{v['run']}/{c}" for v in runs if v["run"] != "cold" for c in v["stale"])
    differs = sorted(f"{v['run']}/{c}" for v in runs if v["run"] != "cold" for c in v["differs"])
    lines = ["[notebook.expected]", f"stale = {json.dumps(stale)}", f"differs = {json.dumps(differs)}"]
    warm = next(v for v in runs if v["run"] == "warm")
    if warm["nonhits"]:
        lines.append("[notebook.expected.warm_nonhit]")
        lines += [f"{c} = {json.dumps(why)}" for c, why in sorted(warm["nonhits"].items(), key=lambda kv: int(kv[0]))]
    needless = {f"{v['run']}/{c}": why for v in runs for c, why in v["needless"].items()}
    if needless:
        lines.append("[notebook.expected.needless]")
        lines += [f"{json.dumps(k)} = {json.dumps(why)}" for k, why in sorted(needless.items())]
    return "\n".join(lines) + "\n"


def update_expected(notebooks: list[dict], path: Path) -> None:
    """Rewrite each measured notebook's [notebook.expected] section (the last table of its block) in corpus.toml."""
    import re

    text = path.read_text(encoding="utf-8")
    blocks = re.split(r"(?=\n\[\[notebook\]\]\n)", text)
    by_id = {nb["id"]: nb for nb in notebooks}
    out = []
    for block in blocks:
        m = re.search(r'^id = "([\w.-]+)"', block, re.MULTILINE)
        if m and m.group(1) in by_id:
            lines = block.rstrip("\n").split("\n")
            tail = []  # a section comment for the next notebooks stays after this one's expected section
            while lines and (lines[-1].startswith("# ") or not lines[-1].strip()):
                tail.insert(0, lines.pop())
            head = "\n".join(lines).split("\n[notebook.expected]\n", 1)[0].rstrip("\n")
            block = head + "\n\n" + expected_toml(by_id[m.group(1)]) + ("\n" + "\n".join(tail).strip("\n") + "\n" if any(t.strip() for t in tail) else "")
        out.append(block)
    path.write_text("".join(out), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ids", nargs="*", help="notebook ids (default: all)")
    parser.add_argument("--json", type=Path, help="write the report here")
    parser.add_argument("--ci", action="store_true", help="only the notebooks marked ci = true")
    parser.add_argument("--no-mutations", action="store_true")
    parser.add_argument("--update-expected", action="store_true", help="record today's outcome in corpus.toml's [notebook.expected]")
    parser.add_argument("--expected-from", type=Path, help="only rewrite [notebook.expected] from this --json report; run nothing")
    parser.add_argument("--workdir", type=Path, help="keep the runs' folders here (default: a temporary folder)")
    args = parser.parse_args(argv)
    if args.expected_from:
        update_expected(json.loads(args.expected_from.read_text(encoding="utf-8"))["notebooks"], harness.HERE / "corpus.toml")
        return 0
    entries = harness.load_manifest()
    if args.ids:
        entries = [e for e in entries if e["id"] in args.ids]
    if args.ci:
        entries = [e for e in entries if e.get("ci")]
    started = time.perf_counter()
    reports = []
    with tempfile.TemporaryDirectory(prefix="cellcache-realworld-") as tmp:
        work = args.workdir or Path(tmp)
        for entry in entries:
            print(f"{entry['id']} ...", file=sys.stderr, flush=True)
            reports.append(harness.run_notebook(entry, work, mutations=not args.no_mutations, log=sys.stderr))
    data = report(reports)
    data["seconds"] = round(time.perf_counter() - started, 1)
    print(f"\ncorpus run took {data['seconds']:.0f} s")
    if args.update_expected:
        update_expected(data["notebooks"], harness.HERE / "corpus.toml")
    if args.json:
        args.json.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
