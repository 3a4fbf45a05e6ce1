"""The local store: content-addressed blobs, signed manifests, a SQLite index.

Layout under the store folder::

    blobs/ab/<xxh3 of the blob>          joblib pickles and --outs file contents
    blobs/tmp/                           blobs being written (named after their writer)
    writers/<id>.lock                    one per writing process, locked while it lives (see ``writers``)
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

import fcntl
import os
import shutil
import sqlite3
import stat
import time
import uuid
from contextlib import contextmanager
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
    warn,
)
from cellcache.store import format as fmt
from cellcache.store import writers
from cellcache.store.atomic import NotRegularFile, atomic_write_bytes, open_regular, read_fd
from cellcache.store.base import LOCAL, Found, Ledger, RunRecord, Store, StepRef
from cellcache.store.index import EntryRow, Index, IndexUnusable, StepStats
from cellcache.store.local_key import LocalKey, load_signing_key
from cellcache.store.maintenance import Upkeep, is_digest
from cellcache.store.manifest import MANIFEST_LIMIT, Manifest, OutFile, inside_project, sign, validate, verify

STORE_VERSION = 2  # the layout above; a v1 store's entries/ab/<key>.json files are ignored and reclaimed by gc


def _out_target(path: str) -> Path:
    """Where an --outs path lands from the working directory; UnsafeEntry if that is outside the project."""
    from cellcache.config import project_root

    cwd = Path.cwd()
    return inside_project(path, cwd, project_root(cwd))


def _refused(what: str, exc: NotRegularFile) -> EntryCorrupt:
    return EntryCorrupt(f"{what} is {exc.what}; links and special files planted in the store are not followed")


def _digest_fd(fd: int, chunk: int = 1 << 22) -> tuple[str, int]:
    hasher = xxhash.xxh3_128()
    size = 0
    while block := os.read(fd, chunk):
        hasher.update(block)
        size += len(block)
    return hasher.hexdigest(), size


class LocalStore(Upkeep, Store, Ledger):
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
        self._writer = writers.Writer(self.root)

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
    def writing(self) -> Iterator[None]:
        """Hold the store's lock shared from a blob's put to its entry's commit: no sweep runs in between.

        Without it a gc could drop the only other entry naming a blob this writer
        just put (content-addressed: the same bytes), and the commit would find it gone.
        """
        with self._flock(shared=True):
            yield

    def _claim(self, digest: str) -> None:
        """Claim a blob before it appears. Under the shared lock: a sweep in progress, which may have counted the
        claims already, finishes first; every later one sees this claim."""
        with self._flock(shared=True):
            self._writer.claim(digest)

    def incoming(self, digest: str) -> Path:
        """Where a blob fetched from elsewhere (the remote) lands, claimed first so no sweep takes it before its commit."""
        self._claim(digest)
        return self.blob_path(digest)

    def temp_name(self, suffix: str = ".tmp") -> str:
        """A temporary file's name in this store that says this process owns it (gc reclaims it once the process is gone)."""
        return self._writer.temp_name(suffix)

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
            problem = str(first)  # `first` is unbound after the except block
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
                # Once, by the process that repaired it (one that waited for the lock reopens it silently above).
                warn(
                    f"cellcache: the store's index was damaged ({problem}); rebuilt it from the entries' manifests. "
                    f"Run history and statistics before now are lost; the damaged copy is {path.name}.damaged-{stamp}"
                )
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
            except FileNotFoundError:
                continue  # removed since the scan (another process's invalidate or gc): simply gone
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

    def close(self) -> None:
        """Let go of the store's files (the index, this process's writer registration); they reopen on next use."""
        if self._index is not None:
            self._index.close()
            self._index = None
        self._writer.close()

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
                if not key.is_dir(follow_symlinks=False) or not is_digest(key.name):
                    continue
                try:
                    files = list(os.scandir(key.path))
                except OSError:
                    continue
                for f in files:
                    if f.name.endswith(".json") and not f.name.startswith(".") and is_digest(f.name[:-5]):
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
        """The manifest at ``path``, checked; FileNotFoundError if it is gone (a plain miss), a CacheError if it is bad."""
        try:
            fd, st = open_regular(path)
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise FileNotFoundError(exc.errno, exc.strerror, str(path)) from exc
        except NotRegularFile as exc:
            raise _refused(f"manifest {key}", exc) from exc
        except OSError as exc:
            raise EntryCorrupt(f"cannot read manifest {key}: {exc.strerror or exc}") from exc
        try:
            identity = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
            known = self._verified.get(path)
            if known is not None and known[0] == identity and (variant or path.stem) == known[1].variant:
                return known[1]
            if st.st_size > MANIFEST_LIMIT:
                # Checked before its signature: a truncated read would only ever say "signature does not match".
                raise EntryCorrupt(
                    f"manifest {key} is {st.st_size} bytes, over the limit of {MANIFEST_LIMIT >> 20} MiB; it is not read"
                )
            raw = read_fd(fd, MANIFEST_LIMIT + 1)
        except OSError as exc:
            raise EntryCorrupt(f"cannot read manifest {key}: {exc.strerror or exc}") from exc
        finally:
            os.close(fd)
        if len(raw) > MANIFEST_LIMIT:
            raise EntryCorrupt(f"manifest {key} grew over the limit of {MANIFEST_LIMIT >> 20} MiB while it was read")
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

    def _checked_blob(self, digest: str, expected_size: int) -> int:
        """An open descriptor of the blob, at its start, after checking through it that its bytes hash to its
        address; EntryCorrupt otherwise (and quarantined). The caller closes it, and reads through it."""
        path = self.blob_path(digest)
        try:
            fd, _ = open_regular(path)
        except FileNotFoundError as exc:
            raise EntryCorrupt(f"blob {digest} is missing") from exc
        except NotRegularFile as exc:
            raise _refused(f"blob {digest}", exc) from exc
        except OSError as exc:
            raise EntryCorrupt(f"cannot read blob {digest}: {exc.strerror or exc}") from exc
        try:
            actual, size = _digest_fd(fd)
            if size != expected_size or actual != digest:
                self._quarantine(path, digest)
                raise EntryCorrupt(f"blob {digest} content does not match its digest ({size} bytes, expected {expected_size}); quarantined")
            os.lseek(fd, 0, os.SEEK_SET)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _gone(self, manifest: Manifest) -> bool:
        """Whether the entry was removed meanwhile: waits (briefly) for a sweep in progress to finish."""
        with self._flock(shared=True, timeout=5.0):
            return not (self.entry_dir(manifest.key) / f"{manifest.variant}.json").exists()

    def load(self, manifest: Manifest) -> Any:
        path = self.blob_path(manifest.blob)
        try:
            # format.load opens the blob once (no link followed), checks its size through that descriptor, and
            # its bytes against the digest before a byte is unpickled (unless the user trusts the disk).
            return fmt.load(
                path, manifest.blob_loader, digest=manifest.blob, verify=self.verify_local, chunks=manifest.blob_chunks,
                size=manifest.blob_size,
            )
        except (FileNotFoundError, NotADirectoryError) as exc:
            if self._gone(manifest):
                raise EntryGone(f"entry {manifest.key} was removed while it was read") from exc
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
        tmp = tmp_dir / self._writer.temp_name()
        try:
            with open(tmp, "wb") as f:
                info = fmt.dump(value, f)
            final = self.blob_path(info.digest)
            final.parent.mkdir(parents=True, exist_ok=True)
            self._claim(info.digest)  # before the blob appears: a gc never takes it for a dead writer's
            os.replace(tmp, final)  # also replaces a planted link or a damaged copy with the sound bytes
        finally:
            tmp.unlink(missing_ok=True)
        return info

    def put_file_blob(self, source: Path) -> tuple[str, int]:
        self._make_root()
        digest = fmt.file_digest(source)
        size = source.stat().st_size
        final = self.blob_path(digest)
        self._claim(digest)  # an existing copy too: a sweep must not take it before this entry commits
        try:
            st = os.lstat(final)
            if st.st_size == size and stat.S_ISREG(st.st_mode):
                return digest, size
        except FileNotFoundError:
            pass
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.parent / ("." + self._writer.temp_name())
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
        fd = self._checked_blob(out.blob, out.size)  # copied through the descriptor that was checked
        tmp = target.parent / f".{target.name}.{uuid.uuid4().hex[:8]}.tmp"
        try:
            with os.fdopen(fd, "rb") as src:
                target.parent.mkdir(parents=True, exist_ok=True)
                with open(tmp, "wb") as dst:
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
                try:
                    atomic_write_bytes(path, signed, tmp_name="." + self._writer.temp_name())
                except OSError as exc:
                    raise StoreUnavailable(f"cannot write the manifest: {exc.strerror or exc}") from exc
                if any(not self.blob_path(b).is_file() for b in manifest.blobs):
                    path.unlink(missing_ok=True)
                    raise StoreUnavailable("a gc, invalidate or clear removed its blobs while this entry was being stored")
            finally:
                # Still under the lock: from here the manifest protects its blobs (or, failed, nothing should).
                self._writer.release(list(manifest.blobs))
        try:
            self.index.add_entry(self._row(manifest), manifest.blobs)
        except Exception:  # noqa: BLE001 - the manifest is the truth; the index learns it on first sight
            pass

    # bookkeeping -----------------------------------------------------------

    @staticmethod
    def _ref(step: StepRef | str) -> StepRef:
        return step if isinstance(step, StepRef) else StepRef("", step)

    def record_run(self, run: RunRecord) -> None:
        try:
            self.index.record_run(run)
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


def open_store(config: Any) -> LocalStore:
    """The local store as the settings describe it: every caller opens it here, so none forgets a setting."""
    return LocalStore(config.dir, verify_local=config.verify_local)
