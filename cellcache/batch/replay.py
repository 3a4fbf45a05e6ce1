"""Replay an unchanged notebook without a kernel: what a warm `cellcache run --auto` costs when nothing changed.

A warm run of a real notebook spends its time on what no cell cache can skip:
starting the kernel and importing the libraries. When the notebook, its
parameters, its kernel, its environment and everything the run depended on
are as they were, the run's outputs are the last run's outputs, so the batch
writes them without starting a kernel at all.

What "everything the run depended on" means is what the kernel's trace
(cellcache.batch.trace) saw over the whole run: the files read, listed and
globbed, the files named by strings, the project's module sources, the
installed packages and the interpreter, and the files it wrote under the
notebook's folder, as it left them. A run that had a side effect a replay
would skip (a write elsewhere, a removal, a process, a socket, a database
file) is never replayed, and neither is one that showed a widget.

The record is signed with the local store's key (an HMAC, as its manifests
are): a record planted in the store folder is not replayed. A record is
replayed only once it is confirmed: two runs in a row gave the same outputs
from the same inputs. A cell whose output changes from run to run
(a clock, an unseeded random draw) never confirms, so its notebook keeps
running in a kernel. ``auto_replay = false`` (``CELLCACHE_AUTO_REPLAY=0``) and
``--force`` turn replay off.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import xxhash

from cellcache.batch.results import CellResult, ERROR, HIT, INTERRUPTED, NOT_RUN, PLAIN, WOULD_RUN
from cellcache.store.maintenance import REPLAYS as FOLDER  # under the local store; invalidations remove it

if TYPE_CHECKING:
    from nbformat import NotebookNode

    from cellcache.config import Config

_VERSION = 1
# Variables that differ between two invocations of the same command and mean nothing to a notebook.
_VOLATILE_ENV = frozenset({"_", "OLDPWD", "SHLVL", "PWD", "TERM_SESSION_ID", "WINDOWID", "SSH_AGENT_PID", "SSH_AUTH_SOCK", "SSH_CLIENT", "SSH_CONNECTION", "SSH_TTY", "COLUMNS", "LINES"})
_WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


@dataclass(frozen=True)
class Replayed:
    """A notebook replayed from its record: its cells' results and when the run it repeats happened."""

    cells: tuple[CellResult, ...]
    since: str
    recorded: tuple[CellResult, ...] = ()  # the cells as the run it repeats saw them


@dataclass(frozen=True)
class Ticket:
    """Where one notebook's record lives and what signs it: made before the run, used before and after it."""

    key: str
    notebook: str  # the notebook's name in the ledger
    config: Config = field(repr=False)  # its store's
    secret: bytes = field(repr=False)  # the local store's signing key

    @property
    def store_dir(self) -> Path:
        return Path(self.config.dir)

    @property
    def path(self) -> Path:
        return self.store_dir / FOLDER / f"{self.key}.json"


def ticket(nb: NotebookNode, path: Path, kernel: str, env: Mapping[str, str], config: Config) -> Ticket | None:
    """The notebook's ticket; None without the local signing key (then nothing is recorded nor replayed)."""
    from cellcache.errors import SigningKeyError
    from cellcache.store.local_key import load_signing_key

    try:
        secret = load_signing_key(config.key).secret
    except SigningKeyError:
        return None
    from cellcache.config import notebook_name, project_root

    key = notebook_key(nb, path, kernel, env, repr(replace(config, key=None)))
    # Named as the kernel names it (cellcache.config.notebook_from_env), so a replay counts under the same steps.
    name = notebook_name(Path(path).resolve(), project_root(Path(path).resolve().parent))
    return Ticket(key, name, config, secret)


def notebook_key(nb: NotebookNode, path: Path, kernel: str, env: Mapping[str, str], settings: str) -> str:
    """What must be equal before a record is even looked at: the code, where it runs, with what, and cellcache's settings.

    A cryptographic hash: the environment may hold secrets, and the key names a file.
    """
    from cellcache import __version__

    # The ids too: auto mode names each cell's step after its id.
    cells = [(c.get("id"), c.source, sorted(c.get("metadata", {}).get("tags", []))) for c in nb.cells if c.cell_type == "code"]
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


def _signature(body: bytes, secret: bytes) -> bytes:
    # Its own domain: a replay record's signature is never a valid manifest signature, nor the reverse.
    return hmac.new(secret, b"cellcache replay record\0" + body, hashlib.sha256).hexdigest().encode()


def _load(ticket: Ticket) -> dict[str, Any] | None:
    """The record, if there is one, it is signed with this user's key, and it is of this version."""
    try:
        raw = ticket.path.read_bytes()
    except OSError:
        return None  # none yet: the notebook runs, and its run writes one
    signature, newline, body = raw.partition(b"\n")
    if not newline or not hmac.compare_digest(signature, _signature(body, ticket.secret)):
        return None  # planted, tampered or torn: never used; the run rewrites it
    try:
        record = json.loads(body)
    except ValueError:
        return None
    return record if isinstance(record, dict) and record.get("version") == _VERSION else None


