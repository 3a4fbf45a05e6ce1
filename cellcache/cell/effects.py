"""What a cell reads and does beyond the names it binds: hidden state in the key, and its replay on a hit.

The analysis (``cellcache.cell.analysis``) says what the code names: attribute
chains, environment variables, imports. This module resolves those names
against the live namespace, because only values tell a module from a data
object, or ``np.random.rand`` from ``np.mean``:

- ``observe`` (every run, hit or miss): the key components beyond the
  inputs. Module attributes the cell reads by their current value
  (``settings.LR`` after another cell set it, ``np.mean`` after a monkey
  patch), environment variables read by a literal name, the state of a
  global random generator the cell draws from, and aliasing among inputs.
- ``Effects`` (a miss only): snapshots taken before the run and compared
  after it. Globals that a called notebook function mutated become outputs;
  module attributes and environment variables the cell set, and the
  generators it advanced, become a ``replay`` stored with the entry.
- ``apply`` (a hit): sets what the run set.

No shell and no store: the runner passes namespaces in and takes values out.
"""
from __future__ import annotations

import dis
import functools
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import BuiltinFunctionType, BuiltinMethodType, CodeType, FunctionType, MethodType, ModuleType
from typing import Any

from cellcache.cell.analysis import CellNames
from cellcache.cell import state as probes
from cellcache.errors import Unfingerprintable
from cellcache.fingerprint import describe, fingerprint, fingerprints, module_version

RANDOM = "random"  # the stdlib's hidden Random instance behind random.random(), random.shuffle()...
NUMPY = "numpy"  # numpy's legacy RandomState behind np.random.rand(), np.random.seed()...

_UNSET = "unset"


class _Absent:
    """Stands for an attribute the run deleted (pickled by reference: identity survives a store)."""
# numpy.random names that are not the legacy global generator: constructors of independent ones.
_NUMPY_OWN_GENERATORS = frozenset(
    {"default_rng", "Generator", "RandomState", "SeedSequence", "BitGenerator", "MT19937", "PCG64", "PCG64DXSM", "Philox", "SFC64"}
)
_NUMPY_LEGACY_FUNCTIONS = ("seed", "get_state", "set_state")
# Values whose identity carries no state a cell could mutate: aliasing among them means nothing.
_IMMUTABLE = (str, bytes, int, float, complex, bool, type(None), tuple, frozenset, range, ModuleType, type, FunctionType)


@dataclass(frozen=True)
class Hidden:
    """The key's view of state beyond the inputs, as ``observe`` found it before the cell."""

    components: dict[str, str] = field(default_factory=dict)
    descriptions: dict[str, str] = field(default_factory=dict)
    rngs: frozenset[str] = frozenset()  # generators whose state is keyed
    reseeded: frozenset[str] = frozenset()  # generators the cell seeds before any use: never keyed, still replayed
    seeded: frozenset[str] = frozenset()  # generators the notebook seeded before this cell: only these are keyed
    unseeded: frozenset[str] = frozenset()  # generators the cell draws from that nobody seeded: not keyed


