from __future__ import annotations

import stat
from pathlib import Path

import pytest

from cellcache.remote import signer_keys as keys
from cellcache.errors import ConfigError


def test_generate_writes_a_private_key_only_its_owner_reads(tmp_path: Path) -> None:
    info = keys.generate(tmp_path / "k")
    assert stat.S_IMODE((tmp_path / "k").stat().st_mode) == 0o600
    assert info.fingerprint.startswith("SHA256:") and len(info.fingerprint) == len("SHA256:") + 43
    assert keys.load(tmp_path / "k").fingerprint == info.fingerprint
    assert (tmp_path / "k.pub").read_text().split()[0] == info.fingerprint


def test_generate_never_overwrites_a_key(tmp_path: Path) -> None:
    first = keys.generate(tmp_path / "k")
    with pytest.raises(ConfigError, match="already exists"):
        keys.generate(tmp_path / "k")
    assert keys.load(tmp_path / "k").fingerprint == first.fingerprint


def test_default_path_is_outside_the_repository(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    monkeypatch.chdir(repo)
    info = keys.generate()
    assert not Path(info.path).resolve().is_relative_to(repo.resolve())
    assert Path(info.path).is_relative_to(tmp_path / "xdg-config")


def test_generate_refuses_a_path_inside_a_repository(tmp_path: Path) -> None:
    (tmp_path / "repo" / ".git").mkdir(parents=True)
    with pytest.raises(ConfigError, match="inside the repository"):
        keys.generate(tmp_path / "repo" / "signing_key")
    assert not (tmp_path / "repo" / "signing_key").exists()


def test_no_key_is_ever_made_by_looking_for_one(tmp_path: Path) -> None:
    assert keys.find(None) is None
    assert not keys.default_key_path().exists()


def test_fingerprint_and_path_id_round_trip(tmp_path: Path) -> None:
    key = keys.load(Path(keys.generate(tmp_path / "k").path))
    assert keys.signer_id(key.fingerprint) == key.public.id
    assert keys.fingerprint_from_id(key.public.id) == key.fingerprint


@pytest.mark.parametrize("bad", ["", "abc", "SHA256:", "SHA256:!!!!", "MD5:abcd", "SHA256:" + "A" * 10])
def test_a_malformed_trusted_signer_is_a_config_error(bad: str) -> None:
    with pytest.raises(ConfigError):
        keys.signer_id(bad)
