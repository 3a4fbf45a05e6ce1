"""The fork route of write-behind: a big miss is written by a copy-on-write snapshot of the process."""
from __future__ import annotations

import os
import signal
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import cellcache
from cellcache.errors import CacheWarning
from cellcache.store import snapshot
from cellcache.store import writer as wb
from tests.conftest import run, run_in_fresh_shell

pytestmark = pytest.mark.skipif(not snapshot.available(), reason="the fork route is Linux-only")

N = wb.BEHIND_AT // 8 * 4  # float64 elements: four times the write-behind threshold
MAKE = f"%%cached make\nimport numpy as np\nbig = np.arange({N}, dtype=np.float64)"


@pytest.fixture(autouse=True)
def _fork_small_outputs(monkeypatch):
    monkeypatch.setattr(snapshot, "FORK_AT", wb.BEHIND_AT)  # the tests' outputs are MBs, not the default 64 MiB


def writer(shell) -> wb.Writer:
    return cellcache.api.session(shell).writer


def queued(shell) -> wb.Pending:
    [(_, entry)] = list(writer(shell)._queue)
    return entry


def entries(store_dir: Path) -> list[Path]:
    return list((store_dir / "entries").rglob("*.json"))


def cache_warnings(caught) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, CacheWarning)]


def warnings_of_the_next_cells(shell) -> list[str]:
    """The CacheWarnings of two plain cells after the writer is done: a failure is told at the next cell, once."""
    writer(shell).flush()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run(shell, "x = 1")
        run(shell, "x = 2")
    return cache_warnings(caught)


def alive(pid: int) -> bool:
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return False
    return done == 0


def test_a_big_miss_is_written_by_a_forked_snapshot_and_the_child_is_reaped(shell, store_dir):
    with writer(shell).hold():
        run(shell, MAKE)
        entry = queued(shell)
        assert entry.child is not None and entry.digests is None  # no digest was taken on the cell's thread
        assert entry.child.pid != os.getpid() and alive(entry.child.pid)
        assert entries(store_dir) == []
    cellcache.flush()
    assert len(entries(store_dir)) == 1
    assert not alive(entry.child.pid)  # waited for: no zombie left behind
    shell.user_ns.pop("big")
    run(shell, MAKE)
    assert cellcache.last_run().hit
    assert np.array_equal(shell.user_ns["big"], np.arange(N, dtype=np.float64))


def test_a_later_mutation_never_reaches_the_snapshot(shell, store_dir):
    with writer(shell).hold():  # the snapshot writes only after the next cells mutated the output
        run(shell, MAKE)
        run(shell, "big[0] = 99.0\nbig[-1] = -1.0")
        run(shell, "big *= 2")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cellcache.flush()
        run(shell, "x = 1")
    assert cache_warnings(caught) == []
    assert len(entries(store_dir)) == 1  # stored, as the cell left it
    assert shell.user_ns["big"][0] == 198.0  # the user's mutation stands in the namespace
    shell.user_ns.pop("big")
    run(shell, MAKE)
    assert cellcache.last_run().hit
    assert np.array_equal(shell.user_ns["big"], np.arange(N, dtype=np.float64))  # never 99, -1 or doubled


def _open_files(pid: int) -> list[str]:
    found = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            found.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except FileNotFoundError:
            pass  # closed between the listing and the look: the child is letting go right now
    return found


def test_the_snapshot_lets_go_of_the_kernels_sockets(shell, store_dir):
    import socket

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()  # a kernel's ZMQ ports: a restarted kernel binds them again
    try:
        with writer(shell).hold():
            run(shell, MAKE)
            pid = queued(shell).child.pid
            ours = os.readlink(f"/proc/self/fd/{server.fileno()}")
            deadline = time.monotonic() + 10  # the child lets go as it starts, which may be a moment after the cell
            while True:
                # The store's writer lock stays open on purpose: it says the snapshot's files have a live owner.
                held = [f for f in _open_files(pid) if "/writers/" not in f]
                if ours not in held and len(held) <= 5 or time.monotonic() > deadline:
                    break
                time.sleep(0.01)
            assert ours.startswith("socket:") and ours not in held
            assert len(held) <= 5, held  # stdin/out/err on /dev/null and its two pipes
    finally:
        server.close()
    cellcache.flush()
    assert len(entries(store_dir)) == 1


