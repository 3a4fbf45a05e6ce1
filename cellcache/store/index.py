"""The SQLite index: entries, steps, runs and the file stat cache.

It is a cache of the manifests, not the source of truth: lookups go by
manifest, and the index can always be rebuilt from them (``LocalStore``
does, when it is missing, damaged or of an older schema). WAL mode lets
several kernels (``cellcache run --jobs``) share it.

Two promises shape this module:
- Opening it never surfaces "database is locked": the switch to WAL is
  retried with a backoff, because SQLite does not call the busy handler for it.
- The hit path never waits for a writer, nor for SQLite at all: statistics
  and "learned" rows are queued in memory and written by a thread of their
  own, with a busy timeout of a few milliseconds, retried with a backoff while
  another process holds the lock. Readers in this process (``stats``, the
  panel) flush the queue first, so they always see their own runs. A record
  that can't be queued is counted in ``dropped``.
"""
from __future__ import annotations

import atexit
import random
import sqlite3
import threading
import time
import weakref
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

SCHEMA_VERSION = 2  # PRAGMA user_version; an index of another version is rebuilt from the manifests

SCHEMA = """
CREATE TABLE IF NOT EXISTS entries(
    key TEXT NOT NULL,
    variant TEXT NOT NULL,
    notebook TEXT NOT NULL,
    step TEXT NOT NULL,
    created REAL NOT NULL,
    size INTEGER NOT NULL,
    seconds REAL NOT NULL,
    blob TEXT NOT NULL,
    PRIMARY KEY(key, variant)
);
CREATE INDEX IF NOT EXISTS entries_step ON entries(notebook, step);
-- Every blob an entry uses (its bundle and its --outs files), with the blob's size: gc counts a shared blob once.
CREATE TABLE IF NOT EXISTS entry_blobs(
    key TEXT NOT NULL,
    variant TEXT NOT NULL,
    blob TEXT NOT NULL,
    size INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS entry_blobs_entry ON entry_blobs(key, variant);
CREATE INDEX IF NOT EXISTS entry_blobs_blob ON entry_blobs(blob);
CREATE TABLE IF NOT EXISTS steps(
    notebook TEXT NOT NULL,
    name TEXT NOT NULL,
    last_key TEXT,
    last_variant TEXT,
    invalidated_at REAL,
    PRIMARY KEY(notebook, name)
);
CREATE TABLE IF NOT EXISTS runs(
    id INTEGER PRIMARY KEY,
    notebook TEXT NOT NULL,
    step TEXT NOT NULL,
    key TEXT,
    status TEXT NOT NULL,
    seconds REAL NOT NULL,
    saved REAL NOT NULL,
    at REAL NOT NULL,
    reason TEXT NOT NULL,
    source TEXT NOT NULL DEFAULT 'local'
);
CREATE INDEX IF NOT EXISTS runs_step ON runs(notebook, step, id);
CREATE INDEX IF NOT EXISTS runs_key ON runs(key, at);
-- Covering indexes: the statistics read these instead of every wide row (500 steps, 100k runs: 265 -> 35 ms).
CREATE INDEX IF NOT EXISTS runs_stats ON runs(notebook, step, status, saved);
CREATE INDEX IF NOT EXISTS entries_step_size ON entries(notebook, step, size);
-- Each step's run statistics, kept up to date by a trigger: `stats` and the panel read one row per step,
-- however many runs there are (100k runs: 240 ms of GROUP BY before, a few ms now).
CREATE TABLE IF NOT EXISTS run_totals(
    notebook TEXT NOT NULL,
    step TEXT NOT NULL,
    runs INTEGER NOT NULL,
    hits INTEGER NOT NULL,
    misses INTEGER NOT NULL,
    saved REAL NOT NULL,
    remote_hits INTEGER NOT NULL,
    hit_seconds REAL NOT NULL,
    miss_seconds REAL NOT NULL,
    last_id INTEGER NOT NULL,
    last_miss_id INTEGER,
    PRIMARY KEY(notebook, step)
);
CREATE TRIGGER IF NOT EXISTS runs_totals AFTER INSERT ON runs BEGIN
    INSERT INTO run_totals VALUES (
        NEW.notebook, NEW.step, 1, NEW.status = 'hit', NEW.status = 'miss', NEW.saved,
        NEW.status = 'hit' AND NEW.source != 'local',
        CASE WHEN NEW.status = 'hit' THEN NEW.seconds ELSE 0 END,
        CASE WHEN NEW.status = 'miss' THEN NEW.seconds ELSE 0 END,
        NEW.id, CASE WHEN NEW.status = 'miss' THEN NEW.id END)
    ON CONFLICT(notebook, step) DO UPDATE SET
        runs = runs + 1, hits = hits + excluded.hits, misses = misses + excluded.misses,
        saved = saved + excluded.saved, remote_hits = remote_hits + excluded.remote_hits,
        hit_seconds = hit_seconds + excluded.hit_seconds, miss_seconds = miss_seconds + excluded.miss_seconds,
        last_id = MAX(last_id, excluded.last_id), last_miss_id = COALESCE(excluded.last_miss_id, last_miss_id);
END;
CREATE TABLE IF NOT EXISTS stat_cache(
    path TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    inode INTEGER NOT NULL,
    digest TEXT NOT NULL
);
"""

