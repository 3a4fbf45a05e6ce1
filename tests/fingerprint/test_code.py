"""Functions, code and classes (fingerprint/code.py)."""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from cellcache.fingerprint.code import CodeKinds
import cellcache.fingerprint.modules as fingerprint_modules
from cellcache.fingerprint import describe, fingerprint

from tests.fingerprint.helpers import all_distinct, define


# --------------------------------------------------------------------------
# Functions


def test_function_body_change() -> None:
    one = define("def f(x):\n    return x + 1\n")["f"]
    again = define("def f(x):\n    return x + 1\n")["f"]
    two = define("def f(x):\n    return x + 2\n")["f"]
    renamed_arg = define("def f(y):\n    return y + 1\n")["f"]
    assert fingerprint(one) == fingerprint(again)
    assert all_distinct([one, two, renamed_arg])
    assert describe(one) == "function f"


def test_function_moved_lines_only_is_equal() -> None:
    one = define("def f(x):\n    return x + 1\n")["f"]
    moved = define("\n\n\n# a comment\ndef f(x):\n    return x + 1\n")["f"]
    assert fingerprint(one) == fingerprint(moved)


def test_function_defaults_and_kwdefaults() -> None:
    assert all_distinct(
        [
            define("def f(x, k=1):\n    return x + k\n")["f"],
            define("def f(x, k=2):\n    return x + k\n")["f"],
            define("def f(x, *, k=1):\n    return x + k\n")["f"],
            define("def f(x, *, k=2):\n    return x + k\n")["f"],
        ]
    )


def test_function_closure_values() -> None:
    ns = define(
        """
        def make(k):
            def f(x):
                return x + k
            return f
        """
    )
    assert fingerprint(ns["make"](1)) == fingerprint(ns["make"](1))
    assert fingerprint(ns["make"](1)) != fingerprint(ns["make"](2))
    assert fingerprint(ns["make"]({"a"})) != fingerprint(ns["make"]({"b"}))


def test_lambdas() -> None:
    assert fingerprint(lambda x: x + 1) == fingerprint(lambda x: x + 1)
    assert fingerprint(lambda x: x + 1) != fingerprint(lambda x: x - 1)
    # Fresh lambdas reuse ids all the time: nothing may be cached by id across calls.
    digests = {fingerprint(eval(f"lambda: {i}")) for i in range(200)}
    assert len(digests) == 200


def test_changed_global_helper_transitively() -> None:
    source = """
        SCALE = {scale}
        def inner(x):
            return x * SCALE
        def helper(x):
            return inner(x) + 1
        def f(x):
            return helper(x)
        """
    base = define(source.format(scale=2))["f"]
    assert fingerprint(base) == fingerprint(define(source.format(scale=2))["f"])
    assert fingerprint(base) != fingerprint(define(source.format(scale=3))["f"])
    changed_inner = define(source.format(scale=2).replace("x * SCALE", "x * SCALE * 1"))["f"]
    assert fingerprint(base) != fingerprint(changed_inner)


def test_globals_a_caller_binds_first_are_not_keyed() -> None:
    source = """
        SCALE = {scale}
        def inner(x):
            return x * SCALE
        def f(x):
            return inner(x)
        """
    two, three = define(source.format(scale=2)), define(source.format(scale=3))
    bound = frozenset({"SCALE"})
    assert fingerprint(two["f"], (two, bound)) == fingerprint(three["f"], (three, bound))
    del three["SCALE"]  # absent, as before a cell's first run binds it
    assert fingerprint(two["f"], (two, bound)) == fingerprint(three["f"], (three, bound))
    # only the functions of that namespace: another one's SCALE is its own
    assert fingerprint(two["f"], (two, bound)) != fingerprint(two["f"])
    assert fingerprint(two["f"], ({}, bound)) == fingerprint(two["f"])
    edited = define(source.format(scale=2).replace("x * SCALE", "x * SCALE * 1"))
    assert fingerprint(two["f"], (two, bound)) != fingerprint(edited["f"], (edited, bound))


def test_helper_used_in_nested_code_counts() -> None:
    source = """
        def helper(x):
            return x + {n}
        def f(xs):
            return [helper(x) for x in xs]  # a comprehension: nested code
        """
    assert fingerprint(define(source.format(n=1))["f"]) != fingerprint(define(source.format(n=2))["f"])


