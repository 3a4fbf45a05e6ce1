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
    shown = _page_text(html / "tutorials" / "quickstart.html")
    # (the page's table of contents names "%%cached" in a heading; the first cached cell comes after auto mode)
    assert shown.index("%cellcache auto") < shown.index("%%cached generate"), "the quickstart shows auto mode first"
    tutorial = (html / "tutorials" / "explain-and-panel.html").read_text()
    assert "restored from cache · step train" in tutorial and "input `learning_rate` changed (0.05 → 0.1)" in tutorial.replace("&#96;", "`")
    # The reference pages come from the code.
    flags = (html / "reference" / "magic.html").read_text()
    assert all(opt in flags for opt in ("--deps", "--outs", "--strategy", "--ttl", "--ignore"))
    from cellcache.magic import _CELLCACHE_USAGE

    commands = re.findall(r"[|\[]\s*(\w+)", _CELLCACHE_USAGE)
    text = re.sub(r"<[^>]+>", "", flags)
    assert len(commands) >= 9 and all(f"%cellcache {c}" in text for c in commands), commands  # each has its row
    cli_page = (html / "reference" / "cli.html").read_text()
    assert "cellcache run" in _page_text(html / "reference" / "cli.html")
    assert 'id="cmdoption-cellcache-gc-max-size"' in cli_page  # an option list, not text
    store = re.sub(r"<[^>]+>", "", (html / "reference" / "store.html").read_text())  # highlighting splits the text
    assert "index.sqlite" in store and "cellcache/v1/entries" in store  # the real local listing, the remote's docstring
    # issue 25: every page renders: no reST or MyST markup shown as text, no "--" turned into an en dash.
    raw = raw_markup(html)
    assert not raw, "\n".join(f"{page}: ...{around}..." for page, around in raw[:20])
    for page in ("config", "magic", "reasons"):
        assert "<table" in (html / "reference" / f"{page}.html").read_text(), page
    assert "--max-size" in re.sub(r"<[^>]+>", "", (html / "reference" / "cli.html").read_text())
    # The front page and the quickstart show the README's install block, which works in a fresh clone.
    install = [line for line in readme_install_block().splitlines() if line.startswith(".venv/bin/pip")]
    for page in ("index.html", "tutorials/quickstart.html"):
        shown = _page_text(html / page)
        assert install and all(line in shown for line in install), page
    # One store per executed page: no temporary paths, and a page's totals count its own steps only.
    for page in ("tutorials/explain-and-panel.html", "tutorials/quickstart.html"):
        assert "/tmp/" not in _page_text(html / page), page
    assert "store" in _page_text(html / "tutorials" / "explain-and-panel.html")
    # Building leaves the tree as it was (no executed notebooks or stores next to the sources).
    after = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout
    assert after == before


# Markup that means a page did not render: a directive or role shown as text, an option's "--" made an en dash.
_RAW = (
    re.compile(r"(?:^|\s)\.\. [a-z][\w:-]*::"),
    re.compile(r":(?:option|ref|doc|func|class|meth|mod|program|envvar|any):`"),
    re.compile(r"```\{"),
    re.compile(r"\u2013[a-z]"),
)


def _page_text(page: Path) -> str:
    import html as _html

    text = re.sub(r"<(script|style)\b.*?</\1>", " ", page.read_text(), flags=re.S)
    return _html.unescape(re.sub(r"<[^>]+>", "", text))


def raw_markup(html: Path) -> list[tuple[str, str]]:
    """(page, the text around it) for every piece of unrendered markup on every built page."""
    found = []
    for page in sorted(html.rglob("*.html")):
        text = _page_text(page)
        for pattern in _RAW:
            for m in pattern.finditer(text):
                found.append((page.relative_to(html).as_posix(), text[max(0, m.start() - 40) : m.end() + 40]))
    return found