def observe(
    names: CellNames, ns: Mapping[str, Any], inputs: Mapping[str, Any], rngs: Iterable[str] = (), seeded: Iterable[str] = ()
) -> Hidden:
    """Key components for what the cell can observe besides its inputs' values.

    ``rngs``: generators to key whatever the code shows, because an earlier
    run of the same code drew from them through code the analysis can't see.
    ``seeded``: the generators the notebook seeded. One nobody seeded starts
    from OS entropy in every kernel: keying its state would make the cell
    miss in every new kernel, forever, so it is left out, and a hit returns
    the earlier draw, as a cache of an unseeded draw is expected to.
    """
    components: dict[str, str] = {}
    descriptions: dict[str, str] = {}
    rngs = set(rngs)
    for variable in sorted(names.env_reads):
        value = os.environ.get(variable)
        components[f"env:{variable}"] = _UNSET if value is None else fingerprint(value).hex()
        descriptions[f"env:{variable}"] = "unset" if value is None else f"str len {len(value)}"
    aliases = dict(names.aliases)
    attributes: dict[str, Any] = {}
    for chain in sorted(names.attr_reads):
        value = _resolve_chain(chain, ns, aliases)
        if value is None:
            continue
        generator = draws_from(value)
        if generator is not None:
            rngs.add(generator)
        elif (probed := probes.owned(value, names.strings)) is not None:
            label, digest, description = probed  # plt.rcParams: keyed as its probe keys it
            components[label], descriptions[label] = digest, description
        elif chain[0] in aliases and _own_definition(chain, value, ns, aliases):
            continue  # what the cell's own import gives, loaded or not: keyed by the package's version
        else:
            attributes[f"attr:{'.'.join(chain)}"] = value
    for (label, value), digest in zip(attributes.items(), fingerprints(list(attributes.values()))):
        if digest is not None:  # else a stream, a lock: state no cell result is made of
            components[label] = digest.hex()
            descriptions[label] = describe(value)
    # `np.random.seed(0)` first thing: the state before the cell can't change its result
    reseeded = {g for chain in names.reseeded if (g := draws_from(_resolve_chain((*chain, "seed"), ns, aliases))) is not None}
    for name, module in aliases.items():
        # `from random import shuffle` draws as much as random.shuffle does
        generator = draws_from(_resolve_dotted(module))
        if generator is not None and name in names.reads | names.writes:
            rngs.add(generator)
    rngs |= _rngs_of_functions(inputs.values())
    rngs -= reseeded
    seeded = frozenset(seeded)
    unseeded = rngs - seeded
    rngs &= seeded
    for generator in sorted(rngs):
        state = rng_state(generator)
        if state is not None:
            components[f"rng:{generator}"] = fingerprint(state).hex()
            descriptions[f"rng:{generator}"] = f"{generator} global generator state"
    shared = aliasing(inputs)
    if shared:
        components["aliases"] = shared
        descriptions["aliases"] = shared
    return Hidden(components, descriptions, frozenset(rngs), frozenset(reseeded), seeded, frozenset(unseeded))


def aliasing(values: Mapping[str, Any]) -> str:
    """``"a=b"`` for inputs bound to one mutable object ("" if none): `b = a` is not two equal lists."""
    groups: dict[int, list[str]] = {}
    for name, value in values.items():
        if not isinstance(value, _IMMUTABLE):
            groups.setdefault(id(value), []).append(name)
    return ";".join(sorted("=".join(sorted(group)) for group in groups.values() if len(group) > 1))


# --------------------------------------------------------------------------
# Random generators


def draws_from(value: Any) -> str | None:
    """The global generator a callable draws from: ``random.shuffle`` -> "random", ``np.random.rand`` -> "numpy"."""
    mtrand = sys.modules.get("numpy.random.mtrand")
    if mtrand is not None and any(value is getattr(mtrand, name, None) for name in _NUMPY_LEGACY_FUNCTIONS):
        return NUMPY  # module-level functions of the legacy generator, not bound methods of it
    owner = getattr(value, "__self__", None)
    if owner is None or not isinstance(value, (MethodType, BuiltinMethodType)):
        return None
    random = sys.modules.get("random")
    if random is not None and owner is getattr(random, "_inst", None):
        return RANDOM
    mtrand = sys.modules.get("numpy.random.mtrand")
    if mtrand is not None and owner is getattr(mtrand, "_rand", None):
        return NUMPY
    return None


def seeds(value: Any) -> str | None:
    """The global generator a callable seeds or sets the state of: ``np.random.seed`` -> "numpy"."""
    mtrand = sys.modules.get("numpy.random.mtrand")
    if mtrand is not None and any(value is getattr(mtrand, name, None) for name in ("seed", "set_state")):
        return NUMPY
    random = sys.modules.get("random")
    owner = getattr(value, "__self__", None)
    if random is not None and owner is getattr(random, "_inst", None) and getattr(value, "__name__", "") in ("seed", "setstate"):
        return RANDOM
    return None


