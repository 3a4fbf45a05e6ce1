"""An entry's manifest: what a key produced, where its blob is, and a signature."""
from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Mapping

from cellcache.errors import EntryCorrupt, UntrustedEntry

MANIFEST_VERSION = 1


@dataclass(frozen=True)
class OutFile:
    """A file the cell wrote (``--outs``), stored as a content-addressed blob."""

    path: str
    blob: str
    size: int
    mode: int


@dataclass(frozen=True)
class FileDigest:
    """A file the entry depends on, with the digest it had when the entry was made."""

    path: str
    digest: str


@dataclass(frozen=True)
class Manifest:
    key: str
    step: str
    created: float
    seconds: float
    blob: str
    blob_size: int
    outputs: tuple[str, ...]
    blob_loader: str = "joblib"
    deletes: tuple[str, ...] = ()
    result_name: str | None = None
    components: Mapping[str, str] = field(default_factory=dict)
    descriptions: Mapping[str, str] = field(default_factory=dict)
    outs: tuple[OutFile, ...] = ()
    implicit: tuple[FileDigest, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["version"] = MANIFEST_VERSION
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Manifest:
        try:
            if data.get("version") != MANIFEST_VERSION:
                raise EntryCorrupt(f"manifest version {data.get('version')!r} is not {MANIFEST_VERSION}")
            fields = dict(data)
            fields.pop("version")
            fields["outputs"] = tuple(fields["outputs"])
            fields["deletes"] = tuple(fields.get("deletes", ()))
            fields["outs"] = tuple(OutFile(**o) for o in fields.get("outs", ()))
            fields["implicit"] = tuple(FileDigest(**d) for d in fields.get("implicit", ()))
            return cls(**fields)
        except (KeyError, TypeError) as exc:
            raise EntryCorrupt(f"manifest is malformed: {exc}") from exc

    def with_step(self, step: str) -> Manifest:
        return replace(self, step=step)


def _canonical(data: Mapping[str, Any]) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def sign(manifest: Manifest, secret: bytes) -> bytes:
    """Two lines: the signature, then the manifest's JSON exactly as it was signed."""
    body = _canonical(manifest.to_dict())
    return hmac.new(secret, body, hashlib.sha256).hexdigest().encode() + b"\n" + body


def verify(raw: bytes, secret: bytes) -> Manifest:
    """Check a signed manifest, then parse it; anything off raises, never returns a guess."""
    signature, newline, body = raw.partition(b"\n")
    if not newline or len(signature) != 64 or not body.startswith(b"{"):
        raise UntrustedEntry("manifest is unsigned or malformed")
    expected = hmac.new(secret, body, hashlib.sha256).hexdigest().encode()
    if not hmac.compare_digest(signature, expected):
        raise UntrustedEntry("manifest signature does not match (tampered, or signed with another key)")
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise EntryCorrupt(f"manifest is not valid JSON: {exc}") from exc
    return Manifest.from_dict(data)
