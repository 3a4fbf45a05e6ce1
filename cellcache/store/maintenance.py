"""Upkeep of the local store: invalidate, clear, gc and verify; and what the store commands say of an entry.

``Upkeep`` is the half of ``LocalStore`` that removes things: entries, the blobs
no entry names any more, and what dead writers left. Each of its sweeps holds
the store lock exclusively, so it never races a writer between ``put_blob`` and
``commit``, nor another sweep. The plain functions at the end (``show KEY``,
``invalidate [NB:]STEP``) are what the CLI renders, so tests call them without it.
"""
from __future__ import annotations

import os
import shutil
import time
import uuid
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cellcache.errors import BatchError, CacheError, EntryCorrupt, UnknownStep
from cellcache.store import writers
from cellcache.store.base import StepRef
from cellcache.store.index import EntryRow
from cellcache.units import format_seconds, format_size

# Only for what carries no writer (files of an older release, or claimed by a live process that never
# committed them): younger than this, they may belong to a writer still at work. A dead writer's are reclaimed at once.
TEMP_GRACE = 3600.0
# cellcache.batch.replay's records of whole notebooks, under the store. A user who invalidates a step wants it
# run again, whatever its inputs say: every invalidation and delete withdraws them all.
REPLAYS = "replay"
_HEX = set("0123456789abcdef")
_GONE = "gone"  # what verify makes of a manifest removed between its listing and its reading


def is_digest(name: str) -> bool:
    return 16 <= len(name) <= 64 and set(name) <= _HEX


