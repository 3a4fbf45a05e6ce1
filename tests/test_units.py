"""cellcache.units: one parser and one formatter for durations and sizes; a bare number is never guessed."""
from __future__ import annotations

import pytest

from cellcache import report, units



from cellcache.cell import spec
@pytest.mark.parametrize("bare", ["5", "30", "0", "1.5", " 7 "])
def test_a_bare_number_is_neither_a_size_nor_a_duration(bare: str) -> None:
    with pytest.raises(ValueError, match=r"has no unit: add one of B, KB, MB, GB or TB"):
        units.parse_size(bare)
    with pytest.raises(ValueError, match=r"has no unit: add one of s, m, h, d or w"):
        units.parse_duration(bare)


@pytest.mark.parametrize(("text", "size"), [("5B", 5), ("5KB", 5000), ("5k", 5000), ("3KiB", 3072), ("2GiB", 2 * 1024**3), ("1.5TB", 1.5e12)])
def test_sizes_with_units(text: str, size: int) -> None:
    assert units.parse_size(text) == size


@pytest.mark.parametrize(("text", "seconds"), [("5s", 5), ("5m", 300), ("2h", 7200), ("30d", 30 * 86400), ("1w", 604800)])
def test_durations_with_units(text: str, seconds: float) -> None:
    assert units.parse_duration(text) == seconds


def test_the_old_import_names_are_the_same_functions() -> None:
    # Callers that import from report or spec get the one implementation, not a copy that could drift.
    assert report.format_seconds is units.format_seconds and report.format_size is units.format_size
    assert spec.parse_duration is units.parse_duration and spec.parse_size is units.parse_size


def test_units_imports_nothing_of_cellcache() -> None:
    # It is the bottom of the package: importing it must not pull in the store or the reports (the old circle).
    import ast
    from pathlib import Path

    tree = ast.parse(Path(units.__file__).read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)} | {
        a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names
    }
    assert not {m for m in imported if m and m.startswith("cellcache")}


def test_the_magic_refuses_bare_numbers_and_asks_for_yes_before_emptying_the_store(shell) -> None:
    from IPython.core.error import UsageError

    import cellcache

    from .conftest import run

    run(shell, "%%cached keep\nx = 1")
    with pytest.raises(UsageError, match=r"duration '5' has no unit"):
        shell.run_cell_magic("cached", "step --ttl 5", "y = 1\n")
    for line in ("gc --max-size 5", "gc --older-than 30"):
        with pytest.raises(UsageError, match=r"has no unit"):
            shell.run_line_magic("cellcache", line)
    with pytest.raises(UsageError, match=r"would drop 1 of 1 entries; add --yes"):
        shell.run_line_magic("cellcache", "gc --max-size 5B")
    assert [s.entries for s in cellcache.stats() if s.name == "keep"] == [1], "nothing dropped"
    shell.run_line_magic("cellcache", "gc --max-size 5B --yes")
    assert [s.entries for s in cellcache.stats() if s.name == "keep"] == [0]
