"""Faults against real servers: a remote that dies, stalls, refuses us, or a push killed half way."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from cellcache.store.local import LocalStore
from cellcache.remote.bucket import RemoteStore

from .conftest import BUCKET, free_port, moto_auth, wait_for
from .helpers import local_entry
from .test_tiered import env_for, run_cell


@pytest.mark.timeout(60)
def test_a_server_stopped_mid_run_costs_one_warning_and_the_cells_still_run(make_shell, tmp_path: Path, s3, signer, monkeypatch) -> None:
    from moto.server import ThreadedMotoServer

    port = free_port()
    own = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    own.start()
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
        import boto3

        boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1").create_bucket(Bucket=BUCKET)
        sh = make_shell(tmp_path / "store", **env_for(s3, trusted=[signer]))
        run, caught = run_cell(sh, "%%cached one\na = 1\n")
        assert run.status == "miss" and caught == []  # the remote answered: a plain 404
    finally:
        own.stop()
    started = time.monotonic()
    run, caught = run_cell(sh, "%%cached two\nb = 2\n")
    assert run.status == "miss" and sh.user_ns["b"] == 2
    assert len(caught) == 1 and "unavailable" in caught[0] and "local store only" in caught[0]
    run, caught = run_cell(sh, "%%cached three\nc = 3\n")
    assert run.status == "miss" and sh.user_ns["c"] == 3 and caught == []  # once per session
    assert time.monotonic() - started < 15
    sh.run_line_magic("cellcache", "info")


@pytest.mark.timeout(60)
def test_a_slow_server_is_bounded_by_the_timeout(make_shell, tmp_path: Path, s3, signer, monkeypatch) -> None:
    # A server that accepts connections (the kernel's backlog does) and never answers.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{silent.getsockname()[1]}")
        sh = make_shell(tmp_path / "store", **env_for(s3, trusted=[signer], CELLCACHE_REMOTE_TIMEOUT="1s"))
        started = time.monotonic()
        run, caught = run_cell(sh, "%%cached one\na = 1\n")
        first = time.monotonic() - started
        assert run.status == "miss" and sh.user_ns["a"] == 1
        assert len(caught) == 1 and "unavailable" in caught[0]
        assert first < 6, f"a cell waited {first:.1f}s for a remote with a 1 s timeout"
        started = time.monotonic()
        run, caught = run_cell(sh, "%%cached two\nb = 2\n")
        assert caught == [] and time.monotonic() - started < 1  # down for the session: no more waiting
    finally:
        silent.close()


@pytest.mark.timeout(60)
def test_bad_credentials_are_a_loud_configuration_warning(make_shell, tmp_path: Path, s3, signer, monkeypatch) -> None:
    moto_auth(s3.endpoint, enforce=True)
    try:
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAWRONGWRONGWRONG0")
        sh = make_shell(tmp_path / "store", **env_for(s3, trusted=[signer]))
        run, caught = run_cell(sh, "%%cached one\na = 1\n")
    finally:
        moto_auth(s3.endpoint, enforce=False)
    assert run.status == "miss" and sh.user_ns["a"] == 1
    assert len(caught) == 1 and "refused our credentials" in caught[0] and "configuration problem" in caught[0]


PUSH_SCRIPT = """
import sys
from pathlib import Path
from cellcache import config
from cellcache.remote import commands as remote
from cellcache.store.local import LocalStore
remote.push(config.resolve(), LocalStore(Path(sys.argv[1])))
"""


@pytest.mark.timeout(90)
def test_a_push_killed_with_sigkill_leaves_nothing_a_reader_takes(tmp_path: Path, s3, signer, monkeypatch) -> None:
    store = LocalStore(tmp_path / "ci")
    big = np.random.default_rng(0).integers(0, 255, size=96 << 20, dtype=np.uint8)  # multipart: 6 parts
    manifest = local_entry(store, {"big": big})
    env = {**os.environ, **env_for(s3, signer, trusted=[signer]), "PYTHONPATH": os.pathsep.join(sys.path)}
    client = s3.client()
    proc = subprocess.Popen([sys.executable, "-c", PUSH_SCRIPT, str(store.root)], env=env)
    try:
        assert wait_for(lambda: client.list_multipart_uploads(Bucket=BUCKET).get("Uploads"), timeout=30, interval=0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    names = list(s3.objects())
    assert not [n for n in names if "/entries/" in n or "/blobs/" in n], names  # the half-sent blob is not an object
    reader = RemoteStore(s3.url, trusted=[signer.fingerprint])
    assert reader.fetch(manifest.key).entries == ()
    # The next push completes, and the entry arrives whole.
    from cellcache.remote import commands as remote_ops
    from cellcache.config import resolve

    monkeypatch.setenv("CELLCACHE_REMOTE", s3.url)
    monkeypatch.setenv("CELLCACHE_SIGNING_KEY", str(signer.path))
    assert remote_ops.push(resolve(), store).pushed == (manifest.key,)
    entry = reader.fetch(manifest.key).entries[0]
    other = LocalStore(tmp_path / "reader")
    reader.download(entry, other.blob_path)
    assert other.blob_path(manifest.blob).read_bytes() == store.blob_path(manifest.blob).read_bytes()
