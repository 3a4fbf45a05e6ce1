"""Sphinx configuration for cellcache's docs: MyST-NB pages, furo, reference pages generated from the code.

The build is offline and self-contained: notebooks execute in temporary
folders, each with its own cellcache store inside (see below), so a build
never reads or writes the developer's store and leaves the tree as it was.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE / "_ext"))
sys.path.insert(0, str(ROOT))  # the cellcache of this checkout, not an installed one

# One store per executed page: each page runs in its own temporary folder (nb_execution_in_temp),
# which is its kernel's project root, so the default store `.cellcache/` is that page's alone and
# goes with the folder. A page's panel and stats then show its own steps, not the whole build's,
# and the store's path shows as `.cellcache/`. Kernels that MyST-NB starts inherit the environment.
os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
os.environ.setdefault("MPLBACKEND", "Agg")
for name in ("CELLCACHE_DIR", "CELLCACHE_REMOTE", "CELLCACHE_DISABLE"):
    os.environ.pop(name, None)

project = "cellcache"
author = "the cellcache developers"
copyright = "the cellcache developers"

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx_click",
    "cellcache_docs",
]
exclude_patterns = ["_build", "jupyter_execute", "**/.ipynb_checkpoints", "img/README*"]
html_theme = "furo"
html_title = "cellcache"
html_static_path: list[str] = []

# "--max-size" must stay two hyphens, never an en dash: quotes and ellipses only.
smartquotes_action = "qe"

myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3
nb_custom_formats = {".nblink": "cellcache_docs.read_linked_notebook"}
nb_execution_mode = "force"
nb_execution_in_temp = True
nb_execution_raise_on_error = True
nb_execution_timeout = 120
nb_merge_streams = True

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "undoc-members": False}
