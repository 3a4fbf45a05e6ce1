"""Magics in transformed source: which run Python in the user namespace, and what they read."""
from __future__ import annotations

import ast
import keyword
import re
import string
from typing import Optional

import functools
from dataclasses import dataclass, field

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


