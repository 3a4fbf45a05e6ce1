"""A store written by cellcache 0.1, before the house moved, still restores (tests/fixtures/make_store_0_1.py).

Blobs name reducers and classes by module path; after a module moves, the old
names must still resolve, or every entry a user has becomes a miss (or worse,
an unpickling error).
"""
from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

import cellcache
from cellcache.errors import CacheWarning
from tests.conftest import run
from tests.fixtures.make_store_0_1 import CELLS, KEY

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "store-0.1"


@pytest.fixture
def old_store(store_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    shutil.copytree(FIXTURE, store_dir)
    monkeypatch.setenv("CELLCACHE_KEY", KEY)
    return store_dir


def test_every_entry_of_the_old_store_hits_with_equal_values(old_store: Path, shell, capsys) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)
        run(shell, CELLS[0])
        assert cellcache.last_run().status == "hit", cellcache.last_run()
        run(shell, CELLS[1])
        run(shell, CELLS[2])
        assert cellcache.last_run().status == "hit", cellcache.last_run()
    ns = shell.user_ns
    assert "stored by the old layout" in capsys.readouterr().out
    assert np.array_equal(ns["big"], np.arange(140_000, dtype=np.float64))
    assert type(ns["tagged"]).__name__ == "Tagged" and ns["tagged"].unit == "m"
    assert ns["point"].double == 6 and isinstance(ns["point"], ns["Point"])
    assert [f(4) for f in ns["helpers"]] == [16, 5]
    # The entry's replay deleted the module attribute, by the old name of the marker class.
    assert not hasattr(np, "cellcache_fixture_flag") and ns["flagged"] is False
