"""The remote's mechanics on every place: memory://, file:// and moto's S3."""
from __future__ import annotations

import json
import uuid
from pathlib import Path

import numpy as np
import pytest

from cellcache.errors import EntryCorrupt, UntrustedEntry
from cellcache.store.local import LocalStore
from cellcache.remote.bucket import RemoteStore

from .helpers import blob_files, local_entry, local_manifests


@pytest.fixture(params=["memory", "file", "s3"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "memory":
        return f"memory://cc-{uuid.uuid4().hex}"
    if request.param == "file":
        return f"file://{tmp_path / 'shared'}"
    return request.getfixturevalue("s3").url


def _remote(url: str, signer=None, trusted=()) -> RemoteStore:
    return RemoteStore(url, trusted=[t.fingerprint for t in trusted], signing_key=signer.key if signer else None, timeout=5)


@pytest.mark.timeout(60)
def test_push_then_fetch_gives_the_same_entry_and_bytes(url: str, tmp_path: Path, signer) -> None:
    a, b = LocalStore(tmp_path / "a"), LocalStore(tmp_path / "b")
    manifest = local_entry(a, {"x": np.arange(1000), "y": "hello"})
    writer = _remote(url, signer)
    assert writer.push_entry(manifest, "nb.ipynb", a.blob_path) is True
    reader = _remote(url, trusted=[signer])
    fetched = reader.fetch(manifest.key)
    assert fetched.problems == () and [e.manifest for e in fetched.entries] == [manifest]
    assert blob_files(b) == []
    reader.download(fetched.entries[0], b.blob_path)
    b.commit(fetched.entries[0].manifest)
    restored = b.load(local_manifests(b, manifest.key)[0])
    assert restored["ns"]["y"] == "hello" and (restored["ns"]["x"] == np.arange(1000)).all()
    assert reader.step_keys("nb.ipynb", "step")[0][0] == manifest.key


@pytest.mark.timeout(60)
def test_every_object_is_written_once(url: str, tmp_path: Path, signer) -> None:
    a = LocalStore(tmp_path / "a")
    manifest = local_entry(a, {"x": 1})
    remote = _remote(url, signer)
    assert remote.push_entry(manifest, "nb.ipynb", a.blob_path) is True
    path = remote.entry_path(manifest.key, signer.key.public.id)
    before = remote.fs.cat_file(path)
    assert remote.push_entry(manifest, "nb.ipynb", a.blob_path) is False
    assert remote.write_once(path, b"something else") is False
    assert remote.write_once(path, b"something else", check=False) is False  # S3: the If-None-Match create refuses
    assert remote.fs.cat_file(path) == before


@pytest.mark.timeout(60)
def test_a_missing_key_is_a_plain_miss(url: str, signer) -> None:
    fetched = _remote(url, trusted=[signer]).fetch("0" * 32)
    assert fetched.entries == () and fetched.problems == ()


@pytest.mark.timeout(60)
def test_an_untrusted_signers_entry_is_refused_and_said_so(url: str, tmp_path: Path, signer, intruder) -> None:
    a = LocalStore(tmp_path / "a")
    manifest = local_entry(a, {"x": 1})
    _remote(url, intruder).push_entry(manifest, "nb.ipynb", a.blob_path)
    fetched = _remote(url, trusted=[signer]).fetch(manifest.key)
    assert fetched.entries == ()
    assert len(fetched.problems) == 1 and intruder.fingerprint in fetched.problems[0] and "not a trusted" in fetched.problems[0]


@pytest.mark.timeout(60)
def test_a_tampered_blob_never_reaches_the_local_store(url: str, tmp_path: Path, signer) -> None:
    a, b = LocalStore(tmp_path / "a"), LocalStore(tmp_path / "b")
    manifest = local_entry(a, {"x": "the real value"})
    remote = _remote(url, signer, trusted=[signer])
    remote.push_entry(manifest, "nb.ipynb", a.blob_path)
    entry = remote.fetch(manifest.key).entries[0]
    blob_path = remote.blob_path(entry.blobs[0].sha256)
    data = remote.fs.cat_file(blob_path)
    remote.fs.rm_file(blob_path)
    remote.fs.pipe_file(blob_path, data.replace(b"real", b"evil"))
    with pytest.raises(EntryCorrupt, match="SHA-256"):
        remote.download(entry, b.blob_path)
    assert blob_files(b) == []


@pytest.mark.timeout(60)
def test_a_squat_under_the_signers_name_does_not_keep_its_entry_out(url: str, tmp_path: Path, signer, intruder) -> None:
    a = LocalStore(tmp_path / "a")
    manifest = local_entry(a, {"x": 1})
    ci, squatter = _remote(url, signer), _remote(url, intruder)
    # The squatter signs its own manifest for the key CI will write, and plants it under CI's name.
    squatter.push_entry(manifest, "nb.ipynb", a.blob_path)
    planted = squatter.fs.cat_file(squatter.entry_path(manifest.key, intruder.key.public.id))
    squatter.fs.pipe_file(ci.entry_path(manifest.key, signer.key.public.id), planted)
    reader = _remote(url, trusted=[signer])
    assert reader.fetch(manifest.key).entries == ()
    assert intruder.fingerprint in reader.fetch(manifest.key).problems[0]
    assert ci.push_entry(manifest, "nb.ipynb", a.blob_path) is True
    assert [e.signer for e in reader.fetch(manifest.key).entries] == [signer.fingerprint]


@pytest.mark.timeout(60)
def test_only_signers_push(url: str, tmp_path: Path) -> None:
    a = LocalStore(tmp_path / "a")
    manifest = local_entry(a, {"x": 1})
    with pytest.raises(UntrustedEntry, match="signing key"):
        _remote(url).push_entry(manifest, "nb.ipynb", a.blob_path)


@pytest.mark.timeout(60)
def test_the_layout_is_the_designs(url: str, tmp_path: Path, signer) -> None:
    a = LocalStore(tmp_path / "a")
    manifest = local_entry(a, {"x": 1}, step="fit", notebook="nbs/q.ipynb")
    remote = _remote(url, signer)
    remote.ensure_format()
    remote.push_entry(manifest, "nbs/q.ipynb", a.blob_path)
    names = sorted(p["path"][len(remote.base) + 1 :] for folder in ("entries", "blobs", "steps") for p in remote.walk(folder))
    entry = json.loads(json.loads(remote.fs.cat_file(remote.entry_path(manifest.key, signer.key.public.id)))["body"])
    sha = entry["blobs"][0]["sha256"]
    assert names == sorted(
        [
            f"blobs/sha256/{sha[:2]}/{sha}",
            f"entries/{manifest.key[:2]}/{manifest.key}/{signer.key.public.id}.json",
            f"steps/nbs/q.ipynb/fit/{manifest.key}",
        ]
    )
    assert remote.fs.cat_file(f"{remote.base}/FORMAT").startswith(b"cellcache remote store")
