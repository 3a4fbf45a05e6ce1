"""Tests for cellcache.cell.analysis: which names a cell reads, writes, deletes.

A missing read is a stale cache hit, so most cases pin the exact read set:
an implementation that reads too little fails them, and so does one that
reads everything.
"""
from __future__ import annotations

import ast
import sys
import textwrap
from pathlib import Path

import pytest
from IPython.core.inputtransformer2 import TransformerManager

from cellcache.cell import analysis
from cellcache.cell.analysis import CellNames, analyze

_TRANSFORMER = TransformerManager()


def ipy(source: str) -> str:
    """Transform IPython syntax the way the shell does before we see it."""
    return _TRANSFORMER.transform_cell(textwrap.dedent(source))


def names(source: str) -> CellNames:
    return analyze(textwrap.dedent(source))


# (id, source, exact reads, exact writes)
FLOW_CASES = [
    # straight-line code
    ("bound-then-load", "x = 1\ny = x", set(), {"x", "y"}),
    ("load-then-bound", "y = x\nx = 1", {"x"}, {"x", "y"}),
    ("self-referencing-assign", "x = x + 1", {"x"}, {"x"}),
    ("chained-assign", "a = b = c\nd = a + b", {"c"}, {"a", "b", "d"}),
    ("unpacking", "a, (b, *c) = t\nprint(a, b, c)", {"t", "print"}, {"a", "b", "c"}),
    ("attr-and-subscript-targets-load", "d.e = v\nf[g] = 2", {"d", "f", "g", "v"}, set()),
    ("builtins-are-reads", "n = len(xs)\nprint(n)", {"len", "xs", "print"}, {"n"}),
    ("dunders-hidden", "print(__name__, __builtins__)", {"print"}, set()),
    # if / elif / else
    ("if-one-branch", "if c:\n    x = 1\ny = x", {"c", "x"}, {"x", "y"}),
    ("if-both-branches", "if c:\n    x = 1\nelse:\n    x = 2\ny = x", {"c"}, {"x", "y"}),
    ("elif-without-else", "if c:\n    x = 1\nelif d:\n    x = 2\ny = x", {"c", "d", "x"}, {"x", "y"}),
    ("elif-with-else", "if c:\n    x = 1\nelif d:\n    x = 2\nelse:\n    x = 3\ny = x", {"c", "d"}, {"x", "y"}),
    ("branch-ending-in-raise", "if c:\n    x = 1\nelse:\n    raise E\ny = x", {"c", "E"}, {"x", "y"}),
    ("if-exp", "x = 1 if c else 2\ny = x", {"c"}, {"x", "y"}),
    ("if-exp-walrus-one-side", "y = (a := 1) if c else 2\nz = a", {"c", "a"}, {"a", "y", "z"}),
    # boolean short-circuit
    ("boolop-later-walrus-not-definite", "ok = (n := f()) and (m := g())\nprint(n, m)", {"f", "g", "print", "m"}, {"ok", "n", "m"}),
    ("boolop-walrus-then-load-in-chain", "ok = (n := f()) and n > 1", {"f"}, {"ok", "n"}),
    # for loops
    ("for-accumulate-reads-initial", "for i in r:\n    total = total + i", {"r", "total"}, {"i", "total"}),
    ("for-accumulate-initialized", "total = 0\nfor i in r:\n    total = total + i", {"r"}, {"i", "total"}),
    ("for-aug-assign", "for i in r:\n    total += i", {"r", "total"}, {"i", "total"}),
    ("for-body-binding-not-definite", "for i in r:\n    y = i\nprint(y, i)", {"r", "print", "y", "i"}, {"i", "y"}),
    ("for-body-binding-used-in-body", "for i in r:\n    y = i\n    print(y)", {"r", "print"}, {"i", "y"}),
    ("for-else-no-break", "for i in r:\n    pass\nelse:\n    z = 1\nprint(z)", {"r", "print"}, {"i", "z"}),
    ("for-else-with-break", "for i in r:\n    if i:\n        break\nelse:\n    z = 1\nprint(z)", {"r", "print", "z"}, {"i", "z"}),
    ("for-del-then-load-next-iteration", "x = 0\nfor i in r:\n    print(x)\n    del x", {"r", "print", "x"}, {"x", "i"}),
    ("for-attr-target", "for o.v in r:\n    pass", {"o", "r"}, set()),
    # while loops
    ("while-condition-read", "while n > 0:\n    n -= 1", {"n"}, {"n"}),
    ("while-body-not-definite", "while c:\n    y = 1\nprint(y)", {"c", "print", "y"}, {"y"}),
    ("while-true-break", "while True:\n    x = f()\n    if x:\n        break\nprint(x)", {"f", "print"}, {"x"}),
    ("while-true-break-before-bind", "while True:\n    if g():\n        break\n    x = f()\nprint(x)", {"f", "g", "print", "x"}, {"x"}),
    ("while-walrus-condition", "while (line := read()):\n    pass\nprint(line)", {"read", "print"}, {"line"}),
    ("continue-skips-rest", "for i in r:\n    if i:\n        continue\n    w = i\nprint(w)", {"r", "print", "w"}, {"i", "w"}),
    # try
    ("try-binding-may-fail", "try:\n    x = f()\nexcept E:\n    pass\nprint(x)", {"f", "E", "print", "x"}, {"x"}),
    ("try-both-paths-bind", "try:\n    x = f()\nexcept E:\n    x = None\nprint(x)", {"f", "E", "print"}, {"x"}),
    ("try-handler-reraises", "try:\n    x = f()\nexcept E:\n    raise\nprint(x)", {"f", "E", "print"}, {"x"}),
    ("handler-sees-partial-body", "try:\n    a = 1\n    b = g(a)\nexcept E:\n    print(a)", {"g", "E", "print", "a"}, {"a", "b"}),
    ("handler-after-del-in-body", "x = 1\ntry:\n    del x\n    f()\nexcept E:\n    print(x)", {"f", "E", "print", "x"}, {"x"}),
    ("try-else", "try:\n    f()\nexcept E:\n    y = 0\nelse:\n    y = 1\nprint(y)", {"f", "E", "print"}, {"y"}),
    ("finally-may-start-early", "try:\n    x = f()\nfinally:\n    print(x)", {"f", "print", "x"}, {"x"}),
    ("after-try-finally", "try:\n    x = f()\nfinally:\n    done()\nprint(x)", {"f", "done", "print"}, {"x"}),
    ("finally-binding-definite", "try:\n    f()\nfinally:\n    z = 1\nprint(z)", {"f", "print"}, {"z"}),
    ("except-as-not-write", "try:\n    f()\nexcept E as err:\n    log(err)", {"f", "E", "log"}, set()),
    ("except-as-unbound-after", "try:\n    f()\nexcept E as e:\n    msg = str(e)\nprint(e)", {"f", "E", "str", "print", "e"}, {"msg"}),
    # with
    ("with-as-definite", "with cm() as c:\n    pass\nprint(c)", {"cm", "print"}, {"c"}),
    ("with-open-body-definite", "with open(p) as fh:\n    data = fh.read()\nprint(data)", {"open", "p", "print"}, {"fh", "data"}),
    ("with-suppress-body-not-definite", "with suppress(KeyError):\n    v = d['k']\nprint(v)", {"suppress", "KeyError", "d", "print", "v"}, {"v"}),
    ("with-unknown-cm-body-not-definite", "with lock:\n    v = 1\nprint(v)", {"lock", "print", "v"}, {"v"}),
    ("with-second-item-not-definite", "with cm() as a, open(p) as b:\n    pass\nprint(a, b)", {"cm", "open", "p", "print", "b"}, {"a", "b"}),
    # match
    (
        "match-patterns",
        """\
        match cmd:
            case Color.RED:
                x = 1
            case [a, *rest]:
                x = a
            case {"k": v, **kw}:
                x = v
            case Point(x=px, y=0) if px > lim:
                x = px
            case _:
                x = 0
        print(x)
        """,
        {"cmd", "Color", "Point", "lim", "print"},
        {"x", "a", "rest", "v", "kw", "px"},
    ),
    ("match-not-exhaustive", "match cmd:\n    case 1:\n        y = 1\nprint(y)", {"cmd", "print", "y"}, {"y"}),
    ("match-capture-only-in-case", "match p:\n    case (a, b):\n        pass\nprint(a)", {"p", "print", "a"}, {"a", "b"}),
    ("match-irrefutable-capture", "match p:\n    case q:\n        pass\nprint(q)", {"p", "print"}, {"q"}),
    ("match-guarded-capture-not-exhaustive", "match p:\n    case q if q:\n        r = 1\nprint(r)", {"p", "print", "r"}, {"q", "r"}),
    ("match-or-pattern", "match p:\n    case [a] | (a, _):\n        print(a)", {"p", "print"}, {"a"}),
    # walrus
    ("walrus-in-if", "if (n := len(a)) > 10:\n    print(n)\nm = n", {"len", "a", "print"}, {"n", "m"}),
    ("walrus-in-comprehension-writes", "ys = [y := f(x) for x in xs]\nprint(y)", {"f", "xs", "print", "y"}, {"ys", "y"}),
    ("walrus-in-comprehension-bound-before", "total = 0\nvals = [total := total + v for v in vs]", {"vs"}, {"total", "vals"}),
    # comprehensions
    ("comprehension-free-names", "sq = [x * k for x in xs if x > lo]", {"xs", "k", "lo"}, {"sq"}),
    ("comprehension-target-not-leaked", "sq = [x for x in xs]\nprint(x)", {"xs", "print", "x"}, {"sq"}),
    ("comprehension-sees-bound", "k = 2\nsq = [x * k for x in xs]", {"xs"}, {"k", "sq"}),
    ("comprehension-before-binding", "sq = [x * k for x in xs]\nk = 2", {"xs", "k"}, {"k", "sq"}),
    ("nested-comprehension", "pairs = {a: [b for b in bs[a]] for a in keys}", {"bs", "keys"}, {"pairs"}),
    ("generator-first-iterable", "g = (v * w for v in data)", {"data", "w"}, {"g"}),
    # functions
    ("def-free-names", "def f(a, *args, b=1, **kw):\n    c = a + b + len(args) + g(kw)\n    return c + k", {"len", "g", "k"}, {"f"}),
    ("def-free-bound-before", "k = 2\ndef f():\n    return k", set(), {"k", "f"}),
    ("def-free-bound-after", "def f():\n    return k\nk = 2", {"k"}, {"k", "f"}),
    ("def-free-bound-in-branch", "if c:\n    k = 2\ndef f():\n    return k", {"c", "k"}, {"k", "f"}),
    ("def-local-shadows", "def f():\n    x = 1\n    return x", set(), {"f"}),
    ("def-local-used-before-assignment", "def f():\n    print(x)\n    x = 1", {"print"}, {"f"}),
    ("def-defaults-and-annotations", "def f(a: T = d, *, b: U = e, **kw: V) -> R:\n    pass", {"T", "d", "U", "e", "V", "R"}, {"f"}),
    ("def-default-bound-before", "d = 1\ndef f(a=d):\n    return a", set(), {"d", "f"}),
    ("decorator", "@register(name)\ndef f():\n    pass", {"register", "name"}, {"f"}),
    ("recursion-undecorated", "def fact(n):\n    return 1 if n < 2 else n * fact(n - 1)", set(), {"fact"}),
    ("recursion-decorated", "@memo\ndef fib(n):\n    return fib(n - 1)", {"memo", "fib"}, {"fib"}),
    ("async-def", "async def fetch(u):\n    return await client.get(u)", {"client"}, {"fetch"}),
    ("lambda", "h = lambda a, b=dflt: a + b + z", {"dflt", "z"}, {"h"}),
    ("lambda-in-call-after-binding", "z = 1\nh = sorted(xs, key=lambda v: v - z)", {"sorted", "xs"}, {"z", "h"}),
    ("closure", "def outer():\n    v = 1\n    def inner():\n        return v + w\n    return inner", {"w"}, {"outer"}),
    ("nonlocal", "def outer():\n    v = 0\n    def inner():\n        nonlocal v\n        v += 1\n    return inner", set(), {"outer"}),
    ("global-skips-enclosing-local", "def outer():\n    x = 1\n    def inner():\n        global x\n        return x\n    return inner", {"x"}, {"outer"}),
    ("global-aug-assign", "def inc():\n    global counter\n    counter += 1", {"counter"}, {"inc", "counter"}),
    ("global-assign-is-write", "def setup():\n    global cfg\n    cfg = load()", {"load"}, {"setup", "cfg"}),
    ("global-write-from-nested", "def a():\n    def b():\n        global deep\n        deep = 1", set(), {"a", "deep"}),
    ("local-annotation-is-local", "def f():\n    x: int\n    return x", {"int"}, {"f"}),
    ("comprehension-in-function", "def f(xs):\n    return [x + off for x in xs]", {"off"}, {"f"}),
    ("walrus-in-comprehension-in-function", "def f(xs):\n    [t := x for x in xs]\n    return t", set(), {"f"}),
    ("module-level-global-ignored", "global g\ng = 1\nh = g", set(), {"g", "h"}),
    # classes
    (
        "class-body-vs-method",
        """\
        class A(Base, metaclass=Meta):
            X = 1
            Y = X + Z
            def m(self):
                return X + Y
        """,
        {"Base", "Meta", "Z", "X", "Y"},
        {"A"},
    ),
    ("method-sees-module-binding", "X = 1\nclass A:\n    def m(self):\n        return X", set(), {"X", "A"}),
    ("class-body-flow", "class A:\n    if c:\n        X = 1\n    Y = X", {"c", "X"}, {"A"}),
    ("class-body-default-sees-class-name", "class A:\n    X = 1\n    def m(self, a=X):\n        return a", set(), {"A"}),
    ("class-comprehension-scoping", "class A:\n    N = 3\n    sq = [i * N for i in range(N)]", {"range", "N"}, {"A"}),
    ("class-decorator-and-annotation", "@dataclass\nclass P:\n    x: int = 0", {"dataclass", "int"}, {"P"}),
    ("class-name-in-own-method", "class Node:\n    def clone(self):\n        return Node()", {"Node"}, {"Node"}),
    ("class-private-name-mangling", "class A:\n    def m(self):\n        return __secret", {"_A__secret"}, {"A"}),
    ("class-in-function-body-flow", "def f():\n    class A:\n        y = x\n        x = 1\n    return A", {"x"}, {"f"}),
    ("class-global-declaration", "class A:\n    global g\n    g = 1", set(), {"A", "g"}),
    # augmented / annotated
    ("aug-assign-unbound", "x += 1", {"x"}, {"x"}),
    ("aug-assign-bound", "x = 0\nx += 1", set(), {"x"}),
    ("aug-assign-attr", "a.b += 1", {"a"}, set()),
    ("aug-assign-subscript", "a[i] += 1", {"a", "i"}, set()),
    ("annotation-without-value-binds-nothing", "x: int\ny = x", {"int", "x"}, {"y"}),
    ("annotation-with-value", "x: int = 5\ny = x", {"int"}, {"x", "y"}),
    # imports
    ("imports-bind", "import os.path\nimport numpy as np\nfrom pandas.io import sql as s\nos.sep, np, s", set(), {"os", "np", "s"}),
    ("star-import-binds-nothing", "from m import *\nprint(x)", {"print", "x"}, set()),
    ("import-in-function-is-local", "def f():\n    import json\n    return json.dumps(v)", {"v"}, {"f"}),
    # del
    ("del-then-load", "x = 1\ndel x\nprint(x)", {"print", "x"}, {"x"}),
    ("del-subscript-and-attr", "del a[i], b.c", {"a", "i", "b"}, set()),
    ("del-is-not-a-read", "del x", set(), set()),
    # exec / eval of literal code
    ("exec-literal", "exec('y = x')\nz = y", {"exec", "x"}, {"y", "z"}),
]


