"""The SQLite index: entries, steps, runs and the file stat cache.

It is a fast view of the store, not the source of truth: manifests on disk
are. WAL mode lets several kernels (``cellcache run --jobs``) share it.
"""
from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

SCHEMA = """
CREATE TABLE IF NOT EXISTS entries(
    key TEXT PRIMARY KEY,
    step TEXT NOT NULL,
    created REAL NOT NULL,
    size INTEGER NOT NULL,
    seconds REAL NOT NULL,
    blob TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS entries_step ON entries(step);
CREATE TABLE IF NOT EXISTS entry_files(
    key TEXT NOT NULL,
    blob TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS entry_files_key ON entry_files(key);
CREATE INDEX IF NOT EXISTS entry_files_blob ON entry_files(blob);
CREATE TABLE IF NOT EXISTS steps(
    name TEXT PRIMARY KEY,
    last_key TEXT,
    invalidated_at REAL
);
CREATE TABLE IF NOT EXISTS runs(
    id INTEGER PRIMARY KEY,
    step TEXT NOT NULL,
    key TEXT,
    status TEXT NOT NULL,
    seconds REAL NOT NULL,
    saved REAL NOT NULL,
    at REAL NOT NULL,
    reason TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_step ON runs(step, id);
CREATE INDEX IF NOT EXISTS runs_key ON runs(key, at);
-- Covering indexes: the statistics read these instead of every wide row (500 steps, 100k runs: 265 -> 35 ms).
CREATE INDEX IF NOT EXISTS runs_stats ON runs(step, status, saved);
CREATE INDEX IF NOT EXISTS entries_step_size ON entries(step, size);
CREATE TABLE IF NOT EXISTS stat_cache(
    path TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    inode INTEGER NOT NULL,
    digest TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class EntryRow:
    key: str
    step: str
    created: float
    size: int
    seconds: float
    blob: str
    last_used: float = 0.0  # the latest hit, or creation; derived from runs, not stored


@dataclass(frozen=True)
class StepStats:
    """Aggregated history of one step, as the panel and ``stats`` show it."""

    name: str
    runs: int
    hits: int
    misses: int
    saved_seconds: float
    last_seconds: float | None
    last_run_at: float | None
    last_status: str | None
    last_miss_reason: str | None
    entries: int
    size_bytes: int

    @property
    def hit_rate(self) -> float | None:
        looked_up = self.hits + self.misses
        return self.hits / looked_up if looked_up else None


class Index:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        # executescript manages its own transaction; every statement in it is idempotent.
        self.db.executescript(SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        # NORMAL is durable across application crashes in WAL mode and skips an fsync per commit.
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA busy_timeout=30000")
        return db

    @property
    def db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = self._local.db = self._connect()
        return db

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

    class _Tx:
        def __init__(self, db: sqlite3.Connection) -> None:
            self.db = db

        def __enter__(self) -> sqlite3.Connection:
            self.db.execute("BEGIN IMMEDIATE")
            return self.db

        def __exit__(self, exc_type: object, *_: object) -> None:
            self.db.execute("ROLLBACK" if exc_type else "COMMIT")

    def _tx(self) -> Index._Tx:
        return Index._Tx(self.db)

    # entries ---------------------------------------------------------------

    def add_entry(self, row: EntryRow, file_blobs: Iterable[str] = ()) -> None:
        """Record an entry, and the --outs blobs it uses (so they are kept while it exists)."""
        with self._tx() as db:
            db.execute("DELETE FROM entry_files WHERE key=?", (row.key,))
            db.executemany("INSERT INTO entry_files(key, blob) VALUES (?, ?)", [(row.key, b) for b in set(file_blobs)])
            db.execute(
                "INSERT OR REPLACE INTO entries(key, step, created, size, seconds, blob) VALUES (?,?,?,?,?,?)",
                (row.key, row.step, row.created, row.size, row.seconds, row.blob),
            )
            db.execute(
                "INSERT INTO steps(name, last_key) VALUES (?, ?) "
                "ON CONFLICT(name) DO UPDATE SET last_key=excluded.last_key",
                (row.step, row.key),
            )

    _ENTRY_COLUMNS = (
        "SELECT e.key, e.step, e.created, e.size, e.seconds, e.blob, "
        "MAX(e.created, COALESCE((SELECT MAX(r.at) FROM runs r WHERE r.key = e.key AND r.status = 'hit'), 0)) AS last_used "
        "FROM entries e"
    )

    def entry(self, key: str) -> EntryRow | None:
        found = self.db.execute(f"{self._ENTRY_COLUMNS} WHERE e.key=?", (key,)).fetchone()
        return EntryRow(*found) if found else None

    def entries(self, step: str | None = None) -> list[EntryRow]:
        if step is None:
            rows = self.db.execute(f"{self._ENTRY_COLUMNS} ORDER BY e.created").fetchall()
        else:
            rows = self.db.execute(f"{self._ENTRY_COLUMNS} WHERE e.step=? ORDER BY e.created", (step,)).fetchall()
        return [EntryRow(*r) for r in rows]

    def entries_by_last_use(self) -> Iterator[EntryRow]:
        for r in self.db.execute(f"{self._ENTRY_COLUMNS} ORDER BY last_used ASC"):
            yield EntryRow(*r)

    def drop_entries(self, keys: Iterable[str]) -> None:
        rows = [(k,) for k in keys]
        with self._tx() as db:
            db.executemany("DELETE FROM entries WHERE key=?", rows)
            db.executemany("DELETE FROM entry_files WHERE key=?", rows)

    def file_blobs(self, key: str) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT blob FROM entry_files WHERE key=?", (key,))]

    def blob_in_use(self, blob: str) -> bool:
        return (
            self.db.execute(
                "SELECT 1 FROM entries WHERE blob=? UNION ALL SELECT 1 FROM entry_files WHERE blob=? LIMIT 1", (blob, blob)
            ).fetchone()
            is not None
        )

    def total_size(self) -> int:
        return int(self.db.execute("SELECT COALESCE(SUM(size),0) FROM entries").fetchone()[0])

    # steps -----------------------------------------------------------------

    def last_key(self, step: str) -> str | None:
        found = self.db.execute("SELECT last_key FROM steps WHERE name=?", (step,)).fetchone()
        return found[0] if found else None

    def invalidated_at(self, step: str) -> float | None:
        found = self.db.execute("SELECT invalidated_at FROM steps WHERE name=?", (step,)).fetchone()
        return found[0] if found else None

    def mark_invalidated(self, step: str, at: float) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO steps(name, invalidated_at) VALUES (?, ?) "
                "ON CONFLICT(name) DO UPDATE SET invalidated_at=excluded.invalidated_at",
                (step, at),
            )

    def step_names(self) -> list[str]:
        rows = self.db.execute("SELECT name FROM steps UNION SELECT DISTINCT step FROM runs ORDER BY 1").fetchall()
        return [r[0] for r in rows]

    # runs ------------------------------------------------------------------

    def record_run(self, step: str, key: str | None, status: str, seconds: float, saved: float, reason: str) -> None:
        # One autocommitted statement: this is on every hit's path.
        self.db.execute(
            "INSERT INTO runs(step, key, status, seconds, saved, at, reason) VALUES (?,?,?,?,?,?,?)",
            (step, key, status, seconds, saved, time.time(), reason),
        )

    def step_rows(self) -> list[StepStats]:
        """One row per step, in a fixed number of queries however many runs there are."""
        runs = {
            r[0]: r[1:]
            for r in self.db.execute(
                "SELECT step, COUNT(*), SUM(status='hit'), SUM(status='miss'), SUM(saved), MAX(id) FROM runs GROUP BY step"
            )
        }
        last = {
            r[0]: r[1:]
            for r in self.db.execute(
                "SELECT r.step, r.seconds, r.at, r.status FROM runs r "
                "JOIN (SELECT step, MAX(id) AS id FROM runs GROUP BY step) m ON r.id = m.id"
            )
        }
        last_miss = {
            r[0]: r[1]
            for r in self.db.execute(
                "SELECT r.step, r.reason FROM runs r JOIN (SELECT step, MAX(id) AS id FROM runs "
                "WHERE status='miss' GROUP BY step) m ON r.id = m.id"
            )
        }
        stored = {
            r[0]: r[1:]
            for r in self.db.execute("SELECT step, COUNT(*), COALESCE(SUM(size),0) FROM entries GROUP BY step")
        }
        names = sorted(set(runs) | set(stored) | {r[0] for r in self.db.execute("SELECT name FROM steps")})
        rows = []
        for name in names:
            count, hits, misses, saved, _ = runs.get(name, (0, 0, 0, 0.0, None))
            last_seconds, last_at, last_status = last.get(name, (None, None, None))
            entries, size = stored.get(name, (0, 0))
            rows.append(
                StepStats(
                    name=name,
                    runs=count,
                    hits=int(hits or 0),
                    misses=int(misses or 0),
                    saved_seconds=float(saved or 0.0),
                    last_seconds=last_seconds,
                    last_run_at=last_at,
                    last_status=last_status,
                    last_miss_reason=last_miss.get(name),
                    entries=entries,
                    size_bytes=int(size),
                )
            )
        return rows

    # stat cache ------------------------------------------------------------

    def cached_digest(self, path: str, size: int, mtime_ns: int, inode: int) -> str | None:
        found = self.db.execute(
            "SELECT digest FROM stat_cache WHERE path=? AND size=? AND mtime_ns=? AND inode=?",
            (path, size, mtime_ns, inode),
        ).fetchone()
        return found[0] if found else None

    def remember_digest(self, path: str, size: int, mtime_ns: int, inode: int, digest: str) -> None:
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO stat_cache VALUES (?,?,?,?,?)", (path, size, mtime_ns, inode, digest))

    def clear(self) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM entries")
            db.execute("DELETE FROM entry_files")
            db.execute("UPDATE steps SET last_key=NULL")
