"""Read-through in a real shell against moto's S3: remote hits, then local hits, and every refusal a miss."""
from __future__ import annotations

import warnings
from pathlib import Path

import pytest

import cellcache
from cellcache.cell import reasons
from cellcache.remote import commands as remote_ops
from cellcache.config import resolve
from cellcache.errors import CacheWarning
from cellcache.remote.bucket import RemoteStore

from .conftest import BUCKET

CELL = "%%cached gen\nx = [i * i for i in range(n)]\n"


def env_for(s3, signer=None, trusted=(), **extra: str) -> dict[str, str]:
    env = {"CELLCACHE_REMOTE": s3.url, "CELLCACHE_TRUSTED_SIGNERS": " ".join(t.fingerprint for t in trusted)}
    if signer is not None:
        env["CELLCACHE_SIGNING_KEY"] = str(signer.path)
    env.update(extra)
    return env


def run_cell(sh, source: str = CELL):
    sh.user_ns.setdefault("n", 5)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sh.run_cell(source, store_history=True).raise_error()
    return cellcache.last_run(), [str(w.message) for w in caught if issubclass(w.category, CacheWarning)]


def ci_pushes(make_shell, tmp_path: Path, s3, signer) -> None:
    """CI: a miss, stored locally, then pushed (what `cellcache run --push` does)."""
    sh = make_shell(tmp_path / "ci-store", **env_for(s3, signer, trusted=[signer]))
    run, _ = run_cell(sh)
    assert run.status == "miss"
    result = remote_ops.push(resolve(), cellcache.api.session(sh).store.local)
    assert len(result.pushed) == 1 and result.failed == ()


@pytest.mark.timeout(60)
def test_a_fresh_store_hits_from_the_remote_then_locally(make_shell, tmp_path: Path, s3, signer, monkeypatch) -> None:
    ci_pushes(make_shell, tmp_path, s3, signer)
    sh = make_shell(tmp_path / "laptop-store", **env_for(s3, trusted=[signer]))
    run, caught = run_cell(sh)
    assert (run.status, run.reason.startswith(reasons.HIT_REMOTE), caught) == ("hit", True, [])
    assert sh.user_ns["x"] == [0, 1, 4, 9, 16]
    stats = cellcache.stats()
    assert [(s.hits, s.remote_hits) for s in stats] == [(1, 1)]
    assert "1 (1 remote)" in cellcache.api.stats_text()  # the panel's rows are the same views

    # The next hit is local: it must not touch the network at all.
    def no_network(*args, **kwargs):
        raise AssertionError("a local hit touched the remote")

    monkeypatch.setattr(RemoteStore, "fetch", no_network)
    monkeypatch.setattr(RemoteStore, "download", no_network)
    sh.user_ns["x"] = None
    run, caught = run_cell(sh)
    assert (run.status, run.reason.startswith(reasons.HIT), caught) == ("hit", True, [])
    assert sh.user_ns["x"] == [0, 1, 4, 9, 16]
    assert [(s.hits, s.remote_hits) for s in cellcache.stats()] == [(2, 1)]


@pytest.mark.timeout(60)
def test_explain_and_info_say_remote(make_shell, tmp_path: Path, s3, signer, capsys) -> None:
    ci_pushes(make_shell, tmp_path, s3, signer)
    sh = make_shell(tmp_path / "laptop-store", **env_for(s3, trusted=[signer]))
    capsys.readouterr()
    run_cell(sh, CELL.replace("%%cached gen", "%%cached gen --explain"))
    assert "hit (remote)" in capsys.readouterr().out
    sh.run_line_magic("cellcache", "info")
    info = capsys.readouterr().out
    assert s3.url in info and "in use" in info and signer.fingerprint in info


@pytest.mark.timeout(60)
def test_an_untrusted_signers_entry_is_a_miss_with_one_warning(make_shell, tmp_path: Path, s3, signer, intruder) -> None:
    ci_pushes(make_shell, tmp_path, s3, intruder)
    sh = make_shell(tmp_path / "laptop-store", **env_for(s3, trusted=[signer]))
    run, caught = run_cell(sh)
    assert run.status == "miss"
    assert len(caught) == 1 and intruder.fingerprint in caught[0] and "not a trusted signer" in caught[0]
    assert run.reason == reasons.REMOTE_UNTRUSTED, "the run table names the cause, not a broken entry"


@pytest.mark.timeout(60)
def test_no_trusted_signers_means_no_remote_entry_is_used(make_shell, tmp_path: Path, s3, signer) -> None:
    ci_pushes(make_shell, tmp_path, s3, signer)
    sh = make_shell(tmp_path / "laptop-store", **env_for(s3, trusted=[]))
    run, caught = run_cell(sh)
    assert run.status == "miss" and len(caught) == 1 and "not a trusted signer" in caught[0]


def _only(objects: dict[str, bytes], part: str) -> str:
    (name,) = [k for k in objects if f"/{part}/" in k]
    return name


@pytest.mark.timeout(60)
def test_a_manifest_tampered_through_boto3_is_a_miss_with_a_warning(make_shell, tmp_path: Path, s3, signer) -> None:
    ci_pushes(make_shell, tmp_path, s3, signer)
    objects = s3.objects()
    name = _only(objects, "entries")
    s3.client().put_object(Bucket=BUCKET, Key=name, Body=objects[name].replace(b'\\"seconds\\":', b'\\"seconds\\":1'))
    assert s3.objects()[name] != objects[name]
    sh = make_shell(tmp_path / "laptop-store", **env_for(s3, trusted=[signer]))
    run, caught = run_cell(sh)
    assert run.status == "miss"
    assert len(caught) == 1 and "tampered" in caught[0]