@pytest.mark.parametrize(
    ("source", "reads", "writes"),
    [pytest.param(src, r, w, id=case_id) for case_id, src, r, w in FLOW_CASES],
)
def test_reads_and_writes(source: str, reads: set[str], writes: set[str]) -> None:
    result = names(source)
    assert result.reads == reads
    assert result.writes == writes


def test_result_type() -> None:
    result = analyze("import a\nb = c\ndel d")
    assert isinstance(result, CellNames)
    for value in (result.reads, result.writes, result.deletes, result.imports):
        assert isinstance(value, frozenset)
    with pytest.raises(AttributeError):
        result.reads = frozenset()  # type: ignore[misc]


# (id, source, exact deletes)
DELETE_CASES = [
    ("del-bound", "x = 1\ndel x", {"x"}),
    ("del-then-rebind", "del x\nx = 2", set()),
    ("del-then-rebind-in-branch", "del x\nif c:\n    x = 1", set()),
    ("del-in-branch", "if c:\n    del x", {"x"}),
    ("del-tuple", "del (p, q)", {"p", "q"}),
    ("del-subscript-not-delete", "del a[0]\ndel b.c", set()),
    ("rebind-then-del", "x = 1\ndel x\nx = 2\ndel x", {"x"}),
    ("del-in-class-body-not-module", "class A:\n    t = 1\n    del t", set()),
    ("del-in-function-not-module", "def f():\n    v = 1\n    del v", set()),
    ("except-as-is-not-a-del", "try:\n    f()\nexcept E as e:\n    pass", set()),
    ("del-then-import", "del np\nimport numpy as np", set()),
]


