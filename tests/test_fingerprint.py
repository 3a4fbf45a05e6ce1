from __future__ import annotations

import dataclasses
import enum
import importlib
import json
import os
import pickle
import socket
import subprocess
import sys
import textwrap
import threading
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import cellcache.fingerprint as fp
from cellcache.errors import Unfingerprintable
from cellcache.fingerprint import (
    DIGEST_SIZE,
    describe,
    fingerprint,
    is_local_module_file,
    module_digest,
    module_version,
)


def define(source: str) -> dict[str, Any]:
    """Run source as notebook code: a fresh namespace whose functions and classes live in __main__."""
    namespace: dict[str, Any] = {"__name__": "__main__"}
    # dont_inherit: this test module's `from __future__ import annotations`
    # would otherwise set a flag in the code objects that a script lacks.
    exec(compile(textwrap.dedent(source), "<cell>", "exec", dont_inherit=True), namespace)
    return namespace


def all_distinct(values: list[object]) -> bool:
    digests = [fingerprint(value) for value in values]
    return len(set(digests)) == len(digests)


# --------------------------------------------------------------------------
# Scalars, containers, tags


def test_digest_is_16_bytes_and_stable() -> None:
    value = {"a": [1, 2.5, None, "x", b"y", (3, 4j)]}
    digest = fingerprint(value)
    assert isinstance(digest, bytes) and len(digest) == DIGEST_SIZE == 16
    assert fingerprint(value) == digest
    assert fingerprint({"a": [1, 2.5, None, "x", b"y", (3, 4j)]}) == digest


def test_type_tags() -> None:
    assert all_distinct([1, 1.0, True, "1", b"1", [1], (1,), {1}, frozenset({1}), {1: 1}, 1 + 0j, None, bytearray(b"1")])
    assert all_distinct([0, False, 0.0, -0.0, "", b"", [], (), set(), frozenset(), {}])
    assert fingerprint([1, 2]) != fingerprint((1, 2))
    assert fingerprint([[1], [2]]) != fingerprint([(1,), (2,)])


def test_scalar_values() -> None:
    assert all_distinct([1, 2, -1, 2**200, -(2**200), 255, 256, -256])
    assert all_distinct(["a", "b", "ab", "a\x00", "\udc80", "é"])
    assert fingerprint(10**5000) == fingerprint(10**5000)  # beyond int->str digit limits
    assert fingerprint(float("nan")) == fingerprint(float("nan"))


def test_container_changes() -> None:
    base = {"a": [1, 2, {"b": (3, 4)}], "c": "d"}
    assert fingerprint(base) != fingerprint({"a": [1, 2, {"b": (3, 5)}], "c": "d"})
    assert fingerprint(base) != fingerprint({"a": [1, 2, {"b": (3, 4)}], "c": "e"})
    # Insertion order is part of a dict's value here (documented, accepted).
    assert fingerprint({"x": 1, "y": 2}) != fingerprint({"y": 2, "x": 1})


def test_subclasses_of_builtins_differ_from_builtins() -> None:
    class Color(enum.IntEnum):
        RED = 1

    assert fingerprint(Color.RED) != fingerprint(1)
    assert fingerprint(pd.Timestamp("2020-01-01")) != fingerprint("2020-01-01")


def test_cyclic_containers_terminate() -> None:
    loop: list[Any] = [1]
    loop.append(loop)
    assert fingerprint(loop) == fingerprint(loop)
    other: list[Any] = [2]
    other.append(other)
    assert fingerprint(loop) != fingerprint(other)


# --------------------------------------------------------------------------
# Sets


def test_sets_are_canonical() -> None:
    assert fingerprint({"a", "b"}) == fingerprint({"b", "a"})
    assert fingerprint({"a", "b"}) != fingerprint({"a", "c"})
    assert fingerprint({"a", "b"}) != fingerprint(frozenset({"a", "b"}))
    # Same set, different histories (and so different iteration orders).
    names = [f"k{i}" for i in range(100)]
    grown = set(names)
    shrunk = set(names + [f"x{i}" for i in range(1000)])
    for i in range(1000):
        shrunk.discard(f"x{i}")
    assert list(grown) != list(shrunk)
    assert fingerprint(grown) == fingerprint(shrunk)