# The same rows from the runs themselves: fills run_totals in an index made before it existed, and
# stands in for it in such an index opened read-only.
TOTALS_FROM_RUNS = """
SELECT notebook, step, COUNT(*) AS runs, SUM(status = 'hit') AS hits, SUM(status = 'miss') AS misses,
       SUM(saved) AS saved, SUM(status = 'hit' AND source != 'local') AS remote_hits,
       TOTAL(CASE WHEN status = 'hit' THEN seconds END) AS hit_seconds,
       TOTAL(CASE WHEN status = 'miss' THEN seconds END) AS miss_seconds,
       MAX(id) AS last_id, MAX(CASE WHEN status = 'miss' THEN id END) AS last_miss_id
FROM runs GROUP BY notebook, step
"""

# The steps auto mode ran (cellcache.cell.auto), so `stats` counts them apart. A table of its own, added in
# place to an index of this schema: no column of runs changes, and an index without it simply has none.
AUTO_STEPS = "CREATE TABLE IF NOT EXISTS auto_steps(notebook TEXT NOT NULL, step TEXT NOT NULL, PRIMARY KEY(notebook, step))"

BUSY_TIMEOUT_MS = 10_000  # commands and entry writes may wait this long for another writer
HIT_TIMEOUT_MS = 3  # the hit path's writes give up after this, and are queued
COMMIT_TIMEOUT_MS = 250  # a miss's index row, after its manifest is committed: queued if the index is busier
_QUEUE_LIMIT = 10_000


class IndexUnusable(Exception):
    """The index file can't be opened as an index (damaged, another schema, a read-only folder)."""


@dataclass(frozen=True)
class EntryRow:
    key: str
    step: str
    created: float
    size: int
    seconds: float
    blob: str
    last_used: float = 0.0  # the latest hit, or creation; derived from runs, not stored
    notebook: str = ""
    variant: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


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
    notebook: str = ""  # relative to the project root; "" for a plain IPython session
    remote_hits: int = 0
    hit_seconds: float | None = None  # mean time of a hit (restoring)
    run_seconds: float | None = None  # mean time of a miss (running)
    auto: bool = False  # run by auto mode, not by a %%cached line

    @property
    def slower_hit(self) -> str | None:
        """"restoring costs 99 ms, running 94 ms" where this step's hits cost more than its runs."""
        from cellcache.cell.reasons import slower_hit

        return slower_hit(self.hit_seconds, self.run_seconds) if self.hit_seconds is not None else None

    @property
    def hit_rate(self) -> float | None:
        looked_up = self.hits + self.misses
        return self.hits / looked_up if looked_up else None

    @property
    def qualified_name(self) -> str:
        return f"{self.notebook}:{self.name}" if self.notebook else self.name

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "hit_rate": self.hit_rate}


