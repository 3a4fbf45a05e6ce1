"""Write-behind: a miss stores its outputs on a background thread while the user goes on.

The digests of the outputs are taken when the cell ends, on the user's
thread. The blob is then written behind, read back (checked, mapped) and
fingerprinted again: the manifest is committed only if what was written is
what the cell produced. A later cell that mutates an output before or while
it is written can therefore never be stored under this key.

Small bundles are written at once: below ``BEHIND_AT`` the thread hand-off
and the read-back cost more than the write they would hide, and a small
write leaves no window for a mutation.

Outputs of at least ``snapshot.FORK_AT`` bytes of plain memory skip the
digests on the user's thread: the cell's end is a fork, whose child is the
snapshot that writes them (see ``snapshot``).

Memory stays bounded without copying anything: the queue holds references
to the outputs, and a miss whose outputs would take the queue over
``LIMIT`` bytes waits for the writer first. (A forked snapshot copies only
the pages the user writes while it waits, once, for the user.)
"""
from __future__ import annotations

import atexit
import errno
import pickle
import sys
import threading
from collections import deque
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterator

from cellcache.errors import CacheError, Unfingerprintable
from cellcache.fingerprint import fingerprint
from cellcache.store import format as fmt
from cellcache.store import snapshot
from cellcache.store.manifest import Manifest

BEHIND_AT = 1 << 20  # bundles of at least this many bytes (estimated) are written behind
LIMIT = 1 << 30  # queued outputs beyond this make the next miss wait


@dataclass(frozen=True)
class Pending:
    """One entry waiting to be written: its manifest without a blob yet, and what goes into the blob."""

    manifest: Manifest
    values: dict[str, Any]
    record: dict[str, Any]
    digests: dict[str, str] | None  # fingerprints of the outputs when the cell ended
    nbytes: int
    forks: bool = False  # written by a forked snapshot of the process, which takes the digests itself
    also: tuple[Manifest, ...] = ()  # more keys for the same bundle: committed with the same blob
    child: snapshot.Child | None = None  # that snapshot, once forked

    @property
    def keys(self) -> list[str]:
        return [m.key for m in (self.manifest, *self.also)]

    def bundle(self) -> dict[str, Any]:
        # The digests travel with the blob: a hit knows its outputs' fingerprints without hashing them.
        # Without digests (a small entry, written at once) the bundle is the same bytes as any equal one.
        if self.digests is None:
            return {"ns": self.values, "record": self.record}
        return {"ns": self.values, "record": self.record, "digests": self.digests}


def approx_nbytes(value: Any, depth: int = 2) -> int:
    """A cheap estimate of what a value will take in a blob: buffers counted, containers skimmed."""
    nbytes = getattr(value, "nbytes", None)
    if isinstance(nbytes, int):
        return nbytes  # numpy, pyarrow
    memory_usage = getattr(value, "memory_usage", None)
    if callable(memory_usage) and type(value).__module__.startswith("pandas"):
        try:
            used = memory_usage(index=True, deep=False)
            return int(used.sum()) if hasattr(used, "sum") else int(used)
        except Exception:  # noqa: BLE001 - an estimate, never a failure
            pass
    size = sys.getsizeof(value, 64)
    if depth and isinstance(value, (list, tuple, dict)):
        items = value.values() if isinstance(value, dict) else value
        sample = [approx_nbytes(v, depth - 1) for _, v in zip(range(64), items)]
        if sample:
            size += sum(sample) * len(value) // len(sample)
    return size


def prepare(
    manifest: Manifest, values: dict[str, Any], record: dict[str, Any], fork: bool = False, also: tuple[Manifest, ...] = ()
) -> Pending:
    """The entry as the cell ends: sized, and fingerprinted if it goes behind on the thread route.

    With ``fork``, outputs a snapshot can write (``snapshot.forkable``) are left unhashed: ``store_entry`` forks.
    """
    nbytes = sum(approx_nbytes(v) for v in values.values())
    forks = nbytes >= BEHIND_AT and fork and snapshot.forkable(values, nbytes)
    digests = output_digests(values) if nbytes >= BEHIND_AT and not forks else None
    return Pending(manifest, values, record, digests, nbytes, forks=forks, also=also)


def output_digests(values: dict[str, Any]) -> dict[str, str] | None:
    """The outputs' fingerprints now, or None if one has none (then the entry is written at once)."""
    try:
        return {name: fingerprint(value).hex() for name, value in values.items()}
    except Unfingerprintable:
        return None


class WriteFailed(Exception):
    """An entry written behind was not stored; the message says why (for the next cell's warning)."""

    def __init__(self, message: str, why: str = "") -> None:
        super().__init__(message)
        self.why = why or message