def test_sets_nested_everywhere() -> None:
    names = [f"name{i}" for i in range(200)]
    forward = {"k": {"inner": set(names)}, "f": [frozenset(names)], "t": ({1, 2},)}
    backward = {"k": {"inner": set(reversed(names))}, "f": [frozenset(reversed(names))], "t": ({2, 1},)}
    assert fingerprint(forward) == fingerprint(backward)
    backward["k"]["inner"].add("extra")
    assert fingerprint(forward) != fingerprint(backward)


def test_set_subclass_and_objects_holding_sets() -> None:
    ns = define(
        """
        class Tags(set):
            pass
        class Holder:
            def __init__(self, items):
                self.items = set(items)
        """
    )
    assert fingerprint(ns["Tags"](["a", "b"])) == fingerprint(ns["Tags"](["b", "a"]))
    assert fingerprint(ns["Tags"](["a", "b"])) != fingerprint({"a", "b"})
    assert fingerprint(ns["Holder"]("xyz")) == fingerprint(ns["Holder"]("zyx"))
    assert fingerprint(ns["Holder"]("xyz")) != fingerprint(ns["Holder"]("xyw"))


def test_cycle_through_a_set_terminates() -> None:
    ns = define(
        """
        class Node:
            pass
        """
    )
    node = ns["Node"]()
    node.peers = {node}  # hashable by identity; the set contains its owner
    assert fingerprint(node) == fingerprint(node)


# --------------------------------------------------------------------------
# Numpy


def test_big_array_one_element_change() -> None:
    array = np.arange(4_000_000, dtype=np.float64)
    before = fingerprint(array)
    array[2_345_678] += 1e-9
    assert fingerprint(array) != before
    assert describe(array) == "ndarray float64 (4000000,)"


def test_array_view_equals_copy() -> None:
    array = np.arange(1000, dtype=np.int64)
    view = array[::3]
    assert not view.flags.c_contiguous
    assert fingerprint(view) == fingerprint(view.copy())
    assert fingerprint(array[::-1]) == fingerprint(array[::-1].copy())
    assert fingerprint(view) != fingerprint(array[::2])


def test_transposed_array() -> None:
    array = np.arange(12.0).reshape(3, 4)
    transposed = array.T
    assert transposed.flags.f_contiguous and not transposed.flags.c_contiguous
    assert fingerprint(transposed) == fingerprint(np.ascontiguousarray(transposed))
    assert fingerprint(transposed) != fingerprint(array)
    assert fingerprint(array.reshape(4, 3)) != fingerprint(array)  # same bytes, other shape


def test_strided_chunks_equal_contiguous_copy(monkeypatch: pytest.MonkeyPatch) -> None:
    # Tiny chunks exercise the bounded-copy paths (rows, and rows of rows).
    monkeypatch.setattr(fp, "_CHUNK_BYTES", 64)
    array = np.arange(4 * 50 * 7, dtype=np.float64).reshape(4, 50, 7)
    for view in (array.T, array[:, ::2], array[::-1, :, 1], array.transpose(1, 0, 2)):
        assert fingerprint(view) == fingerprint(np.ascontiguousarray(view))
    changed = array.copy()
    changed[3, 49, 6] = -1
    assert fingerprint(changed.T) != fingerprint(array.T)


def test_array_dtypes() -> None:
    values = [1, 2, 3]
    assert fingerprint(np.array(values, dtype=np.int32)) != fingerprint(np.array(values, dtype=np.int64))
    assert fingerprint(np.array(values, dtype="<i8")) != fingerprint(np.array(values, dtype=">i8"))
    dates = np.array(["2020-01-01", "2021-01-01"], dtype="datetime64[ns]")
    assert fingerprint(dates) == fingerprint(dates.copy())
    assert fingerprint(dates) != fingerprint(dates.astype("datetime64[s]"))
    assert fingerprint(np.array(["ab", "c"])) != fingerprint(np.array(["ab", "d"]))


def test_structured_dtype_names_count() -> None:
    a = np.zeros(3, dtype=[("x", "<i4"), ("y", "<f8")])
    b = np.zeros(3, dtype=[("x", "<i4"), ("z", "<f8")])
    assert fingerprint(a) != fingerprint(b)
    assert fingerprint(a) == fingerprint(a.copy())


