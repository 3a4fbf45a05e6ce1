"""Hostile input: flipped, swapped and planted blobs, planted links, traversal --outs, malformed re-signed manifests.

Each is a miss with exactly one CacheWarning, the right value, and nothing unpickled or written outside.
"""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest

import cellcache
from cellcache.store.local import LocalStore
from tests.conftest import run
from tests.store.conftest import only_manifest, resign, run_counting_warnings

SUM_CELL = "%%cached total\nimport numpy as np\nvalues = np.arange(200_000, dtype=np.int64)\ntotal = int(values.sum())"
EXPECTED = sum(range(200_000))


class _Plant:
    """A pickle that, if ever loaded, leaves a file behind: proof that a planted blob's code ran."""

    def __init__(self, sentinel: Path) -> None:
        self.sentinel = sentinel

    def __reduce__(self):
        return (open, (str(self.sentinel), "w"))


def _bundle_blob(store: LocalStore) -> Path:
    manifest = store.manifest(only_manifest(store).parent.name)
    return store.blob_path(manifest.blob)


def test_flipped_blob_is_a_miss_and_quarantined(shell, local):
    run(shell, SUM_CELL)
    cellcache.api.active.writer.flush()  # a large bundle is written behind the user
    blob = _bundle_blob(local)
    data = bytearray(blob.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(b ^ 0xFF for b in data[middle : middle + 64])  # 64 flipped bytes, same size
    blob.write_bytes(bytes(data))
    shell.user_ns.pop("total")
    messages = run_counting_warnings(shell, SUM_CELL)
    assert len(messages) == 1 and "does not match its digest" in messages[0]
    assert cellcache.last_run().status == "miss" and shell.user_ns["total"] == EXPECTED
    cellcache.api.active.writer.flush()
    assert list((local.root / "quarantine").iterdir()), "the bad blob is kept aside for verify to report"
    report = local.verify()
    assert report.broken == () and report.reclaimable >= len(data)  # the re-run rewrote the sound blob
    assert run_counting_warnings(shell, SUM_CELL) == [] and cellcache.last_run().status == "hit"


BIG_CELL = "%%cached big\nimport numpy as np\nbig = np.arange(5_000_000, dtype=np.float64)"  # 40 MB: three chunks


def test_a_flipped_byte_in_one_chunk_of_a_big_blob_is_a_miss_and_quarantined(shell, local):
    from cellcache.store import format as fmt

    run(shell, BIG_CELL)
    cellcache.api.active.writer.flush()
    manifest = local.manifest(only_manifest(local).parent.name)
    assert len(manifest.blob_chunks) == -(-manifest.blob_size // fmt.CHUNK) == 3  # checked chunk by chunk, in parallel
    blob = local.blob_path(manifest.blob)
    with open(blob, "r+b") as f:
        f.seek(fmt.CHUNK + 12345)
        byte = f.read(1)
        f.seek(fmt.CHUNK + 12345)
        f.write(bytes([byte[0] ^ 1]))  # one bit, in the middle chunk only
    shell.user_ns.pop("big")
    messages = run_counting_warnings(shell, BIG_CELL)
    assert len(messages) == 1 and "does not match its chunk digests" in messages[0], messages
    assert cellcache.last_run().status == "miss" and shell.user_ns["big"][-1] == 4_999_999.0
    assert list((local.root / "quarantine").iterdir())


def test_chunk_digests_of_another_blob_in_a_resigned_manifest_are_a_miss(shell, local):
    run(shell, BIG_CELL)
    run(shell, "%%cached other\nimport numpy as np\nother = np.ones(5_000_000)")
    cellcache.api.active.writer.flush()
    manifests = {m.step: (m, path) for path in (p for _, p in local._scan()) for m in [local.manifest(path.parent.name)]}
    foreign = list(manifests["other"][0].blob_chunks)
    resign(local, manifests["big"][1], lambda d: d.update(blob_chunks=foreign))  # well formed, signed, wrong
    shell.user_ns.pop("big")
    messages = run_counting_warnings(shell, BIG_CELL)
    assert len(messages) == 1 and "chunk digests" in messages[0], messages
    assert cellcache.last_run().status == "miss" and shell.user_ns["big"][-1] == 4_999_999.0


def test_swapped_blob_is_never_served(shell, local):
    run(shell, "%%cached a\nx = 'value of a'")
    run(shell, "%%cached b\nx = 'value of b'")
    blobs = {}
    for _, path in local._scan():
        manifest = local.manifest(path.parent.name)
        blobs[manifest.step] = local.blob_path(manifest.blob)
    blobs["a"].write_bytes(blobs["b"].read_bytes())  # a valid blob, under another address
    messages = run_counting_warnings(shell, "%%cached a\nx = 'value of a'")
    assert len(messages) == 1 and cellcache.last_run().status == "miss"
    assert shell.user_ns["x"] == "value of a"


def test_planted_pickle_is_never_unpickled(shell, local, tmp_path):
    run(shell, "%%cached a\nx = 1")
    sentinel = tmp_path / "pwned"
    blob = _bundle_blob(local)
    blob.write_bytes(pickle.dumps({"ns": {"x": _Plant(sentinel)}}))  # under a valid signed manifest
    messages = run_counting_warnings(shell, "%%cached a\nx = 1")
    assert len(messages) == 1 and cellcache.last_run().status == "miss"
    assert not sentinel.exists(), "the planted pickle was unpickled"

    # A planted entry: its own blob (address matching its content) and a manifest signed with another key.
    planted = LocalStore(local.root, key=b"an attacker's key, long enough!!")
    info = planted.put_blob({"ns": {"y": _Plant(sentinel)}, "record": {}})
    key = cellcache.last_run().key
    manifest = local.manifest(key)
    from dataclasses import replace

    from cellcache.store.manifest import FileDigest

    forged = replace(manifest, blob=info.digest, blob_size=info.size, outputs=("y",), implicit=(FileDigest("z", "0" * 32),))
    planted.commit(forged)
    assert len(list(local.candidates(key))) == 2
    shell.user_ns.pop("x")
    messages = run_counting_warnings(shell, "%%cached a\nx = 1")
    assert len(messages) == 1 and "signature" in messages[0]
    assert cellcache.last_run().status == "hit" and shell.user_ns["x"] == 1  # the sound entry still serves
    assert not sentinel.exists() and "y" not in shell.user_ns


@pytest.mark.parametrize("evil", ["../escaped.txt", "/tmp/cellcache-absolute-escape.txt", "sub/../../escaped.txt"])
def test_traversal_outs_in_a_resigned_manifest_writes_nothing(shell, local, workdir, evil):
    cell = "%%cached write -o out.txt\nopen('out.txt', 'w').write('data')\ndone = True"
    run(shell, cell)
    resign(local, only_manifest(local), lambda d: d["outs"][0].update(path=evil))
    (workdir / "out.txt").unlink()
    target = (workdir / evil) if not evil.startswith("/") else Path(evil)
    target.unlink(missing_ok=True)
    messages = run_counting_warnings(shell, cell)
    assert len(messages) == 1 and ("leaves the project" in messages[0] or "absolute" in messages[0]), messages
    assert not os.path.exists(os.path.normpath(target)), "a byte was written outside the project"
    assert cellcache.last_run().status == "miss" and (workdir / "out.txt").read_text() == "data"


def test_outs_outside_the_project_are_not_stored(shell, local, workdir, tmp_path):
    outside = tmp_path / "outside.txt"
    messages = run_counting_warnings(shell, f"%%cached w -o {outside}\nopen({str(outside)!r}, 'w').write('x')")
    assert len(messages) == 1 and "absolute" in messages[0] and "not stored" in messages[0]
    assert list(local._scan()) == []


MALFORMED = {
    "outputs-not-a-list": lambda d: d.update(outputs=5),
    "created-a-string": lambda d: d.update(created="yesterday"),
    "blob-not-hex": lambda d: d.update(blob="../../etc/passwd"),
    "size-negative": lambda d: d.update(blob_size=-1),
    "missing-key": lambda d: d.pop("key"),
    "unknown-loader": lambda d: d.update(blob_loader="eval"),
    "outs-not-objects": lambda d: d.update(outs=["x"]),
    "components-nested": lambda d: d.update(components={"code": {"a": 1}}),
    "extra-field": lambda d: d.update(surprise=1),
    "implicit-wrong": lambda d: d.update(implicit=[{"path": 1}]),
    "not-an-object": lambda d: d.clear() or d.update(version=2, key=[1]),
    "chunk-not-hex": lambda d: d.update(blob_chunks=["../x", "0" * 32]),
    "chunks-not-covering": lambda d: d.update(blob_chunks=["0" * 32] * 3),  # three chunks for a blob of one
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_resigned_manifest_is_a_miss_with_one_warning(shell, local, name):
    cell = "%%cached m\nx = 6 * 7"
    run(shell, cell)
    resign(local, only_manifest(local), MALFORMED[name])
    shell.user_ns.pop("x")
    messages = run_counting_warnings(shell, cell)
    assert len(messages) == 1 and ("malformed" in messages[0] or "manifest" in messages[0]), messages
    assert cellcache.last_run().status == "miss" and shell.user_ns["x"] == 42


def test_unsigned_or_garbage_manifest_is_a_miss(shell, local):
    cell = "%%cached m\nx = 6 * 7"
    run(shell, cell)
    path = only_manifest(local)
    for garbage in (b"", b"\x00" * 100, b"0" * 64 + b"\n{" + b"[" * 100_000, path.read_bytes().partition(b"\n")[2]):
        path.write_bytes(garbage)
        messages = run_counting_warnings(shell, cell)
        assert len(messages) == 1 and cellcache.last_run().status == "miss"


def test_planted_links_are_not_followed(shell, local, tmp_path):
    cell = "%%cached m\nx = 6 * 7"
    run(shell, cell)
    path = only_manifest(local)
    manifest = local.manifest(path.parent.name)
    outside = tmp_path / "outside"
    outside.mkdir()
    # A sound manifest and blob moved out of the store, with links left in their place.
    os.replace(path, outside / "m.json")
    path.symlink_to(outside / "m.json")
    messages = run_counting_warnings(shell, cell)
    assert len(messages) == 1 and "symbolic link" in messages[0]
    path.unlink()
    run(shell, cell)  # stores the entry again
    blob = local.blob_path(manifest.blob)
    os.replace(blob, outside / "blob")
    blob.symlink_to(outside / "blob")
    messages = run_counting_warnings(shell, cell)
    assert len(messages) == 1 and "symbolic link" in messages[0]
    assert cellcache.last_run().status == "miss" and not blob.is_symlink()  # the re-run replaced the link with the blob


def test_outs_may_climb_out_of_the_notebooks_folder_but_not_out_of_the_project(shell, local, workdir, monkeypatch):
    (workdir / "pyproject.toml").write_text("[project]\nname = 'p'\n")
    notebooks = workdir / "notebooks"
    notebooks.mkdir()
    (workdir / "results").mkdir()
    monkeypatch.chdir(notebooks)
    cell = "%%cached w -o ../results/out.txt\nopen('../results/out.txt', 'w').write('data')\ndone = 1"
    assert run_counting_warnings(shell, cell) == [] and list(local._scan())
    (workdir / "results" / "out.txt").unlink()
    assert run_counting_warnings(shell, cell) == [] and cellcache.last_run().status == "hit"
    assert (workdir / "results" / "out.txt").read_text() == "data"
    escape = "%%cached e -o ../../escaped.txt\nopen('../../escaped.txt', 'w').write('x')"
    messages = run_counting_warnings(shell, escape)
    assert len(messages) == 1 and "leaves the project" in messages[0] and "not stored" in messages[0]
    (workdir.parent / "escaped.txt").unlink()
