"""Maintenance commands against each other and against writers, in real processes (issue 23.1).

A manifest that vanishes between a listing and its reading (another process's
invalidate or gc took it) is simply gone on every path that reads manifests:
reconcile, ls, stats, show and verify. Run with ``-s`` for the figures.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cellcache.store.local import LocalStore

REPO = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("_maint_worker.py")


def _spawn(role: str, store: Path, seconds: float, start_at: float, seed: int, config: Path) -> subprocess.Popen:
    env = {**os.environ, "XDG_CONFIG_HOME": str(config), "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    env.pop("CELLCACHE_KEY", None)
    return subprocess.Popen(
        [sys.executable, str(WORKER), role, str(store), str(seconds), str(start_at), str(seed)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


@pytest.mark.timeout(120)
def test_invalidate_gc_ls_stats_show_verify_against_each_other_and_writers(tmp_path, monkeypatch):
    store_dir, config = tmp_path / "store", tmp_path / "config"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(config))
    LocalStore(store_dir).signing_key  # noqa: B018 - one key for all, made before they start
    seconds = 8.0
    start_at = time.time() + 2.0  # after every interpreter has imported cellcache
    procs = [_spawn("writer", store_dir, seconds, start_at, i, config) for i in range(2)]
    procs += [_spawn("maint", store_dir, seconds, start_at, 100 + i, config) for i in range(4)]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=90)
        assert proc.returncode == 0, err[-3000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    writers, maints = results[:2], results[2:]
    ops = {k: sum(r.get(k, 0) for r in maints) for k in ("ops", "invalidate", "gc", "ls", "stats", "show", "verify", "failed")}
    wrote = {k: sum(r[k] for r in writers) for k in ("ops", "stored", "not_stored", "wrong", "failed")}
    errors = [e for r in results for e in r["errors"]]
    store = LocalStore(store_dir)
    report = store.verify()
    print(f"\nmaintenance race: maintenance {ops}; writers {wrote}; broken after: {len(report.broken)}")
    for error in errors[:3]:
        print("  ", error.strip().splitlines()[-1][:300])
    assert ops["invalidate"] > 20 and wrote["stored"] > 20, "the race did not race"  # writers wait for every sweep
    assert ops["failed"] == 0 and wrote["failed"] == 0, errors
    assert wrote["wrong"] == 0
    # Issue 23.4: the store's shared lock is held from put_blob through commit, so no sweep lands in between.
    assert wrote["not_stored"] == 0, errors
    assert report.broken == ()
