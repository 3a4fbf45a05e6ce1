"""``%%cached`` and ``%cellcache``: parse the line, call the session, show the answer."""
from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments

from cellcache.errors import CacheError, DepNotFound, StepError
from cellcache.cell.spec import ARGUMENTS, SpecError, StageSpec, duration_arg, parse_line, size_arg
from cellcache.units import format_size

if TYPE_CHECKING:
    from cellcache.cell.runner import Session
    from cellcache.extension import Extension


_CELLCACHE_USAGE = (
    "usage: %cellcache [panel | stats | info | invalidate NAME | clear | gc [--max-size 5GB] [--older-than 30d] [--yes] | flush | on | off | auto [off] [--explain]]"
)


def _with_arguments(method: Any) -> Any:
    """IPython's magic arguments (and so ``%%cached?``'s help), from the one grammar in ``cellcache.cell.spec``."""
    for flags, options in reversed(ARGUMENTS):
        method = argument(*flags, **options)(method)
    return magic_arguments()(method)


@magics_class
class CellcacheMagics(Magics):
    def __init__(self, shell: Any, extension: Extension) -> None:
        super().__init__(shell)
        self.extension = extension

    @property
    def session(self) -> Session:
        return self.extension.session  # built at the first magic that needs it (see ``cellcache.extension``)

    @_with_arguments
    @cell_magic
    def cached(self, line: str, cell: str) -> None:
        """Run the cell only if its code, inputs or files changed; otherwise restore what it produced."""
        try:
            self.session.run(_spec(line), cell)
        except DepNotFound as exc:
            raise UsageError(f"%%cached: {exc}; the cell did not run") from None

    @line_magic
    def cellcache(self, line: str) -> Any:
        """Show the cache panel, or manage the store: %cellcache stats|info|invalidate NAME|clear|gc|on|off."""
        words = line.split()
        command, rest = (words[0], words[1:]) if words else ("panel", [])
        from cellcache import api

        session = self.session
        session.flush()  # every command sees (and may drop) the entries still being written behind
        if command == "panel" and not rest:
            return api.panel(session)
        if command == "stats" and not rest:
            print(api.stats_text(session.local))
        elif command == "info" and not rest:
            print(api.info_text(session))
        elif command == "invalidate":
            if len(rest) != 1:
                raise UsageError("usage: %cellcache invalidate NAME (one step name; see %cellcache stats for the names)")
            try:
                # In a notebook, a bare name means this notebook's step first.
                dropped = session.local.invalidate(session.local.resolve_step(rest[0], prefer=session.notebook))
            except StepError as exc:
                raise UsageError(f"%cellcache invalidate: {exc}") from None
            except CacheError as exc:  # a read-only or broken store: one line, no traceback
                print(f"cellcache: {exc}", file=sys.stderr)
                return None
            print(f"cellcache: invalidated step {rest[0]!r} ({dropped} entr{'y' if dropped == 1 else 'ies'} dropped)")
        elif command == "clear" and not rest:
            try:
                dropped = session.local.clear()
            except CacheError as exc:
                print(f"cellcache: {exc}", file=sys.stderr)
                return None
            print(f"cellcache: cleared the store at {session.local.root} ({dropped} entries dropped)")
        elif command == "gc":
            parser = argparse.ArgumentParser(prog="%cellcache gc", add_help=False, exit_on_error=False)
            parser.add_argument("--max-size", type=size_arg, default=None)
            parser.add_argument("--older-than", type=duration_arg, default=None)
            parser.add_argument("-y", "--yes", action="store_true")
            try:
                opts = parser.parse_args(rest)
            except (argparse.ArgumentError, SystemExit) as exc:
                raise UsageError(f"{exc}\nusage: %cellcache gc [--max-size 5GB] [--older-than 30d]") from None
            if opts.max_size is None and opts.older_than is None:
                raise UsageError("usage: %cellcache gc [--max-size 5GB] [--older-than 30d] (give at least one)")
            try:
                _check_big_gc(session.local, opts.max_size, opts.older_than, opts.yes)
                count, freed = session.local.gc(max_size=opts.max_size, older_than=opts.older_than)
            except CacheError as exc:
                print(f"cellcache: {exc}", file=sys.stderr)
                return None
            print(f"cellcache: gc dropped {count} entries, freed {format_size(freed)}")
        elif command == "flush" and not rest:
            pass  # done above
        elif command == "auto":
            _auto(session, rest)
        elif command in ("on", "off") and not rest:
            session.enabled = command == "on"
            print(f"cellcache: {'on' if session.enabled else 'off: %%cached cells run plainly'}")
        else:
            raise UsageError(f"unknown or malformed command {line.strip()!r}\n{_CELLCACHE_USAGE}")
        return None


def _check_big_gc(store: Any, max_size: int | None, older_than: float | None, yes: bool) -> None:
    """A notebook has no one to ask: a gc that would drop more than half of the store needs --yes."""
    if yes or not store.exists():
        return
    from cellcache.report import gc_needs_confirmation

    victims, total = store.gc_plan(max_size, older_than)
    if gc_needs_confirmation(victims, total):
        raise UsageError(f"%cellcache gc would drop {victims} of {total} entries; add --yes to go on")


def _spec(line: str) -> StageSpec:
    """The line as a StageSpec, by the grammar ``cellcache run`` reads notebooks with."""
    try:
        return parse_line(line)
    except SpecError as exc:
        raise UsageError(f"%%cached: {exc}") from None


def _auto(session: Session, rest: list[str]) -> None:
    """``%cellcache auto [off] [--explain]``: every code cell a stage from the next cell on, or no longer."""
    words = [w for w in rest if w not in ("-e", "--explain")]
    if words not in ([], ["on"], ["off"]):
        raise UsageError("usage: %cellcache auto [off] [--explain]")
    on = words != ["off"]
    session.auto.switch(on, explain=len(words) != len(rest))
    if on:
        print("cellcache: auto mode on: every code cell is a stage where caching pays (`# cellcache: off` opts a cell out)")
    else:
        print("cellcache: auto mode off: only %%cached cells are stages")
