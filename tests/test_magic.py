"""Loading the extension and parsing the magics' lines."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

import cellcache
from tests.conftest import run


def cell_magic_error(shell, line: str) -> str:
    with pytest.raises(UsageError) as info:
        shell.run_cell_magic("cached", line, "y = 1\n")
    return str(info.value)


def test_load_ext_registers_both_magics(shell):
    assert "cached" in shell.magics_manager.magics["cell"]
    assert "cellcache" in shell.magics_manager.magics["line"]


def _session_hooks(shell) -> list:
    return [cb for cb in shell.events.callbacks["pre_run_cell"] if type(getattr(cb, "__self__", None)).__name__ == "Extension"]


def test_loading_twice_is_harmless(shell):
    session = cellcache.api.session(shell)
    shell.run_line_magic("load_ext", "cellcache")
    assert cellcache.api.session(shell) is session and len(_session_hooks(shell)) == 1
    shell.run_line_magic("reload_ext", "cellcache")
    assert len(_session_hooks(shell)) == 1
    run(shell, "%%cached twice\ny = 1")
    assert cellcache.last_run().name == "twice"


def test_unload_removes_magics_and_hooks(shell):
    shell.run_line_magic("unload_ext", "cellcache")
    assert "cached" not in shell.magics_manager.magics["cell"]
    assert "cellcache" not in shell.magics_manager.magics["line"]
    assert not _session_hooks(shell)
    assert cellcache.last_run() is None
    shell.run_line_magic("load_ext", "cellcache")  # the fixture unloads again at teardown
    run(shell, "%%cached back\ny = 1")
    assert cellcache.last_run().name == "back"


def test_extension_loads_through_config(tmp_path):
    env = {**os.environ, "CELLCACHE_DIR": str(tmp_path / "store"), "IPYTHONDIR": str(tmp_path / "ipy")}
    code = "%%cached from_config\nanswer = 42\nprint('answer', answer)"
    proc = subprocess.run(
        [sys.executable, "-m", "IPython", "--no-banner", "--InteractiveShellApp.extensions=['cellcache']", "-c", code],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert "answer 42" in proc.stdout
    assert list((tmp_path / "store" / "entries").glob("*/*/*.json"))


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("step --strategy fastest", r"-s/--strategy: invalid choice: 'fastest' (choose from code_hash, input_hash, off)"),
        ("step --bogus", "unrecognized arguments: --bogus"),
        ("step --ttl soon", "--ttl: invalid duration 'soon'"),
        ("a b", "unrecognized arguments: b"),
        ("step -d 'unclosed", "cannot parse"),
    ],
)
def test_wrong_flags_are_usage_errors_naming_the_flag(shell, line, expected):
    message = cell_magic_error(shell, line)
    assert expected.replace("'", "").replace("(", "").replace(")", "") in message.replace("'", "").replace("(", "").replace(")", "")
    assert "y" not in shell.user_ns  # nothing ran


def test_flags_parse_into_the_spec(shell, monkeypatch):
    seen = []
    monkeypatch.setattr(cellcache.api.session(shell), "run", lambda spec, body: seen.append((spec, body)))
    shell.run_cell_magic("cached", "prep -d a.csv 'data/*.csv' -o out.bin -s input_hash -f -e -i log bar --ttl 12h", "x = 1\n")
    spec, body = seen[0]
    assert spec.name == "prep" and spec.deps == ("a.csv", "data/*.csv") and spec.outs == ("out.bin",)
    assert spec.strategy == "input_hash" and spec.force and spec.explain
    assert spec.ignore == frozenset({"log", "bar"}) and spec.ttl == 12 * 3600
    assert body == "x = 1\n"


def test_cellcache_stats_info_invalidate_clear(shell):
    run(shell, "%%cached alpha\na = 1")
    run(shell, "%%cached beta\nb = 2")
    run(shell, "%%cached alpha\na = 1")
    with capture_output() as out:
        run(shell, "%cellcache stats")
    assert "alpha" in out.stdout and "beta" in out.stdout and "50%" in out.stdout
    with capture_output() as out:
        run(shell, "%cellcache info")
    assert str(cellcache.api.session(shell).config.dir) in out.stdout
    with capture_output() as out:
        run(shell, "%cellcache invalidate alpha")
    assert "1 entry dropped" in out.stdout
    shell.user_ns["runs"] = 0
    run(shell, "%%cached alpha\na = 1")
    assert cellcache.last_run().hit is False and cellcache.last_run().reason == "invalidated"
    run(shell, "%%cached beta\nb = 2")
    assert cellcache.last_run().hit is True  # only alpha was dropped
    with capture_output() as out:
        run(shell, "%cellcache clear")
    assert "cleared" in out.stdout
    run(shell, "%%cached beta\nb = 2")
    assert cellcache.last_run().hit is False


@pytest.mark.parametrize("line", ["bogus", "invalidate", "invalidate a b", "gc", "gc --max-size lots", "stats extra"])
def test_cellcache_usage_errors(shell, line):
    with pytest.raises(UsageError, match="usage: %cellcache"):
        shell.run_line_magic("cellcache", line)


def test_python_api_invalidate_and_clear(shell):
    run(shell, "%%cached one\nx = 1")
    run(shell, "%%cached two\ny = 2")
    assert {s.name for s in cellcache.stats()} == {"one", "two"}
    assert cellcache.invalidate("one") == 1
    assert {s.name: s.entries for s in cellcache.stats()} == {"one": 0, "two": 1}
    assert cellcache.clear() == 1
    assert all(s.entries == 0 for s in cellcache.stats())


def test_configured_remote_is_used_and_info_says_so(store_dir, workdir, monkeypatch, capsys):
    from IPython.core.interactiveshell import InteractiveShell

    monkeypatch.setenv("CELLCACHE_DIR", str(store_dir))
    monkeypatch.setenv("CELLCACHE_REMOTE", "s3://team-bucket/cache")
    InteractiveShell.clear_instance()
    sh = InteractiveShell.instance()
    try:
        sh.run_line_magic("load_ext", "cellcache")
        sh.run_line_magic("cellcache", "info")
        info = capsys.readouterr().out
        assert "remote: s3://team-bucket/cache" in info and "in use" in info
        assert "trusted signers: none" in info  # nobody trusted yet: no remote entry will be used
    finally:
        sh.run_line_magic("unload_ext", "cellcache")
        InteractiveShell.clear_instance()


def test_the_session_is_reached_through_the_api_and_refused_where_not_loaded() -> None:
    from IPython.core.interactiveshell import InteractiveShell

    bare = InteractiveShell.__new__(InteractiveShell)  # a shell object cellcache was never loaded into
    with pytest.raises(RuntimeError, match="not loaded in this shell"):
        cellcache.api.session(bare)
