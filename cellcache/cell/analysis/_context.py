"""What every namespace and scope of one cell shares: the results, and the syntax helpers they read nodes with."""
from __future__ import annotations

import ast
from typing import Any, Callable, Iterable, Optional

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
        "env_reads", "env_writes", "strings", "dynamic", "guarded", "namespace", "settled",
    )  # fmt: skip

    def __init__(self, namespace: Callable[..., Any]) -> None:
        # The walker of namespaces that run in order (``_Flow``): a function's class bodies and
        # exec'd code are such namespaces, and scopes reach the walker through here.
        self.namespace = namespace
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
        # The names bound for sure at every point where the cell may run code of anyone's (a call,
        # an operator, an attribute): None until the first such point.
        self.settled: _State = None

    def active(self, state: _State) -> None:
        """The cell's module namespace is in ``state`` at a point where code beyond the cell's may run."""
        if state is not None:  # an unreachable point runs nothing
            self.settled = set(state) if self.settled is None else self.settled & state

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


