"""What the user asked for in a ``%%cached`` line, as a plain value."""
from __future__ import annotations

import re
from dataclasses import dataclass, field

STRATEGIES = ("code_hash", "input_hash", "off")

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)?\s*$", re.IGNORECASE)
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?i?B?)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}


def parse_duration(text: str) -> float:
    """'90s', '30m', '12h', '7d', '2w' or plain seconds -> seconds."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"invalid duration {text!r}: use a number with s, m, h, d or w, such as 90s, 30m, 12h or 7d")
    return float(match.group(1)) * _DURATION_UNITS[(match.group(2) or "s").lower()]


def parse_size(text: str) -> int:
    """'500MB', '5GB', '2GiB' or plain bytes -> bytes."""
    match = _SIZE.match(text)
    if not match:
        raise ValueError(f"invalid size {text!r}: use a number with KB, MB, GB or TB, such as 500MB or 5GB")
    unit = (match.group(2) or "").lower()
    binary = "i" in unit
    prefix = unit[:1] if unit[:1] in "kmgt" and unit else ""
    scale = (1024 ** "kmgt".index(prefix) * 1024 if prefix else 1) if binary else _SIZE_UNITS[prefix]
    return int(float(match.group(1)) * scale)


@dataclass(frozen=True)
class StageSpec:
    name: str | None = None
    deps: tuple[str, ...] = ()
    outs: tuple[str, ...] = ()
    strategy: str = "code_hash"
    force: bool = False
    explain: bool = False
    ignore: frozenset[str] = field(default_factory=frozenset)
    ttl: float | None = None
    auto: bool = False  # made a stage by auto mode: the cost rule and the side-effect watch apply

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"invalid strategy {self.strategy!r}: choose one of {', '.join(STRATEGIES)}")
