"""No check-then-use on store paths (issue 23.5): a file swapped in between a check and a read is never read.

A thread swaps a blob's name back and forth between the real file and a bait
(a link to, or a copy of, a valid blob of the same size holding another value)
while the store reads it. Each read must give the real value or refuse; the
bait never gets through. Bounded to a few seconds each.
"""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from cellcache.errors import CacheError
from cellcache.store.local import LocalStore
from cellcache.store.manifest import Manifest, OutFile

SECONDS = 2.5


def _swapper(path: Path, real: Path, bait: Path, as_link: bool, stop: threading.Event) -> threading.Thread:
    def swap() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            tmp = path.with_name(f".swap{n}")
            if as_link:
                os.symlink(bait, tmp)
            else:
                os.link(bait, tmp)
            os.replace(tmp, path)
            tmp = path.with_name(f".swap{n}b")
            os.link(real, tmp)
            os.replace(tmp, path)

    thread = threading.Thread(target=swap, daemon=True)
    thread.start()
    return thread


def _pair(store: LocalStore, tmp_path: Path, real_value: dict, bait_value: dict) -> tuple[Manifest, Path, Path]:
    real = store.put_blob({"ns": real_value, "record": {}})
    other = store.put_blob({"ns": bait_value, "record": {}})
    assert real.size == other.size
    keep_real, keep_bait = tmp_path / "real", tmp_path / "bait"
    os.link(store.blob_path(real.digest), keep_real)
    os.link(store.blob_path(other.digest), keep_bait)
    manifest = Manifest(key="a" * 32, step="s", created=time.time(), seconds=1.0, blob=real.digest, blob_size=real.size,
                        blob_loader=real.loader, outputs=tuple(real_value))
    store.commit(manifest)
    return manifest, keep_real, keep_bait


@pytest.mark.timeout(60)
def test_a_link_swapped_in_under_a_blob_is_never_followed(tmp_path):
    # verify_local = false trusts the disk's bytes: only the no-follow open stands between a planted link and a load.
    store = LocalStore(tmp_path / "store", verify_local=False)
    manifest, real, bait = _pair(store, tmp_path, {"x": 1}, {"x": 2})
    stop = threading.Event()
    thread = _swapper(store.blob_path(manifest.blob), real, bait, as_link=True, stop=stop)
    figures = {"loads": 0, "real": 0, "refused": 0, "bait": 0}
    try:
        deadline = time.monotonic() + SECONDS
        while time.monotonic() < deadline:
            figures["loads"] += 1
            try:
                value = store.load(manifest)["ns"]
            except CacheError:
                figures["refused"] += 1
                continue
            figures["real" if value == {"x": 1} else "bait"] += 1
    finally:
        stop.set()
        thread.join()
    print(f"\nlink swap under load: {figures}")
    assert figures["refused"] > 0 and figures["real"] > 0, "the swap did not race the reads"
    assert figures["bait"] == 0, "a read followed a link swapped in after its check"


@pytest.mark.timeout(60)
def test_an_outs_file_is_copied_from_the_bytes_that_were_checked(tmp_path, monkeypatch):
    project = tmp_path / "project"
    project.mkdir()
    (project / ".git").mkdir()
    monkeypatch.chdir(project)
    store = LocalStore(tmp_path / "store")
    real_src, bait_src = tmp_path / "real.bin", tmp_path / "bait.bin"
    real_src.write_bytes(b"R" * 200_000)
    bait_src.write_bytes(b"B" * 200_000)
    digest, size = store.put_file_blob(real_src)
    os.link(store.blob_path(digest), tmp_path / "real")
    out = OutFile(path="out.bin", blob=digest, size=size, mode=0o644)
    target = project / "out.bin"
    stop = threading.Event()
    # A regular file swapped in (no link): only reading through the descriptor that was hashed keeps it out.
    thread = _swapper(store.blob_path(digest), tmp_path / "real", bait_src, as_link=False, stop=stop)
    figures = {"restores": 0, "real": 0, "refused": 0, "bait": 0}
    try:
        deadline = time.monotonic() + SECONDS
        while time.monotonic() < deadline:
            target.unlink(missing_ok=True)
            figures["restores"] += 1
            try:
                store.restore_file(out, target)
            except CacheError:
                figures["refused"] += 1  # the bait was hashed, refused and quarantined; the swapper puts the name back
                continue
            figures["real" if target.read_bytes()[:1] == b"R" else "bait"] += 1
    finally:
        stop.set()
        thread.join()
    print(f"\nfile swap under restore: {figures}")
    assert figures["real"] > 0
    assert figures["bait"] == 0, "an --outs file was copied from bytes other than those checked"
