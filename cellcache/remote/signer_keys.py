"""Ed25519 signing keys for the shared remote store: make one, find one, name one.

Trusting a key means letting its holder run code on your machine: a cached
entry is a pickle, and a reader unpickles what a trusted signer pushed. Only
machines that push (CI, a maintainer) hold a private key, and cellcache never
creates one on its own: ``cellcache keys generate`` is the only way a key is
made. The default place is the user's config folder (platformdirs), outside
every repository, so a key is never committed by accident.

A key is named by its fingerprint, ``SHA256:`` and the unpadded base64 of the
SHA-256 of the raw 32-byte public key, as OpenSSH names keys.
"""
from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from cellcache.errors import ConfigError

FINGERPRINT_PREFIX = "SHA256:"


def default_key_path() -> Path:
    import platformdirs

    return Path(platformdirs.user_config_dir("cellcache", appauthor=False)) / "signing_key"


def fingerprint_of(public_raw: bytes) -> str:
    digest = hashlib.sha256(public_raw).digest()
    return FINGERPRINT_PREFIX + base64.b64encode(digest).decode().rstrip("=")


def signer_id(fingerprint: str) -> str:
    """The fingerprint as a path component (hex): base64 has '/' and '+', which object keys should not."""
    text = fingerprint.strip()
    if not text.startswith(FINGERPRINT_PREFIX):
        raise ConfigError(f"trusted signer {fingerprint!r} is not a fingerprint (expected SHA256:…, from `cellcache keys show`)")
    body = text[len(FINGERPRINT_PREFIX) :]
    try:
        digest = base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
    except ValueError:
        digest = b""
    if len(digest) != 32:
        raise ConfigError(f"trusted signer {fingerprint!r} is not a SHA256 fingerprint of an Ed25519 key")
    return digest.hex()


def fingerprint_from_id(hex_id: str) -> str:
    return FINGERPRINT_PREFIX + base64.b64encode(bytes.fromhex(hex_id)).decode().rstrip("=")


@dataclass(frozen=True)
class PublicKey:
    raw: bytes

    @property
    def fingerprint(self) -> str:
        return fingerprint_of(self.raw)

    @property
    def id(self) -> str:
        return hashlib.sha256(self.raw).hexdigest()

    def verify(self, signature: bytes, message: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(self.raw).verify(signature, message)
        except (InvalidSignature, ValueError):
            return False
        return True


@dataclass(frozen=True)
class SigningKey:
    """A private key loaded from ``path``."""

    path: Path
    _private: Ed25519PrivateKey

    @property
    def public(self) -> PublicKey:
        raw = self._private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return PublicKey(raw)

    @property
    def fingerprint(self) -> str:
        return self.public.fingerprint

    def sign(self, message: bytes) -> bytes:
        return self._private.sign(message)


@dataclass(frozen=True)
class KeyInfo:
    """What `cellcache keys show|generate` prints."""

    path: str
    fingerprint: str
    public_key: str  # base64 of the raw public key

    def to_json(self) -> dict[str, str]:
        return {"path": self.path, "fingerprint": self.fingerprint, "public_key": self.public_key}


def _info(key: SigningKey) -> KeyInfo:
    return KeyInfo(path=str(key.path), fingerprint=key.fingerprint, public_key=base64.b64encode(key.public.raw).decode())


def _inside_repository(path: Path) -> Path | None:
    for folder in path.resolve().parents:
        if (folder / ".git").exists():
            return folder
    return None


def generate(path: Path | None = None, *, allow_in_repository: bool = False) -> KeyInfo:
    """Write a new private key (mode 0600) and its ``.pub``; never overwrites an existing key."""
    path = Path(path) if path is not None else default_key_path()
    repo = _inside_repository(path)
    if repo is not None and not allow_in_repository:
        raise ConfigError(
            f"refusing to write a private key inside the repository at {repo}; "
            "choose a path outside it (the default is your user config folder)"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    try:
        # O_EXCL: an existing key is someone's identity; replacing it would silently untrust their entries.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ConfigError(f"a key already exists at {path}; `cellcache keys show` prints its fingerprint") from None
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    key = SigningKey(path, private)
    info = _info(key)
    Path(f"{path}.pub").write_text(f"{info.fingerprint} {info.public_key}\n", encoding="utf-8")
    return info


def load(path: Path) -> SigningKey:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the signing key {path}: {exc}") from exc
    try:
        private = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{path} is not an unencrypted PEM private key: {exc}") from exc
    if not isinstance(private, Ed25519PrivateKey):
        raise ConfigError(f"{path} is not an Ed25519 key")
    return SigningKey(Path(path), private)


def find(configured: Path | None) -> SigningKey | None:
    """This machine's key: the configured path (which must exist), else the default path if a key is there."""
    if configured is not None:
        return load(configured)
    default = default_key_path()
    return load(default) if default.is_file() else None


def show(configured: Path | None) -> KeyInfo | None:
    key = find(configured)
    return _info(key) if key is not None else None
