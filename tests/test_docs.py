"""The docs build warning-free, their reference tables cover the code, and the README's example runs as pasted."""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest
from IPython.core.interactiveshell import InteractiveShell
from traitlets.config import Config

from cellcache import config


from cellcache.cell import reasons
ROOT = Path(__file__).resolve().parents[1]


def test_sphinx_build_is_warning_free(tmp_path: Path) -> None:
    pytest.importorskip("myst_nb")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    env.pop("CELLCACHE_DIR", None)
    before = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout
    build = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", "-d", str(tmp_path / "doctrees"), "docs", str(tmp_path / "html")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-6000:]
    html = tmp_path / "html"
    quickstart = (html / "tutorials" / "quickstart.html").read_text()
    assert "trained 40 epochs" in quickstart  # executed, with the docs' injected parameters
    tutorial = (html / "tutorials" / "explain-and-panel.html").read_text()
    assert "restored from cache · step train" in tutorial and "input `learning_rate` changed (0.05 → 0.1)" in tutorial.replace("&#96;", "`")
    # The reference pages come from the code.
    flags = (html / "reference" / "magic.html").read_text()
    assert all(opt in flags for opt in ("--deps", "--outs", "--strategy", "--ttl", "--ignore"))
    from cellcache.magic import _CELLCACHE_USAGE

    commands = re.findall(r"[|\[]\s*(\w+)", _CELLCACHE_USAGE)
    text = re.sub(r"<[^>]+>", "", flags)
    assert len(commands) >= 9 and all(f"%cellcache {c}" in text for c in commands), commands  # each has its row
    assert "cellcache run" in (html / "reference" / "cli.html").read_text()
    store = re.sub(r"<[^>]+>", "", (html / "reference" / "store.html").read_text())  # highlighting splits the text
    assert "index.sqlite" in store and "cellcache/v1/entries" in store  # the real local listing, the remote's docstring
    # Building leaves the tree as it was (no executed notebooks or stores next to the sources).
    after = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout
    assert after == before


def test_every_setting_is_in_the_keys_table() -> None:
    settings = {f.name for f in fields(config.Config)} - {"root"}  # the root is found, not set
    assert {k.field for k in config.KEYS} == settings


def test_every_reason_constant_is_in_the_catalogue() -> None:
    constants = {v for n, v in vars(reasons).items() if n.isupper() and not n.startswith("_") and isinstance(v, str)}
    listed = {e for r in reasons.CATALOGUE for e in r.examples}
    assert constants <= listed, constants - listed


def test_every_kind_of_reason_has_an_example_in_the_catalogue() -> None:
    # A new component kind (the runner keys something new) must be listed for the docs, or this fails.
    import inspect

    source = inspect.getsource(reasons._phrase)
    kinds = set(re.findall(r'kind == "(\w+)"', source)) | set(re.findall(r'"(\w+)": "', source)) | set(reasons._KIND_ORDER)
    examples = [e for r in reasons.CATALOGUE for e in r.examples]
    for kind in sorted(kinds):
        phrase = reasons._phrase(f"{kind}:QQNAME", "QQOLD", "QQNEW", ({}, {}))
        pattern = "^" + re.escape(phrase).replace("QQNAME", ".+").replace("QQOLD", ".+").replace("QQNEW", ".+")
        assert any(re.search(pattern, e) for e in examples), f"no example of {kind!r} reasons ({phrase!r}) in reasons.CATALOGUE"


def test_every_magic_flag_is_rendered() -> None:
    sys.path.insert(0, str(ROOT / "docs" / "_ext"))
    import cellcache_docs
    from cellcache.magic import CellcacheMagics

    text = "\n".join(cellcache_docs.MagicFlags.lines(None))  # type: ignore[arg-type]
    for action in CellcacheMagics.cached.parser._actions:
        if not isinstance(action, argparse._HelpAction):
            assert all(opt in text for opt in action.option_strings), action
    assert "%%cached" in text


def _readme_cells() -> list[str]:
    """The README's 30-second example: the python blocks under its first heading."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## 30 seconds", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_readme_example_runs_as_pasted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    cells = _readme_cells()
    assert len(cells) >= 2
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CELLCACHE_DIR", str(tmp_path / "store"))
    InteractiveShell.clear_instance()
    config = Config()
    config.HistoryManager.hist_file = ":memory:"  # nothing written to a history database that outlives the test
    shell = InteractiveShell.instance(config=config)
    try:
        for round_ in range(2):
            for cell in cells:
                result = shell.run_cell(cell, store_history=True)
                result.raise_error()
        import cellcache

        assert cellcache.last_run() is not None and cellcache.last_run().hit  # the second round restores
        assert "restored from cache" in capsys.readouterr().out
    finally:
        shell.run_line_magic("unload_ext", "cellcache")
        InteractiveShell.clear_instance()
