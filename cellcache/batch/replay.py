"""Replay an unchanged notebook without a kernel: what a warm `cellcache run --auto` costs when nothing changed.

A warm run of a real notebook spends its time on what no cell cache can skip:
starting the kernel and importing the libraries. When the notebook, its
parameters, its kernel, its environment and everything the run depended on
are as they were, the run's outputs are the last run's outputs, so the batch
writes them without starting a kernel at all.

What "everything the run depended on" means is what the kernel's trace
(cellcache.batch.trace) saw over the whole run: the files read, listed and
globbed, the files named by strings, the project's module sources, the
installed packages and the interpreter. A run that had a side effect (wrote a
file, started a process, used the network) is never replayed, and neither is
one that showed a widget.

A record is replayed only once it is confirmed: two runs in a row gave the
same outputs from the same inputs. A cell whose output changes from run to run
(a clock, an unseeded random draw) never confirms, so its notebook keeps
running in a kernel. ``auto_replay = false`` (``CELLCACHE_AUTO_REPLAY=0``) and
``--force`` turn replay off.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import xxhash

from cellcache.batch.results import CellResult, ERROR, INTERRUPTED, NOT_RUN, WOULD_RUN
from cellcache.store.maintenance import REPLAYS as FOLDER  # under the local store; invalidations remove it

if TYPE_CHECKING:
    from nbformat import NotebookNode

_VERSION = 1
# Variables that differ between two invocations of the same command and mean nothing to a notebook.
_VOLATILE_ENV = frozenset({"_", "OLDPWD", "SHLVL", "PWD", "TERM_SESSION_ID", "WINDOWID", "SSH_AGENT_PID", "SSH_AUTH_SOCK", "SSH_CLIENT", "SSH_CONNECTION", "SSH_TTY", "COLUMNS", "LINES"})
_WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


@dataclass(frozen=True)
class Replayed:
    """A notebook replayed from its record: its cells' results and when the run it repeats happened."""

    cells: tuple[CellResult, ...]
    since: str


def notebook_key(nb: NotebookNode, path: Path, kernel: str, env: Mapping[str, str], settings: str) -> str:
    """What must be equal before a record is even looked at: the code, where it runs, with what, and cellcache's settings.

    A cryptographic hash: the environment and the settings may hold secrets, and the key names a file.
    """
    from cellcache import __version__

    cells = [(c.source, sorted(c.get("metadata", {}).get("tags", []))) for c in nb.cells if c.cell_type == "code"]
    spec = _kernel_argv(kernel)
    settled = {k: v for k, v in sorted(env.items()) if k not in _VOLATILE_ENV}
    text = json.dumps([_VERSION, __version__, str(Path(path).resolve()), kernel, spec, cells, settled, settings], sort_keys=True)
    return hashlib.blake2b(text.encode("utf-8", "surrogateescape"), digest_size=16).hexdigest()


def _kernel_argv(kernel: str) -> list[str] | None:
    """The command the kernel starts with: another interpreter is another environment."""
    try:
        from jupyter_client.kernelspec import KernelSpecManager

        return list(KernelSpecManager().get_kernel_spec(kernel or "python3").argv)
    except Exception:  # noqa: BLE001 - an unknown kernel fails at start, with its own message
        return None


def _record_path(store_dir: Path, key: str) -> Path:
    return Path(store_dir) / FOLDER / f"{key}.json"


def _load(store_dir: Path, key: str) -> dict[str, Any] | None:
    try:
        record = json.loads(_record_path(store_dir, key).read_text())
    except (OSError, ValueError):
        return None  # none yet, or unreadable: the notebook runs, and its run writes a new one
    return record if isinstance(record, dict) and record.get("version") == _VERSION else None


