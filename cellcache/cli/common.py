"""What every ``cellcache`` verb shares: the console, the command classes, the option types, --dir and --json."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable

import click
from rich.console import Console

from cellcache import config as _config
from cellcache.errors import BatchError, CellcacheError, ConfigError, StepError
from cellcache.store.local import LocalStore, open_store
from cellcache.units import parse_duration, parse_size

# An unknown or ambiguous step name is a usage error, like an unknown option.
USAGE_ERRORS: tuple[type[Exception], ...] = (BatchError, ConfigError, StepError)


def make_console(stderr: bool = False) -> Console:
    console = Console(stderr=stderr)
    # Piped or captured output gets a fixed, wide layout instead of 80 columns, so tables don't wrap in logs.
    return console if console.is_terminal else Console(stderr=stderr, width=160)


class Command(click.Command):
    """A command whose line in `cellcache --help` is its whole first sentence, never cut at 45 characters."""

    def get_short_help_str(self, limit: int = 45) -> str:
        if self.short_help:
            return self.short_help
        first = (self.help or "").strip().split("\n\n")[0]
        return " ".join(first.split())


class Group(click.Group):
    """Turn cellcache's own errors into click's: a message and an exit code, never a traceback."""

    command_class = Command

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except USAGE_ERRORS as exc:
            raise click.UsageError(str(exc)) from None
        except CellcacheError as exc:
            raise click.ClickException(str(exc)) from None

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # click shortens each line to fit the terminal; a description cut in half says nothing.
        rows = [(name, Command.get_short_help_str(self.commands[name])) for name in self.list_commands(ctx) if not self.commands[name].hidden]
        if rows:
            with formatter.section("Commands"):
                width = max(len(name) for name, _ in rows)
                for name, text in rows:
                    formatter.write(f"  {name.ljust(width)}  {text}\n")


class ParsedType(click.ParamType):
    """A click type over one of cellcache's parsers, so a bad value is a usage error (exit 2)."""

    def __init__(self, name: str, parse: Callable[[str], Any]) -> None:
        self.name = name
        self._parse = parse

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str):
            return value
        try:
            return self._parse(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


SIZE = ParsedType("size", parse_size)
DURATION = ParsedType("duration", parse_duration)

dir_option = click.option(
    "--dir",
    "store_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    metavar="DIR",
    help="The store to use (default: found from the project root, see `cellcache --help`).",
)


def store_path(store_dir: Path | None) -> Path:
    return store_dir.resolve() if store_dir is not None else _config.resolve().dir


def store_for(store_dir: Path | None = None) -> LocalStore:
    config = _config.resolve()
    # Every setting the notebook's session uses (verify_local too); --dir only moves the folder.
    return open_store(config if store_dir is None else config.with_overrides(dir=store_dir.resolve()))


def json_of(value: Any) -> Any:
    to_json = getattr(value, "to_json", None)
    if callable(to_json):
        return to_json()
    return dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value


def plural(count: int, word: str, plural: str | None = None) -> str:
    return f"{count} {word if count == 1 else (plural or word + 's')}"


def json_option(what: str) -> Callable[[Any], Any]:
    """``--json``: print ``what`` as JSON on stdout, and nothing else there."""
    return click.option("--json", "as_json", is_flag=True, help=f"Print {what} as JSON.")
