"""The team story, end to end with real kernels and moto's S3.

CI runs `cellcache run --push` on the quickstart; a second machine (another
working copy, a fresh store, no signing key) runs it and hits every step
from the remote; its next run is all local hits.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

QUICKSTART = Path(__file__).resolve().parents[2] / "notebooks" / "quickstart.ipynb"
STEPS = 5  # generate, clean, features, fit, evaluate

pytestmark = pytest.mark.kernel


def working_copy(root: Path) -> Path:
    root.mkdir(parents=True)
    (root / "pyproject.toml").write_text("[tool.cellcache]\n")  # the project root: its store is root/.cellcache
    shutil.copy(QUICKSTART, root / "quickstart.ipynb")
    return root / "quickstart.ipynb"


def cellcache(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-c", "from cellcache.cli.main import main; main()", *args]
    return subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=240)


def statuses(output: str) -> list[str]:
    return re.findall(r"│ (hit \(remote\)|hit|miss|plain|error) ", output)


@pytest.mark.timeout(400)
def test_ci_pushes_and_a_fresh_clone_hits_every_step_from_the_remote(tmp_path: Path, s3, signer) -> None:
    base = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "CELLCACHE_REMOTE": s3.url}
    base.pop("CELLCACHE_DIR", None)
    ci_env = {**base, "CELLCACHE_SIGNING_KEY": str(signer.path)}
    laptop_env = {**base, "CELLCACHE_TRUSTED_SIGNERS": signer.fingerprint}

    ci_nb = working_copy(tmp_path / "ci")
    ci = cellcache("run", "--push", str(ci_nb), env=ci_env, cwd=ci_nb.parent)
    assert ci.returncode == 0, ci.stdout + ci.stderr
    assert statuses(ci.stdout).count("miss") == STEPS
    assert f"pushed {STEPS} entries" in ci.stderr

    laptop_nb = working_copy(tmp_path / "laptop")
    first = cellcache("run", str(laptop_nb), env=laptop_env, cwd=laptop_nb.parent)
    assert first.returncode == 0, first.stdout + first.stderr
    assert statuses(first.stdout).count("hit (remote)") == STEPS, first.stdout
    assert "miss" not in statuses(first.stdout)

    again = cellcache("run", str(laptop_nb), env=laptop_env, cwd=laptop_nb.parent)
    assert again.returncode == 0, again.stdout + again.stderr
    assert statuses(again.stdout).count("hit") == STEPS and "hit (remote)" not in again.stdout, again.stdout

    stats = cellcache("stats", env=laptop_env, cwd=laptop_nb.parent)
    assert stats.returncode == 0, stats.stderr


def tiny_notebook(root: Path) -> Path:
    import nbformat

    root.mkdir(parents=True)
    (root / "pyproject.toml").write_text("[tool.cellcache]\n")
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("%load_ext cellcache\nn = 10"),
        nbformat.v4.new_code_cell("%%cached squares\nsquares = [i * i for i in range(n)]"),
        nbformat.v4.new_code_cell("%%cached total\ntotal = sum(squares)"),
    ]
    path = root / "tiny.ipynb"
    nbformat.write(nb, path)
    return path


def cells_of(output: str) -> list[tuple[str, str]]:
    import json

    (notebook,) = json.loads(output)["notebooks"]
    return [(c["step"], c["status"]) for c in notebook["cells"] if c["step"]]


@pytest.mark.timeout(240)
def test_status_looks_at_the_remote_only_when_asked(tmp_path: Path, s3, signer) -> None:
    base = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "CELLCACHE_REMOTE": s3.url}
    ci_nb = tiny_notebook(tmp_path / "ci")
    ci = cellcache("run", "--push", str(ci_nb), env={**base, "CELLCACHE_SIGNING_KEY": str(signer.path)}, cwd=ci_nb.parent)
    assert ci.returncode == 0, ci.stdout + ci.stderr
    laptop_env = {**base, "CELLCACHE_TRUSTED_SIGNERS": signer.fingerprint}
    laptop_nb = tiny_notebook(tmp_path / "laptop")
    local_only = cellcache("status", "--json", str(laptop_nb), env=laptop_env, cwd=laptop_nb.parent)
    assert local_only.returncode == 0, local_only.stderr
    assert cells_of(local_only.stdout)[0] == ("squares", "would-run")
    remote = cellcache("status", "--remote", "--json", str(laptop_nb), env=laptop_env, cwd=laptop_nb.parent)
    assert remote.returncode == 0, remote.stderr
    assert cells_of(remote.stdout) == [("squares", "hit"), ("total", "hit")]
