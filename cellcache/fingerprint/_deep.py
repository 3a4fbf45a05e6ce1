"""A walk again, on a thread whose stack is deep enough for deeply nested values.

The C pickler recurses once per level of nesting, so a list nested 100,000
deep raises ``RecursionError`` wherever it is fingerprinted. Whether it does
depends on how deep the caller's stack already is, so falling back to some
other digest would make the digest depend on the caller. Instead the same
walk runs again on a thread with a large stack and a large recursion limit:
the stream, and so the digest, is the same as a walk with no limit would
give. Only values nested deeper than about ``_LIMIT // 2`` levels (or, on Python 3.12 and
later, than the interpreter's fixed C recursion limit) are refused.
"""
from __future__ import annotations

import functools
import sys
import threading
from collections.abc import Callable
from typing import TypeVar

from cellcache.errors import Unfingerprintable

T = TypeVar("T")

# The limit counts the pickler's recursive calls, about two per level of a
# nested list. Measured on 3.11: 800,000 of them fit in 512 MiB of stack, so
# with 1 GiB the limit is reached long before the stack runs out (which
# would be a crash, not an error). The stack is reserved, not used: only
# the pages a walk touches cost memory.
_STACK_BYTES = 1 << 30
_LIMIT = 1_000_000


@functools.lru_cache(maxsize=None)
def _lock() -> threading.Lock:
    """sys.setrecursionlimit and threading.stack_size are process-wide: one deep walk at a time.

    Behind a cached function rather than a module global: this module's
    functions are fingerprinted by code where cellcache is not installed,
    and a lock has no fingerprint.
    """
    return threading.Lock()


def deep(compute: Callable[[], T], value: object) -> T:
    """``compute()`` on a thread with a deep stack; its exceptions are raised here."""
    outcome: list[tuple[bool, object]] = []

    def target() -> None:
        try:
            outcome.append((True, compute()))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            outcome.append((False, exc))

    with _lock():
        previous_limit = sys.getrecursionlimit()
        # Raised for the walk only; other threads keep their depth and see a
        # higher limit for that long, which only matters to runaway recursion.
        sys.setrecursionlimit(max(previous_limit, _LIMIT))
        try:
            # The size applies to threads started while it is set.
            previous_size = threading.stack_size(_STACK_BYTES)
            try:
                thread = threading.Thread(target=target, name="cellcache-deep-fingerprint", daemon=True)
                thread.start()
            finally:
                threading.stack_size(previous_size)
            thread.join()
        finally:
            sys.setrecursionlimit(previous_limit)
    ok, result = outcome[0]
    if ok:
        return result  # type: ignore[return-value]
    if isinstance(result, RecursionError):
        kind = type(value)
        name = kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
        raise Unfingerprintable(
            f"cannot fingerprint a {name} value: nested too deep ({_LIMIT:,} pickler calls)", type_name=name
        ) from result
    raise result  # type: ignore[misc]
