"""Process-wide state a cell changes through calls: read around a miss, applied on a hit.

``plt.rc(...)``, ``sns.set_context("poster")``, ``np.set_printoptions(...)`` and
``pd.set_option(...)`` change library state without binding a name, so a hit
that only restored names would leave later cells drawing and printing with the
defaults. A *probe* is a small pair for one piece of such state: ``read``
returns it as a mapping, ``apply`` sets the keys a run changed and removes the
ones it removed. Around a miss every probe is read before and after; what
changed is stored with the entry and applied on a hit, in any kernel.

A probe's value is also a key component, but only of the cells it can affect
(``affects``, judged from what the cell's code reaches): one ``plt.rc`` call
must not make every cell miss, only the ones that draw.

Libraries add probes through the ``cellcache.state`` entry point group: each
entry point names a ``Probe`` or an iterable of them.

Pure apart from the state it reads and sets; no shell, no store.
"""
from __future__ import annotations

import ast
import copy
import decimal
import functools
import importlib
import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Iterable, Mapping

from cellcache.cell.analysis import CellNames
from cellcache.errors import Unfingerprintable
from cellcache.fingerprint import fingerprint

ENTRY_POINT_GROUP = "cellcache.state"


@dataclass(frozen=True)
class Use:
    """What a cell's code reaches, as far as probes care: to decide which probes key it."""

    modules: frozenset[str]  # top-level packages of the modules and values it names: numpy, pandas, matplotlib...
    attributes: frozenset[str]  # every attribute name its code uses (``plot`` in ``df.plot()``)
    shows: bool  # it prints or displays, or ends in an expression that is shown
    paths: bool  # it names a relative path


@dataclass(frozen=True)
class Probe:
    """One piece of process-wide state: how to read it, how to apply a change of it, which cells it affects."""

    name: str
    read: Callable[[], Mapping[str, Any]]
    apply: Callable[[Mapping[str, Any], Iterable[str]], None]  # (keys to set, keys to remove)
    affects: Callable[[Use], bool] = lambda use: False  # whether its value keys such a cell
    module: str | None = None  # read only once this module is imported: a probe costs nothing before
    doc: str = ""
    # The live object whose state ``read`` presents (matplotlib's rcParams): a cell that reads it as an
    # attribute (``plt.rcParams``) is keyed by the probe's view of it, as a cell that draws is.
    owns: Callable[[], Any] | None = None

    def available(self) -> bool:
        return self.module is None or self.module in sys.modules


# the built-in probes -------------------------------------------------------------------------

_BACKEND_KEYS = ("backend", "backend_fallback", "interactive")  # where figures go, not what they look like
_PLOT_ATTRIBUTES = frozenset({"plot", "hist", "boxplot", "scatter", "imshow", "bar", "barh", "pie", "kde", "hexbin", "area"})


def _read_rc() -> Mapping[str, Any]:
    return {k: v for k, v in dict.items(sys.modules["matplotlib"].rcParams) if k not in _BACKEND_KEYS}


