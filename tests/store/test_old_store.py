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

from cellcache.errors import CacheWarning
from tests.conftest import run
from tests.fixtures.make_store_0_1 import CELLS, KEY

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "store-0.1"


@pytest.fixture
def old_store(store_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    shutil.copytree(FIXTURE, store_dir)
    monkeypatch.setenv("CELLCACHE_KEY", KEY)
    return store_dir


def test_every_blob_of_the_old_store_loads_with_equal_values(old_store: Path) -> None:
    """What the moves must keep: every name a blob holds resolves, and the values come back equal."""
    from cellcache.cell import effects
    from cellcache.store.local import LocalStore

    store = LocalStore(old_store)
    bundles = {}
    for key in {row.key for row in store.entries()}:
        (found,) = [f for f in store.candidates(key) if f.manifest is not None]
        bundles[found.manifest.step] = store.load(found.manifest)
    ns = bundles["defs"]["ns"]
    assert np.array_equal(ns["big"], np.arange(140_000, dtype=np.float64))
    assert type(ns["tagged"]).__name__ == "Tagged" and ns["tagged"].unit == "m"
    assert ns["point"].double == 6 and isinstance(ns["point"], ns["Point"])
    assert [f(4) for f in ns["helpers"]] == [16, 5]
    # The replay of the unflag step deletes the module attribute, by the old name of the marker class.
    (chain, value), = bundles["unflag"]["record"]["effects"]["attrs"]
    assert tuple(chain) == ("np", "cellcache_fixture_flag") and value is effects._Absent


def test_the_old_store_restores_through_the_magic(old_store: Path, shell, capsys) -> None:
    """Through a shell, the entries of cells whose key this release did not change hit; the others run, warning nothing."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)  # an old blob is never "broken": a changed key is a quiet miss
        run(shell, CELLS[0])
        run(shell, CELLS[1])
        run(shell, CELLS[2])
    ns = shell.user_ns
    assert "stored by the old layout" in capsys.readouterr().out
    assert ns["point"].double == 6 and ns["tagged"].unit == "m" and [f(4) for f in ns["helpers"]] == [16, 5]
    assert not hasattr(np, "cellcache_fixture_flag") and ns["flagged"] is False
