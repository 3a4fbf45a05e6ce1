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
import keyword
import re
import string
import sys
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Optional

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
        ctx = _Context()
        _Flow(ctx).run(tree.body)
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


# --------------------------------------------------------------------------
# shared results

_BIND = "bind"
_DEL = "del"

# (name, is_global): how a nested namespace hands a load it cannot satisfy to
# its parent. is_global marks a name declared `global` somewhere inside, which
# must skip enclosing function scopes and go to the module.
_Resolver = Callable[[str, bool], None]

_State = Optional[set]  # None = unreachable (after break/raise): neutral in merges


class _Context:
    """Results shared by every namespace and scope of one cell."""

    __slots__ = (
        "reads", "writes", "imports", "last_event", "modules", "aliases", "attr_reads", "attr_writes",
        "env_reads", "env_writes", "strings", "dynamic", "guarded",
    )  # fmt: skip

    def __init__(self) -> None:
        self.reads: set[str] = set()
        self.writes: set[str] = set()
        self.imports: set[str] = set()
        self.modules: set[str] = set()
        self.aliases: dict[str, str] = {}
        self.attr_reads: set[tuple[str, ...]] = set()
        self.attr_writes: set[tuple[str, ...]] = set()
        self.env_reads: set[str] = set()
        self.env_writes: set[str] = set()
        self.strings: set[str] = set()
        self.dynamic: str | None = None
        self.guarded = False
        # Module-level bind/del events in source order; a name whose last
        # event is a del is a delete ("not bound again later, in any branch").
        self.last_event: dict[str, str] = {}

    def write(self, name: str) -> None:
        self.writes.add(name)
        self.last_event[name] = _BIND

    def delete(self, name: str) -> None:
        self.last_event[name] = _DEL


def _intersect(states: Iterable[_State]) -> _State:
    result: _State = None
    for s in states:
        if s is None:
            continue
        result = set(s) if result is None else result & s
    return result


def _copy(state: _State) -> _State:
    return None if state is None else set(state)


def _minus(state: _State, names: set[str]) -> _State:
    return None if state is None else state - names


def _record_imports(ctx: _Context, node: ast.Import | ast.ImportFrom) -> list[str]:
    """Record the imported top-level modules; return the names the import binds."""
    if isinstance(node, ast.Import):
        ctx.imports.update(a.name.partition(".")[0] for a in node.names)
        ctx.modules.update(a.name for a in node.names)
        for a in node.names:
            if a.asname:
                ctx.aliases[a.asname] = a.name
            else:
                top = a.name.partition(".")[0]
                ctx.aliases[top] = top
        # `import a.b` binds `a`; `import a.b as c` binds `c`
        return [a.asname or a.name.partition(".")[0] for a in node.names]
    # relative imports name no installed module; __future__ is a compiler switch
    if node.module and not node.level and node.module != "__future__":
        ctx.imports.add(node.module.partition(".")[0])
        ctx.modules.add(node.module)
        for a in node.names:
            if a.name != "*":
                ctx.aliases[a.asname or a.name] = f"{node.module}.{a.name}"
    # a star import binds names nobody can list: nothing
    return [a.asname or a.name for a in node.names if a.name != "*"]


def _chain(node: ast.AST) -> Optional[tuple[str, ...]]:
    """``("a", "b", "c")`` for the expression ``a.b.c``; None if it is not rooted at a name."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return tuple(reversed(parts))


def _literal(node: Optional[ast.AST]) -> Optional[str]:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _is_environ(node: ast.AST) -> bool:
    chain = _chain(node)
    return chain is not None and chain[-1] == "environ"  # os.environ, or environ imported from os


def _is_namespace(node: ast.AST, module_level: bool) -> bool:
    """``globals()``, ``get_ipython().user_ns`` (and at module level ``vars()``/``locals()``): the cell's namespace."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.args and not node.keywords:
        return node.func.id == "globals" or (module_level and node.func.id in ("vars", "locals"))
    return (
        isinstance(node, ast.Attribute)
        and node.attr in ("user_ns", "user_global_ns")
        and isinstance(node.value, ast.Call)
        and isinstance(node.value.func, ast.Name)
        and node.value.func.id == "get_ipython"
    )


_COMPUTED_NAME = "it reaches the namespace by a computed name (`globals()[name]`)"
_NAMESPACE_READS = frozenset({"get", "pop", "setdefault", "__getitem__", "__contains__"})


def _note_env_call(ctx: _Context, node: ast.Call) -> None:
    """``os.getenv("X")``, ``os.environ.get("X")`` / ``.setdefault`` / ``.pop``, ``os.putenv("X", v)``."""
    func = node.func
    name = _literal(node.args[0]) if node.args else None
    if name is None:
        return
    chain = _chain(func)
    if chain is None:
        return
    method = chain[-1]
    if method == "getenv" or (method in ("get", "setdefault", "pop") and isinstance(func, ast.Attribute) and _is_environ(func.value)):
        ctx.env_reads.add(name)
        if method in ("setdefault", "pop"):
            ctx.env_writes.add(name)
    elif method == "putenv":
        ctx.env_writes.add(name)


def _namespace_call(node: ast.Call, module_level: bool) -> Optional[tuple[str, Optional[str]]]:
    """(method, literal name or None) for ``globals().get(...)`` and friends, else None."""
    func = node.func
    if not (isinstance(func, ast.Attribute) and _is_namespace(func.value, module_level)):
        return None
    return func.attr, _literal(node.args[0]) if node.args else None


def _note_membership(ctx: _Context, node: ast.Compare, load: Callable[[str], None], module_level: bool) -> None:
    """``"X" in os.environ`` reads X from the environment; ``"x" in globals()`` reads x."""
    name = _literal(node.left)
    if name is None or len(node.ops) != 1 or not isinstance(node.ops[0], (ast.In, ast.NotIn)):
        return
    container = node.comparators[0]
    if _is_environ(container):
        ctx.env_reads.add(name)
    elif _is_namespace(container, module_level):
        ctx.guarded = True
        load(name)


_NAME_ERRORS = frozenset({"NameError", "UnboundLocalError", "Exception", "BaseException"})


