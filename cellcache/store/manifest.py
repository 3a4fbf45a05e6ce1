"""An entry's manifest: what a key produced, where its blobs are, and a signature.

The manifest is the entry's truth and its commit point: it lists every blob
digest the entry uses (the bundle and each ``--outs`` file), and the signature
covers them, so a blob can't be swapped under a valid manifest without the
content check noticing. Everything read from disk is validated field by field:
a re-signed but malformed manifest is an ``EntryCorrupt``, never a crash later.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Mapping

import xxhash

from cellcache.errors import EntryCorrupt, UnsafeEntry, UntrustedEntry
from cellcache.store import format as _format

# 2: the step's notebook, and one manifest per (key, variant) under entries/ab/<key>/<variant>.json.
MANIFEST_VERSION = 2
# The largest manifest read, local or remote (documented in docs/reference/store.md). A real one is a few KB;
# one over this is refused as too large before its signature is checked, never read in part.
MANIFEST_LIMIT = 16 << 20

_HEX = re.compile(r"^[0-9a-f]{16,64}$")


def safe_relative(path: str) -> str:
    """``path`` if it is a relative path; UnsafeEntry otherwise (``/etc/x``, ``C:\\x``, a NUL byte).

    Lexical, before the disk is touched. Whether a relative path with ``..``
    stays inside the project is decided against the project root when the file
    is stored or restored (:func:`inside_project`).
    """
    if not isinstance(path, str) or not path or "\x00" in path:
        raise UnsafeEntry(f"--outs path {path!r} is not a path")
    posix, windows = PurePosixPath(path), PureWindowsPath(path)
    if posix.is_absolute() or windows.is_absolute() or windows.drive or path.startswith(("/", "\\")):
        raise UnsafeEntry(f"--outs path {path!r} is absolute; only paths inside the project are restored")
    return path


def inside_project(path: str, cwd: Path, root: Path) -> Path:
    """Where a manifest's --outs ``path`` (relative to ``cwd``) lands, if that is inside ``root``; UnsafeEntry otherwise.

    The folder is resolved (links followed), so neither ``../../x`` nor a linked folder can carry a write out of the project.
    """
    safe_relative(path)
    target = Path(os.path.normpath(cwd / path))
    real = Path(os.path.realpath(target.parent)) / target.name
    top = Path(os.path.realpath(root))
    if real != top and top not in real.parents:
        raise UnsafeEntry(f"--outs path {path!r} leaves the project ({top}); only paths inside it are stored and restored")
    return target


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


def variant_of(implicit: tuple[FileDigest, ...]) -> str:
    """Which of a key's entries this is: a digest of the implicit files' digests.

    One key may hold several entries that differ only in the files the cell
    happened to read (DVC's run-cache keeps several results per key), so that
    switching a data file back to an earlier version hits that version's entry.
    """
    hasher = xxhash.xxh3_64()
    for item in sorted(implicit, key=lambda d: d.path):
        for part in (item.path, item.digest):
            data = part.encode()
            hasher.update(len(data).to_bytes(8, "little"))
            hasher.update(data)
    return hasher.hexdigest()


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
    notebook: str = ""  # the step's notebook, relative to the project root; "" for a plain IPython session
    blob_chunks: tuple[str, ...] = ()  # the digest of each format.CHUNK of a blob of more than one

    def with_blob(self, blob: _format.BlobInfo) -> Manifest:
        """This manifest pointing at a written blob (a ``format.BlobInfo``)."""
        return replace(self, blob=blob.digest, blob_size=blob.size, blob_loader=blob.loader, blob_chunks=tuple(blob.chunks))

    @property
    def variant(self) -> str:
        return variant_of(self.implicit)

    @property
    def blobs(self) -> dict[str, int]:
        """Every blob the entry uses, with its size: the bundle and the --outs files."""
        used = {o.blob: o.size for o in self.outs}
        used[self.blob] = self.blob_size
        return used

    @property
    def size(self) -> int:
        """Bytes on disk, a blob shared between its outs counted once."""
        return sum(self.blobs.values())

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["version"] = MANIFEST_VERSION
        if not self.blob_chunks:
            del data["blob_chunks"]  # as manifests were before chunks: readers of that release still take them
        return data

    @classmethod
    def from_dict(cls, data: Any) -> Manifest:
        if not isinstance(data, dict):
            raise EntryCorrupt("manifest is malformed: not a JSON object")
        if data.get("version") != MANIFEST_VERSION:
            raise EntryCorrupt(f"manifest version {data.get('version')!r} is not {MANIFEST_VERSION}")
        unknown = set(data) - _FIELDS
        if unknown:
            raise EntryCorrupt(f"manifest is malformed: unknown field(s) {sorted(unknown)}")
        try:
            return validate(
                cls(
                    key=data["key"],
                    step=data["step"],
                    created=data["created"],
                    seconds=data["seconds"],
                    blob=data["blob"],
                    blob_size=data["blob_size"],
                    outputs=tuple(data["outputs"]),
                    blob_loader=data.get("blob_loader", "joblib"),
                    deletes=tuple(data.get("deletes", ())),
                    result_name=data.get("result_name"),
                    components=dict(data.get("components", {})),
                    descriptions=dict(data.get("descriptions", {})),
                    outs=tuple(OutFile(**o) for o in data.get("outs", ())),
                    implicit=tuple(FileDigest(**d) for d in data.get("implicit", ())),
                    notebook=data.get("notebook", ""),
                    blob_chunks=tuple(data.get("blob_chunks", ())),
                )
            )
        except EntryCorrupt:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise EntryCorrupt(f"manifest is malformed: {type(exc).__name__}: {exc}") from exc

    def with_step(self, step: str, notebook: str | None = None) -> Manifest:
        return replace(self, step=step, notebook=self.notebook if notebook is None else notebook)


_FIELDS = {f.name for f in fields(Manifest)} | {"version"}


def _expect(ok: bool, what: str) -> None:
    if not ok:
        raise EntryCorrupt(f"manifest is malformed: {what}")


def _is_num(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value and value >= 0


def _is_str_map(value: Any) -> bool:
    return isinstance(value, Mapping) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())


def validate(m: Manifest) -> Manifest:
    """Every field has the type the runner relies on, and every path stays inside the project."""
    _expect(isinstance(m.key, str) and bool(_HEX.match(m.key)), "key is not a hex digest")
    _expect(isinstance(m.step, str) and isinstance(m.notebook, str), "step or notebook is not a string")
    _expect(_is_num(m.created) and _is_num(m.seconds), "created or seconds is not a number")
    _expect(isinstance(m.blob, str) and bool(_HEX.match(m.blob)), "blob is not a hex digest")
    _expect(isinstance(m.blob_size, int) and not isinstance(m.blob_size, bool) and m.blob_size >= 0, "blob_size")
    _expect(m.blob_loader in ("joblib", "pickle"), f"unknown loader {m.blob_loader!r}")
    _expect(all(isinstance(n, str) for n in (*m.outputs, *m.deletes)), "a name is not a string")
    _expect(m.result_name is None or (isinstance(m.result_name, str) and m.result_name in m.outputs), "result_name")
    _expect(_is_str_map(m.components) and _is_str_map(m.descriptions), "components or descriptions")
    _expect(all(isinstance(c, str) and bool(_HEX.match(c)) for c in m.blob_chunks), "a blob chunk is not a hex digest")
    _expect(not m.blob_chunks or len(m.blob_chunks) == -(-m.blob_size // _format.CHUNK) > 1, "blob chunks do not cover the blob")
    for out in m.outs:
        _expect(isinstance(out.blob, str) and bool(_HEX.match(out.blob)), "an --outs blob is not a hex digest")
        _expect(isinstance(out.size, int) and out.size >= 0 and isinstance(out.mode, int) and 0 <= out.mode <= 0o7777, "--outs")
        safe_relative(out.path)
    for dep in m.implicit:
        _expect(isinstance(dep.path, str) and isinstance(dep.digest, str), "an implicit file")
    return m


def canonical_json(data: Mapping[str, Any]) -> bytes:
    """The one byte form of a JSON value that is signed: local HMACs and remote Ed25519 signatures alike.

    Sorted keys, no spaces, ASCII only; NaN and infinities refused (JSON has none, and two readers
    could parse them differently), so the bytes signed are the bytes every reader checks.
    """
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


def sign(manifest: Manifest, secret: bytes) -> bytes:
    """Two lines: the signature, then the manifest's JSON exactly as it was signed."""
    body = canonical_json(manifest.to_dict())
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
    except (ValueError, RecursionError) as exc:
        raise EntryCorrupt(f"manifest is not valid JSON: {exc}") from exc
    return Manifest.from_dict(data)
