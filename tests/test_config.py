from __future__ import annotations

import cellcache

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


def test_project_root_is_the_nearest_folder_with_pyproject_or_git(tmp_path):
    from cellcache.config import project_root

    deep = tmp_path / "repo" / "sub" / "nbs"
    deep.mkdir(parents=True)
    assert project_root(deep) == deep.resolve(), "no marker: the folder itself"
    (tmp_path / "repo" / ".git").mkdir()
    assert project_root(deep) == (tmp_path / "repo").resolve()
    (tmp_path / "repo" / "sub" / "pyproject.toml").write_text("")
    assert project_root(deep) == (tmp_path / "repo" / "sub").resolve(), "the nearest marker wins"


def test_every_start_inside_a_project_finds_one_store_and_relative_dirs_resolve_against_the_root(tmp_path):
    (tmp_path / ".git").mkdir()
    (tmp_path / "nbs" / "deeper").mkdir(parents=True)
    dirs = {resolve(cwd=c, env={}).dir for c in (tmp_path, tmp_path / "nbs", tmp_path / "nbs" / "deeper")}
    assert dirs == {(tmp_path / DEFAULT_DIR).resolve()}
    assert resolve(cwd=tmp_path / "nbs", env={"CELLCACHE_DIR": "cache"}).dir == (tmp_path / "cache").resolve()
    assert resolve(cwd=tmp_path / "nbs", env={}).root == tmp_path.resolve()


def test_the_kernel_notebook_comes_from_jupyter_vscode_or_nothing(tmp_path, monkeypatch):
    from cellcache.config import kernel_notebook

    (tmp_path / "pyproject.toml").write_text("")
    nb = tmp_path / "nbs" / "a.ipynb"
    nb.parent.mkdir()
    nb.write_text("{}")
    assert kernel_notebook({"JPY_SESSION_NAME": str(nb)}) == "nbs/a.ipynb"
    assert kernel_notebook({}, {"__vsc_ipynb_file__": str(nb)}) == "nbs/a.ipynb"
    assert kernel_notebook({}, {}) == "", "a plain IPython session is its own scope"
    # Jupyter Server may give a path relative to its own root; the kernel runs in the notebook's folder.
    monkeypatch.chdir(nb.parent)
    assert kernel_notebook({"JPY_SESSION_NAME": "server/root/relative/a.ipynb"}) == "nbs/a.ipynb"


def test_a_plain_ipython_anywhere_in_the_project_uses_the_project_store_and_is_its_own_scope(tmp_path, monkeypatch):
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config as ShellConfig

    (tmp_path / "pyproject.toml").write_text("")
    deep = tmp_path / "analysis" / "scratch"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    InteractiveShell.clear_instance()
    config = ShellConfig()
    config.HistoryManager.hist_file = ":memory:"
    shell = InteractiveShell.instance(config=config)
    try:
        shell.run_line_magic("load_ext", "cellcache")
        session = cellcache.api.session(shell)
        assert session.config.dir == (tmp_path / DEFAULT_DIR).resolve()
        assert session.notebook == ""
        shell.user_ns["__vsc_ipynb_file__"] = str(tmp_path / "analysis" / "vs.ipynb")
        assert session.notebook == "analysis/vs.ipynb", "VS Code's variable, even when set after the extension loaded"
    finally:
        shell.run_line_magic("unload_ext", "cellcache")
        InteractiveShell.clear_instance()


@pytest.mark.parametrize("setting", ['remote_timeout = 5', 'remote_timeout = "5"'])
def test_a_bare_number_in_a_duration_setting_is_refused(tmp_path, setting):
    # issue 25: durations always carry a unit, in files too.
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "pyproject.toml").write_text(f"[tool.cellcache]\n{setting}\n")
    with pytest.raises(ConfigError, match=r"remote_timeout: duration '5' has no unit"):
        resolve(tmp_path / "a", env={})
    (tmp_path / "b" / ".git").mkdir(parents=True)
    with pytest.raises(ConfigError, match=r"CELLCACHE_REMOTE_TIMEOUT: remote_timeout: duration '2' has no unit"):
        resolve(tmp_path / "b", env={"CELLCACHE_REMOTE_TIMEOUT": "2"})


def test_a_duration_setting_with_a_unit(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[tool.cellcache]\nremote_timeout = "2s"\n')
    assert resolve(tmp_path, env={}).remote_timeout == 2.0
    assert resolve(tmp_path, env={"CELLCACHE_REMOTE_TIMEOUT": "1m"}).remote_timeout == 60.0