def _apply_rc(values: Mapping[str, Any], unset: Iterable[str]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a key deprecated since the run is still set, quietly
        sys.modules["matplotlib"].rcParams.update(values)


def _draws(use: Use) -> bool:
    return bool(use.modules & {"matplotlib", "seaborn"} or use.attributes & _PLOT_ATTRIBUTES)


def _read_printoptions() -> Mapping[str, Any]:
    return dict(sys.modules["numpy"].get_printoptions())


def _apply_printoptions(values: Mapping[str, Any], unset: Iterable[str]) -> None:
    sys.modules["numpy"].set_printoptions(**values)


def _read_errstate() -> Mapping[str, Any]:
    return dict(sys.modules["numpy"].geterr())


def _apply_errstate(values: Mapping[str, Any], unset: Iterable[str]) -> None:
    sys.modules["numpy"].seterr(**values)


def _read_pandas() -> Mapping[str, Any]:
    # pandas keeps its options in one nested dict; get_option per name costs 50x more, on every pandas cell.
    values: dict[str, Any] = {}
    todo = [("", sys.modules["pandas"]._config.config._global_config)]
    while todo:
        prefix, level = todo.pop()
        for name, value in level.items():
            if isinstance(value, dict):
                todo.append((f"{prefix}{name}.", value))
            else:
                values[prefix + name] = value
    return values


def _apply_pandas(values: Mapping[str, Any], unset: Iterable[str]) -> None:
    pd = sys.modules["pandas"]
    now = _read_pandas()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, value in values.items():
            # An option already at its value is not set again: setting one fires its callback, and a run that
            # imported pandas stores every option. `plotting.matplotlib.register_converters` would import
            # matplotlib on a hit where the run never did.
            if name in now and _same(now[name], value):
                continue
            try:
                pd.set_option(name, value)
            except Exception:  # noqa: BLE001 - an option this pandas no longer has
                continue


def _filter_key(entry: tuple) -> str:
    action, message, category, module, lineno = entry
    pattern = getattr(message, "pattern", message)
    where = getattr(module, "pattern", module)
    return f"{action}|{pattern}|{category.__module__}.{category.__qualname__}|{where}|{lineno}"


def _read_warnings() -> Mapping[str, Any]:
    # Filter by filter, not the whole list: a hit adds and removes what the run did, and keeps the filters
    # this kernel's earlier cells set.
    return {_filter_key(entry): entry for entry in warnings.filters}


def _apply_warnings(values: Mapping[str, Any], unset: Iterable[str]) -> None:
    gone = set(unset)
    kept = [entry for entry in warnings.filters if _filter_key(entry) not in gone and _filter_key(entry) not in values]
    warnings.filters[:] = [*values.values(), *kept]  # filterwarnings puts a new filter first
    mutated = getattr(warnings, "_filters_mutated", None)
    if mutated is not None:
        mutated()  # the record of what was shown once is stale now, as after filterwarnings


_DECIMAL_FIELDS = ("prec", "rounding", "Emin", "Emax", "capitals", "clamp")


def _read_decimal() -> Mapping[str, Any]:
    context = decimal.getcontext()
    values: dict[str, Any] = {name: getattr(context, name) for name in _DECIMAL_FIELDS}
    values["traps"] = tuple(sorted(signal.__name__ for signal, on in context.traps.items() if on))
    return values


def _apply_decimal(values: Mapping[str, Any], unset: Iterable[str]) -> None:
    context = decimal.getcontext()
    for name, value in values.items():
        if name == "traps":
            for signal in context.traps:
                context.traps[signal] = signal.__name__ in value
        else:
            setattr(context, name, value)


# Relative to where the kernel started (the notebook's folder): the same in every kernel and on every machine.
_ORIGIN = os.getcwd()


def _read_cwd() -> Mapping[str, Any]:
    return {"cwd": os.path.relpath(os.getcwd(), _ORIGIN)}


def _apply_cwd(values: Mapping[str, Any], unset: Iterable[str]) -> None:
    target = os.path.normpath(os.path.join(_ORIGIN, values.get("cwd", ".")))
    if os.path.isdir(target):
        os.chdir(target)


def _read_sys_path() -> Mapping[str, Any]:
    # Entries by position would carry one machine's site-packages to another: only which entries are there.
    return {entry: True for entry in sys.path}


def _apply_sys_path(values: Mapping[str, Any], unset: Iterable[str]) -> None:
    for entry in values:
        if entry not in sys.path:
            sys.path.insert(0, entry)
    for entry in unset:
        while entry in sys.path:
            sys.path.remove(entry)


def _read_environ() -> Mapping[str, Any]:
    return dict(os.environ)


def _apply_environ(values: Mapping[str, Any], unset: Iterable[str]) -> None:
    os.environ.update(values)
    for name in unset:
        os.environ.pop(name, None)


BUILTIN: tuple[Probe, ...] = (
    Probe("matplotlib.rcParams", _read_rc, _apply_rc, _draws, "matplotlib",
          "Style of figures (plt.rc, plt.style.use, seaborn's set_theme and set_context). Keys cells that draw.",
          lambda: sys.modules["matplotlib"].rcParams),
    Probe("numpy.printoptions", _read_printoptions, _apply_printoptions, lambda use: use.shows and "numpy" in use.modules,
          "numpy", "np.set_printoptions. Keys cells that use numpy and print or display."),
    Probe("numpy.errstate", _read_errstate, _apply_errstate, lambda use: "numpy" in use.modules, "numpy",
          "np.seterr: what numpy does on overflow, division by zero, invalid values. Keys cells that use numpy."),
    Probe("pandas.options", _read_pandas, _apply_pandas, lambda use: "pandas" in use.modules, "pandas",
          "pd.set_option and pd.options. Keys cells that use pandas."),
    Probe("warnings.filters", _read_warnings, _apply_warnings, doc="warnings.filterwarnings and simplefilter. Replayed, never keyed."),
    Probe("decimal.context", _read_decimal, _apply_decimal, lambda use: "decimal" in use.modules,
          doc="decimal.getcontext(): precision, rounding, traps. Keys cells that use decimal."),
    Probe("cwd", _read_cwd, _apply_cwd, lambda use: use.paths, doc="os.chdir. Keys cells that name a relative path."),
    Probe("sys.path", _read_sys_path, _apply_sys_path,
          doc="Entries a cell added or removed. Replayed, never keyed: imported modules are keyed by their own source or version."),
    Probe("os.environ", _read_environ, _apply_environ,
          doc="Variables a cell set or removed. Replayed; a variable read by a literal name is keyed as env:NAME."),
)


@functools.lru_cache(maxsize=1)
def registry() -> tuple[Probe, ...]:
    """The built-in probes, then the ones libraries register (``cellcache.state`` entry points)."""
    from importlib.metadata import entry_points

    probes = list(BUILTIN)
    names = {p.name for p in probes}
    for point in entry_points(group=ENTRY_POINT_GROUP):
        try:
            found = point.load()
        except Exception as exc:  # noqa: BLE001 - a broken plugin costs its probes, not the cell
            from cellcache.errors import warn

            warn(f"cellcache: the state probe {point.name!r} could not be loaded ({exc}); its state is not replayed")
            continue
        for probe in [found] if isinstance(found, Probe) else list(found):
            if isinstance(probe, Probe) and probe.name not in names:
                probes.append(probe)
                names.add(probe.name)
    return tuple(probes)


# around a cell ----------------------------------------------------------------------------------


def read_all(probes: Iterable[Probe] | None = None) -> dict[str, Mapping[str, Any]]:
    """Every available probe's state now, copied deep: a run may change a list value in place (a figure size)."""
    states = {}
    for probe in registry() if probes is None else probes:
        if probe.available():
            try:
                states[probe.name] = copy.deepcopy(probe.read())
            except Exception:  # noqa: BLE001 - a probe that can't read is a probe that isn't there
                continue
    return states


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001 - arrays and the like: compare by value, not by ==
        try:
            return fingerprint(a) == fingerprint(b)
        except Unfingerprintable:
            return False


def changes(before: Mapping[str, Mapping[str, Any]], after: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """What changed in each probe's state between two reads: ``{"set": {...}, "unset": [...]}`` per probe.

    Plain dicts, as they are stored: a blob names no cellcache class it need not. A probe that
    appeared (the run imported its library, and may have styled it at once) is stored whole: applied
    after the import a hit makes, keys still at their defaults set nothing new.
    """
    found = {}
    for name, now in after.items():
        was = before.get(name, {})
        changed = {k: v for k, v in now.items() if k not in was or not _same(was[k], v)}
        removed = sorted(k for k in was if k not in now)
        if changed or removed:
            found[name] = {"set": changed, "unset": removed}
    return found


def apply(stored: Mapping[str, Mapping[str, Any]] | None) -> list[str]:
    """Apply on a hit what a run changed; the names of the probes that could not be applied."""
    failed = []
    by_name = {p.name: p for p in registry()}
    for name, change in (stored or {}).items():
        probe = by_name.get(name)
        if probe is None:
            failed.append(name)  # a library's probe that is not installed here
            continue
        try:
            if probe.module is not None and probe.module not in sys.modules:
                importlib.import_module(probe.module)  # the run had it loaded: so will the hit
            probe.apply(change.get("set", {}), change.get("unset", ()))
        except Exception:  # noqa: BLE001 - one probe failing must not cost the hit the others
            failed.append(name)
    return failed


# which probes key a cell ----------------------------------------------------------------------


def use_of(names: CellNames, source: str, ns: Mapping[str, Any]) -> Use:
    """What the cell reaches: the packages of the modules and values it names, and how it shows and reads."""
    modules: set[str] = set()
    for name in names.reads | names.writes:
        value = ns.get(name)
        if value is None:
            continue
        module = value.__name__ if isinstance(value, ModuleType) else getattr(type(value), "__module__", None)
        if isinstance(module, str) and module not in ("builtins", "__main__"):
            modules.add(module.partition(".")[0])
    modules |= {module.partition(".")[0] for _, module in names.aliases}
    modules |= {module.partition(".")[0] for module in names.imports}
    attributes, shows = _syntax(source)
    shows = shows or bool({"print", "display"} & names.reads)
    paths = any(_relative_path(text) for text in names.strings)
    return Use(frozenset(modules), attributes, shows, paths)


@functools.lru_cache(maxsize=512)
def _syntax(source: str) -> tuple[frozenset[str], bool]:
    tree = ast.parse(source)
    attributes = frozenset(node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute))
    last = tree.body[-1] if tree.body else None
    shows = isinstance(last, ast.Expr) and not source.rstrip().endswith(";")
    return attributes, shows


def _relative_path(text: str) -> bool:
    if not text or "\n" in text or len(text) > 4096 or os.path.isabs(text) or "://" in text:
        return False
    return "/" in text or bool(Path(text).suffix)


def components(use: Use) -> tuple[dict[str, str], dict[str, str]]:
    """Key components (``state:NAME``) of the probes that can affect such a cell, and their descriptions."""
    found, described = {}, {}
    for probe in registry():
        if not probe.available():
            continue
        try:
            if not probe.affects(use):
                continue
            found[f"state:{probe.name}"], described[f"state:{probe.name}"] = _component(probe)
        except Unfingerprintable:
            continue  # state that can't be fingerprinted can't key: it is still replayed
        except Exception:  # noqa: BLE001 - a probe that can't read doesn't key
            continue
    return found, described


def _component(probe: Probe) -> tuple[str, str]:
    value = probe.read()
    return fingerprint(dict(sorted(value.items()))).hex(), f"{probe.name} ({len(value)} settings)"


def owned(value: Any, strings: Iterable[str]) -> tuple[str, str, str] | None:
    """(label, digest, description) keying ``value`` as the probe that owns it; None if no probe does.

    ``plt.rcParams`` read as an attribute was keyed by its whole value, backend included. A hit does not
    replay the backend (``%matplotlib inline`` is not run again; the probe leaves it out as where figures
    go, not what they look like), so the value differed between a kernel that ran the cells before and
    one that restored them, and the cell missed in every new kernel. Keyed by the probe's view, it is
    keyed as a cell that draws is. A cell that names a setting the view leaves out (``"backend"``) is
    still keyed by the whole value.
    """
    for probe in registry():
        if probe.owns is None or not probe.available():
            continue
        try:
            if probe.owns() is not value:
                continue
            view = probe.read()
            keys = set(value.keys()) if isinstance(value, Mapping) else set()
            if (keys - set(view)) & set(strings):
                return None
            digest, description = _component(probe)
        except Exception:  # noqa: BLE001 - a probe that can't read: the value is keyed as it is
            return None
        return f"state:{probe.name}", digest, description
    return None
