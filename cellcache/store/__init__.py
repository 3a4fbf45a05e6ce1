"""Where entries live: the local store (and, through it, a remote one)."""
from __future__ import annotations

from cellcache.store.index import StepStats
from cellcache.store.local import LocalStore
from cellcache.store.maintenance import VerifyReport
from cellcache.store.manifest import Manifest

__all__ = ["LocalStore", "Manifest", "StepStats", "VerifyReport"]
