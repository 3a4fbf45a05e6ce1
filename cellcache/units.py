"""Durations and sizes: the one place that parses and formats them.

It sits at the bottom of the package (it imports nothing of cellcache), so
the store, the reports, the CLI and the magic all read "5GB" and "30d" the
same way, and print "1.2 s" the same way.

A bare number is refused everywhere: ``gc --max-size 5`` once meant 5 bytes
and emptied a store, and ``--older-than 5`` meant 5 seconds. The unit is what
says which was meant, so it is required.
"""
from __future__ import annotations

import re
import time

DURATION_FORMS = "s, m, h, d or w, such as 90s, 30m, 12h or 7d"
SIZE_FORMS = "B, KB, MB, GB or TB (or KiB, MiB, GiB, TiB), such as 500MB or 5GB"

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*$", re.IGNORECASE)
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}  # ms: auto mode's thresholds
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(b|[kmgt]i?b?)\s*$", re.IGNORECASE)
_SIZE_UNITS = {"b": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}
_BARE = re.compile(r"^\s*\d+(?:\.\d+)?\s*$")


def parse_duration(text: str) -> float:
    """'90s', '30m', '12h', '7d' or '2w' -> seconds; a bare number is refused (ValueError)."""
    match = _DURATION.match(str(text))
    if match:
        return float(match.group(1)) * _DURATION_UNITS[match.group(2).lower()]
    if _BARE.match(str(text)):
        raise ValueError(f"duration {text!r} has no unit: add one of {DURATION_FORMS}")
    raise ValueError(f"invalid duration {text!r}: use a number with {DURATION_FORMS}")


def parse_size(text: str) -> int:
    """'500MB', '5GB', '2GiB' or '10k' -> bytes; a bare number is refused (ValueError)."""
    match = _SIZE.match(str(text))
    if match:
        unit = match.group(2).lower()
        prefix = unit[0]
        if prefix == "b":
            scale = 1
        elif "i" in unit:
            scale = 1024 ** ("kmgt".index(prefix) + 1)
        else:
            scale = _SIZE_UNITS[prefix]
        return int(float(match.group(1)) * scale)
    if _BARE.match(str(text)):
        raise ValueError(f"size {text!r} has no unit: add one of {SIZE_FORMS}")
    raise ValueError(f"invalid size {text!r}: use a number with {SIZE_FORMS}")


def format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def format_age(at: float | None, now: float | None = None) -> str:
    if at is None:
        return "-"
    age = (time.time() if now is None else now) - at
    # Under a second the figure is noise (and a clock step back would make it negative).
    return "just now" if age < 1 else format_seconds(age) + " ago"


def format_size(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} TB"  # pragma: no cover - the loop returns at GB


def format_rate(rate: float | None) -> str:
    return "-" if rate is None else f"{rate:.0%}"
