"""The shared remote store on any fsspec filesystem (s3://, gs://, file://, memory://).

Layout (every object is written once and never changed)::

    <url>/cellcache/v1/FORMAT
    <url>/cellcache/v1/blobs/sha256/ab/<sha256>            outputs and --outs files
    <url>/cellcache/v1/entries/ab/<key>/<signer>.json      one signed manifest per signer
    <url>/cellcache/v1/steps/<notebook>/<step>/<key>       pointers, for status, pull and gc

``<signer>`` is the hex SHA-256 of the signer's public key (its fingerprint
without base64, which has '/'). A reader fetches the manifests of the signers
it trusts by their exact names, so the hit path never lists anything, and an
untrusted writer cannot squat a key that CI will write later: it can only
write under its own name.

This module holds the mechanics (paths, reads with checks, write-once
uploads); it never warns. Network trouble is raised as RemoteUnavailable or
RemoteDenied, and the tiered store decides what the user hears.
"""
from __future__ import annotations

import hashlib
import os
import time
import uuid
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterable, Iterator

import xxhash

from cellcache.errors import CacheError, EntryCorrupt, RemoteDenied, RemoteUnavailable, UntrustedEntry
from cellcache.remote.signer_keys import SigningKey, fingerprint_from_id
from cellcache.remote import signing
from cellcache.store.manifest import MANIFEST_LIMIT, Manifest, canonical_json
from cellcache.remote.signing import RemoteBlob, SignedEntry

PREFIX = "cellcache/v1"
FORMAT_TEXT = b"cellcache remote store, layout v1\n"
DEFAULT_TIMEOUT = 5.0
# The read timeout is an idle limit, reset by every byte that arrives (botocore's read_timeout, aiohttp's
# sock_read), so it follows progress: a transfer that keeps moving never hits it, however long it takes. It is
# longer than the connect timeout because a server that accepted the connection is alive, and a loaded one can
# take a while to start answering; a dead remote is still found by the connect timeout, at once.
READ_FACTOR = 3.0
PART = 16 << 20  # ranged reads and multipart uploads move this much per request
WORKERS = 8
NO_NOTEBOOK = "_"  # a plain IPython session's steps, in the steps/ tree


def open_filesystem(url: str, timeout: float = DEFAULT_TIMEOUT) -> tuple[Any, str]:
    """The filesystem for ``url`` and the root path inside it; no listing cache, short timeouts, no retry storm.

    ``timeout`` bounds connecting; reading may idle ``READ_FACTOR`` times as long between two bytes.

    A fresh instance each time (skip_instance_cache): fsspec's shared
    instances would carry another caller's listings and settings.
    """
    import fsspec

    protocol = url.split("://", 1)[0] if "://" in url else "file"
    options: dict[str, Any] = {"skip_instance_cache": True, "use_listings_cache": False}
    if protocol in ("s3", "s3a"):
        options["config_kwargs"] = {
            "connect_timeout": timeout,
            "read_timeout": timeout * READ_FACTOR,
            "retries": {"total_max_attempts": 1, "mode": "standard"},
        }
    elif protocol in ("gs", "gcs"):
        options["requests_timeout"] = timeout * READ_FACTOR  # gcsfs has one timeout for both
        options["retries"] = 1
    if protocol in ("file", "local", "memory"):
        options.pop("use_listings_cache")
    try:
        fs, root = fsspec.core.url_to_fs(url, **options)
    except ImportError as exc:
        raise RemoteUnavailable(f"the remote {url} needs a package that is not installed: {exc}") from exc
    if hasattr(fs, "retries"):
        fs.retries = 1  # s3fs retries 5 times with backoff by default: a dead remote would cost a minute per call
    return fs, root.rstrip("/")


def _http_status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if isinstance(status, int):
            return status
    cause = exc.__cause__ or exc.__context__
    return _http_status(cause) if cause is not None and cause is not exc else None


def _is_precondition_failed(exc: BaseException) -> bool:
    return _http_status(exc) == 412 or "PreconditionFailed" in str(exc) or isinstance(exc, FileExistsError)