def test_the_raw_markup_check_finds_what_the_old_pages_showed(tmp_path: Path) -> None:
    # What reference/cli.html and config.html showed before issue 25: the check must catch each.
    shown = [
        "<p>.. program:: cellcache gc</p>",
        "<p>.. option:: \u2013max-size &lt;SIZE&gt;</p>",
        "<p>Every setting: .. list-table:: :header-rows: 1</p>",
        "<p>see :option:`--dir`</p>",
        "<p>```{click} cellcache.cli.main:main</p>",
    ]
    for i, body in enumerate(shown):
        (tmp_path / f"p{i}.html").write_text(f"<html><body>{body}</body></html>")
    assert {page for page, _ in raw_markup(tmp_path)} == {f"p{i}.html" for i in range(len(shown))}
    (tmp_path / "good.html").write_text("<p>gc <code>--max-size 5GB</code>: 5\u201310 s</p><pre>.. not a directive</pre>")
    assert not [p for p, _ in raw_markup(tmp_path) if p == "good.html"]


def readme_install_block() -> str:
    readme = (ROOT / "README.md").read_text()
    return readme.split("<!-- install-start -->", 1)[1].split("<!-- install-end -->", 1)[0].strip()


def test_the_quickstart_notebook_has_the_readme_install_block_and_says_where_the_store_is() -> None:
    import nbformat

    nb = nbformat.read(ROOT / "notebooks" / "quickstart.ipynb", as_version=4)
    intro = nb.cells[0].source
    assert readme_install_block() in intro
    assert "`.cellcache/` at the project root" in intro and "next to this notebook" not in intro
    assert intro.index("%cellcache auto") < intro.index("%%cached"), "auto mode first: how most people start"


def test_every_shell_command_in_the_readme_uses_the_venv() -> None:
    # A fresh clone has no cellcache on PATH: every command the README gives runs from .venv/bin.
    readme = (ROOT / "README.md").read_text()
    for tool in ("pip", "sphinx-build"):
        bare = re.findall(rf"(?<![/\w.-]){tool} (?:install|-b)", readme)
        assert not bare, (tool, bare)


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


def test_the_s3_guide_states_endpoint_rights_ci_dependencies_and_no_doubled_prefix() -> None:
    guide = (ROOT / "docs" / "howto" / "team-s3.md").read_text()
    assert "AWS_ENDPOINT_URL" in guide
    for right in ("s3:GetObject", "s3:ListBucket", "s3:PutObject", "s3:DeleteObject"):
        assert right in guide, right
    assert "-r requirements.txt" in guide and "notebooks' own dependencies" in guide
    # cellcache adds cellcache/v1/ itself: a remote URL ending in /cellcache doubles it.
    urls = re.findall(r"(?:remote = |CELLCACHE_REMOTE=)\"?(s3://[^\s\"`]+)", guide)
    assert urls and not [u for u in urls if u.rstrip("/").endswith("/cellcache")], urls


def test_the_dask_guide_says_what_a_worker_needs() -> None:
    guide = (ROOT / "docs" / "howto" / "sweeps-dask.md").read_text()
    section = guide.split("### What a worker needs", 1)[1]
    assert "the project at the same path" in section and "the same environment" in section and "CELLCACHE_REMOTE" in section
    assert "pip install 'cellcache" not in guide, "cellcache is not on an index"


def test_every_api_function_has_a_description() -> None:
    # issue 25: autodoc of functions without docstrings rendered a bare signature.
    import cellcache

    page = (ROOT / "docs" / "reference" / "api.md").read_text()
    functions = [n for n in cellcache.__all__ if callable(getattr(cellcache, n)) and not isinstance(getattr(cellcache, n), type)]
    for name in functions:
        described = re.search(rf"\.\. py:function:: cellcache\.{name}\(.*\n\n   \S.{{40,}}", page) or (
            f".. autofunction:: cellcache.{name}" in page and (getattr(cellcache, name).__doc__ or "").strip()
        )
        assert described, name
