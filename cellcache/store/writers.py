"""Who is writing in a store: one lock file per writing process, held while it lives.

A ``kill -9`` leaves temporary files and blobs that no manifest names. Their
age says nothing about whether their writer is alive (a 300 MB save takes a
while), so gc asks the writer instead::

    writers/<id>.lock      flock'ed (exclusive) by its process for as long as it lives;
                           ``+<digest>`` per blob it put, ``-<digest>`` once an entry naming it is committed

Temporary files carry the id in their name (``<id>~<random>.tmp``). gc, under
the store's exclusive lock, tries each lock file: if it gets the lock, its
process is dead, and that writer's temporary files and unclaimed blobs are
reclaimed at once; if not, what it claimed is kept. The kernel releases a
flock when its process dies however it dies, so there is no pid to reuse and
no clock to trust.

A forked snapshot inherits the descriptor, so the lock stays held while
either process lives.
"""
from __future__ import annotations

import fcntl
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

from cellcache.store.atomic import NotRegularFile, open_regular, read_fd

FOLDER = "writers"
SEP = "~"  # between a writer's id and the rest of a temporary file's name
CLAIMS_LIMIT = 64 << 20  # a lock file is read up to this much: a process that puts more blobs than that is not a case


_HELD: set[int] = set()  # this process's registration descriptors, which a forked snapshot keeps open


def held_fds() -> tuple[int, ...]:
    return tuple(_HELD)


def tagged(name: str) -> str | None:
    """The writer id a temporary file's name carries, or None for an untagged one (an older release's)."""
    head, sep, _ = name.lstrip(".").partition(SEP)
    return head if sep and head else None


class Writer:
    """This process's registration in one store, made on its first write."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._fd: int | None = None
        self._pid = 0
        self.id = ""

    def _register(self) -> None:
        if self._fd is not None and self._pid == os.getpid():
            return
        # A forked child keeps its parent's registration: the shared descriptor holds the same lock.
        if self._fd is not None:
            return
        folder = self.root / FOLDER
        folder.mkdir(parents=True, exist_ok=True)
        ident = f"{os.getpid()}-{uuid.uuid4().hex[:10]}"
        # Locked under a name gc ignores, then renamed: gc never sees a lock file nobody holds yet.
        tmp = folder / f".{ident}.new"
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_APPEND | getattr(os, "O_CLOEXEC", 0), 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.replace(tmp, folder / f"{ident}.lock")
        except BaseException:
            os.close(fd)
            tmp.unlink(missing_ok=True)
            raise
        self._fd, self._pid, self.id = fd, os.getpid(), ident
        _HELD.add(fd)

    def close(self) -> None:
        """Withdraw the registration (the process is done writing here): what it still owned is a dead writer's."""
        if self._fd is None:
            return
        if self._pid == os.getpid():
            (self.root / FOLDER / f"{self.id}.lock").unlink(missing_ok=True)
        _HELD.discard(self._fd)
        os.close(self._fd)
        self._fd = None

    def temp_name(self, suffix: str = ".tmp") -> str:
        """A temporary file's name that says this process owns it."""
        self._register()
        return f"{self.id}{SEP}{uuid.uuid4().hex[:12]}{suffix}"

    def claim(self, digest: str) -> None:
        """Record a blob about to appear, before it appears: gc keeps it while this process lives, until released."""
        self._register()
        assert self._fd is not None
        os.write(self._fd, f"+{digest}\n".encode())

    def release(self, digests: list[str]) -> None:
        """The blobs are named by a committed manifest now (or given up): the manifest protects them, or nothing does."""
        if self._fd is None or not digests:
            return
        try:
            os.write(self._fd, "".join(f"-{d}\n" for d in digests).encode())
        except OSError:
            pass  # a claim left behind only keeps a blob until this process ends


@dataclass(frozen=True)
class Census:
    """The writers of a store as gc finds them (taken under the store's exclusive lock)."""

    live: frozenset[str]  # ids whose process still holds its lock
    dead: tuple[Path, ...]  # lock files of processes that are gone
    claimed: frozenset[str]  # blobs the live writers put (committed or not)

    def owner_alive(self, name: str) -> bool | None:
        """Whether a temporary file's writer lives; None if its name carries no writer."""
        ident = tagged(name)
        return None if ident is None else ident in self.live


def census(root: Path) -> Census:
    folder = Path(root) / FOLDER
    live: set[str] = set()
    dead: list[Path] = []
    claimed: set[str] = set()
    try:
        names = sorted(os.listdir(folder))
    except (FileNotFoundError, NotADirectoryError):
        names = []
    for name in names:
        if not name.endswith(".lock") or name.startswith("."):
            continue
        path = folder / name
        try:
            fd, _ = open_regular(path)
        except (FileNotFoundError, NotRegularFile):
            continue
        except OSError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                live.add(name[: -len(".lock")])
                claimed.update(_held_claims(read_fd(fd, CLAIMS_LIMIT)))
                continue
            dead.append(path)  # nobody holds it: its process is gone
        finally:
            os.close(fd)
    return Census(frozenset(live), tuple(dead), frozenset(claimed))


def _held_claims(log: bytes) -> set[str]:
    counts: dict[str, int] = {}
    for line in log.decode("ascii", "replace").split():
        sign, digest = line[:1], line[1:]
        if sign == "+":
            counts[digest] = counts.get(digest, 0) + 1
        elif sign == "-" and counts.get(digest):
            counts[digest] -= 1
    return {d for d, n in counts.items() if n > 0}