def test_object_and_string_dtype_arrays() -> None:
    a = np.array(["x", {"k": 1}, None], dtype=object)
    assert fingerprint(a) == fingerprint(a.copy())
    b = a.copy()
    b[1] = {"k": 2}
    assert fingerprint(a) != fingerprint(b)
    # numpy's StringDType buffer holds pointers: it must be hashed by value.
    s1 = np.array(["a" * 40, "b"], dtype=np.dtypes.StringDType())
    s2 = np.array(["a" * 40, "b"], dtype=np.dtypes.StringDType())
    assert fingerprint(s1) == fingerprint(s2)
    s2[0] = "c" * 40
    assert fingerprint(s1) != fingerprint(s2)


def test_arrays_nested_in_containers() -> None:
    array = np.arange(12.0).reshape(3, 4)
    assert fingerprint({"a": array.T}) == fingerprint({"a": np.ascontiguousarray(array.T)})
    changed = array.copy()
    changed[0, 0] = 99
    assert fingerprint([array]) != fingerprint([changed])
    assert fingerprint([array]) != fingerprint(array)
    assert fingerprint([np.float64(1.5)]) != fingerprint([1.5])


def test_out_of_band_buffers(tmp_path: Path) -> None:
    # A PickleBuffer, and an ndarray subclass (numpy hands its buffer out of band).
    assert fingerprint([pickle.PickleBuffer(b"abc")]) != fingerprint([pickle.PickleBuffer(b"abd")])
    path = tmp_path / "m.dat"
    mapped = np.memmap(path, dtype=np.float64, mode="w+", shape=(1000,))
    mapped[:] = np.arange(1000)
    before = fingerprint(mapped)
    assert fingerprint(mapped) == before
    mapped[500] = -1
    assert fingerprint(mapped) != before
    del mapped


# --------------------------------------------------------------------------
# pandas


def make_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "name": pd.Series([f"user_{i}" for i in range(50)], dtype=object),
            "count": np.arange(50, dtype=np.int64),
            "value": np.linspace(0, 1, 50),
            "flag": np.arange(50) % 2 == 0,
            "when": pd.date_range("2020-01-01", periods=50, freq="D"),
        },
        index=pd.RangeIndex(100, 150),
    )


def test_dataframe_equal_copies() -> None:
    frame = make_frame()
    assert fingerprint(frame) == fingerprint(frame.copy())
    assert fingerprint(frame) == fingerprint(make_frame())
    assert describe(frame) == "DataFrame 50x5"


@pytest.mark.parametrize(
    "change",
    [
        "cell_int",
        "cell_float",
        "cell_str",
        "cell_bool",
        "cell_date",
        "column_name",
        "column_order",
        "index",
        "index_type",
        "dtype",
        "attrs",
    ],
)
def test_dataframe_changes(change: str) -> None:
    frame = make_frame()
    other = frame.copy()
    if change == "cell_int":
        other.loc[120, "count"] = -1
    elif change == "cell_float":
        other.loc[149, "value"] = 0.5
    elif change == "cell_str":
        other.loc[100, "name"] = "someone"
    elif change == "cell_bool":
        other.loc[101, "flag"] = True
    elif change == "cell_date":
        other.loc[101, "when"] = pd.Timestamp("1999-01-01")
    elif change == "column_name":
        other = other.rename(columns={"value": "values"})
    elif change == "column_order":
        other = other[["count", "name", "value", "flag", "when"]]
    elif change == "index":
        other.index = pd.RangeIndex(101, 151)
    elif change == "index_type":
        other.index = pd.Index(list(range(100, 150)), dtype=np.int64)
    elif change == "dtype":
        other["count"] = other["count"].astype(np.int32)
    elif change == "attrs":
        other.attrs["source"] = "x"
    assert fingerprint(frame) != fingerprint(other)


