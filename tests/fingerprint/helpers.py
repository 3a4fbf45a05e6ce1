"""Helpers shared by the fingerprint tests."""
from __future__ import annotations

import textwrap
from typing import Any

from cellcache.fingerprint import fingerprint


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