def seeded_by(names: CellNames, ns: Mapping[str, Any]) -> set[str]:
    """The global generators the cell's own code seeds (or sets the state of), resolved after it ran."""
    aliases = dict(names.aliases)
    values = [_resolve_chain(chain, ns, aliases) for chain in names.attr_reads]
    values += [_resolve_dotted(module) for name, module in aliases.items() if name in names.reads | names.writes]
    values += [ns.get(name) for name in names.reads]
    return {generator for value in values if value is not None and (generator := seeds(value)) is not None}


def rng_state(generator: str) -> Any:
    if generator == RANDOM:
        random = sys.modules.get("random")
        return random.getstate() if random is not None else None
    np = sys.modules.get("numpy")
    return np.random.get_state(legacy=False) if np is not None else None


def set_rng_state(generator: str, state: Any) -> None:
    if generator == RANDOM:
        import random

        random.setstate(state)
    else:
        import numpy as np

        np.random.set_state(state)


def rng_lineage(generator: str) -> tuple[Any, ...]:
    """What a generator holds beside its state: numpy's bit generator keeps the ``SeedSequence`` it came from.

    Not part of the draws, so not of the ``rng:`` key component, but of the
    generator's value: ``np.random.seed(n)`` leaves None there, while a new
    kernel holds one made from OS entropy. A hit that set only the state
    would leave every value holding the generator (a scipy distribution's
    ``_random_state``) digesting otherwise than after a run, in every kernel.
    ``()`` where there is nothing to carry.
    """
    mtrand = sys.modules.get("numpy.random.mtrand") if generator == NUMPY else None
    bit_generator = getattr(getattr(mtrand, "_rand", None), "_bit_generator", None)
    try:
        state = bit_generator.__getstate__() if bit_generator is not None else None
    except Exception:  # noqa: BLE001 - a numpy without it: the state alone, as before
        return ()
    return (state[1],) if isinstance(state, tuple) and len(state) == 2 else ()


def set_rng_lineage(generator: str, lineage: tuple[Any, ...]) -> None:
    mtrand = sys.modules.get("numpy.random.mtrand") if generator == NUMPY and lineage else None
    bit_generator = getattr(getattr(mtrand, "_rand", None), "_bit_generator", None)
    if bit_generator is None:
        return
    try:
        bit_generator.__setstate__((bit_generator.state, lineage[0]))  # the state as it is: set just now
    except Exception:  # noqa: BLE001 - another numpy's form: the state is set, which is what draws use
        pass


def _rngs_of_functions(values: Iterable[Any]) -> set[str]:
    """Generators drawn from by notebook functions among the inputs, and by the functions they call.

    Read from the code: a global that is the ``random`` module, one of its
    functions, or numpy with ``random`` among the attribute names used.
    """
    found: set[str] = set()
    start = [v for v in values if isinstance(v, FunctionType)]
    for fn in functions_reached(start, lambda f: f.__module__ == "__main__"):
        names, _ = _code_names(fn.__code__)
        namespace = fn.__globals__
        for name in names:
            value = namespace.get(name)
            if value is None:
                continue
            generator = draws_from(value)
            if generator is not None:
                found.add(generator)
            elif isinstance(value, ModuleType):
                if value.__name__ == "random":
                    found.add(RANDOM)
                elif value.__name__ in ("numpy", "numpy.random") and _uses_legacy_numpy(value.__name__, name, fn.__code__):
                    found.add(NUMPY)
    return found


def _uses_legacy_numpy(module: str, name: str, code: CodeType) -> bool:
    """Whether code reaches numpy's legacy global generator through the global ``name`` (numpy or numpy.random).

    By the attribute chains the code loads, so `np.random.default_rng(seed).normal()` (its own generator)
    does not count, while `np.random.normal()`, or `np.random` handed on as a value, does.
    """
    rest = 1 if module == "numpy" else 0  # where, after the global, the name of the numpy.random member stands
    for chain in _code_chains(code):
        if chain[0] != name:
            continue
        if module == "numpy" and (len(chain) < 2 or chain[1] != "random"):
            continue
        if len(chain) <= rest + 1 or chain[rest + 1] not in _NUMPY_OWN_GENERATORS:
            return True
    return False


