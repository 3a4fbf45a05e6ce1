"""The local store: content-addressed blobs, signed manifests, a SQLite index.

Layout under the store folder::

    blobs/ab/<xxh3 of the blob>          joblib pickles and --outs file contents
    blobs/tmp/                           blobs being written
    entries/ab/<key>/<variant>.json      signed manifests: one per (key, variant)
    quarantine/                          blobs whose content did not match their address
    index.sqlite                         entries, steps, runs, stat cache (WAL): a cache of the manifests

The variant is a digest of the entry's implicit-file digests, so one key can
hold several entries that differ only in the files the cell read; the remote
keeps ``entries/ab/<key>/<signer>.json`` in the same shape.

The manifests are the truth. A manifest appears only after its blobs are
complete, and the index row follows it; an entry the index does not know is
still found (and learned on first sight), and the commands that drop entries
reconcile the index with the manifests first. The signing key lives outside
the store (``cellcache.store.local_key``).
"""
from __future__ import annotations

import errno
import fcntl
import os
import shutil
import sqlite3
import stat
import time
import uuid
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator

import xxhash

from cellcache.errors import (
    AmbiguousStep,
    CacheError,
    EntryCorrupt,
    EntryGone,
    StoreUnavailable,
    UnknownStep,
    UnsafeEntry,
)
from cellcache.store import format as fmt
from cellcache.store.atomic import atomic_write_bytes
from cellcache.store.base import LOCAL, Found, Store, StepRef
from cellcache.store.index import EntryRow, Index, IndexUnusable, StepStats
from cellcache.store.local_key import LocalKey, load_signing_key
from cellcache.store.manifest import Manifest, OutFile, inside_project, sign, validate, verify

STORE_VERSION = 2  # the layout above; a v1 store's entries/ab/<key>.json files are ignored and reclaimed by gc
TEMP_GRACE = 3600.0  # temp files and unnamed blobs younger than this may belong to a writer still at work
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_HEX = set("0123456789abcdef")


@dataclass(frozen=True)
class VerifyReport:
    checked: int
    broken: tuple[tuple[str, str], ...]  # (key or blob, what is wrong)
    repaired: bool
    reclaimable: int = 0  # bytes: broken entries, quarantined blobs, old temp files, blobs no manifest names
    reclaimed: int = 0
    leftovers: int = 0  # files behind `reclaimable`

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _out_target(path: str) -> Path:
    """Where an --outs path lands from the working directory; UnsafeEntry if that is outside the project."""
    from cellcache.config import project_root

    cwd = Path.cwd()
    return inside_project(path, cwd, project_root(cwd))


def _is_digest(name: str) -> bool:
    return 16 <= len(name) <= 64 and set(name) <= _HEX


def _open_nofollow(path: Path) -> int:
    """Open a file of the store for reading; a planted symbolic link is refused, never followed."""
    try:
        return os.open(path, os.O_RDONLY | _NOFOLLOW)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise EntryCorrupt(f"{path.name} is a symbolic link; links planted in the store are not followed") from exc
        raise


def _digest_fd(fd: int, chunk: int = 1 << 22) -> tuple[str, int]:
    hasher = xxhash.xxh3_128()
    size = 0
    while block := os.read(fd, chunk):
        hasher.update(block)
        size += len(block)
    return hasher.hexdigest(), size


