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