@pytest.mark.timeout(60)
def test_a_snapshot_checks_big_blobs_without_its_parents_threads(shell, store_dir, monkeypatch):
    from cellcache.store import format as fmt

    monkeypatch.setattr(fmt, "CHUNK", 1 << 20)  # the tests' outputs span several chunks
    run(shell, MAKE)
    cellcache.flush()
    shell.user_ns.pop("big")
    run(shell, MAKE)  # a hit: its chunks were checked on the thread pool, which a fork does not inherit
    assert cellcache.last_run().hit and fmt._POOL
    run(shell, MAKE.replace("make", "again") + " + 1")  # a miss whose snapshot checks its own blob, chunk by chunk
    assert not cellcache.last_run().hit
    cellcache.flush()
    assert len(entries(store_dir)) == 2
    [again] = [m for m in (cellcache.api.session(shell).store.manifest(p.parent.name) for p in entries(store_dir)) if m.step == "again"]
    assert len(again.blob_chunks) > 1


def test_the_kernels_interrupt_does_not_stop_the_snapshot(shell, store_dir):
    with writer(shell).hold():
        run(shell, MAKE)
        os.kill(queued(shell).child.pid, signal.SIGINT)  # Jupyter interrupts the kernel's whole process group
    cellcache.flush()
    assert len(entries(store_dir)) == 1


def test_an_interrupt_at_the_fork_itself_does_not_kill_the_snapshot(shell, store_dir, monkeypatch):
    real = snapshot._child

    def interrupted_at_once(*args):
        os.kill(os.getpid(), signal.SIGINT)  # before the child could ignore it: Ctrl-C just as the cell ended
        real(*args)

    monkeypatch.setattr(snapshot, "_child", interrupted_at_once)
    run(shell, MAKE)
    assert warnings_of_the_next_cells(shell) == []
    assert len(entries(store_dir)) == 1


def test_a_parent_interrupted_before_it_queued_the_snapshot_reaps_it(shell, store_dir, monkeypatch):
    forked = []
    real = snapshot.fork
    monkeypatch.setattr(snapshot, "fork", lambda work: forked.append(real(work)) or forked[-1])

    def interrupted(*args):
        raise KeyboardInterrupt  # Ctrl-C while the miss waits for room in the writer's queue

    monkeypatch.setattr(wb.Writer, "submit", interrupted)
    with pytest.raises(KeyboardInterrupt):
        shell.run_cell(MAKE).raise_error()
    [child] = forked
    assert not alive(child.pid)  # told to go away and reaped, not left waiting forever
    assert entries(store_dir) == []


def test_a_snapshot_killed_before_it_answers_warns_once_and_stores_nothing(shell, store_dir):
    with writer(shell).hold():
        run(shell, MAKE)
        os.kill(queued(shell).child.pid, signal.SIGKILL)  # the OOM killer, say
    messages = warnings_of_the_next_cells(shell)
    assert len(messages) == 1
    assert "'make' was not stored" in messages[0] and "killed by signal 9" in messages[0]
    assert entries(store_dir) == []
    assert shell.user_ns["big"][-1] == N - 1  # the result is in the namespace as usual
    run(shell, MAKE)
    assert not cellcache.last_run().hit


def test_a_failed_snapshot_write_warns_once_at_the_next_cell(shell, store_dir):
    run(shell, "%%cached warmup\nw = 1")  # the store exists
    with writer(shell).hold():
        run(shell, MAKE)
        blobs = store_dir / "blobs"
        for path in sorted(blobs.rglob("*"), reverse=True):
            path.rmdir() if path.is_dir() else path.unlink()
        blobs.rmdir()
        blobs.write_text("not a folder")  # every blob write now fails, in the child as in the parent
    messages = warnings_of_the_next_cells(shell)
    assert len(messages) == 1 and "'make' was not stored" in messages[0] and "could not be written" in messages[0]
    assert shell.user_ns["big"][-1] == N - 1


