"""What the user asked for in a ``%%cached`` line, as a plain value."""
from __future__ import annotations

from dataclasses import dataclass, field

# Parsed in cellcache.units; the names stay importable from here for the magic and older callers.
from cellcache.units import parse_duration, parse_size  # noqa: F401

STRATEGIES = ("code_hash", "input_hash", "off")


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