def test_object_string_columns() -> None:
    strings = [f"s{i}" for i in range(3000)]
    obj = pd.DataFrame({"s": pd.Series(strings, dtype=object)})
    assert fingerprint(obj) == fingerprint(pd.DataFrame({"s": pd.Series(list(strings), dtype=object)}))
    changed = list(strings)
    changed[2999] = "s2999!"
    assert fingerprint(obj) != fingerprint(pd.DataFrame({"s": pd.Series(changed, dtype=object)}))
    # pandas' own string dtype holds the same values but is another dtype.
    assert fingerprint(obj) != fingerprint(pd.DataFrame({"s": pd.Series(strings, dtype="str")}))
    # Missing values are not strings.
    with_none = pd.DataFrame({"s": pd.Series(["a", None], dtype=object)})
    with_text = pd.DataFrame({"s": pd.Series(["a", "None"], dtype=object)})
    with_nan = pd.DataFrame({"s": pd.Series(["a", float("nan")], dtype=object)})
    assert all_distinct([with_none, with_text, with_nan])


def test_object_columns_with_containers_take_the_general_path() -> None:
    frame = pd.DataFrame({"o": pd.Series([[1, 2], {"a"}, "x"], dtype=object)})
    same = pd.DataFrame({"o": pd.Series([[1, 2], {"a"}, "x"], dtype=object)})
    other = pd.DataFrame({"o": pd.Series([[1, 3], {"a"}, "x"], dtype=object)})
    assert fingerprint(frame) == fingerprint(same)
    assert fingerprint(frame) != fingerprint(other)


def test_pandas_string_dtype() -> None:
    series = pd.Series(["a", "b", None], dtype="str")
    assert fingerprint(series) == fingerprint(series.copy())
    assert fingerprint(series) != fingerprint(pd.Series(["a", "c", None], dtype="str"))
    assert fingerprint(series) != fingerprint(pd.Series(["a", "b", None], dtype=pd.StringDtype(na_value=pd.NA)))


def test_extension_arrays() -> None:
    cat = pd.Series(pd.Categorical(["a", "b", "a"]))
    assert fingerprint(cat) == fingerprint(cat.copy())
    assert fingerprint(cat) != fingerprint(pd.Series(pd.Categorical(["a", "b", "b"])))
    # Same codes, other categories.
    assert fingerprint(cat) != fingerprint(pd.Series(pd.Categorical(["a", "c", "a"])))
    assert fingerprint(cat) != fingerprint(pd.Series(pd.Categorical(["a", "b", "a"], ordered=True)))

    ints = pd.Series([1, None, 3], dtype="Int64")
    assert fingerprint(ints) == fingerprint(pd.Series([1, None, 3], dtype="Int64"))
    assert fingerprint(ints) != fingerprint(pd.Series([1, 0, 3], dtype="Int64"))
    assert fingerprint(ints) != fingerprint(pd.Series([1, None, 3], dtype="Float64"))
    # What lies under the mask does not count.
    assert fingerprint(pd.Series([5, None], dtype="Int64") + 1) == fingerprint(pd.Series([6, None], dtype="Int64"))

    utc = pd.Series(pd.date_range("2020-01-01", periods=3, tz="UTC"))
    assert fingerprint(utc) == fingerprint(utc.copy())
    assert fingerprint(utc) != fingerprint(utc.dt.tz_convert("Europe/Paris"))

    periods = pd.Series(pd.period_range("2020-01", periods=3, freq="M"))
    assert fingerprint(periods) != fingerprint(pd.Series(pd.period_range("2020-02", periods=3, freq="M")))

    intervals = pd.Series(pd.interval_range(0, 3))
    assert fingerprint(intervals) != fingerprint(pd.Series(pd.interval_range(0, 3, closed="left")))


def test_series_and_index() -> None:
    series = pd.Series([1.0, 2.0], index=["a", "b"], name="s")
    assert fingerprint(series) == fingerprint(series.copy())
    assert fingerprint(series) != fingerprint(series.rename("t"))
    assert fingerprint(series) != fingerprint(pd.Series([1.0, 2.0], index=["a", "c"], name="s"))
    assert fingerprint(series) != fingerprint(series.to_frame())
    assert describe(series) == "Series float64 len 2"

    multi = pd.MultiIndex.from_tuples([("a", 1), ("b", 2)], names=["k", "n"])
    assert fingerprint(multi) == fingerprint(multi.copy())
    assert fingerprint(multi) != fingerprint(pd.MultiIndex.from_tuples([("a", 1), ("b", 3)], names=["k", "n"]))
    assert fingerprint(multi) != fingerprint(multi.set_names(["k", "m"]))
    days = pd.date_range("2020-01-01", periods=3, freq="D")
    assert fingerprint(days) != fingerprint(pd.DatetimeIndex(list(days), freq=None))


