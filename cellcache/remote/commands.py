"""The shared remote, as the commands see it: build the store, push, pull, status, verify, gc.

Plain functions over values; the CLI and ``%cellcache info`` only render
them. The mechanics (layout, checks, write-once uploads) live in
``cellcache.remote.bucket``, the read-through in ``cellcache.remote.tiered``.

Trust, in one paragraph the docs repeat: a cached entry is a pickle, and
restoring it runs code. Trusting a signer's fingerprint (``trusted_signers``)
therefore lets whoever holds that private key run code on your machine.
Trust only keys held by machines you would let run your notebooks (your CI,
a maintainer), and keep private keys out of repositories. Write access to
the bucket alone gives nothing: an entry that no trusted key signed is a
miss, and its bytes are never unpickled.
"""
from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any, Iterable

from cellcache.remote import signer_keys as keys
from cellcache.config import Config
from cellcache.errors import CacheError, ConfigError, EntryCorrupt, RemoteDenied, RemoteUnavailable, UntrustedEntry
from cellcache.store.base import Store, StepRef
from cellcache.store.manifest import Manifest
from cellcache.remote.bucket import RemoteStore
from cellcache.remote.signing import open_envelope
from cellcache.remote.tiered import TieredStore

TRUST_WARNING = (
    "Trusting a signer's key lets whoever holds it run code on your machine: a cached entry is a pickle, "
    "and restoring it runs code. Trust only keys held by machines you would let run your notebooks."
)


def open_remote(config: Config, *, sign: bool = False) -> RemoteStore | None:
    """The configured remote, or None. ``sign``: this machine's key is required (push)."""
    if not config.remote:
        return None
    key = keys.find(config.signing_key)
    if sign and key is None:
        raise ConfigError(
            "pushing needs a signing key: create one with `cellcache keys generate` (or set signing_key / "
            "CELLCACHE_SIGNING_KEY), then add its fingerprint to the readers' trusted_signers"
        )
    return RemoteStore(
        config.remote, trusted=config.trusted_signers, verify=config.verify, signing_key=key, timeout=config.remote_timeout
    )


OFFLINE_ENV = "CELLCACHE_OFFLINE"  # set by `cellcache status` (without --remote) for its kernels


def build_store(config: Config, local: Store) -> Store:
    """What a session uses: the local store alone, or the local store in front of the remote."""
    if not config.remote or os.environ.get(OFFLINE_ENV):
        return local
    remote = open_remote(config)
    assert remote is not None
    return TieredStore(local, remote, auto_push=config.push == "auto")


# push ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PushResult:
    remote: str
    pushed: tuple[str, ...]  # keys uploaded by this push
    present: int  # entries this signer had already pushed
    failed: tuple[tuple[str, str], ...]  # (key, why)
    seconds: float

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["failed"] = [{"key": k, "error": e} for k, e in self.failed]
        return data


def _local_manifests(local: Any) -> list[Manifest]:
    if not local.exists():
        return []
    seen: dict[tuple[str, str, float], Manifest] = {}
    for key in dict.fromkeys(r.key for r in local.entries()):
        for found in local.candidates(key):
            if found.manifest is not None:
                m = found.manifest
                seen.setdefault((m.key, m.blob, m.created), m)
    return list(seen.values())


def _selected(manifest: Manifest, steps: set[StepRef] | None, names: set[str] | None, notebooks: set[str] | None) -> bool:
    notebook = getattr(manifest, "notebook", "") or ""
    if steps is not None and StepRef(notebook, manifest.step) not in steps:
        return False
    if names is not None and manifest.step not in names:
        return False
    if notebooks is not None and notebook not in notebooks:
        return False
    return True


def push(
    config: Config,
    local: Any,
    *,
    steps: Iterable[StepRef] | None = None,
    step_names: Iterable[str] | None = None,
    notebooks: Iterable[str] | None = None,
    jobs: int = 4,
) -> PushResult:
    """Upload the local entries this signer has not pushed yet (all of them, or the selected steps/notebooks)."""
    started = time.perf_counter()
    remote = open_remote(config, sign=True)
    if remote is None:
        raise ConfigError("no remote is configured: set `remote` in [tool.cellcache] or CELLCACHE_REMOTE")
    chosen = [
        m
        for m in _local_manifests(local)
        if _selected(
            m,
            set(steps) if steps is not None else None,
            set(step_names) if step_names is not None else None,
            set(notebooks) if notebooks is not None else None,
        )
    ]
    remote.ensure_format()
    pushed: list[str] = []
    failed: list[tuple[str, str]] = []
    present = 0

    def one(m: Manifest) -> tuple[Manifest, bool | str]:
        try:
            return m, remote.push_entry(m, getattr(m, "notebook", "") or "", local.blob_path)
        except (RemoteUnavailable, RemoteDenied):
            raise
        except CacheError as exc:
            return m, str(exc)

    try:
        with ThreadPoolExecutor(max(1, jobs)) as pool:
            for m, outcome in pool.map(one, chosen):
                if outcome is True:
                    pushed.append(m.key)
                elif outcome is False:
                    present += 1
                else:
                    failed.append((m.key, str(outcome)))
    finally:
        remote.close()
    return PushResult(config.remote or "", tuple(pushed), present, tuple(failed), time.perf_counter() - started)


