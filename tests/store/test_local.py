"""The local store, without a shell."""
from __future__ import annotations

from cellcache.store.base import RunRecord, StepRef

import sqlite3
import time
from pathlib import Path

import pytest

from cellcache.errors import EntryCorrupt, UntrustedEntry
from cellcache.store.local import LocalStore
from cellcache.store.manifest import Manifest


def put(store: LocalStore, key: str, value, step: str = "s", created: float | None = None) -> Manifest:
    blob = store.put_blob({"ns": value, "record": {}})
    manifest = Manifest(
        key=key,
        step=step,
        created=created or time.time(),
        seconds=1.0,
        blob=blob.digest,
        blob_size=blob.size,
        blob_loader=blob.loader,
        outputs=tuple(value),
    )
    store.commit(manifest)
    return manifest


def test_roundtrip_and_fresh_copies(tmp_path):
    store = LocalStore(tmp_path)
    m = put(store, "a" * 32, {"x": [1, 2]})
    loaded = store.manifest("a" * 32)
    assert loaded == m
    first, second = store.load(loaded), store.load(loaded)
    assert first == {"ns": {"x": [1, 2]}, "record": {}}
    first["ns"]["x"].append(3)
    assert second["ns"]["x"] == [1, 2]


def test_missing_key_is_none(tmp_path):
    assert LocalStore(tmp_path).manifest("0" * 32) is None


def test_identical_content_is_stored_once(tmp_path):
    store = LocalStore(tmp_path)
    a = put(store, "a" * 32, {"x": list(range(100))})
    b = put(store, "b" * 32, {"x": list(range(100))})
    assert a.blob == b.blob
    assert len([p for p in (tmp_path / "blobs").glob("*/*") if p.parent.name != "tmp"]) == 1


def test_no_temporary_files_are_left(tmp_path):
    store = LocalStore(tmp_path)
    put(store, "a" * 32, {"x": 1})
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]


def test_a_failed_pickle_leaves_nothing(tmp_path):
    import threading

    store = LocalStore(tmp_path)
    with pytest.raises(Exception):
        store.put_blob({"ns": {"lock": threading.Lock()}})
    assert not [p for p in (tmp_path / "blobs").rglob("*") if p.is_file()]


def test_tampered_manifest_is_refused(tmp_path):
    store = LocalStore(tmp_path)
    put(store, "a" * 32, {"x": 1})
    path = store.manifest_path("a" * 32)
    signature, body = path.read_bytes().split(b"\n", 1)
    path.write_bytes(signature + b"\n" + body.replace(b'"outputs":["x"]', b'"outputs":["y"]'))
    with pytest.raises(UntrustedEntry, match="does not match"):
        store.manifest("a" * 32)
    path.write_bytes(body)  # the signature line removed
    with pytest.raises(UntrustedEntry, match="unsigned"):
        store.manifest("a" * 32)
    other = LocalStore(tmp_path / "elsewhere", key=b"another user's key, 32 bytes long")
    path.write_bytes(signature + b"\n" + body)
    assert store.manifest("a" * 32) is not None
    other.manifest_path("a" * 32).parent.mkdir(parents=True)
    other.manifest_path("a" * 32).write_bytes(path.read_bytes())
    with pytest.raises(UntrustedEntry, match="does not match"):
        other.manifest("a" * 32)


def test_garbage_manifest_is_corrupt_not_a_crash(tmp_path):
    import hashlib
    import hmac

    store = LocalStore(tmp_path)
    path = store.manifest_path("b" * 32)
    path.parent.mkdir(parents=True)
    body = b"{not json"
    path.write_bytes(hmac.new(store.secret, body, hashlib.sha256).hexdigest().encode() + b"\n" + body)
    with pytest.raises(EntryCorrupt, match="not valid JSON"):
        store.manifest("b" * 32)


def test_index_is_sqlite_in_wal_mode(tmp_path):
    store = LocalStore(tmp_path)
    put(store, "a" * 32, {"x": 1})
    db = sqlite3.connect(tmp_path / "index.sqlite")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"entries", "steps", "runs"} <= tables


def test_invalidate_drops_one_step_only(tmp_path):
    store = LocalStore(tmp_path)
    a = put(store, "a" * 32, {"x": 1}, step="one")
    b = put(store, "b" * 32, {"y": 2}, step="two")
    assert store.invalidate("one") == 1
    assert store.manifest(a.key) is None and store.manifest(b.key) is not None
    assert not store.blob_path(a.blob).exists() and store.blob_path(b.blob).exists()


def test_invalidate_keeps_a_blob_shared_with_another_step(tmp_path):
    store = LocalStore(tmp_path)
    a = put(store, "a" * 32, {"x": 1}, step="one")
    put(store, "b" * 32, {"x": 1}, step="two")
    store.invalidate("one")
    assert store.blob_path(a.blob).exists()


