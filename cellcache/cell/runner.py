"""Restore or run one ``%%cached`` cell.

The flow follows DESIGN.md: analyse the cell, fingerprint what it reads,
build the key, try to restore, and only on a miss run the cell (through the
shell, so it behaves exactly as without the magic) and store what it bound.
"""
from __future__ import annotations

import json
import os
import re
import sys
import time
import types
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from cellcache import config as _config
from cellcache.cell import SEEDING_WORDS, auto, effects, files, identity, reasons, state, watch
from cellcache.fingerprint import mapped
from cellcache.cell.analysis import CellNames, analyze
from cellcache.cell.capture import recording, replay, show_marker
from cellcache.units import format_seconds
from cellcache.config import Config
from cellcache.errors import CacheError, EntryGone, OutNotProduced, StoreError, Unfingerprintable, warn
from cellcache.fingerprint import Bound, fingerprint
from cellcache.fingerprint.modules import remember_loaded, take_stale
from cellcache.cell.key import StageKey, code_digest, unnamed_step
from cellcache.cell.spec import StageSpec
from cellcache.cell.stage import (
    StepRun,
    Bundle,
    Failed,
    Hit,
    Miss,
    Outcome,
    Plain,
    Stage,
    UnfingerprintableInput,
    component_inputs,
    module_components,
)
from cellcache.store import writer
from cellcache.store.base import LOCAL, REMOTE, RunRecord, Store, StepRef
from cellcache.store.local import LocalStore, open_store
from cellcache.store.manifest import FileDigest, Manifest, OutFile

# IPython's own bookkeeping names: never inputs worth keying, never outputs worth restoring.
_SHELL_NAME = re.compile(r"^(_+|_i+|_i?\d+|_ih|_oh|_dh|In|Out|get_ipython|exit|quit)$")
# Of those, the ones that are never inputs: `_`, `_3`, `Out[3]` (read as `_3`) are past results a cell may use.
_SHELL_PLUMBING = re.compile(r"^(_dh|get_ipython|exit|quit)$")


@dataclass(frozen=True)
class RunMode:
    """How a session treats every cell: interactive by default; `cellcache run` and `status` set theirs."""

    force: bool = False  # every step runs and replaces its entry
    restore_only: bool = False  # `status`: restore hits, never run a cached body, record nothing
    batch: bool = False  # the batch writes notebooks and tables of its own: no marker