def replay(nb: NotebookNode, store_dir: Path, key: str, cwd: Path) -> Replayed | None:
    """Put the recorded outputs into ``nb`` if its record is confirmed and all it depended on is unchanged."""
    from cellcache.cell.files import current_digest

    record = _load(store_dir, key)
    if record is None or not record.get("confirmed"):
        return None
    deps = record.get("deps") or {}
    if any(current_digest(shown, cwd, None) != value for shown, value in deps.items()):
        return None
    code = [c for c in nb.cells if c.cell_type == "code"]
    outputs = record.get("outputs") or []
    if len(outputs) != len(code):
        return None
    import nbformat

    for cell, (outs, count) in zip(code, outputs):
        cell.outputs = [nbformat.from_dict(o) for o in outs]
        cell.execution_count = count
    # Saved: all the cell took in the run repeated (a hit's restore included), which this one did not spend.
    cells = tuple(
        CellResult(**{**r, "seconds": 0.0, "saved_seconds": r["saved_seconds"] + r["seconds"], "warnings": tuple(r.get("warnings", ()))})
        for r in record.get("results", [])
    )
    return Replayed(cells, str(record.get("when", "")))


def remember(nb: NotebookNode, store_dir: Path, key: str, results: Sequence[CellResult], trace_file: Path) -> str | None:
    """After a whole, clean run: keep what replaying it needs. Returns why it can't be replayed, if it can't."""
    why = _unfit(nb, results, trace_file)
    if why is not None:
        _forget(store_dir, key)
        return why
    trace = json.loads(trace_file.read_text())
    outputs = [([_plain(o) for o in c.outputs], c.execution_count) for c in nb.cells if c.cell_type == "code"]
    digest = _outputs_digest(outputs)
    before = _load(store_dir, key)
    # Confirmed by a second run that saw the same inputs and gave the same outputs: a clock or an
    # unseeded draw in any cell never confirms.
    # (The two may have loaded different modules: a cold run imports the store's writer, a warm one not.)
    deps = trace["deps"]
    confirmed = (
        before is not None
        and before.get("outputs_digest") == digest
        and all(deps.get(shown, value) == value for shown, value in (before.get("deps") or {}).items())
    )
    record = {
        "version": _VERSION,
        "confirmed": confirmed,
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
        "deps": deps,
        "python": trace.get("python"),
        "outputs_digest": digest,
        "outputs": outputs,
        "results": [_result_json(r) for r in results],
    }
    from cellcache.store.atomic import atomic_write_bytes

    try:
        target = _record_path(store_dir, key)
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(target, json.dumps(record).encode())
    except OSError as exc:
        return f"its record could not be written ({exc})"
    return None


def _unfit(nb: NotebookNode, results: Sequence[CellResult], trace_file: Path) -> str | None:
    if any(r.status in (ERROR, INTERRUPTED, NOT_RUN, WOULD_RUN) for r in results):
        return "not every cell ran"
    try:
        trace = json.loads(trace_file.read_text())
    except (OSError, ValueError):
        return "the run was not traced"
    if trace.get("plain"):
        return str(trace["plain"])
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if _WIDGET_MIME in out.get("data", {}):
                return "it shows an interactive widget"
    return None


def _forget(store_dir: Path, key: str) -> None:
    try:
        os.unlink(_record_path(store_dir, key))
    except OSError:
        pass


def _plain(output: Any) -> Any:
    return json.loads(json.dumps(output))  # nbformat's NotebookNode, as plain JSON values


def _outputs_digest(outputs: list[Any]) -> str:
    # Execution counts are where a cell ran, not what it gave.
    scrubbed = [[{k: v for k, v in o.items() if k != "execution_count"} for o in outs] for outs, _ in outputs]
    return xxhash.xxh3_128_hexdigest(json.dumps(scrubbed, sort_keys=True).encode())


def _result_json(result: CellResult) -> dict[str, Any]:
    return {
        "index": result.index,
        "step": result.step,
        "status": result.status,
        "seconds": result.seconds,
        "saved_seconds": result.saved_seconds,
        "error": result.error,
        "reason": result.reason,
        "warnings": list(result.warnings),
    }
