"""The local store: content-addressed blobs, signed manifests, a SQLite index.

Layout under the store folder::

    blobs/ab/<xxh3 of the blob>     joblib pickles and --outs file contents
    entries/ab/<key>.json           signed manifests, one per key
    index.sqlite                    entries, steps, runs, stat cache (WAL)
    secret                          this store's signing key (mode 0600)
"""
from __future__ import annotations

import os
import secrets
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cellcache.errors import EntryCorrupt, StoreError
from cellcache.store import format as fmt
from cellcache.store.atomic import atomic_write_bytes
from cellcache.store.index import EntryRow, Index, StepStats
from cellcache.store.manifest import Manifest, OutFile, sign, verify


@dataclass(frozen=True)
class VerifyReport:
    checked: int
    broken: tuple[tuple[str, str], ...]  # (key or blob, what is wrong)
    repaired: bool


class LocalStore:
    def __init__(self, root: Path, verify_local: bool = True) -> None:
        self.root = Path(root)
        self.verify_local = verify_local
        self._index: Index | None = None
        self._secret: bytes | None = None

    # layout ----------------------------------------------------------------

    def blob_path(self, digest: str) -> Path:
        return self.root / "blobs" / digest[:2] / digest

    def manifest_path(self, key: str) -> Path:
        return self.root / "entries" / key[:2] / f"{key}.json"

    @property
    def index(self) -> Index:
        if self._index is None:
            self.root.mkdir(parents=True, exist_ok=True)
            self._index = Index(self.root / "index.sqlite")
        return self._index

    @property
    def secret(self) -> bytes:
        if self._secret is None:
            path = self.root / "secret"
            try:
                self._secret = path.read_bytes()
            except FileNotFoundError:
                self.root.mkdir(parents=True, exist_ok=True)
                fresh = secrets.token_hex(32).encode()
                try:
                    # O_EXCL: if two kernels race to create it, exactly one wins and both read its value.
                    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                    with os.fdopen(fd, "wb") as f:
                        f.write(fresh)
                except FileExistsError:
                    pass
                self._secret = path.read_bytes()
        return self._secret

    def exists(self) -> bool:
        return (self.root / "index.sqlite").exists()

    # reading ---------------------------------------------------------------

    def manifest(self, key: str) -> Manifest | None:
        """The entry for ``key``; None if there is none. A damaged one raises EntryCorrupt."""
        try:
            raw = self.manifest_path(key).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise EntryCorrupt(f"cannot read manifest {key}: {exc}") from exc
        manifest = verify(raw, self.secret)
        if manifest.key != key:
            raise EntryCorrupt(f"manifest {key} describes another key")
        return manifest

    def load(self, manifest: Manifest) -> Any:
        path = self.blob_path(manifest.blob)
        try:
            size = path.stat().st_size
        except FileNotFoundError as exc:
            raise EntryCorrupt(f"blob {manifest.blob} of step {manifest.step!r} is missing") from exc
        if size != manifest.blob_size:
            raise EntryCorrupt(f"blob {manifest.blob} has {size} bytes, expected {manifest.blob_size}")
        # The content is checked against the digest before a byte is unpickled (unless the user trusts the disk).
        return fmt.load(path, manifest.blob_loader, digest=manifest.blob, verify=self.verify_local)

    # writing ---------------------------------------------------------------

    def put_blob(self, value: Any) -> fmt.BlobInfo:
        """Pickle ``value`` into a content-addressed blob; identical content is stored once."""
        tmp_dir = self.root / "blobs" / "tmp"
        tmp_dir.mkdir(parents=True, exist_ok=True)
        tmp = tmp_dir / f"{uuid.uuid4().hex}.tmp"
        try:
            with open(tmp, "wb") as f:
                info = fmt.dump(value, f)
            final = self.blob_path(info.digest)
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)
        return info

    def put_file_blob(self, source: Path) -> tuple[str, int]:
        digest = fmt.file_digest(source)
        final = self.blob_path(digest)
        if not final.exists():
            final.parent.mkdir(parents=True, exist_ok=True)
            tmp = final.parent / f".{digest}.{uuid.uuid4().hex[:8]}.tmp"
            try:
                shutil.copyfile(source, tmp)
                os.replace(tmp, final)
            finally:
                tmp.unlink(missing_ok=True)
        return digest, source.stat().st_size

    def restore_file(self, out: OutFile, target: Path, cache: Any = None) -> bool:
        """Write an --outs file back where it is missing or differs; return whether it was written."""
        from cellcache.files import digest  # files depends on the store's format, not the other way round

        if target.is_file() and target.stat().st_size == out.size and digest(target, cache) == out.blob:
            return False
        source = self.blob_path(out.blob)
        if not source.exists():
            raise EntryCorrupt(f"stored copy of {out.path} is missing")
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.parent / f".{target.name}.{uuid.uuid4().hex[:8]}.tmp"
        try:
            shutil.copyfile(source, tmp)
            os.chmod(tmp, out.mode)
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        return True

    def commit(self, manifest: Manifest) -> None:
        """Publish an entry whose blobs are already written: the manifest rename is the commit point."""
        atomic_write_bytes(self.manifest_path(manifest.key), sign(manifest, self.secret))
        size = manifest.blob_size + sum(o.size for o in manifest.outs)
        self.index.add_entry(
            EntryRow(
                key=manifest.key,
                step=manifest.step,
                created=manifest.created,
                size=size,
                seconds=manifest.seconds,
                blob=manifest.blob,
            ),
            file_blobs=(o.blob for o in manifest.outs),
        )

    # bookkeeping -----------------------------------------------------------

    def record_run(self, step: str, key: str | None, status: str, seconds: float, saved: float, reason: str) -> None:
        self.index.record_run(step, key, status, seconds, saved, reason)

    def step_rows(self) -> list[StepStats]:
        return self.index.step_rows() if self.exists() else []

    def last_manifest(self, step: str) -> Manifest | None:
        """The step's most recent entry, for explaining what changed since."""
        key = self.index.last_key(step)
        if key is None:
            return None
        try:
            return self.manifest(key)
        except StoreError:
            return None

    # removal ---------------------------------------------------------------

    def _drop(self, rows: list[EntryRow]) -> int:
        """Remove entries and whichever of their blobs no other entry shares; return bytes freed."""
        if not rows:
            return 0
        blobs = {r.blob for r in rows}
        for row in rows:
            blobs.update(self.index.file_blobs(row.key))
            self.manifest_path(row.key).unlink(missing_ok=True)
        self.index.drop_entries(r.key for r in rows)
        freed = 0
        for blob in blobs:
            if not self.index.blob_in_use(blob):
                path = self.blob_path(blob)
                try:
                    freed += path.stat().st_size
                    path.unlink()
                except FileNotFoundError:
                    pass
        return freed

    def invalidate(self, step: str) -> int:
        """Drop every entry of one step; return how many."""
        if not self.exists():
            return 0
        rows = self.index.entries(step)
        self._drop(rows)
        self.index.mark_invalidated(step, time.time())
        return len(rows)

    def clear(self) -> int:
        if not self.exists():
            return 0
        rows = self.index.entries()
        for step in {r.step for r in rows}:
            self.index.mark_invalidated(step, time.time())
        for folder in ("entries", "blobs"):
            shutil.rmtree(self.root / folder, ignore_errors=True)
        self.index.clear()
        return len(rows)

    def gc(self, max_size: int | None = None, older_than: float | None = None) -> tuple[int, int]:
        """Drop least recently used entries until the store fits; return (entries, bytes) freed."""
        now = time.time()
        rows = list(self.index.entries_by_last_use())
        total = sum(r.size for r in rows)
        doomed: list[EntryRow] = []
        for row in rows:
            too_old = older_than is not None and now - row.last_used > older_than
            too_big = max_size is not None and total > max_size
            if not (too_old or too_big):
                continue
            doomed.append(row)
            total -= row.size
        return len(doomed), self._drop(doomed)

    def verify(self, repair: bool = False) -> VerifyReport:
        """Check every manifest's signature and every blob's content digest."""
        broken: list[tuple[str, str]] = []
        bad_rows: list[EntryRow] = []
        rows = self.index.entries() if self.exists() else []
        for row in rows:
            problem = self._check_entry(row.key)
            if problem:
                broken.append((row.key, problem))
                bad_rows.append(row)
        indexed = {r.key for r in rows}
        orphans = [p for p in (self.root / "entries").glob("*/*.json") if p.stem not in indexed]
        for path in orphans:
            problem = self._check_entry(path.stem)
            if problem:
                broken.append((path.stem, problem))
                if repair:
                    path.unlink(missing_ok=True)
        if repair and bad_rows:
            for row in bad_rows:
                self.manifest_path(row.key).unlink(missing_ok=True)
            self.index.drop_entries(r.key for r in bad_rows)
        return VerifyReport(checked=len(rows) + len(orphans), broken=tuple(broken), repaired=repair)

    def _check_entry(self, key: str) -> str | None:
        try:
            manifest = self.manifest(key)
        except StoreError as exc:
            return str(exc)
        if manifest is None:
            return "manifest missing"
        for digest, size in [(manifest.blob, manifest.blob_size), *((o.blob, o.size) for o in manifest.outs)]:
            path = self.blob_path(digest)
            if not path.exists():
                return f"blob {digest} missing"
            if fmt.file_digest(path) != digest:
                return f"blob {digest} content does not match its digest"
        return None
