"""Free names of function-like scopes: def, lambda, comprehension."""
from __future__ import annotations

import ast
from typing import Callable, Iterable, Optional

from cellcache.cell.analysis._context import _COMPUTED_NAME, _Context, _NAMESPACE_READS, _annotation_exprs, _catches_name_error, _chain, _is_environ, _is_namespace, _literal, _namespace_call, _note_env_call, _note_membership, _note_string, _out_index, _param_names, _record_imports, _type_params
from cellcache.cell.analysis._magics import _MagicPlan, _exec_call, _magic_call, _magic_plan

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
        self.ctx.namespace(self.ctx, parent=self.resolve, class_name=node.name).run(node.body)

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
            self.ctx.namespace(self.ctx, parent=self.resolve).run(code)
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
            self.ctx.namespace(self.ctx, parent=self.resolve).run(stmts)
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


