"""Which names a cell reads, writes and deletes.

The cache key of a cell includes the digests of its inputs, so ``reads`` must
contain every name whose pre-cell value the cell can observe. Missing one
means a stale cache hit, the worst bug this product can have; an extra one
only costs a digest (the caller skips names absent from the namespace). Every
rule below therefore errs towards reading more and towards treating a name as
*not* bound for sure.

Two analyses cooperate:

* ``_Flow`` walks a namespace that executes top to bottom with LOAD_NAME
  semantics (the module, a class body, code run by a magic) in source order,
  tracking the set of names *definitely* bound so far.
* ``_Scope`` collects the free names of a function-like scope (def, lambda,
  comprehension). Python decides locality per scope, not per statement, so no
  flow is needed there: a name local anywhere in a function can never load the
  global.

The source is the output of ``shell.transform_cell``; magics are the calls
``get_ipython().run_line_magic(...)`` etc. The module is pure on purpose: it
imports neither IPython nor anything outside the standard library.
"""
from __future__ import annotations

import ast
import contextlib
import functools

import sys
from dataclasses import dataclass
from typing import Iterator, Optional

from cellcache.cell.analysis._context import _Context, _DEL, _chain
from cellcache.cell.analysis._flow import _Flow

__all__ = ["CellNames", "analyze", "deep_recursion"]

# The walks recurse once per nesting level (an `elif` is an `if` in the
# previous one's `else`), a few frames each, so a valid 500-branch chain
# overflows the default limit of 1000. Since 3.11 a Python-to-Python call
# uses no C stack, so a higher limit only costs memory for real depth.
_DEPTH_LIMIT = 50_000

@contextlib.contextmanager
def deep_recursion() -> Iterator[None]:
    """Lift the recursion limit for the duration of a walk over a cell's AST.

    Beyond even this, ``RecursionError`` propagates; the runner then runs the
    cell uncached with a warning rather than failing it.
    """
    old = sys.getrecursionlimit()
    if old < _DEPTH_LIMIT:
        sys.setrecursionlimit(_DEPTH_LIMIT)
    try:
        yield
    finally:
        sys.setrecursionlimit(old)

@dataclass(frozen=True)
class CellNames:
    reads: frozenset[str]  # names that may be loaded before the cell binds them (the cell's inputs)
    writes: frozenset[str]  # top-level names the cell may bind
    deletes: frozenset[str]  # top-level names the cell `del`s and does not bind again afterwards
    imports: frozenset[str]  # top-level module names the cell imports
    # What the key needs beyond names (see cellcache.cell.effects, which resolves them against the namespace):
    modules: frozenset[str] = frozenset()  # every dotted module the cell imports (`import a.b` -> a.b)
    aliases: tuple[tuple[str, str], ...] = ()  # (name, module) bound by the cell's imports, `from m import x` as m.x
    attr_reads: frozenset[tuple[str, ...]] = frozenset()  # loaded chains rooted at a name: ("settings", "LR")
    attr_writes: frozenset[tuple[str, ...]] = frozenset()  # assigned or deleted chains: ("pd", "options", "x")
    env_reads: frozenset[str] = frozenset()  # environment variables read by a literal name
    env_writes: frozenset[str] = frozenset()  # environment variables set by a literal name
    strings: frozenset[str] = frozenset()  # string literals: a native reader may open one as a path
    dynamic: str | None = None  # why the cell's namespace use can't be followed (`globals()[name]`), or None
    guarded: bool = False  # the cell tests whether names exist (`except NameError`, `"x" in globals()`)
    reseeded: frozenset[tuple[str, ...]] = frozenset()  # generators (`("np", "random")`) the cell seeds before any use
    # Names the cell binds for sure before it runs any code but its own bindings, and keeps bound to its end:
    # a helper it calls can only read the cell's value of them, never an earlier one.
    prebound: frozenset[str] = frozenset()

    @property
    def named_modules(self) -> tuple[str, ...]:
        """Every module the cell names: imported (``import a.b``) and aliased (``from a import b as c``)."""
        return (*self.modules, *(module for _, module in self.aliases))

def analyze(source: str) -> CellNames:
    """Analyze transformed cell source. A SyntaxError propagates unchanged."""
    return _analyze_cached(source)

@functools.lru_cache(maxsize=512)
def _analyze_cached(source: str) -> CellNames:
    # The runner calls this on every execution of a cached cell, and a cell is
    # usually run many times with the same text, so the cache is keyed by text.
    with deep_recursion():
        tree = ast.parse(source)
        ctx = _Context(namespace=_Flow)
        flow = _Flow(ctx)
        flow.run(tree.body)
        ctx.active(flow.state)  # the shell shows the last value, and a repr is code too
    hidden = _hidden
    return CellNames(
        reads=frozenset(n for n in ctx.reads if not hidden(n)),
        writes=frozenset(n for n in ctx.writes if not hidden(n)),
        deletes=frozenset(n for n, ev in ctx.last_event.items() if ev == _DEL and not hidden(n)),
        imports=frozenset(ctx.imports),
        modules=frozenset(ctx.modules),
        aliases=tuple(sorted(ctx.aliases.items())),
        attr_reads=frozenset(c for c in ctx.attr_reads if not hidden(c[0])),
        attr_writes=frozenset(c for c in ctx.attr_writes if not hidden(c[0])),
        env_reads=frozenset(ctx.env_reads),
        env_writes=frozenset(ctx.env_writes),
        strings=frozenset(ctx.strings),
        dynamic=ctx.dynamic,
        guarded=ctx.guarded,
        reseeded=_reseeded_first(tree.body),
        prebound=frozenset(n for n in (ctx.settled or ()) if n in ctx.writes and not hidden(n)),
    )

def _generator_of(chain: tuple[str, ...]) -> Optional[tuple[str, ...]]:
    """The global generator a chain uses: ``np.random.rand`` -> ("np", "random"), ``random.shuffle`` -> ("random",)."""
    if len(chain) >= 3 and chain[-2] == "random":
        return chain[:-1]
    if len(chain) == 2 and chain[0] == "random":
        return chain[:1]
    return None

def _reseeded_first(body: list[ast.stmt]) -> frozenset[tuple[str, ...]]:
    """Generators whose first use in the cell is a top-level ``seed(...)`` call: their earlier state can't matter."""
    seeded: set[tuple[str, ...]] = set()
    touched: set[tuple[str, ...]] = set()
    for stmt in body:
        call = stmt.value if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call) else None
        chain = _chain(call.func) if call is not None else None
        if chain is not None and chain[-1] == "seed" and call is not None and call.args:
            generator = _generator_of(chain)
            if generator is not None and generator not in touched:
                seeded.add(generator)
        for node in ast.walk(stmt):
            found = _chain(node) if isinstance(node, ast.Attribute) else None
            generator = _generator_of(found) if found else None
            if generator is not None:
                touched.add(generator)
    return frozenset(seeded)

def _hidden(name: str) -> bool:
    # `get_ipython` is how every magic is spelled after transformation; it is
    # the shell itself, not user data. Dunders (`__builtins__`, `__name__`)
    # are interpreter plumbing in the user namespace.
    return name == "get_ipython" or (len(name) > 4 and name.startswith("__") and name.endswith("__"))

