"""Every exception and warning cellcache raises, in one place.

The split matters to users: a ``CacheWarning`` means "your result is fine,
the cache could not help this time"; a ``CellcacheError`` subclass means the
request itself was wrong and nothing ran.
"""
from __future__ import annotations

import os
import sys
import warnings


class CacheWarning(UserWarning):
    """Storage or lookup trouble. The cell's result is never affected."""


class CellcacheError(Exception):
    """Base class for errors a user can act on."""


class ConfigError(CellcacheError):
    """A setting in the environment or pyproject.toml is invalid."""


class Unfingerprintable(CellcacheError):
    """A value has no deterministic fingerprint, so it must not be keyed."""

    def __init__(self, message: str, *, type_name: str = "") -> None:
        super().__init__(message)
        self.type_name = type_name


class DepNotFound(CellcacheError):
    """A declared ``--deps`` path matches nothing."""

    def __init__(self, path: str) -> None:
        super().__init__(f"dependency {path!r} does not exist (no file, directory or glob match)")
        self.path = path


class OutNotProduced(CellcacheError):
    """A declared ``--outs`` path was not written by the cell."""

    def __init__(self, path: str) -> None:
        super().__init__(f"output {path!r} was declared with --outs but the cell did not produce it")
        self.path = path


class StoreError(CellcacheError):
    """The store could not read or write an entry."""


class EntryCorrupt(StoreError):
    """An entry exists but its manifest or blobs are unreadable or altered."""


class UntrustedEntry(StoreError):
    """An entry's signature is missing or does not match."""


class BatchError(CellcacheError):
    """``cellcache run`` or ``status`` was asked for something it cannot do; nothing ran.

    A notebook that is missing or not a notebook, an unknown kernel, two
    notebooks that would be written to the same file.
    """


# Frames of these packages are skipped when a warning is attributed: the user
# should see their own cell, not ``cellcache/runner.py:123`` or IPython's magic plumbing.
_INTERNAL_DIRS = tuple(
    os.path.dirname(path) + os.sep
    for path in (__file__, getattr(sys.modules.get("IPython"), "__file__", None) or "")
    if path
)


def _internal(filename: str) -> bool:
    return filename.startswith(_INTERNAL_DIRS) or filename.startswith("<decorator-gen")


def warn(message: str) -> None:
    """Issue one ``CacheWarning``, attributed to the first frame outside cellcache and IPython.

    In a notebook that frame is the user's cell; from the CLI it is the caller.
    Every ``CacheWarning`` goes through here, so the runner can keep to one per cell.
    """
    frame = sys._getframe(1)
    level = 2
    while frame is not None and _internal(frame.f_code.co_filename):
        frame = frame.f_back
        level += 1
    warnings.warn(message, CacheWarning, stacklevel=level)