# pull ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PullResult:
    remote: str
    pulled: tuple[str, ...]  # "notebook:step" fetched
    already: int  # steps whose latest entry was local already
    missing: tuple[str, ...]  # steps with no trusted entry on the remote
    problems: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def pull(config: Config, local: Any, notebook: str | None = None, step: str | None = None) -> PullResult:
    """Prefetch the latest trusted entry of each step of a notebook (or of one step), for offline work.

    Lists only that notebook's part of the steps/ tree, never the bucket.
    """
    remote = open_remote(config)
    if remote is None:
        raise ConfigError("no remote is configured: set `remote` in [tool.cellcache] or CELLCACHE_REMOTE")
    notebook = notebook or ""
    names = [step] if step else remote.notebook_steps(notebook)
    pulled, missing, problems = [], [], []
    already = 0
    try:
        for name in names:
            label = str(StepRef(notebook, name))
            done = False
            for key, _ in remote.step_keys(notebook, name):
                fetched = remote.fetch(key)
                problems.extend(fetched.problems)
                if not fetched.entries:
                    continue
                entry = fetched.entries[0]
                if any(f.manifest is not None for f in local.candidates(key)):
                    already += 1
                else:
                    remote.download(entry, getattr(local, "incoming", local.blob_path), getattr(local, "temp_name", None))
                    local.commit(entry.manifest)
                    pulled.append(label)
                done = True
                break
            if not done:
                missing.append(label)
    finally:
        remote.close()
    return PullResult(config.remote or "", tuple(pulled), already, tuple(missing), tuple(problems))


# status -------------------------------------------------------------------------


@dataclass(frozen=True)
class RemoteStatus:
    remote: str | None
    reachable: bool
    error: str | None
    can_sign: bool
    fingerprint: str | None  # this machine's, if it has a key
    trusted_signers: tuple[str, ...]
    verify: str
    push: str
    entries: int | None  # manifests on the remote (None: not counted)
    trusted_entries: int | None
    blobs: int | None
    blob_bytes: int | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def status(config: Config, count: bool = True) -> RemoteStatus:
    try:
        key = keys.find(config.signing_key)
        key_error = None
    except ConfigError as exc:
        key, key_error = None, str(exc)
    base = dict(
        remote=config.remote,
        can_sign=key is not None,
        fingerprint=key.fingerprint if key else None,
        trusted_signers=tuple(config.trusted_signers),
        verify=config.verify,
        push=config.push,
    )
    if not config.remote:
        return RemoteStatus(reachable=False, error=key_error or "no remote configured", entries=None, trusted_entries=None, blobs=None, blob_bytes=None, **base)
    remote = open_remote(config)
    assert remote is not None
    try:
        remote.ping()
        entries = trusted = blobs = size = None
        if count:
            manifests = remote.walk("entries")
            ids = set(remote.trusted_ids)
            entries = len(manifests)
            trusted = sum(m["path"].rsplit("/", 1)[-1].removesuffix(".json") in ids for m in manifests)
            listed = remote.walk("blobs")
            blobs, size = len(listed), sum(b["size"] for b in listed)
        return RemoteStatus(reachable=True, error=key_error, entries=entries, trusted_entries=trusted, blobs=blobs, blob_bytes=size, **base)
    except CacheError as exc:
        return RemoteStatus(reachable=False, error=str(exc), entries=None, trusted_entries=None, blobs=None, blob_bytes=None, **base)
    finally:
        remote.close()


# verify and gc ------------------------------------------------------------------


@dataclass(frozen=True)
class RemoteVerifyReport:
    remote: str
    checked: int
    broken: tuple[tuple[str, str], ...]  # (object path, what is wrong)
    untrusted: int  # manifests of signers not in trusted_signers (never read, never removed)
    repaired: bool

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["broken"] = [{"path": p, "problem": why} for p, why in self.broken]
        return data


def parse_entry_path(path: str) -> tuple[str, str]:
    parts = path.rsplit("/", 2)
    return parts[-2], parts[-1].removesuffix(".json")


