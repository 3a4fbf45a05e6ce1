"""Which mutable parts of a value are the same object is part of the value; for immutable parts it never is."""
from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest

import cellcache.fingerprint._run as run_module
from cellcache.fingerprint import fingerprint

from tests.fingerprint.helpers import define


def test_a_list_twice_is_not_two_equal_lists() -> None:
    # The stale hit of issue 24: a cell appending through v[0] and reading len(v[1]).
    s = [1]
    assert fingerprint([s, s]) != fingerprint([[1], [1]])
    assert fingerprint({"a": s, "b": s}) != fingerprint({"a": [1], "b": [1]})
    assert fingerprint((s, s)) != fingerprint(([1], [1]))
    assert fingerprint([s, [s]]) != fingerprint([[1], [[1]]])
    d: dict[str, Any] = {}
    assert fingerprint([d, d]) != fingerprint([{}, {}])
    t = {1}
    assert fingerprint([t, t]) != fingerprint([{1}, {1}])
    b = bytearray(b"x")
    assert fingerprint([b, b]) != fingerprint([bytearray(b"x"), bytearray(b"x")])


def test_how_parts_are_shared_counts_not_only_whether() -> None:
    a, b = [1], [1]
    assert fingerprint([a, a, b]) != fingerprint([a, b, b])
    assert fingerprint([a, b, a]) != fingerprint([a, a, b])
    assert fingerprint([a, a, b]) == fingerprint([[1], [1], [1]][:1] * 2 + [[1]])  # the same structure, built otherwise


def test_immutable_parts_are_values_whatever_their_identity() -> None:
    t = (1, "x" * 50)
    assert fingerprint([t, t]) == fingerprint([(1, "x" * 50), (1, "".join(["x"] * 50))])
    f = frozenset({1, 2})
    assert fingerprint([f, f]) == fingerprint([frozenset({1, 2}), frozenset({2, 1})])
    big = 10**30
    assert fingerprint([big, big]) == fingerprint([10**30, 10**30 + 0])
    assert fingerprint([b"ab", b"ab"]) == fingerprint([b"ab", bytes([97, 98])])
    scalar = np.float64(1.5)
    assert fingerprint([scalar, scalar]) == fingerprint([np.float64(1.5), np.float64(1.5)])


def test_objects_shared_and_copied_differ() -> None:
    ns = define(
        """
        class Box:
            def __init__(self, x):
                self.x = x
            def get(self):
                return self.x
        """
    )
    box = ns["Box"]([1])
    assert fingerprint([box, box]) != fingerprint([box, copy.deepcopy(box)])
    # A bound method keys its object: the same box, or a copy of it.
    assert fingerprint([box, box.get]) != fingerprint([box, copy.deepcopy(box).get])
    # Two objects sharing a part, or each holding its own copy.
    inner = [1]
    assert fingerprint([ns["Box"](inner), ns["Box"](inner)]) != fingerprint([ns["Box"]([1]), ns["Box"]([1])])


def test_frozen_dataclasses_are_values() -> None:
    ns = define(
        """
        import dataclasses
        @dataclasses.dataclass(frozen=True)
        class Point:
            x: int
        """
    )
    p = ns["Point"](1)
    assert fingerprint([p, p]) == fingerprint([ns["Point"](1), ns["Point"](1)])


def test_arrays_shared_viewed_and_copied() -> None:
    a = np.arange(6.0)
    assert fingerprint([a, a]) != fingerprint([a, a.copy()])
    # Overlapping views: writing through one changes the other.
    assert fingerprint([a, a[:]]) != fingerprint([a, a.copy()])
    assert fingerprint([a[:4], a[2:]]) != fingerprint([a[:4].copy(), a[2:].copy()])
    assert fingerprint([a[:4], a[2:]]) != fingerprint([a[:4], a[1:5]])
    # Views that share a buffer without overlapping are independent values.
    assert fingerprint([a[:3], a[3:]]) == fingerprint([a[:3].copy(), a[3:].copy()])
    block = np.arange(12.0).reshape(3, 4)
    assert fingerprint([block[0], block[1]]) == fingerprint([block[0].copy(), block[1].copy()])


def test_the_compiled_and_the_python_persistent_id_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    s, t = [1], {2}
    values = [[s, s, t, t, {"k": s}], {"a": bytearray(b"x"), "b": frozenset({3})}, [[[]]] * 3]
    loop: list[Any] = [1]
    loop.append(loop)
    values.append(loop)
    compiled = [fingerprint(value) for value in values]
    if run_module._atoms is None:
        pytest.skip("the compiled routine is not built here")
    monkeypatch.setattr(run_module, "_atoms", None)
    assert [fingerprint(value) for value in values] == compiled
