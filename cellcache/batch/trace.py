"""In the kernel of a `cellcache run --auto`: what the notebook as a whole depended on and did.

The setup code starts the trace before the first cell; the last cell's flush
dumps it. From the whole run it keeps:

- every file the cells read, listed or globbed, and the existing files their
  string literals and string values name (native readers open those where the
  audit hook can't see), with their digests at the end of the run;
- the source files of the modules loaded from outside the interpreter's own
  folders (the project's modules, editable installs), and the listings of
  the interpreter's package folders (what is installed, at which version);
- the files written under the notebook's folder, as the run left them;
- the side effects the watch saw (processes, sockets, removals, databases),
  and the files written outside the notebook's folder, the tool caches and
  the store.

The batch (cellcache.batch.replay) keeps it with the executed notebook; a
later run replays the notebook without a kernel only while all of it holds.
"""
from __future__ import annotations

import ast
import json
import os
import sys
import threading
from pathlib import Path
from typing import Any

_recorder: Any = None
_watch: Any = None
_databases: list[str] = []


def start(*excluded: str) -> None:
    """Record from now on, beside the cells' own recordings (the audit hook is shared).

    ``excluded``: folders cellcache itself writes in (the store, the batch's report).
    """
    global _recorder, _watch
    from cellcache.cell.files import OpenRecorder
    from cellcache.cell.watch import Watch

    if _recorder is not None:
        return
    _watch = Watch()
    _recorder = OpenRecorder(exclude=[Path(p) for p in excluded], watch=_watch, whole=True)
    _recorder.__enter__()
    ours = threading.get_ident()

    def databases(event: str, args: tuple) -> None:
        # A database is read and written where the hook can't see: what a run put in it, a replay would not.
        if event == "sqlite3.connect" and threading.get_ident() == ours and _recorder is not None:
            _databases.append(str(args[0]) if args else "?")

    sys.addaudithook(databases)


def dump(path: str) -> None:
    """Write what was seen to ``path`` (JSON); nothing if the trace was never started."""
    if _recorder is None:
        return
    _recorder.__exit__(None, None, None)
    try:
        record = _summary()
    except Exception as exc:  # noqa: BLE001 - a trace that can't be summed up only means no replay
        record = {"plain": f"the run could not be traced ({type(exc).__name__}: {exc})"}
    Path(path).write_text(json.dumps(record))


def _summary() -> dict[str, Any]:
    from cellcache.cell.files import Listing, digests
    from cellcache.cell.watch import classify

    cwd = Path.cwd()
    recorder = _recorder
    verdict = classify(recorder.files_written(), _watch, False, cwd, cwd, recorder.excluded, recorder.files_updated())
    if verdict.plain is not None:
        return {"plain": verdict.plain}
    # In memory, or cellcache's own index (in the store): nothing the notebook keeps.
    databases = [d for d in _databases if d not in ("", ":memory:") and not d.startswith("file::memory:") and not recorder.excluded(d)]
    if databases:
        return {"plain": f"uses a database ({databases[0]})"}
    deps: list[Any] = list(recorder.files_read(named=_named()))
    # The files it wrote under its folder count as what it read: a replay needs them as the run left them
    # (a figure deleted since, or changed by hand, means running again to write it).
    deps.extend(verdict.outs)
    known = {str(d) for d in deps if isinstance(d, Path)}
    for module in list(sys.modules.values()):
        source = getattr(module, "__file__", None)
        if isinstance(source, str) and source not in known and os.path.isfile(source) and not recorder.excluded(source):
            deps.append(Path(os.path.abspath(source)))
            known.add(source)
    installed = [d for d in sys.path if d and os.path.isdir(d) and recorder.excluded(d)]
    deps.extend(Listing(Listing.DIR, os.path.abspath(d)) for d in sorted(set(installed)))
    deps.append(Path(os.path.realpath(sys.executable)))
    startup = _startup_folder()
    if startup is not None:
        deps.extend(_startup_files(startup, known))
        if startup.is_dir():
            deps.append(Listing(Listing.DIR, str(startup)))
    return {"plain": None, "deps": digests(deps, cwd, None), "python": sys.version}


def _startup_folder() -> Path | None:
    try:
        return Path(get_ipython().profile_dir.location) / "startup"  # type: ignore[name-defined]  # noqa: F821 - the kernel's builtin
    except (NameError, AttributeError):
        return None


def _startup_files(startup: Path, known: set[str]) -> list[Path]:
    """IPython's startup scripts and the kernel's config: they ran before the first cell, outside the trace."""
    folder = startup.parent
    found = sorted(startup.glob("*.py")) + sorted(startup.glob("*.ipy"))
    found += [p for p in (folder / "ipython_config.py", folder / "ipython_kernel_config.py") if p.is_file()]
    return [p for p in found if str(p) not in known]


def _named() -> list[object]:
    """The strings the notebook holds: its cells' string literals and its variables' string values."""
    found: list[object] = []
    try:
        shell = get_ipython()  # type: ignore[name-defined]  # noqa: F821 - the kernel's builtin
    except NameError:
        return found
    for source in shell.user_ns.get("In", []):
        try:
            tree = ast.parse(shell.transform_cell(source))
        except (SyntaxError, ValueError):
            continue
        found.extend(n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str) and len(n.value) < 4096)
    found.extend(v for k, v in list(shell.user_ns.items()) if not k.startswith("_") and isinstance(v, (str, os.PathLike)))
    return found
