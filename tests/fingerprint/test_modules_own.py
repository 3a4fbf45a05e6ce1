"""cellcache's own modules are never remembered as the user's local code."""
from __future__ import annotations

import cellcache.cell.runner  # noqa: F401 - loaded, as in every kernel with the extension
from cellcache.fingerprint import modules


def test_cellcache_itself_is_not_parsed_as_local_code():
    # Imported from a checkout (PYTHONPATH, an editable install) it looks local; parsing its
    # thirty modules cost every kernel start about a second.
    assert modules.is_local_module_file(cellcache.cell.runner.__file__)
    modules._SEEN["count"] = 0
    modules.remember_loaded()
    assert not [name for name in modules._AS_IMPORTED if name.split(".")[0] == "cellcache"]
