"""The walk: scalars, containers, sets, cycles, and values that cannot be fingerprinted."""
from __future__ import annotations

import enum
import socket
import threading
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from cellcache.errors import Unfingerprintable
from cellcache.fingerprint import DIGEST_SIZE, fingerprint

from tests.fingerprint.helpers import all_distinct, define


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
# Values, not identities


def test_equal_strings_give_equal_digests_whatever_their_identity() -> None:
    built = "alpha beta alpha beta".split()
    written = ["alpha", "beta", "alpha", "beta"]
    long_one = "x" * 40
    shared = [long_one, long_one]
    copies = ["x" * 40, "".join(["x"] * 40)]
    assert shared[0] is shared[1] and copies[0] is not copies[1]
    assert fingerprint(built) == fingerprint(written)
    assert fingerprint(shared) == fingerprint(copies)
    assert fingerprint({"k": shared, "t": (long_one, 1)}) == fingerprint({"k": copies, "t": ("x" * 40, 1)})
    assert fingerprint(shared) != fingerprint(["x" * 40, "x" * 41])


def test_repeated_containers_are_shared_and_cycles_still_terminate() -> None:
    # The rule of issue 24: which mutable parts are the same object is part of the value.
    inner = [1, 2]
    assert fingerprint([inner, inner]) != fingerprint([[1, 2], [1, 2]])
    cyclic: list[Any] = [1]
    cyclic.append(cyclic)
    other: list[Any] = [1]
    other.append(other)
    assert fingerprint(cyclic) == fingerprint(other)
    assert fingerprint(cyclic) != fingerprint([1, [1]])
