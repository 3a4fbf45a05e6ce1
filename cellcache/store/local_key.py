"""The key that signs the local store's manifests, kept outside the store.

``CELLCACHE_KEY`` if it is set, otherwise a per-user key file (mode 0600)
under the user's config folder (``platformdirs``). A store folder carries no
key, so copying or planting one brings no valid signature with it.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from cellcache.errors import SigningKeyError
from cellcache.store.atomic import NotRegularFile, open_regular, read_fd

MIN_KEY_BYTES = 16  # 128 bits: below this an HMAC key is guessable, so it is refused rather than used
KEY_FILE_NAME = "local-signing.key"


def default_key_file() -> Path:
    return platformdirs.user_config_path("cellcache") / KEY_FILE_NAME


@dataclass(frozen=True)
class LocalKey:
    secret: bytes
    source: str  # "CELLCACHE_KEY" or the key file's path

    @property
    def key_id(self) -> str:
        """A public name for the key (it reveals nothing of it), so two machines can tell whether they share one."""
        return hmac.new(self.secret, b"cellcache key id", hashlib.sha256).hexdigest()[:16]

    def describe(self) -> str:
        where = "CELLCACHE_KEY (environment)" if self.source == "CELLCACHE_KEY" else f"{self.source} (per-user key file)"
        return f"{where}, id {self.key_id}"


def _checked(secret: bytes, where: str) -> bytes:
    secret = secret.strip()
    if len(secret) < MIN_KEY_BYTES:
        hint = "set it to a long random value" if where == "CELLCACHE_KEY" else f"delete {where} and a fresh key is made"
        raise SigningKeyError(
            f"the signing key in {where} is {len(secret)} bytes; at least {MIN_KEY_BYTES} are needed ({hint})"
        )
    return secret


def _read(path: Path) -> bytes:
    try:
        # No link followed: a key file replaced by a link to another user's file is not read through it.
        fd, _ = open_regular(path)
    except FileNotFoundError:
        raise
    except NotRegularFile as exc:
        raise SigningKeyError(f"cannot read the signing key {path}: it is {exc.what}") from exc
    except OSError as exc:
        raise SigningKeyError(f"cannot read the signing key {path}: {exc.strerror or exc}") from exc
    try:
        return read_fd(fd, 1 << 16)
    except OSError as exc:
        raise SigningKeyError(f"cannot read the signing key {path}: {exc.strerror or exc}") from exc
    finally:
        os.close(fd)


def _create(path: Path) -> None:
    """Write a fresh key to a temporary file, then link it into place.

    link() fails if the name exists, so when several kernels race, exactly one
    key wins, and no reader ever sees a partial one (a full disk fails the
    temporary file, never the key).
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex[:12]}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_hex(32).encode())
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process won the race; its key is the one
    finally:
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass


def load_signing_key(env_key: bytes | None = None, key_file: Path | None = None) -> LocalKey:
    """The key that signs this user's local manifests; SigningKeyError if it can't be had."""
    if env_key is not None:
        return LocalKey(_checked(env_key, "CELLCACHE_KEY"), "CELLCACHE_KEY")
    path = key_file or default_key_file()
    for attempt in range(3):
        try:
            return LocalKey(_checked(_read(path), str(path)), str(path))
        except FileNotFoundError:
            pass
        try:
            _create(path)
        except OSError as exc:
            if attempt == 2:
                raise SigningKeyError(f"cannot create the signing key {path}: {exc.strerror or exc}") from exc
            time.sleep(0.01 * (attempt + 1))
    raise SigningKeyError(f"cannot read or create the signing key {path}")
