"""A process on a shared store, for the maintenance race test: writers commit, the others sweep and list.

Plain ``LocalStore`` calls, as the CLI and ``%cellcache`` make them (no IPython:
a process starts in a fraction of a second, so the race starts at once).
Roles:
- ``writer``: store entries of a few steps as a missed cell does, and load each back, checking its value;
- ``maint``: invalidate, gc, ls, stats, show and verify, at random.
Each prints one JSON line of figures; an exception a command must not raise is
counted under ``failed`` and its first lines are kept.
"""
from __future__ import annotations

import json
import random
import sys
import time
import traceback
from pathlib import Path

from cellcache.store import maintenance as store_entries
from cellcache.errors import BatchError, EntryGone, StepError
from cellcache.store.local import LocalStore
from cellcache.store.manifest import Manifest
from cellcache.store.writer import Writer, prepare, store_entry

STEPS = 4


def writer(store: LocalStore, deadline: float, rng: random.Random) -> dict:
    """Entries stored the way a missed cell stores them (``writer.store_entry``), each then loaded back and checked."""
    figures = {"ops": 0, "stored": 0, "not_stored": 0, "wrong": 0, "failed": 0, "errors": []}
    behind = Writer()
    while time.time() < deadline:
        k = rng.randrange(40)
        value = {"k": k, "payload": list(range(k * 10))}
        key = f"{k:02x}" * 16
        manifest = Manifest(key=key, step=f"step{k % STEPS}", created=time.time(), seconds=0.5, blob="", blob_size=0, outputs=tuple(value))
        warned: list[str] = []
        try:
            store_entry(behind, store, prepare(manifest, value, {}), warned.append)
            figures["not_stored" if warned else "stored"] += 1
            if warned and len(figures["errors"]) < 5:
                figures["errors"].append(warned[0])
            for found in store.candidates(key):
                if found.manifest is None:
                    continue
                try:
                    loaded = store.load(found.manifest)["ns"]
                except EntryGone:
                    break  # swept since: a plain miss
                figures["wrong"] += loaded != value
                break
        except Exception:  # noqa: BLE001
            figures["failed"] += 1
            if len(figures["errors"]) < 5:
                figures["errors"].append(traceback.format_exc()[-800:])
        figures["ops"] += 1
    return figures


def maint(store: LocalStore, deadline: float, rng: random.Random) -> dict:
    figures = {"ops": 0, "failed": 0, "errors": []}
    for op in ("invalidate", "gc", "ls", "stats", "show", "verify"):
        figures[op] = 0
    while time.time() < deadline:
        op = rng.choices(["invalidate", "gc", "ls", "stats", "show", "verify"], weights=[5, 2, 3, 2, 3, 1])[0]
        try:
            if op == "invalidate":
                store_entries.invalidate(store, f"step{rng.randrange(STEPS)}")
            elif op == "gc":
                store.gc(max_size=rng.choice([0, 20_000, 10**9]))
            elif op == "ls":
                store.entries()
            elif op == "stats":
                store.step_rows()
            elif op == "show":
                rows = store.entries()
                if rows:
                    store_entries.describe_entry(store, rng.choice(rows).key)
            else:
                store.verify()
        except (StepError, BatchError):
            pass  # a step nobody stored (yet, or any more), an entry swept since it was listed: said plainly
        except Exception:  # noqa: BLE001 - counted: a store command must not fail
            figures["failed"] += 1
            if len(figures["errors"]) < 5:
                figures["errors"].append(f"{op}: " + traceback.format_exc()[-800:])
        figures["ops"] += 1
        figures[op] += 1
    return figures


def main() -> None:
    role, root, seconds, start_at, seed = sys.argv[1], Path(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
    store = LocalStore(root)
    while time.time() < start_at:  # every process begins at the same moment
        time.sleep(0.002)
    figures = (writer if role == "writer" else maint)(store, time.time() + seconds, random.Random(seed))
    print(json.dumps(figures), flush=True)


if __name__ == "__main__":
    main()
