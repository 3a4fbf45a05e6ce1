"""Namespaces that run in order: the module, class bodies and code run by magics."""
from __future__ import annotations

import ast
from typing import Callable, Iterable, Optional

from cellcache.cell.analysis._context import _COMPUTED_NAME, _Context, _NAMESPACE_READS, _Resolver, _State, _annotation_exprs, _catches_name_error, _chain, _copy, _intersect, _irrefutable, _is_environ, _is_namespace, _is_truthy_constant, _literal, _minus, _namespace_call, _never_suppresses, _note_env_call, _note_membership, _note_string, _out_index, _record_imports, _type_params
from cellcache.cell.analysis._magics import _MagicPlan, _exec_call, _magic_call, _magic_plan
from cellcache.cell.analysis._scope import _CONTEXT_TYPES, _Scope

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
            if _runs_code(s):
                self.active()
            handler = _FLOW_STMT_HANDLERS.get(type(s))
            if handler is None:
                self.generic(s)
            else:
                handler(self, s)

    def active(self) -> None:
        """Code beyond the cell's own bindings may run here: a helper it calls sees what is bound now."""
        if self.parent is None:  # a class body runs at its statement, which marked the module's state
            self.ctx.active(self.state)

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
        if t not in _INERT_EXPRS or ((t is ast.Set or t is ast.Dict) and not _inert_display(node)):
            self.active()
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


# Expressions whose evaluation runs nothing but the interpreter: a load from the namespace, a
# constant, a display of such values, a function object made. Anything else may run code that is
# not the cell's (a call, an operator, an attribute or a subscript through a user's class, a
# truth test, an f-string's __format__, iteration) and so may call a helper that reads a global.
_INERT_EXPRS = frozenset({ast.Name, ast.Constant, ast.Tuple, ast.List, ast.Set, ast.Dict, ast.Lambda, ast.NamedExpr})


def _inert_display(node: ast.AST) -> bool:
    # Set elements and dict keys are hashed, and a user's __hash__ is code: constants only.
    # A None key is `**mapping`, which iterates it.
    keys = node.elts if isinstance(node, ast.Set) else node.keys  # type: ignore[attr-defined]
    return all(isinstance(key, ast.Constant) for key in keys)


def _runs_code(stmt: ast.stmt) -> bool:
    """Whether a statement itself (beyond the expressions it evaluates) may run code that is not the cell's.

    An import counts as inert: a module's own code never calls back into the
    notebook's functions. Binding a plain name, or deleting one, is the
    interpreter's.
    """
    if isinstance(stmt, ast.Assign):
        return not all(isinstance(target, ast.Name) for target in stmt.targets)  # unpacking iterates; a.b, a[i] call
    if isinstance(stmt, ast.AnnAssign):
        return not isinstance(stmt.target, ast.Name)
    if isinstance(stmt, ast.Delete):
        return not all(isinstance(target, ast.Name) for target in stmt.targets)
    if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return bool(stmt.decorator_list)
    return not isinstance(stmt, _INERT_STMTS)


_INERT_STMTS = (ast.Import, ast.ImportFrom, ast.Global, ast.Nonlocal, ast.Pass, ast.Break, ast.Continue, ast.Try, *((ast.TryStar,) if hasattr(ast, "TryStar") else ()), *((ast.TypeAlias,) if hasattr(ast, "TypeAlias") else ()))
