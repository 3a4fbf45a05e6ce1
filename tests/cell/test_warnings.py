"""Warnings point at the user's cell, in a real shell, not at cellcache's or IPython's frames."""
from __future__ import annotations

import os
import warnings

import cellcache
from cellcache.errors import CacheWarning

from tests.conftest import run

PACKAGE = os.path.dirname(cellcache.__file__)


def cache_warnings(shell, source: str) -> list[warnings.WarningMessage]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run(shell, source)
    return [w for w in caught if issubclass(w.category, CacheWarning)]


def assert_in_the_cell(w: warnings.WarningMessage) -> None:
    # IPython names a cell's code "<ipython-input-N-...>"; a kernel names it after a temp file of the cell.
    assert not w.filename.startswith(PACKAGE), w.filename
    assert "IPython" not in w.filename and "decorator-gen" not in w.filename, w.filename
    assert w.filename.startswith("<ipython-input-") or "ipykernel" in w.filename, w.filename


def test_an_unfingerprintable_input_warns_once_at_the_cell(shell):
    run(shell, "gen = (i for i in range(3))")
    caught = cache_warnings(shell, "%%cached uses_gen\ntotal = sum(gen)")
    assert len(caught) == 1 and "--ignore gen" in str(caught[0].message)
    assert_in_the_cell(caught[0])


def test_a_failing_listener_warns_at_the_cell(shell):
    def broken(_run):
        raise RuntimeError("panel gone")

    cellcache.api.session(shell).listeners.append(broken)
    caught = cache_warnings(shell, "%%cached fine\nx = 1")
    assert len(caught) == 1 and "panel gone" in str(caught[0].message)
    assert_in_the_cell(caught[0])
