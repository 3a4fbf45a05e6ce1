"""Upkeep (cellcache.store.maintenance) as the panel uses it: one entry dropped, under the sweep lock."""
from __future__ import annotations

import subprocess
import sys
import time

from cellcache.store.local import LocalStore
from tests.store.test_local import put

HOLD = """
import fcntl, sys, time
with open(sys.argv[1], "a+") as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def test_drop_entry_drops_that_entry_and_its_unshared_blob_only(tmp_path):
    store = LocalStore(tmp_path / "store")
    kept = put(store, "a" * 32, {"x": 1}, step="one")
    gone = put(store, "b" * 32, {"x": 2}, step="two")
    row = next(r for r in store.entries() if r.key == gone.key)
    assert store.drop_entry(row.key, row.variant) > 0
    assert store.manifest(gone.key) is None and store.manifest(kept.key) is not None
    assert store.load(store.manifest(kept.key))["ns"] == {"x": 1}


def test_drop_entry_waits_for_a_sweep_in_another_process(tmp_path):
    store = LocalStore(tmp_path / "store")
    entry = put(store, "c" * 32, {"x": 3})
    row = next(iter(store.entries()))
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(store.root / ".lock"), "1.5"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        started = time.monotonic()
        store.drop_entry(row.key, row.variant)
        assert time.monotonic() - started >= 1.0  # it waited for the other sweep to let go
    finally:
        holder.wait(timeout=30)
    assert store.manifest(entry.key) is None