def test_a_refused_fork_takes_the_thread_route(shell, store_dir, monkeypatch):
    def refuse() -> int:
        raise OSError(12, "Cannot allocate memory")  # strict overcommit with a big kernel

    monkeypatch.setattr(os, "fork", refuse)
    with writer(shell).hold():
        run(shell, MAKE)
        entry = queued(shell)
        assert entry.child is None and entry.digests is not None  # digests taken on the cell's thread instead
    cellcache.flush()
    assert len(entries(store_dir)) == 1


def test_fork_writes_false_takes_the_thread_route(shell, store_dir):
    session = cellcache.api.session(shell)
    session.config = session.config.with_overrides(fork_writes=False)
    with writer(shell).hold():
        run(shell, MAKE)
        entry = queued(shell)
        assert entry.child is None and entry.digests is not None
    cellcache.flush()
    assert len(entries(store_dir)) == 1


class Model:
    def __init__(self) -> None:
        self.weights = np.zeros(N)


@pytest.mark.parametrize(
    "values, forks",
    [
        ({"a": np.zeros(N)}, True),
        ({"df": pd.DataFrame({"x": np.zeros(N), "s": ["a"] * N})}, True),
        ({"parts": [np.zeros(N // 2), np.zeros(N // 2)], "meta": {"n": 2, "name": "x"}, "np": np}, True),
        ({"model": Model()}, False),  # a user's object: its pickling could reach anything
        ({"objects": np.array([object()] * N, dtype=object)}, False),
        ({"many": list(range(20_000)), "a": np.zeros(N)}, False),  # too many elements to check one by one
    ],
    ids=["array", "frame", "containers", "user-object", "object-array", "huge-list"],
)
def test_only_plain_memory_is_pickled_in_a_fork(values, forks):
    assert snapshot.forkable(values, wb.approx_nbytes(values) + N * 8) is forks


def test_small_outputs_are_hashed_not_forked(monkeypatch):
    monkeypatch.setattr(snapshot, "FORK_AT", 64 << 20)
    assert not snapshot.forkable({"a": np.zeros(N)}, N * 8)


def test_an_entry_left_to_a_snapshot_is_written_at_interpreter_exit(tmp_path):
    store = tmp_path / "store"
    out = run_in_fresh_shell(
        f"""
        import cellcache
        session = cellcache.api.session(sh)
        with session.writer.hold():
            sh.run_cell({MAKE!r}).raise_error()
            queued = [entry for _, entry in session.writer._queue]
        import sys
        sys.stdout.write(f"{{len(queued)}} {{all(entry.child is not None for entry in queued)}}")
        """,
        store,
        tmp_path,
        prelude="""
        import numpy  # imported before the step: its first import would file the entry under a second key too
        from cellcache.store import snapshot, writer
        snapshot.FORK_AT = writer.BEHIND_AT
        """,
    )
    assert out.split() == ["1", "True"]  # the process ended with the snapshot waiting for its turn...
    assert len(entries(store)) == 1  # ...and atexit had it write


@pytest.mark.kernel
def test_cellcache_run_stores_a_snapshot_before_the_kernel_goes(tmp_path, monkeypatch):
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    from cellcache import batch

    monkeypatch.setenv("CELLCACHE_DIR", str(tmp_path / "store"))
    nb = tmp_path / "nb.ipynb"
    setup = textwrap.dedent(
        """
        %load_ext cellcache
        import numpy  # imported before the step: its first import would file the entry under a second key too
        from cellcache.store import snapshot, writer
        snapshot.FORK_AT = writer.BEHIND_AT
        forked, _fork = [], snapshot.fork
        snapshot.fork = lambda work: forked.append(1) or _fork(work)
        """
    )
    check = "assert forked, 'the miss was not written by a snapshot'"
    nbformat.write(new_notebook(cells=[new_code_cell(setup), new_code_cell(MAKE), new_code_cell(check)]), nb)
    first = batch.run_notebook(nb)
    assert first.ok, first.error
    assert [r.status for r in first.cells][1] == batch.MISS
    assert len(entries(tmp_path / "store")) == 1  # a real ipykernel forked, and the run waited for the child
    second = batch.run_notebook(nb)
    assert [r.status for r in second.cells][1] == batch.HIT
