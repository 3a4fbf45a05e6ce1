"""Auto mode: every code cell a stage, without ``%%cached``, where caching pays.

The rules are pure functions at the top of this module (which cells are
stages, how a batch marks a cell's id or its ``no-cache`` tag); ``Auto`` is
the per-shell state that applies them.

How a cell becomes a stage. Auto mode rewrites each top-level cell, as
IPython transforms it, into the call a ``%%cached --auto`` line makes:
``get_ipython().run_cell_magic('cached', '--auto', <the cell>)``. The cell
then takes exactly the path an explicit ``%%cached`` cell takes, which
already keeps what a plain run shows: the body runs through
``shell.run_cell``, so tracebacks say ``Cell In[3]`` with the user's lines,
``Out[3]`` and ``;`` behave as without the magic, and displays are live. A
``pre_run_cell`` hook or a wrapper around ``run_cell`` would have to copy
that machinery (and ipykernel transforms a cell before ``pre_run_cell``,
through ``should_run_async``, so a hook there is too late to change it).

The rewrite is an ``input_transformers_post`` transform, which sees the
Python source IPython made; a first ``input_transformers_cleanup`` transform
keeps the raw cell, so the body handed to the magic is what the user wrote.
Only top-level cells are rewritten: while a cell runs (``%%time``'s body, the
body of a stage, the runner's own analysis), ``displayhook.exec_result`` is
set and the transform stands aside. The terminal's ``check_complete`` only
runs cleanup transforms, so typing a cell is unchanged.

A cell the cost rule already knows to run plainly (cheap, a restore that
costs more than its run, a side effect) is left as it is: it costs one
digest of its source and a dictionary lookup, and nothing is nested.
"""
from __future__ import annotations

import re
import time
import types
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Iterable, Mapping

import xxhash

from cellcache.cell import cost as _cost
from cellcache.cell.stage import StepRun

if TYPE_CHECKING:
    from cellcache.cell.spec import StageSpec
    from cellcache.cell.stage import Outcome, Stage

NO_CACHE_TAG = "no-cache"
_OFF_LINE = re.compile(r"^#\s*cellcache:\s*off\s*$", re.IGNORECASE)
# A batch has no way to send a cell's id or tags with its source (nbclient sends neither): it appends one
# of these as the cell's last line, a comment, so no line number, traceback or Out[] changes.
_MARKER = re.compile(r"\n# cellcache: (?:auto (?P<name>[^\s-][^\s]*)|(?P<nocache>no-cache))[ \t]*\n?$")

OFF = "off: # cellcache: off"
NO_CACHE = "off: tagged no-cache"
IMPORTS = "cheap: imports only"
# Reasons that hold "from then on": what the cell does, not what it cost. A cell that only imports is
# one: a hit restores modules by importing them again, so it can never be cheaper than the run.
_STICKY = ("side effect:", "uses the network", IMPORTS)


def only_imports(values: Mapping[str, Any]) -> bool:
    """Whether a cell bound nothing but modules and the functions and classes of installed or local modules.

    With nothing shown either, such a cell's hit would only import them again: never cheaper than its run.
    """
    return bool(values) and all(
        isinstance(v, types.ModuleType)
        or (isinstance(v, (type, types.FunctionType, types.BuiltinFunctionType)) and getattr(v, "__module__", "__main__") != "__main__")
        for v in values.values()
    )


def is_sticky(reason: str | None) -> bool:
    return bool(reason) and reason.startswith(_STICKY)  # type: ignore[union-attr]


def _first_line(source: str) -> str | None:
    for line in source.split("\n"):
        if line.strip():
            return line.strip()
    return None


def own_rule(source: str) -> str | None:
    """Why a cell is not made a stage, whatever it costs; None if it is one.

    "magic": it has its own ``%%`` magic (an explicit ``%%cached`` wins); "empty"; or ``OFF``.
    """
    first = _first_line(source)
    if first is None:
        return "empty"
    if first.startswith("%%"):
        return "magic"
    if _OFF_LINE.match(first):
        return OFF
    return None


