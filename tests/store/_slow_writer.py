"""A writer that stops where a kill -9 leaves something behind, for the leftover tests.

Roles (argv: role, store folder, marker file):
- ``stall``: put a blob whose pickling stops half way (a temp file is open and part written);
- ``orphan``: put a blob, then stop before any commit (a blob no manifest names).
Either touches the marker when it has stopped there, then sleeps until it is killed.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

from cellcache.store.local import LocalStore


class Stall:
    """Pickled after a megabyte of other data: the temp file holds that much when the writer stops."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        self.marker.touch()
        time.sleep(120)  # the test kills it long before; a test that failed first leaves it to end here
        raise SystemExit(1)


def main() -> None:
    role, root, marker = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    store = LocalStore(root)
    payload = bytes(range(256)) * 4096
    if role == "stall":
        store.put_blob({"ns": {"head": payload, "tail": Stall(marker)}, "record": {}})
    else:
        store.put_blob({"ns": {"only": payload, "who": marker.name}, "record": {}})  # a blob of its own
        marker.touch()
    time.sleep(120)


if __name__ == "__main__":
    main()