@dataclass(frozen=True)
class VerifyReport:
    checked: int
    broken: tuple[tuple[str, str], ...]  # (key or blob, what is wrong)
    repaired: bool
    reclaimable: int = 0  # bytes: broken entries, quarantined blobs, old temp files, blobs no manifest names
    reclaimed: int = 0
    leftovers: int = 0  # files behind `reclaimable`
    temp_files: int = 0  # of which: temporary files of dead writers (or old ones)
    orphan_blobs: int = 0  # of which: blobs no manifest names and no live writer claims

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class Upkeep:
    """Removal and checking, mixed into ``LocalStore``: its layout, lock and index are the store's own."""

    def _unlink_blobs(self, blobs: set[str]) -> int:
        """Delete the blobs that no manifest names any more; return bytes freed."""
        if not blobs:
            return 0
        self.reconcile()  # under the store lock: every entry committed so far is known, and none lands meanwhile
        in_use = self.index.blobs_in_use()
        claimed = writers.census(self.root).claimed  # put by a live writer that may not have committed yet
        freed = 0
        for blob in blobs - in_use - claimed:
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

    def drop_entry(self, key: str, variant: str) -> int:
        """Drop one entry (the panel's delete), under the lock ``invalidate`` takes; return bytes freed."""
        with self._sweeping("invalidate"):
            self.reconcile()
            self._forget_replays()
            return self._drop([r for r in self.index.entries() if (r.key, r.variant) == (key, variant)])

    def _forget_replays(self) -> None:
        shutil.rmtree(self.root / REPLAYS, ignore_errors=True)

    def invalidate(self, step: StepRef | str) -> int:
        """Drop every entry of one step; return how many. An unknown step raises UnknownStep."""
        ref = step if isinstance(step, StepRef) else self.resolve_step(step)
        if isinstance(step, StepRef):
            self.reconcile()
            if ref not in self.known_steps():
                raise UnknownStep(f"no step {str(ref)!r}", tuple(str(s) for s in self.known_steps()))
        with self._sweeping("invalidate"):
            self.reconcile()
            self._forget_replays()
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
                    if f.is_file(follow_symlinks=False) and (is_digest(f.name) or f.name.endswith(".tmp")):
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
        self._forget_replays()
        try:
            self.index.clear()
            now = time.time()
            for ref in steps:
                self.index.mark_invalidated(ref, now)
        except Exception:  # noqa: BLE001 - with the manifests gone, a stale index is reconciled by the next command
            pass
        return count

    def _leftovers(self, grace: float) -> list[tuple[Path, int, str]]:
        """Files nothing needs, as (path, size, kind): temporary files of dead writers, blobs no manifest names
        and no live writer claims, quarantined blobs, v1 manifests, trash, dead writers' lock files.

        A file that names its writer is judged by whether that writer lives, at once;
        one that does not (an older release's) by its age against ``grace``.
        """
        now = time.time()
        in_use = self.index.blobs_in_use()
        writers_now = writers.census(self.root)
        found: list[tuple[Path, int, str]] = []

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
                    if name.endswith((".tmp", ".part")):
                        alive = writers_now.owner_alive(name)
                        if alive is False or (alive is None and old(st)):
                            found.append((path, st.st_size, "temp"))
                    elif top == "blobs" and is_digest(name) and name not in in_use:
                        if name not in writers_now.claimed or old(st):
                            found.append((path, st.st_size, "orphan"))
                    elif top == "entries" and name.endswith(".json") and Path(dirpath).parent == self.root / "entries":
                        found.append((path, st.st_size, "other"))  # a v1 manifest, entries/ab/<key>.json: never read again
        for extra in [self.root / "quarantine", *self.root.glob(".trash-*")]:
            for dirpath, _, filenames in os.walk(extra):
                for name in filenames:
                    path = Path(dirpath) / name
                    try:
                        found.append((path, os.lstat(path).st_size, "other"))
                    except OSError:
                        pass
        for lock in writers_now.dead:
            try:
                found.append((lock, os.lstat(lock).st_size, "writer"))  # last: its files go first
            except OSError:
                pass
        return found

    def _reclaim(self, leftovers: list[tuple[Path, int]]) -> int:
        freed = 0
        for path, size, _ in leftovers:
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

    def gc_plan(self, max_size: int | None = None, older_than: float | None = None) -> tuple[int, int]:
        """(entries ``gc`` would drop, entries there are): the same choice, dropping nothing, to ask before a big gc."""
        if not self.exists():
            return 0, 0
        self.reconcile()
        rows = list(self.index.entries_by_last_use())
        return len(self._doomed(rows, max_size, older_than)), len(rows)

    def _gc(self, max_size: int | None, older_than: float | None, grace: float) -> tuple[int, int]:
        self.reconcile()
        doomed = self._doomed(list(self.index.entries_by_last_use()), max_size, older_than)
        freed = self._drop(doomed)
        freed += self._reclaim(self._leftovers(grace))
        return len(doomed), freed

    def _doomed(self, rows: list[EntryRow], max_size: int | None, older_than: float | None) -> list[EntryRow]:
        """The entries a gc drops: least recently used first, until the store fits; a shared blob counts once."""
        now = time.time()
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
        return doomed

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
            problem = self._check_entry(path, key, variant, good_blobs)
            if problem is _GONE:
                continue  # removed since the scan by another process's invalidate or gc: simply gone
            checked += 1
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
            reclaimable = sum(size for _, size, _ in leftovers)
            reclaimed = self._reclaim(leftovers) if repair else 0
        return VerifyReport(
            checked=checked,
            broken=tuple(broken),
            repaired=repair,
            reclaimable=reclaimable,
            reclaimed=reclaimed,
            leftovers=len(leftovers),
            temp_files=sum(kind == "temp" for _, _, kind in leftovers),
            orphan_blobs=sum(kind == "orphan" for _, _, kind in leftovers),
        )

    def _check_entry(self, path: Path, key: str, variant: str, good_blobs: dict[str, bool]) -> str | None:
        try:
            manifest = self._read_manifest(path, key, variant)
        except FileNotFoundError:
            return _GONE
        except CacheError as exc:
            return str(exc)
        for digest, size in manifest.blobs.items():
            if digest not in good_blobs:
                try:
                    os.close(self._checked_blob(digest, size))
                    good_blobs[digest] = True
                except EntryCorrupt as exc:
                    good_blobs[digest] = False
                    return str(exc)
            if not good_blobs[digest]:
                return f"blob {digest} is missing or does not match its digest"
        return None



