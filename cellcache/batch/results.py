"""What a batch is made of and what it gives back: options, jobs, and the results of cells, notebooks and batches.

Frozen values with ``to_json``: the CLI only renders them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from cellcache import config as _config
from cellcache.batch import sweep as _sweep

if TYPE_CHECKING:
    pass

# nbformat and nbclient are imported where they are used: nbformat pulls in jsonschema and its
# format checkers, seconds of import time that the store commands of the CLI should not pay.



HIT = "hit"



MISS = "miss"



PLAIN = "plain"



ERROR = "error"



NOT_RUN = "not run"  # after a failure or Ctrl-C; in `status`, a plain cell that reads a would-run step's outputs



INTERRUPTED = "interrupted"  # the cell that was running when the run was stopped



WOULD_RUN = "would-run"  # `status` only: a cached cell that would run



AFTER_MISS = "after-miss"  # kept for readers of older JSON; `status` no longer stops at a miss



# The Session's StepRun.status -> the cell's status in a batch result.
FROM_SESSION = {"hit": HIT, "miss": MISS, "error": ERROR, "uncached": PLAIN, "plain": PLAIN, "would-run": WOULD_RUN}



NOTEBOOK_ENV = _config.NOTEBOOK_ENV



@dataclass(frozen=True)
class RunOptions:
    """How to execute: one value shared by every job of a batch."""

    force: bool = False  # every cached cell re-runs and its entry is replaced
    restore_only: bool = False  # `status`: restore hits, never run a cached body
    inplace: bool = False  # write the executed notebook over its source
    output_dir: Path | None = None  # or write it into this folder, under its own (or its parameters') name
    timeout: float | None = None  # seconds per cell; None: no limit
    kernel: str | None = None  # kernel name; None: the notebook's own kernelspec (python3 if none)
    allow_errors: bool = False  # keep executing after a failing cell
    jobs: int = 1  # jobs executed at once, each in its own kernel
    startup_timeout: float = 60.0
    store_dir: Path | None = None  # the store every kernel uses; None: found from each notebook's project
    log_output: bool = False  # stream the cells' output to the listener as it comes
    executor: str | None = None  # "dask://HOST:PORT": run the jobs on that Dask cluster
    auto: bool = False  # auto mode: every code cell a stage where caching pays (also on if the project's config says so)



@dataclass(frozen=True)
class Job:
    """One notebook with one set of parameters: the unit that gets a kernel of its own."""

    path: Path
    parameters: _sweep.Combination = field(default_factory=_sweep.Combination)
    output: Path | None = None  # where the executed notebook goes, if anywhere

    @property
    def label(self) -> str:
        params = self.parameters.label()
        return f"{self.path} [{params}]" if params else str(self.path)

    @property
    def title(self) -> str:
        """The heading of this job's table: the path and every parameter given, ``nb.ipynb [lr=0.01, epochs=100]``."""
        params = self.parameters.title()
        return f"{self.path} {params}" if params else str(self.path)



@dataclass(frozen=True)
class CellResult:
    index: int
    step: str | None  # the step name for a %%cached cell, None for a plain one
    status: str  # hit, miss, plain, error, not run, interrupted; and for `status`: would-run
    seconds: float
    saved_seconds: float
    error: str | None = None  # "ename: evalue" when status is error
    reason: str | None = None  # why a cached cell hit, missed or would run; why a cell was not run
    warnings: tuple[str, ...] = ()  # the CacheWarnings the kernel showed while this cell ran

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "step": self.step,
            "status": self.status,
            "seconds": round(self.seconds, 6),
            "saved_seconds": round(self.saved_seconds, 6),
            "reason": self.reason,
            "error": self.error,
            "warnings": list(self.warnings),
        }



@dataclass(frozen=True)
class NotebookResult:
    path: Path
    cells: tuple[CellResult, ...]
    error: str | None = None  # why the notebook stopped early (a failed cell, a dead kernel, Ctrl-C), if it did
    output: Path | None = None  # where the executed notebook was written, if it was
    parameters: _sweep.Combination = field(default_factory=_sweep.Combination)
    interrupted: bool = False
    # When the notebook was replayed without a kernel (cellcache.batch.replay): the time of the run it repeats.
    replayed: str | None = None
    replay_note: str | None = None  # why an auto-mode run won't be replayed, when the user could not tell

    def count(self, status: str) -> int:
        return sum(c.status == status for c in self.cells)

    @property
    def hits(self) -> int:
        return self.count(HIT)

    @property
    def misses(self) -> int:
        return self.count(MISS)

    @property
    def saved_seconds(self) -> float:
        return sum(c.saved_seconds for c in self.cells)

    @property
    def failed_cells(self) -> tuple[CellResult, ...]:
        return tuple(c for c in self.cells if c.status == ERROR)

    @property
    def ok(self) -> bool:
        return self.error is None and not self.failed_cells

    @property
    def label(self) -> str:
        return Job(self.path, self.parameters).label

    @property
    def title(self) -> str:
        return Job(self.path, self.parameters).title

    def to_json(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "parameters": self.parameters.to_json(),
            "output": str(self.output) if self.output else None,
            "error": self.error,
            "interrupted": self.interrupted,
            "replayed": self.replayed,
            "replay_note": self.replay_note,
            "cells": [c.to_json() for c in self.cells],
        }



_COUNTED = (HIT, MISS, PLAIN, ERROR, NOT_RUN, WOULD_RUN)



@dataclass(frozen=True)
class BatchResult:
    """A whole `cellcache run` or `status`: every job, the store they used, and how it ended."""

    notebooks: tuple[NotebookResult, ...]
    store: Path | None
    interrupted: bool = False
    notes: tuple[str, ...] = ()  # things the user should know about the run as a whole

    def counts(self) -> dict[str, int]:
        totals = {status: sum(r.count(status) for r in self.notebooks) for status in _COUNTED}
        totals[NOT_RUN] += sum(r.count(INTERRUPTED) for r in self.notebooks)
        return totals

    @property
    def saved_seconds(self) -> float:
        return sum(r.saved_seconds for r in self.notebooks)

    @property
    def ok(self) -> bool:
        return not self.interrupted and all(r.ok for r in self.notebooks)

    def to_json(self) -> dict[str, Any]:
        return {
            "store": str(self.store) if self.store else None,
            "interrupted": self.interrupted,
            "notes": list(self.notes),
            "summary": {**{k.replace(" ", "_").replace("-", "_"): v for k, v in self.counts().items()}, "saved_seconds": round(self.saved_seconds, 6)},
            "notebooks": [r.to_json() for r in self.notebooks],
        }



class Listener:
    """Progress callbacks; the CLI draws them with rich. Called from worker threads when jobs > 1."""

    def notebook_started(self, job: Job, code_cells: int) -> None:
        pass

    def cell_started(self, job: Job, index: int, step: str | None) -> None:
        pass

    def cell_output(self, job: Job, index: int, text: str) -> None:
        """A piece of a cell's output, as it comes (only with ``log_output``)."""

    def cell_finished(self, job: Job, result: CellResult) -> None:
        pass

    def notebook_finished(self, job: Job, result: NotebookResult) -> None:
        pass





def to_json(results: Sequence[NotebookResult], with_reasons: bool = True) -> dict[str, Any]:
    """The ``--json`` document of a list of results (``BatchResult.to_json`` adds the store and a summary)."""
    return {"notebooks": [r.to_json() for r in results]}
