"""Auto mode's cost rule: from what a step cost, whether caching it pays. Pure functions over measured figures.

A hit is not free: the cell's inputs are fingerprinted, the entry looked up,
its blob read and its displays replayed. Caching pays only where running
costs more than that, so a step is run plainly (no fingerprint, no store)
when:

- it is cheap: its run took less than ``min_seconds`` (``auto_min_seconds``);
- or its restore would cost more than its run: measured on its hits, or
  estimated from a hit's fixed cost plus its entry's size before it has one.

Every other step is cached. The thresholds' defaults come from
``benchmarks/auto_bench.py`` (see docs/howto/auto-mode.md).
"""
from __future__ import annotations

from dataclasses import dataclass

from cellcache.units import format_seconds

# Defaults measured by benchmarks/auto_bench.py: a hit of a small cell costs 2-4 ms (fingerprint, lookup,
# load, replay); below 50 ms of run the cache saves at most a few dozen ms while it costs a fingerprint
# and a store write on every miss.
MIN_SECONDS = 0.05
HIT_SECONDS = 0.004  # what a hit costs before any was measured, besides reading its blob
READ_BYTES_PER_SECOND = 400e6  # an entry's blob read and unpickled: a conservative figure for a local disk


@dataclass(frozen=True)
class Thresholds:
    min_seconds: float = MIN_SECONDS
    hit_seconds: float = HIT_SECONDS
    read_bytes_per_second: float = READ_BYTES_PER_SECOND


@dataclass(frozen=True)
class StepCost:
    """What a step cost the last times it ran: the figures the rule learns from."""

    run_seconds: float | None = None  # its last run (a miss or a plain run)
    restore_seconds: float | None = None  # the mean of its hits, if it had any
    output_bytes: int | None = None  # its latest entry's size, if it has one
    plain_reason: str | None = None  # its last run was plain for this reason


@dataclass(frozen=True)
class Decision:
    cache: bool
    reason: str = ""  # why it runs plainly: "cheap: 3 ms", "restore would cost more: 120 ms > 40 ms"


CACHE = Decision(True)


def restore_estimate(cost: StepCost, thresholds: Thresholds) -> float:
    """What a hit of this step costs: measured if it had hits, else a hit's fixed cost plus reading its entry."""
    if cost.restore_seconds is not None:
        return cost.restore_seconds
    return thresholds.hit_seconds + (cost.output_bytes or 0) / thresholds.read_bytes_per_second


def decide(run_seconds: float, cost: StepCost, thresholds: Thresholds) -> Decision:
    """Whether a run that took ``run_seconds`` is worth a cache entry, given what the step cost before."""
    if run_seconds < thresholds.min_seconds:
        return Decision(False, f"cheap: {format_seconds(run_seconds)}")
    restore = restore_estimate(cost, thresholds)
    if restore > run_seconds:
        return Decision(False, f"restore would cost more: {format_seconds(restore)} > {format_seconds(run_seconds)}")
    return CACHE


def before_run(cost: StepCost | None, thresholds: Thresholds) -> Decision:
    """Before a step is fingerprinted: plain if its last run says caching does not pay; a new step is cached.

    A new step is fingerprinted and decides at its end, when its cost is known (``decide``).
    """
    if cost is None or cost.run_seconds is None:
        return CACHE
    return decide(cost.run_seconds, cost, thresholds)