class JsonLines:
    """A listener that appends each step's ``StepRun`` to a file, one JSON object a line: a batch job's report."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __call__(self, run: StepRun) -> None:
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(asdict(run)) + "\n")


class StopAtMiss(Exception):
    """Raised into a restore-only run (``cellcache status``) at the first cell that would run."""


class Session:
    """cellcache's state for one shell: settings, store, switches, last run."""

    def __init__(self, shell: Any, config: Config) -> None:
        self.shell = shell
        self.config = config
        self.enabled = not config.disable
        self.cell_id: str | None = None
        self.last: StepRun | None = None
        self.listeners: list[Callable[[StepRun], None]] = []
        self._local: LocalStore | None = None
        self._store: Store | None = None
        self._nested = False
        self._transformed: dict[str, str] = {}
        self._warned = False  # one CacheWarning per cell: the first problem is the one worth reading
        self.writer = writer.Writer()  # a miss's blobs are written behind the user
        self._draws: dict[str, set[str]] = {}  # step -> generators its code drew from unseen by the analysis
        self.seeded: set[str] = set()  # global generators the notebook seeded: only their states are keyed
        self.placeholders: dict[str, Stage] = {}  # output not stored -> the step that makes it, run again when used
        self._drew_from: dict[str, dict[str, Any]] = {}  # step left with placeholders -> seeded generators' states before its hit
        self.mode = RunMode()  # set by `cellcache run` / `cellcache status` in the kernel they start
        self._notebook = ""
        self.auto = auto.Auto(self, config.auto, config.auto_thresholds)  # auto mode: every cell a stage where it pays

    def configure_batch(self, report: str | None = None, force: bool = False, restore_only: bool = False) -> None:
        """Batch mode: report each step to ``report`` (a listener); force every step, or never run a missing one.

        Called with no arguments, back to interactive.
        """
        self.listeners[:] = [listener for listener in self.listeners if not isinstance(listener, JsonLines)]
        batch = report is not None or force or restore_only
        self.mode = RunMode(force=force, restore_only=restore_only, batch=batch)
        if report:
            self.listeners.append(JsonLines(Path(report)))

    @property
    def restore_only(self) -> bool:
        return self.mode.restore_only

    @property
    def notebook(self) -> str:
        """The notebook whose steps this session runs, relative to the project root; "" in plain IPython."""
        if not self._notebook:  # VS Code sets its variable after the extension may have loaded
            self._notebook = _config.kernel_notebook(user_ns=self.shell.user_ns)
        return self._notebook

    @notebook.setter
    def notebook(self, value: str) -> None:
        self._notebook = value

    @property
    def local(self) -> LocalStore:
        """The local store: its ledger (runs, steps, stats) and its upkeep (invalidate, clear, gc)."""
        if self._local is None:
            self._local = open_store(self.config)
        return self._local

    @property
    def store(self) -> Store:
        """Where entries are looked up and stored: the local store, or it in front of the shared remote."""
        if self._store is None:
            if self.config.remote:  # the remote sits behind the local store; without one, no crypto or fsspec import
                from cellcache.remote.commands import build_store

                self._store = build_store(self.config, self.local)
            else:
                self._store = self.local
        return self._store

    def _transform(self, body: str) -> str:
        # IPython's transform costs a tokenize pass; a re-run cell has the same body.
        transformed = self._transformed.get(body)
        if transformed is None:
            if len(self._transformed) > 256:
                self._transformed.clear()
            transformed = self._transformed[body] = self.shell.transform_cell(body)
        return transformed

    def post_run_cell(self, result: Any) -> None:
        remember_loaded()  # what a cell imported, read before anyone can edit it
        for name in [n for n in self.placeholders if n in self.shell.user_ns]:
            del self.placeholders[name]  # bound again since: the stored step need not run for it
        raw = getattr(getattr(result, "info", None), "raw_cell", None) or ""
        if any(word in raw for word in SEEDING_WORDS):  # only such a cell can seed: others cost nothing
            self._note_seeds(self._transform(raw))

    def _note_seeds(self, source: str, names: CellNames | None = None) -> None:
        """Remember the generators this code seeded: from now on their states are deterministic, and keyed."""
        try:
            self.seeded |= effects.seeded_by(names or analyze(source), self.shell.user_ns)
        except (SyntaxError, RecursionError, MemoryError):
            pass  # code the analysis can't read seeds nothing it can see

    def pre_run_cell(self, info: Any) -> None:
        if not self._nested:
            self.cell_id = getattr(info, "cell_id", None)
            self._report_write_failures()
            raw = getattr(info, "raw_cell", "") or ""
            if self.placeholders and not raw.lstrip().startswith("%%cached"):
                try:
                    self._rebuild(analyze(self._transform(raw)).reads)
                except (SyntaxError, RecursionError, MemoryError):
                    pass  # the shell reports the cell's own syntax error

    def _rebuild(self, reads: Iterable[str]) -> None:
        """Run again the steps whose outputs ``reads`` names but that a hit left as placeholders."""
        for name in sorted(set(reads) & set(self.placeholders)):
            stage = self.placeholders.get(name)
            if stage is None:
                continue  # rebuilt already, by the step that made an earlier name
            # Said as a CacheWarning, on stderr: the cell's own output stays what a run shows, and what
            # the step shows again is not this cell's to show (a run of this cell would not show it).
            warn(f"cellcache: running step {stage.name!r} again to rebuild `{name}`, which could not be stored")
            for made in [n for n, s in self.placeholders.items() if s is stage]:
                del self.placeholders[made]
            from IPython.utils.capture import capture_output

            # The hit advanced the seeded generators past the step's draws: run it from where they stood
            # before it, so the rebuilt value is the one the run made, then put them back where the hit left them.
            before = self._drew_from.pop(stage.name, {})
            after = {g: effects.rng_state(g) for g in before}
            for generator, then in before.items():
                effects.set_rng_state(generator, then)
            try:
                with capture_output():
                    self._execute(stage.body)
            finally:
                for generator, now in after.items():
                    if now is not None:
                        effects.set_rng_state(generator, now)

    def flush(self, push_timeout: float | None = None) -> None:
        """Wait for the entries being written behind; say now which could not be stored.

        With ``push_timeout``, then wait that long at most for the entries being pushed behind
        (``push = "auto"``): a job on another machine may be waiting for them.
        """
        self.writer.flush()
        self._report_write_failures()
        if push_timeout is not None and self._store is not None and self._store is not self._local:
            from cellcache.remote.tiered import TieredStore  # the remote's modules load only where one is configured

            if isinstance(self._store, TieredStore) and self._store.pusher is not None:
                self._store.pusher.drain(push_timeout)

    def close(self) -> None:
        """Write what is pending, then let go of the local store's files (unloading the extension does this).

        They reopen if the session is used again; a kernel that loads and unloads the extension
        many times (a test suite) would otherwise keep six open files for each load.
        """
        self.flush()
        if self._local is not None:
            self._local.close()

    def _report_write_failures(self) -> None:
        for message in self.writer.take_failures():
            warn(message)

    # the flow: prepare, then lookup -> restore | execute -> commit --------------

    def run(self, spec: StageSpec, body: str) -> StepRun:
        started = time.perf_counter()
        self._warned = False
        if spec.auto and self.enabled:  # auto mode: a step known not to pay runs plainly, before any fingerprint
            plain = self.auto.before(spec, self._auto_name(spec, body), body, started)
            if plain is not None:
                return self._finish(plain)
        stage = self.prepare(spec, body, started)
        if isinstance(stage, Plain):
            # Run outside any except clause, so the shell reports an error exactly as it would
            # without the magic: no chained exception, no cellcache frames.
            return self._finish(self._plain(stage.name, body, started, stage.reason))
        miss_reason = reasons.FORCED if (spec.force or self.mode.force) else None
        if miss_reason is None:
            found = self.lookup(stage)
            if isinstance(found, Hit):
                return self._finish(self.restore(stage, found))
            miss_reason = found.reason or self._explain_new_key(stage)
        if self.restore_only:
            return self._finish(self._stop_at_miss(stage.name, stage.key.digest, miss_reason))
        if spec.explain:
            print(f"cellcache: {stage.name}: miss: {miss_reason}")
        outcome = self.execute(stage)
        if isinstance(outcome, Failed):
            return self._finish(self._failed(stage, outcome, miss_reason))
        if spec.auto:  # auto mode: stored only if it pays, and if a hit would skip no side effect
            plain = self.auto.after(stage, outcome)
            if plain is not None:
                return self._finish(plain)
        self.commit(stage, outcome)
        key = outcome.keys[0].digest
        self._record(stage.name, key, "miss", outcome.seconds, 0.0, miss_reason)
        seconds = time.perf_counter() - started
        return self._finish(StepRun(name=stage.name, hit=False, key=key, seconds=seconds, saved_seconds=0.0, reason=miss_reason, status="miss"))

    def _auto_name(self, spec: StageSpec, body: str) -> str:
        # As prepare names it; the code digest only for a cell with neither a name nor an id.
        if spec.name or self.cell_id:
            return spec.name or self.cell_id  # type: ignore[return-value]
        try:
            return unnamed_step(code_digest(self._transform(body)))
        except (SyntaxError, RecursionError, MemoryError):
            return "cell"

    def prepare(self, spec: StageSpec, body: str, started: float) -> Stage | Plain:
        """Analyse and key the cell; or say why it runs without the cache."""
        transformed = self._transform(body)
        try:
            names = analyze(transformed)
            code = code_digest(transformed)
        except SyntaxError:
            return Plain(spec.name or "cell", "syntax error")
        except (RecursionError, MemoryError):  # nested deeper than the analysis (or the parser) can follow
            self._warn_once(f"cellcache: step {spec.name or 'cell'!r} ran uncached: its code is nested too deeply to analyse.")
            return Plain(spec.name or "cell", "code nested too deeply to analyse")
        name = spec.name or self.cell_id or unnamed_step(code)
        if not self.enabled:
            return Plain(name, reasons.DISABLED)
        if spec.strategy == "off":
            return Plain(name, reasons.STRATEGY_OFF)
        ns = self.shell.user_ns
        if self.placeholders:
            self._rebuild(n for n in names.reads if n not in spec.ignore)
        read_names = sorted(n for n in names.reads if n in ns and n not in spec.ignore and not _SHELL_PLUMBING.match(n))
        if names.dynamic:
            self._warn_once(f"cellcache: step {name!r} ran uncached: {names.dynamic}. Spell the names it reads.")
            return Plain(name, names.dynamic)
        try:
            inputs, descriptions = component_inputs({n: ns[n] for n in read_names}, (ns, names.prebound))
            hidden = effects.observe(names, ns, {n: ns[n] for n in read_names}, self._drawn(name), self.seeded)
            descriptions.update(hidden.descriptions)
        except UnfingerprintableInput as exc:
            culprit = exc.name
            self._warn_once(reasons.ignore_hint(name, culprit, exc.cause))
            return Plain(name, f"input `{culprit}` can't be fingerprinted")
        probed, probe_descriptions = state.components(state.use_of(names, transformed, ns))
        descriptions.update(probe_descriptions)
        cwd = Path.cwd()
        # A missing dep raises DepNotFound here, before anything runs.
        dep_paths = files.expand(spec.deps, cwd) if spec.deps else []
        file_digests = files.digests(dep_paths, cwd, self._stat_cache())
        key = StageKey.build(
            strategy=spec.strategy,
            code=code,
            inputs=inputs,
            files=file_digests,
            modules=module_components(names.imports, names.named_modules),
            extra={**hidden.components, **probed},
        )
        stale_modules = take_stale()
        if stale_modules:
            listed = ", ".join(stale_modules)
            self._warn_once(
                f"cellcache: module {listed} changed on disk since it was imported; the cell runs, and is keyed on, "
                f"the code that was imported. Run importlib.reload({stale_modules[0]}) or %autoreload 2 to use the new code."
            )
        return Stage(
            step=self._step(name),
            spec=spec,
            body=body,
            source=transformed,
            names=names,
            inputs=inputs,
            descriptions=descriptions,
            hidden=hidden,
            deps=tuple(dep_paths),
            key=key,
            cwd=cwd,
            started=started,
        )

    def _drawn(self, name: str) -> set[str]:
        """The generators the step drew from through code the analysis can't see, as far as anyone knows.

        A run learns it (``execute`` extends its key), but a new kernel has
        not run the step: its key would lack the generator and never meet the
        stored one. The step's last entry says which it keyed, so a new
        kernel keys them from the start. Only once the notebook has seeded
        one: an unseeded generator is never keyed, and the index is not
        worth a query then. Keying one more generator can only cost a miss.
        """
        drawn = self._draws.get(name)
        if drawn is None and self.seeded:
            try:
                previous = self.local.last_manifest(self._step(name)) if self.local.exists() else None
            except Exception:  # noqa: BLE001 - the index is advisory; what this kernel learns still counts
                previous = None
            components = previous.components if previous is not None else {}
            drawn = self._draws[name] = {c.partition(":")[2] for c in components if c.startswith("rng:")}
        return drawn or set()

    # lookup ------------------------------------------------------------------

    def _stat_cache(self) -> files.StatCache | None:
        try:
            return self.local.index
        except Exception:  # noqa: BLE001 - without an index, files are simply read each time
            return None

    def _step(self, name: str) -> StepRef:
        return StepRef(getattr(self, "notebook", "") or "", name)

    def lookup(self, stage: Stage) -> Hit | Miss:
        """The first candidate that is fresh, sound and restorable; else a miss and why.

        Candidates come lazily, so a tiered store only asks the network when every local one failed.
        """
        self.writer.wait_for(stage.key.digest)  # a re-run right after its miss finds what that miss stored
        problems: list[str] = []
        remote_only = True  # every refused candidate came from the remote: the reason names that, not "broken"
        reason: str | None = None
        try:
            for found in self.store.candidates(stage.key.digest):
                if found.manifest is None:
                    problems.append(found.problem or "unreadable entry")
                    remote_only = remote_only and found.source == REMOTE
                    continue
                manifest = found.manifest
                if stage.spec.ttl is not None and time.time() - manifest.created > stage.spec.ttl:
                    reason = reason or reasons.TTL_EXPIRED
                    continue
                cache = self._stat_cache()
                stale = [
                    f"implicit file {d.path} {'is gone' if now is None else 'changed'}"
                    for d in manifest.implicit
                    if (now := files.current_digest(d.path, stage.cwd, cache)) != d.digest
                ]
                if stale:
                    reason = reason or reasons.summarize(stale)
                    continue
                bundle, problem = self._load(manifest)
                if bundle is None and problem is None:
                    continue  # removed by a gc or invalidate while it was read: simply not there
                if problem is None:
                    problem = self._restore_outs(manifest, stage.cwd)
                if problem is None:
                    if problems:  # a sound entry serves, but a planted or damaged sibling is worth one line
                        self._warn_once(f"cellcache: step {stage.name!r}: ignored a broken entry: {problems[0]}")
                    return Hit(found, bundle)
                problems.append(problem)
                remote_only = remote_only and found.source == REMOTE
        except (CacheError, OSError) as exc:  # the store itself is unusable: a miss, and the store's one line
            problems.append(str(exc))
            remote_only = False
        if problems:
            self._warn_once(f"cellcache: step {stage.name!r}: ignoring a broken entry, the cell will run: {problems[0]}")
            return Miss(reason or reasons.unusable_entry(problems[0], remote=remote_only))
        return Miss(reason)

    def _load(self, manifest: Manifest) -> tuple[Bundle | None, str | None]:
        try:
            return Bundle.from_stored(self.store.load(manifest)), None
        except EntryGone:
            return None, None
        except (StoreError, OSError) as exc:
            return None, str(exc)

    def _explain_new_key(self, stage: Stage) -> str:
        try:
            exists = self.local.exists()
            previous = self.local.last_manifest(stage.step) if exists else None
            invalidated_at = self.local.invalidated_at(stage.step) if exists else None
        except Exception:  # noqa: BLE001 - the index is advisory; an explanation is not worth a crash
            previous, invalidated_at = None, None
        if previous is None:
            return reasons.INVALIDATED if invalidated_at is not None else reasons.FIRST_RUN
        return reasons.explain_miss(previous.components, stage.key.components, previous.descriptions, stage.descriptions)

    # hit -----------------------------------------------------------------------

    def _restore_outs(self, manifest: Manifest, cwd: Path) -> str | None:
        try:
            for out in manifest.outs:
                self.store.restore_file(out, cwd / out.path, self._stat_cache())
        except (StoreError, OSError) as exc:
            return f"cannot write back its --outs: {exc}"
        return None

    def restore(self, stage: Stage, hit: Hit) -> StepRun:
        """Set what the run set, and show what it showed; the body does not run."""
        name, manifest, bundle, source = stage.name, hit.found.manifest, hit.bundle, hit.found.source
        assert manifest is not None  # a Hit is only made from a readable manifest
        ns = self.shell.user_ns
        # A mutated input is restored in place: objects earlier cells share with it stay shared, as after a run.
        ns.update(identity.rebind(ns, bundle.ns, (n for n in stage.inputs if n in bundle.ns)))
        mapped.remember(bundle.ns, bundle.digests)  # the next cell need not re-hash these maps
        for gone in manifest.deletes:
            ns.pop(gone, None)
        placeholders = dict(bundle.record.get(writer.PLACEHOLDERS) or {})
        for missing in placeholders:
            ns.pop(missing, None)  # not the run's value: absent until a cell uses it, which runs the step again
            self.placeholders[missing] = stage
        self._note_seeds(stage.source, stage.names)  # a cell that seeds leaves its generator seeded, hit or run
        if placeholders:  # a rebuild must draw what the run drew, from where the generators stand now
            self._drew_from[name] = {g: now for g in sorted(self.seeded) if (now := effects.rng_state(g)) is not None}
        effects.apply(bundle.record.get("effects"), ns, self.seeded)
        unapplied = state.apply(bundle.record.get("state"))
        if unapplied:
            self._warn_once(
                f"cellcache: step {name!r} was restored, but the process state it set could not be: {', '.join(unapplied)}. "
                "Later cells may print or draw differently than after a run; run this step with --force to set it."
            )
        left_out = sorted(n for n in stage.spec.ignore if n not in ns)
        if left_out:  # --ignore kept them out of the entry: say so before a later cell's NameError does
            self._warn_once(reasons.ignored_not_restored(name, left_out))
        reason = reasons.HIT_REMOTE if source == REMOTE else reasons.HIT
        if stage.hidden.unseeded and stage.spec.explain:
            listed = ", ".join(sorted(stage.hidden.unseeded))
            print(f"cellcache: {name}: the {listed} generator was never seeded, so it is not in the key: the earlier draw is returned")
        # "Saved" is net everywhere (the run time skipped, minus what the hit took so far), and one
        # figure: the marker, --explain, last_run(), the run table, stats and the panel all show it.
        saved = max(manifest.seconds - (time.perf_counter() - stage.started), 0.0)
        if stage.spec.explain:
            print(f"cellcache: {name}: {reason} (saved {format_seconds(saved)})")
        if self._shows_marker():
            show_marker(self.shell, name, saved, remote=source == REMOTE)
        replay(self.shell, bundle.record, ns.get(manifest.result_name) if manifest.result_name else None)
        if placeholders:
            listed = ", ".join(f"`{n}`" for n in sorted(placeholders))
            reason = f"{reason}; not stored, rebuilt when used: {listed}"
            if stage.spec.explain:
                for missing, why in sorted(placeholders.items()):
                    print(f"cellcache: {name}: `{missing}` could not be stored ({why}); a cell that uses it runs this step again first")
        seconds = time.perf_counter() - stage.started
        slower = reasons.slower_hit(seconds, manifest.seconds)
        if slower:  # the cache costs this step more than it saves: say so where the user looks
            reason = f"{reason}; {slower}"
            if stage.spec.explain:
                print(f"cellcache: {name}: {slower}")
        self._record(name, manifest.key, "hit", seconds, saved, reason, source)
        return StepRun(name=name, hit=True, key=manifest.key, seconds=seconds, saved_seconds=saved, reason=reason, status="hit")

    # miss ----------------------------------------------------------------------

    def _execute(self, body: str) -> Any:
        """Run the body through the shell, so output, tracebacks and magics behave as without cellcache."""
        hook = self.shell.displayhook
        outer = getattr(hook, "exec_result", None)
        # IPython decides whether `expr;` is silenced from the last *stored* input, which is the
        # outer `%%cached` cell; judge it from the body instead.
        silenced = body.rstrip().endswith(";")
        self._nested = True
        hook.quiet = lambda: silenced
        # The shell numbers the body's code with its current count, which it already moved past the
        # user's cell: name it after the cell the user ran, so tracebacks say `Cell In[3]`, not In[4].
        compiler = self.shell.compile
        number = getattr(outer, "execution_count", None)
        if number is not None:
            compiler.cache = lambda code, _=0, raw_code=None, cache=compiler.cache: cache(code, number, raw_code)
        try:
            result = self.shell.run_cell(body, store_history=False)
        finally:
            self._nested = False
            del hook.quiet
            hook.exec_result = outer
            compiler.__dict__.pop("cache", None)
        if not result.success and outer is not None:
            # The shell already showed the traceback; failing the outer cell too is what makes
            # nbclient and ipykernel report the error instead of a silent success.
            outer.error_in_exec = result.error_in_exec or result.error_before_exec
        return result

    def _stop_at_miss(self, name: str, key: str | None, reason: str) -> StepRun:
        print(f"cellcache: {name}: would run: {reason}")
        outer = getattr(self.shell.displayhook, "exec_result", None)
        if outer is not None:
            outer.error_in_exec = StopAtMiss(f"step {name!r} would run: {reason}")
        return StepRun(name=name, hit=False, key=key, seconds=0.0, saved_seconds=0.0, reason=reason, status="would-run")

    def _plain(self, name: str, body: str, started: float, reason: str) -> StepRun:
        if self.restore_only:
            return self._stop_at_miss(name, None, reason)  # a restore-only run never executes a cached body
        result = self._execute(body)
        return StepRun(
            name=name,
            hit=False,
            key=None,
            seconds=time.perf_counter() - started,
            saved_seconds=0.0,
            reason=reason,
            status="uncached" if result.success else "error",
        )

    def execute(self, stage: Stage) -> Outcome | Failed:
        """Run the cell, watching what it binds, reads, shows and sets."""
        name, key, spec, cwd = stage.name, stage.key, stage.spec, stage.cwd
        ns = self.shell.user_ns
        before = {k: id(v) for k, v in ns.items()}
        fx = effects.Effects(stage.names, ns, {n: ns[n] for n in stage.inputs if n in ns}, stage.hidden)
        run_started = time.perf_counter()
        states = state.read_all()
        seen = watch.Watch() if spec.auto else None  # auto mode: the side effects a hit would skip
        with recording(self.shell) as rec, files.OpenRecorder(exclude=[self.config.dir], watch=seen) as opened:
            result = self._execute(stage.body)
        seconds = time.perf_counter() - run_started
        if not result.success:
            return Failed(result.error_in_exec or result.error_before_exec, seconds)
        try:
            out_paths = files.produced_outs(spec.outs, cwd)
        except OutNotProduced as exc:
            return Failed(exc, seconds, promise=True)
        verdict = watch.Verdict()
        if seen is not None:  # writes inside the project become outs; other side effects make the cell plain
            root = self.config.root or _config.project_root(cwd)
            verdict = watch.classify(opened.files_written(), seen, rec.widgets, root, cwd, opened.excluded, opened.files_updated())
            out_paths = sorted(set(out_paths) | set(verdict.outs))

        def keep(n: str) -> bool:
            # Dunders are interpreter plumbing (`%run` leaves `__nonzero__`, `__builtin__` behind).
            return n not in spec.ignore and not _SHELL_NAME.match(n) and not (len(n) > 4 and n[:2] == n[-2:] == "__")

        names, inputs = stage.names, stage.inputs
        rebound = {k for k, v in ns.items() if before.get(k) != id(v)}
        outputs = {n for n in (names.writes | rebound | fx.mutated_globals(ns)) if n in ns and keep(n)}
        for n in inputs:
            if n not in outputs and n in ns and _digest_changed(ns[n], inputs[n], (ns, names.prebound)):
                outputs.add(n)  # mutated in place: the restored namespace must carry the new value
        deletes = tuple(sorted(n for n in before.keys() | names.deletes if n not in ns and keep(n)))  # replayed even if absent now
        values = {n: ns[n] for n in sorted(outputs)}
        result_name = None
        if result.result is not None:
            result_name = next((n for n, v in values.items() if v is result.result), None)
        declared = set(stage.deps) | set(out_paths)
        named = [*names.strings, *(ns[n] for n in inputs if isinstance(ns.get(n), (str, os.PathLike)))]
        named += files.import_reads([*names.named_modules, *_modules_of(ns[n] for n in inputs if n in ns)])
        implicit = tuple(p for p in opened.files_read(named) if p not in declared)
        record = rec.as_record()
        record["effects"] = fx.replay(ns)
        record["state"] = state.changes(states, state.read_all())  # what it set through calls: plt.rc, pd.set_option...
        unkeyed = fx.unkeyed_rngs()
        if unkeyed:  # drew from a global generator through code the analysis can't see: key its state from now on
            key = key.extended(unkeyed)
            self._draws.setdefault(name, set()).update(c.partition(":")[2] for c in unkeyed)
        rerun = fx.rerun_components(before, ns, values)
        # A probe whose library the run imported keys a re-run here, as module attributes it first loaded do.
        probed, _ = state.components(state.use_of(names, stage.source, ns))
        rerun.update({k: v for k, v in probed.items() if k not in key.components})
        return Outcome(
            values=values,
            deletes=deletes,
            result_name=result_name,
            record=record,
            seconds=seconds,
            implicit=implicit,
            outs=tuple(out_paths),
            keys=(key, key.extended(rerun)) if rerun else (key,),
            plain=verdict.plain,
        )

    def commit(self, stage: Stage, outcome: Outcome) -> None:
        """Store the outcome under each of its keys; trouble is one warning, and the namespace keeps its values."""
        name, cwd = stage.name, stage.cwd
        try:
            cache = self._stat_cache()
            implicit_digests = tuple(FileDigest(p, d) for p, d in files.digests(list(outcome.implicit), cwd, cache).items())
            outs: list[OutFile] = []
            for path in outcome.outs:
                digest, size = self.store.put_file_blob(path)
                outs.append(OutFile(path=files.display_path(path, cwd), blob=digest, size=size, mode=path.stat().st_mode & 0o777))
        except (OSError, CacheError) as exc:
            self._warn_not_stored(name, f"the store could not be written ({exc})")
            return
        # One bundle, written once, under each key: the second (a re-run in this kernel) shares the first's blob.
        manifests = [
            Manifest(
                key=key.digest,
                step=name,
                created=time.time(),
                seconds=outcome.seconds,
                blob="",  # filled in by the writer once the blob is written
                blob_size=0,
                outputs=tuple(outcome.values),
                deletes=outcome.deletes,
                result_name=outcome.result_name,
                components=dict(key.components),
                descriptions=dict(stage.descriptions),
                outs=tuple(outs),
                implicit=implicit_digests,
                notebook=stage.step.notebook,
            )
            for key in outcome.keys
        ]
        entry = writer.prepare(manifests[0], outcome.values, outcome.record, fork=self.config.fork_writes, also=tuple(manifests[1:]))
        writer.store_entry(self.writer, self.store, entry, self._warn_once)

    def _failed(self, stage: Stage, failed: Failed, reason: str) -> StepRun:
        """The index keeps what failed, so the panel can show each step's last error; nothing is stored."""
        name, key, error = stage.name, stage.key.digest, failed.error
        if failed.promise:
            # A broken promise of the cell: say so, and fail the cell, as the cell itself raised nothing.
            print(f"cellcache: step {name!r}: {error}; nothing was stored (its variables are in the namespace)", file=sys.stderr)
            outer = getattr(self.shell.displayhook, "exec_result", None)
            if outer is not None:
                outer.error_in_exec = error
            self._record(name, key, "error", failed.seconds, 0.0, reason)
            return StepRun(name=name, hit=False, key=key, seconds=failed.seconds, saved_seconds=0.0, reason=str(error), status="error")
        self._record(name, key, "error", failed.seconds, 0.0, f"{type(error).__name__}: {error}" if error else reason)
        return StepRun(name=name, hit=False, key=key, seconds=failed.seconds, saved_seconds=0.0, reason=reason, status="error")

    def _warn_not_stored(self, name: str, why: str) -> None:
        self._warn_once(f"cellcache: step {name!r} was not stored: {why}. Its results are in the namespace as usual.")

    def _warn_once(self, message: str) -> None:
        if not self._warned:
            self._warned = True
            warn(message)

    # bookkeeping ---------------------------------------------------------------

    def _shows_marker(self) -> bool:
        # Batch runs write notebooks and tables of their own: a marker there would be noise in a diff.
        return getattr(self.config, "marker", True) and not self.mode.batch

    def _record(
        self, name: str, key: str | None, status: str, seconds: float, saved: float, reason: str, source: str = LOCAL
    ) -> None:
        if self.restore_only:
            return  # `cellcache status` only looks; its restores are not hits worth counting
        try:
            self.local.record_run(RunRecord(self._step(name), key, status, seconds, saved, reason, source))
        except Exception:  # noqa: BLE001 - statistics never cost a result, nor a warning
            pass

    def _finish(self, run: StepRun) -> StepRun:
        self.last = run
        for listener in list(self.listeners):
            try:
                listener(run)
            except Exception as exc:  # noqa: BLE001 - a broken panel must not break the cell
                warn(f"cellcache: a listener failed: {exc}")
        return run


def _digest_changed(value: Any, digest: str, bound: Bound | None = None) -> bool:
    try:
        return fingerprint(value, bound).hex() != digest
    except Unfingerprintable:
        return True


def _modules_of(values: Iterable[Any]) -> set[str]:
    """The modules that input values come from: a module itself, or a function's or class's module."""
    found = set()
    for value in values:
        module = value.__name__ if isinstance(value, types.ModuleType) else getattr(value, "__module__", None)
        if isinstance(module, str) and module != "__main__":
            found.add(module)
    return found
