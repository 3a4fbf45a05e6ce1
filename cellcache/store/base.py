"""The one interface the runner sees: where entries live (the *place* axis).

The local store, the remote store and the tiered store that composes them
implement it; the runner never knows which one answered. How a value becomes
bytes (the *format* axis, joblib or pickle) is ``cellcache.store.format``'s
business, not a store's.

A step is identified by its notebook and its name (:class:`StepRef`). Neither
is part of the key: two notebooks with the same cell share entries, and only
the bookkeeping (runs, stats, explanations, invalidation) is per step.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

if TYPE_CHECKING:
    from cellcache.store.format import BlobInfo
    from cellcache.store.index import StepStats
    from cellcache.store.manifest import Manifest, OutFile

LOCAL = "local"
REMOTE = "remote"


@dataclass(frozen=True)
class StepRef:
    """A step: the notebook's path relative to the project root (posix), and the step's name.

    ``notebook`` is ``""`` for a plain IPython session, which is its own scope.
    """

    notebook: str
    name: str

    def __str__(self) -> str:
        return f"{self.notebook}:{self.name}" if self.notebook else self.name


@dataclass(frozen=True)
class Found:
    """One candidate entry for a key, as a store yields it.

    A rejected entry (unsigned, untrusted, tampered, malformed, unreachable)
    has ``manifest=None`` and a one-line ``problem``; the runner turns the
    problems of one cell into at most one ``CacheWarning``.
    """

    manifest: Manifest | None
    source: str = LOCAL  # LOCAL or REMOTE: where this candidate came from
    problem: str | None = None


@dataclass(frozen=True)
class RunRecord:
    """One run of a step, as the ledger counts it: hit, miss, error; its time, the time saved, and why."""

    step: StepRef
    key: str | None
    status: str
    seconds: float
    saved: float
    reason: str
    source: str = LOCAL  # LOCAL or REMOTE: where a hit's entry came from


class Store(ABC):
    """Where entries live: what the runner needs to look an entry up, load it, and store one (storage only)."""

    root: Path  # the local folder behind this store (the tiered store's is its local tier's)

    # lookup and load --------------------------------------------------------

    @abstractmethod
    def candidates(self, key: str) -> Iterator[Found]:
        """The entries stored under ``key``, best first, lazily.

        Lazy on purpose: the tiered store yields its local candidates first and
        only touches the network if the runner asks for more, so a local hit
        never costs a round trip. One key may hold several entries that differ
        only in their implicit files. Never raises for a bad entry: it is
        yielded with its problem.
        """

    @abstractmethod
    def load(self, manifest: Manifest) -> Any:
        """The entry's bundle. Content is checked before anything is unpickled; raises EntryCorrupt."""

    @abstractmethod
    def restore_file(self, out: OutFile, target: Path, cache: Any = None) -> bool:
        """Write an ``--outs`` file back where it is missing or differs; return whether it was written."""

    @abstractmethod
    def exists(self) -> bool:
        """Whether the store holds anything yet (a store is made by its first write, never by a read)."""

    # writing ----------------------------------------------------------------

    @abstractmethod
    def put_blob(self, value: Any) -> BlobInfo:
        """Serialize ``value`` into a content-addressed blob."""

    @abstractmethod
    def put_file_blob(self, source: Path) -> tuple[str, int]:
        """Store a file's bytes as a content-addressed blob: (digest, size)."""

    @abstractmethod
    def commit(self, manifest: Manifest) -> None:
        """Publish an entry whose blobs are complete. The manifest is the commit point."""

    @abstractmethod
    def drop_entry(self, key: str, variant: str) -> int:
        """Drop one entry, under the lock every removal takes; return bytes freed."""

    def writing(self) -> AbstractContextManager[Any]:
        """Held from a blob's put through its commit, so no sweep removes the blob in between."""
        return nullcontext()


class Ledger(ABC):
    """The bookkeeping beside the entries (the SQLite index): runs, steps, stats, explanations.

    A cache of the manifests, never their truth: it can always be rebuilt from them.
    """

    @abstractmethod
    def record_run(self, run: RunRecord) -> None:
        """Count one run of a step. Never blocks a hit behind another writer."""

    @abstractmethod
    def step_rows(self) -> list[StepStats]:
        """One row per step: runs, hits, time saved, entries and bytes, the last reason."""

    @abstractmethod
    def last_manifest(self, step: StepRef) -> Manifest | None:
        """The step's most recent entry, for explaining a miss (same notebook's step only)."""

    @abstractmethod
    def invalidated_at(self, step: StepRef) -> float | None:
        """When the step was last invalidated, if it was."""
