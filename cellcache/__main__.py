"""``python -m cellcache``: the same command line as the ``cellcache`` script."""
from __future__ import annotations

from cellcache.cli.main import main

if __name__ == "__main__":  # pragma: no cover - exercised through a subprocess
    main(prog_name="cellcache")
