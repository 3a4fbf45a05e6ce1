"""Values nested deeper than the stack: the same digest wherever the walk starts, never a crash."""
from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from cellcache.fingerprint import fingerprint, fingerprints

from tests.fingerprint.helpers import define


def nested(depth: int, wrap: Callable[[Any], Any] = lambda inner: [inner]) -> Any:
    value: Any = []
    for _ in range(depth):
        value = wrap(value)
    return value


def at_depth(frames: int, compute: Callable[[], Any]) -> Any:
    """``compute()`` called with ``frames`` more frames on the stack."""
    return compute() if frames == 0 else at_depth(frames - 1, compute)


def test_lists_nested_100_000_deep() -> None:
    limit = sys.getrecursionlimit()
    deep = nested(100_000)
    digest = fingerprint(deep)
    assert fingerprint(nested(100_000)) == digest
    assert fingerprint(nested(100_001)) != digest
    assert fingerprints([deep, 1])[0] == digest
    assert sys.getrecursionlimit() == limit


def test_the_digest_does_not_depend_on_the_callers_stack() -> None:
    # Near the limit, a walk from a shallow stack fits where one from a deep stack does not.
    for depth in (300, 900, 5_000):
        value = nested(depth, lambda inner: {"k": inner})
        assert at_depth(0, lambda: fingerprint(value)) == at_depth(850, lambda: fingerprint(value))  # noqa: B023


def test_a_long_chain_of_objects() -> None:
    ns = define("class Link:\n    def __init__(self, nxt):\n        self.next = nxt\n")
    chain = nested(30_000, ns["Link"])
    assert fingerprint(chain) == fingerprint(nested(30_000, ns["Link"]))
    assert fingerprint(chain) != fingerprint(nested(29_999, ns["Link"]))