@dataclass(frozen=True)
class EntryInfo:
    """One entry, as ``cellcache show`` prints it."""

    key: str
    step: str
    notebook: str
    created: float
    seconds: float
    size: int
    inputs: tuple[tuple[str, str, str], ...]  # (name, digest, description)
    files: tuple[tuple[str, str], ...]  # (path, digest): --deps, then the implicit files the cell read
    outs: tuple[tuple[str, int], ...]  # (path, size)
    outputs: tuple[str, ...]  # the variables it restores
    other: tuple[tuple[str, str], ...]  # the remaining key components: code, packages, Python, ...

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "step": self.step,
            "notebook": self.notebook,
            "created": self.created,
            "seconds": self.seconds,
            "size": self.size,
            "inputs": [{"name": n, "digest": d, "description": desc} for n, d, desc in self.inputs],
            "files": [{"path": p, "digest": d} for p, d in self.files],
            "outs": [{"path": p, "size": s} for p, s in self.outs],
            "outputs": list(self.outputs),
            "components": dict(self.other),
        }

    def render(self) -> str:
        created = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.created))
        lines = [
            f"key:      {self.key}",
            f"step:     {self.step}",
            f"notebook: {self.notebook or '(plain IPython)'}",
            f"created:  {created}",
            f"run time: {format_seconds(self.seconds)}",
            f"size:     {format_size(self.size)}",
            f"outputs:  {', '.join(self.outputs) or '-'}",
            "inputs:" if self.inputs else "inputs:   -",
        ]
        lines += [f"  {name}: {desc or '?'}  ({digest[:12]})" for name, digest, desc in self.inputs]
        lines.append("files:" if self.files else "files:    -")
        lines += [f"  {path}  ({digest[:12]})" for path, digest in self.files]
        lines.append("outs:" if self.outs else "outs:     -")
        lines += [f"  {path}  ({format_size(size)})" for path, size in self.outs]
        if self.other:
            lines.append("key components:")
            lines += [f"  {name}: {value}" for name, value in self.other]
        return "\n".join(lines)


def _full_key(store: Any, key: str) -> str:
    """An entry's key from a unique prefix of at least 4 characters, as git takes commits."""
    key = key.strip().lower()
    if len(key) < 4:
        raise BatchError(f"key {key!r} is too short: give at least 4 characters of it (see `cellcache ls`)")
    keys = sorted({row.key for row in store.entries()})  # reconciled: an entry the index missed is still shown
    matches = [k for k in keys if k.startswith(key)]
    if not matches:
        raise BatchError(f"no entry with key {key!r} in {store.root} (see `cellcache ls`)")
    if len(matches) > 1:
        raise BatchError(f"key {key!r} is ambiguous: it starts {', '.join(matches[:5])}{', ...' if len(matches) > 5 else ''}")
    return matches[0]


def describe_entry(store: Any, key: str) -> EntryInfo:
    full = _full_key(store, key)
    manifest = store.manifest(full)
    if manifest is None:
        # Removed by another process's gc or invalidate since it was listed: simply gone.
        raise BatchError(f"no entry with key {full} in {store.root} any more (removed since it was listed; see `cellcache ls`)")
    components = dict(manifest.components)
    descriptions = dict(manifest.descriptions)
    inputs = tuple(
        (name.partition(":")[2], digest, descriptions.get(name, ""))
        for name, digest in sorted(components.items())
        if name.startswith("input:")
    )
    files = tuple((name.partition(":")[2], digest) for name, digest in sorted(components.items()) if name.startswith("file:"))
    files += tuple((d.path, d.digest) for d in manifest.implicit)
    other = tuple((name, value) for name, value in sorted(components.items()) if not name.startswith(("input:", "file:")))
    size = getattr(manifest, "size", None)
    return EntryInfo(
        key=manifest.key,
        step=manifest.step,
        notebook=getattr(manifest, "notebook", "") or "",
        created=manifest.created,
        seconds=manifest.seconds,
        size=size if isinstance(size, int) else manifest.blob_size + sum(o.size for o in manifest.outs),
        inputs=inputs,
        files=files,
        outs=tuple((o.path, o.size) for o in manifest.outs),
        outputs=tuple(manifest.outputs),
        other=other,
    )


def invalidate(store: Any, text: str, notebook: str | None = None) -> tuple[str, int]:
    """Drop a step's entries: ``NB:STEP``, ``STEP`` with ``notebook``, or a ``STEP`` unique in the store.

    Returns the step as resolved and the number of entries dropped. An unknown or
    ambiguous name raises the store's StepError, whose message lists the candidates.
    """
    resolve = getattr(store, "resolve_step", None)
    if resolve is None:  # a store that does not know notebooks yet: names are global
        if notebook:
            raise BatchError(f"this store does not record notebooks yet: give the step {text!r} without --notebook")
        return repr(text), store.invalidate(text)
    ref = resolve(text, notebook=notebook)
    return repr(str(ref)), store.invalidate(ref)


__all__ = ["EntryInfo", "describe_entry", "invalidate"]
