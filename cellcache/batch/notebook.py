"""A notebook as a batch reads it, without a kernel: its files, its cells, which are stages and what each reads and writes."""
from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from cellcache import config as _config
from cellcache.errors import BatchError

if TYPE_CHECKING:
    from nbformat import NotebookNode

# nbformat and nbclient are imported where they are used: nbformat pulls in jsonschema and its
# format checkers, seconds of import time that the store commands of the CLI should not pay.



_CACHED_LINE = re.compile(r"^%%cached(?=\s|$)(.*)$")



def _first_line(source: str) -> tuple[int, str] | None:
    """Index and text of the first non-blank line: IPython drops leading blank lines before a cell magic."""
    for number, line in enumerate(source.split("\n")):
        if line.strip():
            return number, line
    return None



def cached_args(source: str) -> Any | None:
    """The parsed ``%%cached`` line of a cell (argparse namespace), or None for any other cell.

    A line the magic itself would reject also gives None: the kernel reports that error, not us.
    """
    first = _first_line(source)
    if first is None:
        return None
    match = _CACHED_LINE.match(first[1])
    if match is None:
        return None
    from cellcache.cell.spec import SpecError, parse_line  # the magic's own grammar

    try:
        return parse_line(match.group(1).strip())
    except SpecError:
        return None



def is_cached(source: str) -> bool:
    first = _first_line(source)
    return first is not None and _CACHED_LINE.match(first[1]) is not None



def source_for_kernel(cell: NotebookNode) -> str:
    """The source to send: an unnamed ``%%cached`` cell gets its cell id as NAME.

    nbclient does not send cell ids to the kernel, so without this every unnamed
    step would be named by its code digest and lose its history on every edit.
    Interactive front ends send the id and the Session names the step by it, so
    the names agree. The written notebook keeps the user's source: this string
    is only sent. Cells without an id (nbformat < 4.5) keep the digest default,
    as does an id that starts with "-" (argparse would take it for an option).
    """
    source = cell.source
    cell_id = cell.get("id")
    if not cell_id or cell_id.startswith("-"):
        return source
    args = cached_args(source)
    if args is None or args.name is not None:
        return source
    number, line = _first_line(source)  # type: ignore[misc] - cached_args found it
    lines = source.split("\n")
    lines[number] = f"%%cached {cell_id}" + _CACHED_LINE.match(line).group(1)  # type: ignore[union-attr]
    renamed = "\n".join(lines)
    check = cached_args(renamed)
    return renamed if check is not None and check.name == cell_id else source



def step_hint(cell: NotebookNode) -> str | None:
    """The step's name as far as it is known before the cell runs: its NAME or its cell id.

    None for a plain cell, and for an unnamed cell without an id, whose name
    (``cell-<digest>``) only the kernel computes.
    """
    if cell.cell_type != "code" or not is_cached(cell.source):
        return None
    args = cached_args(source_for_kernel(cell))
    return args.name if args is not None else None



def auto_configured(path: Path) -> bool:
    """Whether the notebook's project turns auto mode on (``auto = true``, ``CELLCACHE_AUTO=1``)."""
    try:
        return _config.resolve(cwd=Path(path).parent.resolve()).auto
    except Exception:  # noqa: BLE001 - a broken config is reported by the kernel that loads it
        return False



def auto_source(cell: NotebookNode, sent: str) -> str:
    """What auto mode sends for a cell: its id, or its ``no-cache`` tag, as a last comment line."""
    from cellcache.cell import auto

    return auto.mark(sent, cell.get("id"), cell.get("metadata", {}).get("tags", ()))



# `%cellcache auto` as a line of its own (with `on` or `--explain`), or `off`: what the kernel will do at that cell.
_AUTO_LINE = re.compile(r"^\s*%cellcache\s+auto((?:\s+(?:on|off|-e|--explain))*)\s*$", re.MULTILINE)


def auto_switched(cells: Iterable[NotebookNode]) -> set[int]:
    """The indices of the code cells that run in auto mode because an earlier cell says ``%cellcache auto``.

    Interactively, such a cell is named by its id, which the front end sends; a batch sends none, so these cells
    carry it as auto mode's last comment line, or the two runs would name the same cell differently.
    """
    on, marked = False, set()
    for index, cell in enumerate(cells):
        if cell.cell_type != "code":
            continue
        if on:
            marked.add(index)
        for match in _AUTO_LINE.finditer(cell.source):
            on = "off" not in match.group(1).split()
    return marked


def auto_step_hint(cell: NotebookNode) -> str | None:
    """An auto-mode stage's name before it runs: its cell id (None for a cell with its own magic or tagged no-cache)."""
    from cellcache.cell import auto

    if cell.cell_type != "code" or auto.own_rule(cell.source) is not None or auto.NO_CACHE_TAG in cell.get("metadata", {}).get("tags", ()):
        return None
    return cell.get("id") or None



def runnable(cell: NotebookNode) -> bool:
    return cell.cell_type == "code" and bool(cell.source.strip())



def cell_names(source: str) -> Any | None:
    """What a cell reads and writes, as the kernel will see it: the body of a ``%%cached`` cell, else the
    whole cell, after IPython's transform (so magics and ``!`` lines are calls, not syntax errors).

    None when the cell is not valid Python even then: the caller treats it as reading everything.
    """
    from IPython.core.inputtransformer2 import TransformerManager

    from cellcache.cell.analysis import analyze

    body = source
    first = _first_line(source)
    if first is not None and _CACHED_LINE.match(first[1]):
        body = "\n".join(source.split("\n")[first[0] + 1 :])
    try:
        return analyze(TransformerManager().transform_cell(body))
    except (SyntaxError, ValueError, RecursionError):
        return None



def read_notebook(path: Path) -> NotebookNode:
    """Read and validate a notebook: a malformed one is a usage error with the reason, never a traceback later."""
    import nbformat

    try:
        nb = nbformat.read(path, as_version=4)
    except FileNotFoundError:
        raise BatchError(f"notebook {str(path)!r} does not exist") from None
    except Exception as exc:  # noqa: BLE001 - nbformat raises several kinds for a file that is not a notebook
        raise BatchError(f"{path} is not a readable notebook: {exc}") from None
    try:
        nbformat.validate(nb)
    except nbformat.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) if getattr(exc, "absolute_path", None) else "the notebook"
        raise BatchError(f"{path} is not a valid notebook: {where}: {exc.message}") from None
    return nb



def notebooks_in(paths: Iterable[Path | str]) -> list[Path]:
    """Notebook arguments as given, a folder standing for its notebooks in name order (not recursing)."""
    found: list[Path] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            inside = sorted(p for p in path.glob("*.ipynb") if p.is_file() and not p.name.startswith("."))
            if not inside:
                raise BatchError(f"the folder {str(path)!r} holds no notebook (*.ipynb)")
            found.extend(inside)
        else:
            found.append(path)
    return found
