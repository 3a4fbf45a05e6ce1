"""Modules, versions and local sources (fingerprint/modules.py)."""
from __future__ import annotations

import importlib
import os
import sys
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import cellcache.fingerprint.modules as fingerprint_modules
from cellcache.fingerprint.modules import take_stale
from cellcache.fingerprint import (
    DIGEST_SIZE,
    describe,
    fingerprint,
    is_local_module_file,
    module_digest,
    module_version,
)

from tests.fingerprint.helpers import define


# --------------------------------------------------------------------------
# Modules


def test_module_version() -> None:
    assert module_version("numpy") == f"numpy=={importlib.metadata.version('numpy')}"
    assert module_version("numpy.linalg") == module_version("numpy")
    assert module_version("os") == "stdlib"
    assert module_version("sys") == "stdlib"
    assert module_version("yaml") == f"PyYAML=={importlib.metadata.version('PyYAML')}"
    assert module_version("no_such_module_" + uuid.uuid4().hex) is None
    assert module_version("__main__") is None


def test_is_local_module_file(tmp_path: Path) -> None:
    assert is_local_module_file(str(tmp_path / "mine.py"))
    assert not is_local_module_file(np.__file__)
    assert not is_local_module_file(os.__file__)
    assert not is_local_module_file("/somewhere/site-packages/x.py")
    assert not is_local_module_file("/somewhere/dist-packages/x.py")
    assert not is_local_module_file("built-in")


@pytest.fixture
def local_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str]:
    """A local package on sys.path: pkg/__init__.py imports pkg.core, which imports a sibling module."""
    name = "lp_" + uuid.uuid4().hex[:12]
    package = tmp_path / name
    package.mkdir()
    (package / "__init__.py").write_text("from .core import run\n")
    (package / "core.py").write_text(f"import os\nimport {name}_util as util\n\ndef run():\n    return util.VALUE\n")
    (package / "unused.py").write_text("X = 1\n")
    (tmp_path / f"{name}_util.py").write_text(f"import {name}\nVALUE = 1\n")  # a cycle back
    monkeypatch.syspath_prepend(str(tmp_path))  # also invalidates import caches
    return tmp_path, name


def test_module_digest_local_package(local_package: tuple[Path, str]) -> None:
    root, name = local_package
    before = module_digest(name)
    assert before is not None and len(before) == DIGEST_SIZE
    assert module_digest(name) == before
    assert module_version(name) is None
    # Parsed, never imported.
    assert name not in sys.modules and f"{name}.core" not in sys.modules

    (root / name / "__init__.py").write_text("# a comment, and a blank line\n\nfrom .core import run  # edited\n")
    assert module_digest(name) == before  # the code is the same: a comment-only edit keeps the key

    (root / name / "__init__.py").write_text("from .core import run\nEXTRA = 1\n")
    after_init = module_digest(name)
    assert after_init != before

    (root / name / "core.py").write_text(
        f"import os\nimport {name}_util as util\n\ndef run():\n    return util.VALUE + 0\n"
    )
    after_core = module_digest(name)
    assert after_core != after_init

    # Transitive: the sibling module imported by pkg.core.
    (root / f"{name}_util.py").write_text(f"import {name}\nVALUE = 22\n")
    after_util = module_digest(name)
    assert after_util != after_core

    # A submodule nobody imports does not count.
    (root / name / "unused.py").write_text("X = 2222\n")
    assert module_digest(name) == after_util
    # A submodule's digest includes its parent package (importing it runs __init__).
    assert module_digest(f"{name}.unused") is not None
    assert name not in sys.modules


def test_module_digest_non_local_and_missing() -> None:
    assert module_digest("numpy") is None
    assert module_digest("os") is None
    assert module_digest("no_such_module_" + uuid.uuid4().hex) is None


def test_module_values(local_package: tuple[Path, str]) -> None:
    root, name = local_package
    assert fingerprint(np) == fingerprint(np)
    assert fingerprint(np) != fingerprint(pd)
    assert describe(np) == "module numpy"
    module = importlib.import_module(f"{name}_util")
    try:
        before = fingerprint(module)
        take_stale()
        (root / f"{name}_util.py").write_text(f"import {name}\nVALUE = 3333\n")
        # Edited on disk but not reloaded: the loaded code is what runs, so it is what is keyed.
        assert fingerprint(module) == before
        assert take_stale() == [f"{name}_util"] and take_stale() == []  # reported once
        importlib.reload(module)
        assert fingerprint(module) != before and module.VALUE == 3333
        assert take_stale() == []
    finally:
        for loaded in [m for m in sys.modules if m.startswith(name)]:
            del sys.modules[loaded]


def test_installed_module_value_includes_version(monkeypatch: pytest.MonkeyPatch) -> None:
    before = fingerprint(np)
    monkeypatch.setattr(fingerprint_modules, "module_version", lambda name: "numpy==0.0.0")
    assert fingerprint(np) != before


def test_function_importing_local_module(local_package: tuple[Path, str]) -> None:
    root, name = local_package
    source = f"def f():\n    import {name}_util\n    return {name}_util.VALUE\n"
    before = fingerprint(define(source)["f"])
    assert fingerprint(define(source)["f"]) == before
    (root / f"{name}_util.py").write_text(f"import {name}\nVALUE = 4444\n")
    assert fingerprint(define(source)["f"]) != before
