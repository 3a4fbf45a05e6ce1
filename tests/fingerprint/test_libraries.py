"""Objects from scikit-learn, statsmodels, scipy, lmfit, pandas, polars, pyarrow and matplotlib.

Their digests must not depend on the process: four processes with four hash
seeds build the same objects (``library_objects``) and must agree on every
digest, or on refusing it. The processes are started once, in parallel.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("sklearn")
pytest.importorskip("statsmodels")
pytest.importorskip("scipy")
pytest.importorskip("lmfit")
pytest.importorskip("polars")

SCRIPT = Path(__file__).with_name("library_objects.py")
ROOT = Path(__file__).resolve().parents[2]
SEEDS = ("0", "1", "271828", "random")

# The ones notebooks fit and load most: these must have a digest, not only a consistent refusal.
MUST_HAVE_A_DIGEST = {
    "lmfit_parameters",
    "lmfit_model_result",
    "lmfit_minimizer_result",
    "statsmodels_dataset",
    "statsmodels_dataset_pandas",
    "statsmodels_ols_results",
    "statsmodels_glm_results",
    "sklearn_iris_bunch",
    "sklearn_fitted_pipeline",
    "sklearn_fitted_forest",
    "scipy_sparse_matrices",
    "scipy_optimize_result",
    "pandas_frames",
    "polars_frames",
    "pyarrow_tables",
}


@pytest.fixture(scope="module")
def digests_per_process() -> list[dict[str, str]]:
    processes = []
    for seed in SEEDS:
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg"}
        processes.append(
            subprocess.Popen(
                [sys.executable, str(SCRIPT)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=ROOT
            )
        )
    outputs = []
    for process in processes:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err.decode()[-3000:]
        outputs.append(json.loads(out))
    return outputs


def test_digests_agree_across_processes_and_hash_seeds(digests_per_process: list[dict[str, str]]) -> None:
    first = digests_per_process[0]
    for seed, other in zip(SEEDS[1:], digests_per_process[1:]):
        differing = sorted(name for name in first if first[name] != other.get(name))
        assert not differing, f"PYTHONHASHSEED={seed} gives other digests for {differing}"


def test_a_walk_does_not_change_what_it_walks(digests_per_process: list[dict[str, str]]) -> None:
    changed = sorted(name for name, digest in digests_per_process[0].items() if digest.startswith("changed"))
    assert not changed


def test_the_common_objects_have_a_digest(digests_per_process: list[dict[str, str]]) -> None:
    refused = {name: digest for name, digest in digests_per_process[0].items() if name in MUST_HAVE_A_DIGEST and digest.startswith("refused")}
    assert not refused
