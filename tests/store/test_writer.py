"""Write-behind: a miss's big outputs are stored on a thread, and only as the cell left them."""
from __future__ import annotations

import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

import cellcache
from cellcache.errors import CacheWarning
from cellcache.store import writer as wb
from cellcache.store.local import LocalStore
from cellcache.store.manifest import Manifest
from tests.conftest import run, run_in_fresh_shell

N = wb.BEHIND_AT // 8 * 4  # float64 elements of an output four times the write-behind threshold
MAKE = f"%%cached make\nimport numpy as np\nbig = np.arange({N}, dtype=np.float64)"


def session(shell):
    return cellcache.api.session(shell)


def entries(store_dir: Path) -> list[Path]:
    return list((store_dir / "entries").rglob("*.json"))


def cache_warnings(caught) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, CacheWarning)]


def test_a_big_miss_is_committed_behind_the_user(shell, store_dir):
    with session(shell).writer.hold():
        run(shell, MAKE)
        assert session(shell).writer.pending(cellcache.last_run().key)
        assert entries(store_dir) == []  # the cell returned before its entry was written
    cellcache.flush()
    assert len(entries(store_dir)) == 1
    shell.user_ns.pop("big")
    run(shell, MAKE)
    assert cellcache.last_run().hit
    assert np.array_equal(shell.user_ns["big"], np.arange(N, dtype=np.float64))


def test_a_small_miss_is_written_at_once(shell, store_dir):
    with session(shell).writer.hold():
        run(shell, "%%cached small\ny = list(range(10))")
        assert len(entries(store_dir)) == 1


def test_an_output_mutated_by_a_later_cell_is_never_stored_under_the_key(shell, store_dir):
    with session(shell).writer.hold():
        run(shell, MAKE)
        run(shell, "big[0] = 99.0")  # the next cell mutates the output before it was written
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cellcache.flush()
    messages = cache_warnings(caught)
    assert len(messages) == 1 and "'make' was not stored" in messages[0] and "`big` changed" in messages[0]
    assert entries(store_dir) == []
    run(shell, MAKE)
    assert not cellcache.last_run().hit  # a miss, never a hit serving big[0] == 99
    assert shell.user_ns["big"][0] == 0.0


def test_a_rerun_right_after_the_miss_waits_for_its_entry_and_hits(shell):
    run(shell, MAKE)
    run(shell, MAKE)
    assert cellcache.last_run().hit


def test_a_failed_write_warns_once_at_the_next_cell(shell, store_dir):
    run(shell, "%%cached warmup\nw = 1")  # the store exists
    with session(shell).writer.hold():
        run(shell, MAKE)
        blobs = store_dir / "blobs"
        for path in sorted(blobs.rglob("*"), reverse=True):
            path.rmdir() if path.is_dir() else path.unlink()
        blobs.rmdir()
        blobs.write_text("not a folder")  # every blob write now fails
    session(shell).writer.flush()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run(shell, "x = 1")
        first = cache_warnings(caught)
        run(shell, "x = 2")
    assert len(first) == 1 and "'make' was not stored" in first[0]
    assert cache_warnings(caught) == first  # told once, not again at the cell after
    assert shell.user_ns["big"][-1] == N - 1  # the result is in the namespace as usual


def _pending(store: LocalStore, key: str, nbytes: int) -> wb.Pending:
    value = np.zeros(nbytes // 8)
    manifest = Manifest(key=key, step="s", created=time.time(), seconds=1.0, blob="", blob_size=0, outputs=("v",))
    return wb.prepare(manifest, {"v": value}, {})


def test_the_queue_is_bounded_and_holds_no_copies(tmp_path):
    store = LocalStore(tmp_path)
    writer = wb.Writer(limit=3 * wb.BEHIND_AT)
    first, second = (_pending(store, k * 32, 2 * wb.BEHIND_AT) for k in "ab")
    with writer.hold():
        writer.submit(store, first)
        assert writer._queue[0][1].values["v"] is first.values["v"]  # a reference, not a copy
        blocked = threading.Thread(target=writer.submit, args=(store, second))
        blocked.start()
        blocked.join(timeout=0.5)
        assert blocked.is_alive()  # over the limit: the next miss waits for the writer
    blocked.join(timeout=30)
    assert not blocked.is_alive()
    writer.flush()
    assert store.manifest("a" * 32) is not None and store.manifest("b" * 32) is not None
    assert writer.take_failures() == []


def test_pending_entries_are_written_at_interpreter_exit(tmp_path):
    store = tmp_path / "store"
    out = run_in_fresh_shell(
        f"""
        import atexit, cellcache, sys
        held = cellcache.api.session(sh).writer.hold()  # the write can't win the race against the check below
        held.__enter__()
        sh.run_cell({MAKE!r}).raise_error()
        sys.stdout.write(str(cellcache.api.session(sh).writer.pending(cellcache.last_run().key)))
        atexit.register(held.__exit__, None, None, None)  # runs before the writer's own atexit flush (LIFO)
        """,
        store,
        tmp_path,
        prelude="import numpy  # imported before the step: its first import would file the entry under a second key too",
    )
    assert out.strip() == "True"  # the process ended with the entry still queued...
    assert len(entries(store)) == 1  # ...and atexit wrote it


@pytest.mark.kernel
def test_cellcache_run_stores_behind_entries_before_the_kernel_goes(tmp_path, monkeypatch):
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    from cellcache import batch

    monkeypatch.setenv("CELLCACHE_DIR", str(tmp_path / "store"))
    nb = tmp_path / "nb.ipynb"
    nbformat.write(new_notebook(cells=[new_code_cell("%load_ext cellcache\nimport numpy"), new_code_cell(MAKE)]), nb)
    first = batch.run_notebook(nb)
    assert [r.status for r in first.cells][-1] == batch.MISS
    assert len(entries(tmp_path / "store")) == 1
    second = batch.run_notebook(nb)
    assert [r.status for r in second.cells][-1] == batch.HIT


def test_a_first_import_files_two_keys_over_one_blob_written_once(tmp_path):
    # In a fresh interpreter the cell's `np.arange` can't be resolved before it runs: the entry is filed under
    # the key without it and under the key a re-run in this kernel computes (effects.rerun_components).
    store = tmp_path / "store"
    out = run_in_fresh_shell(
        f"""
        import sys
        from cellcache.store import format as fmt
        assert "numpy" not in sys.modules
        dumps = []
        real = fmt.dump
        fmt.dump = lambda value, target: dumps.append(1) or real(value, target)
        sh.run_cell({MAKE!r}).raise_error()
        import cellcache
        cellcache.flush()
        sh.run_cell({MAKE!r}).raise_error()
        sys.stdout.write(f"\\nRESULT {{len(dumps)}} {{cellcache.last_run().hit}}")
        """,
        store,
        tmp_path,
    )
    assert out.rpartition("RESULT ")[2].split() == ["1", "True"]  # pickled and written once; the re-run hits the second key
    manifests = [LocalStore(store).manifest(p.parent.name, p.stem) for p in entries(store)]
    assert len(manifests) == 2 and len({m.key for m in manifests}) == 2
    assert len({m.blob for m in manifests}) == 1