def test_attribute_names_are_not_globals() -> None:
    source = """
        data = {value!r}
        class Box:
            def get(self):
                return self.data
        """
    one, two = define(source.format(value=1)), define(source.format(value=2))
    assert fingerprint(one["Box"]) == fingerprint(two["Box"])
    # ...but a real global read counts.
    source = "data = {value!r}\ndef get():\n    return data\n"
    assert fingerprint(define(source.format(value=1))["get"]) != fingerprint(define(source.format(value=2))["get"])


def test_recursion_terminates_and_is_deterministic() -> None:
    source = """
        def fact(n):
            return 1 if n <= 1 else n * fact(n - 1)
        def even(n):
            return n == 0 or odd(n - 1)
        def odd(n):
            return n != 0 and even(n - {step})
        """
    one, two, other = define(source.format(step=1)), define(source.format(step=1)), define(source.format(step=2))
    assert fingerprint(one["fact"]) == fingerprint(two["fact"])
    assert fingerprint(one["even"]) == fingerprint(two["even"])
    assert fingerprint([one["even"], one["odd"]]) == fingerprint([two["even"], two["odd"]])
    assert fingerprint(one["even"]) != fingerprint(other["even"])
    assert fingerprint(one["even"]) != fingerprint(one["odd"])


def test_interlinked_classes_are_hashed_once_each(monkeypatch: pytest.MonkeyPatch) -> None:
    # Every class's methods refer to every class: walking paths instead of
    # nodes would take factorial time.
    count = 12
    source = "".join(
        f"class C{i}:\n    k = {i}\n    def m(self):\n        return {' + '.join(f'C{j}.k' for j in range(count))}\n"
        for i in range(count)
    )
    calls: list[str] = []
    original = CodeKinds._class_local

    def counting(run: Any, cls: type) -> bytes:
        calls.append(cls.__name__)
        return original(run, cls)

    monkeypatch.setattr(CodeKinds, "_class_local", counting)
    one, two = define(source), define(source)
    assert fingerprint(one["C0"]) == fingerprint(two["C0"])
    assert sorted(calls) == sorted([f"C{i}" for i in range(count)] * 2)
    edited = define(source.replace("k = 7", "k = 70"))
    assert fingerprint(one["C0"]) != fingerprint(edited["C0"])
    assert fingerprint(one["C3"]) != fingerprint(one["C0"])


def test_digest_does_not_depend_on_visit_order() -> None:
    source = """
        def even(n):
            return n == 0 or odd(n - 1)
        def odd(n):
            return n != 0 and even(n - 1)
        """
    one, two = define(source), define(source)
    # Sets of functions iterate in id (address) order, which differs.
    assert fingerprint({one["even"], one["odd"]}) == fingerprint({two["odd"], two["even"]})
    assert fingerprint([one["even"], one["odd"]]) == fingerprint([two["even"], two["odd"]])
    assert fingerprint([one["even"], one["odd"]]) != fingerprint([two["odd"], two["even"]])


def test_graph_of_objects_with_neighbour_sets() -> None:
    def build(label: str) -> Any:
        ns = define("class Node:\n    def __init__(self, name):\n        self.name = name\n        self.peers = set()\n")
        a, b, c = ns["Node"]("a"), ns["Node"]("b"), ns["Node"](label)
        a.peers.update({b, c})
        b.peers.add(a)
        c.peers.update({a, b})
        return a

    assert fingerprint(build("c")) == fingerprint(build("c"))
    assert fingerprint(build("c")) != fingerprint(build("d"))


def test_change_far_along_a_cycle() -> None:
    # f0 -> f1 -> ... -> f5 -> f0: an edit in f5 must reach f0's digest.
    source = "".join(f"def f{i}(n):\n    return f{(i + 1) % 6}(n - 1) if n else {i}\n" for i in range(6))
    one, two = define(source), define(source)
    edited = define(source.replace("else 5", "else 55"))
    assert fingerprint(one["f0"]) == fingerprint(two["f0"])
    assert fingerprint(one["f0"]) != fingerprint(edited["f0"])
    assert fingerprint(one["f0"]) != fingerprint(one["f1"])