def _statements(script: str) -> Iterator[str]:
    """The statements of ``script`` one by one (a trigger's body has semicolons of its own)."""
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            yield pending
            pending = ""
    if pending.strip():
        raise ValueError(f"incomplete SQL statement: {pending!r}")


def _retry_locked(action: Any, attempts: int = 40) -> Any:
    """Run ``action``, retrying "database is locked" with a jittered backoff (about 5 s in all)."""
    delay = 0.002
    for attempt in range(attempts):
        try:
            return action()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc) or attempt == attempts - 1:
                raise
        time.sleep(delay * (0.5 + random.random()))
        delay = min(delay * 2, 0.25)
    raise AssertionError("unreachable")


_open_indexes: weakref.WeakSet[Index] = weakref.WeakSet()


@atexit.register
def _flush_all() -> None:
    for index in list(_open_indexes):
        index.flush(timeout_ms=1000)


class Index:
    def __init__(self, path: Path | str, *, read_only: bool = False) -> None:
        """Open (or create) the index at ``path``; IndexUnusable if the file is not a usable index.

        ``":memory:"`` gives a private index, for a store whose folder can't hold one.
        """
        self.path = path
        self.read_only = read_only
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []  # every thread's, so that close() can shut them all
        self._generation = 0  # bumped by close(): a thread's older connection is not used again
        self._queue: list[tuple[str, tuple]] = []
        self._queue_lock = threading.Lock()
        self._flush_lock = threading.Lock()  # held while a batch is written: a reader waits for it to land
        self._in_flight = 0
        self._flusher: threading.Thread | None = None
        self._wake = threading.Event()
        self.dropped = 0  # hit-path records that could not be written, not even later
        self._memory = str(path) == ":memory:"
        self.created = False  # True if this process created the schema: the store then fills it from the manifests
        self._has_totals = False
        self._has_auto = False
        if self._memory:
            self._shared = self._connect()  # one connection: each ":memory:" connection is its own database
        try:
            db = self.db
            version, fresh = _retry_locked(lambda: self._schema_state(db))
            if version != SCHEMA_VERSION:
                if read_only:
                    raise IndexUnusable(f"the index has schema {version}, not {SCHEMA_VERSION}")
                if not fresh:
                    raise IndexUnusable(f"the index has schema {version}, not {SCHEMA_VERSION}")
                _retry_locked(lambda: self._create_schema(db))
            self._has_totals = self._table_exists(db, "run_totals")
            if not self._has_totals and not read_only:
                _retry_locked(lambda: self._add_totals(db))
                self._has_totals = True
            if not read_only and not self._table_exists(db, "auto_steps"):
                _retry_locked(lambda: db.execute(AUTO_STEPS))
            self._has_auto = self._table_exists(db, "auto_steps")
        except sqlite3.DatabaseError as exc:
            self.close()
            raise IndexUnusable(f"{type(exc).__name__}: {exc}") from exc
        _open_indexes.add(self)

    @staticmethod
    def _schema_state(db: sqlite3.Connection) -> tuple[int, bool]:
        # One read transaction: another process may commit the schema between two separate reads.
        db.execute("BEGIN")
        try:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            fresh = not db.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchone()
        finally:
            db.execute("COMMIT")
        return version, fresh

    def _create_schema(self, db: sqlite3.Connection) -> None:
        with self._tx() as tx:
            if tx.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION:
                return  # another process created it while this one waited
            for statement in _statements(SCHEMA):
                tx.execute(statement)
            tx.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            self.created = True

    @staticmethod
    def _table_exists(db: sqlite3.Connection, name: str) -> bool:
        return db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (name,)).fetchone() is not None

    def _add_totals(self, db: sqlite3.Connection) -> None:
        # An index of this schema made before run_totals: add it in place, so no run history is lost to a rebuild.
        with self._tx() as tx:
            if self._table_exists(tx, "run_totals"):
                return  # another process added it while this one waited
            for statement in _statements(SCHEMA):
                tx.execute(statement)  # all IF NOT EXISTS: only the new table and its trigger are made
            tx.execute(f"INSERT INTO run_totals {TOTALS_FROM_RUNS}")

    def _connect(self) -> sqlite3.Connection:
        if self._memory:
            return sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        if self.read_only:
            # immutable: a read-only folder has no -shm to coordinate through; nobody can write there anyway.
            uri = f"file:{Path(self.path).absolute().as_posix()}?mode=ro&immutable=1"
            return sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
        db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False)
        db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        # SQLite does not call the busy handler for the switch to WAL: many processes opening a new
        # index at once would see "database is locked" without this retry.
        if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            mode = _retry_locked(lambda: db.execute("PRAGMA journal_mode=WAL").fetchone()[0])
            if mode != "wal":
                raise sqlite3.OperationalError(f"cannot switch the index to WAL (got {mode})")
        # NORMAL is durable across application crashes in WAL mode and skips an fsync per commit.
        db.execute("PRAGMA synchronous=NORMAL")
        return db

    @property
    def db(self) -> sqlite3.Connection:
        if self._memory:
            return self._shared
        return self._thread_db("db")

    def _thread_db(self, name: str, busy_timeout_ms: int | None = None) -> sqlite3.Connection:
        """This thread's connection of that name, opened on first use (and again after a close)."""
        held = getattr(self._local, name, None)
        if held is not None and held[0] == self._generation:
            return held[1]
        db = self._connect()
        if busy_timeout_ms is not None:
            db.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
        with self._queue_lock:
            self._connections.append(db)
        setattr(self._local, name, (self._generation, db))
        return db

    def close(self) -> None:
        """Write the queued records, then close every thread's connections (the records writer's too)."""
        with self._flush_lock:
            if self._queue and not self.read_only:
                try:
                    self._flush(COMMIT_TIMEOUT_MS)
                except sqlite3.Error:
                    pass  # a closed or broken index: the records are counted as dropped
            with self._queue_lock:
                connections, self._connections = self._connections, []
                self._generation += 1
            for db in connections:
                try:
                    db.close()
                except sqlite3.Error:
                    pass

    def _hit_db(self) -> sqlite3.Connection:
        """This thread's connection for the deferred records, waiting at most HIT_TIMEOUT_MS for a lock."""
        return self._thread_db("hit_db", HIT_TIMEOUT_MS)

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

    # the hit path's writes: never wait ---------------------------------------

    def defer(self, sql: str, params: tuple) -> None:
        """Queue one statement for the index's writer thread (a private in-memory index writes it now)."""
        with self._queue_lock:
            if len(self._queue) >= _QUEUE_LIMIT:
                self.dropped += 1
                return
            self._queue.append((sql, params))
            if not self._memory and (self._flusher is None or not self._flusher.is_alive()):
                # A daemon, so a locked index can't hang the interpreter; _flush_all writes what is left at exit.
                self._flusher = threading.Thread(target=self._write_behind, name="cellcache-index", daemon=True)
                self._flusher.start()
        if self._memory:
            self.flush(timeout_ms=HIT_TIMEOUT_MS)  # one shared connection: no second thread on it
        else:
            self._wake.set()

    def _write_behind(self) -> None:
        delay = 0.0
        while True:
            if not self._wake.wait(timeout=5.0):
                with self._queue_lock:
                    if not self._queue:
                        self._flusher = None  # idle: a later record starts another
                        return
            self._wake.clear()
            if self.flush(timeout_ms=HIT_TIMEOUT_MS):
                delay = 0.0
                continue
            delay = min(max(delay * 2, 0.02), 0.5)  # another process holds the write lock: back off, then retry
            time.sleep(delay)
            self._wake.set()

    def flush(self, timeout_ms: int = HIT_TIMEOUT_MS) -> bool:
        """Write the queued statements in one transaction; False (and kept queued) if the index is busy."""
        with self._flush_lock:
            return self._flush(timeout_ms)

    def _flush(self, timeout_ms: int) -> bool:
        with self._queue_lock:
            pending, self._queue = self._queue, []
            self._in_flight = len(pending)
        if not pending:
            return True
        db, reset = None, False
        try:
            if timeout_ms == HIT_TIMEOUT_MS and not self._memory:
                db = self._hit_db()  # its busy timeout is the hit's for good: no PRAGMA round trips on a hit
            else:
                db, reset = self.db, True
                db.execute(f"PRAGMA busy_timeout={timeout_ms}")
            if len(pending) == 1:
                db.execute(*pending[0])  # the usual hit: one autocommitted row, no BEGIN/COMMIT round trips
            else:
                with Index._Tx(db) as tx:
                    for sql, params in pending:
                        tx.execute(sql, params)
            return True
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                with self._queue_lock:
                    keep = max(_QUEUE_LIMIT - len(self._queue), 0)
                    self.dropped += len(pending) - min(keep, len(pending))
                    self._queue[:0] = pending[:keep]
            else:
                self.dropped += len(pending)  # a read-only or broken index: statistics are not worth an error
            return False
        except sqlite3.DatabaseError:
            self.dropped += len(pending)
            return False
        finally:
            self._in_flight = 0
            if db is not None and reset:
                try:
                    db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
                except sqlite3.Error:
                    pass

    def _settle(self) -> None:
        """Before a read of the runs: this process's own records are in (unless another process holds the lock)."""
        if self._queue or self._in_flight:
            self.flush(timeout_ms=COMMIT_TIMEOUT_MS)

    @property
    def queued(self) -> int:
        """Records not written yet: waiting, or in a batch being written."""
        return len(self._queue) + self._in_flight

    # entries ---------------------------------------------------------------

    _ADD_ENTRY = (
        "INSERT OR REPLACE INTO entries(key, variant, notebook, step, created, size, seconds, blob) VALUES (?,?,?,?,?,?,?,?)"
    )
    _ADD_STEP = (
        "INSERT INTO steps(notebook, name, last_key, last_variant) VALUES (?,?,?,?) "
        "ON CONFLICT(notebook, name) DO UPDATE SET last_key=excluded.last_key, last_variant=excluded.last_variant"
    )

    def add_entry(self, row: EntryRow, blobs: dict[str, int], *, last: bool = True, timeout_ms: int = COMMIT_TIMEOUT_MS) -> None:
        """Record an entry and every blob it uses (so they are kept while it exists).

        After the manifest is committed: a busy index queues the row instead of holding up
        the miss (the manifest is the truth, so the entry is stored either way).
        """
        statements: list[tuple[str, tuple]] = [("DELETE FROM entry_blobs WHERE key=? AND variant=?", (row.key, row.variant))]
        statements += [
            ("INSERT INTO entry_blobs(key, variant, blob, size) VALUES (?,?,?,?)", (row.key, row.variant, b, s))
            for b, s in blobs.items()
        ]
        statements.append((self._ADD_ENTRY, (row.key, row.variant, row.notebook, row.step, row.created, row.size, row.seconds, row.blob)))
        if last:
            statements.append((self._ADD_STEP, (row.notebook, row.step, row.key, row.variant)))
        with self._queue_lock:
            if len(self._queue) + len(statements) > _QUEUE_LIMIT:
                self.dropped += 1
                return
            self._queue.extend(statements)
        self.flush(timeout_ms=timeout_ms)

    def add_entries(self, rows: Sequence[tuple[EntryRow, dict[str, int]]], *, last: bool = False) -> None:
        with self._tx() as db:
            for row, blobs in rows:
                self._add_entry(db, row, blobs, last=last)

    def _add_entry(self, db: sqlite3.Connection, row: EntryRow, blobs: dict[str, int], *, last: bool) -> None:
        db.execute("DELETE FROM entry_blobs WHERE key=? AND variant=?", (row.key, row.variant))
        db.executemany(
            "INSERT INTO entry_blobs(key, variant, blob, size) VALUES (?,?,?,?)",
            [(row.key, row.variant, b, s) for b, s in blobs.items()],
        )
        db.execute(self._ADD_ENTRY, (row.key, row.variant, row.notebook, row.step, row.created, row.size, row.seconds, row.blob))
        if last:
            db.execute(self._ADD_STEP, (row.notebook, row.step, row.key, row.variant))
        else:
            db.execute("INSERT OR IGNORE INTO steps(notebook, name, last_key, last_variant) VALUES (?,?,?,?)",
                       (row.notebook, row.step, row.key, row.variant))

    def learn_entry(self, row: EntryRow, blobs: dict[str, int]) -> None:
        """Add a row for an entry found on disk that the index did not know, without waiting for a writer."""
        self.defer("DELETE FROM entry_blobs WHERE key=? AND variant=?", (row.key, row.variant))
        for blob, size in blobs.items():
            self.defer("INSERT INTO entry_blobs(key, variant, blob, size) VALUES (?,?,?,?)", (row.key, row.variant, blob, size))
        self.defer(self._ADD_ENTRY, (row.key, row.variant, row.notebook, row.step, row.created, row.size, row.seconds, row.blob))

    def has_entry(self, key: str, variant: str) -> bool:
        return self.db.execute("SELECT 1 FROM entries WHERE key=? AND variant=?", (key, variant)).fetchone() is not None

    _ENTRY_COLUMNS = (
        "SELECT e.key, e.step, e.created, e.size, e.seconds, e.blob, "
        "MAX(e.created, COALESCE((SELECT MAX(r.at) FROM runs r WHERE r.key = e.key AND r.status = 'hit'), 0)) AS last_used, "
        "e.notebook, e.variant FROM entries e"
    )

    def entry(self, key: str, variant: str | None = None) -> EntryRow | None:
        if variant is None:
            found = self.db.execute(f"{self._ENTRY_COLUMNS} WHERE e.key=? ORDER BY e.created DESC", (key,)).fetchone()
        else:
            found = self.db.execute(f"{self._ENTRY_COLUMNS} WHERE e.key=? AND e.variant=?", (key, variant)).fetchone()
        return EntryRow(*found) if found else None

    def entries(self, step: Any = None) -> list[EntryRow]:
        """Every entry, or those of one step (a StepRef, or a bare name in any notebook)."""
        self._settle()
        if step is None:
            rows = self.db.execute(f"{self._ENTRY_COLUMNS} ORDER BY e.created").fetchall()
        elif isinstance(step, str):
            rows = self.db.execute(f"{self._ENTRY_COLUMNS} WHERE e.step=? ORDER BY e.created", (step,)).fetchall()
        else:
            rows = self.db.execute(
                f"{self._ENTRY_COLUMNS} WHERE e.notebook=? AND e.step=? ORDER BY e.created", (step.notebook, step.name)
            ).fetchall()
        return [EntryRow(*r) for r in rows]

    def run_reasons(self) -> dict[tuple[str, str], tuple[int, str | None, str | None]]:
        """``{(notebook, step): (errors, the last error's reason, the last run's reason)}`` from the run history."""
        self._settle()
        found: dict[tuple[str, str], tuple[int, str | None, str | None]] = {}
        for notebook, step, count, last_id in self.db.execute(
            "SELECT notebook, step, count(*), max(id) FROM runs WHERE status='error' GROUP BY notebook, step"
        ).fetchall():
            (reason,) = self.db.execute("SELECT reason FROM runs WHERE id=?", (last_id,)).fetchone()
            found[(notebook, step)] = (count, reason, None)
        for notebook, step, reason in self.db.execute(
            "SELECT r.notebook, r.step, r.reason FROM runs r JOIN (SELECT max(id) AS id FROM runs GROUP BY notebook, step) m ON r.id = m.id"
        ).fetchall():
            count, error, _ = found.get((notebook, step), (0, None, None))
            found[(notebook, step)] = (count, error, reason)
        return found

    def hits_by_key(self, step: Any) -> dict[str, int]:
        """How many hits each key of one step has had."""
        self._settle()
        return dict(self.db.execute(
            "SELECT key, count(*) FROM runs WHERE notebook=? AND step=? AND status='hit' GROUP BY key",
            (getattr(step, "notebook", ""), getattr(step, "name", step)),
        ).fetchall())  # fmt: skip

    def entries_run_by(self, step: Any) -> list[EntryRow]:
        """Entries whose key a step computed in a recorded run, whatever step stored them (a renamed or twin cell)."""
        self._settle()
        rows = self.db.execute(
            f"{self._ENTRY_COLUMNS} WHERE e.key IN "
            "(SELECT key FROM runs WHERE notebook=? AND step=? AND key IS NOT NULL) ORDER BY e.created",
            (step.notebook, step.name),
        ).fetchall()
        return [EntryRow(*r) for r in rows]

    def entry_ids(self) -> set[tuple[str, str]]:
        return {(r[0], r[1]) for r in self.db.execute("SELECT key, variant FROM entries")}

    def entries_by_last_use(self) -> Iterator[EntryRow]:
        self._settle()
        for r in self.db.execute(f"{self._ENTRY_COLUMNS} ORDER BY last_used ASC"):
            yield EntryRow(*r)

    def drop_entries(self, ids: Iterable[tuple[str, str]]) -> None:
        rows = list(ids)
        with self._tx() as db:
            db.executemany("DELETE FROM entries WHERE key=? AND variant=?", rows)
            db.executemany("DELETE FROM entry_blobs WHERE key=? AND variant=?", rows)

    def entry_blobs(self, key: str, variant: str) -> dict[str, int]:
        return dict(self.db.execute("SELECT blob, size FROM entry_blobs WHERE key=? AND variant=?", (key, variant)).fetchall())

    def all_entry_blobs(self) -> list[tuple[str, str, str, int]]:
        return self.db.execute("SELECT key, variant, blob, size FROM entry_blobs").fetchall()

    def blob_in_use(self, blob: str) -> bool:
        return self.db.execute("SELECT 1 FROM entry_blobs WHERE blob=? LIMIT 1", (blob,)).fetchone() is not None

    def blobs_in_use(self) -> set[str]:
        return {r[0] for r in self.db.execute("SELECT DISTINCT blob FROM entry_blobs")}

    def total_size(self) -> int:
        """Bytes the entries use, a blob shared by several counted once."""
        found = self.db.execute("SELECT COALESCE(SUM(size),0) FROM (SELECT blob, MAX(size) AS size FROM entry_blobs GROUP BY blob)")
        return int(found.fetchone()[0])

    # steps -----------------------------------------------------------------

    def last_key(self, step: Any) -> tuple[str, str] | None:
        found = self.db.execute(
            "SELECT last_key, last_variant FROM steps WHERE notebook=? AND name=?", (step.notebook, step.name)
        ).fetchone()
        return (found[0], found[1]) if found and found[0] else None

    def invalidated_at(self, step: Any) -> float | None:
        found = self.db.execute(
            "SELECT invalidated_at FROM steps WHERE notebook=? AND name=?", (step.notebook, step.name)
        ).fetchone()
        return found[0] if found else None

    def mark_invalidated(self, step: Any, at: float) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO steps(notebook, name, invalidated_at) VALUES (?, ?, ?) "
                "ON CONFLICT(notebook, name) DO UPDATE SET invalidated_at=excluded.invalidated_at, last_key=NULL",
                (step.notebook, step.name, at),
            )

    def step_refs(self) -> list[tuple[str, str]]:
        """Every (notebook, step) the index has heard of: from entries, steps and runs."""
        self._settle()
        rows = self.db.execute(
            "SELECT notebook, name FROM steps UNION SELECT notebook, step FROM entries "
            "UNION SELECT DISTINCT notebook, step FROM runs ORDER BY 1, 2"
        ).fetchall()
        return [(r[0], r[1]) for r in rows]

    # runs ------------------------------------------------------------------

    def record_run(self, run: Any) -> None:
        """Count one ``RunRecord``. On every hit's path: never waits more than a few ms for another writer (see defer)."""
        self.defer(
            "INSERT INTO runs(notebook, step, key, status, seconds, saved, at, reason, source) VALUES (?,?,?,?,?,?,?,?,?)",
            (run.step.notebook, run.step.name, run.key, run.status, run.seconds, run.saved, time.time(), run.reason, run.source),
        )

    def mark_auto(self, step: Any) -> None:
        """Note that auto mode runs this step (once; on the hit path, so never waiting for a writer)."""
        if self._has_auto:
            self.defer("INSERT OR IGNORE INTO auto_steps VALUES (?, ?)", (step.notebook, step.name))

    def step_costs(self, notebook: str) -> dict[str, tuple[str, float, str, float | None, int | None]]:
        """What each step of a notebook cost, for auto mode's cost rule, since it was last invalidated.

        step -> (status, seconds and reason of its last run or plain run; the mean seconds of its hits;
        its latest entry's size).
        """
        self._settle()
        since = "COALESCE((SELECT invalidated_at FROM steps s WHERE s.notebook = r.notebook AND s.name = r.step), 0)"
        last = {
            r[0]: r[1:]
            for r in self.db.execute(
                "SELECT step, status, seconds, reason FROM runs WHERE id IN (SELECT MAX(id) FROM runs r "
                f"WHERE notebook = ? AND status IN ('miss', 'plain') AND at > {since} GROUP BY step)",
                (notebook,),
            )
        }
        hits = {
            r[0]: r[1]
            for r in self.db.execute(
                f"SELECT step, AVG(seconds) FROM runs r WHERE notebook = ? AND status = 'hit' AND at > {since} GROUP BY step",
                (notebook,),
            )
        }
        sizes = {
            r[0]: r[1]
            for r in self.db.execute(
                "SELECT step, size FROM entries e WHERE notebook = ? AND created = "
                "(SELECT MAX(created) FROM entries f WHERE f.notebook = e.notebook AND f.step = e.step)",
                (notebook,),
            )
        }
        return {step: (status, seconds, reason, hits.get(step), sizes.get(step)) for step, (status, seconds, reason) in last.items()}

    def step_rows(self) -> list[StepStats]:
        """One row per step, in a fixed number of queries, each reading one row per step however many runs there are."""
        self._settle()
        totals = "SELECT * FROM run_totals" if self._has_totals else TOTALS_FROM_RUNS
        runs = {
            (r[0], r[1]): r[2:]
            for r in self.db.execute(
                "SELECT t.notebook, t.step, t.runs, t.hits, t.misses, t.saved, t.remote_hits, t.hit_seconds, t.miss_seconds, "
                f"last.seconds, last.at, last.status, missed.reason FROM ({totals}) t "
                "JOIN runs last ON last.id = t.last_id LEFT JOIN runs missed ON missed.id = t.last_miss_id"
            )
        }
        stored = {
            (r[0], r[1]): r[2:]
            for r in self.db.execute("SELECT notebook, step, COUNT(*), COALESCE(SUM(size),0) FROM entries GROUP BY notebook, step")
        }
        names = sorted(set(runs) | set(stored) | {(r[0], r[1]) for r in self.db.execute("SELECT notebook, name FROM steps")})
        auto = {(r[0], r[1]) for r in self.db.execute("SELECT notebook, step FROM auto_steps")} if self._has_auto else set()
        rows = []
        for ref in names:
            count, hits, misses, saved, remote, hit_total, miss_total, last_seconds, last_at, last_status, last_miss = runs.get(
                ref, (0, 0, 0, 0.0, 0, 0.0, 0.0, None, None, None, None)
            )
            entries, size = stored.get(ref, (0, 0))
            rows.append(
                StepStats(
                    name=ref[1],
                    runs=count,
                    hits=int(hits or 0),
                    misses=int(misses or 0),
                    saved_seconds=float(saved or 0.0),
                    last_seconds=last_seconds,
                    last_run_at=last_at,
                    last_status=last_status,
                    last_miss_reason=last_miss,
                    entries=entries,
                    size_bytes=int(size),
                    notebook=ref[0],
                    remote_hits=int(remote or 0),
                    hit_seconds=hit_total / hits if hits else None,
                    run_seconds=miss_total / misses if misses else None,
                    auto=ref in auto,
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
        # Also on the hit path (a dep touched but unchanged): a lost row only costs a re-read next time.
        self.defer("INSERT OR REPLACE INTO stat_cache VALUES (?,?,?,?,?)", (path, size, mtime_ns, inode, digest))

    def clear(self) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM entries")
            db.execute("DELETE FROM entry_blobs")
            db.execute("UPDATE steps SET last_key=NULL, last_variant=NULL")