@pytest.mark.parametrize(("source", "deletes"), [pytest.param(s, d, id=i) for i, s, d in DELETE_CASES])
def test_deletes(source: str, deletes: set[str]) -> None:
    assert names(source).deletes == deletes


def test_del_then_rebind_is_still_a_write() -> None:
    result = names("del x\nx = 2\ny = x")
    assert result.writes == {"x", "y"}
    assert result.reads == set()


# (id, source, exact imports)
IMPORT_CASES = [
    ("dotted", "import os.path", {"os"}),
    ("aliased", "import numpy.linalg as la", {"numpy"}),
    ("several", "import a, b.c", {"a", "b"}),
    ("from-dotted", "from x.y import z", {"x"}),
    ("relative-ignored", "from . import sib\nfrom .pkg import thing\nfrom ..up import w", set()),
    ("star", "from m import *", {"m"}),
    ("inside-function", "def f():\n    import json", {"json"}),
    ("inside-magic", "get_ipython().run_line_magic('time', 'import scipy')", {"scipy"}),
]


@pytest.mark.parametrize(("source", "imports"), [pytest.param(s, m, id=i) for i, s, m in IMPORT_CASES])
def test_imports(source: str, imports: set[str]) -> None:
    assert names(source).imports == imports


def test_relative_import_still_binds() -> None:
    assert names("from .pkg import thing as t\nfrom . import sib").writes == {"t", "sib"}


