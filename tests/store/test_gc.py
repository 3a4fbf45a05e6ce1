"""Everything can be reclaimed: temp files, orphan blobs, quarantined blobs; a shared blob is counted once."""
from __future__ import annotations

import os
import time
from pathlib import Path

from click.testing import CliRunner

from cellcache.cli.main import main
from cellcache.store.local import LocalStore
from cellcache.store.manifest import Manifest, OutFile


def put(store: LocalStore, key: str, value, step: str = "s", outs=()) -> Manifest:
    blob = store.put_blob({"ns": value, "record": {}})
    manifest = Manifest(
        key=key, step=step, created=time.time(), seconds=1.0, blob=blob.digest, blob_size=blob.size,
        blob_loader=blob.loader, outputs=tuple(value), outs=tuple(outs),
    )
    store.commit(manifest)
    return manifest


def _age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def _leftovers(store: LocalStore) -> tuple[Path, Path, Path]:
    """What kills leave behind: a temp blob, a temp manifest, and a blob whose manifest never came."""
    tmp_blob = store.root / "blobs" / "tmp" / "dead.tmp"
    tmp_blob.parent.mkdir(parents=True, exist_ok=True)
    tmp_blob.write_bytes(b"t" * 5000)
    tmp_manifest = store.root / "entries" / "ab" / ("ab" * 16) / ".x.json.1234.tmp"
    tmp_manifest.parent.mkdir(parents=True, exist_ok=True)
    tmp_manifest.write_bytes(b"m" * 100)
    orphan = store.put_blob({"ns": {"never": "committed" * 100}, "record": {}})
    return tmp_blob, tmp_manifest, store.blob_path(orphan.digest)


def test_gc_reclaims_old_temp_files_and_orphan_blobs_but_not_young_ones(tmp_path):
    store = LocalStore(tmp_path)
    kept = put(store, "a" * 32, {"x": 1})
    files = _leftovers(store)
    assert store.gc(older_than=10**9) == (0, 0), "a writer still at work owns young temp files and blobs"
    assert all(p.exists() for p in files)
    expected = sum(p.stat().st_size for p in files)
    for path in files:
        _age(path, 2 * 3600)
    count, freed = store.gc(older_than=10**9)
    assert count == 0 and freed == expected
    assert not any(p.exists() for p in files)
    assert store.manifest(kept.key) is not None and store.blob_path(kept.blob).exists()


def test_gc_max_size_counts_a_shared_blob_once(tmp_path):
    store = LocalStore(tmp_path)
    a = put(store, "a" * 32, {"x": list(range(1000))}, step="one")
    b = put(store, "b" * 32, {"x": list(range(1000))}, step="two")
    assert a.blob == b.blob
    assert store.gc(max_size=a.blob_size) == (0, 0), "two entries sharing one blob take one blob's space"
    count, freed = store.gc(max_size=a.blob_size - 1)
    assert count == 2 and freed == a.blob_size  # never "dropped 1 entry, freed 0 B"
    result = CliRunner().invoke(main, ["gc", "--max-size", "0B", "--yes"], env={"CELLCACHE_DIR": str(tmp_path)})
    assert "dropped 0 entries" in result.output


def test_gc_frees_an_outs_blob_shared_between_entries_once(tmp_path):
    store = LocalStore(tmp_path)
    (tmp_path / "f").write_bytes(b"w" * 10_000)
    digest, size = store.put_file_blob(tmp_path / "f")
    out = OutFile("f", digest, size, 0o644)
    a = put(store, "a" * 32, {"x": 1}, step="one", outs=[out])
    put(store, "b" * 32, {"x": 2}, step="two", outs=[out])
    total = store.index.total_size()
    assert total == size + a.blob_size + store.manifest("b" * 32).blob_size
    count, freed = store.gc(max_size=total - 1)
    assert count == 1 and freed == a.blob_size and store.blob_path(digest).exists()


def test_verify_reports_reclaimable_bytes_and_repair_reclaims_them(tmp_path):
    store = LocalStore(tmp_path)
    put(store, "a" * 32, {"x": 1})
    files = _leftovers(store)
    for path in files:
        _age(path, 2 * 3600)
    expected = sum(p.stat().st_size for p in files)
    report = store.verify()
    assert report.broken == () and report.reclaimable == expected and report.leftovers == 3
    assert all(p.exists() for p in files), "reporting reclaims nothing"
    result = CliRunner().invoke(main, ["verify"], env={"CELLCACHE_DIR": str(tmp_path)})
    assert "reclaimable in 3 leftover file(s)" in result.output and result.exit_code == 0
    report = store.verify(repair=True)
    assert report.reclaimed == expected and not any(p.exists() for p in files)
    assert store.verify().reclaimable == 0


def test_a_v1_manifest_is_reclaimed(tmp_path):
    store = LocalStore(tmp_path)
    put(store, "a" * 32, {"x": 1})
    old = tmp_path / "entries" / "cd" / ("cd" * 16 + ".json")
    old.parent.mkdir(parents=True, exist_ok=True)
    old.write_bytes(b"x" * 64 + b"\n{}")
    assert store.verify().reclaimable == old.stat().st_size
    store.gc(older_than=10**9)
    assert not old.exists() and store.manifest("a" * 32) is not None


def test_clear_empties_a_linked_blobs_folder_and_keeps_everything_else_there(tmp_path):
    other_disk = tmp_path / "big-disk" / "cellcache-blobs"
    other_disk.mkdir(parents=True)
    (other_disk / "README-mine.txt").write_text("not cellcache's")
    (other_disk / "ab").mkdir()
    (other_disk / "ab" / "notes.txt").write_text("also not cellcache's")
    root = tmp_path / "store"
    root.mkdir()
    (root / "blobs").symlink_to(other_disk)
    store = LocalStore(root)
    m = put(store, "a" * 32, {"x": list(range(100))})
    assert (other_disk / m.blob[:2] / m.blob).is_file(), "blobs go where the user linked them"
    assert store.load(m)["ns"]["x"] == list(range(100))
    assert store.clear() == 1
    assert (root / "blobs").is_symlink() and other_disk.is_dir()
    assert (other_disk / "README-mine.txt").read_text() == "not cellcache's"
    assert (other_disk / "ab" / "notes.txt").exists()
    assert not (other_disk / m.blob[:2] / m.blob).exists() and store.manifest(m.key) is None
    again = put(store, "a" * 32, {"x": [1]})
    assert store.load(again)["ns"]["x"] == [1]
