"""Auto mode's side-effect watch: what a cell did that a hit would not do again.

A user who put no ``%%cached`` on a cell has not agreed to skip its side
effects. While an auto-mode cell runs, the audit hook that records its file
reads (``cellcache.cell.files``) also hands this watch the events that are
side effects: processes started, sockets connected, files removed or renamed.
The files it wrote come from the same recording.

``classify`` turns what was seen into a verdict, purely:

- writes inside the project (not the store, not a tool cache) become the
  cell's outs: stored with the entry and written back on a hit, as ``--outs``;
- writes outside the project, removals of files the cell did not write,
  network connections, subprocesses and interactive widgets make the cell
  run plainly from then on, with that reason.

The watch cannot see inside a process the cell starts; starting one is
itself what makes the cell plain.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

_PROCESS_EVENTS = frozenset({"subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty", "os.startfile"})
_NETWORK_EVENTS = frozenset({"socket.connect", "socket.sendto"})
# Writes nobody means as a result: byte code an import leaves behind.
_NOT_RESULTS = (".pyc", ".pyo")
_SHOWN = 2  # paths named in a reason; more are counted


@dataclass
class Watch:
    """Collects the side-effect events of one run (called from the audit hook: keep it cheap)."""

    processes: list[str] = field(default_factory=list)
    connections: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    renamed: list[tuple[str, str]] = field(default_factory=list)

    def __call__(self, event: str, args: tuple) -> None:
        try:
            if event in _PROCESS_EVENTS:
                self.processes.append(_command(event, args))
            elif event in _NETWORK_EVENTS:
                self.connections.append(_address(args[1] if len(args) > 1 else None))
            elif event in ("os.remove", "os.rmdir", "shutil.rmtree"):
                if not isinstance(args[0], int):
                    self.removed.append(os.path.abspath(os.fsdecode(args[0])))
            elif event == "os.rename":
                if not isinstance(args[0], int) and not isinstance(args[1], int):
                    self.renamed.append((os.path.abspath(os.fsdecode(args[0])), os.path.abspath(os.fsdecode(args[1]))))
        except Exception:  # noqa: BLE001 - an audit hook must never raise into the user's code
            self.processes.append(event)


@dataclass(frozen=True)
class Verdict:
    """What the watch concluded: the project files that become outs, or why the cell runs plainly."""

    outs: tuple[Path, ...] = ()
    plain: str | None = None


def classify(
    written: Iterable[str],
    watch: Watch,
    widgets: bool,
    root: Path,
    cwd: Path,
    ignored: Callable[[str], bool] = lambda _: False,
    updated: Iterable[str] = (),
) -> Verdict:
    """The verdict on one run: ``written`` are the files it opened for writing; ``ignored`` says which don't count.

    ``root`` is the project: writes under it are results; anywhere else they are side effects. ``updated``
    are the files written in place (appended to): their content after the run depends on what was there
    before, which no key holds, so writing back the stored one would not be what a run does.
    """
    if watch.processes:
        return Verdict(plain=f"side effect: starts a subprocess ({_short(watch.processes[0])})")
    if watch.connections:
        return Verdict(plain=f"uses the network ({watch.connections[0]})")
    if widgets:
        return Verdict(plain="side effect: shows an interactive widget")
    written_set = {p for p in written if not p.endswith(_NOT_RESULTS) and not ignored(p)}
    for src, dst in watch.renamed:
        # A rename is a write of its destination (the atomic-write idiom), and a removal of a source it did not write.
        if not ignored(dst):
            written_set.add(dst)
        if src not in written_set and not ignored(src):
            watch.removed.append(src)
        written_set.discard(src)
    appended = sorted(p for p in updated if p in written_set and os.path.isfile(p))
    if appended:
        return Verdict(plain=f"side effect: appends to {_list(appended, cwd)}")
    removed = sorted(p for p in watch.removed if p not in written_set and not ignored(p))
    if removed:
        return Verdict(plain=f"side effect: removes {_list(removed, cwd)}")
    project = os.path.realpath(root).rstrip(os.sep) + os.sep
    outside = sorted(p for p in written_set if not os.path.realpath(p).startswith(project))
    if outside:
        return Verdict(plain=f"side effect: writes {_list(outside, cwd)}")
    # Written, then removed by the cell itself (a temporary file): nothing to store.
    outs = tuple(Path(p) for p in sorted(written_set) if os.path.isfile(p))
    return Verdict(outs=outs)


def _list(paths: list[str], cwd: Path) -> str:
    from cellcache.cell.files import display_path

    shown = ", ".join(display_path(Path(p), cwd) for p in paths[:_SHOWN])
    return shown + (f" and {len(paths) - _SHOWN} more" if len(paths) > _SHOWN else "")


def _command(event: str, args: tuple) -> str:
    if event == "subprocess.Popen":
        argv = args[1]
        if isinstance(argv, (list, tuple)):
            return " ".join(os.fsdecode(a) if isinstance(a, (str, bytes)) else str(a) for a in argv)
        return os.fsdecode(argv) if isinstance(argv, (str, bytes)) else str(args[0])
    if event == "os.system":
        return os.fsdecode(args[0])
    if event in ("os.fork", "os.forkpty"):
        return "fork"
    return os.fsdecode(args[0]) if args and isinstance(args[0], (str, bytes)) else event


def _address(address: Any) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        return f"{address[0]}:{address[1]}"
    return str(address)


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
