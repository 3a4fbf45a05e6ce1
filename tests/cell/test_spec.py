from __future__ import annotations

import pytest

from cellcache.cell.spec import StageSpec, parse_duration, parse_size


@pytest.mark.parametrize(("text", "seconds"), [("90s", 90), ("30m", 1800), ("12h", 43200), ("7d", 604800), ("15s", 15), ("1.5h", 5400)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(("text", "size"), [("5GB", 5 * 10**9), ("500MB", 5 * 10**8), ("2GiB", 2 * 1024**3), ("1024B", 1024), ("10k", 10**4)])
def test_sizes(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("bad", ["soon", "5 parsecs", "-3s", ""])
def test_bad_duration_names_the_forms(bad):
    with pytest.raises(ValueError, match="90s, 30m, 12h or 7d"):
        parse_duration(bad)


def test_bad_strategy():
    with pytest.raises(ValueError, match="code_hash, input_hash, off"):
        StageSpec(strategy="fast")


def test_the_magic_and_batch_read_a_line_by_one_grammar() -> None:
    from cellcache import batch
    from cellcache.cell.spec import ARGUMENTS, SpecError, parse_line
    from cellcache.magic import CellcacheMagics

    magic_flags = {s for a in CellcacheMagics.cached.parser._actions for s in a.option_strings} - {"-h", "--help"}
    assert magic_flags == {f for flags, _ in ARGUMENTS for f in flags if f.startswith("-")}
    line = "fit -d data.csv 'more *.csv' -i log --ttl 12h -s input_hash -e"
    spec = parse_line(line)
    assert spec.name == "fit" and spec.deps == ("data.csv", "more *.csv") and spec.ignore == {"log"} and spec.ttl == 43200
    assert batch.cached_args(f"%%cached {line}\nx = 1") == spec
    for bad in ("--ttl 5", "--nope", "-s sometimes", "'unclosed"):
        with pytest.raises(SpecError):
            parse_line(bad)
        assert batch.cached_args(f"%%cached {bad}\nx = 1") is None