class LocalStore(Store):
    def __init__(self, root: Path, verify_local: bool = True, key: bytes | None = None, key_file: Path | None = None) -> None:
        self.root = Path(root)
        self.verify_local = verify_local
        if key is None and "CELLCACHE_KEY" in os.environ:
            key = os.environ["CELLCACHE_KEY"].encode()  # set but empty is refused, not ignored
        self._key_bytes = key
        self._key_file = key_file
        self._key: LocalKey | None = None
        self._index: Index | None = None
        # Verified manifests by path and the identity of the file read: a manifest is never changed in
        # place (a new one is a new file, renamed in), so a re-run hit skips the read, HMAC and parse.
        self._verified: dict[Path, tuple[tuple[int, ...], Manifest]] = {}
        self._listed: dict[str, tuple[tuple[int, int], list[Path]]] = {}  # a key's manifests, by its folder's identity
        self._indexed: set[tuple[str, str]] = set()  # (key, variant) the index is known to hold

    # layout ----------------------------------------------------------------

    def blob_path(self, digest: str) -> Path:
        return self.root / "blobs" / digest[:2] / digest

    def entry_dir(self, key: str) -> Path:
        return self.root / "entries" / key[:2] / key

    def manifest_path(self, key: str, variant: str | None = None) -> Path:
        """Where the manifest of (key, variant) lives; without a variant, the key's newest one (or the no-implicit one)."""
        if variant is None:
            found = self._manifest_files(key)
            variant = found[0].stem if found else Manifest("0" * 32, "", 0, 0, "0" * 32, 0, ()).variant
        return self.entry_dir(key) / f"{variant}.json"

    def _check_root(self) -> None:
        if self.root.exists() and not self.root.is_dir():
            raise StoreUnavailable(f"the store path {self.root} is a file, not a folder; set CELLCACHE_DIR to a folder")

    def _make_root(self) -> None:
        self._check_root()
        if not self.root.is_dir():
            try:
                self.root.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreUnavailable(f"cannot create the store {self.root}: {exc.strerror or exc}") from exc
            # A new store is never committed by `git add -A`: it holds data, not sources (as pytest and ruff do).
            try:
                atomic_write_bytes(self.root / ".gitignore", b"# created by cellcache\n*\n")
            except OSError:
                pass

    # the signing key ---------------------------------------------------------

    @property
    def signing_key(self) -> LocalKey:
        if self._key is None:
            self._key = load_signing_key(self._key_bytes, self._key_file)
        return self._key

    @property
    def secret(self) -> bytes:
        return self.signing_key.secret

    # the index ---------------------------------------------------------------

    @property
    def index(self) -> Index:
        """The index, opened or rebuilt; never raises: a store that can't hold one gets a private in-memory copy."""
        if self._index is None:
            self._index = self._open_index()
        return self._index

    @contextmanager
    def _flock(self, shared: bool = False, timeout: float | None = None) -> Iterator[bool]:
        """The store's lock: commits hold it shared, gc/invalidate/clear exclusive.

        So a sweep never sees half a commit: its reconcile knows every manifest
        committed before it, and none lands while it deletes. Hits never take it;
        only a read that finds a blob missing waits on it, to tell a sweep in
        progress (a plain miss) from a broken entry. A store where the lock file
        can't be made (read-only) has no writers to exclude.
        """
        try:
            fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError:
            yield False
            return
        try:
            mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
            got = False
            deadline = None if timeout is None else time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(fd, mode | (0 if deadline is None else fcntl.LOCK_NB))
                    got = True
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:  # type: ignore[operator]
                        break
                    time.sleep(0.005)
            yield got
        finally:
            os.close(fd)

    @contextmanager
    def _sweeping(self, what: str) -> Iterator[None]:
        """gc, invalidate, clear and repair: under the exclusive lock, and a read-only or broken store is one clear line."""
        with self._flock():
            try:
                yield
            except (OSError, sqlite3.Error) as exc:
                raise StoreUnavailable(f"cannot {what} the store at {self.root}: {getattr(exc, 'strerror', None) or exc}") from exc

    @contextmanager
    def _index_lock(self) -> Iterator[None]:
        """Serialize the rare repairs of the index file between processes."""
        try:
            fd = os.open(self.root / ".index.lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError:
            yield
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _open_index(self) -> Index:
        path = self.root / "index.sqlite"
        try:
            self._make_root()
        except CacheError:
            return self._memory_index(rebuild=False)  # a store path that is a file, or can't be created: nothing to index
        try:
            index = Index(path)
            if index.created:
                self._fill(index)  # a lost index: the manifests still know every entry
            return index
        except IndexUnusable as first:
            damaged = "locked" not in str(first) and "unable to open" not in str(first) and "readonly" not in str(first)
        if damaged and os.access(self.root, os.W_OK):
            with self._index_lock():
                try:
                    return Index(path)  # another process repaired it while this one waited
                except IndexUnusable:
                    pass
                stamp = time.strftime("%Y%m%dT%H%M%S")
                for suffix in ("", "-wal", "-shm"):
                    try:
                        os.replace(f"{path}{suffix}", f"{path}.damaged-{stamp}{suffix}")
                    except OSError:
                        pass
                try:
                    index = Index(path)
                except IndexUnusable:
                    return self._memory_index()
                self._fill(index)
                return index
        if path.exists():
            try:
                return Index(path, read_only=True)
            except IndexUnusable:
                pass
        return self._memory_index()

    def _memory_index(self, rebuild: bool = True) -> Index:
        index = Index(":memory:")
        if rebuild:
            self._fill(index)
        return index

    def _fill(self, index: Index) -> int:
        """Add a row for every sound manifest on disk that the index lacks; drop rows whose manifest is gone."""
        on_disk = dict(self._scan())
        known = index.entry_ids()
        new = []
        for (key, variant), path in on_disk.items():
            if (key, variant) in known:
                continue
            try:
                manifest = self._read_manifest(path, key, variant)
            except CacheError:
                continue  # `verify` reports it; a lookup treats it as a miss
            new.append((self._row(manifest), manifest.blobs))
        gone = known - set(on_disk)
        try:
            if new:
                index.add_entries(new)
            if gone:
                index.drop_entries(gone)
        except Exception:  # noqa: BLE001 - a busy or read-only index stays as it was; the manifests still rule
            return 0
        return len(new) + len(gone)

    def reconcile(self) -> int:
        """Bring the index in line with the manifests (a kill, a full disk or a racing clear can leave it behind)."""
        index = self.index
        index.flush(timeout_ms=1000)
        return self._fill(index)

    def rebuild_index(self) -> int:
        """Rebuild the entries of the index from the manifests; runs and statistics are kept."""
        index = self.index
        try:
            index.drop_entries(index.entry_ids())
        except Exception:  # noqa: BLE001
            pass
        return self._fill(index)

    def entries(self, step: StepRef | str | None = None) -> list[EntryRow]:
        """The entries, or one step's (a StepRef, or a name in any notebook), after reconciling the index with the manifests."""
        if not self.exists():
            return []
        self.reconcile()
        return self.index.entries(step)

    def exists(self) -> bool:
        return (self.root / "index.sqlite").exists() or (self.root / "entries").is_dir()

    # reading ---------------------------------------------------------------

    def _scan(self) -> Iterator[tuple[tuple[str, str], Path]]:
        """Every manifest file on disk, as ((key, variant), path)."""
        entries = self.root / "entries"
        try:
            shards = sorted(os.scandir(entries), key=lambda e: e.name)
        except (FileNotFoundError, NotADirectoryError):
            return
        for shard in shards:
            if len(shard.name) != 2 or not shard.is_dir(follow_symlinks=False):
                continue
            try:
                keys = list(os.scandir(shard.path))
            except OSError:
                continue
            for key in keys:
                if not key.is_dir(follow_symlinks=False) or not _is_digest(key.name):
                    continue
                try:
                    files = list(os.scandir(key.path))
                except OSError:
                    continue
                for f in files:
                    if f.name.endswith(".json") and not f.name.startswith(".") and _is_digest(f.name[:-5]):
                        yield (key.name, f.name[:-5]), Path(f.path)

    def _manifest_files(self, key: str) -> list[Path]:
        """The key's manifests, newest first."""
        folder = self.entry_dir(key)
        try:
            st = os.stat(folder)
        except (FileNotFoundError, NotADirectoryError):
            return []
        # Adding or removing a manifest changes the folder's mtime; a listing missed within one
        # timestamp tick costs a miss (or a FileNotFoundError the callers skip), never a wrong hit.
        identity = (st.st_ino, st.st_mtime_ns)
        known = self._listed.get(key)
        if known is not None and known[0] == identity:
            return known[1]
        try:
            found = [e for e in os.scandir(folder) if e.name.endswith(".json") and not e.name.startswith(".")]
        except (FileNotFoundError, NotADirectoryError):
            return []

        def mtime(entry: os.DirEntry) -> float:
            try:
                return entry.stat(follow_symlinks=False).st_mtime
            except OSError:
                return 0.0

        listing = [Path(e.path) for e in sorted(found, key=mtime, reverse=True)]
        if len(self._listed) > 4096:
            self._listed.clear()
        self._listed[key] = (identity, listing)
        return listing

    def _read_manifest(self, path: Path, key: str, variant: str | None = None) -> Manifest:
        try:
            fd = _open_nofollow(path)
        except FileNotFoundError:
            raise
        except CacheError:
            raise
        except OSError as exc:
            raise EntryCorrupt(f"cannot read manifest {key}: {exc.strerror or exc}") from exc
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            identity = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
            known = self._verified.get(path)
            if known is not None and known[0] == identity and (variant or path.stem) == known[1].variant:
                return known[1]
            raw = f.read(1 << 24)
        manifest = verify(raw, self.secret)
        if manifest.key != key:
            raise EntryCorrupt(f"manifest {key} describes another key")
        if manifest.variant != (variant or path.stem):
            raise EntryCorrupt(f"manifest {key}/{path.stem} describes another variant")
        if len(self._verified) > 4096:
            self._verified.clear()
        self._verified[path] = (identity, manifest)
        return manifest

    def candidates(self, key: str) -> Iterator[Found]:
        """The key's entries, newest first; a bad one is yielded with its problem, never raised."""
        for path in self._manifest_files(key):
            try:
                manifest = self._read_manifest(path, key)
            except FileNotFoundError:
                continue  # dropped by gc or invalidate since the listing
            except CacheError as exc:
                yield Found(None, LOCAL, str(exc))
                continue
            self._learn(manifest)
            yield Found(manifest, LOCAL)

    def _learn(self, manifest: Manifest) -> None:
        """An entry the index missed (a kill between manifest and row, a racing clear) is indexed on first sight."""
        if (manifest.key, manifest.variant) in self._indexed:
            return  # a re-run hit: the index was checked for this entry already
        try:
            index = self.index
            if not index.has_entry(manifest.key, manifest.variant):
                index.learn_entry(self._row(manifest), manifest.blobs)
            self._indexed.add((manifest.key, manifest.variant))
        except Exception:  # noqa: BLE001 - the index is a cache; a lookup never fails for it
            pass

    def manifest(self, key: str, variant: str | None = None) -> Manifest | None:
        """The newest entry for ``key`` (or that variant); None if there is none. A damaged one raises."""
        paths = [self.entry_dir(key) / f"{variant}.json"] if variant else self._manifest_files(key)
        for path in paths:
            try:
                return self._read_manifest(path, key)
            except FileNotFoundError:
                continue
        return None

    def _quarantine(self, path: Path, digest: str) -> None:
        """Move a blob whose content does not match its address out of the way, for `verify` to report."""
        folder = self.root / "quarantine"
        try:
            folder.mkdir(exist_ok=True)
            os.replace(path, folder / f"{digest}.{uuid.uuid4().hex[:8]}")
        except OSError:
            pass

    def _sound_blob(self, digest: str, expected_size: int) -> Path:
        """The blob's path if it is a regular file of the expected size (a planted link is refused); EntryCorrupt otherwise."""
        path = self.blob_path(digest)
        try:
            st = os.lstat(path)
        except FileNotFoundError as exc:
            raise EntryCorrupt(f"blob {digest} is missing") from exc
        except OSError as exc:
            raise EntryCorrupt(f"cannot read blob {digest}: {exc.strerror or exc}") from exc
        if stat.S_ISLNK(st.st_mode):
            raise EntryCorrupt(f"blob {digest} is a symbolic link; links planted in the store are not followed")
        if st.st_size != expected_size:
            self._quarantine(path, digest)
            raise EntryCorrupt(f"blob {digest} content does not match its digest ({st.st_size} bytes, expected {expected_size}); quarantined")
        return path

    def _checked_blob(self, digest: str, expected_size: int) -> Path:
        """The blob's path, after checking that its bytes hash to its address; EntryCorrupt otherwise (and quarantined)."""
        path = self.blob_path(digest)
        try:
            fd = _open_nofollow(path)
        except FileNotFoundError as exc:
            raise EntryCorrupt(f"blob {digest} is missing") from exc
        except OSError as exc:
            raise EntryCorrupt(f"cannot read blob {digest}: {exc.strerror or exc}") from exc
        try:
            actual, size = _digest_fd(fd)
        finally:
            os.close(fd)
        if size != expected_size or actual != digest:
            self._quarantine(path, digest)
            raise EntryCorrupt(f"blob {digest} content does not match its digest ({size} bytes, expected {expected_size}); quarantined")
        return path

    def _gone(self, manifest: Manifest) -> bool:
        """Whether the entry was removed meanwhile: waits (briefly) for a sweep in progress to finish."""
        with self._flock(shared=True, timeout=5.0):
            return not (self.entry_dir(manifest.key) / f"{manifest.variant}.json").exists()

    def load(self, manifest: Manifest) -> Any:
        try:
            path = self._sound_blob(manifest.blob, manifest.blob_size)
        except EntryCorrupt as exc:
            if "missing" in str(exc) and self._gone(manifest):
                raise EntryGone(f"entry {manifest.key} was removed while it was read") from exc
            raise
        try:
            # format.load checks the bytes against the digest before a byte is unpickled (unless the user trusts the disk).
            return fmt.load(path, manifest.blob_loader, digest=manifest.blob, verify=self.verify_local, chunks=manifest.blob_chunks)
        except FileNotFoundError as exc:
            raise EntryCorrupt(f"blob {manifest.blob} is missing") from exc
        except EntryCorrupt as exc:
            if "match" in str(exc) or "digest" in str(exc):
                self._quarantine(path, manifest.blob)
                raise EntryCorrupt(f"{exc}; quarantined") from exc
            raise

    # writing ---------------------------------------------------------------

    def put_blob(self, value: Any) -> fmt.BlobInfo:
        """Pickle ``value`` into a content-addressed blob; identical content is stored once."""
        self._make_root()
        tmp_dir = self.root / "blobs" / "tmp"
        tmp_dir.mkdir(parents=True, exist_ok=True)
        tmp = tmp_dir / f"{uuid.uuid4().hex}.tmp"
        try:
            with open(tmp, "wb") as f:
                info = fmt.dump(value, f)
            final = self.blob_path(info.digest)
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, final)  # also replaces a planted link or a damaged copy with the sound bytes
        finally:
            tmp.unlink(missing_ok=True)
        return info

    def put_file_blob(self, source: Path) -> tuple[str, int]:
        self._make_root()
        digest = fmt.file_digest(source)
        size = source.stat().st_size
        final = self.blob_path(digest)
        try:
            st = os.lstat(final)
            if st.st_size == size and not os.path.islink(final):
                return digest, size
        except FileNotFoundError:
            pass
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.parent / f".{digest}.{uuid.uuid4().hex[:8]}.tmp"
        try:
            shutil.copyfile(source, tmp)
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)
        return digest, size

    def restore_file(self, out: OutFile, target: Path, cache: Any = None) -> bool:
        """Write an --outs file back where it is missing or differs; return whether it was written.

        The path was checked when the manifest was read; it is checked again here
        because a manifest can also come from memory (the remote's copy).
        """
        from cellcache.cell.files import digest  # files depends on the store's format, not the other way round

        # The runner asks for cwd / out.path; whatever it asks, nothing is written outside the project.
        if Path(os.path.normpath(target)) != _out_target(out.path):
            raise UnsafeEntry(f"--outs path {out.path!r} does not name {target}")
        if target.is_file() and not target.is_symlink() and target.stat().st_size == out.size and digest(target, cache) == out.blob:
            return False
        source = self._checked_blob(out.blob, out.size)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.parent / f".{target.name}.{uuid.uuid4().hex[:8]}.tmp"
        try:
            fd = _open_nofollow(source)
            with os.fdopen(fd, "rb") as src, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 22)
            os.chmod(tmp, out.mode)
            os.replace(tmp, target)  # replaces a link at the target instead of writing through it
        finally:
            tmp.unlink(missing_ok=True)
        return True

    @staticmethod
    def _row(manifest: Manifest) -> EntryRow:
        return EntryRow(
            key=manifest.key,
            step=manifest.step,
            created=manifest.created,
            size=manifest.size,
            seconds=manifest.seconds,
            blob=manifest.blob,
            notebook=manifest.notebook,
            variant=manifest.variant,
        )

    def commit(self, manifest: Manifest) -> None:
        """Publish an entry whose blobs are written: the manifest rename is the commit point.

        A `clear` that ran meanwhile removes blobs before manifests, so an entry
        whose blobs are gone after its manifest landed is withdrawn: it is either
        entirely in or entirely gone.
        """
        validate(manifest)
        for out in manifest.outs:
            _out_target(out.path)  # UnsafeEntry if it leaves the project
        self._make_root()
        path = self.entry_dir(manifest.key) / f"{manifest.variant}.json"
        signed = sign(manifest, self.secret)
        with self._flock(shared=True):
            try:
                atomic_write_bytes(path, signed)
            except OSError as exc:
                raise StoreUnavailable(f"cannot write the manifest: {exc.strerror or exc}") from exc
            if any(not self.blob_path(b).is_file() for b in manifest.blobs):
                path.unlink(missing_ok=True)
                raise StoreUnavailable("a gc, invalidate or clear removed its blobs while this entry was being stored")
        try:
            self.index.add_entry(self._row(manifest), manifest.blobs)
        except Exception:  # noqa: BLE001 - the manifest is the truth; the index learns it on first sight
            pass

    # bookkeeping -----------------------------------------------------------

    @staticmethod
    def _ref(step: StepRef | str) -> StepRef:
        return step if isinstance(step, StepRef) else StepRef("", step)

    def record_run(
        self, step: StepRef | str, key: str | None, status: str, seconds: float, saved: float, reason: str, source: str = LOCAL
    ) -> None:
        try:
            self.index.record_run(self._ref(step), key, status, seconds, saved, reason, source)
        except Exception:  # noqa: BLE001 - statistics never cost a result, nor a warning
            pass

    def mark_auto(self, step: StepRef | str) -> None:
        """Auto mode runs this step: `stats` counts it apart."""
        try:
            self.index.mark_auto(self._ref(step))
        except Exception:  # noqa: BLE001 - statistics never cost a result, nor a warning
            pass

    def step_costs(self, notebook: str) -> dict[str, tuple[str, float, str, float | None, int | None]]:
        """What each step of a notebook cost when it last ran (auto mode's cost rule learns from it); {} if unknown."""
        if not self.exists():
            return {}
        try:
            return self.index.step_costs(notebook)
        except Exception:  # noqa: BLE001 - without a history, every step decides at its end
            return {}

    def step_rows(self) -> list[StepStats]:
        if not self.exists():
            return []
        index = self.index
        index.flush(timeout_ms=1000)  # records queued on busy hits are counted now
        try:
            return index.step_rows()
        except Exception:  # noqa: BLE001 - a damaged index is rebuilt from the manifests
            self._index = self._memory_index()
            return self._index.step_rows()

    def last_manifest(self, step: StepRef | str) -> Manifest | None:
        """The step's most recent entry, for explaining what changed since (the same notebook's step only)."""
        try:
            last = self.index.last_key(self._ref(step))
            if last is None:
                return None
            return self.manifest(*last)
        except Exception:  # noqa: BLE001 - an explanation is not worth a failure
            return None

    def invalidated_at(self, step: StepRef | str) -> float | None:
        try:
            return self.index.invalidated_at(self._ref(step))
        except Exception:  # noqa: BLE001
            return None

    def known_steps(self) -> list[StepRef]:
        try:
            return [StepRef(nb, name) for nb, name in self.index.step_refs()]
        except Exception:  # noqa: BLE001
            return []

    def resolve_step(self, text: str, notebook: str | None = None, prefer: str | None = None) -> StepRef:
        """``NB:STEP``, or ``STEP`` in ``notebook``, or a ``STEP`` name unique in the store; errors list the candidates.

        ``prefer`` is the asking session's notebook: there, a bare name means that notebook's step first.
        """
        self.reconcile()
        known = self.known_steps()
        shown = tuple(str(s) for s in known)
        if notebook is None and prefer is not None and StepRef(prefer, text) in known:
            return StepRef(prefer, text)
        if notebook is not None:
            wanted = StepRef(notebook, text)
            if wanted in known:
                return wanted
            raise UnknownStep(f"no step {text!r} in notebook {notebook!r}", shown)
        if StepRef("", text) in known:
            return StepRef("", text)
        matches = [s for s in known if s.name == text]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise AmbiguousStep(f"step {text!r} exists in several notebooks; say which as NB:STEP", tuple(str(s) for s in matches))
        nb, sep, name = text.rpartition(":")
        if sep and StepRef(nb, name) in known:
            return StepRef(nb, name)
        raise UnknownStep(f"no step {text!r}", shown)

    # removal ---------------------------------------------------------------

    def _unlink_blobs(self, blobs: set[str]) -> int:
        """Delete the blobs that no manifest names any more; return bytes freed."""
        if not blobs:
            return 0
        self.reconcile()  # under the store lock: every entry committed so far is known, and none lands meanwhile
        in_use = self.index.blobs_in_use()
        freed = 0
        for blob in blobs - in_use:
            path = self.blob_path(blob)
            try:
                freed += os.lstat(path).st_size
                path.unlink()
            except FileNotFoundError:
                pass
        return freed

    def _drop(self, rows: list[EntryRow]) -> int:
        """Remove entries and whichever of their blobs no other entry shares; return bytes freed."""
        if not rows:
            return 0
        blobs: set[str] = set()
        for row in rows:
            blobs.update(self.index.entry_blobs(row.key, row.variant) or {row.blob: 0})
            (self.entry_dir(row.key) / f"{row.variant}.json").unlink(missing_ok=True)
            try:
                self.entry_dir(row.key).rmdir()
            except OSError:
                pass  # another variant is still there, or a writer is adding one
        self.index.drop_entries((r.key, r.variant) for r in rows)
        return self._unlink_blobs(blobs)

    def invalidate(self, step: StepRef | str) -> int:
        """Drop every entry of one step; return how many. An unknown step raises UnknownStep."""
        ref = step if isinstance(step, StepRef) else self.resolve_step(step)
        if isinstance(step, StepRef):
            self.reconcile()
            if ref not in self.known_steps():
                raise UnknownStep(f"no step {str(ref)!r}", tuple(str(s) for s in self.known_steps()))
        with self._sweeping("invalidate"):
            self.reconcile()
            rows = self.index.entries(ref)
            # And every entry the step would hit that another name stored: its runs know the keys it computes.
            own = {(r.key, r.variant) for r in rows}
            rows += [r for r in self.index.entries_run_by(ref) if (r.key, r.variant) not in own]
            self._drop(rows)
            self.index.mark_invalidated(ref, time.time())
        return len(rows)

    def _trash(self) -> Path:
        return self.root / f".trash-{uuid.uuid4().hex[:12]}"

    def _clear_blobs(self) -> None:
        blobs = self.root / "blobs"
        if blobs.is_symlink() or os.path.ismount(blobs):
            # The user put blobs/ on another disk on purpose: empty it, keep the link and everything else there.
            for shard in list(os.scandir(blobs)):
                if not shard.is_dir(follow_symlinks=False) or not (len(shard.name) == 2 or shard.name == "tmp"):
                    continue
                for f in list(os.scandir(shard.path)):
                    if f.is_file(follow_symlinks=False) and (_is_digest(f.name) or f.name.endswith(".tmp")):
                        os.unlink(f.path)
            return
        if blobs.is_dir():
            trash = self._trash()
            os.replace(blobs, trash)
            shutil.rmtree(trash, ignore_errors=True)

    def clear(self) -> int:
        """Drop every entry. Blobs go first, manifests second: a concurrent writer then sees its blobs gone
        after committing and withdraws its manifest, so no entry is left half in."""
        if not self.exists():
            return 0
        self._check_root()
        with self._sweeping("clear"):
            return self._clear()

    def _clear(self) -> int:
        count = sum(1 for _ in self._scan())
        try:
            steps = self.known_steps()
        except Exception:  # noqa: BLE001
            steps = []
        self._clear_blobs()
        entries = self.root / "entries"
        if entries.is_dir():
            trash = self._trash()
            os.replace(entries, trash)
            shutil.rmtree(trash, ignore_errors=True)
        shutil.rmtree(self.root / "quarantine", ignore_errors=True)
        try:
            self.index.clear()
            now = time.time()
            for ref in steps:
                self.index.mark_invalidated(ref, now)
        except Exception:  # noqa: BLE001 - with the manifests gone, a stale index is reconciled by the next command
            pass
        return count

    def _leftovers(self, grace: float) -> list[tuple[Path, int]]:
        """Files nothing needs: old temp files, blobs no manifest names, quarantined blobs, v1 manifests, trash."""
        now = time.time()
        in_use = self.index.blobs_in_use()
        found: list[tuple[Path, int]] = []

        def old(st: os.stat_result) -> bool:
            return now - st.st_mtime > grace

        for top in ("blobs", "entries"):
            for dirpath, dirnames, filenames in os.walk(self.root / top):
                for name in filenames:
                    path = Path(dirpath) / name
                    try:
                        st = os.lstat(path)
                    except OSError:
                        continue
                    if name.endswith(".tmp"):
                        if old(st):
                            found.append((path, st.st_size))
                    elif top == "blobs" and _is_digest(name) and name not in in_use and old(st):
                        found.append((path, st.st_size))
                    elif top == "entries" and name.endswith(".json") and Path(dirpath).parent == self.root / "entries":
                        found.append((path, st.st_size))  # a v1 manifest, entries/ab/<key>.json: never read again
        for extra in [self.root / "quarantine", *self.root.glob(".trash-*")]:
            for dirpath, _, filenames in os.walk(extra):
                for name in filenames:
                    path = Path(dirpath) / name
                    try:
                        found.append((path, os.lstat(path).st_size))
                    except OSError:
                        pass
        return found

    def _reclaim(self, leftovers: list[tuple[Path, int]]) -> int:
        freed = 0
        for path, size in leftovers:
            try:
                path.unlink()
                freed += size
            except OSError:
                pass
        for trash in self.root.glob(".trash-*"):
            shutil.rmtree(trash, ignore_errors=True)
        return freed

    def gc(
        self, max_size: int | None = None, older_than: float | None = None, grace: float = TEMP_GRACE
    ) -> tuple[int, int]:
        """Drop least recently used entries until the store fits, and reclaim leftovers; return (entries, bytes freed).

        A blob shared by several entries is counted once, and only freed when its last entry goes.
        """
        if not self.exists():
            return 0, 0
        with self._sweeping("collect garbage in"):
            return self._gc(max_size, older_than, grace)

    def _gc(self, max_size: int | None, older_than: float | None, grace: float) -> tuple[int, int]:
        self.reconcile()
        now = time.time()
        rows = list(self.index.entries_by_last_use())
        uses: dict[str, int] = {}
        sizes: dict[str, int] = {}
        blobs_of: dict[tuple[str, str], list[str]] = {}
        for key, variant, blob, size in self.index.all_entry_blobs():
            blobs_of.setdefault((key, variant), []).append(blob)
            uses[blob] = uses.get(blob, 0) + 1
            sizes[blob] = size
        total = sum(sizes.values())
        doomed: list[EntryRow] = []
        for row in rows:
            too_old = older_than is not None and now - row.last_used > older_than
            too_big = max_size is not None and total > max_size
            if not (too_old or too_big):
                continue
            doomed.append(row)
            for blob in blobs_of.get((row.key, row.variant), []):
                uses[blob] -= 1
                if uses[blob] == 0:
                    total -= sizes[blob]
        freed = self._drop(doomed)
        freed += self._reclaim(self._leftovers(grace))
        return len(doomed), freed

    def verify(self, repair: bool = False, grace: float = TEMP_GRACE) -> VerifyReport:
        """Check every manifest's signature and every blob's content; report (and with repair, reclaim) leftovers.

        Works from the manifests on disk, not the index; ``repair`` drops the
        broken entries, reclaims the leftovers and rebuilds the index.
        """
        broken: list[tuple[str, str]] = []
        bad: list[Path] = []
        checked = 0
        good_blobs: dict[str, bool] = {}
        for (key, variant), path in self._scan():
            checked += 1
            problem = self._check_entry(path, key, variant, good_blobs)
            if problem:
                broken.append((key, problem))
                bad.append(path)
        if not self.exists():
            return VerifyReport(checked=0, broken=(), repaired=repair)
        with self._sweeping("repair") if repair else nullcontext():
            if repair:
                for path in bad:
                    path.unlink(missing_ok=True)
                self.rebuild_index()
            else:
                self.reconcile()
            leftovers = self._leftovers(grace)
            reclaimable = sum(size for _, size in leftovers)
            reclaimed = self._reclaim(leftovers) if repair else 0
        return VerifyReport(
            checked=checked,
            broken=tuple(broken),
            repaired=repair,
            reclaimable=reclaimable,
            reclaimed=reclaimed,
            leftovers=len(leftovers),
        )

    def _check_entry(self, path: Path, key: str, variant: str, good_blobs: dict[str, bool]) -> str | None:
        try:
            manifest = self._read_manifest(path, key, variant)
        except FileNotFoundError:
            return "manifest missing"
        except CacheError as exc:
            return str(exc)
        for digest, size in manifest.blobs.items():
            if digest not in good_blobs:
                try:
                    self._checked_blob(digest, size)
                    good_blobs[digest] = True
                except EntryCorrupt as exc:
                    good_blobs[digest] = False
                    return str(exc)
            if not good_blobs[digest]:
                return f"blob {digest} is missing or does not match its digest"
        return None