@functools.lru_cache(maxsize=4096)
def _code_chains(code: CodeType) -> frozenset[tuple[str, ...]]:
    """The dotted chains a code object (and the code nested in it) loads from a global: ``np.random.normal``."""
    chains: set[tuple[str, ...]] = set()
    current: list[str] = []
    for instruction in dis.get_instructions(code):
        if instruction.opname in ("LOAD_GLOBAL", "LOAD_NAME"):
            if current:
                chains.add(tuple(current))
            current = [instruction.argval]
        elif instruction.opname in ("LOAD_ATTR", "LOAD_METHOD") and current:
            current.append(instruction.argval)
        elif current:
            chains.add(tuple(current))
            current = []
    if current:
        chains.add(tuple(current))
    for const in code.co_consts:
        if isinstance(const, CodeType):
            chains |= _code_chains(const)
    return frozenset(chains)


def functions_reached(start: Iterable[FunctionType], follows: Callable[[FunctionType], bool]) -> Iterator[FunctionType]:
    """``start``, and the functions their code loads as globals that ``follows`` accepts, transitively; each once."""
    seen: set[int] = set()
    todo = list(start)
    while todo:
        fn = todo.pop()
        if id(fn) in seen:  # recursion, mutual or not
            continue
        seen.add(id(fn))
        yield fn
        names, _ = _code_names(fn.__code__)
        for name in names:
            value = fn.__globals__.get(name)
            if isinstance(value, FunctionType) and follows(value):
                todo.append(value)


@functools.lru_cache(maxsize=4096)
def _code_names(code: CodeType) -> tuple[frozenset[str], frozenset[str]]:
    """(globals loaded, attribute names used) by a code object and the code nested in it."""
    loads: set[str] = set()
    attributes: set[str] = set()
    for instruction in dis.get_instructions(code):
        if instruction.opname in ("LOAD_GLOBAL", "LOAD_NAME"):
            loads.add(instruction.argval)
        elif instruction.opname in ("LOAD_ATTR", "LOAD_METHOD", "STORE_ATTR"):
            attributes.add(instruction.argval)
    for const in code.co_consts:
        if isinstance(const, CodeType):
            nested_loads, nested_attributes = _code_names(const)
            loads |= nested_loads
            attributes |= nested_attributes
    return frozenset(loads), frozenset(attributes)


# --------------------------------------------------------------------------
# Around a run (the miss path)


