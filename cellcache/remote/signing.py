"""Signed remote manifests: Ed25519 over domain-separated, canonical JSON.

The local store's HMAC cannot protect a shared store (anyone who can check an
HMAC can forge one), so a remote manifest carries an Ed25519 signature and
the signer's public key. A reader trusts fingerprints, not keys: the key in
the envelope must hash to a trusted fingerprint *and* to the signer named by
the object's path, then the signature must hold over the exact body bytes.

The signed message is ``DOMAIN + body``: the domain tag keeps a signature made
for a cellcache manifest from ever being valid for anything else the same key
might sign (and the reverse).

Envelope (one JSON object per file)::

    {"v": 1, "public_key": <b64 raw>, "signature": <b64>, "body": "<canonical JSON>"}

Body: the entry's manifest as the local store knows it, the SHA-256 and size
of each blob it needs (keyed by the local blob address), the signer and the
key, so a manifest cannot be moved to another key or passed off as another
signer's.
"""
from __future__ import annotations

import base64
import json
from dataclasses import dataclass

from cellcache.errors import EntryCorrupt, UntrustedEntry
from cellcache.remote.signer_keys import PublicKey, SigningKey
from cellcache.store.manifest import MANIFEST_LIMIT, Manifest, canonical_json

DOMAIN = b"cellcache remote manifest v1\x00"
ENVELOPE_VERSION = 1




@dataclass(frozen=True)
class RemoteBlob:
    """One blob as the remote holds it: content-addressed by SHA-256."""

    local: str  # the local store's address (xxh3) the bytes must also match
    sha256: str
    size: int


@dataclass(frozen=True)
class SignedEntry:
    """A verified (or, with ``verify = "off"``, merely parsed) remote manifest."""

    manifest: Manifest
    blobs: tuple[RemoteBlob, ...]
    signer: str  # fingerprint
    pushed: float


def sign(manifest: Manifest, blobs: tuple[RemoteBlob, ...], key: SigningKey, pushed: float) -> bytes:
    body = canonical_json(
        {
            "key": manifest.key,
            "signer": key.fingerprint,
            "pushed": pushed,
            "manifest": manifest.to_dict(),
            "blobs": [{"local": b.local, "sha256": b.sha256, "size": b.size} for b in blobs],
        }
    )
    envelope = {
        "v": ENVELOPE_VERSION,
        "public_key": base64.b64encode(key.public.raw).decode(),
        "signature": base64.b64encode(key.sign(DOMAIN + body)).decode(),
        "body": body.decode(),
    }
    return canonical_json(envelope)


def open_envelope(raw: bytes, *, key: str, signer_id: str | None, trusted: frozenset[str] | None) -> SignedEntry:
    """Check and parse one remote manifest.

    ``signer_id`` is the signer named by the object's path (hex); ``trusted``
    the trusted signer ids, or None to skip the signature (``verify = "off"``).
    Raises UntrustedEntry (unsigned, untrusted, bad signature) or EntryCorrupt (malformed).
    """
    if len(raw) > MANIFEST_LIMIT:
        # Read only this far (plus a byte): a truncated envelope would be reported as unsigned or malformed instead.
        raise EntryCorrupt(f"remote manifest for key {key[:12]} is over the limit of {MANIFEST_LIMIT >> 20} MiB; it is not read")
    try:
        envelope = json.loads(raw)
        body_text = envelope["body"]
        public = PublicKey(base64.b64decode(envelope["public_key"], validate=True))
        signature = base64.b64decode(envelope["signature"], validate=True)
        if envelope.get("v") != ENVELOPE_VERSION or not isinstance(body_text, str):
            raise ValueError("unknown envelope version")
    except (ValueError, KeyError, TypeError) as exc:
        raise UntrustedEntry(f"remote manifest for key {key[:12]} is unsigned or malformed ({exc})") from None
    body = body_text.encode()
    if trusted is not None:
        if public.id not in trusted:
            raise UntrustedEntry(f"remote entry for key {key[:12]} is signed by {public.fingerprint}, which is not a trusted signer")
        if signer_id is not None and public.id != signer_id:
            raise UntrustedEntry(f"remote manifest for key {key[:12]} sits under another signer's name (squatted)")
        if not public.verify(signature, DOMAIN + body):
            raise UntrustedEntry(
                f"remote entry for key {key[:12]} by {public.fingerprint}: the signature does not match (tampered)"
            )
    try:
        data = json.loads(body)
        manifest = Manifest.from_dict(data["manifest"])
        blobs = tuple(RemoteBlob(str(b["local"]), str(b["sha256"]), int(b["size"])) for b in data["blobs"])
        pushed = float(data["pushed"])
        named_signer = str(data["signer"])
    except (ValueError, KeyError, TypeError) as exc:
        raise EntryCorrupt(f"remote manifest for key {key[:12]} is malformed: {exc}") from None
    if data.get("key") != key or manifest.key != key:
        raise UntrustedEntry(f"remote manifest under key {key[:12]} describes another key")
    if trusted is not None and named_signer != public.fingerprint:
        raise UntrustedEntry(f"remote manifest for key {key[:12]} names another signer than the one who signed it")
    needed = {manifest.blob, *(o.blob for o in manifest.outs)}
    if not needed <= {b.local for b in blobs}:
        raise EntryCorrupt(f"remote manifest for key {key[:12]} does not list every blob it needs")
    return SignedEntry(manifest=manifest, blobs=blobs, signer=public.fingerprint, pushed=pushed)
