"""Entries made through the local store's own API, for the remote's tests."""
from __future__ import annotations

import dataclasses
import time
import uuid
from pathlib import Path
from typing import Any

from cellcache.store.local import LocalStore
from cellcache.store.manifest import Manifest


def local_entry(store: LocalStore, values: dict[str, Any], step: str = "step", notebook: str = "nb.ipynb", key: str | None = None) -> Manifest:
    blob = store.put_blob({"ns": values, "record": {}})
    fields = dict(
        key=key or uuid.uuid4().hex,
        step=step,
        created=time.time(),
        seconds=1.0,
        blob=blob.digest,
        blob_size=blob.size,
        blob_loader=blob.loader,
        outputs=tuple(values),
    )
    if "notebook" in {f.name for f in dataclasses.fields(Manifest)}:
        fields["notebook"] = notebook
    manifest = Manifest(**fields)
    store.commit(manifest)
    return manifest


def local_manifests(store: LocalStore, key: str) -> list[Manifest]:
    if hasattr(store, "candidates"):
        return [f.manifest for f in store.candidates(key) if f.manifest is not None]
    found = store.manifest(key)
    return [found] if found is not None else []


def blob_files(store: LocalStore) -> list[Path]:
    return [p for p in (store.root / "blobs").rglob("*") if p.is_file() and "tmp" not in p.parts]