def _catches_name_error(handler: ast.ExceptHandler) -> bool:
    if handler.type is None:
        return True
    types = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
    return any(isinstance(t, ast.Name) and t.id in _NAME_ERRORS for t in types)


def _out_index(node: ast.Subscript) -> Optional[str]:
    """``_3`` for ``Out[3]``: a read of one past output, not of the whole history."""
    if isinstance(node.value, ast.Name) and node.value.id in ("Out", "_oh") and isinstance(node.slice, ast.Constant):
        index = node.slice.value
        if type(index) is int and index >= 0:
            return f"_{index}"
    return None


def _note_string(ctx: _Context, node: ast.Constant) -> None:
    value = node.value
    # Path-like only: a native reader (pyarrow, h5py) may open it where the audit hook can't see.
    if type(value) is str and 0 < len(value) < 1024 and "\n" not in value:
        ctx.strings.add(value)


# Context managers known never to swallow an exception. For any other `with`,
# the body may stop half way and execution go on after the statement, so what
# the body binds is not bound for sure. Matching is by the called name only;
# this trades a theoretical shadowing of e.g. `open` for not turning
# `with open(p) as f: data = f.read()` into a read of `data`.
_NON_SUPPRESSING_CMS = frozenset(
    {
        "open",
        "TemporaryDirectory",
        "NamedTemporaryFile",
        "TemporaryFile",
        "ZipFile",
        "nullcontext",
        "chdir",
        "redirect_stdout",
        "redirect_stderr",
        "catch_warnings",
        "errstate",
        "option_context",
        "printoptions",
        "no_grad",
        "enable_grad",
        "inference_mode",
        "set_grad_enabled",
        "ThreadPoolExecutor",
        "ProcessPoolExecutor",
        "Pool",
    }
)


def _never_suppresses(expr: ast.expr) -> bool:
    if not isinstance(expr, ast.Call):
        return False
    func = expr.func
    name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
    return name in _NON_SUPPRESSING_CMS


def _irrefutable(pattern: ast.pattern) -> bool:
    if isinstance(pattern, ast.MatchAs):
        return pattern.pattern is None or _irrefutable(pattern.pattern)
    if isinstance(pattern, ast.MatchOr):
        return any(_irrefutable(p) for p in pattern.patterns)
    return False


def _is_truthy_constant(expr: ast.expr) -> bool:
    return isinstance(expr, ast.Constant) and bool(expr.value)


def _type_params(node: ast.AST) -> list[str]:
    # PEP 695 (3.12+): absent from older ASTs, hence getattr.
    return [p.name for p in getattr(node, "type_params", None) or ()]


def _annotation_exprs(args: ast.arguments) -> list[ast.expr]:
    all_args = [*args.posonlyargs, *args.args, *args.kwonlyargs]
    if args.vararg:
        all_args.append(args.vararg)
    if args.kwarg:
        all_args.append(args.kwarg)
    return [a.annotation for a in all_args if a.annotation is not None]


def _param_names(args: ast.arguments) -> list[str]:
    names = [a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs)]
    if args.vararg:
        names.append(args.vararg.arg)
    if args.kwarg:
        names.append(args.kwarg.arg)
    return names


# --------------------------------------------------------------------------
# magics


@dataclass
class _MagicPlan:
    """What a magic call does with the names of the namespace it runs in."""

    exprs: list[ast.expr] = field(default_factory=list)  # $name / {expr} expansions
    idents: set[str] = field(default_factory=set)  # fallback reads of unparsable Python code
    inline: list[list[ast.stmt]] = field(default_factory=list)  # code run in the caller's namespace
    private: list[ast.stmt] = field(default_factory=list)  # code run in a function of its own (timeit)
    binds: list[str] = field(default_factory=list)  # names the magic itself assigns (%%capture out)
    env_reads: list[str] = field(default_factory=list)  # `%env X`
    env_writes: list[str] = field(default_factory=list)  # `%env X=1`, `%set_env X 1`


_MAGIC_METHODS = frozenset({"run_line_magic", "run_cell_magic", "system", "getoutput"})
# Magics whose arguments are not Python run in the user namespace: parsing
# them could invent writes (`%env A=b`, a `%%writefile` module's defs).
_NON_PYTHON_MAGICS = frozenset(
    {
        "writefile", "file", "bash", "sh", "script", "html", "HTML", "javascript", "js",
        "latex", "markdown", "svg", "perl", "ruby", "python", "python2", "python3", "pypy",
        "env", "set_env", "sx", "system", "pip", "conda", "mamba", "sql",
    }
)  # fmt: skip
# Magics known to run their argument as Python in the user namespace. If it
# does not parse (it may hold IPython syntax such magics transform
# themselves), every identifier in it is read rather than nothing.
_PYTHON_MAGICS = frozenset({"time", "timeit", "prun", "capture", "debug"})
# timeit compiles its code into a function of its own: bindings stay there.
_PRIVATE_MAGICS = frozenset({"timeit"})

_DOLLAR = re.compile(r"\$(\$?)([A-Za-z_]\w*)")
_BRACES = re.compile(r"\{([^{}]*)\}")
_IDENT = re.compile(r"[A-Za-z_]\w*")
_FORMATTER = string.Formatter()


def _magic_call(node: ast.Call) -> Optional[tuple[str, tuple[str, ...]]]:
    """(method, string args) for ``get_ipython().<method>('...', ...)``, else None."""
    func = node.func
    if not (
        isinstance(func, ast.Attribute)
        and func.attr in _MAGIC_METHODS
        and isinstance(func.value, ast.Call)
        and isinstance(func.value.func, ast.Name)
        and func.value.func.id == "get_ipython"
    ):
        return None
    args = []
    for arg in node.args:
        if not (isinstance(arg, ast.Constant) and isinstance(arg.value, str)):
            break
        args.append(arg.value)
    return func.attr, tuple(args)


def _parse_expr(text: str) -> Optional[ast.expr]:
    try:
        return ast.parse(text.strip(), mode="eval").body
    except (SyntaxError, ValueError):
        return None