class Writer:
    """One background thread per session, writing entries in the order their cells ended."""

    def __init__(self, limit: int = LIMIT) -> None:
        self.limit = limit
        self._queue: deque[tuple[Any, Pending]] = deque()
        self._queued_bytes = 0
        self._busy: Pending | None = None
        self._keys: dict[str, int] = {}
        self._failures: list[str] = []
        self._cond = threading.Condition()
        self._open = threading.Event()
        self._open.set()
        self._thread: threading.Thread | None = None
        atexit.register(self.flush)  # kernel shutdown: pending entries are written before the process ends

    # the user's side ---------------------------------------------------------

    def submit(self, store: Any, entry: Pending) -> None:
        with self._cond:
            # Bounded memory: wait until the queue can take this entry (an empty queue always can).
            self._cond.wait_for(lambda: self._queued_bytes == 0 or self._queued_bytes + entry.nbytes <= self.limit)
            self._queue.append((store, entry))
            self._queued_bytes += entry.nbytes
            for key in entry.keys:
                self._keys[key] = self._keys.get(key, 0) + 1
            if self._thread is None or not self._thread.is_alive():
                # A daemon, so a stuck disk can't hang the interpreter; atexit flushes before daemons stop.
                self._thread = threading.Thread(target=self._work, name="cellcache-writer", daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def pending(self, key: str) -> bool:
        with self._cond:
            return key in self._keys

    def wait_for(self, key: str) -> None:
        """Block until no entry for ``key`` is waiting, so a re-run cell finds what its last run stored."""
        with self._cond:
            self._cond.wait_for(lambda: key not in self._keys)

    def flush(self) -> None:
        """Wait until every queued entry is written (or has failed)."""
        with self._cond:
            self._cond.wait_for(lambda: not self._queue and self._busy is None)

    def take_failures(self) -> list[str]:
        with self._cond:
            failures, self._failures = self._failures, []
        return failures

    @contextmanager
    def hold(self) -> Iterator[None]:
        """Keep the writer from starting a new entry while the block runs (tests: a mutation in the window)."""
        self._open.clear()
        try:
            yield
        finally:
            self._open.set()

    # the writer's side -------------------------------------------------------

    def _work(self) -> None:
        while True:
            self._open.wait()
            with self._cond:
                if not self._queue:
                    self._cond.wait(timeout=5.0)
                    if not self._queue:
                        self._thread = None
                        return
                    continue
                store, entry = self._queue.popleft()
                self._busy = entry
            try:
                write(store, entry)
            except WriteFailed as exc:
                with self._cond:
                    self._failures.append(str(exc))
            except Exception as exc:  # noqa: BLE001 - whatever broke, the user hears of it at the next cell
                with self._cond:
                    self._failures.append(f"step {entry.manifest.step!r} was not stored: {type(exc).__name__}: {exc}")
            finally:
                with self._cond:
                    self._busy = None
                    self._queued_bytes -= entry.nbytes
                    for key in entry.keys:
                        self._keys[key] -= 1
                        if not self._keys[key]:
                            del self._keys[key]
                    self._cond.notify_all()


def _not_stored(entry: Pending, why: str) -> WriteFailed:
    return WriteFailed(f"cellcache: step {entry.manifest.step!r} was not stored: {why}. Its results are in the namespace as usual.", why)


def _holding(store: Any) -> AbstractContextManager[Any]:
    """The local store's shared lock, held from a blob's put through its commit: no gc sweeps in between.

    A forked snapshot puts its blob in the child, maybe before the writer thread gets
    here; what it put is claimed in the store's writer registry, which a sweep also respects.
    """
    writing = getattr(getattr(store, "local", store), "writing", None)
    return writing() if callable(writing) else nullcontext()


def write(store: Any, entry: Pending) -> None:
    """Write one entry's blob, check it against the digests taken at the cell's end, then commit."""
    with _holding(store):
        if entry.child is not None:
            answer = snapshot.wait(entry.child)
            if "failed" in answer:
                raise _not_stored(entry, str(answer["failed"]))
            blob = fmt.BlobInfo(str(answer["digest"]), int(answer["size"]), str(answer["loader"]), tuple(map(str, answer["chunks"])))
        else:
            blob = _written_blob(store, entry)
        _commit(store, entry, blob)


def _snapshot_work(store: Any, entry: Pending) -> Callable[[], dict[str, Any]]:
    """What the forked snapshot does: the thread route's write, with digests taken from the snapshot itself."""

    def work() -> dict[str, Any]:
        local = getattr(store, "local", store)  # only the local disk: a remote's event loop thread is not in the child
        try:
            blob = _written_blob(local, replace(entry, digests=output_digests(entry.values)))
        except WriteFailed as exc:
            return {"failed": exc.why}
        return {"digest": blob.digest, "size": blob.size, "loader": blob.loader, "chunks": list(blob.chunks)}

    return work


PLACEHOLDERS = "placeholders"  # in a record: outputs that could not be stored -> why


def _put(store: Any, entry: Pending) -> tuple[fmt.BlobInfo, Pending]:
    """Put the entry's blob; outputs that can't be pickled become placeholders, and the rest is stored.

    One output that can't be stored (an axes holding a local class, a fit result whose pickling
    raises) must not cost the cell its whole entry: the others come back on a hit, and the runner
    rebuilds a placeholder by running the step again, only if a later cell uses it.
    """
    try:
        return store.put_blob(entry.bundle()), entry
    except Exception as exc:
        bad = {} if storage_reason(exc) is not None else fmt.unpicklable(entry.values)
        if not bad:
            raise _not_stored(entry, put_failure(entry.values, exc)) from exc
    kept = {name: value for name, value in entry.values.items() if name not in bad}
    record = {**entry.record, PLACEHOLDERS: {name: f"{type(why).__name__}: {why}" for name, why in bad.items()}}
    digests = None if entry.digests is None else {n: d for n, d in entry.digests.items() if n in kept}
    entry = replace(entry, values=kept, record=record, digests=digests)
    try:
        return store.put_blob(entry.bundle()), entry
    except Exception as exc:
        raise _not_stored(entry, put_failure(entry.values, exc)) from exc


def _written_blob(store: Any, entry: Pending) -> fmt.BlobInfo:
    """Put the entry's blob and read it back: it must hold what the digests say the cell produced."""
    blob, entry = _put(store, entry)
    written = store.load(entry.manifest.with_blob(blob))["ns"]
    for name, digest in (entry.digests or {}).items():
        try:
            same = fingerprint(written[name]).hex() == digest
        except (KeyError, Unfingerprintable):
            same = False
        if not same:
            raise _not_stored(
                entry,
                f"output `{name}` changed between the end of the cell and its write "
                "(a later cell mutated it, or it does not come back as it was)",
            )
    del written
    return blob


def _commit(store: Any, entry: Pending, blob: fmt.BlobInfo) -> None:
    try:
        for manifest in (entry.manifest, *entry.also):
            store.commit(manifest.with_blob(blob))
    except Exception as exc:  # noqa: BLE001 - disk full, read-only, locked index: all mean "not stored"
        raise _not_stored(entry, storage_reason(exc) or f"the store could not be written ({type(exc).__name__}: {exc})") from exc


def storage_reason(exc: BaseException) -> str | None:
    """What went wrong with the store itself, in words that name it; None if the store was not the cause."""
    if isinstance(exc, CacheError):
        return str(exc)  # StoreUnavailable and its kin already say what happened ("the store path ... is a file")
    if not isinstance(exc, OSError):
        return None
    named = {
        errno.EROFS: "the store is on a read-only filesystem",
        errno.ENOSPC: "the disk holding the store is full",
        errno.EDQUOT: "the disk quota for the store is exhausted",
        errno.EACCES: "no permission to write in the store",
        errno.EPERM: "no permission to write in the store",
        errno.ENOTDIR: "a part of the store path is a file, not a folder",
    }.get(exc.errno or 0)
    # The system's own words stay in the message: they name the file, and users search for them.
    return f"the store could not be written: {named} ({exc})" if named else f"the store could not be written ({exc})"


def put_failure(values: dict[str, Any], exc: Exception) -> str:
    """Why a blob could not be put: the store's trouble, or the value's (only then about pickling)."""
    return storage_reason(exc) or unpicklable_reason(values, exc)


def unpicklable_reason(values: dict[str, Any], exc: Exception) -> str:
    culprit = fmt.first_unpicklable(values)
    if culprit is None:
        if isinstance(exc, (pickle.PicklingError, TypeError, AttributeError, RecursionError)):
            return f"the outputs could not be pickled ({type(exc).__name__}: {exc})"
        return f"the outputs could not be written ({type(exc).__name__}: {exc})"
    name, cause = culprit
    return f"output `{name}` can't be pickled ({type(cause).__name__}: {cause}); add `--ignore {name}` to leave it out of the cache"


def store_entry(writer: Writer, store: Any, entry: Pending, warn: Callable[[str], None]) -> None:
    """Write ``entry`` behind if it is big and its outputs have digests or a snapshot; otherwise now, warning at once."""
    # The pickler's modules, imported here on the user's thread: at interpreter exit a writer thread could not
    # (importing joblib registers a threading atexit hook, refused once shutdown began), nor can a forked child.
    fmt._joblib()
    if entry.forks:
        child = snapshot.fork(_snapshot_work(store, entry))
        # A fork the system refused: the digests now, on the thread route.
        entry = replace(entry, child=child) if child is not None else replace(entry, digests=output_digests(entry.values))
    if entry.nbytes >= BEHIND_AT and (entry.digests is not None or entry.child is not None):
        try:
            writer.submit(store, entry)  # may wait for room in the queue, and be interrupted there
        except BaseException:
            if entry.child is not None:
                snapshot.abandon(entry.child)
            raise
        return
    with _holding(store):
        try:
            blob, entry = _put(store, entry)
        except WriteFailed as exc:
            warn(str(exc))
            return
        try:
            _commit(store, entry, blob)
        except WriteFailed as exc:
            warn(str(exc))
