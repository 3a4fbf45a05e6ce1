"""The local store in front of the shared remote: read-through, and (``push = "auto"``) push-behind.

``candidates(key)`` yields the local candidates first and asks the remote
only if the runner wants more, so a local hit never touches the network. A
remote candidate is a signed manifest that verified; its blobs are fetched
only when the runner loads it (after its own freshness checks), checked
(size, SHA-256, local address) before they land in the local store, and the
entry is then committed locally: the next hit is local.

Faults cost the user one warning per session. A remote that is down, slow or
refuses our credentials is reported once, with what to check, and this
session then works locally only; a cell never waits more than the remote's
timeout for it. That warning is the one the stores are allowed to give
themselves (COORD contract 2): it is about the session, not about a cell.
"""
from __future__ import annotations

import atexit
import queue
import threading
from typing import Any, Callable, Iterator

from cellcache.errors import CacheError, RefusedRemoteEntry, RemoteDenied, RemoteUnavailable, warn
from cellcache.store.base import REMOTE, Found, Store
from cellcache.store.manifest import Manifest, OutFile
from cellcache.remote.bucket import RemoteStore
from cellcache.remote.signing import SignedEntry

PUSH_QUEUE = 64  # entries waiting for a background push; beyond that they wait for `cellcache push`
EXIT_GRACE = 10.0  # seconds the interpreter's exit waits for queued background pushes


class RemoteHealth:
    """Whether the remote is usable in this session, and whether the user has been told it is not."""

    def __init__(self) -> None:
        self.down: str | None = None
        self._lock = threading.Lock()

    def fail(self, exc: CacheError) -> None:
        with self._lock:
            if self.down is not None:
                return
            self.down = str(exc)
        if isinstance(exc, RemoteDenied):
            warn(
                f"cellcache: the remote store refused our credentials: {exc}. This is a configuration problem, "
                "not a cold cache: fix the credentials or `remote`. Working with the local store only this session."
            )
        else:
            warn(f"cellcache: the remote store is unavailable ({exc}); working with the local store only this session.")


class BackgroundPusher:
    """``push = "auto"``: push each stored miss from a daemon thread through a bounded queue.

    ``submit`` never blocks: when the queue is full the entry is left for the
    next ``cellcache push`` (counted in ``dropped``). The order (blobs, then
    the manifest) makes a push cut short by the kernel's exit harmless.
    """

    def __init__(self, push: Callable[[Manifest], Any], health: RemoteHealth, size: int = PUSH_QUEUE) -> None:
        self._push = push
        self._health = health
        self._queue: queue.Queue[Manifest] = queue.Queue(maxsize=size)
        self._thread: threading.Thread | None = None
        self.pushed = 0
        self.dropped = 0
        self.failed = 0
        # A kernel that exits right after a miss gives its push a few seconds; an unfinished one leaves
        # at most blobs no manifest names, and the entry waits for the next `cellcache push`.
        atexit.register(self.drain, EXIT_GRACE)

    def submit(self, manifest: Manifest) -> bool:
        if self._health.down is not None:
            self.dropped += 1
            return False
        try:
            self._queue.put_nowait(manifest)
        except queue.Full:
            self.dropped += 1
            return False
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="cellcache-push", daemon=True)
            self._thread.start()
        return True

    def _work(self) -> None:
        while True:
            manifest = self._queue.get()
            try:
                if self._health.down is None:
                    self._push(manifest)
                    self.pushed += 1
            except (RemoteUnavailable, RemoteDenied) as exc:
                self.failed += 1
                self._health.fail(exc)
            except Exception:  # noqa: BLE001 - one entry that cannot be pushed must not stop the others
                self.failed += 1
            finally:
                self._queue.task_done()

    def drain(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the queue to empty (tests, and the interpreter's exit)."""
        if self._thread is None:
            return True
        done = threading.Event()

        def wait() -> None:
            self._queue.join()
            done.set()

        threading.Thread(target=wait, daemon=True).start()
        return done.wait(timeout)


class TieredStore(Store):
    """``local`` first, then ``remote``; writes go to ``local`` (and to the remote only by push)."""

    def __init__(self, local: Store, remote: RemoteStore, *, auto_push: bool = False) -> None:
        self.local = local
        self.remote = remote
        self.root = local.root
        self.health = RemoteHealth()
        self._pending: dict[tuple[str, str, float], SignedEntry] = {}
        self.pusher = (
            BackgroundPusher(lambda m: self.remote.push_entry(m, getattr(m, "notebook", ""), self._blob_path), self.health)
            if auto_push and remote.signing_key is not None
            else None
        )

    # The ledger, gc, verify and the stat cache are the local store's own: callers ask it, not this.

    def exists(self) -> bool:
        return self.local.exists()

    def writing(self) -> Any:
        return self.local.writing()

    def drop_entry(self, key: str, variant: str) -> int:
        return self.local.drop_entry(key, variant)

    def _blob_path(self, digest: str) -> Any:
        return self.local.blob_path(digest)  # type: ignore[attr-defined]

    def _incoming(self, digest: str) -> Any:
        # Claimed before it lands: a local gc never takes a fetched blob for a dead writer's before its commit.
        incoming = getattr(self.local, "incoming", None)
        return incoming(digest) if incoming is not None else self._blob_path(digest)

    @staticmethod
    def _id(manifest: Manifest) -> tuple[str, str, float]:
        return (manifest.key, manifest.blob, manifest.created)

    # lookup and load --------------------------------------------------------

    def candidates(self, key: str) -> Iterator[Found]:
        yield from self.local.candidates(key)
        if self.health.down is not None:
            return
        try:
            fetched = self.remote.fetch(key)
        except (RemoteUnavailable, RemoteDenied) as exc:
            self.health.fail(exc)
            return
        if fetched.problems and self.remote.verify == "strict" and not fetched.entries:
            raise RefusedRemoteEntry(f"{fetched.problems[0]} (verify = \"strict\" refuses to run the cell past it)")
        for problem in fetched.problems:
            yield Found(None, REMOTE, problem)
        for entry in fetched.entries:
            self._pending[self._id(entry.manifest)] = entry
            yield Found(entry.manifest, REMOTE)

    def _materialize(self, manifest: Manifest) -> None:
        """A remote candidate becomes a local entry: checked blobs first, then the local manifest."""
        entry = self._pending.pop(self._id(manifest), None)
        if entry is None:
            return
        try:
            self.remote.download(entry, self._incoming, getattr(self.local, "temp_name", None))
        except (RemoteUnavailable, RemoteDenied) as exc:
            self.health.fail(exc)
            raise
        self.local.commit(entry.manifest)

    def load(self, manifest: Manifest) -> Any:
        self._materialize(manifest)
        return self.local.load(manifest)

    def restore_file(self, out: OutFile, target: Any, cache: Any = None) -> bool:
        self._materialize_for(out)
        return self.local.restore_file(out, target, cache)

    def _materialize_for(self, out: OutFile) -> None:
        for entry in list(self._pending.values()):
            if any(o.blob == out.blob for o in entry.manifest.outs):
                self._materialize(entry.manifest)
                return

    # writing ----------------------------------------------------------------

    def put_blob(self, value: Any) -> Any:
        return self.local.put_blob(value)

    def put_file_blob(self, source: Any) -> tuple[str, int]:
        return self.local.put_file_blob(source)

    def commit(self, manifest: Manifest) -> None:
        self.local.commit(manifest)
        if self.pusher is not None:
            self.pusher.submit(manifest)
