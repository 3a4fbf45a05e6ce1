"""A blob squatted on the remote is not a denial of service (issue 23.7), against moto's S3.

A bucket writer puts garbage under a valid blob address, before or after the
signer's push. Readers refuse it (never unpickled) and say which object to
delete and who can repair it; the signer's next push re-checks the blob and
replaces it; readers then hit again.
"""
from __future__ import annotations

import cellcache

import hashlib
from pathlib import Path

import pytest

from cellcache.remote import commands as remote_ops
from cellcache.config import resolve

from .conftest import BUCKET
from .test_tiered import env_for, run_cell


def _blob_key(local_store) -> tuple[str, bytes]:
    (blob,) = [p for p in (local_store.root / "blobs").glob("??/*") if not p.name.startswith(".")]
    data = blob.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    return f"team/cellcache/v1/blobs/sha256/{sha[:2]}/{sha}", data


@pytest.mark.timeout(90)
@pytest.mark.parametrize("when", ["before-push", "after-push"])
def test_a_squatted_blob_is_named_to_readers_and_replaced_by_the_signers_push(make_shell, tmp_path: Path, s3, signer, when) -> None:
    ci = make_shell(tmp_path / "ci-store", **env_for(s3, signer, trusted=[signer]))
    run, _ = run_cell(ci)
    assert run.status == "miss"
    ci_local = cellcache.api.session(ci).store.local
    key, genuine = _blob_key(ci_local)
    garbage = (b"\x80\x04garbage, not the pickle it claims to be" + b"\0" * len(genuine))[: len(genuine)]  # same size
    if when == "before-push":
        s3.client().put_object(Bucket=BUCKET, Key=key, Body=garbage)
    first = remote_ops.push(resolve(), ci_local)
    assert len(first.pushed) == 1 and first.failed == ()
    if when == "after-push":
        s3.client().put_object(Bucket=BUCKET, Key=key, Body=garbage)
        assert s3.objects("cellcache/v1/blobs")[key] == garbage
        reader = make_shell(tmp_path / "reader-1", **env_for(s3, trusted=[signer]))
        run, caught = run_cell(reader)
        assert run.status == "miss" and reader.user_ns["x"] == [0, 1, 4, 9, 16]
        assert len(caught) == 1, caught
        assert key in caught[0] and signer.fingerprint in caught[0] and "cellcache push" in caught[0], caught[0]
        ci = make_shell(tmp_path / "ci-store", **env_for(s3, signer, trusted=[signer]))  # CI again, same store
        again = remote_ops.push(resolve(), cellcache.api.session(ci).store.local)
        assert again.present == 1 and again.failed == ()
    assert s3.objects("cellcache/v1/blobs")[key] == genuine, "the signer's push replaced the squatted blob"
    reader = make_shell(tmp_path / "reader-2", **env_for(s3, trusted=[signer]))
    run, caught = run_cell(reader)
    assert (run.status, caught) == ("hit", []) and reader.user_ns["x"] == [0, 1, 4, 9, 16]