def test_gc_drops_least_recently_used_first(tmp_path):
    store = LocalStore(tmp_path)
    now = time.time()
    old = put(store, "a" * 32, {"x": "a" * 1000}, created=now - 100)
    mid = put(store, "b" * 32, {"x": "b" * 1000}, created=now - 50)
    new = put(store, "c" * 32, {"x": "c" * 1000}, created=now - 10)
    store.record_run(RunRecord(StepRef("", "s"), old.key, "hit", 0.1, 0.9, "hit"))  # using the oldest makes it the most recent
    size_one = store.index.entry(new.key).size
    count, freed = store.gc(max_size=size_one * 2)
    assert count == 1 and freed > 0
    assert store.manifest(mid.key) is None
    assert store.manifest(old.key) is not None and store.manifest(new.key) is not None
    count, _ = store.gc(older_than=5)
    # Age counts from the last use: the hit touched `old` just now, so only `new` (unused for 10 s) goes.
    assert count == 1
    assert store.manifest(old.key) is not None and store.manifest(new.key) is None


def test_verify_reports_and_repairs(tmp_path):
    store = LocalStore(tmp_path)
    good = put(store, "a" * 32, {"x": 1})
    bad = put(store, "b" * 32, {"y": list(range(50))})
    path = store.blob_path(bad.blob)
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF
    path.write_bytes(bytes(data))
    report = store.verify()
    assert report.checked == 2 and [k for k, _ in report.broken] == [bad.key]
    assert "does not match" in report.broken[0][1]
    assert store.manifest(bad.key) is not None  # reporting alone drops nothing
    store.verify(repair=True)
    assert store.manifest(bad.key) is None and store.manifest(good.key) is not None
    assert store.verify().broken == ()


def test_step_rows_aggregate_runs_and_entries(tmp_path):
    store = LocalStore(tmp_path)
    m = put(store, "a" * 32, {"x": 1}, step="prep")
    store.record_run(RunRecord(StepRef("", "prep"), m.key, "miss", 2.0, 0.0, "first run of this step"))
    store.record_run(RunRecord(StepRef("", "prep"), m.key, "hit", 0.01, 1.99, "hit"))
    store.record_run(RunRecord(StepRef("", "prep"), m.key, "hit", 0.01, 1.99, "hit"))
    (row,) = store.step_rows()
    assert (row.name, row.runs, row.hits, row.misses, row.entries) == ("prep", 3, 2, 1, 1)
    assert row.hit_rate == pytest.approx(2 / 3) and row.saved_seconds == pytest.approx(3.98)
    assert row.last_miss_reason == "first run of this step" and row.last_status == "hit"
    assert row.size_bytes == m.blob_size


def test_two_stores_share_one_folder(tmp_path):
    # Two kernels on one store: each sees the other's entries, and the key is shared (it is the user's, outside the store).
    first, second = LocalStore(tmp_path), LocalStore(tmp_path)
    m = put(first, "a" * 32, {"x": 1})
    assert second.manifest(m.key) == m
    assert first.secret == second.secret and not (Path(tmp_path) / "secret").exists()


def test_loader_follows_the_content_and_joblib_still_reads_both(tmp_path):
    import joblib
    import numpy as np

    store = LocalStore(tmp_path)
    plain = store.put_blob({"ns": {"x": [1, 2]}, "record": {}})
    arrays = store.put_blob({"ns": {"a": np.arange(3)}, "record": {}})
    assert (plain.loader, arrays.loader) == ("pickle", "joblib")
    assert joblib.load(store.blob_path(plain.digest))["ns"]["x"] == [1, 2]
    assert joblib.load(store.blob_path(arrays.digest))["ns"]["a"].tolist() == [0, 1, 2]


def test_an_outs_blob_is_kept_while_another_entry_uses_it(tmp_path):
    from cellcache.store.manifest import OutFile

    store = LocalStore(tmp_path)
    shared = tmp_path / "model.bin"
    shared.write_bytes(b"weights" * 50)
    digest, size = store.put_file_blob(shared)
    for key, step in (("a" * 32, "one"), ("b" * 32, "two")):
        blob = store.put_blob({"ns": {step: 1}, "record": {}})
        store.commit(
            Manifest(
                key=key, step=step, created=time.time(), seconds=1.0, blob=blob.digest, blob_size=blob.size,
                blob_loader=blob.loader, outputs=(step,), outs=(OutFile("model.bin", digest, size, 0o644),),
            )
        )
    store.invalidate("one")
    assert store.blob_path(digest).exists()  # entry two still needs it
    store.invalidate("two")
    assert not store.blob_path(digest).exists()


def test_a_new_store_is_ignored_by_git(tmp_path):
    store = LocalStore(tmp_path / "store")
    put(store, "a" * 32, {"x": 1})
    assert (tmp_path / "store" / ".gitignore").read_text().splitlines()[-1] == "*"
