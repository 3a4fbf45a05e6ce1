from __future__ import annotations

import atexit
from pathlib import Path
from typing import Iterator

import numpy  # noqa: F401 - as in a kernel that has it: a cell's first import of a module files a second key
import pytest
from IPython.core.interactiveshell import InteractiveShell
from traitlets.config import Config


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reads the developer's settings or writes to their home."""
    for name in ("CELLCACHE_DIR", "CELLCACHE_REMOTE", "CELLCACHE_KEY", "CELLCACHE_DISABLE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path_factory.getbasetemp() / "ipython"))
    # The local signing key lives in the user's config folder (platformdirs honours XDG_CONFIG_HOME).
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("config")))
    monkeypatch.setenv("MPLBACKEND", "Agg")


@pytest.fixture(autouse=True)
def _shells_leave_no_exit_work(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Unregister the atexit hook of every InteractiveShell a test made, when the test ends.

    Each shell registers ``atexit_operations``, which resets it and runs a full
    ``gc.collect()``: with hundreds of test shells (each kept alive, namespace and all,
    by that registration) pytest spent many minutes exiting after the last test passed.
    """
    made: list[InteractiveShell] = []
    original = InteractiveShell.__init__

    def init(self: InteractiveShell, *args: object, **kwargs: object) -> None:
        original(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(InteractiveShell, "__init__", init)
    yield
    for sh in made:
        atexit.unregister(sh.atexit_operations)


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


@pytest.fixture
def shell(store_dir: Path, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[InteractiveShell]:
    """A fresh real InteractiveShell with cellcache loaded and a private store."""
    monkeypatch.setenv("CELLCACHE_DIR", str(store_dir))
    InteractiveShell.clear_instance()
    config = Config()
    config.HistoryManager.hist_file = ":memory:"
    sh = InteractiveShell.instance(config=config)
    sh.run_line_magic("load_ext", "cellcache")
    yield sh
    sh.run_line_magic("unload_ext", "cellcache")
    InteractiveShell.clear_instance()


def run(shell: InteractiveShell, source: str, cell_id: str | None = None):
    """Run one cell and fail the test with the cell's own error if it raised."""
    result = shell.run_cell(source, store_history=True, cell_id=cell_id)
    result.raise_error()
    return result


REPO = Path(__file__).resolve().parents[1]


def run_in_fresh_shell(body: str, store: Path, cwd: Path, prelude: str = "") -> str:
    """Run ``body`` in a new interpreter's InteractiveShell (``sh``, cellcache loaded); its stdout, once it has exited.

    For what only a fresh process shows: modules not imported yet, and what atexit does.
    """
    import os
    import subprocess
    import sys
    import textwrap

    script = "\n".join(
        [
            textwrap.dedent(prelude),
            "from IPython.core.interactiveshell import InteractiveShell",
            "from traitlets.config import Config",
            "c = Config(); c.HistoryManager.hist_file = ':memory:'",
            "sh = InteractiveShell.instance(config=c)",
            "sh.run_line_magic('load_ext', 'cellcache')",
            textwrap.dedent(body),
        ]
    )
    env = {**os.environ, "CELLCACHE_DIR": str(store), "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120, cwd=cwd)
    assert done.returncode == 0, done.stderr
    return done.stdout