# IPython syntax, transformed by IPython itself: (id, cell, exact reads, exact writes)
MAGIC_CASES = [
    ("time-line", "%time x = f(y)", {"f", "y"}, {"x"}),
    ("time-after-binding", "y = 1\n%time x = f(y)", {"f"}, {"x", "y"}),
    # %time (IPython 8) and %%capture swallow errors: the binding may not happen
    ("time-binding-not-definite", "%time x = f()\nz = x", {"f", "x"}, {"x", "z"}),
    ("time-binding-seen-inside-magic", "%%time\nx = f()\nz = x", {"f"}, {"x", "z"}),
    ("timeit-options", "%timeit -n 10 f(x)", {"f", "x"}, set()),
    ("timeit-several-options", "%timeit -r 3 -n 10 -q g(x)", {"g", "x"}, set()),
    ("timeit-bindings-private", "%timeit y = g(x)\nz = y", {"g", "x", "y"}, {"z"}),
    ("timeit-result-assigned", "t = %timeit -o f(x)", {"f", "x"}, {"t"}),
    ("cell-timeit-setup-and-body", "%%timeit -n 5 s = prep(a)\nrun(s, b)", {"prep", "a", "run", "b"}, set()),
    ("cell-time", "%%time\nx = f(y)\n", {"f", "y"}, {"x"}),
    ("cell-capture", "%%capture out\nprint(a)\nb = 1", {"print", "a"}, {"out", "b"}),
    ("cell-capture-options", "%%capture --no-stderr cap\nc = 1", set(), {"cap", "c"}),
    ("system-dollar", "!ls $path", {"path"}, set()),
    ("system-double-dollar-escaped", "!echo $$HOME", set(), set()),
    ("system-braces", "!ls {base / sub}", {"base", "sub"}, set()),
    ("system-braces-bound", "base = '.'\n!ls {base}", set(), {"base"}),
    ("getoutput", "files = !ls {pattern} $where", {"pattern", "where"}, {"files"}),
    ("braces-with-comprehension", "!echo {[v for v in vals]}", {"vals"}, set()),
    ("braces-with-conversion", "!echo {obj!r}", {"obj"}, set()),
    ("line-magic-dollar", "%cd $target", {"target"}, set()),
    ("env-not-code", "%env FOO=bar", set(), set()),
    ("writefile-not-code", "%%writefile mod.py\ndef helper():\n    return thing\n", set(), set()),
    ("pip-expansion", "%pip install {pkg}", {"pkg"}, set()),
    ("help-syntax", "len?", {"len"}, set()),
]


