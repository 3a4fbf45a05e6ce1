"""One analysed cell as a value, and the values that flow between the runner's four verbs.

``Session.prepare`` makes a ``Stage`` (or a ``Plain``: run without the cache,
and why). Then ``lookup(stage)`` answers a ``Hit`` or a ``Miss``; a hit is
``restore``d; a miss is ``execute``d into an ``Outcome``, which ``commit``
stores. Each is frozen: what a verb learns, it returns.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from cellcache.cell.analysis import CellNames
from cellcache.cell.effects import Hidden
from cellcache.cell.key import StageKey
from cellcache.cell.spec import StageSpec
from cellcache.errors import StoreError, Unfingerprintable
from cellcache.fingerprint import Bound, describe, fingerprint, module_digest, module_version
from cellcache.store.base import Found, StepRef
from cellcache.units import format_seconds


@dataclass(frozen=True)
class Stage:
    """A ``%%cached`` cell, analysed and keyed, before anything is looked up or run."""

    step: StepRef
    spec: StageSpec
    body: str  # as the user wrote it: what runs
    source: str  # as IPython transformed it: what is analysed and keyed
    names: CellNames
    inputs: Mapping[str, str]  # name -> digest, of the inputs the key holds
    descriptions: Mapping[str, str]  # component -> a short account of its value, for --explain
    hidden: Hidden
    deps: tuple[Path, ...]  # the declared --deps, expanded
    key: StageKey
    cwd: Path
    started: float  # perf_counter when the cell began

    @property
    def name(self) -> str:
        return self.step.name


@dataclass(frozen=True)
class Plain:
    """``prepare``'s other answer: the cell runs without the cache, for ``reason``."""

    name: str
    reason: str


@dataclass(frozen=True)
class Bundle:
    """What a blob holds for an entry: the outputs, what the cell showed and set, and their digests."""

    ns: dict[str, Any]
    record: Mapping[str, Any] = field(default_factory=dict)
    digests: Mapping[str, str] | None = None

    @classmethod
    def from_stored(cls, stored: Any) -> Bundle:
        # The stored form stays a plain dict, as every blob before this class was written.
        if not isinstance(stored, dict) or not isinstance(stored.get("ns"), dict):
            raise StoreError("blob does not hold a cellcache bundle")
        return cls(stored["ns"], stored.get("record") or {}, stored.get("digests"))


@dataclass(frozen=True)
class Hit:
    found: Found
    bundle: Bundle


@dataclass(frozen=True)
class Miss:
    reason: str | None  # None: no entry at all, which the caller explains against the step's last one


@dataclass(frozen=True)
class Outcome:
    """What a missed cell's run produced, as the cell ended: what ``commit`` stores."""

    values: dict[str, Any]
    deletes: tuple[str, ...]
    result_name: str | None
    record: dict[str, Any]  # the capture's record, with the effects to replay
    seconds: float
    implicit: tuple[Path, ...]  # files the run read that were not declared
    outs: tuple[Path, ...]  # the declared --outs it wrote
    keys: tuple[StageKey, ...]  # the key (extended by draws the analysis missed), then the key a re-run here gets
    plain: str | None = None  # auto mode: a side effect a hit would skip, so the cell stays plain (cellcache.cell.watch)


@dataclass(frozen=True)
class Failed:
    """``execute``'s answer when the cell raised, or broke a promise (an ``--outs`` it did not write)."""

    error: BaseException | None
    seconds: float
    promise: bool = False  # the cell ran but broke a promise: cellcache itself fails the cell


@dataclass(frozen=True)
class StepRun:
    """What happened to the last ``%%cached`` cell."""

    name: str
    hit: bool
    key: str | None
    seconds: float
    saved_seconds: float
    reason: str
    status: str  # "hit", "miss", "error", "uncached", "would-run" (restore-only mode) or "plain" (auto mode)

    def __str__(self) -> str:
        # One line a person reads: "fit: hit in 41 ms, saved 12.3 s (hit: code, inputs and files unchanged)".
        took = f"{self.status} in {format_seconds(self.seconds)}"
        saved = f", saved {format_seconds(self.saved_seconds)}" if self.hit else ""
        why = f" ({self.reason})" if self.reason and self.reason != self.status else ""
        return f"{self.name}: {took}{saved}{why}"

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        # IPython shows `cellcache.last_run()` with this; repr() stays the dataclass's.
        p.text(str(self))


class UnfingerprintableInput(Exception):
    def __init__(self, name: str, cause: Unfingerprintable) -> None:
        super().__init__(name)
        self.name, self.cause = name, cause


def component_inputs(values: Mapping[str, Any], bound: Bound | None = None) -> tuple[dict[str, str], dict[str, str]]:
    """The inputs' digests and descriptions; ``UnfingerprintableInput`` names the first that has none.

    ``bound``: the namespace, and the names the cell binds before it can call
    any of that namespace's functions (``CellNames.prebound``): a helper's
    read of them sees the cell's value, so their earlier values are no input.
    """
    digests, descriptions = {}, {}
    seen: dict[int, str] = {}  # two names bound to one object: one fingerprint (the values stay alive in `values`)
    for name, value in values.items():
        try:
            digests[name] = seen.get(id(value)) or seen.setdefault(id(value), fingerprint(value, bound).hex())
        except Unfingerprintable as exc:
            raise UnfingerprintableInput(name, exc) from exc
        descriptions[f"input:{name}"] = describe(value)
    return digests, descriptions


def module_components(imports: frozenset[str], dotted: Iterable[str] = ()) -> dict[str, str]:
    """Key components for the modules a cell imports: local ones by source, installed ones by version."""
    components = {}
    # `import pkg.sub` and `from pkg import sub` reach pkg/sub.py, which pkg/__init__.py may not import.
    local_tops = {m for m in imports if module_digest(m) is not None}
    submodules = {m for m in dotted if "." in m and m.partition(".")[0] in local_tops}
    for module in sorted(set(imports) | submodules):
        local = module_digest(module)
        if local is not None:
            components[f"module:{module}"] = local.hex()
            continue
        if module in submodules:
            continue  # `from pkg import name` where name is no module
        version = module_version(module)
        if version is not None and version != "stdlib":
            components[f"package:{module}"] = version.partition("==")[2] or version
    return components
