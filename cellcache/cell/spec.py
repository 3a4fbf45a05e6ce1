"""What the user asked for in a ``%%cached`` line, as a plain value; and the line's grammar, in one place.

The magic builds its arguments (and its ``%%cached?`` help) from ``ARGUMENTS``;
``cellcache run`` and ``status`` read a notebook's lines with ``parse_line``,
so the two never disagree on what a line means.
"""
from __future__ import annotations

import argparse
import functools
import shlex
from dataclasses import dataclass, field
from typing import Any

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


class SpecError(ValueError):
    """A ``%%cached`` line that does not parse; the message says why (the magic raises it as a UsageError)."""


def duration_arg(text: str) -> float:
    """An argparse type: a duration with its unit (a bare number is refused, as everywhere)."""
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def size_arg(text: str) -> int:
    """An argparse type: a size with its unit."""
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


# (flags, options) of each argument, as argparse takes them.
ARGUMENTS: tuple[tuple[tuple[str, ...], dict[str, Any]], ...] = (
    (("name",), dict(nargs="?", default=None, help="step name for stats and invalidation (not part of the key)")),
    (("-d", "--deps"), dict(nargs="+", action="extend", default=[], metavar="PATH", help="files, folders or globs the result depends on")),
    (("-o", "--outs"), dict(nargs="+", action="extend", default=[], metavar="PATH", help="files or folders the cell writes")),
    (("-s", "--strategy"), dict(default="code_hash", choices=STRATEGIES, help="what the key covers (default: code_hash)")),
    (("-f", "--force"), dict(action="store_true", help="run and replace the entry")),
    (("-e", "--explain"), dict(action="store_true", help="print why this was a hit or a miss")),
    (("-i", "--ignore"), dict(nargs="+", action="extend", default=[], metavar="VAR", help="variables left out of the key")),
    (("--ttl",), dict(type=duration_arg, default=None, metavar="DURATION", help="entries older than this miss (90s, 30m, 12h, 7d)")),
    (("--auto",), dict(action="store_true", help="a cell auto mode made a stage: the cost rule and the side-effect watch apply")),
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse would print and exit the process
        raise SpecError(message)


@functools.lru_cache(maxsize=1)
def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="%%cached", add_help=False)
    for flags, options in ARGUMENTS:
        parser.add_argument(*flags, **options)
    return parser


def spec_of(args: argparse.Namespace) -> StageSpec:
    return StageSpec(
        name=args.name,
        deps=tuple(args.deps),
        outs=tuple(args.outs),
        strategy=args.strategy,
        force=args.force,
        explain=args.explain,
        ignore=frozenset(args.ignore),
        ttl=args.ttl,
        auto=args.auto,
    )


@functools.lru_cache(maxsize=256)
def parse_line(line: str) -> StageSpec:
    """The arguments of a ``%%cached`` line as a StageSpec; SpecError says what is wrong with them.

    Cached: a re-run cell has the same line, and parsing is on every hit's path.
    """
    try:
        # posix splitting, so a quoted glob arrives without its quotes (IPython's own split keeps them)
        argv = shlex.split(line)
    except ValueError as exc:
        raise SpecError(f"cannot parse {line!r}: {exc}") from None
    return spec_of(_parser().parse_args(argv))