@pytest.mark.parametrize(
    ("cell", "reads", "writes"),
    [pytest.param(c, r, w, id=i) for i, c, r, w in MAGIC_CASES],
)
def test_magics(cell: str, reads: set[str], writes: set[str]) -> None:
    source = ipy(cell)
    assert "get_ipython()" in source  # the case really exercises a transformed magic
    result = analyze(source)
    assert result.reads == reads
    assert result.writes == writes
    assert "get_ipython" not in result.reads | result.writes


def test_magic_arguments_that_are_not_code_are_ignored() -> None:
    result = analyze(ipy("%matplotlib inline\n%load_ext autoreload\n%config A.b = 1\nx = 1"))
    assert result.writes == {"x"}


def test_unparsable_python_magic_reads_every_identifier() -> None:
    # %%capture runs its body as a cell, with IPython syntax we cannot parse
    source = "get_ipython().run_cell_magic('capture', '', '%matplotlib inline\\nplot(data)\\n')\n"
    result = analyze(source)
    assert {"plot", "data"} <= result.reads
    assert result.writes == set()


def test_unparsable_other_magic_is_ignored() -> None:
    result = analyze("get_ipython().run_line_magic('pip', 'install -U numpy')\n")
    assert result == CellNames(frozenset(), frozenset(), frozenset(), frozenset())


