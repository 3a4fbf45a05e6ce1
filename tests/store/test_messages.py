"""Messages that name the real cause (issue 23.8).

A store that can't be written says so, not "the outputs could not be pickled";
a validly signed manifest over the documented limit is refused as too large,
not as a signature that does not match.
"""
from __future__ import annotations

import time
import warnings

import pytest

import cellcache
from cellcache.store.local import LocalStore
from cellcache.store.manifest import MANIFEST_LIMIT, Manifest
from tests.store.conftest import run_counting_warnings
from tests.store.test_faults import _remount, tmpfs, use_store  # noqa: F401 - the tmpfs fixture

SMALL = "%%cached small\nx = 6 * 7"
BIG = "%%cached big\nimport numpy as np\nbig = np.arange(1 << 18)"  # 2 MB: written behind, on the writer thread


def _messages(shell, cell: str) -> list[str]:
    """The cell's CacheWarnings, and those of its write behind (told when the writer is flushed)."""
    messages = run_counting_warnings(shell, cell)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cellcache.flush()
    return messages + [str(w.message) for w in caught if issubclass(w.category, cellcache.CacheWarning)]


@pytest.mark.parametrize("cell", [SMALL, BIG], ids=["at-once", "behind"])
def test_a_store_path_that_is_a_file_is_named_not_blamed_on_pickling(shell, monkeypatch, tmp_path, cell):
    path = tmp_path / "not-a-folder"
    path.write_text("I am a file")
    use_store(shell, monkeypatch, path)
    messages = _messages(shell, cell)
    assert len(messages) == 1 and "is a file, not a folder" in messages[0], messages
    assert "pickle" not in messages[0], messages


def test_a_read_only_filesystem_is_named(shell, monkeypatch, tmpfs):  # noqa: F811
    store = tmpfs / "store"
    use_store(shell, monkeypatch, store)
    run_counting_warnings(shell, SMALL)
    cellcache.api.active.store.close()
    _remount(tmpfs, "ro")
    use_store(shell, monkeypatch, store)
    for cell in ("%%cached other\ny = 1", BIG):
        messages = _messages(shell, cell)
        assert len(messages) == 1 and "read-only" in messages[0], messages
        assert "pickle" not in messages[0], messages


def test_a_validly_signed_manifest_over_the_limit_is_refused_as_too_large(tmp_path):
    store = LocalStore(tmp_path / "store")
    blob = store.put_blob({"ns": {"x": 1}, "record": {}})
    padding = {f"input:v{i}": "d" * 1000 for i in range(MANIFEST_LIMIT // 1000 + 10)}
    manifest = Manifest(key="a" * 32, step="s", created=time.time(), seconds=1.0, blob=blob.digest, blob_size=blob.size,
                        blob_loader=blob.loader, outputs=("x",), descriptions=padding)
    store.commit(manifest)  # signed with the store's own key: valid, only too big
    assert store.manifest_path("a" * 32).stat().st_size > MANIFEST_LIMIT
    (found,) = list(store.candidates("a" * 32))
    assert found.manifest is None
    assert "over the limit of 16 MiB" in found.problem and "signature" not in found.problem, found.problem
    (broken,) = store.verify().broken
    assert "over the limit" in broken[1]