def mark(source: str, cell_id: str | None, tags: Iterable[str] = ()) -> str:
    """What a batch sends for a cell in auto mode: its source, with its id or its ``no-cache`` tag as a last comment.

    A cell with its own magic is sent as it is: its body would carry the comment.
    """
    if own_rule(source) is not None:
        return source
    if NO_CACHE_TAG in tags:
        return source.rstrip("\n") + "\n# cellcache: no-cache"
    if cell_id and not cell_id.startswith("-") and not any(c.isspace() for c in cell_id):
        return source.rstrip("\n") + f"\n# cellcache: auto {cell_id}"
    return source


def unmark(source: str) -> tuple[str, str | None, bool]:
    """A sent cell -> (its source as the user wrote it, the step name it carried, whether it is tagged no-cache)."""
    match = _MARKER.search(source)
    if match is None:
        return source, None, False
    return source[: match.start()] + "\n", match.group("name"), bool(match.group("nocache"))


def source_digest(source: str) -> str:
    return xxhash.xxh3_64_hexdigest(source.encode("utf-8", "surrogatepass"))


class PlainCell:
    """A top-level cell the transform left as it is, reported when it ends (``Auto.post_run_cell``).

    Not a frozen value: the state of one cell in flight, on the path of every cheap cell, where a
    ``dataclasses.replace`` per cell would be a measurable part of what the cell costs.
    """

    __slots__ = ("name", "reason", "key", "lines", "started", "learn")

    def __init__(self, name: str | None, reason: str, key: str, lines: list[str], learn: bool) -> None:
        self.name, self.reason, self.key, self.lines, self.learn = name, reason, key, lines, learn
        self.started = time.perf_counter()