def test_magic_in_function_uses_function_scope() -> None:
    assert names(ipy("def f(v):\n    !echo $v $w\n")).reads == {"w"}
    assert names("def f():\n    get_ipython().run_line_magic('time', 'g(v)')\n").reads == {"g", "v"}
    # what the magic binds stays in its own namespace, not the function's
    src = "def f():\n    get_ipython().run_line_magic('time', 'q = 1')\n    return q\n"
    assert names(src).reads == {"q"}


def test_magic_in_loop_body() -> None:
    result = analyze(ipy("for i in r:\n    %time acc = step(acc, i)\n"))
    assert result.reads == {"r", "step", "acc"}
    assert result.writes == {"i", "acc"}


def test_syntax_error_propagates() -> None:
    with pytest.raises(SyntaxError):
        analyze("x = (")
    with pytest.raises(SyntaxError):  # and it is not cached as a success
        analyze("x = (")


def test_second_analysis_is_a_cache_hit() -> None:
    cell = "\n".join(
        [
            "import numpy as np",
            "import pandas as pd",
            "df = pd.read_csv(path)",
            "df = df[df.value > threshold]",
            "totals = {}",
            "for key, group in df.groupby('key'):",
            "    totals[key] = group.value.sum()",
            "    if totals[key] > limit:",
            "        flagged = key",
            "",
            "def score(row, weight=w0):",
            "    return row.value * weight + bias",
            "",
            "df['score'] = df.apply(score, axis=1)",
            "best = max(totals, key=totals.get)",
            "try:",
            "    ratio = totals[best] / norm",
            "except ZeroDivisionError:",
            "    ratio = float('nan')",
            "with open(out_path, 'w') as fh:",
            "    fh.write(str(ratio))",
            "class Summary:",
            "    n = len(df)",
            "    def describe(self):",
            "        return f'{self.n} rows, best {best}'",
            "summary = Summary()",
            "matrix = np.array([[r.value for r in rows] for rows in chunks])",
            "labels = [lbl for lbl in df.key.unique() if lbl not in skip]",
            "print(summary.describe(), flagged)",
            "del matrix",
        ]
    )
    info = analysis._analyze_cached.cache_info()
    first = analyze(cell)
    after_first = analysis._analyze_cached.cache_info()
    second = analyze(cell)
    after_second = analysis._analyze_cached.cache_info()
    assert after_first.misses == info.misses + 1
    assert after_second.hits == after_first.hits + 1
    assert after_second.misses == after_first.misses
    assert second is first
    # and the analysis itself is right about this cell
    assert first.reads == {
        "path", "threshold", "limit", "w0", "bias", "max", "norm", "ZeroDivisionError",
        "float", "open", "out_path", "str", "len", "chunks", "skip", "print", "flagged",
    }  # fmt: skip
    assert first.deletes == {"matrix"}
    assert first.imports == {"numpy", "pandas"}