def test_recursive_closure() -> None:
    ns = define(
        """
        def outer(k):
            def walk(n):
                return k if n == 0 else walk(n - 1)
            return walk
        """
    )
    assert fingerprint(ns["outer"](1)) == fingerprint(ns["outer"](1))
    assert fingerprint(ns["outer"](1)) != fingerprint(ns["outer"](2))


def test_bytecode_specialization_does_not_change_digest() -> None:
    f = define("def f(x):\n    return x.real + len([x]) + abs(x)\n")["f"]
    before = fingerprint(f)
    for i in range(2000):
        f(i)
    assert fingerprint(f) == before


def test_frozenset_constants_in_code_are_canonical() -> None:
    source = "def f(x):\n    return x in {values}\n"
    names = [f"n{i}" for i in range(30)]
    one = define(source.format(values="{" + ", ".join(map(repr, names)) + "}"))["f"]
    two = define(source.format(values="{" + ", ".join(map(repr, reversed(names))) + "}"))["f"]
    assert fingerprint(one) == fingerprint(two)


def test_installed_functions_are_keyed_by_version(monkeypatch: pytest.MonkeyPatch) -> None:
    before = fingerprint(np.mean)
    assert fingerprint(np.mean) != fingerprint(np.median)
    monkeypatch.setattr(fingerprint_modules, "module_version", lambda name: "numpy==0.0.0")
    assert fingerprint(np.mean) != before


def test_functions_reading_modules() -> None:
    ns = define("import numpy as np\ndef f(x):\n    return np.sum(x)\n")
    assert fingerprint(ns["f"]) == fingerprint(define("import numpy as np\ndef f(x):\n    return np.sum(x)\n")["f"])
    assert fingerprint(ns["f"]) != fingerprint(define("import math as np\ndef f(x):\n    return np.sum(x)\n")["f"])


def test_partial_and_bound_methods() -> None:
    import functools

    ns = define(
        """
        def add(a, b):
            return a + b
        class Counter:
            def __init__(self, n):
                self.n = n
            def step(self):
                return self.n + 1
        """
    )
    assert fingerprint(functools.partial(ns["add"], 1)) != fingerprint(functools.partial(ns["add"], 2))
    assert fingerprint(ns["Counter"](1).step) != fingerprint(ns["Counter"](2).step)
    assert fingerprint(ns["Counter"](1).step) == fingerprint(ns["Counter"](1).step)


# --------------------------------------------------------------------------
# Classes and instances


POINT = """
class Point:
    dims = 2
    def __init__(self, x, y):
        self.x, self.y = x, y
    def norm(self):
        return abs(self.x) + abs(self.y){extra}
"""


def test_class_method_edit_changes_instance_digest() -> None:
    one = define(POINT.format(extra=""))["Point"]
    two = define(POINT.format(extra=""))["Point"]
    edited = define(POINT.format(extra=" + 0"))["Point"]
    assert fingerprint(one(1, 2)) == fingerprint(two(1, 2))
    assert fingerprint(one(1, 2)) != fingerprint(one(1, 3))
    assert fingerprint(one(1, 2)) != fingerprint(edited(1, 2))
    assert fingerprint(one) != fingerprint(edited)
    assert describe(one) == "class Point"


def test_class_attribute_and_base_changes() -> None:
    base = define(POINT.format(extra=""))
    attribute = define(POINT.format(extra="").replace("dims = 2", "dims = 3"))
    assert fingerprint(base["Point"]) != fingerprint(attribute["Point"])
    sub1 = define(POINT.format(extra="") + "class P3(Point):\n    pass\n")["P3"]
    sub2 = define(POINT.format(extra=" + 1") + "class P3(Point):\n    pass\n")["P3"]
    assert fingerprint(sub1) != fingerprint(sub2)


def test_descriptors_in_classes() -> None:
    source = """
        import functools
        class C:
            __slots__ = ("a", "__dict__")
            @staticmethod
            def s():
                return {n}
            @classmethod
            def c(cls):
                return cls
            @property
            def p(self):
                return 1
            @functools.cached_property
            def cp(self):
                return 2
        """
    assert fingerprint(define(source.format(n=1))["C"]) == fingerprint(define(source.format(n=1))["C"])
    assert fingerprint(define(source.format(n=1))["C"]) != fingerprint(define(source.format(n=2))["C"])
    assert fingerprint(define(source.format(n=1).replace("return 1", "return 3"))["C"]) != fingerprint(
        define(source.format(n=1))["C"]
    )


