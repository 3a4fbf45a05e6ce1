"""A real S3 server for the remote's tests: moto's ThreadedMotoServer on 127.0.0.1, through s3fs.

One server per test session (starting one costs a second); every test gets it
reset through moto's reset endpoint, with a fresh bucket, and the environment
a kernel started by the test inherits (credentials, endpoint, CELLCACHE_REMOTE).
"""
from __future__ import annotations

import logging
import socket
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from cellcache import api
from cellcache.remote import signer_keys as keys
REMOTE_ENV = (
    "CELLCACHE_REMOTE",
    "CELLCACHE_TRUSTED_SIGNERS",
    "CELLCACHE_SIGNING_KEY",
    "CELLCACHE_VERIFY",
    "CELLCACHE_PUSH",
    "CELLCACHE_REMOTE_TIMEOUT",
)
BUCKET = "team-cache"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class S3:
    endpoint: str
    server: object
    port: int

    @property
    def url(self) -> str:
        return f"s3://{BUCKET}/team"

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1")

    def objects(self, prefix: str = "") -> dict[str, bytes]:
        client = self.client()
        listed = client.list_objects_v2(Bucket=BUCKET, Prefix=f"team/{prefix}").get("Contents", [])
        return {o["Key"]: client.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read() for o in listed}


def moto_auth(endpoint: str, enforce: bool) -> None:
    """Make moto check credentials (a wrong key is then a real 403), or stop checking them."""
    body = b"0" if enforce else b"inf"
    urllib.request.urlopen(urllib.request.Request(
        f"{endpoint}/moto-api/reset-auth", data=body, method="POST", headers={"Content-Type": "text/plain"}
    ), timeout=5).read()


@pytest.fixture(scope="session")
def moto_server() -> Iterator[tuple[object, int]]:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield server, port
    server.stop()


@pytest.fixture(autouse=True)
def _remote_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in REMOTE_ENV:
        monkeypatch.delenv(name, raising=False)
    # platformdirs' default key folder, so no test sees (or writes) the developer's key
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))


@pytest.fixture
def s3(moto_server: tuple[object, int], monkeypatch: pytest.MonkeyPatch) -> S3:
    server, port = moto_server
    endpoint = f"http://127.0.0.1:{port}"
    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"), timeout=5).read()
    moto_auth(endpoint, enforce=False)
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    s3 = S3(endpoint, server, port)
    s3.client().create_bucket(Bucket=BUCKET)
    return s3


@dataclass(frozen=True)
class Signer:
    path: Path
    fingerprint: str

    @property
    def key(self) -> keys.SigningKey:
        return keys.load(self.path)


def make_signer(folder: Path, name: str = "ci") -> Signer:
    folder.mkdir(parents=True, exist_ok=True)
    info = keys.generate(folder / f"{name}_key")
    return Signer(Path(info.path), info.fingerprint)


@pytest.fixture
def signer(tmp_path: Path) -> Signer:
    return make_signer(tmp_path / "keys", "ci")


@pytest.fixture
def intruder(tmp_path: Path) -> Signer:
    return make_signer(tmp_path / "keys", "intruder")


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


@pytest.fixture
def make_shell(monkeypatch: pytest.MonkeyPatch, workdir: Path):
    """Start a fresh real InteractiveShell with cellcache loaded, a store of its own, and these settings.

    Each call ends the previous shell: a second call is "another machine" (a fresh
    store, the same working copy contents).
    """
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    current: list[InteractiveShell] = []

    def close() -> None:
        while current:
            sh = current.pop()
            session = api.session(sh, build=False)
            store = getattr(session, "_store", None) if session is not None else None
            if store is not None and hasattr(store, "remote"):
                store.remote.close()
            sh.run_line_magic("unload_ext", "cellcache")
        InteractiveShell.clear_instance()

    def make(store_dir: Path, **env: str) -> InteractiveShell:
        close()
        monkeypatch.setenv("CELLCACHE_DIR", str(store_dir))
        for name in REMOTE_ENV:
            monkeypatch.delenv(name, raising=False)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        config = Config()
        config.HistoryManager.hist_file = ":memory:"
        sh = InteractiveShell.instance(config=config)
        sh.run_line_magic("load_ext", "cellcache")
        current.append(sh)
        return sh

    yield make
    close()
