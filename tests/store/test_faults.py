"""Where a miss was promised: a store path that is a file, a read-only filesystem, a full disk.

Each gives the cell's value, exactly one CacheWarning per cell, and no traceback.
The filesystem tests mount a small tmpfs, so they need root; they are skipped otherwise.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Iterator

import pytest
from click.testing import CliRunner

import cellcache
from cellcache.cli.main import main
from cellcache.store.local import LocalStore
from tests.conftest import run
from tests.store.conftest import run_counting_warnings

CELL = "%%cached f\nx = 6 * 7"
BIG = "%%cached big\nblob = bytes(range(256)) * 4096 * {n}\nsize = len(blob)"


def use_store(shell, monkeypatch, path: Path) -> None:
    monkeypatch.setenv("CELLCACHE_DIR", str(path))
    shell.run_line_magic("unload_ext", "cellcache")
    shell.run_line_magic("load_ext", "cellcache")


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mount = tmp_path / "mnt"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(mount: Path) -> Path:
    """Fill the filesystem to the last byte."""
    filler = mount / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for chunk in (1 << 16, 4096, 512, 1):
            try:
                while True:
                    os.write(fd, b"\0" * chunk)
            except OSError:
                pass
    finally:
        os.close(fd)
    return filler


def _remount(mount: Path, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(mount)], check=True)


def test_a_store_path_that_is_a_file_gives_one_warning_per_cell(shell, monkeypatch, tmp_path, capsys):
    path = tmp_path / "not-a-folder"
    path.write_text("I am a file")
    use_store(shell, monkeypatch, path)
    for _ in range(2):
        messages = run_counting_warnings(shell, CELL)
        assert len(messages) == 1 and "is a file, not a folder" in messages[0], messages
        assert shell.user_ns["x"] == 42 and cellcache.last_run().status == "miss"
    shell.run_line_magic("cellcache", "stats")
    for args in (["stats"], ["ls"], ["verify"], ["gc", "--max-size", "0B", "--yes"], ["invalidate", "f"]):
        result = CliRunner().invoke(main, args, env={"CELLCACHE_DIR": str(path)})
        assert result.exception is None or isinstance(result.exception, SystemExit), (args, result.exception)
        assert "Traceback" not in result.output
    assert path.read_text() == "I am a file"


def test_a_read_only_store_hits_and_each_miss_warns_once(shell, monkeypatch, tmpfs, capsys):
    store = tmpfs / "store"
    use_store(shell, monkeypatch, store)
    run(shell, CELL)
    cellcache.api.active.store.close()  # the first kernel lets go of the store's files (a remount needs none open)
    _remount(tmpfs, "ro")
    use_store(shell, monkeypatch, store)  # a new kernel on the read-only store
    shell.user_ns.pop("x")
    assert run_counting_warnings(shell, CELL) == []
    assert cellcache.last_run().status == "hit" and shell.user_ns["x"] == 42
    messages = run_counting_warnings(shell, "%%cached g\ny = 1")
    assert len(messages) == 1 and "not stored" in messages[0] and shell.user_ns["y"] == 1
    capsys.readouterr()
    shell.run_line_magic("cellcache", "stats")
    assert "f" in capsys.readouterr().out
    for args in (["stats"], ["ls"], ["verify"]):
        result = CliRunner().invoke(main, args, env={"CELLCACHE_DIR": str(store)})
        assert result.exit_code == 0 and "Traceback" not in result.output, (args, result.output, result.exception)
    for line in ("clear", "gc --max-size 0B --yes", "invalidate f"):
        capsys.readouterr()
        shell.run_line_magic("cellcache", line)  # must not raise
        assert "cellcache: cannot" in capsys.readouterr().err
    for args in (["clear", "--yes"], ["gc", "--max-size", "0B", "--yes"], ["invalidate", "f"]):
        result = CliRunner().invoke(main, args, env={"CELLCACHE_DIR": str(store)})
        assert isinstance(result.exception, SystemExit) and result.exit_code == 1, (args, result.output, result.exception)
        assert "cannot" in result.output and "Traceback" not in result.output
    assert len(list(LocalStore(store)._scan())) == 1, "nothing was dropped from a store that can't be written"


def test_a_full_disk_costs_one_warning_and_no_result(shell, monkeypatch, tmpfs):
    store = tmpfs / "store"
    use_store(shell, monkeypatch, store)
    run(shell, CELL)
    filler = _fill(tmpfs)
    for n in (1, 2):
        messages = run_counting_warnings(shell, BIG.format(n=n))
        cellcache.api.active.writer.flush()
        assert len(messages) <= 1 and shell.user_ns["size"] == 1024 * 1024 * n
    failures = cellcache.api.active.writer.take_failures()
    assert len(messages) + len(failures) >= 1, "a result that was not stored is reported"
    shell.user_ns.pop("x")
    assert run_counting_warnings(shell, CELL) == [] and shell.user_ns["x"] == 42, "the earlier entry still hits"
    leftovers = [p for p in store.rglob("*.tmp")]
    assert leftovers == [], "a failed write leaves no temp file behind"
    filler.unlink()
    run(shell, BIG.format(n=1))
    cellcache.api.active.writer.flush()
    run(shell, BIG.format(n=1))
    assert cellcache.last_run().status == "hit"


def test_a_full_disk_while_the_key_is_created_leaves_no_empty_key(shell, monkeypatch, tmpfs):
    config = tmpfs / "config"
    config.mkdir()
    monkeypatch.setenv("XDG_CONFIG_HOME", str(config))
    filler = _fill(tmpfs)
    use_store(shell, monkeypatch, shell_store := Path(os.environ["CELLCACHE_DIR"]))
    messages = run_counting_warnings(shell, CELL)
    assert len(messages) == 1 and "signing key" in messages[0] and shell.user_ns["x"] == 42
    assert not [p for p in config.rglob("*") if p.is_file()], "no 0-byte or partial key is left for good"
    filler.unlink()
    assert run_counting_warnings(shell, CELL) == [] and cellcache.last_run().status == "miss"
    assert run_counting_warnings(shell, CELL) == [] and cellcache.last_run().status == "hit"
    assert LocalStore(shell_store).signing_key.secret