class Auto:
    """Auto mode for one shell: the switch, the transform, and what the cost rule learned."""

    def __init__(self, session: Any, on: bool, thresholds: _cost.Thresholds) -> None:
        # session: the runner's Session, which owns this (typed loosely: the runner imports this module)
        self.session = session
        self.on = on
        self.explain = False
        self.thresholds = thresholds
        self._costs: dict[str, _cost.StepCost] = {}  # step name -> what it cost (this notebook's)
        self._by_source: dict[str, str] = {}  # source digest -> step name, for cells the transform can't name
        self._loaded: str | None = None  # the notebook whose history was read from the store
        self._raw: list[str] | None = None
        self._pending: PlainCell | None = None
        self._shell: Any = None
        self._marked: set[str] = set()  # steps already noted as auto mode's in the store this session
        self._recorded: set[str] = set()  # steps whose plain run this session is in the store's history
        # (source digest, marker name) -> why that cell runs as it is ("" for a cell with its own magic): a re-run
        # cell's decision is one lookup. Cleared whenever what the rule learned changes.
        self._known: dict[tuple[str, str | None], str] = {}

    # switching -------------------------------------------------------------------

    def switch(self, on: bool, explain: bool = False) -> None:
        """On or off from the next cell; the transform is installed the first time it is needed."""
        self.on, self.explain = on, explain and on
        if on and self._shell is None:
            self.install(self.session.shell)

    def install(self, shell: Any) -> None:
        self._shell = shell
        shell.input_transformers_cleanup.insert(0, self.keep_raw)
        shell.input_transformers_post.append(self._rewrite)
        shell.events.register("pre_run_cell", self.pre_run_cell)
        shell.events.register("post_run_cell", self.post_run_cell)
        self.session.listeners.append(self._learn_hit)

    def uninstall(self) -> None:
        shell = self._shell
        if shell is None:
            return
        for transforms, fn in ((shell.input_transformers_cleanup, self.keep_raw), (shell.input_transformers_post, self._rewrite)):
            if fn in transforms:
                transforms.remove(fn)
        shell.events.unregister("pre_run_cell", self.pre_run_cell)
        shell.events.unregister("post_run_cell", self.post_run_cell)
        if self._learn_hit in self.session.listeners:
            self.session.listeners.remove(self._learn_hit)
        self._shell = None

    # the transform ---------------------------------------------------------------

    def keep_raw(self, lines: list[str]) -> list[str]:
        self._raw = lines if self.on else None
        return lines

    def _rewrite(self, lines: list[str]) -> list[str]:
        raw, self._raw = self._raw, None
        if not self.on or raw is None or getattr(self._shell.displayhook, "exec_result", None) is not None:
            return lines  # off, or a body transformed while a cell runs: never a stage of its own
        self._pending = None  # a silent request before this one has no post_run_cell to report it
        if self._silent():
            return lines  # a front end's or cellcache's own silent request (a variable inspector, a flush): not a cell
        source, name, no_cache = "".join(raw), None, False
        if "# cellcache: " in source[-200:]:
            source, name, no_cache = unmark(source)
        key = (source_digest(source), name)
        reason = self._known.get(key)
        if reason is None:
            rule = NO_CACHE if no_cache else own_rule(source)
            reason = "" if rule in ("empty", "magic") else (rule or self.plain_reason(name, key[0]))
            if reason is not None:
                self._known[key] = reason
        if reason == "":
            return lines
        if reason is not None:
            self._pending = PlainCell(name, reason, key[0], lines, learn=reason not in (OFF, NO_CACHE) and not is_sticky(reason))
            return lines
        args = "--auto" + (f" {name}" if name else "") + (" --explain" if self.explain else "")
        return [f"get_ipython().run_cell_magic('cached', {args!r}, {source!r})\n"]

    def _silent(self) -> bool:
        # ipykernel transforms before run_cell is told `silent`; the request itself says it.
        kernel = getattr(self._shell, "kernel", None)
        try:
            parent = kernel.get_parent("shell") if kernel is not None else None
        except Exception:  # noqa: BLE001 - an older kernel: no silent requests recognised
            return False
        content = parent.get("content") if isinstance(parent, dict) else None
        return bool(content.get("silent")) if isinstance(content, dict) else False

    def pre_run_cell(self, info: Any) -> None:
        if self._pending is not None:  # ipykernel transforms before this: the run starts now
            self._pending.started = time.perf_counter()

    def post_run_cell(self, result: Any) -> None:
        pending, self._pending = self._pending, None
        if pending is None:
            return

        seconds = time.perf_counter() - pending.started
        if pending.reason in (OFF, NO_CACHE):
            name = pending.name or self.session.cell_id or ""  # not a step: nothing is counted under its name
        else:
            name = pending.name or self.session.cell_id or self._digest_name("".join(pending.lines))
        reason = pending.reason
        failed = result is not None and not getattr(result, "success", True)
        if pending.learn and seconds >= self.thresholds.min_seconds:  # it got slower: decided on this run next time
            self._by_source[pending.key] = name
            past = self.cost_of(name) or _cost.StepCost()
            if _cost.decide(seconds, past, self.thresholds).cache:
                self._costs[name] = replace(past, run_seconds=seconds)
                self._known.clear()
        if (pending.learn or is_sticky(reason)) and (failed or name not in self._recorded):
            # Once a session: the run a new kernel learns from. Re-runs of a cell known cheap cost no store write.
            self._recorded.add(name)
            self._mark(name)
            self.session._record(name, None, "error" if failed else "plain", seconds, 0.0, reason)
        status = "error" if failed else "plain"
        if self.explain:
            print(f"cellcache: {name or 'cell'}: plain: {reason}")
        self.session._finish(StepRun(name=name, hit=False, key=None, seconds=seconds, saved_seconds=0.0, reason=reason, status=status))

    def _mark(self, name: str) -> None:
        if name not in self._marked:  # once a session: `stats` only needs to know the step is auto mode's
            self._marked.add(name)
            self.session.local.mark_auto(self.session._step(name))

    def _digest_name(self, transformed: str) -> str:
        from cellcache.cell.key import code_digest, unnamed_step

        try:
            return unnamed_step(code_digest(transformed))
        except SyntaxError:
            return "cell"

    # the cost rule, with what it learned -------------------------------------------

    def cost_of(self, name: str) -> _cost.StepCost | None:
        notebook = self.session.notebook
        if self._loaded != notebook:
            self._loaded = notebook
            self._costs = {}
            try:
                rows = self.session.local.step_costs(notebook)
            except Exception:  # noqa: BLE001 - no history: every step decides at its end
                rows = {}
            for step, (status, seconds, reason, hit_seconds, size) in rows.items():
                self._costs[step] = _cost.StepCost(
                    run_seconds=seconds,
                    restore_seconds=hit_seconds,
                    output_bytes=size,
                    plain_reason=reason if status == "plain" else None,
                )
        return self._costs.get(name)

    def plain_reason(self, name: str | None, digest: str | None = None) -> str | None:
        """Why this step runs plainly before anything is fingerprinted; None if it is tried as a stage."""
        if name is None and digest is not None:
            name = self._by_source.get(digest)
        if name is None:
            return None
        past = self.cost_of(name)
        if past is None:
            return None
        if is_sticky(past.plain_reason):
            return past.plain_reason
        decision = _cost.before_run(past, self.thresholds)
        return None if decision.cache else decision.reason

    # the runner's three questions (see Session.run) -----------------------------------

    def before(self, spec: StageSpec, name: str, body: str, started: float) -> StepRun | None:
        """A stage the cost rule already knows to run plainly: run it, unfingerprinted; else None."""
        reason = self.plain_reason(name)
        if reason is None:
            return None
        return self.run_plain(name, body, started, reason, learn=not is_sticky(reason))

    def run_plain(self, name: str, body: str, started: float, reason: str, learn: bool) -> StepRun:

        # Not Session._plain: a cell auto mode runs plainly is a plain cell, which `cellcache status` runs too.
        result = self.session._execute(body)
        seconds = time.perf_counter() - started
        status = "plain" if result.success else "error"
        run = StepRun(name=name, hit=False, key=None, seconds=seconds, saved_seconds=0.0, reason=reason, status=status)
        if learn:
            self._costs[name] = replace(self.cost_of(name) or _cost.StepCost(), run_seconds=run.seconds)
            self._known.clear()
        self._mark(name)
        self.session._record(name, None, run.status, run.seconds, 0.0, reason)
        return run

    def after(self, stage: Stage, outcome: Outcome) -> StepRun | None:
        """After a stage ran: None to store it; else it stays plain (a side effect, or caching would not pay)."""

        name = stage.name
        past = self.cost_of(name) or _cost.StepCost()
        self._mark(name)
        if outcome.plain is not None:
            reason = outcome.plain
        elif only_imports(outcome.values) and not outcome.record.get("events") and not outcome.record.get("result"):
            reason = IMPORTS
        else:
            decision = _cost.decide(outcome.seconds, past, self.thresholds)
            self._costs[name] = replace(past, run_seconds=outcome.seconds, plain_reason=None)
            if decision.cache:
                return None
            reason = decision.reason
        self._costs[name] = replace(past, run_seconds=outcome.seconds, plain_reason=reason)
        self._by_source[source_digest(stage.body)] = name
        self._known.clear()
        if stage.spec.explain:
            print(f"cellcache: {name}: plain: {reason}")
        self.session._record(name, None, "plain", outcome.seconds, 0.0, reason)
        seconds = time.perf_counter() - stage.started
        return StepRun(name=name, hit=False, key=None, seconds=seconds, saved_seconds=0.0, reason=reason, status="plain")

    def _learn_hit(self, run: StepRun) -> None:
        # A hit's cost is what the rule compares a run with: measured, not estimated, from the first hit on.
        if run.status == "hit" and run.name in self._costs:
            past = self._costs[run.name]
            mean = run.seconds if past.restore_seconds is None else (past.restore_seconds + run.seconds) / 2
            self._costs[run.name] = replace(past, restore_seconds=mean)
            self._known.clear()
