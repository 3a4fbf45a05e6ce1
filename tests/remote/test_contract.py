"""The Store contract (cellcache.store.base.Store), run over every place: the local store, and a tiered
store in front of a file:// remote and in front of an S3 remote (moto's server on 127.0.0.1, through s3fs)."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from cellcache.remote.bucket import RemoteStore
from cellcache.remote.tiered import TieredStore
from cellcache.store.base import LOCAL, REMOTE, Store
from cellcache.store.local import LocalStore
from cellcache.store.manifest import Manifest, OutFile

PLACES = ["local", "tiered-file", "tiered-s3"]


@dataclass
class Place:
    store: Store
    fresh: Callable[[], Store]  # the same place seen from another machine: an empty local store, the same remote
    remote: RemoteStore | None


@pytest.fixture(params=PLACES)
def place(request: pytest.FixtureRequest, tmp_path: Path, signer) -> Place:
    if request.param == "local":
        return Place(LocalStore(tmp_path / "store"), lambda: LocalStore(tmp_path / "store"), None)
    url = f"file://{tmp_path / 'remote'}" if request.param == "tiered-file" else request.getfixturevalue("s3").url

    def remote() -> RemoteStore:
        return RemoteStore(url, trusted=(signer.fingerprint,), signing_key=signer.key, timeout=10)

    counter = iter(range(1000))
    return Place(
        TieredStore(LocalStore(tmp_path / "store"), remote()),
        lambda: TieredStore(LocalStore(tmp_path / f"elsewhere-{next(counter)}"), remote()),
        remote(),
    )


def store_value(store: Store, key: str, value: dict, step: str = "s") -> Manifest:
    with store.writing():
        blob = store.put_blob({"ns": value, "record": {}})
        manifest = Manifest(
            key=key, step=step, created=time.time(), seconds=1.0, blob=blob.digest, blob_size=blob.size,
            blob_loader=blob.loader, outputs=tuple(value), notebook="nb.ipynb",
        )  # fmt: skip
        store.commit(manifest)
    return manifest


def test_an_entry_committed_is_found_and_loads_equal(place: Place) -> None:
    assert not place.store.exists()
    manifest = store_value(place.store, "a" * 32, {"x": [1, 2, 3]})
    assert place.store.exists()
    (found,) = [f for f in place.store.candidates("a" * 32) if f.manifest is not None]
    assert found.source == LOCAL and found.manifest.key == manifest.key
    assert place.store.load(found.manifest)["ns"] == {"x": [1, 2, 3]}
    assert list(place.store.candidates("b" * 32)) == [] or all(f.manifest is None for f in place.store.candidates("b" * 32))


def test_an_outs_file_is_written_back_with_its_bytes_and_mode(place: Place, tmp_path: Path, monkeypatch) -> None:
    project = tmp_path / "project"
    project.mkdir()
    monkeypatch.chdir(project)  # an --outs path is relative to the cell's working folder, and never leaves it
    source = project / "result.bin"
    source.write_bytes(b"\x00payload" * 100)
    source.chmod(0o640)
    digest, size = place.store.put_file_blob(source)
    written = source.read_bytes()
    source.unlink()
    assert place.store.restore_file(OutFile("result.bin", digest, size, 0o640), Path.cwd() / "result.bin")
    assert source.read_bytes() == written and source.stat().st_mode & 0o777 == 0o640


def test_a_dropped_entry_is_gone_from_this_place(place: Place) -> None:
    store_value(place.store, "c" * 32, {"y": 1})
    kept = store_value(place.store, "d" * 32, {"z": 2})
    local = place.store.local if isinstance(place.store, TieredStore) else place.store
    (row,) = [r for r in local.entries() if r.key == "c" * 32]
    place.store.drop_entry(row.key, row.variant)
    assert not [f for f in place.store.candidates("c" * 32) if f.manifest is not None]
    (found,) = [f for f in place.store.candidates(kept.key) if f.manifest is not None]
    assert place.store.load(found.manifest)["ns"] == {"z": 2}


def test_an_entry_pushed_from_one_machine_is_read_through_on_another(place: Place) -> None:
    if place.remote is None:
        pytest.skip("a local store has no other machine")  # the local place is covered by the tests above
    manifest = store_value(place.store, "e" * 32, {"w": "shared"})
    local = place.store.local  # type: ignore[attr-defined]
    assert place.remote.push_entry(manifest, "nb.ipynb", local.blob_path)
    other = place.fresh()
    (found,) = [f for f in other.candidates("e" * 32) if f.manifest is not None]
    assert found.source == REMOTE
    assert other.load(found.manifest)["ns"] == {"w": "shared"}
    # Read-through: the entry is now in the other machine's local store, and a hit there needs no network.
    assert [f.source for f in other.candidates("e" * 32) if f.manifest is not None][0] == LOCAL
