"""The signing key: outside the store, created atomically, refused when empty or short, named by `%cellcache info`."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import cellcache
from cellcache.errors import SigningKeyError
from cellcache.store.local_key import MIN_KEY_BYTES, default_key_file, load_signing_key
from cellcache.store.local import LocalStore
from tests.conftest import run
from tests.store.conftest import run_counting_warnings

CELL = "%%cached k\nx = 6 * 7"


def test_the_key_lives_in_the_users_config_folder_not_in_the_store(shell, store_dir):
    run(shell, CELL)
    key_file = default_key_file()
    assert key_file.is_file() and key_file.stat().st_mode & 0o077 == 0
    assert not store_dir.joinpath("secret").exists()
    assert key_file.read_bytes().strip() not in b"".join(p.read_bytes() for p in store_dir.rglob("*") if p.is_file())


def test_a_copied_store_carries_no_key(shell, store_dir, tmp_path):
    run(shell, CELL)
    copy = tmp_path / "copied"
    shutil.copytree(store_dir, copy)
    key = cellcache.last_run().key
    assert LocalStore(copy).manifest(key) is not None  # the same user: the same key
    other_user = LocalStore(copy, key_file=tmp_path / "other-user" / "key")
    (found,) = other_user.candidates(key)
    assert found.manifest is None and "signature does not match" in found.problem


def test_cellcache_key_signs_when_set(shell, store_dir, monkeypatch):
    monkeypatch.setenv("CELLCACHE_KEY", "k" * 40)
    run(shell, "%cellcache info")
    shell.run_line_magic("unload_ext", "cellcache")
    shell.run_line_magic("load_ext", "cellcache")
    run(shell, CELL)
    key = cellcache.last_run().key
    assert LocalStore(store_dir, key=b"k" * 40).manifest(key) is not None
    monkeypatch.delenv("CELLCACHE_KEY")
    (found,) = LocalStore(store_dir).candidates(key)
    assert found.manifest is None, "the per-user key file must not verify what CELLCACHE_KEY signed"


def test_info_says_which_key_signs(shell, capsys, monkeypatch):
    shell.run_line_magic("cellcache", "info")
    out = capsys.readouterr().out
    assert f"signing key: {default_key_file()} (per-user key file), id " in out
    monkeypatch.setenv("CELLCACHE_KEY", "k" * 40)
    shell.run_line_magic("unload_ext", "cellcache")
    shell.run_line_magic("load_ext", "cellcache")
    shell.run_line_magic("cellcache", "info")
    out = capsys.readouterr().out
    assert "signing key: CELLCACHE_KEY (environment), id " in out
    monkeypatch.setenv("CELLCACHE_KEY", "short")
    shell.run_line_magic("unload_ext", "cellcache")
    shell.run_line_magic("load_ext", "cellcache")
    shell.run_line_magic("cellcache", "info")
    assert "signing key: unusable: the signing key in CELLCACHE_KEY is 5 bytes" in capsys.readouterr().out


@pytest.mark.parametrize("value", ["", "short", " " * 40])
def test_empty_or_short_cellcache_key_is_refused_loudly(shell, monkeypatch, value):
    monkeypatch.setenv("CELLCACHE_KEY", value)
    shell.run_line_magic("unload_ext", "cellcache")
    shell.run_line_magic("load_ext", "cellcache")
    for _ in range(2):
        messages = run_counting_warnings(shell, CELL)
        assert len(messages) == 1 and f"at least {MIN_KEY_BYTES} are needed" in messages[0]
        assert shell.user_ns["x"] == 42 and cellcache.last_run().status == "miss"


def test_short_or_unreadable_key_file_is_refused(shell, tmp_path):
    key_file = default_key_file()
    key_file.parent.mkdir(parents=True, exist_ok=True)
    key_file.write_bytes(b"")  # what a full disk left behind before keys were written by tmp + link
    messages = run_counting_warnings(shell, CELL)
    assert len(messages) == 1 and "is 0 bytes" in messages[0] and f"delete {key_file}" in messages[0]
    key_file.unlink()
    key_file.mkdir()  # unreadable, even for root
    messages = run_counting_warnings(shell, CELL)
    assert len(messages) == 1 and "cannot read the signing key" in messages[0]
    assert shell.user_ns["x"] == 42
    with pytest.raises(SigningKeyError):
        load_signing_key(None, key_file)


def test_a_linked_key_file_is_not_read_through(tmp_path):
    real = tmp_path / "someone-elses-key"
    real.write_bytes(b"x" * 64)
    link = tmp_path / "cfg" / "key"
    link.parent.mkdir()
    link.symlink_to(real)
    with pytest.raises(SigningKeyError, match="cannot read"):
        load_signing_key(None, link)


def test_racing_processes_agree_on_one_complete_key(tmp_path):
    """Eight processes create the key at once: exactly one wins, and nobody reads a partial key."""
    key_file = tmp_path / "cfg" / "key"
    script = textwrap.dedent(
        f"""
        import sys, time
        from cellcache.store.local_key import load_signing_key
        from pathlib import Path
        start = float(sys.argv[1])
        while time.time() < start:
            pass
        print(load_signing_key(None, Path({str(key_file)!r})).secret.decode())
        """
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2]) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    import time

    start = time.time() + 1.5
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(start)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for _ in range(8)
    ]
    outs = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), [e for _, e in outs]
    keys = {o.strip() for o, _ in outs}
    assert len(keys) == 1 and len(keys.pop()) == 64
    assert not [p for p in key_file.parent.iterdir() if p.name != key_file.name], "no temporary key file is left"