def test_module_is_pure() -> None:
    """The analysis imports the standard library and its own modules only (never IPython)."""
    imported = set()
    for path in Path(analysis.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                imported.add(node.module)
    assert "ast" in imported
    own = {m for m in imported if m.startswith("cellcache.")}
    assert all(m.startswith("cellcache.cell.analysis.") for m in own), own
    assert {m.partition(".")[0] for m in imported - own} <= set(sys.stdlib_module_names) | {"__future__"}


# --------------------------------------------------------------------------
# deep nesting (a valid cell must never fail because of the analysis)


def _elif_chain(branches: int) -> str:
    return "if x == 0:\n    y = 0\n" + "".join(f"elif x == {i}:\n    y = {i}\n" for i in range(1, branches)) + "else:\n    y = -1\n"


def test_deep_elif_chain_is_analysed() -> None:
    found = names(_elif_chain(500))
    assert found.reads == {"x"} and found.writes == {"y"}
    assert sys.getrecursionlimit() < 50_000  # the lifted limit does not leak out of the walk


def test_deep_elif_chain_is_cached_in_a_shell(shell) -> None:
    import cellcache
    from tests.conftest import run

    shell.user_ns["x"] = 499
    cell = "%%cached deep\n" + _elif_chain(500)
    run(shell, cell)
    assert shell.user_ns["y"] == 499 and cellcache.last_run().status == "miss"
    run(shell, cell)
    assert cellcache.last_run().hit
    shell.user_ns["x"] = 3
    run(shell, cell)
    assert shell.user_ns["y"] == 3 and not cellcache.last_run().hit


def test_code_beyond_the_analysis_runs_uncached_with_a_warning(shell, monkeypatch: pytest.MonkeyPatch) -> None:
    import cellcache
    from cellcache.errors import CacheWarning
    from tests.conftest import run

    # A limit the analysis cannot lift stands for code nested deeper than any limit.
    monkeypatch.setattr(sys, "setrecursionlimit", lambda n: None)
    shell.user_ns["x"] = 7
    with pytest.warns(CacheWarning, match="nested too deeply"):
        run(shell, "%%cached too_deep\n" + _elif_chain(800))
    assert shell.user_ns["y"] == 7 and cellcache.last_run().status == "uncached"


@pytest.mark.parametrize(
    ("source", "prebound"),
    [
        ("z = 5\nout = g()", {"z"}),
        ("import numpy as np\nz = 5\nout = g()", {"np", "z"}),
        ("z = 5\nfor i in range(3):\n    out = g()", {"z"}),
        ("z: int = 5\nout = g()", {"z"}),
        ("def f():\n    return 1\nz = 5\nout = g()", {"f", "z"}),
        ("z = 5", {"z"}),  # nothing runs but the shell's display at the end
        ("out = g()\nz = 5", set()),
        ("z = f()\nout = g()", set()),  # f runs before z is bound
        ("if c:\n    z = 5\nout = g()", set()),
        ("for i in range(3):\n    out = g()\n    z = i", set()),
        ("try:\n    z = 5\nexcept Exception:\n    pass\nout = g()", set()),
        ("z = 5\ndel z\nout = g()", set()),
        ("z = 5\nout = g()\ndel z", set()),
        ("@d\ndef f():\n    pass\nz = 5\nout = g()", set()),
        ("x, z = 1, 2\nout = g()", set()),  # unpacking iterates
        ("print(z)\nz = 5\nout = g()", set()),
        ("z = 5\nclass C:\n    y = g()", {"z"}),
        ("class C:\n    y = g()\nz = 5", set()),
        ("a.b = 1\nz = 5", set()),
        ("s = {k}\nz = 5", set()),  # hashing a set element is code
        ("[(z := 5) for _ in range(1)]\nout = g()", set()),
        ("z = 5\nwhile z:\n    z = 0", {"z"}),
    ],
)
def test_prebound(source: str, prebound: set[str]) -> None:
    # Names bound for sure at every point where the cell may run code that is not its own bindings.
    assert analyze(source).prebound == prebound
