"""Helpers shared by the store tests: warnings counted per cell, manifests rewritten and re-signed."""
from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, Callable

import pytest

import cellcache
from cellcache.store.local import LocalStore
from cellcache.store.manifest import canonical_json
from tests.conftest import run

import hashlib
import hmac


def run_counting_warnings(shell: Any, cell: str) -> list[str]:
    """Run one cell (it must not raise); return the messages of the CacheWarnings it gave."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run(shell, cell)
    return [str(w.message) for w in caught if issubclass(w.category, cellcache.CacheWarning)]


def resign(store: LocalStore, path: Path, mutate: Callable[[dict], Any]) -> None:
    """Rewrite a manifest's JSON and sign it again with the store's real key: what a key holder could plant."""
    body = path.read_bytes().partition(b"\n")[2]
    data = json.loads(body)
    mutate(data)
    new = canonical_json(data) if isinstance(data, dict) else json.dumps(data).encode()
    path.write_bytes(hmac.new(store.secret, new, hashlib.sha256).hexdigest().encode() + b"\n" + new)


def only_manifest(store: LocalStore) -> Path:
    (path,) = [p for _, p in store._scan()]
    return path


@pytest.fixture
def local(store_dir: Path) -> LocalStore:
    return LocalStore(store_dir)
