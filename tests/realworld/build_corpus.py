"""Rebuild tests/realworld/notebooks/ from the upstream sources named in corpus.toml.

Not run by the tests: the notebooks are committed. This script is how they were made, so that
anyone can check that a notebook is its upstream file plus the edits the manifest records.

    python tests/realworld/build_corpus.py --source scikit-learn/scikit-learn=/path/to/scikit_learn-1.7.2 \
        --source statsmodels/statsmodels=/path/to/statsmodels.git ...

A source is a folder (an unpacked release) or a bare git directory (read at the manifest's commit).

Scripts become notebooks the way jupytext and sphinx-gallery read them:
- ``split = "percent"``: a ``# %%`` line, or sphinx-gallery's line of ``#`` characters, starts a
  cell; the comment block that opens a cell becomes a markdown cell; the module docstring too.
- ``split = "paragraphs"`` (scripts without markers): a top-level statement after a blank line
  starts a new code cell, as jupytext's light format does; comments stay with the code under them.
- ``.ipynb`` files keep their cells, without outputs.
Cell ids are ``c00``, ``c01``, ...: stable, so a step's name is the same in every run.
"""
from __future__ import annotations

import argparse
import ast
import re
import subprocess
import sys
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

_SEPARATOR = re.compile(r"^# ?%%|^#{20,}\s*$")


def read_source(location: Path, commit: str | None, path: str) -> str:
    if (location / "HEAD").exists() and (location / "objects").is_dir():
        return subprocess.run(
            ["git", "--git-dir", str(location), "show", f"{commit}:{path}"], check=True, capture_output=True, text=True
        ).stdout
    return (location / path).read_text(encoding="utf-8")


def _docstring_cell(tree: ast.Module, lines: list[str]) -> tuple[str | None, int]:
    body = tree.body
    if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) and isinstance(body[0].value.value, str):
        return body[0].value.value.strip(), body[0].end_lineno or 0
    return None, 0


def _comment_block_to_markdown(block: list[str]) -> str:
    return "\n".join(re.sub(r"^# ?", "", line) for line in block).strip()


def split_percent(text: str) -> list[tuple[str, str]]:
    lines = text.splitlines()
    doc, end = _docstring_cell(ast.parse(text), lines)
    cells: list[tuple[str, str]] = [("markdown", doc)] if doc else []
    chunks: list[list[str]] = [[]]
    for line in lines[end:]:
        if _SEPARATOR.match(line):
            chunks.append([])
        else:
            chunks[-1].append(line)
    for chunk in chunks:
        while chunk and not chunk[0].strip():
            chunk.pop(0)
        comments = []
        while chunk and chunk[0].startswith("#"):
            comments.append(chunk.pop(0))
        if comments:
            cells.append(("markdown", _comment_block_to_markdown(comments)))
        code = "\n".join(chunk).strip("\n")
        if code.strip():
            cells.append(("code", code))
    return cells


def split_paragraphs(text: str) -> list[tuple[str, str]]:
    lines = text.splitlines()
    tree = ast.parse(text)
    doc, end = _docstring_cell(tree, lines)
    cells: list[tuple[str, str]] = [("markdown", doc)] if doc else []
    stmts = [s for s in tree.body if s.lineno > end]
    groups: list[list[int]] = []  # [first line, last line], 1-based
    prev_end = end
    for stmt in stmts:
        first = min([stmt.lineno] + [d.lineno for d in getattr(stmt, "decorator_list", [])])
        while first - 1 > prev_end and lines[first - 2].startswith("#"):
            first -= 1  # the comments right above a statement belong to it
        blank_before = any(not lines[i].strip() for i in range(prev_end, first - 1))
        if groups and not blank_before:
            groups[-1][1] = stmt.end_lineno
        else:
            groups.append([first, stmt.end_lineno])
        prev_end = stmt.end_lineno
    for first, last in groups:
        cells.append(("code", "\n".join(lines[first - 1 : last]).strip("\n")))
    return cells


def build(entry: dict, location: Path) -> nbformat.NotebookNode:
    src = entry["source"]
    text = read_source(location, src.get("commit"), src["path"])
    if src["path"].endswith(".ipynb"):
        upstream = nbformat.reads(text, as_version=4)
        cells = [(c.cell_type, c.source) for c in upstream.cells if c.cell_type in ("code", "markdown")]
    elif entry.get("split", "percent") == "percent":
        cells = split_percent(text)
    else:
        cells = split_paragraphs(text)
    nb = nbformat.v4.new_notebook()
    nb.metadata = {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"},
        "cellcache_realworld": {"id": entry["id"], "repository": src["repo"], "path": src["path"], "commit": src.get("commit"), "tag": src.get("tag")},
    }
    for i, (kind, body) in enumerate(cells):
        cell = nbformat.v4.new_code_cell(body) if kind == "code" else nbformat.v4.new_markdown_cell(body)
        cell.id = f"c{i:02d}"
        nb.cells.append(cell)
    for edit in entry.get("edit", []):
        cell = nb.cells[edit["cell"]]
        if edit["old"] not in cell.source:
            raise SystemExit(f"{entry['id']}: edit of cell {edit['cell']}: {edit['old']!r} not found")
        cell.source = cell.source.replace(edit["old"], edit["new"], 1)
    return nb


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", action="append", default=[], help="REPO=LOCATION")
    parser.add_argument("--only", action="append", default=[], help="build only this notebook id")
    args = parser.parse_args(argv)
    sources = dict(s.split("=", 1) for s in args.source)
    manifest = tomllib.loads((HERE / "corpus.toml").read_text(encoding="utf-8"))
    out = HERE / "notebooks"
    out.mkdir(exist_ok=True)
    for entry in manifest["notebook"]:
        if args.only and entry["id"] not in args.only:
            continue
        repo = entry["source"]["repo"]
        if repo not in sources:
            print(f"skip {entry['id']}: no --source for {repo}", file=sys.stderr)
            continue
        nb = build(entry, Path(sources[repo]))
        nbformat.write(nb, out / f"{entry['id']}.ipynb")
        for data in entry.get("data", []):
            (out / Path(data).name).write_text(read_source(Path(sources[repo]), entry["source"].get("commit"), data), encoding="utf-8")
        print(f"{entry['id']}: {sum(c.cell_type == 'code' for c in nb.cells)} code cells")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
