"""`cellcache run --executor dask://…` on a real distributed.LocalCluster: two worker processes on localhost,
each with a local store of its own (two "machines"), sharing steps only through a file:// remote."""
from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest

from cellcache import batch

from cellcache.batch import sweep
from cellcache.batch import RunOptions

from .helpers import step_counts, write_nb

distributed = pytest.importorskip("distributed")


@pytest.mark.kernel
@pytest.mark.timeout(240)
def test_a_4_job_sweep_on_two_workers_runs_the_shared_upstream_step_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cellcache.remote import signer_keys as keys
    signer = keys.generate(tmp_path / "keys" / "ci_key")
    monkeypatch.delenv("CELLCACHE_DIR", raising=False)
    for name, value in {
        "CELLCACHE_REMOTE": (tmp_path / "remote").as_uri(),
        "CELLCACHE_SIGNING_KEY": str(signer.path),
        "CELLCACHE_TRUSTED_SIGNERS": signer.fingerprint,
        "CELLCACHE_PUSH": "auto",
    }.items():
        monkeypatch.setenv(name, value)
    nb = write_nb(
        tmp_path / "project" / "train.ipynb",
        "lr = 0.05",
        "%%cached upstream\nimport time\ntime.sleep(0.5)\ndata = list(range(1000))",
        "%%cached fit\nimport os\nscore = sum(data) * lr\nwhere = os.environ['CELLCACHE_DIR']",
        parameters=0,
    )
    machines = [tmp_path / f"machine{i}" for i in range(2)]
    cluster = distributed.LocalCluster(
        n_workers=0, processes=True, threads_per_worker=1, host="127.0.0.1", dashboard_address=None, silence_logs=40
    )
    try:
        for i, store in enumerate(machines):  # each worker process gets its own local store, as on its own machine
            spec = copy.deepcopy(cluster.new_spec)
            spec.setdefault("options", {})["env"] = {"CELLCACHE_DIR": str(store)}
            cluster.worker_spec[f"machine{i}"] = spec
        cluster.sync(cluster._correct_state)
        with distributed.Client(cluster) as client:
            client.wait_for_workers(2, timeout=60)
        combos = sweep.combinations(params=[("lr", v) for v in ("0.1", "0.2", "0.3", "0.4")])
        options = RunOptions(executor=cluster.scheduler_address.replace("tcp://", "dask://"))
        result = batch.run_batch(batch.plan([nb], options, combos), options)
    finally:
        cluster.close()

    assert not result.interrupted and all(r.ok for r in result.notebooks), [r.error for r in result.notebooks]
    assert [r.parameters.as_dict()["lr"] for r in result.notebooks] == [0.1, 0.2, 0.3, 0.4]
    assert step_counts(result.notebooks, "upstream") == (1, 3), "the shared step ran once across the cluster"
    assert step_counts(result.notebooks, "fit") == (4, 0)
    assert all(store.is_dir() for store in machines), "both workers ran jobs"
    upstream = [c for r in result.notebooks for c in r.cells if c.step == "upstream" and c.status == "hit"]
    assert any((c.reason or "").startswith("hit (remote") for c in upstream), "the other machine got it from the remote"
    assert not result.notes, "with a remote there is nothing to warn about"


def test_without_a_remote_the_run_says_workers_share_only_one_filesystem(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CELLCACHE_REMOTE", raising=False)
    nb = write_nb(tmp_path / "n.ipynb", "x = 1")
    # A scheduler nobody listens on: the note comes before the connection fails.
    with pytest.raises(batch.BatchError, match="cannot reach the Dask scheduler at tcp://127.0.0.1:9"):
        batch.run_batch(batch.plan([nb], RunOptions()), RunOptions(executor="dask://127.0.0.1:9"))
    assert "only what one filesystem holds" in batch.remote_note(tmp_path / "store")


def test_without_the_dask_extra_the_message_says_how_to_install_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "distributed", None)  # as if dask[distributed] were not installed
    nb = write_nb(tmp_path / "n.ipynb", "x = 1")
    options = RunOptions(executor="dask://127.0.0.1:8786")
    with pytest.raises(batch.BatchError, match=r"pip install 'cellcache\[dask\]'"):
        batch.run_batch(batch.plan([nb], options), options)


@pytest.mark.kernel
@pytest.mark.timeout(240)
def test_a_worker_started_outside_the_project_runs_jobs_given_relative_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # issue 25: a worker whose working folder is not the project read "train.ipynb" against its own folder.
    monkeypatch.delenv("CELLCACHE_DIR", raising=False)
    monkeypatch.delenv("CELLCACHE_REMOTE", raising=False)
    project = tmp_path / "project"
    (project / "notebooks").mkdir(parents=True)
    (project / "pyproject.toml").write_text("[project]\nname = 'p'\n")
    write_nb(project / "notebooks" / "train.ipynb", "lr = 0.05", "%%cached fit\nimport os\nscore = lr * 2\nhere = os.getcwd()", parameters=0)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the worker processes start, and stay, here
    cluster = distributed.LocalCluster(
        n_workers=1, processes=True, threads_per_worker=2, host="127.0.0.1", dashboard_address=None, silence_logs=40
    )
    try:
        with distributed.Client(cluster) as client:
            client.wait_for_workers(1, timeout=60)
            assert client.run(os.getcwd) == {w: str(elsewhere) for w in client.scheduler_info()["workers"]}
        monkeypatch.chdir(project)  # the user runs the batch from the project, with relative paths
        combos = sweep.combinations(params=[("lr", v) for v in ("0.1", "0.2")])
        options = RunOptions(executor=cluster.scheduler_address.replace("tcp://", "dask://"), output_dir=Path("runs"))
        result = batch.run_batch(batch.plan([Path("notebooks/train.ipynb")], options, combos), options)
    finally:
        cluster.close()
    assert all(r.ok for r in result.notebooks), [r.error for r in result.notebooks]
    assert [r.path for r in result.notebooks] == [Path("notebooks/train.ipynb")] * 2, "shown as the user gave them"
    assert sorted(p.name for p in (project / "runs").iterdir()) == ["train-lr=0.1.ipynb", "train-lr=0.2.ipynb"]
    assert not (elsewhere / "runs").exists() and not (elsewhere / ".cellcache").exists()
    assert step_counts(result.notebooks, "fit") == (2, 0) and (project / ".cellcache").is_dir(), "the project's store"