class Effects:
    """Snapshots before a missed cell runs, compared with the namespace after it."""

    def __init__(self, names: CellNames, ns: Mapping[str, Any], inputs: Mapping[str, Any], hidden: Hidden) -> None:
        self.names = names
        self.hidden = hidden
        self.before = {generator: rng_state(generator) for generator in (RANDOM, NUMPY)}
        aliases = dict(names.aliases)
        # Chains of modules the cell imports for the first time: unkeyed now, keyed on a re-run.
        self.unresolved = {c for c in names.attr_reads if c[0] in aliases and _resolve_chain(c, ns, aliases) is None}
        # Globals a notebook function among the inputs may mutate without the cell naming them.
        self.helper_globals = {
            name: _digest_or_none(ns[name])
            for name in sorted(reachable_globals(inputs.values(), ns))
            if name not in inputs and name in ns
        }

    def rerun_components(self, before: Mapping[str, Any], ns: Mapping[str, Any], outputs: Mapping[str, Any]) -> dict[str, str]:
        """The components a re-run in this kernel adds to the key, for state the run created itself.

        Names the cell bound for itself (``self_bound``), and attributes of
        modules it imported for the first time (which it did not set):
        values that did not exist when the key was made, so the run could not
        have depended on earlier ones. Filing the entry under the key with
        them too makes a re-run with nothing changed a hit. Never for
        generator states: a run consumes those.
        """
        extra: dict[str, str] = {}
        try:
            for name in self_bound(self.names, before, ns):
                if name in outputs:
                    extra[f"input:{name}"] = fingerprint(outputs[name]).hex()
        except Unfingerprintable:
            return {}
        aliases = dict(self.names.aliases)
        for chain in sorted(self.unresolved - self.names.attr_writes):
            value = _resolve_chain(chain, ns, aliases)
            if value is None or draws_from(value) is not None:
                continue
            if _own_definition(chain, value, ns, aliases):
                continue  # as prepare leaves it out in the re-run
            probed = probes.owned(value, self.names.strings)
            if probed is not None:  # as prepare keys it in the re-run
                extra[probed[0]] = probed[1]
                continue
            try:
                extra[f"attr:{'.'.join(chain)}"] = fingerprint(value).hex()
            except Unfingerprintable:
                continue
        return extra

    def mutated_globals(self, ns: Mapping[str, Any]) -> set[str]:
        """Globals whose value a called function changed in place (a list appended to, a dict updated)."""
        return {
            name
            for name, digest in self.helper_globals.items()
            if name in ns and (digest is None or _digest_or_none(ns[name]) != digest)
        }

    def advanced(self) -> dict[str, Any]:
        """The generators the run drew from: their states before the run."""
        return {
            generator: state
            for generator, state in self.before.items()
            if state is not None and not _same_state(state, rng_state(generator))
        }

    def unkeyed_rngs(self) -> dict[str, str]:
        """Key components for generators the run advanced that the key did not include (``rng:...``)."""
        return {
            f"rng:{generator}": fingerprint(state).hex()
            for generator, state in self.advanced().items()
            if generator in self.hidden.seeded and generator not in self.hidden.rngs and generator not in self.hidden.reseeded
        }

    def replay(self, ns: Mapping[str, Any]) -> dict[str, Any]:
        """What a hit must set again: attributes of modules, environment variables, generator states."""
        aliases = dict(self.names.aliases)
        attrs = []
        for chain in sorted(self.names.attr_writes):
            owner = _resolve_chain(chain[:-1], ns, aliases) if len(chain) > 1 else None
            if owner is None or not _replayable_owner(chain, ns, aliases):
                continue
            attrs.append((chain, getattr(owner, chain[-1], _Absent)))
        env = [(variable, os.environ.get(variable)) for variable in sorted(self.names.env_writes)]
        # Advanced ones, and those the cell used that did not exist before it (it imported numpy)
        used = {draws_from(_resolve_chain(chain, ns, aliases)) for chain in self.names.attr_reads}
        fresh = {g for g in used if g is not None and self.before.get(g) is None}
        rng = [(generator, rng_state(generator), *rng_lineage(generator)) for generator in sorted(set(self.advanced()) | fresh)]
        replay: dict[str, Any] = {}
        if attrs:
            replay["attrs"] = attrs
        if env:
            replay["env"] = env
        if rng:
            replay["rng"] = rng
        return replay


def apply(replay: Mapping[str, Any] | None, ns: Mapping[str, Any], seeded: Iterable[str] = (RANDOM, NUMPY)) -> None:
    """Set on a hit what the run set beyond its outputs (after the outputs are back: they hold the modules).

    Generator states only for the ``seeded`` generators: one nobody seeded keeps this kernel's own entropy.
    """
    if not replay:
        return
    for chain, value in replay.get("attrs", ()):
        owner = _resolve_chain(tuple(chain[:-1]), ns, {})
        if owner is None:
            continue
        if value is _Absent:
            if hasattr(owner, chain[-1]):
                delattr(owner, chain[-1])
        else:
            setattr(owner, chain[-1], value)
    for variable, value in replay.get("env", ()):
        if value is None:
            os.environ.pop(variable, None)
        else:
            os.environ[variable] = value
    seeded = frozenset(seeded)
    for generator, state, *lineage in replay.get("rng", ()):  # entries before the lineage hold two
        if generator in seeded:
            set_rng_state(generator, state)
            set_rng_lineage(generator, tuple(lineage))


def reachable_globals(values: Iterable[Any], ns: Mapping[str, Any]) -> set[str]:
    """Names of ``ns`` that notebook functions among ``values`` load, transitively through the functions they call."""

    def mine(fn: FunctionType) -> bool:
        return fn.__globals__ is ns

    found: set[str] = set()
    for fn in functions_reached([v for v in values if isinstance(v, FunctionType) and mine(v)], mine):
        names, _ = _code_names(fn.__code__)
        found.update(name for name in names if name in ns)
    return found