def translate(exc: BaseException, what: str) -> CacheError:
    """A filesystem error as one of ours: denied (401/403) or unavailable (anything else that is not a 404)."""
    status = _http_status(exc)
    if isinstance(exc, PermissionError) or status in (401, 403):
        return RemoteDenied(f"{what}: access denied ({exc}); check the credentials and permissions for the remote")
    return RemoteUnavailable(f"{what}: {type(exc).__name__}: {exc}")


@dataclass(frozen=True)
class Fetched:
    """What a lookup found under one key: verified entries, and one line per rejected manifest."""

    entries: tuple[SignedEntry, ...]
    problems: tuple[str, ...]


class RemoteStore:
    """Reads and write-once uploads against one remote URL."""

    def __init__(
        self,
        url: str,
        *,
        trusted: Iterable[str] = (),
        verify: str = "on",
        signing_key: SigningKey | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        fs: Any = None,
    ) -> None:
        from cellcache.remote.signer_keys import signer_id

        self.url = url
        self.timeout = timeout
        self.verify = verify
        self.trusted_ids = tuple(dict.fromkeys(signer_id(f) for f in trusted))
        self.signing_key = signing_key
        self._fs_root = (fs, url.split("://", 1)[-1].rstrip("/")) if fs is not None else None
        self._pool: ThreadPoolExecutor | None = None

    # plumbing ------------------------------------------------------------

    @property
    def fs(self) -> Any:
        if self._fs_root is None:
            self._fs_root = open_filesystem(self.url, self.timeout)
        return self._fs_root[0]

    @property
    def base(self) -> str:
        self.fs  # noqa: B018 - resolves the root
        assert self._fs_root is not None
        return f"{self._fs_root[1]}/{PREFIX}"

    @property
    def pool(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(WORKERS, thread_name_prefix="cellcache-remote")
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    @property
    def local_path(self) -> bool:
        return "file" in _protocols(self.fs)

    @property
    def s3(self) -> bool:
        return "s3" in _protocols(self.fs)

    # layout --------------------------------------------------------------

    def blob_path(self, sha256: str) -> str:
        return f"{self.base}/blobs/sha256/{sha256[:2]}/{sha256}"

    def entry_dir(self, key: str) -> str:
        return f"{self.base}/entries/{key[:2]}/{key}"

    def entry_path(self, key: str, signer: str) -> str:
        return f"{self.entry_dir(key)}/{signer}.json"

    def step_dir(self, notebook: str, step: str) -> str:
        return f"{self.base}/steps/{notebook or NO_NOTEBOOK}/{step}"

    def pointer_path(self, notebook: str, step: str, key: str) -> str:
        return f"{self.step_dir(notebook, step)}/{key}"

    # reading -------------------------------------------------------------

    def _cat(self, path: str, limit: int | None = None) -> bytes | None:
        """An object's bytes (with ``limit``, at most one more than that), or None if there is none (a 404 is a miss)."""
        try:
            if limit is not None:
                # One ranged GET: an oversized manifest costs limit + 1 bytes, and is then refused as too large.
                return self.fs.cat_file(path, start=0, end=limit + 1)
            return self._cat_whole(path)
        except FileNotFoundError:
            return None
        except Exception as exc:  # noqa: BLE001 - every other failure is classified, never swallowed
            raise translate(exc, f"cannot read {path}") from exc

    def ping(self) -> bool:
        """Whether the remote answers (a missing FORMAT object still counts: the store may be empty)."""
        self._cat(f"{self.base}/FORMAT")
        return True

    def fetch(self, key: str) -> Fetched:
        """The trusted entries for ``key``, verified; each other manifest found is a problem line.

        Only the trusted signers' manifests are read, by name. Only when none of
        them exists is the key's own folder listed (one small listing, never the
        bucket), to tell the user that an untrusted or unsigned entry was refused.
        """
        if self.verify == "off":
            return self._fetch_unverified(key)
        trusted = frozenset(self.trusted_ids)
        raws = self._cat_many([self.entry_path(key, s) for s in self.trusted_ids], limit=MANIFEST_LIMIT)
        entries, problems = [], []
        for signer, raw in zip(self.trusted_ids, raws):
            if raw is None:
                continue
            try:
                entries.append(signing.open_envelope(raw, key=key, signer_id=signer, trusted=trusted))
            except CacheError as exc:
                problems.append(str(exc))
        if not entries and not problems:
            for name in self._ls_names(self.entry_dir(key)):
                signer = name.removesuffix(".json")
                if signer not in trusted:
                    who = fingerprint_from_id(signer) if _is_hex64(signer) else repr(signer)
                    problems.append(f"remote entry for key {key[:12]} is signed by {who}, which is not a trusted signer")
        entries.sort(key=lambda e: e.pushed, reverse=True)
        return Fetched(tuple(entries), tuple(problems))

    def _fetch_unverified(self, key: str) -> Fetched:
        entries, problems = [], []
        names = self._ls_names(self.entry_dir(key))
        for name, raw in zip(names, self._cat_many([f"{self.entry_dir(key)}/{n}" for n in names], limit=MANIFEST_LIMIT)):
            if raw is None:
                continue
            try:
                entries.append(signing.open_envelope(raw, key=key, signer_id=None, trusted=None))
            except CacheError as exc:
                problems.append(str(exc))
        entries.sort(key=lambda e: e.pushed, reverse=True)
        return Fetched(tuple(entries), tuple(problems))

    def _cat_many(self, paths: list[str], limit: int | None = None) -> list[bytes | None]:
        if len(paths) <= 1:
            return [self._cat(p, limit) for p in paths]
        return [f.result() for f in [self.pool.submit(self._cat, p, limit) for p in paths]]

    def _cat_whole(self, path: str) -> bytes:
        # One GET on S3: s3fs's default first asks for the size, and a 404 there lists the prefix.
        return self.fs.cat_file(path, max_concurrency=1) if self.s3 else self.fs.cat_file(path)

    def _ls_names(self, path: str) -> list[str]:
        try:
            if self.s3:
                # One ListObjectsV2 of this folder: s3fs's ls() lists the parents too when a folder is empty.
                bucket, key, _ = self.fs.split_path(path)
                response = self.fs.call_s3("list_objects_v2", Bucket=bucket, Prefix=key.rstrip("/") + "/", Delimiter="/")
                names = [o["Key"] for o in response.get("Contents", [])]
                names += [p["Prefix"] for p in response.get("CommonPrefixes", [])]
                return sorted(n.rstrip("/").rsplit("/", 1)[-1] for n in names)
            listed = self.fs.ls(path, detail=False)
        except FileNotFoundError:
            return []
        except Exception as exc:  # noqa: BLE001
            raise translate(exc, f"cannot list {path}") from exc
        return sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in listed)

    def download(self, entry: SignedEntry, blob_path: Callable[[str], Path], temp_name: Callable[[str], str] | None = None) -> None:
        """Fetch every blob the entry needs that is not local yet, concurrently, checked before it lands.

        Each blob goes to a temporary file beside its local place; it is moved
        there only if its size, SHA-256 (signed) and local address (xxh3) all
        match. Nothing is unpickled here, and nothing unchecked is ever in the
        local store.
        """
        todo = [b for b in entry.blobs if not blob_path(b.local).exists()]
        try:
            if len(todo) == 1:
                self._download_blob(todo[0], blob_path(todo[0].local), temp_name)
                return
            futures = [self.pool.submit(self._download_blob, b, blob_path(b.local), temp_name) for b in todo]
            errors = [f.exception() for f in futures]
            for error in errors:
                if error is not None:
                    raise error
        except _BadRemoteBlob as exc:
            # Say which object is bad and who can mend it: a bad blob keeps every reader out until it is replaced.
            raise EntryCorrupt(
                f"{exc}. Delete {self.url.rstrip('/')}/{PREFIX}/blobs/sha256/{exc.sha256[:2]}/{exc.sha256} from the remote "
                f"(anyone with write access), or ask the signer {entry.signer} to run `cellcache push`, which replaces it; "
                "`cellcache remote verify --repair` removes it too"
            ) from None

    def _download_blob(self, blob: RemoteBlob, target: Path, temp_name: Callable[[str], str] | None = None) -> None:
        path = self.blob_path(blob.sha256)
        target.parent.mkdir(parents=True, exist_ok=True)
        # Named after its writer where the local store can say who that is: a kill -9 mid-fetch is then reclaimed at once.
        tmp = target.parent / ("." + temp_name(".part") if temp_name else f".{target.name}.{uuid.uuid4().hex[:8]}.part")
        sha, xxh = hashlib.sha256(), xxhash.xxh3_128()
        written = 0
        try:
            with open(tmp, "wb") as out:
                for chunk in self._read_parts(path, blob.size):
                    sha.update(chunk)
                    xxh.update(chunk)
                    out.write(chunk)
                    written += len(chunk)
            if written != blob.size:
                raise _BadRemoteBlob(blob.sha256, f"remote blob {blob.sha256[:12]} has {written} bytes, the signed manifest says {blob.size}")
            if sha.hexdigest() != blob.sha256:
                raise _BadRemoteBlob(blob.sha256, f"remote blob {blob.sha256[:12]} does not match its signed SHA-256 (tampered or damaged)")
            if xxh.hexdigest() != blob.local:
                raise _BadRemoteBlob(blob.sha256, f"remote blob {blob.sha256[:12]} does not match its local address")
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)

    def _read_parts(self, path: str, size: int) -> Iterator[bytes]:
        """The object's bytes in order; big objects come as concurrent ranged reads, hashed as they arrive.

        Only the signed size is read: bytes appended to the object are never looked at.
        """
        try:
            if size <= PART:
                yield self._cat_whole(path)
                return
            # One range per worker for big objects: fewer, larger requests suit servers that pay per
            # request (moto slices the whole object for each range); real S3 streams them in parallel alike.
            part = max(PART, -(-size // WORKERS))
            ends = list(range(0, size, part)) + [size]
            ranges = list(zip(ends[:-1], ends[1:]))
            pending: deque[Future[bytes]] = deque()
            ahead = WORKERS
            for start, end in ranges:
                pending.append(self.pool.submit(self.fs.cat_file, path, start=start, end=end))
                if len(pending) >= ahead:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        except FileNotFoundError:
            raise EntryCorrupt(f"remote blob {path.rsplit('/', 1)[-1][:12]} is missing (a manifest without its blobs)") from None
        except CacheError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise translate(exc, f"cannot read {path}") from exc

    # writing -------------------------------------------------------------

    def exists(self, path: str) -> bool:
        """Whether one object exists: a single HEAD on S3 (fsspec's exists() lists the prefix after a 404)."""
        try:
            if self.s3:
                bucket, key, _ = self.fs.split_path(path)
                try:
                    self.fs.call_s3("head_object", Bucket=bucket, Key=key)
                except FileNotFoundError:
                    return False
                return True
            return bool(self.fs.exists(path))
        except Exception as exc:  # noqa: BLE001
            raise translate(exc, f"cannot check {path}") from exc

    def write_once(self, path: str, source: Path | bytes | BinaryIO, check: bool = True) -> bool:
        """Create the object at ``path`` unless it exists; True if this call created it.

        The object appears whole or not at all: a conditional create
        (If-None-Match) and a multipart upload committed at the end on object
        stores, a temporary file and ``os.replace`` on a local path.
        ``check=False`` skips the existence check on S3, where the conditional
        create alone keeps the first writer's object (small objects only: a
        lost race re-sends the bytes).
        """
        try:
            if (check or not self.s3) and self.exists(path):
                return False
            if self.local_path:
                return self._write_local(path, source)
            return self._write_object(path, source)
        except CacheError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise translate(exc, f"cannot write {path}") from exc

    def _write_local(self, path: str, source: Path | bytes | BinaryIO) -> bool:
        final = Path(self.fs._strip_protocol(path))
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.parent / f".{final.name}.{uuid.uuid4().hex[:8]}.tmp"
        try:
            with open(tmp, "wb") as out:
                for block in _blocks(source):
                    out.write(block)
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)
        return True

    def _write_object(self, path: str, source: Path | bytes | BinaryIO, create: bool = True) -> bool:
        s3 = self.s3
        size = _size(source)
        if s3 and size <= PART:
            # One conditional PUT (If-None-Match: *): a staged file would cost a multipart upload's three requests.
            data = b"".join(_blocks(source))
            try:
                if create:
                    self.fs.pipe_file(path, data, mode="create")
                else:
                    self.fs.pipe_file(path, data)  # one whole PUT replaces the object atomically
            except Exception as exc:  # noqa: BLE001
                if create and _is_precondition_failed(exc):
                    return False
                raise
            return True
        mode = "xb" if s3 and create else "wb"
        f = self.fs.open(path, mode, autocommit=False, block_size=PART) if s3 or _supports_transactions(self.fs) else None
        if f is None:
            # No transactions here (memory://): one whole put is all-or-nothing already.
            self.fs.pipe_file(path, b"".join(_blocks(source)))
            return True
        try:
            for block in _blocks(source):
                f.write(block)
            f.close()  # uploads the last part; with autocommit=False nothing is visible until commit()
            f.commit()
        except BaseException as exc:
            try:
                f.discard()
            except Exception:  # noqa: BLE001 - the upload is abandoned either way; the first error is the news
                pass
            if isinstance(exc, Exception) and _is_precondition_failed(exc):
                return False  # someone created it between our check and our commit: write-once held
            raise
        return True

    def ensure_format(self) -> None:
        self.write_once(f"{self.base}/FORMAT", FORMAT_TEXT)

    def push_entry(self, manifest: Manifest, notebook: str, local_blob: Callable[[str], Path]) -> bool:
        """Upload one local entry: blobs first, the signed manifest last, then the step pointer.

        Returns False if this signer's manifest for the key is already there.
        A push that dies part way leaves at most blobs no manifest names yet.
        """
        if self.signing_key is None:
            raise UntrustedEntry("this machine has no signing key; only signers push (see `cellcache keys generate`)")
        me = self.signing_key.public.id
        target = self.entry_path(manifest.key, me)
        wanted = list(dict.fromkeys([manifest.blob, *(o.blob for o in manifest.outs)]))
        if self.exists(target):
            if self._is_mine(target, manifest.key, me):
                # Already pushed; but a blob squatted since (garbage under its address) would keep every reader
                # out, and this signer owns the entry: check its blobs, and replace a bad one.
                list(self.pool.map(lambda d: self._push_blob(d, local_blob(d)), wanted))
                return False
            # Someone with write access planted an object under our name (a squat): readers refuse it,
            # and it must not keep our real entry out, so it is the one object we replace.
            self.remove(target)
        blobs = list(self.pool.map(lambda d: self._push_blob(d, local_blob(d)), wanted))
        body = signing.sign(manifest, tuple(blobs), self.signing_key, pushed=time.time())
        created = self.write_once(target, body, check=False)  # checked above
        self.write_once(self.pointer_path(notebook, manifest.step, manifest.key), canonical_json({"key": manifest.key}), check=False)
        return created

    def _is_mine(self, path: str, key: str, me: str) -> bool:
        raw = self._cat(path, MANIFEST_LIMIT)
        if raw is None:
            return False
        try:
            signing.open_envelope(raw, key=key, signer_id=me, trusted=frozenset({me}))
        except CacheError:
            return False
        return True

    def _push_blob(self, local: str, path: Path) -> RemoteBlob:
        from cellcache.store.atomic import NotRegularFile, open_regular

        sha = hashlib.sha256()
        try:
            # One descriptor for the hash and the upload: the bytes sent are the bytes hashed.
            fd, st = open_regular(path)
        except FileNotFoundError:
            raise EntryCorrupt(f"local blob {local} is missing; the entry cannot be pushed") from None
        except NotRegularFile as exc:
            raise EntryCorrupt(f"local blob {local} is {exc.what}; the entry cannot be pushed") from None
        with os.fdopen(fd, "rb") as f:
            while block := f.read(PART):
                sha.update(block)
            blob = RemoteBlob(local=local, sha256=sha.hexdigest(), size=st.st_size)
            remote_path = self.blob_path(blob.sha256)
            # A small blob skips the existence check: the conditional create keeps the first copy. A big
            # one is checked so it is sent once.
            f.seek(0)
            if self.write_once(remote_path, f, check=blob.size > PART):
                return blob
            # It was there already. Content addressing says nothing about who wrote it: a bucket writer can
            # put garbage under a valid address. Hash it; if it is not these bytes, this signer replaces it.
            if self.blob_problem(blob) is not None:
                f.seek(0)
                self.overwrite(remote_path, f)
        return blob

    def blob_problem(self, blob: RemoteBlob) -> str | None:
        """Why the remote copy of ``blob`` is not its bytes (hashed as it is read), or None if it is."""
        sha, size = hashlib.sha256(), 0
        try:
            for chunk in self._read_parts(self.blob_path(blob.sha256), blob.size):
                sha.update(chunk)
                size += len(chunk)
        except EntryCorrupt as exc:
            return str(exc)
        if size != blob.size or sha.hexdigest() != blob.sha256:
            return f"blob {blob.sha256[:12]} does not match its signed SHA-256 or size"
        return None

    def overwrite(self, path: str, source: Path | bytes | BinaryIO) -> None:
        """Replace the object at ``path`` whole (a bad blob, by the signer of an entry naming it)."""
        try:
            if self.local_path:
                self._write_local(path, source)
            else:
                self._write_object(path, source, create=False)
        except CacheError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise translate(exc, f"cannot replace {path}") from exc

    # listing (commands only, never the hit path) -------------------------

    def step_keys(self, notebook: str, step: str) -> list[tuple[str, float]]:
        """(key, time it was pushed) for one step's pointers, newest first."""
        try:
            listed = self.fs.ls(self.step_dir(notebook, step), detail=True)
        except FileNotFoundError:
            return []
        except Exception as exc:  # noqa: BLE001
            raise translate(exc, "cannot list a step") from exc
        rows = [(p["name"].rstrip("/").rsplit("/", 1)[-1], _mtime(p)) for p in listed if p.get("type") != "directory"]
        return sorted(rows, key=lambda r: r[1], reverse=True)

    def notebook_steps(self, notebook: str) -> list[str]:
        return self._ls_names(f"{self.base}/steps/{notebook or NO_NOTEBOOK}")

    def walk(self, folder: str) -> list[dict[str, Any]]:
        """Every object under one of the layout's folders, with size and modification time (for status, verify, gc)."""
        try:
            found = self.fs.find(f"{self.base}/{folder}", detail=True)
        except FileNotFoundError:
            return []
        except Exception as exc:  # noqa: BLE001
            raise translate(exc, f"cannot list {folder}") from exc
        return [
            {"path": name, "size": int(info.get("size") or 0), "mtime": _mtime(info)}
            for name, info in sorted(found.items())
            if info.get("type") != "directory" and not name.rsplit("/", 1)[-1].startswith(".")
        ]

    def remove(self, path: str) -> None:
        try:
            self.fs.rm_file(path)
        except FileNotFoundError:
            pass
        except Exception as exc:  # noqa: BLE001
            raise translate(exc, f"cannot delete {path}") from exc


class _BadRemoteBlob(EntryCorrupt):
    """A fetched blob that is not what the signed manifest says; ``download`` adds what to do about it."""

    def __init__(self, sha256: str, message: str) -> None:
        super().__init__(message)
        self.sha256 = sha256


def _blocks(source: Path | bytes | BinaryIO) -> Iterator[bytes]:
    if isinstance(source, bytes):
        yield source
        return
    if isinstance(source, Path):
        with open(source, "rb") as f:
            yield from _blocks(f)
        return
    while block := source.read(PART):
        yield block


def _size(source: Path | bytes | BinaryIO) -> int:
    if isinstance(source, bytes):
        return len(source)
    if isinstance(source, Path):
        return source.stat().st_size
    return os.fstat(source.fileno()).st_size - source.tell()


def _protocols(fs: Any) -> tuple[str, ...]:
    protocol = fs.protocol
    return (protocol,) if isinstance(protocol, str) else tuple(protocol)


def _supports_transactions(fs: Any) -> bool:
    # fsspec's buffered files (gcsfs, adlfs, ...) take autocommit=False; the memory filesystem does not stage.
    return "memory" not in _protocols(fs)


def _is_hex64(text: str) -> bool:
    return len(text) == 64 and all(c in "0123456789abcdef" for c in text)


def _mtime(info: dict[str, Any]) -> float:
    for field in ("LastModified", "mtime", "updated", "created"):
        value = info.get(field)
        if value is None:
            continue
        if hasattr(value, "timestamp"):
            return float(value.timestamp())
        try:
            return float(value)
        except (TypeError, ValueError):
            try:
                from datetime import datetime

                return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
            except ValueError:
                continue
    return 0.0
