"""Real processes on one store: a stress mix, kill -9 around a large save, and a new-store race.

Every figure the issue asks for (operations, wrong values, lost results,
leftovers after gc) is printed; run with ``-s`` to see them.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cellcache.store.local import LocalStore

REPO = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("_worker.py")


def _env(store: Path, config: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(config))  # this process checks the store with the workers' key
    return {
        **os.environ,
        "CELLCACHE_DIR": str(store),
        "XDG_CONFIG_HOME": str(config),
        "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        "MPLBACKEND": "Agg",
    }


def _spawn(env: dict[str, str], *args: str, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(WORKER), *args], env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _figures(proc: subprocess.Popen, timeout: float) -> dict:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


def _json_line(proc: subprocess.Popen) -> dict:
    """The worker's next JSON line (a hit's marker line may come before it)."""
    for line in proc.stdout:
        if line.startswith("{"):
            return json.loads(line)
    raise AssertionError(f"the worker ended: {proc.stderr.read()[-3000:]}")


def _leftover_bytes(store: LocalStore) -> tuple[int, int]:
    found = store._leftovers(grace=0)
    return len(found), sum(size for _, size, _ in found)


def _age_everything(root: Path, seconds: float = 2 * 3600) -> None:
    """An hour later, as far as the store can tell: the grace for temp files and unnamed blobs has passed."""
    then = time.time() - seconds
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            os.utime(path, (then, then))


def test_stress_several_processes_misses_hits_invalidate_gc_clear(tmp_path, monkeypatch):
    store_dir, config = tmp_path / "store", tmp_path / "config"
    env = _env(store_dir, config, monkeypatch)
    barrier = f"{tmp_path / 'ready'}:4"  # the processes start their IPython first, then begin together
    workers = [_spawn(env, "cells", "15", barrier, f"w{i}", cwd=tmp_path) for i in range(3)]
    janitor = _spawn(env, "janitor", "15", barrier, "j", cwd=tmp_path)
    results = [_figures(p, timeout=90) for p in workers]
    cleaning = _figures(janitor, timeout=90)
    total = {k: sum(r[k] for r in results) for k in results[0] if k != "messages"}
    messages = [m for r in results for m in r.get("messages", [])]
    store = LocalStore(store_dir)
    report = store.verify()
    before = _leftover_bytes(store)
    _age_everything(store_dir)
    store.gc(older_than=10**9)
    after = _leftover_bytes(store)
    print(f"\nstress: {total} janitor: {cleaning} broken entries: {len(report.broken)} "
          f"leftovers before gc: {before[0]} files, {before[1]} B; after gc: {after[0]} files, {after[1]} B")
    for message in messages[:5]:
        print(f"  warning: {message[:300]}")
    assert total["ops"] > 50 and cleaning["ops"] > 10, "the stress did not stress"
    assert total["hits"] > 0 and total["misses"] > 0
    assert total["wrong"] == 0, "a wrong value was restored"
    assert total["failed"] == 0 and cleaning["failed"] == 0
    assert total["over_one_warning"] == 0, messages
    # Known residual (see the store report): about 1 in 400 re-runs right after a miss, under a janitor sweeping
    # every ~0.2 s, still finds its entry half there and runs again (one warning, right value; verify finds the
    # store sound afterwards). More than that is a regression.
    assert total["broken_after_store"] <= max(1, total["misses"] // 200), messages
    assert report.broken == (), report.broken
    assert after == (0, 0), "gc left something behind"


@pytest.mark.parametrize("n", [4_000_000])  # 32 MB of int64: a save that takes long enough to be killed in
def test_kill_9_during_and_after_a_large_save(tmp_path, monkeypatch, n):
    store_dir, config = tmp_path / "store", tmp_path / "config"
    env = _env(store_dir, config, monkeypatch)
    figures = {"kills_during_save": 0, "kills_after_save": 0, "temp_files_at_kill": 0, "wrong": 0, "lost": 0, "broken": 0}
    expect_hit = False
    for i in range(6):
        proc = _spawn(env, "big", str(n), cwd=tmp_path)
        ran = _json_line(proc)
        assert ran["ok"] and ran["right"], (ran, proc.stderr.read() if proc.poll() is not None else "")
        figures["wrong"] += not ran["right"]
        if expect_hit and not ran["hit"]:
            figures["lost"] += 1  # the previous process finished its save, and the entry is gone
        assert len(ran["warnings"]) <= 1, ran["warnings"]
        during = i % 2 == 0
        if not during:
            assert _json_line(proc) == {"saved": True}
        elif not ran["hit"]:
            figures["temp_files_at_kill"] += len(list((store_dir / "blobs").rglob("*.tmp")))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        figures["kills_during_save" if during else "kills_after_save"] += 1
        figures["broken"] += len(LocalStore(store_dir).verify().broken)
        # After a kill during the save the entry may be gone (a miss next time), never half there.
        expect_hit = not during or ran["hit"]
    store = LocalStore(store_dir)
    before = _leftover_bytes(store)
    store.gc()  # right after the kills: a dead writer's leftovers need no hour of grace (issue 23.3)
    after = _leftover_bytes(store)
    print(f"\nkill -9: {figures}; leftovers before gc: {before[0]} files, {before[1]} B; "
          f"after a gc right away: {after[0]} files, {after[1]} B")
    assert figures["wrong"] == 0 and figures["lost"] == 0 and figures["broken"] == 0
    assert after == (0, 0)


def test_a_fresh_store_opened_by_eight_processes_at_once(tmp_path, monkeypatch):
    store_dir, config = tmp_path / "store", tmp_path / "config"
    env = _env(store_dir, config, monkeypatch)
    barrier = f"{tmp_path / 'ready'}:8"
    procs = [_spawn(env, "cells", "2", barrier, f"r{i}", cwd=tmp_path) for i in range(8)]
    results = [_figures(p, timeout=90) for p in procs]
    total = {k: sum(r[k] for r in results) for k in results[0] if k != "messages"}
    messages = [m for r in results for m in r.get("messages", [])]
    keys = [p for p in config.rglob("*") if p.is_file()]
    print(f"\nnew-store race: {total}; key files: {len(keys)}")
    assert all(r["ops"] > 0 for r in results)
    assert total["failed"] == 0 and total["wrong"] == 0
    assert total["warnings"] == 0, "a fresh store raced: locked index or partial key"
    assert total["broken_after_store"] == 0
    assert len(keys) == 1 and len(keys[0].read_bytes().strip()) == 64
    assert LocalStore(store_dir).verify().broken == ()