# --------------------------------------------------------------------------
# Resolving names


def _resolve_chain(chain: tuple[str, ...], ns: Mapping[str, Any], aliases: Mapping[str, str]) -> Any:
    """The value of ``a.b.c`` if ``a`` is a module (in the namespace, or imported by the cell); else None.

    Only modules: an attribute of any other object is part of that object's
    own fingerprint, since the object is an input.
    """
    root = _root_module(chain[0], ns, aliases)
    if root is None:
        return None
    value: Any = root
    for part in chain[1:]:
        if part == "environ":
            return None  # environment variables are keyed one by one, by name
        try:
            value = getattr(value, part)
        except Exception:  # noqa: BLE001 - a missing or failing attribute: the cell will see that for itself
            return None
    return value


def _root_module(name: str, ns: Mapping[str, Any], aliases: Mapping[str, str]) -> ModuleType | None:
    module = aliases.get(name)
    if module is not None:
        value = _resolve_dotted(module)
        return value if isinstance(value, ModuleType) else None
    value = ns.get(name)
    return value if isinstance(value, ModuleType) else None


def _own_definition(chain: tuple[str, ...], value: Any, ns: Mapping[str, Any], aliases: Mapping[str, str]) -> bool:
    """Whether ``value`` is the function an installed module defines under that name, as its import leaves it.

    For a module the cell imports, ``plt.rc`` resolves only if the module was loaded before the cell:
    keyed then, absent otherwise, so a cell after a hit that had not loaded it (``%matplotlib inline``)
    missed. The module's own function is what the cell's import gives either way, and the package's
    version keys it (``package:``); a patched one (defined elsewhere, or in another file of a wrapper
    that copies the name) is still keyed by its value. Functions only: a class or an object from the
    module can have been changed in place.
    """
    if len(chain) < 2 or not isinstance(value, (FunctionType, BuiltinFunctionType)):
        return False
    root = _root_module(chain[0], ns, aliases)
    owner = _resolve_chain(chain[:-1], ns, aliases)
    if root is None or not isinstance(owner, ModuleType):
        return False
    name = owner.__name__
    if name.partition(".")[0] != root.__name__.partition(".")[0]:
        return False  # reached through another package, whose version the cell's imports do not key
    if getattr(value, "__module__", None) != name or getattr(value, "__qualname__", None) != chain[-1]:
        return False
    if module_version(name) is None:
        return False  # a local module: the notebook may have edited or patched it
    if isinstance(value, FunctionType):
        return value.__code__.co_filename == getattr(owner, "__file__", None)
    return value.__self__ is owner


def _replayable_owner(chain: tuple[str, ...], ns: Mapping[str, Any], aliases: Mapping[str, str]) -> bool:
    return _root_module(chain[0], ns, aliases) is not None and "environ" not in chain


def _resolve_dotted(dotted: str) -> Any:
    """An already imported module, or an attribute of one (``random.shuffle``); never imports."""
    module = sys.modules.get(dotted)
    if module is not None:
        return module
    parent, _, attribute = dotted.rpartition(".")
    owner = sys.modules.get(parent) if parent else None
    return getattr(owner, attribute, None) if owner is not None else None


def _digest_or_none(value: Any) -> str | None:
    try:
        return fingerprint(value).hex()
    except Unfingerprintable:
        return None


def _same_state(a: Any, b: Any) -> bool:
    try:
        return fingerprint(a) == fingerprint(b)
    except Unfingerprintable:
        return False


def self_bound(names: CellNames, before: Mapping[str, Any], ns: Mapping[str, Any]) -> list[str]:
    """Names the cell may read but that it bound itself in this run, absent before it.

    The run succeeded without them, so no path it took read them before
    binding them: with the values it left, it would have taken the same
    path. The entry then also holds for those values, and a re-run in the
    same kernel, with nothing changed, is a hit (a `for` target read after
    the loop, a star import, a global of a function the cell defines). Not
    for code that tests for names (`except NameError`, `'x' in globals()`).
    """
    if names.guarded or names.dynamic:
        return []
    return sorted(n for n in names.reads if n not in before and n in ns)