def verify(config: Config, repair: bool = False) -> RemoteVerifyReport:
    """Check every trusted manifest's signature and every blob it names (size and SHA-256).

    With ``repair``, a broken manifest and a blob that fails its hash are
    deleted, so readers stop trying them; the signer's next push writes them again.
    """
    remote = open_remote(config)
    if remote is None:
        raise ConfigError("no remote is configured: set `remote` in [tool.cellcache] or CELLCACHE_REMOTE")
    trusted = frozenset(remote.trusted_ids)
    broken: list[tuple[str, str]] = []
    untrusted = checked = 0
    good_blobs: dict[str, str | None] = {}
    try:
        for item in remote.walk("entries"):
            key, signer = parse_entry_path(item["path"])
            if signer not in trusted and config.verify != "off":
                untrusted += 1
                continue
            checked += 1
            problem = None
            try:
                raw = remote.fs.cat_file(item["path"])
                entry = open_envelope(raw, key=key, signer_id=signer, trusted=None if config.verify == "off" else trusted)
                for blob in entry.blobs:
                    if blob.sha256 not in good_blobs:
                        good_blobs[blob.sha256] = remote.blob_problem(blob)
                    problem = problem or good_blobs[blob.sha256]
            except (EntryCorrupt, UntrustedEntry) as exc:
                problem = str(exc)
            if problem:
                broken.append((item["path"], problem))
                if repair:
                    remote.remove(item["path"])
        if repair:
            # A blob that fails its hash must go too: the signer's next push skips blobs that exist.
            for sha, blob_problem in good_blobs.items():
                if blob_problem:
                    remote.remove(remote.blob_path(sha))
    finally:
        remote.close()
    return RemoteVerifyReport(config.remote or "", checked, tuple(broken), untrusted, repair)


@dataclass(frozen=True)
class RemoteGcReport:
    remote: str
    entries: int  # manifests deleted
    blobs: int  # blobs deleted
    freed: int  # bytes

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def gc(config: Config, older_than: float | None = None, max_size: int | None = None) -> RemoteGcReport:
    """Delete manifests pushed before ``older_than`` seconds ago (and, for ``max_size``, the oldest
    until the blobs fit), then every blob no remaining manifest names.

    Blobs younger than the cutoff are kept even when unnamed: a push may be
    between its blobs and its manifest.
    """
    remote = open_remote(config)
    if remote is None:
        raise ConfigError("no remote is configured: set `remote` in [tool.cellcache] or CELLCACHE_REMOTE")
    now = time.time()
    grace = older_than if older_than is not None else 3600.0
    try:
        manifests = sorted(remote.walk("entries"), key=lambda m: m["mtime"])
        blobs = {b["path"].rsplit("/", 1)[-1]: b for b in remote.walk("blobs")}
        referenced: dict[str, set[str]] = {}
        for m in manifests:
            key, signer = parse_entry_path(m["path"])
            try:
                entry = open_envelope(remote.fs.cat_file(m["path"]), key=key, signer_id=None, trusted=None)
                referenced[m["path"]] = {b.sha256 for b in entry.blobs}
            except CacheError:
                referenced[m["path"]] = set()
        doomed = [m for m in manifests if older_than is not None and now - m["mtime"] > older_than]
        if max_size is not None:
            total = sum(b["size"] for b in blobs.values())
            for m in manifests:
                if total <= max_size:
                    break
                if m not in doomed:
                    doomed.append(m)
                total -= sum(blobs[s]["size"] for s in referenced[m["path"]] if s in blobs)
        for m in doomed:
            remote.remove(m["path"])
        kept = set().union(*(referenced[m["path"]] for m in manifests if m not in doomed)) if manifests else set()
        freed = count = 0
        for sha, info in blobs.items():
            if sha in kept or (now - info["mtime"] < grace and max_size is None):
                continue
            remote.remove(info["path"])
            freed += info["size"]
            count += 1
    finally:
        remote.close()
    return RemoteGcReport(config.remote or "", len(doomed), count, freed)


# %cellcache info -----------------------------------------------------------------


def info_lines(config: Config, store: Any) -> list[str]:
    """The truth about the remote for ``%cellcache info``: configured or not, up or down, who is trusted."""
    if not config.remote:
        return ["remote: - (none configured; set `remote` in [tool.cellcache] or CELLCACHE_REMOTE)"]
    lines = [f"remote: {config.remote}"]
    if isinstance(store, TieredStore):
        state = f"down this session ({store.health.down}); local only" if store.health.down else "in use (read-through on a local miss)"
        lines.append(f"  state: {state}")
        key = store.remote.signing_key
        if store.pusher is not None:
            p = store.pusher
            lines.append(f"  push: auto ({p.pushed} pushed, {p.dropped} left for `cellcache push`, {p.failed} failed)")
        else:
            lines.append(f"  push: {config.push}" + ("" if key else " (this machine has no signing key: it cannot push)"))
        lines.append(f"  remote signing key (Ed25519): {key.fingerprint if key else '-'}")
    lines.append(f"  verify: {config.verify}")
    trusted = ", ".join(config.trusted_signers) or "none (no remote entry will be used)"
    lines.append(f"  trusted signers: {trusted}")
    return lines
