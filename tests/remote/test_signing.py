from __future__ import annotations

import json
import time

import pytest

from cellcache.errors import EntryCorrupt, UntrustedEntry
from cellcache.store.manifest import Manifest
from cellcache.remote.signing import DOMAIN, RemoteBlob, open_envelope, sign
from cellcache.store.manifest import canonical_json


def _manifest(key: str = "a" * 32) -> Manifest:
    return Manifest(key=key, step="fit", created=1.0, seconds=2.0, blob="b" * 32, blob_size=3, outputs=("w",))


BLOBS = (RemoteBlob(local="b" * 32, sha256="c" * 64, size=3),)


def test_a_signed_manifest_opens_for_a_reader_who_trusts_the_signer(signer) -> None:
    raw = sign(_manifest(), BLOBS, signer.key, pushed=time.time())
    entry = open_envelope(raw, key="a" * 32, signer_id=signer.key.public.id, trusted=frozenset({signer.key.public.id}))
    assert entry.manifest == _manifest() and entry.blobs == BLOBS and entry.signer == signer.fingerprint


def test_an_untrusted_signer_is_refused(signer, intruder) -> None:
    raw = sign(_manifest(), BLOBS, intruder.key, pushed=1.0)
    with pytest.raises(UntrustedEntry, match="not a trusted signer"):
        open_envelope(raw, key="a" * 32, signer_id=intruder.key.public.id, trusted=frozenset({signer.key.public.id}))


@pytest.mark.parametrize("field, value", [("seconds", 0.0), ("outputs", ["w", "evil"]), ("blob_size", 4)])
def test_any_change_to_the_body_breaks_the_signature(signer, field: str, value) -> None:
    envelope = json.loads(sign(_manifest(), BLOBS, signer.key, pushed=1.0))
    body = json.loads(envelope["body"])
    body["manifest"][field] = value
    envelope["body"] = canonical_json(body).decode()
    with pytest.raises(UntrustedEntry, match="tampered"):
        open_envelope(json.dumps(envelope).encode(), key="a" * 32, signer_id=None, trusted=frozenset({signer.key.public.id}))


def test_a_changed_blob_hash_breaks_the_signature(signer) -> None:
    envelope = json.loads(sign(_manifest(), BLOBS, signer.key, pushed=1.0))
    envelope["body"] = envelope["body"].replace("c" * 64, "d" * 64)
    with pytest.raises(UntrustedEntry, match="tampered"):
        open_envelope(json.dumps(envelope).encode(), key="a" * 32, signer_id=None, trusted=frozenset({signer.key.public.id}))


def test_a_manifest_moved_to_another_key_is_refused(signer) -> None:
    raw = sign(_manifest(), BLOBS, signer.key, pushed=1.0)
    with pytest.raises(UntrustedEntry, match="another key"):
        open_envelope(raw, key="f" * 32, signer_id=None, trusted=frozenset({signer.key.public.id}))


def test_a_manifest_under_another_signers_name_is_refused(signer, intruder) -> None:
    raw = sign(_manifest(), BLOBS, intruder.key, pushed=1.0)
    trusted = frozenset({signer.key.public.id, intruder.key.public.id})
    with pytest.raises(UntrustedEntry, match="squatted"):
        open_envelope(raw, key="a" * 32, signer_id=signer.key.public.id, trusted=trusted)


def test_the_signature_is_domain_separated(signer) -> None:
    envelope = json.loads(sign(_manifest(), BLOBS, signer.key, pushed=1.0))
    import base64

    from cellcache.remote.signer_keys import PublicKey

    public = PublicKey(base64.b64decode(envelope["public_key"]))
    signature = base64.b64decode(envelope["signature"])
    assert public.verify(signature, DOMAIN + envelope["body"].encode())
    assert not public.verify(signature, envelope["body"].encode())


@pytest.mark.parametrize("raw", [b"", b"{}", b"not json", b'{"v": 1, "body": "{}", "public_key": "x", "signature": "y"}'])
def test_garbage_is_unsigned(signer, raw: bytes) -> None:
    with pytest.raises(UntrustedEntry):
        open_envelope(raw, key="a" * 32, signer_id=None, trusted=frozenset({signer.key.public.id}))


def test_verify_off_parses_without_checking(signer, intruder) -> None:
    raw = sign(_manifest(), BLOBS, intruder.key, pushed=1.0)
    assert open_envelope(raw, key="a" * 32, signer_id=None, trusted=None).signer == intruder.fingerprint
    with pytest.raises(EntryCorrupt):
        open_envelope(raw.replace(b"outputs", b"outptus"), key="a" * 32, signer_id=None, trusted=None)


def test_one_canonical_form_refuses_nan_for_local_and_remote_signatures() -> None:
    assert canonical_json({"b": 1, "a": "é"}) == b'{"a":"\\u00e9","b":1}'
    with pytest.raises(ValueError):
        canonical_json({"seconds": float("nan")})