def test_pandas_nested_in_containers() -> None:
    frame = make_frame()
    other = frame.copy()
    other.iloc[0, 1] = 12345
    assert fingerprint({"df": frame}) == fingerprint({"df": frame.copy()})
    assert fingerprint({"df": frame}) != fingerprint({"df": other})


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
    original = fp._Run._class_local

    def counting(run: Any, cls: type) -> bytes:
        calls.append(cls.__name__)
        return original(run, cls)

    monkeypatch.setattr(fp._Run, "_class_local", counting)
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
    monkeypatch.setattr(fp, "module_version", lambda name: "numpy==0.0.0")
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
    monkeypatch.setattr(fp, "module_version", lambda name: "pandas==0.0.0")
    assert fingerprint(pd.DataFrame) != before


# --------------------------------------------------------------------------
# Determinism across processes and PYTHONHASHSEED


SCRIPT = """
import numpy as np
import pandas as pd

SCALE = 3

def helper(x):
    return x * SCALE

def f(x, k=2):
    return helper(x) + k + len({"alpha", "beta"})

def even(n):
    return n == 0 or odd(n - 1)

def odd(n):
    return n != 0 and even(n - 1)

class Point:
    kinds = {"a", "b", "c"}
    def __init__(self, x, y):
        self.x, self.y = x, y
        self.tags = {"t1", "t2", "t3"}
    def norm(self):
        return abs(self.x) + abs(helper(self.y))

VALUES = {
    "strings": {"alpha", "beta", "gamma", "delta", "epsilon"},
    "nested": {"k": frozenset({"x", "y", "z"}), "l": [{"p", "q"}, ("r", {"s", "t"})]},
    "dict": {"a": 1, "b": [2.5, None, "c"], "d": {"e": b"f"}},
    "function": f,
    "lambda": lambda s: s.upper() in {"A", "B"},
    "class": Point,
    "instance": Point(1, 2),
    "frame": pd.DataFrame(
        {
            "s": pd.Series(["u%d" % i for i in range(100)], dtype=object),
            "t": pd.Series(["v%d" % i for i in range(100)], dtype="str"),
            "n": np.arange(100),
            "c": pd.Categorical(["a", "b"] * 50),
        }
    ),
    "array": np.arange(10.0).reshape(2, 5).T,
    "recursive_set": {even, odd},
}
"""


def digests_of(namespace: dict[str, Any]) -> dict[str, str]:
    return {name: fingerprint(value).hex() for name, value in namespace["VALUES"].items()}


def test_deterministic_across_hash_seeds(tmp_path: Path) -> None:
    script = tmp_path / "values.py"
    script.write_text(
        SCRIPT
        + "\nimport json\nfrom cellcache.fingerprint import fingerprint\n"
        + "print(json.dumps({k: fingerprint(v).hex() for k, v in VALUES.items()}))\n"
    )
    in_process = digests_of(define(SCRIPT))
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        done = subprocess.run(
            [sys.executable, str(script)], env=env, capture_output=True, text=True, check=True, cwd=tmp_path
        )
        assert json.loads(done.stdout) == in_process, seed


IPYTHON_SCRIPT = """
import json
from IPython.core.interactiveshell import InteractiveShell
from cellcache.fingerprint import fingerprint
shell = InteractiveShell.instance()
shell.run_cell(CELL)
before = {name: fingerprint(shell.user_ns[name]).hex() for name in ("helper", "Cfg", "cfg", "f")}
shell.run_cell("def helper(x):\\n    return x * SCALE + 1\\n")
after = fingerprint(shell.user_ns["cfg"]).hex()
print(json.dumps([before, after]))
"""

IPYTHON_CELL = """
import dataclasses
SCALE = 2
def helper(x):
    return x * SCALE
@dataclasses.dataclass
class Cfg:
    lr: float = 0.1
    def run(self):
        return helper(self.lr)
cfg = Cfg()
f = lambda: cfg.run() + len({"a", "b", "c"})
"""


