"""Every exception and warning cellcache raises, in one place.

The split matters to users: a ``CacheWarning`` means "your result is fine,
the cache could not help this time"; a ``CellcacheError`` subclass means the
request itself was wrong and nothing ran. ``except cellcache.CacheError``
catches every storage problem and nothing else::

    Exception
     └── CellcacheError             a request cellcache refused; nothing ran
          ├── ConfigError            a setting in the environment or pyproject.toml is invalid
          ├── Unfingerprintable      a value has no deterministic fingerprint
          ├── DepNotFound            a --deps path matches nothing
          ├── OutNotProduced         a --outs path the cell did not write
          ├── BatchError             `cellcache run`/`status` cannot do what was asked
          ├── RefusedRemoteEntry     verify = "strict": a bad remote entry stops the cell
          ├── StepError              a step name that names no step, or several
          │    ├── UnknownStep
          │    └── AmbiguousStep
          └── CacheError             every storage problem (alias: StoreError)
               ├── StoreUnavailable  the store folder cannot be used (a file, read-only, full)
               ├── SigningKeyError   the signing key is unreadable, empty or too short
               ├── EntryGone         an entry removed (gc, invalidate, clear) while it was read: a plain miss
               ├── EntryCorrupt      a manifest or blob is unreadable, malformed or altered
               │    └── UnsafeEntry  a manifest names a path outside the project
               ├── UntrustedEntry    a signature is missing or does not match
               ├── RemoteUnavailable the remote did not answer in time, or answered with a server error
               └── RemoteDenied      the remote refused our credentials (401/403): configuration, not a miss
    UserWarning
     └── CacheWarning               the result is fine; the cache could not help this time

Stores never warn: they raise one of these leaves, or yield a candidate with
its problem, and the runner turns a cell's problems into at most one
``CacheWarning`` through :func:`warn`.
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


class CacheError(CellcacheError):
    """Every storage problem: the store could not read, check or write an entry."""


StoreError = CacheError  # the name before the tree grew; kept for callers that catch it


class StoreUnavailable(CacheError):
    """The store folder cannot be used: it is a file, read-only, or the disk is full."""


class SigningKeyError(CacheError):
    """The key that signs local manifests is unreadable, empty or too short."""


class EntryGone(CacheError):
    """An entry was removed (gc, invalidate, clear) while it was being read: a plain miss, nothing to warn about."""


class EntryCorrupt(CacheError):
    """An entry exists but its manifest or blobs are unreadable, malformed or altered."""


class UnsafeEntry(EntryCorrupt):
    """A manifest names a path outside the project (``../x``, ``/etc/x``): refused before a byte is written."""


class UntrustedEntry(CacheError):
    """An entry's signature is missing or does not match."""


class RemoteUnavailable(CacheError):
    """The remote store did not answer in time, or answered with a server error."""


class RemoteDenied(CacheError):
    """The remote store refused our credentials (401/403): a configuration problem, not a miss."""


class RefusedRemoteEntry(CellcacheError):
    """``verify = "strict"``: a remote entry for the key was unsigned, untrusted or tampered, and the cell stops.

    Not a CacheError on purpose: strict mode wants the cell to fail, not to run past it.
    """


class StepError(CellcacheError):
    """A step name that names no step, or several; ``candidates`` lists the known ones."""

    def __init__(self, message: str, candidates: tuple[str, ...] = ()) -> None:
        shown = ", ".join(candidates[:20]) + (", ..." if len(candidates) > 20 else "")
        super().__init__(f"{message}; known steps: {shown}" if candidates else f"{message}; the store knows no steps yet")
        self.candidates = candidates


class UnknownStep(StepError):
    """No step of that name (in that notebook)."""


class AmbiguousStep(StepError):
    """Several notebooks have a step of that name: say which, as ``NB:STEP``."""


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
