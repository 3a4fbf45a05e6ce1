"""Parameters and sweeps for ``cellcache run``, as papermill takes them.

- ``-p NAME VALUE`` (the value is read as papermill reads it: True/False/None,
  an int, a float, else a string), ``-y YAML`` (a mapping), ``-f FILE`` (a
  YAML file holding a mapping). Later sources override earlier ones, as in
  papermill: files, then YAML strings, then ``-p``.
- A name given to ``-p`` more than once, or every name of ``--grid FILE`` (a
  mapping of name to a list of values), makes a sweep: the product of the
  values, in the order the names were first given.
- The values go into an ``injected-parameters`` cell right after the cell
  tagged ``parameters`` (or first, if there is none), replacing an injected
  cell already there: what papermill does, so notebooks move between the two.
  That cell is a plain cell, so only the steps that read a changed parameter miss.

Pure: no kernel, no files written.
"""
from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from cellcache.errors import BatchError

if TYPE_CHECKING:
    from nbformat import NotebookNode

PARAMETERS_TAG = "parameters"
INJECTED_TAG = "injected-parameters"


@dataclass(frozen=True)
class Combination:
    """One job's parameters, in a stable order; empty when the run has none."""

    values: tuple[tuple[str, Any], ...] = ()
    swept: tuple[str, ...] = ()  # the names that vary across the sweep: they name the output

    def as_dict(self) -> dict[str, Any]:
        return dict(self.values)

    def label(self) -> str:
        """``lr=0.1,epochs=200``: the swept values, for progress lines."""
        return ",".join(f"{name}={_short(value)}" for name, value in self.values if name in self.swept)

    def title(self) -> str:
        """``[learning_rate=0.01, epochs=100]``: every value given, for the heading of a job's table."""
        return "[" + ", ".join(f"{name}={_short(value)}" for name, value in self.values) + "]" if self.values else ""

    def to_json(self) -> dict[str, Any]:
        return dict(self.values)


def parse_value(text: str) -> Any:
    """A ``-p`` value, read as papermill reads it."""
    if text in ("True", "False"):
        return text == "True"
    if text == "None":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _yaml_mapping(text: str, where: str) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise BatchError(f"{where} is not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
        raise BatchError(f"{where} must be a YAML mapping of parameter names to values")
    return data


def _read(path: Path, what: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise BatchError(f"cannot read the {what} {str(path)!r}: {exc.strerror or exc}") from None


def combinations(
    params: Sequence[tuple[str, str]] = (),
    yaml_strings: Sequence[str] = (),
    files: Sequence[Path] = (),
    grid: Path | None = None,
) -> list[Combination]:
    """Every job's parameters: one Combination without a sweep, the product of the values with one."""
    fixed: dict[str, Any] = {}
    for path in files:
        fixed.update(_yaml_mapping(_read(path, "parameters file"), f"parameters file {path}"))
    for text in yaml_strings:
        fixed.update(_yaml_mapping(text, "-y YAML"))
    axes: dict[str, list[Any]] = {}
    for name, text in params:
        if not name.isidentifier():
            raise BatchError(f"-p {name!r}: a parameter name must be a Python identifier")
        axes.setdefault(name, []).append(parse_value(text))
    if grid is not None:
        for name, values in _yaml_mapping(_read(grid, "grid file"), f"grid file {grid}").items():
            if not isinstance(values, list) or not values:
                raise BatchError(f"grid file {grid}: {name!r} must be a non-empty list of values")
            if name in axes:
                raise BatchError(f"parameter {name!r} is given both by -p and by --grid")
            axes[name] = list(values)
    for name in list(axes):
        fixed.pop(name, None)
        if len(axes[name]) == 1:
            fixed[name] = axes.pop(name)[0]
    for name in fixed:
        if not name.isidentifier():
            raise BatchError(f"parameter {name!r}: a parameter name must be a Python identifier")
    names = list(axes)
    base = tuple(fixed.items())
    return [
        Combination(values=base + tuple(zip(names, picked)), swept=tuple(names))
        for picked in itertools.product(*(axes[n] for n in names))
    ]


# the injected cell ---------------------------------------------------------------


def _literal(value: Any) -> str:
    """Python source for a parameter value (papermill's Python translator, in short)."""
    if isinstance(value, float) and not math.isfinite(value):
        return f"float({str(value)!r})"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_literal(k)}: {_literal(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_literal(v) for v in value) + "]"
    if isinstance(value, (str, int, float, bool)) or value is None:
        return repr(value)
    # YAML can also give dates and the like: pass them as their text, as papermill does.
    return repr(str(value))


def injected_source(parameters: Mapping[str, Any]) -> str:
    return "# Parameters\n" + "".join(f"{name} = {_literal(value)}\n" for name, value in parameters.items())


def _tags(cell: NotebookNode) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def inject(nb: NotebookNode, parameters: Mapping[str, Any]) -> NotebookNode:
    """Insert the injected-parameters cell into ``nb`` (in place), as papermill does; returns ``nb``."""
    if not parameters:
        return nb
    import nbformat

    cell = nbformat.v4.new_code_cell(injected_source(parameters))
    cell.metadata["tags"] = [INJECTED_TAG]
    cells = list(nb.cells)
    old = next((i for i, c in enumerate(cells) if INJECTED_TAG in _tags(c)), None)
    if old is not None:
        cells[old] = cell
    else:
        tagged = next((i for i, c in enumerate(cells) if PARAMETERS_TAG in _tags(c)), None)
        cells.insert(0 if tagged is None else tagged + 1, cell)
    nb.cells = cells
    return nb


# output names --------------------------------------------------------------------

_UNSAFE = re.compile(r"[^A-Za-z0-9._=+-]+")


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def output_name(notebook: Path, combination: Combination) -> str:
    """``train-lr=0.1-epochs=200.ipynb``: the notebook's name and the swept values, safe as a file name."""
    parts = [notebook.stem] + [
        _UNSAFE.sub("_", f"{name}={_short(value)}") for name, value in combination.values if name in combination.swept
    ]
    return "-".join(parts) + notebook.suffix


def describe(combinations: Iterable[Combination]) -> str:
    combos = list(combinations)
    if len(combos) <= 1:
        return ""
    swept = combos[0].swept
    return f"a sweep of {len(combos)} combinations over {', '.join(swept)}"


__all__ = [
    "Combination",
    "INJECTED_TAG",
    "PARAMETERS_TAG",
    "combinations",
    "inject",
    "injected_source",
    "output_name",
    "parse_value",
]


def unknown_parameters(nb: NotebookNode, names: Iterable[str]) -> list[str]:
    """The given names that the cell tagged ``parameters`` does not assign, as papermill warns of them.

    A typo (``-p learnig_rate 0.1``) otherwise runs the notebook with its default and says nothing.
    A notebook without a ``parameters`` cell gets no warning: there is nothing to compare with.
    """
    import ast

    cells = [c for c in nb.cells if c.cell_type == "code" and PARAMETERS_TAG in _tags(c)]
    if not cells:
        return []
    defined: set[str] = set()
    for cell in cells:
        try:
            tree = ast.parse(cell.source)
        except SyntaxError:
            return []  # a cell we cannot read: no guess
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                defined.add(node.id)
    return sorted(set(names) - defined)
