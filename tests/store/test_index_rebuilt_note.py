"""Issue 25: a damaged index that is rebuilt says so, once."""
from __future__ import annotations

import warnings
from pathlib import Path

from cellcache.errors import CacheWarning
from cellcache.store.local import LocalStore
from cellcache.store.manifest import Manifest


def _said(store_dir: Path) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        store = LocalStore(store_dir)
        rows = store.index.entries()
        store.index.close()
    assert [r.step for r in rows] == ["load"], "the entry survives the rebuild"
    return [str(w.message) for w in caught if issubclass(w.category, CacheWarning)]


def test_a_damaged_index_is_rebuilt_with_one_warning(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    blob = store.put_blob({"ns": {"x": 1}, "record": {}})
    store.commit(Manifest(key="ab" * 16, step="load", created=1.0, seconds=1.0, blob=blob.digest, blob_size=blob.size, blob_loader=blob.loader, outputs=("x",)))
    store.index.close()
    (tmp_path / "store" / "index.sqlite").write_bytes(b"this is not a database" * 100)
    said = _said(tmp_path / "store")
    assert len(said) == 1 and "index was damaged" in said[0] and "rebuilt it from the entries' manifests" in said[0], said
    assert _said(tmp_path / "store") == [], "once: the rebuilt index is sound"