def test_ipython_cells_are_deterministic_across_kernels(tmp_path: Path) -> None:
    script = tmp_path / "kernel.py"
    script.write_text(f"CELL = {IPYTHON_CELL!r}\n" + IPYTHON_SCRIPT)
    runs = []
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "IPYTHONDIR": str(tmp_path / "ipython")}
        done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, check=True)
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    assert runs[0] == runs[1]
    before, after = runs[0]
    assert after != before["cfg"]  # a helper redefined in a later cell reaches the instance


def test_importing_fingerprint_does_not_import_numpy_or_pandas() -> None:
    # A bare package module, so that only fingerprint.py (and errors.py) run,
    # not the package's __init__ and whatever it imports.
    package_dir = os.path.dirname(fp.__file__)
    code = textwrap.dedent(
        f"""
        import sys, types
        package = types.ModuleType("cellcache")
        package.__path__ = [{package_dir!r}]
        sys.modules["cellcache"] = package
        import cellcache.fingerprint as f
        f.fingerprint({{"a": {{1, 2}}, "f": f.fingerprint}})
        print("numpy" in sys.modules, "pandas" in sys.modules)
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "False"]


# --------------------------------------------------------------------------
# Modules


def test_module_version() -> None:
    assert module_version("numpy") == f"numpy=={importlib.metadata.version('numpy')}"
    assert module_version("numpy.linalg") == module_version("numpy")
    assert module_version("os") == "stdlib"
    assert module_version("sys") == "stdlib"
    assert module_version("yaml") == f"PyYAML=={importlib.metadata.version('PyYAML')}"
    assert module_version("no_such_module_" + uuid.uuid4().hex) is None
    assert module_version("__main__") is None


def test_is_local_module_file(tmp_path: Path) -> None:
    assert is_local_module_file(str(tmp_path / "mine.py"))
    assert not is_local_module_file(np.__file__)
    assert not is_local_module_file(os.__file__)
    assert not is_local_module_file("/somewhere/site-packages/x.py")
    assert not is_local_module_file("/somewhere/dist-packages/x.py")
    assert not is_local_module_file("built-in")


@pytest.fixture
def local_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str]:
    """A local package on sys.path: pkg/__init__.py imports pkg.core, which imports a sibling module."""
    name = "lp_" + uuid.uuid4().hex[:12]
    package = tmp_path / name
    package.mkdir()
    (package / "__init__.py").write_text("from .core import run\n")
    (package / "core.py").write_text(f"import os\nimport {name}_util as util\n\ndef run():\n    return util.VALUE\n")
    (package / "unused.py").write_text("X = 1\n")
    (tmp_path / f"{name}_util.py").write_text(f"import {name}\nVALUE = 1\n")  # a cycle back
    monkeypatch.syspath_prepend(str(tmp_path))  # also invalidates import caches
    return tmp_path, name


def test_module_digest_local_package(local_package: tuple[Path, str]) -> None:
    root, name = local_package
    before = module_digest(name)
    assert before is not None and len(before) == DIGEST_SIZE
    assert module_digest(name) == before
    assert module_version(name) is None
    # Parsed, never imported.
    assert name not in sys.modules and f"{name}.core" not in sys.modules

    (root / name / "__init__.py").write_text("from .core import run  # edited\n")
    after_init = module_digest(name)
    assert after_init != before

    (root / name / "core.py").write_text(
        f"import os\nimport {name}_util as util\n\ndef run():\n    return util.VALUE + 0\n"
    )
    after_core = module_digest(name)
    assert after_core != after_init

    # Transitive: the sibling module imported by pkg.core.
    (root / f"{name}_util.py").write_text(f"import {name}\nVALUE = 22\n")
    after_util = module_digest(name)
    assert after_util != after_core

    # A submodule nobody imports does not count.
    (root / name / "unused.py").write_text("X = 2222\n")
    assert module_digest(name) == after_util
    # A submodule's digest includes its parent package (importing it runs __init__).
    assert module_digest(f"{name}.unused") is not None
    assert name not in sys.modules


def test_module_digest_non_local_and_missing() -> None:
    assert module_digest("numpy") is None
    assert module_digest("os") is None
    assert module_digest("no_such_module_" + uuid.uuid4().hex) is None


def test_module_values(local_package: tuple[Path, str]) -> None:
    root, name = local_package
    assert fingerprint(np) == fingerprint(np)
    assert fingerprint(np) != fingerprint(pd)
    assert describe(np) == "module numpy"
    module = importlib.import_module(f"{name}_util")
    try:
        before = fingerprint(module)
        (root / f"{name}_util.py").write_text(f"import {name}\nVALUE = 3333\n")
        assert fingerprint(module) != before
    finally:
        for loaded in [m for m in sys.modules if m.startswith(name)]:
            del sys.modules[loaded]


def test_installed_module_value_includes_version(monkeypatch: pytest.MonkeyPatch) -> None:
    before = fingerprint(np)
    monkeypatch.setattr(fp, "module_version", lambda name: "numpy==0.0.0")
    assert fingerprint(np) != before


def test_function_importing_local_module(local_package: tuple[Path, str]) -> None:
    root, name = local_package
    source = f"def f():\n    import {name}_util\n    return {name}_util.VALUE\n"
    before = fingerprint(define(source)["f"])
    assert fingerprint(define(source)["f"]) == before
    (root / f"{name}_util.py").write_text(f"import {name}\nVALUE = 4444\n")
    assert fingerprint(define(source)["f"]) != before


# --------------------------------------------------------------------------
# Unfingerprintable


def gen() -> Any:
    yield 1


class BadPickle:
    def __reduce__(self) -> Any:
        raise TypeError("BadPickle objects refuse to be pickled")


@pytest.mark.parametrize(
    ("make", "type_name"),
    [
        (lambda tmp: gen(), "generator"),
        (lambda tmp: threading.Lock(), "_thread.lock"),
        (lambda tmp: open(tmp / "f.txt", "w"), "_io.TextIOWrapper"),
        (lambda tmp: socket.socket(), "socket"),
        (lambda tmp: BadPickle(), "BadPickle"),
        (lambda tmp: {"deep": [1, (threading.Lock(),)]}, "_thread.lock"),
    ],
)
def test_unfingerprintable(tmp_path: Path, make: Any, type_name: str) -> None:
    value = make(tmp_path)
    try:
        with pytest.raises(Unfingerprintable) as info:
            fingerprint(value)
        assert type_name in str(info.value)
        assert type_name in info.value.type_name
    finally:
        if hasattr(value, "close"):
            value.close()


def test_unfingerprintable_global_is_named() -> None:
    ns = define("import threading\nguard = threading.Lock()\ndef f():\n    with guard:\n        return 1\n")
    with pytest.raises(Unfingerprintable) as info:
        fingerprint(ns["f"])
    assert "'guard'" in str(info.value) and "'f'" in str(info.value)
    assert info.value.type_name == "_thread.lock"


def test_unfingerprintable_inside_dataframe() -> None:
    frame = pd.DataFrame({"o": pd.Series([threading.Lock(), 1], dtype=object)})
    with pytest.raises(Unfingerprintable):
        fingerprint(frame)


# --------------------------------------------------------------------------
# describe


@dataclasses.dataclass
class _Thing:
    a: int = 1


def test_describe() -> None:
    assert describe(1) == "int"
    assert describe(1.5) == "float"
    assert describe(True) == "bool"
    assert describe(None) == "None"
    assert describe("hello world!") == "str len 12"
    assert describe(b"ab") == "bytes len 2"
    assert describe([1, 2, 3, 4, 5]) == "list len 5"
    assert describe({"a": 1, "b": 2, "c": 3}) == "dict len 3"
    assert describe((1,)) == "tuple len 1"
    assert describe({1, 2}) == "set len 2"
    assert describe(np.zeros((1000, 3))) == "ndarray float64 (1000, 3)"
    assert describe(len) == "builtin len"
    assert describe(_Thing()).endswith("test_fingerprint._Thing")
    assert describe(pd.DataFrame({"a": [1, 2]})) == "DataFrame 2x1"
    assert describe(pd.Index([1, 2])) == "Index int64 len 2"


def test_describe_never_raises() -> None:
    class Weird:
        def __len__(self) -> int:
            raise RuntimeError("no")

    class WeirdList(list):  # type: ignore[type-arg]
        def __len__(self) -> int:
            raise RuntimeError("no")

    assert describe(Weird()).endswith("Weird")
    assert describe(WeirdList()).endswith("WeirdList")
