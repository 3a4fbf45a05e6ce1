from __future__ import annotations

import pytest

from cellcache.config import DEFAULT_DIR, resolve
from cellcache.errors import ConfigError


def test_default_is_dot_cellcache_in_the_working_directory(tmp_path):
    cfg = resolve(cwd=tmp_path, env={})
    assert cfg.dir == (tmp_path / DEFAULT_DIR).resolve()
    assert (cfg.remote, cfg.key, cfg.disable) == (None, None, False)


def test_precedence_defaults_pyproject_environment(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[tool.cellcache]\ndir = "cache-here"\nremote = "s3://bucket/x"\n')
    sub = tmp_path / "notebooks"
    sub.mkdir()
    cfg = resolve(cwd=sub, env={})
    assert cfg.dir == (tmp_path / "cache-here").resolve()  # relative to the pyproject, not the notebook
    assert cfg.remote == "s3://bucket/x"
    cfg = resolve(cwd=sub, env={"CELLCACHE_DIR": "/tmp/elsewhere", "CELLCACHE_REMOTE": "memory://r", "CELLCACHE_KEY": "k"})
    assert str(cfg.dir) == "/tmp/elsewhere" and cfg.remote == "memory://r" and cfg.key == b"k"
    assert cfg.with_overrides(dir=tmp_path / "flag").dir == tmp_path / "flag"


@pytest.mark.parametrize(("value", "expected"), [("1", True), ("true", True), ("0", False), ("", False)])
def test_disable_env(tmp_path, value, expected):
    assert resolve(cwd=tmp_path, env={"CELLCACHE_DISABLE": value}).disable is expected


def test_unknown_pyproject_setting_is_a_clear_error(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[tool.cellcache]\ndirectory = "x"\n')
    with pytest.raises(ConfigError, match="unknown .* setting.*directory"):
        resolve(cwd=tmp_path, env={})


def test_broken_pyproject_is_a_clear_error(tmp_path):
    (tmp_path / "pyproject.toml").write_text("[tool.cellcache\n")
    with pytest.raises(ConfigError, match="cannot read"):
        resolve(cwd=tmp_path, env={})