@pytest.mark.timeout(60)
def test_a_blob_tampered_through_boto3_is_a_miss_and_never_unpickled(make_shell, tmp_path: Path, s3, signer) -> None:
    ci_pushes(make_shell, tmp_path, s3, signer)
    objects = s3.objects()
    name = _only(objects, "blobs")
    evil = objects[name].replace(b"x", b"y")  # same size, different bytes: the value is now named y
    assert evil != objects[name]
    s3.client().put_object(Bucket=BUCKET, Key=name, Body=evil)
    sh = make_shell(tmp_path / "laptop-store", **env_for(s3, trusted=[signer]))
    run, caught = run_cell(sh)
    assert run.status == "miss"
    assert len(caught) == 1 and "SHA-256" in caught[0]
    store = cellcache.api.session(sh).store.local
    remote_entry = RemoteStore(s3.url, trusted=[signer.fingerprint]).fetch(run.key).entries[0]
    # The miss stored its own (genuine) bytes at that address; the tampered ones never landed.
    assert store.blob_path(remote_entry.blobs[0].local).read_bytes() == objects[name] != evil


@pytest.mark.timeout(60)
def test_strict_verification_fails_the_cell(make_shell, tmp_path: Path, s3, signer, intruder) -> None:
    ci_pushes(make_shell, tmp_path, s3, intruder)
    sh = make_shell(tmp_path / "laptop-store", **env_for(s3, trusted=[signer], CELLCACHE_VERIFY="strict"))
    sh.user_ns["n"] = 5
    result = sh.run_cell(CELL)
    assert type(result.error_in_exec).__name__ == "RefusedRemoteEntry" and "x" not in sh.user_ns


@pytest.mark.timeout(60)
def test_verify_off_takes_any_signers_entry(make_shell, tmp_path: Path, s3, intruder) -> None:
    ci_pushes(make_shell, tmp_path, s3, intruder)
    sh = make_shell(tmp_path / "laptop-store", **env_for(s3, CELLCACHE_VERIFY="off"))
    run, caught = run_cell(sh)
    assert (run.status, run.reason.startswith(reasons.HIT_REMOTE), caught) == ("hit", True, [])


@pytest.mark.timeout(60)
def test_auto_push_sends_a_stored_miss_in_the_background(make_shell, tmp_path: Path, s3, signer) -> None:
    sh = make_shell(tmp_path / "ci-store", **env_for(s3, signer, trusted=[signer], CELLCACHE_PUSH="auto"))
    run, caught = run_cell(sh)
    assert run.status == "miss" and caught == []
    store = cellcache.api.session(sh).store
    assert store.pusher.drain(20)
    assert store.pusher.pushed == 1
    assert RemoteStore(s3.url, trusted=[signer.fingerprint]).fetch(run.key).entries


@pytest.mark.timeout(60)
def test_auto_push_without_a_key_pushes_nothing(make_shell, tmp_path: Path, s3, signer) -> None:
    sh = make_shell(tmp_path / "ci-store", **env_for(s3, trusted=[signer], CELLCACHE_PUSH="auto"))
    run, caught = run_cell(sh)
    assert run.status == "miss" and cellcache.api.session(sh).store.pusher is None
    assert not [k for k in s3.objects() if "/entries/" in k]


@pytest.mark.timeout(60)
def test_no_listing_on_the_hit_path_and_one_small_listing_on_a_miss(make_shell, tmp_path: Path, s3, signer, monkeypatch) -> None:
    import s3fs

    ci_pushes(make_shell, tmp_path, s3, signer)
    listed: list[str] = []
    original = s3fs.S3FileSystem._call_s3

    async def spy(self, method, *args, **kwargs):  # every S3 request s3fs makes goes through here
        if "list" in str(method).lower():
            listed.append(kwargs.get("Prefix", ""))
        return await original(self, method, *args, **kwargs)

    monkeypatch.setattr(s3fs.S3FileSystem, "_call_s3", spy)
    sync_original = s3fs.S3FileSystem.call_s3

    def sync_spy(self, method, *args, **kwargs):
        if "list" in str(method).lower():
            listed.append(kwargs.get("Prefix", ""))
        return sync_original(self, method, *args, **kwargs)

    monkeypatch.setattr(s3fs.S3FileSystem, "call_s3", sync_spy)
    sh = make_shell(tmp_path / "laptop-store", **env_for(s3, trusted=[signer]))
    run, _ = run_cell(sh)
    assert run.reason.startswith(reasons.HIT_REMOTE) and listed == []
    run, _ = run_cell(sh, "%%cached other\nz = 1\n")
    assert run.status == "miss"
    assert len(listed) == 1 and listed[0].rstrip("/").endswith(run.key)  # the key's own folder, never the bucket


@pytest.mark.timeout(30)
def test_a_full_push_queue_never_blocks_a_cell() -> None:
    import threading
    import time as _time

    from cellcache.remote.tiered import BackgroundPusher, RemoteHealth

    release = threading.Event()
    pusher = BackgroundPusher(lambda m: release.wait(20), RemoteHealth(), size=2)
    started = _time.monotonic()
    accepted = [pusher.submit(object()) for _ in range(10)]  # type: ignore[arg-type]
    assert _time.monotonic() - started < 0.5
    assert accepted.count(True) <= 3 and pusher.dropped >= 7  # one in flight, two queued, the rest left for `push`
    release.set()
    assert pusher.drain(10) and pusher.pushed == accepted.count(True)