def replay(nb: NotebookNode, ticket: Ticket, cwd: Path) -> Replayed | None:
    """Put the recorded outputs into ``nb`` if its record is confirmed and all it depended on is unchanged."""
    from cellcache.cell.files import current_digest

    record = _load(ticket)
    if record is None or not record.get("confirmed"):
        return None
    try:
        if any(current_digest(shown, cwd, None) != value for shown, value in record["deps"].items()):
            return None
        code = [c for c in nb.cells if c.cell_type == "code"]
        outputs = record["outputs"]
        recorded = tuple(CellResult(**{**r, "warnings": tuple(r["warnings"])}) for r in record["results"])
        # Saved: all the cell took in the run repeated (a hit's restore included), which this one did not spend.
        cells = tuple(replace(c, seconds=0.0, saved_seconds=c.saved_seconds + c.seconds) for c in recorded)
    except (KeyError, TypeError, ValueError, AttributeError):
        return None  # signed by us, yet not what this version writes: run, and write it anew
    if len(outputs) != len(code):
        return None
    import nbformat

    for cell, (outs, count) in zip(code, outputs):
        cell.outputs = [nbformat.from_dict(o) for o in outs]
        cell.execution_count = count
    return Replayed(cells, str(record.get("when", "")), recorded)


def count(ticket: Ticket, replayed: Replayed) -> None:
    """Count a replay's steps in the store's ledger as the run it repeats counted them: `stats` and the panel see every run.

    Its hits are hits again, its plain cells plain, with the same seconds, so the cost rule learns nothing new from it.
    """
    from cellcache.store.base import RunRecord, StepRef
    from cellcache.store.local import open_store

    try:
        store = open_store(ticket.config)
        try:
            for cell in replayed.recorded:
                if cell.step and cell.status in (HIT, PLAIN):
                    step = StepRef(ticket.notebook, cell.step)
                    store.record_run(RunRecord(step, None, cell.status, cell.seconds, cell.saved_seconds, cell.reason or ""))
        finally:
            store.close()
    except Exception:  # noqa: BLE001 - statistics never cost a result, nor a warning (as in the kernel)
        pass


def remember(nb: NotebookNode, ticket: Ticket, results: Sequence[CellResult], trace_file: Path) -> str | None:
    """After a whole, clean run: keep what replaying it needs.

    Returns what the user should know of why the notebook won't be replayed, if it won't; None when it
    may be, or when the reason is plain to see (a cell failed).
    """
    deps, why = _traced_deps(nb, results, trace_file)
    if deps is None:
        _forget(ticket)
        return None if why in (_NOT_ALL_RAN, _NOT_TRACED) else f"not replayed without a kernel: {why}"
    code = [c for c in nb.cells if c.cell_type == "code"]
    outputs = [([_plain(o) for o in c.outputs], c.execution_count) for c in code]
    cells = [_outputs_digest(outs) for outs, _ in outputs]
    digest = xxhash.xxh3_128_hexdigest("".join(cells).encode())  # of the cells' own: the outputs are serialized once
    before = _load(ticket)
    # Confirmed by a second run that saw the same inputs and gave the same outputs: a clock or an
    # unseeded draw in any cell never confirms. (The two may have loaded different modules: a cold
    # run imports the store's writer, a warm one does not.)
    same_inputs = before is not None and all(deps.get(shown, value) == value for shown, value in (before.get("deps") or {}).items())
    confirmed = same_inputs and before.get("outputs_digest") == digest  # type: ignore[union-attr]
    record = {
        "version": _VERSION,
        "confirmed": confirmed,
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
        "deps": deps,
        "outputs_digest": digest,
        "cell_digests": cells,
        "outputs": outputs,
        "results": [r.to_json() for r in results],
    }
    from cellcache.store.atomic import atomic_write_bytes

    body = json.dumps(record).encode()
    try:
        ticket.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(ticket.path, _signature(body, ticket.secret) + b"\n" + body)
    except OSError as exc:
        return f"not replayed without a kernel: its record could not be written ({exc})"
    if same_inputs and not confirmed:  # the same inputs, other outputs: say where
        previous = before.get("cell_digests") or []  # type: ignore[union-attr]
        changed = next((n for n, (a, b) in enumerate(zip(previous, cells)) if a != b), None)
        if changed is not None and len(previous) == len(cells):
            index = next(i for i, c in enumerate(nb.cells) if c is code[changed])
            return (f"not replayed without a kernel: cell {index}'s output differs from the last run's "
                    "(a clock, a timing or an unseeded random draw?)")
    return None


_NOT_ALL_RAN, _NOT_TRACED = "not every cell ran", "the run was not traced"


def _traced_deps(nb: NotebookNode, results: Sequence[CellResult], trace_file: Path) -> tuple[dict[str, str] | None, str | None]:
    """What the kernel's trace says the run depended on; or None and why the run can't be replayed."""
    if any(r.status in (ERROR, INTERRUPTED, NOT_RUN, WOULD_RUN) for r in results):
        return None, _NOT_ALL_RAN
    try:
        trace = json.loads(trace_file.read_text())
    except (OSError, ValueError):
        return None, _NOT_TRACED
    if not isinstance(trace, dict):
        return None, _NOT_TRACED
    if trace.get("plain"):
        return None, str(trace["plain"])
    if not isinstance(trace.get("deps"), dict):
        return None, _NOT_TRACED
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if _WIDGET_MIME in out.get("data", {}):
                return None, "it shows an interactive widget"
    return trace["deps"], None


def _forget(ticket: Ticket) -> None:
    try:
        os.unlink(ticket.path)
    except OSError:
        pass


def _plain(output: Any) -> Any:
    return json.loads(json.dumps(output))  # nbformat's NotebookNode, as plain JSON values


def _outputs_digest(outputs: list[Any]) -> str:
    """One cell's outputs. Execution counts are where a cell ran, not what it gave."""
    scrubbed = [{k: v for k, v in o.items() if k != "execution_count"} for o in outputs]
    return xxhash.xxh3_128_hexdigest(json.dumps(scrubbed, sort_keys=True).encode())