def test_dataclasses_enums_and_abcs() -> None:
    source = """
        import abc, dataclasses, enum
        @dataclasses.dataclass
        class Config:
            lr: float = {lr}
            tags: list = dataclasses.field(default_factory=list)
        class Mode(enum.Enum):
            FAST = 1
            SLOW = 2
        class Base(abc.ABC):
            @abc.abstractmethod
            def run(self): ...
        class Impl(Base):
            def run(self):
                return Mode.FAST
        """
    one, two, other = define(source.format(lr=0.1)), define(source.format(lr=0.1)), define(source.format(lr=0.2))
    for name in ("Config", "Mode", "Impl"):
        assert fingerprint(one[name]) == fingerprint(two[name]), name
    assert fingerprint(one["Config"]()) == fingerprint(two["Config"]())
    assert fingerprint(one["Config"]()) != fingerprint(other["Config"]())
    assert fingerprint(one["Mode"].FAST) != fingerprint(one["Mode"].SLOW)
    assert fingerprint(one["Impl"]()) == fingerprint(two["Impl"]())


def test_class_digest_does_not_depend_on_history() -> None:
    # Pickling an instance makes copyreg cache __slotnames__ in the class dict.
    ns = define("class S:\n    __slots__ = ('a',)\n    def __init__(self):\n        self.a = 1\n")
    fresh = define("class S:\n    __slots__ = ('a',)\n    def __init__(self):\n        self.a = 1\n")
    fingerprint(ns["S"]())
    assert fingerprint(ns["S"]) == fingerprint(fresh["S"])


def test_installed_classes_are_keyed_by_version(monkeypatch: pytest.MonkeyPatch) -> None:
    before = fingerprint(pd.DataFrame)
    monkeypatch.setattr(fingerprint_modules, "module_version", lambda name: "pandas==0.0.0")
    assert fingerprint(pd.DataFrame) != before


# --------------------------------------------------------------------------
# Wrappers are keyed by what they wrap


WRAPPED = {
    "lru_cache": "import functools\n@functools.lru_cache(maxsize=8)\ndef f(x):\n    return x + {n}\n",
    "cache": "import functools\n@functools.cache\ndef f(x):\n    return x + {n}\n",
    "wraps": (
        "import functools\ndef deco(fn):\n    @functools.wraps(fn)\n    def inner(*a):\n        return fn(*a)\n"
        "    return inner\n@deco\ndef f(x):\n    return x + {n}\n"
    ),
    "partial": "import functools\ndef g(x, y):\n    return x + y * {n}\nf = functools.partial(g, 1)\n",
    "cached_property": "import functools\nclass C:\n    @functools.cached_property\n    def v(self):\n        return {n}\nf = C()\n",
    "property": "class C:\n    @property\n    def v(self):\n        return {n}\nf = C()\n",
}


@pytest.mark.parametrize("kind", sorted(WRAPPED))
def test_wrappers_are_keyed_by_the_code_they_wrap(kind: str) -> None:
    source = WRAPPED[kind]
    one, same, two = (define(source.format(n=n))["f"] for n in (1, 1, 2))
    assert fingerprint(one) == fingerprint(same)  # a re-run of the defining cell
    assert fingerprint(one) != fingerprint(two)  # an edit of the wrapped code


def test_lru_cache_size_counts_and_its_cache_content_does_not() -> None:
    small = define(WRAPPED["lru_cache"].format(n=1))["f"]
    big = define(WRAPPED["lru_cache"].format(n=1).replace("maxsize=8", "maxsize=9"))["f"]
    assert fingerprint(small) != fingerprint(big)
    before = fingerprint(small)
    small(3)
    assert fingerprint(small) == before


def test_installed_lru_cache_function_is_keyed_by_version() -> None:
    import functools

    wrapped = functools.lru_cache(maxsize=None)(np.mean)
    assert fingerprint(wrapped) == fingerprint(functools.lru_cache(maxsize=None)(np.mean))
    assert fingerprint(wrapped) != fingerprint(functools.lru_cache(maxsize=None)(np.median))