def _expansions(text: str) -> list[ast.expr]:
    """Expressions IPython's var_expand evaluates in ``text`` ($name, {expr})."""
    out: list[ast.expr] = []
    if "$" in text:
        for escaped, name in _DOLLAR.findall(text):
            if not escaped:  # $$name is a literal $name for the shell
                out.append(ast.Name(id=name, ctx=ast.Load()))
    if "{" in text:
        fields: list[str] = []
        try:
            for _, field_name, spec, _conv in _FORMATTER.parse(text):
                if field_name is not None:
                    # IPython glues the spec back on so that {x[1:2]} slices
                    fields.append(f"{field_name}:{spec}" if spec else field_name)
        except ValueError:
            # IPython gives up on such a string; we still read what we can
            fields = _BRACES.findall(text)
        for f in fields:
            expr = _parse_expr(f)
            if expr is not None:
                out.append(expr)
    return out


def _try_parse(text: str) -> Optional[list[ast.stmt]]:
    try:
        return ast.parse(text).body
    except (SyntaxError, ValueError):
        return None


_TOKEN = re.compile(r"\s*(\S+)")


def _parse_code(text: str) -> Optional[list[ast.stmt]]:
    """Parse magic arguments as code, dropping leading ``-flag [value]`` options.

    Best effort: after each dropped token, try the rest. A token is dropped
    if it starts with "-" or directly follows one (the flag's value).
    """
    parsed = _try_parse(text)
    if parsed is not None:
        return parsed
    rest = text
    after_flag = False
    while True:
        m = _TOKEN.match(rest)
        if m is None:
            return None
        token = m.group(1)
        if token.startswith("-"):
            after_flag = True
        elif after_flag:
            after_flag = False
        else:
            return None
        rest = rest[m.end():].lstrip()
        if not rest:
            return []  # options only, e.g. `%%time --no-raise-error`
        parsed = _try_parse(rest)
        if parsed is not None:
            return parsed


def _identifiers(text: str) -> set[str]:
    return {w for w in _IDENT.findall(text) if not keyword.iskeyword(w)}


@functools.lru_cache(maxsize=256)
def _magic_plan(method: str, args: tuple[str, ...]) -> _MagicPlan:
    plan = _MagicPlan()
    if method in ("system", "getoutput"):
        for a in args:
            plan.exprs.extend(_expansions(a))
        return plan
    if not args:
        return plan
    name, pieces = args[0], args[1:]
    for a in pieces:
        plan.exprs.extend(_expansions(a))
    if name in ("env", "set_env") and pieces and pieces[0].strip():
        variable, sep, _ = pieces[0].strip().replace("=", " ", 1).partition(" ")
        (plan.env_writes if sep or name == "set_env" else plan.env_reads).append(variable)
    if name in _NON_PYTHON_MAGICS:
        return plan
    if method == "run_cell_magic" and name == "capture" and pieces:
        # `%%capture [--no-stdout ...] [name]` assigns the captured output
        tokens = [t for t in pieces[0].split() if not t.startswith("-")]
        if tokens and tokens[0].isidentifier():
            plan.binds.append(tokens[0])
        pieces = pieces[1:]
    code: list[list[ast.stmt]] = []
    for piece in pieces:
        if not piece.strip():
            continue
        parsed = _parse_code(piece)
        if parsed is not None:
            code.append(parsed)
        elif name in _PYTHON_MAGICS:
            plan.idents |= _identifiers(piece)
    if name in _PRIVATE_MAGICS:
        plan.private = [s for stmts in code for s in stmts]  # %%timeit: setup line, then body
    else:
        plan.inline = code
    return plan


def _exec_call(node: ast.Call) -> Optional[list[ast.stmt]]:
    """Code of ``exec('...')`` / ``eval('...')`` run in the current namespace."""
    func = node.func
    if (
        isinstance(func, ast.Name)
        and func.id in ("exec", "eval")
        and len(node.args) == 1
        and not node.keywords
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, str)
    ):
        try:
            return ast.parse(node.args[0].value).body
        except (SyntaxError, ValueError):
            return None
    return None


# --------------------------------------------------------------------------
# function-like scopes


