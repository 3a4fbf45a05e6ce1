"""Reference pages generated from cellcache's own code, so the docs cannot drift from it.

Directives (usable from MyST as ```{name}```):

- ``cellcache-magic-flags``: every ``%%cached`` flag, read from the magic's own
  argparse parser (``CellcacheMagics.cached.parser``);
- ``cellcache-line-usage``: ``%cellcache``'s usage line, from the magic;
- ``cellcache-config-keys``: every setting, from ``cellcache.config.KEYS``;
- ``cellcache-reasons``: every reason ``--explain`` can give, from
  ``cellcache.cell.reasons.CATALOGUE``.

And ``read_linked_notebook``, a MyST-NB custom format: a ``.nblink`` file names
a notebook of the repository (and parameters to inject, papermill style), so
the tutorial is the repository's notebook itself, executed by the build.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from docutils import nodes
from docutils.parsers.rst import Parser as RSTParser
from docutils.utils import new_document
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

DOCS = Path(__file__).resolve().parents[1]


def _literal(text: str) -> str:
    return f"``{text}``" if text else ""


def _table(headers: list[str], rows: list[list[str]], widths: str | None = None) -> list[str]:
    """An RST list-table; cells may hold inline markup."""
    lines = [".. list-table::", "   :header-rows: 1", ""]
    if widths:
        lines.insert(1, f"   :widths: {widths}")
    for row in [headers, *rows]:
        lines.append(f"   * - {row[0] or ' '}")
        lines.extend(f"     - {cell or ' '}" for cell in row[1:])
    return lines


class _Generated(SphinxDirective):
    has_content = False

    def lines(self) -> list[str]:
        raise NotImplementedError

    def run(self) -> list[nodes.Node]:
        # The lines are reST, but the page may be MyST: nested_parse would hand them to the page's own
        # parser, which shows ".. list-table::" as text. So they are parsed as reST into a scratch
        # document sharing the page's settings (and so Sphinx's environment), as MyST's {eval-rst} does.
        scratch = new_document(self.state.document["source"], self.state.document.settings)
        scratch.reporter = self.state.document.reporter
        RSTParser().parse("\n".join(self.lines()), scratch)
        return list(scratch.children)


class MagicFlags(_Generated):
    """Every flag of ``%%cached``, from the parser the magic itself uses."""

    def lines(self) -> list[str]:
        from cellcache.magic import CellcacheMagics

        parser: argparse.ArgumentParser = CellcacheMagics.cached.parser
        # IPython's parser prints "::" and a one-% prog name; the user types %%cached.
        usage = " ".join(parser.format_usage().replace("::", "", 1).split()).replace("%cached", "%%cached", 1)
        rows = []
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            if action.option_strings:
                flag = ", ".join(action.option_strings)
                if action.nargs != 0:
                    flag += " " + (action.metavar or action.dest.upper())
                    if action.nargs in ("+", "*"):
                        flag += " ..."
            else:
                flag = (action.metavar or action.dest).upper()
            choices = ", ".join(_literal(str(c)) for c in action.choices) if action.choices else ""
            default = action.default
            shown = "" if default in (None, False, [], ()) else _literal(str(default))
            rows.append([_literal(flag), (action.help or "").replace("%", "%"), choices, shown])
        return [
            "Usage, as the magic's parser prints it:",
            "",
            ".. code-block:: text",
            "",
            f"   {usage}",
            "",
            *_table(["flag", "what it does", "choices", "default"], rows, "20 50 15 15"),
        ]


class LineMagicUsage(_Generated):
    """``%cellcache``'s usage line, as the magic itself prints it on a wrong command."""

    def lines(self) -> list[str]:
        from cellcache.magic import _CELLCACHE_USAGE

        return [".. code-block:: text", "", "   " + _CELLCACHE_USAGE.replace("usage: ", "", 1)]


class ConfigKeys(_Generated):
    """Every setting, its environment variable and default, from ``cellcache.config.KEYS``."""

    def lines(self) -> list[str]:
        from cellcache import config

        rows = [
            [
                _literal(key.field) if key.pyproject else "(environment only)",
                _literal(key.env),
                key.default,
                key.doc,
            ]
            for key in config.KEYS
        ]
        return _table(["[tool.cellcache] key", "environment variable", "default", "what it does"], rows, "18 22 18 42")


class Reasons(_Generated):
    """Every reason a hit or miss can be given, from ``cellcache.cell.reasons.CATALOGUE``."""

    def lines(self) -> list[str]:
        from cellcache.cell import reasons
        rows = [[" / ".join(_literal(t) for t in reason.examples), reason.when] for reason in reasons.CATALOGUE]
        return _table(["reason (as --explain prints it)", "when"], rows, "40 60")


class StateProbes(_Generated):
    """Every state probe, from ``cellcache.cell.state.registry()``: built in, and any a library registered."""

    def lines(self) -> list[str]:
        from cellcache.cell import state

        rows = [[_literal(probe.name), _literal(probe.module or ""), probe.doc] for probe in state.registry()]
        return _table(["probe (key component ``state:NAME``)", "read once this is imported", "what it carries, and which cells it keys"], rows, "25 20 55")


def read_linked_notebook(text: str) -> Any:
    """A ``.nblink`` file (JSON: ``{"path": ..., "parameters": {...}}``) as the notebook it names.

    The parameters go into an ``injected-parameters`` cell after the cell
    tagged ``parameters``, as papermill and ``cellcache run -p`` do, so the
    docs can run the real quickstart quickly.
    """
    import nbformat

    link = json.loads(text)
    nb = nbformat.read(str((DOCS / link["path"]).resolve()), as_version=4)
    parameters: dict[str, Any] = link.get("parameters", {})
    if parameters:
        source = "# Parameters injected by the docs build, as `cellcache run -p` does\n" + "\n".join(
            f"{name} = {value!r}" for name, value in parameters.items()
        )
        cell = nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-parameters"]})
        at = next((i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])), -1)
        nb.cells.insert(at + 1, cell)
    return nb


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("cellcache-magic-flags", MagicFlags)
    app.add_directive("cellcache-line-usage", LineMagicUsage)
    app.add_directive("cellcache-config-keys", ConfigKeys)
    app.add_directive("cellcache-reasons", Reasons)
    app.add_directive("cellcache-state-probes", StateProbes)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
