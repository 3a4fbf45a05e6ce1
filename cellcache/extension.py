"""What ``%load_ext cellcache`` installs: the magics and two light hooks; the session comes later.

The session (the runner with the analysis, the fingerprints and the store) is most of cellcache's
import time, and a kernel pays it at every start. So loading the extension installs only what must
watch the kernel from its first cell on:

- after each cell, the source of every local module it imported, as imported (``remember_loaded``),
  and the files those modules read while they were imported (``files.watch_imports``): an edit made
  later must never pass for the code that runs;
- a cell that seeds a global generator: from then on its state is keyed.

The session is built at the first cell that needs it: a ``%%cached`` cell, a seeding cell, auto
mode's first cell, ``%cellcache``, or a call of the API. The cell in flight when it is built gets
the session's ``pre_run_cell`` late, so it knows the cell's id as if it had been there all along.
"""
from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from cellcache.cell import SEEDING_WORDS, files
from cellcache.config import Config
from cellcache.fingerprint.modules import remember_loaded

if TYPE_CHECKING:
    from cellcache.cell.runner import Session


class Extension:
    """cellcache in one shell: the hooks from load on, and the session once a cell needs it."""

    def __init__(self, shell: Any, config: Config) -> None:
        self.shell = shell
        self.config = config
        self._session: Session | None = None
        self._info: Any = None  # the cell in flight, whose pre_run_cell came before any session
        remember_loaded()  # modules imported before the extension: their source as imported
        files.watch_imports()  # and the files local modules read as they are imported, from now on

    @property
    def built(self) -> Session | None:
        """The session if a cell or a call already needed one; None without building it."""
        return self._session

    @property
    def session(self) -> Session:
        if self._session is None:
            self._build()
        assert self._session is not None
        return self._session

    def _build(self) -> None:
        from cellcache.cell.runner import Session

        session = Session(self.shell, self.config)
        self._session = session
        api = sys.modules.get("cellcache.api")  # not imported for this: it finds the session itself when it is
        if api is not None:
            api.active = session
        if self._info is not None:
            session.pre_run_cell(self._info)
        if self.config.auto:  # `auto = true` or CELLCACHE_AUTO=1: on from load, so from this cell on
            self._drop_first_cell()
            session.auto.switch(True)

    # hooks --------------------------------------------------------------------------

    def install(self) -> None:
        self.shell.events.register("pre_run_cell", self.pre_run_cell)
        self.shell.events.register("post_run_cell", self.post_run_cell)
        if self.config.auto:
            # Auto mode's transform needs the session: it is built when the first cell is transformed.
            self.shell.input_transformers_cleanup.insert(0, self._first_cell)

    def uninstall(self) -> None:
        self._drop_first_cell()
        self.shell.events.unregister("pre_run_cell", self.pre_run_cell)
        self.shell.events.unregister("post_run_cell", self.post_run_cell)

    def _first_cell(self, lines: list[str]) -> list[str]:
        # Building switches auto mode on, which puts its own first transform in this list, ahead of
        # the one being run (this one, removed): the cell goes through it here, and the rest follow.
        return self.session.auto.keep_raw(lines)

    def _drop_first_cell(self) -> None:
        transforms = self.shell.input_transformers_cleanup
        if self._first_cell in transforms:
            transforms.remove(self._first_cell)

    def pre_run_cell(self, info: Any) -> None:
        self._info = info
        if self._session is not None:
            self._session.pre_run_cell(info)

    def post_run_cell(self, result: Any) -> None:
        self._info = None
        if self._session is None:
            remember_loaded()
            raw = getattr(getattr(result, "info", None), "raw_cell", None) or ""
            if not any(word in raw for word in SEEDING_WORDS):
                return
            self._build()  # a cell that may seed a generator: the session notes which, from now on
        assert self._session is not None
        self._session.post_run_cell(result)