class _Scope:
    """Free names of a def, lambda or comprehension (flow-insensitive)."""

    __slots__ = ("ctx", "bound", "loads", "gloads", "globals", "nonlocals", "walrus_sink")

    def __init__(self, ctx: _Context, walrus_sink: Optional[Callable[[str], None]] = None) -> None:
        self.ctx = ctx
        self.bound: set[str] = set()
        self.loads: set[str] = set()
        self.gloads: set[str] = set()  # loads that bypass enclosing functions (nested `global`)
        self.globals: set[str] = set()
        self.nonlocals: set[str] = set()
        # Set for comprehensions only: a walrus there binds in the nearest
        # enclosing non-comprehension scope.
        self.walrus_sink = walrus_sink

    # -- entry points ------------------------------------------------------

    @classmethod
    def of_function(cls, ctx: _Context, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> _Scope:
        scope = cls(ctx)
        scope.bound.update(_param_names(node.args))
        scope.bound.update(_type_params(node))
        if isinstance(node, ast.Lambda):
            scope.visit(node.body)
        else:
            scope.visit_all(node.body)
        return scope

    @classmethod
    def of_body(cls, ctx: _Context, body: list[ast.stmt]) -> _Scope:
        scope = cls(ctx)
        scope.visit_all(body)
        return scope

    @classmethod
    def of_comprehension(cls, ctx: _Context, node: ast.expr, sink: Callable[[str], None]) -> _Scope:
        scope = cls(ctx, sink)
        gens: list[ast.comprehension] = node.generators  # type: ignore[attr-defined]
        for i, gen in enumerate(gens):
            if i:  # the first iterable is evaluated in the enclosing scope
                scope.visit(gen.iter)
            scope.visit(gen.target)
            scope.visit_all(gen.ifs)
        if isinstance(node, ast.DictComp):
            scope.visit(node.key)
            scope.visit(node.value)
        else:
            scope.visit(node.elt)  # type: ignore[attr-defined]
        return scope

    def free(self) -> tuple[set[str], set[str]]:
        """(free names resolved by the enclosing scope, names that go to the module)."""
        local = self.bound - self.globals - self.nonlocals
        free = {n for n in self.loads if n not in local and n not in self.globals}
        free |= self.nonlocals  # they live in an enclosing function: keep it local there
        gfree = self.gloads | (self.loads & self.globals)
        for name in self.bound & self.globals:
            # a function may be called in the cell, so its global assignments are writes
            self.ctx.write(name)
        return free, gfree

    def resolve(self, name: str, is_global: bool) -> None:
        (self.gloads if is_global else self.loads).add(name)

    def _bind_walrus(self, name: str) -> None:
        self.bound.add(name)

    def _nested(self, scope: _Scope) -> None:
        free, gfree = scope.free()
        self.loads |= free
        self.gloads |= gfree

    # -- walking -------------------------------------------------------------

    def visit_all(self, nodes: Iterable[ast.AST]) -> None:
        for n in nodes:
            self.visit(n)

    def visit(self, node: ast.AST) -> None:
        t = type(node)
        if t is ast.Name:
            if type(node.ctx) is ast.Load:  # type: ignore[attr-defined]
                self.loads.add(node.id)  # type: ignore[attr-defined]
            else:
                self.bound.add(node.id)  # type: ignore[attr-defined]
            return
        handler = _SCOPE_HANDLERS.get(t)
        if handler is not None:
            handler(self, node)
            return
        for child in ast.iter_child_nodes(node):
            if type(child) not in _CONTEXT_TYPES:
                self.visit(child)

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.visit_all(node.decorator_list)
        self._signature(node.args)
        if node.returns is not None:
            self.visit(node.returns)
        self.bound.add(node.name)
        self._nested(_Scope.of_function(self.ctx, node))

    def _signature(self, args: ast.arguments) -> None:
        self.visit_all(args.defaults)
        self.visit_all(d for d in args.kw_defaults if d is not None)
        self.visit_all(_annotation_exprs(args))

    def _lambda(self, node: ast.Lambda) -> None:
        self._signature(node.args)
        self._nested(_Scope.of_function(self.ctx, node))

    def _class(self, node: ast.ClassDef) -> None:
        self.visit_all(node.decorator_list)
        self.visit_all(node.bases)
        self.visit_all(node.keywords)
        self.bound.add(node.name)
        # A class body runs top to bottom with LOAD_NAME semantics even inside
        # a function: `y = x; x = 1` in it loads the outer x first.
        _Flow(self.ctx, parent=self.resolve, class_name=node.name).run(node.body)

    def _comprehension(self, node: ast.expr) -> None:
        self.visit(node.generators[0].iter)  # type: ignore[attr-defined]
        sink = self.walrus_sink or self._bind_walrus
        self._nested(_Scope.of_comprehension(self.ctx, node, sink))

    def _named_expr(self, node: ast.NamedExpr) -> None:
        self.visit(node.value)
        if self.walrus_sink is not None:
            self.walrus_sink(node.target.id)  # type: ignore[attr-defined]
        else:
            self.bound.add(node.target.id)  # type: ignore[attr-defined]

    def _aug_assign(self, node: ast.AugAssign) -> None:
        if isinstance(node.target, ast.Name):
            # local either way, but under `global x` it loads the module's x
            self.loads.add(node.target.id)
        chain = _chain(node.target)
        if chain is not None and len(chain) > 1:
            self.ctx.attr_reads.add(chain)
        self.visit(node.target)
        self.visit(node.value)

    def _ann_assign(self, node: ast.AnnAssign) -> None:
        # `x: int` makes x local to a function even without a value
        self.visit(node.target)
        self.visit(node.annotation)
        if node.value is not None:
            self.visit(node.value)

    def _global(self, node: ast.Global) -> None:
        self.globals.update(node.names)

    def _nonlocal(self, node: ast.Nonlocal) -> None:
        self.nonlocals.update(node.names)

    def _import(self, node: ast.Import | ast.ImportFrom) -> None:
        self.bound.update(_record_imports(self.ctx, node))

    def _except_handler(self, node: ast.ExceptHandler) -> None:
        if _catches_name_error(node):
            self.ctx.guarded = True
        if node.type is not None:
            self.visit(node.type)
        if node.name:
            self.bound.add(node.name)
        self.visit_all(node.body)

    def _match_name(self, node: ast.MatchAs | ast.MatchStar) -> None:
        if node.name:
            self.bound.add(node.name)
        pattern = getattr(node, "pattern", None)
        if pattern is not None:
            self.visit(pattern)

    def _match_mapping(self, node: ast.MatchMapping) -> None:
        self.visit_all(node.keys)
        self.visit_all(node.patterns)
        if node.rest:
            self.bound.add(node.rest)

    def _type_alias(self, node: ast.AST) -> None:
        self.bound.add(node.name.id)  # type: ignore[attr-defined]
        lazy = _Scope(self.ctx)  # the value is evaluated lazily, like a lambda body
        lazy.bound.update(_type_params(node))
        lazy.visit(node.value)  # type: ignore[attr-defined]
        self._nested(lazy)

    def _call(self, node: ast.Call) -> None:
        magic = _magic_call(node)
        if magic is not None:
            self._magic(_magic_plan(*magic))
            return
        code = _exec_call(node)
        if code is not None:
            _Flow(self.ctx, parent=self.resolve).run(code)
        _note_env_call(self.ctx, node)
        namespace = _namespace_call(node, module_level=False)
        if namespace is not None:
            method, name = namespace
            self.ctx.guarded = True
            if name is None or method not in _NAMESPACE_READS:
                self.ctx.dynamic = self.ctx.dynamic or _COMPUTED_NAME
            else:
                self.gloads.add(name)  # the module's global, whatever the function's locals
                if method in ("pop", "setdefault"):
                    self.ctx.write(name)
        self.visit(node.func)
        self.visit_all(node.args)
        self.visit_all(node.keywords)

    def _attribute(self, node: ast.Attribute) -> None:
        chain = _chain(node)
        if chain is None:
            self.visit(node.value)
            return
        (self.ctx.attr_reads if type(node.ctx) is ast.Load else self.ctx.attr_writes).add(chain)
        self.loads.add(chain[0])

    def _subscript(self, node: ast.Subscript) -> None:
        name = _literal(node.slice)
        loading = type(node.ctx) is ast.Load
        past = _out_index(node) if loading else None
        if past is not None:
            self.loads.add(past)
            return
        if _is_environ(node.value):
            if name is not None:
                (self.ctx.env_reads if loading else self.ctx.env_writes).add(name)
        elif _is_namespace(node.value, module_level=False):
            if name is None:
                self.ctx.dynamic = self.ctx.dynamic or _COMPUTED_NAME
            elif loading:
                self.gloads.add(name)
            else:
                self.ctx.write(name)
        self.visit(node.value)
        self.visit(node.slice)

    def _compare(self, node: ast.Compare) -> None:
        _note_membership(self.ctx, node, lambda name: self.gloads.add(name), module_level=False)
        self.visit(node.left)
        self.visit_all(node.comparators)

    def _constant(self, node: ast.Constant) -> None:
        _note_string(self.ctx, node)

    def _magic(self, plan: _MagicPlan) -> None:
        # Inside a function, magics see the function's locals through the
        # calling frame, and what they bind does not become a local.
        self.ctx.env_reads.update(plan.env_reads)
        self.ctx.env_writes.update(plan.env_writes)
        self.visit_all(plan.exprs)
        self.loads |= plan.idents
        for stmts in plan.inline:
            _Flow(self.ctx, parent=self.resolve).run(stmts)
        if plan.private:
            self._nested(_Scope.of_body(self.ctx, plan.private))


_CONTEXT_TYPES = frozenset({ast.Load, ast.Store, ast.Del})

_SCOPE_HANDLERS: dict[type, Callable[[_Scope, ast.AST], None]] = {
    ast.FunctionDef: _Scope._function,
    ast.AsyncFunctionDef: _Scope._function,
    ast.Lambda: _Scope._lambda,
    ast.ClassDef: _Scope._class,
    ast.ListComp: _Scope._comprehension,
    ast.SetComp: _Scope._comprehension,
    ast.GeneratorExp: _Scope._comprehension,
    ast.DictComp: _Scope._comprehension,
    ast.NamedExpr: _Scope._named_expr,
    ast.AugAssign: _Scope._aug_assign,
    ast.AnnAssign: _Scope._ann_assign,
    ast.Global: _Scope._global,
    ast.Nonlocal: _Scope._nonlocal,
    ast.Import: _Scope._import,
    ast.ImportFrom: _Scope._import,
    ast.ExceptHandler: _Scope._except_handler,
    ast.MatchAs: _Scope._match_name,
    ast.MatchStar: _Scope._match_name,
    ast.MatchMapping: _Scope._match_mapping,
    ast.Call: _Scope._call,
    ast.Attribute: _Scope._attribute,
    ast.Subscript: _Scope._subscript,
    ast.Compare: _Scope._compare,
    ast.Constant: _Scope._constant,
}  # type: ignore[dict-item]
if hasattr(ast, "TypeAlias"):
    _SCOPE_HANDLERS[ast.TypeAlias] = _Scope._type_alias  # type: ignore[attr-defined]


# --------------------------------------------------------------------------
# namespaces that run in order


class _Flow:
    """Definite-assignment walk of a module, class body or magic namespace.

    With ``parent=None`` this is the cell's module namespace: an unsatisfied
    load is a read and bindings are writes. Otherwise it is a namespace of its
    own (class body, exec'd magic code) whose unsatisfied loads go to
    ``parent``; its bindings are invisible to nested functions, as in Python.
    """

    __slots__ = ("ctx", "parent", "prefix", "state", "loops", "unbinds", "decl_global", "decl_nonlocal")

    def __init__(self, ctx: _Context, parent: Optional[_Resolver] = None, class_name: Optional[str] = None) -> None:
        self.ctx = ctx
        self.parent = parent
        stripped = class_name.lstrip("_") if class_name else ""
        self.prefix = f"_{stripped}" if stripped else None  # private-name mangling
        self.state: _State = set()
        self.loops: list[tuple[list[_State], list[_State]]] = []  # (breaks, continues)
        self.unbinds: list[str] = []  # every name ever removed from the state, in order
        self.decl_global: set[str] = set()
        self.decl_nonlocal: set[str] = set()

    def run(self, body: list[ast.stmt]) -> None:
        self.stmts(body)

    # -- names -----------------------------------------------------------------

    def _mangle(self, name: str) -> str:
        if self.prefix and name.startswith("__") and not name.endswith("__"):
            return self.prefix + name
        return name

    def load(self, name: str) -> None:
        if self.state is None:
            return
        if self.parent is None:
            if name not in self.state:
                self.ctx.reads.add(name)
            return
        name = self._mangle(name)
        if name in self.decl_global:
            self.parent(name, True)
        elif name in self.decl_nonlocal:
            self.parent(name, False)
        elif name not in self.state:
            self.parent(name, False)

    def nested_load(self, name: str, is_global: bool = False) -> None:
        """A free name of a nested def/lambda/comprehension, resolved here."""
        if self.parent is None:
            self.load(name)
        elif self.state is not None:
            # nested scopes never see a class namespace
            self.parent(self._mangle(name), is_global)

    def _nested(self, scope: _Scope) -> None:
        free, gfree = scope.free()
        for name in free:
            self.nested_load(name)
        for name in gfree:
            self.nested_load(name, True)

    def bind(self, name: str) -> None:
        if self.parent is None:
            self.ctx.write(name)
        else:
            name = self._mangle(name)
            if name in self.decl_global:
                self.ctx.write(name)  # not added to any state: not bound for sure
                return
            if name in self.decl_nonlocal:
                return
        if self.state is not None:
            self.state.add(name)

    def unbind(self, name: str, *, is_del: bool = True) -> None:
        if self.parent is not None:
            name = self._mangle(name)
            if name in self.decl_global or name in self.decl_nonlocal:
                return
        elif is_del:
            self.ctx.delete(name)
        if self.state is not None:
            self.state.discard(name)
        self.unbinds.append(name)

    def _comp_walrus(self, name: str) -> None:
        # Binds the enclosing namespace, but the comprehension may run zero
        # times: a write, never a definite binding.
        if self.parent is None:
            self.ctx.write(name)

    # -- statements ------------------------------------------------------------

    def stmts(self, body: Iterable[ast.stmt]) -> None:
        for s in body:
            handler = _FLOW_STMT_HANDLERS.get(type(s))
            if handler is None:
                self.generic(s)
            else:
                handler(self, s)

    def generic(self, node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.stmt):
                self.stmts((child,))
            elif type(child) not in _CONTEXT_TYPES:
                self.expr(child)

    def _expr_stmt(self, node: ast.Expr) -> None:
        self.expr(node.value)

    def _assign(self, node: ast.Assign) -> None:
        self.expr(node.value)
        for target in node.targets:
            self.target(target)

    def _aug_assign(self, node: ast.AugAssign) -> None:
        target = node.target
        if isinstance(target, ast.Name):
            self.load(target.id)
            self.expr(node.value)
            self.bind(target.id)
        else:
            chain = _chain(target)
            if chain is not None:
                self.ctx.attr_reads.add(chain)  # `settings.N += 1` reads it first
            self.target(target)
            self.expr(node.value)

    def _ann_assign(self, node: ast.AnnAssign) -> None:
        if node.value is not None:
            self.expr(node.value)
        self.expr(node.annotation)  # evaluated in module and class bodies
        if node.value is not None or not isinstance(node.target, ast.Name):
            # `x: int` alone binds nothing; `a.b: int` still evaluates `a`
            self.target(node.target)

    def _delete(self, node: ast.Delete) -> None:
        for target in node.targets:
            self._del_target(target)

    def _del_target(self, target: ast.expr) -> None:
        if isinstance(target, ast.Name):
            # Not a read: deleting does not observe the value.
            self.unbind(target.id)
        elif isinstance(target, (ast.Tuple, ast.List)):
            for elt in target.elts:
                self._del_target(elt)
        elif isinstance(target, ast.Subscript):
            self._subscript_effects(target, "del")
            self.expr(target.value)
            self.expr(target.slice)
        else:
            self.target(target)  # del a.b: a load of a, and a write of a.b

    def target(self, node: ast.expr) -> None:
        t = type(node)
        if t is ast.Name:
            self.bind(node.id)  # type: ignore[attr-defined]
        elif t is ast.Tuple or t is ast.List:
            for elt in node.elts:  # type: ignore[attr-defined]
                self.target(elt)
        elif t is ast.Starred:
            self.target(node.value)  # type: ignore[attr-defined]
        elif t is ast.Attribute:
            chain = _chain(node)
            if chain is None:
                self.expr(node.value)  # type: ignore[attr-defined]
            else:
                self.ctx.attr_writes.add(chain)
                self.load(chain[0])
        elif t is ast.Subscript:
            self._subscript_effects(node, "store")  # type: ignore[arg-type]
            self.expr(node.value)  # type: ignore[attr-defined]
            self.expr(node.slice)  # type: ignore[attr-defined]
        else:
            self.expr(node)

    def _subscript_effects(self, node: ast.Subscript, mode: str) -> None:
        """``os.environ["X"]`` and ``globals()["x"]``: an environment variable, or a name of the cell's namespace."""
        name = _literal(node.slice)
        if _is_environ(node.value):
            if name is not None:
                (self.ctx.env_reads if mode == "load" else self.ctx.env_writes).add(name)
            return
        if not _is_namespace(node.value, module_level=self.parent is None):
            return
        if name is None:
            self.ctx.dynamic = self.ctx.dynamic or _COMPUTED_NAME
        elif self.parent is not None:  # a class body's globals() is the module's
            if mode == "load":
                self.nested_load(name, True)
            elif mode == "store":
                self.ctx.write(name)
        elif mode == "load":
            self.load(name)
        elif mode == "store":
            self.bind(name)
        else:
            self.unbind(name)

    def _import(self, node: ast.Import | ast.ImportFrom) -> None:
        for name in _record_imports(self.ctx, node):
            self.bind(name)

    def _global(self, node: ast.Global) -> None:
        if self.parent is not None:  # a no-op at module level
            self.decl_global.update(self._mangle(n) for n in node.names)

    def _nonlocal(self, node: ast.Nonlocal) -> None:
        if self.parent is not None:
            self.decl_nonlocal.update(self._mangle(n) for n in node.names)

    def _terminate(self, node: ast.stmt) -> None:
        if isinstance(node, (ast.Return, ast.Raise)):
            self.generic(node)
        if isinstance(node, (ast.Break, ast.Continue)) and self.loops:
            breaks, continues = self.loops[-1]
            (breaks if isinstance(node, ast.Break) else continues).append(_copy(self.state))
        self.state = None

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.exprs(node.decorator_list)
        self._signature(node.args)
        if node.returns is not None:
            self.expr(node.returns)
        scope = _Scope.of_function(self.ctx, node)
        if node.decorator_list:
            # a decorator may call the function before its name is bound
            self._nested(scope)
            self.bind(node.name)
        else:
            # nothing can call it before the name exists, so a recursive
            # function does not read its own previous definition
            self.bind(node.name)
            self._nested(scope)

    def _signature(self, args: ast.arguments) -> None:
        self.exprs(args.defaults)
        self.exprs(d for d in args.kw_defaults if d is not None)
        self.exprs(_annotation_exprs(args))

    def _class(self, node: ast.ClassDef) -> None:
        self.exprs(node.decorator_list)
        self.exprs(node.bases)
        self.exprs(k.value for k in node.keywords)
        # The body (and anything it or a metaclass calls) runs before the
        # class name is bound, so the name is not bound for it.
        _Flow(self.ctx, parent=self.nested_load, class_name=node.name).run(node.body)
        self.bind(node.name)

    def _type_alias(self, node: ast.AST) -> None:
        self.bind(node.name.id)  # type: ignore[attr-defined]
        lazy = _Scope(self.ctx)
        lazy.bound.update(_type_params(node))
        lazy.visit(node.value)  # type: ignore[attr-defined]
        self._nested(lazy)

    def _if(self, node: ast.If) -> None:
        self.expr(node.test)
        entry = _copy(self.state)
        self.stmts(node.body)
        after_body = self.state
        self.state = entry
        self.stmts(node.orelse)
        self.state = _intersect((after_body, self.state))

    def _loop(self, node: ast.For | ast.AsyncFor | ast.While) -> None:
        is_for = not isinstance(node, ast.While)
        if is_for:
            self.expr(node.iter)  # type: ignore[union-attr]
        entry = _copy(self.state)
        start = entry
        mark = len(self.unbinds)
        while True:
            self.state = _copy(start)
            if not is_for:
                self.expr(node.test)  # type: ignore[union-attr]
            exit_state = None if not is_for and _is_truthy_constant(node.test) else _copy(self.state)  # type: ignore[union-attr]
            if is_for:
                self.target(node.target)  # type: ignore[union-attr]
            self.loops.append(([], []))
            self.stmts(node.body)
            breaks, _continues = self.loops.pop()
            # The first iteration reads pre-loop values of what the body binds
            # later; a second pass is needed only if the body unbinds a name
            # that was bound on entry (later iterations start without it).
            lost = set(self.unbinds[mark:])
            if start is not None and start & lost:
                start = start - lost
                continue
            break
        self.state = exit_state
        self.stmts(node.orelse)
        self.state = _intersect((self.state, *breaks))

    def _with(self, node: ast.With | ast.AsyncWith) -> None:
        after_first: _State = None
        for i, item in enumerate(node.items):
            self.expr(item.context_expr)
            if item.optional_vars is not None:
                self.target(item.optional_vars)
            if i == 0:
                after_first = _copy(self.state)
        mark = len(self.unbinds)
        self.stmts(node.body)
        if not all(_never_suppresses(item.context_expr) for item in node.items):
            # A swallowed exception resumes after the statement from any
            # point after the first __enter__.
            suppressed = _minus(after_first, set(self.unbinds[mark:]))
            self.state = _intersect((self.state, suppressed))

    def _try(self, node: ast.Try) -> None:
        entry = _copy(self.state)
        mark = len(self.unbinds)
        self.stmts(node.body)
        after_body = self.state
        # An exception may come from any point of the body; every state there
        # contains the entry state minus whatever the body unbinds.
        handler_start = _minus(entry, set(self.unbinds[mark:]))
        exits: list[_State] = []
        for handler in node.handlers:
            if _catches_name_error(handler):
                self.ctx.guarded = True
            self.state = _copy(handler_start)
            if handler.type is not None:
                self.expr(handler.type)
            if handler.name:
                # bound in the handler only; Python deletes it at its end,
                # and it is not a write (nor a `del` of the cell)
                if self.state is not None:
                    self.state.add(self._mangle(handler.name))
            self.stmts(handler.body)
            if handler.name:
                self.unbind(handler.name, is_del=False)
            exits.append(self.state)
        self.state = after_body
        self.stmts(node.orelse)
        exits.append(self.state)
        normal = _intersect(exits)
        if node.finalbody:
            # First pass for the loads: finally may start from any point.
            self.state = _minus(entry, set(self.unbinds[mark:]))
            self.stmts(node.finalbody)
            # Second pass for what is bound when the statement completes.
            self.state = normal
            self.stmts(node.finalbody)
        else:
            self.state = normal

    def _match(self, node: ast.Match) -> None:
        self.expr(node.subject)
        entry = _copy(self.state)
        exits: list[_State] = []
        exhaustive = False
        for case in node.cases:
            # Captures of a failed case may be half done: start each case
            # from the entry state.
            self.state = _copy(entry)
            self.pattern(case.pattern)
            if case.guard is not None:
                self.expr(case.guard)
            self.stmts(case.body)
            exits.append(self.state)
            if case.guard is None and _irrefutable(case.pattern):
                exhaustive = True
                break
        if not exhaustive:
            exits.append(entry)
        self.state = _intersect(exits)

    def pattern(self, node: ast.pattern) -> None:
        if isinstance(node, ast.MatchValue):
            self.expr(node.value)
        elif isinstance(node, ast.MatchSequence):
            for p in node.patterns:
                self.pattern(p)
        elif isinstance(node, ast.MatchMapping):
            self.exprs(node.keys)
            for p in node.patterns:
                self.pattern(p)
            if node.rest:
                self.bind(node.rest)
        elif isinstance(node, ast.MatchClass):
            self.expr(node.cls)
            for p in (*node.patterns, *node.kwd_patterns):
                self.pattern(p)
        elif isinstance(node, ast.MatchStar):
            if node.name:
                self.bind(node.name)
        elif isinstance(node, ast.MatchAs):
            if node.pattern is not None:
                self.pattern(node.pattern)
            if node.name:
                self.bind(node.name)
        elif isinstance(node, ast.MatchOr):
            # every alternative binds the same names
            for p in node.patterns:
                self.pattern(p)

    def _assert(self, node: ast.Assert) -> None:
        self.expr(node.test)
        if node.msg is not None:
            passed = _copy(self.state)
            self.expr(node.msg)  # only evaluated when the assertion fails
            self.state = passed

    # -- expressions -----------------------------------------------------------

    def exprs(self, nodes: Iterable[ast.expr]) -> None:
        for n in nodes:
            self.expr(n)

    def expr(self, node: ast.AST) -> None:
        t = type(node)
        if t is ast.Name:
            if type(node.ctx) is ast.Load:  # type: ignore[attr-defined]
                self.load(node.id)  # type: ignore[attr-defined]
            else:
                self.target(node)  # type: ignore[arg-type]
            return
        if t is ast.Constant:
            _note_string(self.ctx, node)  # type: ignore[arg-type]
            return
        handler = _FLOW_EXPR_HANDLERS.get(t)
        if handler is not None:
            handler(self, node)
            return
        for child in ast.iter_child_nodes(node):
            if type(child) not in _CONTEXT_TYPES:
                self.expr(child)

    def _named_expr(self, node: ast.NamedExpr) -> None:
        self.expr(node.value)
        self.bind(node.target.id)

    def _lambda(self, node: ast.Lambda) -> None:
        self._signature(node.args)
        self._nested(_Scope.of_function(self.ctx, node))

    def _comprehension(self, node: ast.expr) -> None:
        self.expr(node.generators[0].iter)  # type: ignore[attr-defined]
        self._nested(_Scope.of_comprehension(self.ctx, node, self._comp_walrus))

    def _if_exp(self, node: ast.IfExp) -> None:
        self.expr(node.test)
        entry = _copy(self.state)
        self.expr(node.body)
        after_body = self.state
        self.state = entry
        self.expr(node.orelse)
        self.state = _intersect((after_body, self.state))

    def _bool_op(self, node: ast.BoolOp) -> None:
        first, *rest = node.values
        self.expr(first)
        definite = _copy(self.state)
        # later operands run in sequence but may be short-circuited away
        self.exprs(rest)
        self.state = _intersect((definite, self.state))

    def _dict(self, node: ast.Dict) -> None:
        for key, value in zip(node.keys, node.values):
            if key is not None:
                self.expr(key)
            self.expr(value)

    def _call(self, node: ast.Call) -> None:
        magic = _magic_call(node)
        if magic is not None:
            self._magic(_magic_plan(*magic))
            return
        self.expr(node.func)
        self.exprs(node.args)
        for kw in node.keywords:
            self.expr(kw.value)
        _note_env_call(self.ctx, node)
        namespace = _namespace_call(node, module_level=self.parent is None)
        if namespace is not None:
            self._namespace_method(*namespace)
        code = _exec_call(node)
        if code is not None:
            self._inline(code)

    def _namespace_method(self, method: str, name: Optional[str]) -> None:
        self.ctx.guarded = True  # .get() / .pop() tell a missing name from a present one
        if name is None or method not in _NAMESPACE_READS:
            # globals().update(...), globals().items(), a computed name: nothing we can follow
            self.ctx.dynamic = self.ctx.dynamic or _COMPUTED_NAME
            return
        if self.parent is not None:
            self.nested_load(name, True)
        else:
            self.load(name)
        if method == "pop":
            self.unbind(name)
        elif method == "setdefault":
            self.ctx.write(name)  # may bind it: a write, not a definite binding

    def _attribute(self, node: ast.Attribute) -> None:
        chain = _chain(node)
        if chain is None:
            self.expr(node.value)
            return
        self.ctx.attr_reads.add(chain)
        self.load(chain[0])

    def _subscript(self, node: ast.Subscript) -> None:
        past = _out_index(node)
        if past is not None:
            self.load(past)
            return
        self._subscript_effects(node, "load")
        self.expr(node.value)
        self.expr(node.slice)

    def _compare(self, node: ast.Compare) -> None:
        _note_membership(self.ctx, node, self.load if self.parent is None else lambda n: self.nested_load(n, True), module_level=self.parent is None)
        self.expr(node.left)
        self.exprs(node.comparators)

    def _magic(self, plan: _MagicPlan) -> None:
        self.ctx.env_reads.update(plan.env_reads)
        self.ctx.env_writes.update(plan.env_writes)
        # var_expand runs before the magic sees its arguments
        self.exprs(plan.exprs)
        for name in plan.idents:
            self.load(name)
        if plan.inline:
            # A magic may swallow an exception of its code and let the cell go
            # on (%time in IPython 8, %%capture through run_cell, user
            # magics): like `try: code / except: pass`, what the code binds is
            # not bound for sure afterwards.
            entry = _copy(self.state)
            mark = len(self.unbinds)
            for stmts in plan.inline:
                self._inline(stmts)
            self.state = _intersect((self.state, _minus(entry, set(self.unbinds[mark:]))))
        if plan.private:
            self._nested(_Scope.of_body(self.ctx, plan.private))
        for name in plan.binds:
            self.bind(name)

    def _inline(self, stmts: list[ast.stmt]) -> None:
        # Code run in this namespace at this point. A stray break in it is a
        # compile error at run time, so it must not reach our loops.
        saved, self.loops = self.loops, []
        self.stmts(stmts)
        self.loops = saved


_FLOW_STMT_HANDLERS: dict[type, Callable[[_Flow, ast.AST], None]] = {
    ast.Expr: _Flow._expr_stmt,
    ast.Assign: _Flow._assign,
    ast.AugAssign: _Flow._aug_assign,
    ast.AnnAssign: _Flow._ann_assign,
    ast.Delete: _Flow._delete,
    ast.Import: _Flow._import,
    ast.ImportFrom: _Flow._import,
    ast.Global: _Flow._global,
    ast.Nonlocal: _Flow._nonlocal,
    ast.Return: _Flow._terminate,
    ast.Raise: _Flow._terminate,
    ast.Break: _Flow._terminate,
    ast.Continue: _Flow._terminate,
    ast.FunctionDef: _Flow._function,
    ast.AsyncFunctionDef: _Flow._function,
    ast.ClassDef: _Flow._class,
    ast.If: _Flow._if,
    ast.For: _Flow._loop,
    ast.AsyncFor: _Flow._loop,
    ast.While: _Flow._loop,
    ast.With: _Flow._with,
    ast.AsyncWith: _Flow._with,
    ast.Try: _Flow._try,
    ast.Match: _Flow._match,
    ast.Assert: _Flow._assert,
}  # type: ignore[dict-item]
if hasattr(ast, "TryStar"):
    _FLOW_STMT_HANDLERS[ast.TryStar] = _Flow._try  # type: ignore[attr-defined]
if hasattr(ast, "TypeAlias"):
    _FLOW_STMT_HANDLERS[ast.TypeAlias] = _Flow._type_alias  # type: ignore[attr-defined]

_FLOW_EXPR_HANDLERS: dict[type, Callable[[_Flow, ast.AST], None]] = {
    ast.NamedExpr: _Flow._named_expr,
    ast.Lambda: _Flow._lambda,
    ast.ListComp: _Flow._comprehension,
    ast.SetComp: _Flow._comprehension,
    ast.GeneratorExp: _Flow._comprehension,
    ast.DictComp: _Flow._comprehension,
    ast.IfExp: _Flow._if_exp,
    ast.BoolOp: _Flow._bool_op,
    ast.Dict: _Flow._dict,
    ast.Call: _Flow._call,
    ast.Attribute: _Flow._attribute,
    ast.Subscript: _Flow._subscript,
    ast.Compare: _Flow._compare,
}  # type: ignore[dict-item]
