"""Helpers to drive a real JupyterLab 4 in Debian's headless chromium.

The pytest fixtures live in ``conftest.py``; everything here is plain code so
that it can also be used from a script while debugging a test by hand.

Design notes (why things are done the way they are):

* The server runs from ``sys.executable`` so the kernels use the very
  interpreter (and therefore the very ``cellcache``) that runs the tests.
* Every Jupyter/IPython directory points into a private tmp dir, so a test run
  never reads or writes the user's ``~/.jupyter`` or ``~/.ipython``;
  ``JUPYTER_PATH`` still lists ``sys.prefix/share/jupyter`` so the ``python3``
  kernel spec and the ipywidgets lab extension are found.
* All waits are conditions with a bounded timeout, on the DOM or on
  JupyterLab's own state (``window.jupyterapp``, exposed by the server flag
  ``--LabApp.expose_app_in_browser``); there is no ``sleep`` that hopes the UI
  has caught up.
* "Run All" clears all outputs first, so "every code cell has a count"
  means "ran now", also after a kernel restart.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # playwright is imported lazily: a missing install must give a clear message
    from playwright.sync_api import Browser, Locator, Page, Playwright

REPO_ROOT = Path(__file__).resolve().parents[2]

CHROMIUM_PATH = "/usr/bin/chromium"
# Root + closed network: without the background-networking/sync/component flags
# chromium keeps trying to reach Google's hosts and floods the closed network
# with refused connections.  --no-sandbox is required because we run as root.
CHROMIUM_ARGS: tuple[str, ...] = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
DEPS_HINT = (
    f"{CHROMIUM_PATH} is missing: run `bash .ci/browser-deps.sh` (as root) to install Debian's "
    "chromium, or set CELLCACHE_SKIP_BROWSER=1 to skip the browser tests."
)

# Generous but bounded: the machine has 2 cores and a kernel start plus the
# JupyterLab bundle load can take several seconds when the other core is busy.
SERVER_START_TIMEOUT_S = 90.0
KERNEL_TIMEOUT_MS = 60_000
EXECUTION_TIMEOUT_MS = 120_000
UI_TIMEOUT_MS = 30_000

# Selectors of the JupyterLab 4 DOM that the helpers rely on, kept in one place.
CODE_CELL = ".jp-CodeCell"
INPUT_PROMPT = ".jp-InputArea-prompt"
OUTPUT = ".jp-OutputArea-output"
# The notebook toolbar's kernel indicator; ``data-status`` is the kernel status
# ("idle", "busy", "starting", "restarting", "unknown", "dead", ...).
EXECUTION_INDICATOR = ".jp-Notebook-ExecutionIndicator"
DIALOG_ACCEPT = ".jp-Dialog .jp-Dialog-button.jp-mod-accept"

# JupyterLab user settings written before the server starts.
LAB_USER_SETTINGS: dict[str, dict[str, Any]] = {
    # "Would you like to get notified about official Jupyter news?" is a toast
    # that stays until answered and can cover the notebook; answering "never"
    # here is the only way to stop it (--LabApp.news_url=None only stops the
    # server-side fetch, the plugin still asks).
    "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
    # JupyterLab 4 virtualises long notebooks ("contentVisibility"/"full"):
    # cells far below the fold are not laid out, or not in the DOM at all,
    # which makes "every cell has an execution count" unreliable to observe.
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
}


class BrowserTestError(AssertionError):
    """A UI condition was not met; the message says what and shows context."""


# --------------------------------------------------------------------------- server


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (which may hold spaces)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()
    except OSError:
        return None


def _child_pids(pid: int) -> dict[int, str]:
    """Direct children of ``pid`` (the kernels of a Jupyter server), with start times.

    Kernels are started in their own session (jupyter_client uses
    ``start_new_session``), so killing the server's process group would miss
    them; we remember them by pid, and by start time so that a pid reused by
    an unrelated process later is never signalled.
    """
    children: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _proc_stat(int(entry.name))
        # fields[0] is the state, [1] the parent pid, [19] the start time.
        if fields is not None and len(fields) > 19 and fields[1] == str(pid):
            children[int(entry.name)] = fields[19]
    return children


def _still_running(pid: int, start_time: str) -> bool:
    """The same process (pid and start time) exists and is not a zombie."""
    fields = _proc_stat(pid)
    return fields is not None and len(fields) > 19 and fields[19] == start_time and fields[0] != "Z"


@dataclass
class JupyterLabServer:
    """A running JupyterLab started by :func:`start_jupyterlab`."""

    process: subprocess.Popen[bytes]
    port: int
    token: str
    base_dir: Path
    root_dir: Path
    cellcache_dir: Path
    log_path: Path
    env: dict[str, str] = field(repr=False)
    _kernel_pids: dict[int, str] = field(default_factory=dict, repr=False)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def lab_url(self, notebook: str, *, workspace: str | None = None) -> str:
        """URL that opens ``notebook`` (path relative to the root dir).

        A fresh workspace name per page load means JupyterLab does not restore
        the tabs of an earlier test (which would start their kernels again).
        """
        workspace = workspace or f"t{uuid.uuid4().hex[:12]}"
        quoted = urllib.request.quote(notebook)
        return f"{self.base_url}/lab/workspaces/{workspace}/tree/{quoted}?token={self.token}"

    def api(self, method: str, path: str, body: Any | None = None, *, timeout: float = 10) -> Any:
        """Call the server's REST API (``path`` like ``/api/sessions``); JSON in and out."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"{self.base_url}{path}",
            data=data,
            method=method,
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
        return json.loads(raw) if raw else None

    def log_tail(self, lines: int = 80) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError as exc:
            return f"(no server log: {exc})"
        return "\n".join(text.splitlines()[-lines:])

    def remember_kernels(self) -> None:
        """Record the server's current child processes, to be sure to end them later."""
        if self.process.poll() is None:
            self._kernel_pids.update(_child_pids(self.process.pid))

    def shutdown_all_kernels(self) -> None:
        """Shut down every kernel (and its session) through the REST API.

        Called after each test so that kernels do not pile up on a 2-core
        machine over a session of tests.
        """
        self.remember_kernels()
        try:
            for session in self.api("GET", "/api/sessions"):
                self.api("DELETE", f"/api/sessions/{session['id']}", timeout=30)
            for kernel in self.api("GET", "/api/kernels"):
                self.api("DELETE", f"/api/kernels/{kernel['id']}", timeout=30)
        except (OSError, urllib.error.URLError) as exc:
            # The server may already be gone (it crashed, or stop() ran): stop() cleans up.
            print(f"[browser tests] could not shut down kernels: {exc}", file=sys.stderr)

    def stop(self, timeout: float = 20) -> None:
        """Stop the server and every kernel it started; safe to call twice."""
        self.remember_kernels()
        if self.process.poll() is None:
            try:
                # /api/shutdown shuts the kernels down cleanly before stopping.
                self.api("POST", "/api/shutdown", timeout=timeout)
            except (OSError, urllib.error.URLError):
                pass
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.terminate()
                try:
                    self.process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(timeout=5)
        # Only the pids we saw as this server's children: never a broad kill.
        deadline = time.monotonic() + 5
        for pid, start_time in sorted(self._kernel_pids.items()):
            # Kernels exit by themselves once the server has shut them down
            # (or once their parent is gone): give them a moment first.
            while _still_running(pid, start_time) and time.monotonic() < deadline:
                time.sleep(0.1)
            if _still_running(pid, start_time):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


def _write_lab_settings(settings_dir: Path, settings: dict[str, dict[str, Any]]) -> None:
    for plugin, values in settings.items():
        path = settings_dir / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values, indent=2))


def jupyter_env(base_dir: Path, extra_env: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for the server (and so the kernels): private dirs, same interpreter."""
    env = dict(os.environ)
    # Avoid leaking any settings of the calling shell into the server.
    for name in list(env):
        # The developer's cellcache settings (remote store, key, disable...) must
        # not reach the kernels, as in tests/conftest.py's _isolated_env.
        if name.startswith("CELLCACHE_") or name in (
            "JUPYTER_PREFER_ENV_PATH",
            "JUPYTER_PLATFORM_DIRS",
            "JUPYTER_TOKEN",
        ):
            del env[name]
    env.update(
        JUPYTER_CONFIG_DIR=str(base_dir / "config"),
        JUPYTER_DATA_DIR=str(base_dir / "data"),
        JUPYTER_RUNTIME_DIR=str(base_dir / "runtime"),
        IPYTHONDIR=str(base_dir / "ipython"),
        # The python3 kernel spec and the ipywidgets lab extension live here.
        JUPYTER_PATH=os.pathsep.join(
            [str(Path(sys.prefix) / "share" / "jupyter")]
            + [p for p in os.environ.get("JUPYTER_PATH", "").split(os.pathsep) if p]
        ),
        # Kernels must import the cellcache of this work tree, even if the venv
        # holds an (editable) install that points at another checkout.
        PYTHONPATH=os.pathsep.join(
            [str(REPO_ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
        ),
        CELLCACHE_DIR=str(base_dir / "cellcache-store"),
        PYTHONUNBUFFERED="1",
        # Kernels inherit this: matplotlib must not try a GUI backend.
        MPLBACKEND="Agg",
    )
    if extra_env:
        env.update(extra_env)
    return env


def start_jupyterlab(
    base_dir: Path,
    *,
    timeout: float = SERVER_START_TIMEOUT_S,
    extra_env: dict[str, str] | None = None,
    extra_args: Sequence[str] = (),
) -> JupyterLabServer:
    """Start JupyterLab on 127.0.0.1 with a random token, rooted in ``base_dir/notebooks``.

    Returns once ``/api/status`` answers; raises :class:`BrowserTestError`
    with the server log if it does not within ``timeout`` seconds.
    """
    base_dir = Path(base_dir)
    root_dir = base_dir / "notebooks"
    for sub in ("notebooks", "config", "data", "runtime", "ipython", "cellcache-store"):
        (base_dir / sub).mkdir(parents=True, exist_ok=True)
    settings_dir = base_dir / "config" / "lab" / "user-settings"
    _write_lab_settings(settings_dir, LAB_USER_SETTINGS)

    env = jupyter_env(base_dir, extra_env)
    token = secrets.token_hex(24)
    log_path = base_dir / "jupyterlab.log"
    last_error = ""
    for _attempt in range(3):  # only retried when the "free" port was taken meanwhile
        port = free_port()
        cmd = [
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={port}",
            # Fail instead of silently moving to another port we would not poll.
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={root_dir}",
            "--ServerApp.allow_root=True",  # CI and dev machines run as root
            "--ServerApp.open_browser=False",
            # No network from the server: no news feed, no update check, and a
            # read-only extension manager (the PyPI one queries PyPI).
            "--LabApp.news_url=None",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            "--LabApp.extension_manager=readonly",
            f"--LabApp.user_settings_dir={settings_dir}",
            f"--LabApp.workspaces_dir={base_dir / 'config' / 'lab' / 'workspaces'}",
            # window.jupyterapp, for state that the DOM does not show (debugging aid).
            "--LabApp.expose_app_in_browser=True",
            *extra_args,
        ]
        log_file = log_path.open("ab")
        log_file.write(f"\n$ {' '.join(cmd).replace(token, '<token>')}\n".encode())
        log_file.flush()
        process = subprocess.Popen(
            cmd,
            cwd=root_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            # Own process group: a Ctrl-C in the terminal running pytest does
            # not hit the server half-way through its teardown.
            start_new_session=True,
        )
        log_file.close()
        server = JupyterLabServer(
            process=process,
            port=port,
            token=token,
            base_dir=base_dir,
            root_dir=root_dir,
            cellcache_dir=base_dir / "cellcache-store",
            log_path=log_path,
            env=env,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                break
            try:
                status = server.api("GET", "/api/status", timeout=2)
            except (OSError, urllib.error.URLError, ValueError):
                time.sleep(0.2)  # polling interval of a condition wait, not a guess
                continue
            if isinstance(status, dict) and "started" in status:
                return server
        else:
            server.stop()
            raise BrowserTestError(
                f"JupyterLab did not answer /api/status within {timeout:.0f}s.\n"
                f"Server log ({log_path}):\n{server.log_tail()}"
            )
        last_error = server.log_tail()
        if "address already in use" not in last_error.lower():
            break
    raise BrowserTestError(
        f"JupyterLab exited during start-up (exit code {process.returncode}).\n"
        f"Server log ({log_path}):\n{last_error}"
    )


# --------------------------------------------------------------------------- notebooks


def notebook_json(
    cells: Iterable[str | tuple[str, str]], *, metadata: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A notebook in the nbformat 4.5 JSON structure, as a plain dict.

    Built by hand rather than with the ``nbformat`` package: importing it
    costs 1.5-5 s of CPU on this 2-core machine (jsonschema builds a grammar
    at import), paid while JupyterLab and the kernel compete for the cores.
    ``tests/browser/test_smoke.py`` checks the result against nbformat's schema.
    """
    nb_cells: list[dict[str, Any]] = []
    for cell in cells:
        kind, source = ("code", cell) if isinstance(cell, str) else cell
        if kind not in ("code", "markdown", "raw"):
            raise ValueError(f"unknown cell type {kind!r}")
        nb_cell: dict[str, Any] = {
            "cell_type": kind,
            "id": uuid.uuid4().hex[:12],
            "metadata": {},
            "source": source,
        }
        if kind == "code":
            nb_cell.update(execution_count=None, outputs=[])
        nb_cells.append(nb_cell)
    return {
        "cells": nb_cells,
        "metadata": {
            # A kernelspec: JupyterLab starts the kernel without asking which one.
            "kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"},
            "language_info": {"name": "python"},
            **(metadata or {}),
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def write_notebook(
    root_dir: Path,
    name: str,
    cells: Iterable[str | tuple[str, str]],
    *,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Write a notebook into the server's root dir and return its path.

    ``cells`` are code sources, or ``("markdown"|"code"|"raw", source)`` pairs;
    ``name`` may omit ``.ipynb`` and may contain sub-folders.
    """
    if not name.endswith(".ipynb"):
        name += ".ipynb"
    path = Path(root_dir) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(notebook_json(cells, metadata=metadata), indent=1) + "\n")
    return path


# --------------------------------------------------------------------------- browser


def chromium_missing_message() -> str | None:
    """None when Debian's chromium is installed, otherwise what to do about it."""
    if os.path.isfile(CHROMIUM_PATH) and os.access(CHROMIUM_PATH, os.X_OK):
        return None
    return DEPS_HINT


def launch_chromium(playwright: Playwright, *, extra_args: Sequence[str] = ()) -> Browser:
    """Debian's chromium through Playwright; never a browser that Playwright downloads.

    ``launch()`` gives chromium a new empty ``--user-data-dir`` of its own
    (a temp dir that Playwright removes on close), as required.
    """
    return playwright.chromium.launch(
        executable_path=CHROMIUM_PATH,
        headless=True,
        args=[*CHROMIUM_ARGS, *extra_args],
        # The Debian wrapper script is a shell script that execs the binary;
        # give it time on a busy 2-core machine.
        timeout=60_000,
    )


# JavaScript run in the page.  ``window.jupyterapp`` exists because the server
# runs with --LabApp.expose_app_in_browser=True (as JupyterLab's own Galata
# test tool does); it tells what the DOM cannot: which panel shows which file,
# and whether a kernel is really connected.
_JS_FIND_PANEL = """
const findPanel = (path) => {
  const app = window.jupyterapp;
  if (!app || !app.shell) return null;
  for (const w of app.shell.widgets('main')) {
    if (w.context && w.context.path === path && w.sessionContext && w.content) return w;
  }
  return null;
};
const state = (w) => {
  if (!w) return null;
  const sc = w.sessionContext;
  const kernel = sc.session ? sc.session.kernel : null;
  return {
    id: w.id,
    modelReady: w.context.isReady,
    sessionReady: sc.isReady,
    status: kernel ? kernel.status : null,
    connection: kernel ? kernel.connectionStatus : null,
    kernelId: kernel ? kernel.id : null,
  };
};
// Prompts of the code cells that run: JupyterLab sends no request for a code
// cell with only whitespace, whose prompt so stays "[ ]" after "Run All".
const prompts = (w) => w.content.widgets
  .filter(c => c.model.type === 'code' && c.model.sharedModel.getSource().trim() !== '')
  .map(c => {
    const p = c.node.querySelector('.jp-InputArea-prompt');
    return p ? p.textContent.trim() : '';
  });
// Exceptions raised by cells, from the notebook model: in the DOM a traceback
// is just an output with the stderr mime type, like any warning.
const errors = (w) => w.content.widgets.flatMap((c, index) =>
  c.model.type !== 'code' ? [] : c.model.outputs.toJSON()
    .filter(o => o.output_type === 'error')
    .map(o => ({cell: index, ename: o.ename, evalue: o.evalue})));
const kernelIdle = (w) => {
  const s = state(w);
  return s !== null && s.modelReady && s.sessionReady && s.status === 'idle'
    && s.connection === 'connected';
};
"""


def _js(body: str) -> str:
    """A page function ``(arg) => {...}`` with the helpers above in scope."""
    return "(arg) => {" + _JS_FIND_PANEL + body + "}"


class LabPage:
    """A Playwright page showing one notebook in JupyterLab, with helpers.

    Locators are scoped to that notebook's panel, so a dialog or another tab
    cannot be mistaken for it.
    """

    def __init__(self, page: Page, server: JupyterLabServer) -> None:
        self.page = page
        self.server = server
        self.notebook_name: str | None = None
        self._panel_id: str | None = None

    # -- state -----------------------------------------------------------

    @property
    def panel(self) -> Locator:
        """The notebook panel of the notebook opened by :meth:`open`."""
        if self._panel_id is None:
            raise BrowserTestError("no notebook is open: call open() first")
        return self.page.locator(f'[id="{self._panel_id}"]')

    def kernel_state(self) -> dict[str, Any] | None:
        """The notebook's state as JupyterLab sees it (through ``window.jupyterapp``).

        The DOM alone cannot tell "kernel idle" from "no kernel yet": the
        toolbar indicator says ``idle`` in both cases.
        """
        return self.page.evaluate(_js("return state(findPanel(arg));"), self.notebook_name)

    def kernel_status(self) -> str | None:
        state = self.kernel_state()
        return None if state is None else state.get("status")

    def output_texts(self) -> list[str]:
        """Text of every output of the notebook, in order (for asserts and messages)."""
        return self.panel.locator(OUTPUT).all_inner_texts()

    def cell_errors(self) -> list[dict[str, Any]]:
        """Exceptions shown in the notebook: ``[{"cell": index, "ename": ..., "evalue": ...}]``."""
        js = _js("const w = findPanel(arg); return w ? errors(w) : [];")
        return list(self.page.evaluate(js, self.notebook_name))

    def plugin_active(self, plugin_id: str) -> bool:
        """Whether the JupyterLab plugin ``plugin_id`` is activated in this page."""
        return bool(
            self.page.evaluate(
                "(id) => !!window.jupyterapp && window.jupyterapp.isPluginActivated(id)", plugin_id
            )
        )

    def prompts(self) -> list[str]:
        """The input prompts of all code cells, e.g. ``["[1]:", "[*]:", "[ ]:"]``."""
        return [p.strip() for p in self.panel.locator(f"{CODE_CELL} {INPUT_PROMPT}").all_inner_texts()]

    # -- waits -----------------------------------------------------------

    def wait_for_kernel_idle(self, timeout_ms: float = KERNEL_TIMEOUT_MS) -> None:
        """Wait until the notebook is loaded and its kernel connected and idle.

        Checked on JupyterLab's own state and on the toolbar indicator: the
        indicator alone reads ``idle`` before any kernel exists.
        """
        try:
            self.page.wait_for_function(
                _js(
                    "const w = findPanel(arg); if (!kernelIdle(w)) return false;"
                    f"const ind = w.node.querySelector('{EXECUTION_INDICATOR}');"
                    "return ind !== null && ind.getAttribute('data-status') === 'idle';"
                ),
                arg=self.notebook_name,
                timeout=timeout_ms,
            )
        except Exception as exc:  # playwright TimeoutError; re-raised with context
            raise self._error(f"kernel not idle after {timeout_ms / 1000:.0f}s", exc) from exc

    def wait_for_execution_finished(
        self, timeout_ms: float = EXECUTION_TIMEOUT_MS, *, allow_errors: bool = False
    ) -> None:
        """Wait until no cell is running or queued and every code cell has a count.

        A cell that raises stops "Run All", so later cells keep ``[ ]``: that
        state (an error output shown, kernel idle, nothing queued) also ends
        the wait, and raises unless ``allow_errors``.
        """
        try:
            self.page.wait_for_function(
                _js(
                    """const w = findPanel(arg); if (!kernelIdle(w)) return false;
                    const ps = prompts(w);
                    if (ps.some(p => p.includes('*'))) return false;
                    if (ps.every(p => /\\[\\d+\\]/.test(p))) return true;
                    return errors(w).length > 0;"""
                ),
                arg=self.notebook_name,
                timeout=timeout_ms,
            )
        except Exception as exc:
            raise self._error(f"execution not finished after {timeout_ms / 1000:.0f}s", exc) from exc
        if not allow_errors:
            errors = self.cell_errors()
            if errors:
                raise self._error(
                    "a cell raised an error: "
                    + "; ".join(f"cell {e['cell']}: {e['ename']}: {e['evalue']}" for e in errors)
                )

    # -- actions ---------------------------------------------------------

    def open(self, name: str, *, timeout_ms: float = KERNEL_TIMEOUT_MS) -> LabPage:
        """Open ``name`` (relative to the root dir) and wait for its kernel to be idle."""
        if not name.endswith(".ipynb"):
            name += ".ipynb"
        self.notebook_name = name
        self.page.goto(self.server.lab_url(name), wait_until="domcontentloaded", timeout=timeout_ms)
        try:
            handle = self.page.wait_for_function(
                _js("const w = findPanel(arg); return w && w.context.isReady ? w.id : false;"),
                arg=name,
                timeout=timeout_ms,
            )
        except Exception as exc:
            raise self._error(f"notebook {name} not shown after {timeout_ms / 1000:.0f}s", exc) from exc
        self._panel_id = str(handle.json_value())
        self.wait_for_kernel_idle(timeout_ms)
        self.server.remember_kernels()
        return self

    def _menu(self, menu: str, command: str) -> None:
        """Click main menu ``menu`` then the item bound to JupyterLab ``command``.

        Items are found by their ``data-command`` attribute, not their label:
        "Run All Cells" is also a substring of "Restart Kernel and Run All Cells…".
        """
        # Menu commands act on the current notebook: make ours current by its tab.
        self.page.locator(f'#jp-main-dock-panel .lm-TabBar-tab[data-id="{self._panel_id}"]').click()
        self.page.locator(".lm-MenuBar").get_by_role("menuitem", name=menu, exact=True).click()
        item = self.page.locator(f'.lm-Menu-item[data-command="{command}"]').filter(visible=True).first
        try:
            item.wait_for(state="visible", timeout=UI_TIMEOUT_MS)
            item.click()
        except Exception as exc:
            raise self._error(f"menu {menu} > {command} not found", exc) from exc

    def clear_all_outputs(self) -> None:
        """Edit > Clear Outputs of All Cells: also resets the prompts to ``[ ]``.

        Done before each run so that "every cell has a count" means "ran
        now", not "ran before" (e.g. before a kernel restart).
        """
        self._menu("Edit", "editmenu:clear-all")
        try:
            self.page.wait_for_function(
                _js("const w = findPanel(arg); return w !== null && prompts(w).every(p => !/\\d/.test(p));"),
                arg=self.notebook_name,
                timeout=UI_TIMEOUT_MS,
            )
        except Exception as exc:
            raise self._error("outputs not cleared", exc) from exc

    def run_all(self, timeout_ms: float = EXECUTION_TIMEOUT_MS, *, allow_errors: bool = False) -> None:
        """Run > Run All Cells, and wait until the execution has finished."""
        self.wait_for_kernel_idle()
        self.clear_all_outputs()
        self._menu("Run", "runmenu:run-all")
        self.wait_for_execution_finished(timeout_ms, allow_errors=allow_errors)

    def restart_and_run_all(
        self, timeout_ms: float = EXECUTION_TIMEOUT_MS, *, allow_errors: bool = False
    ) -> None:
        """Kernel > Restart Kernel and Run All Cells…, confirm, wait until finished."""
        self.wait_for_kernel_idle()
        self.clear_all_outputs()
        self._menu("Kernel", "runmenu:restart-and-run-all")
        accept = self.page.locator(DIALOG_ACCEPT)
        accept.wait_for(state="visible", timeout=UI_TIMEOUT_MS)
        accept.click()
        accept.wait_for(state="detached", timeout=UI_TIMEOUT_MS)
        self.wait_for_execution_finished(timeout_ms, allow_errors=allow_errors)
        self.server.remember_kernels()

    def output(self, text: str, *, timeout_ms: float = UI_TIMEOUT_MS) -> Locator:
        """The first output of the notebook that contains ``text``; waits for it.

        The locator returned is pinned to that output's position among the
        notebook's outputs, not to the text: a widget whose text changes
        (a label after a click) must still be found by it.
        """
        match = self.panel.locator(OUTPUT, has_text=text).first
        try:
            match.wait_for(state="visible", timeout=timeout_ms)
        except Exception as exc:
            raise self._error(f"no output containing {text!r} after {timeout_ms / 1000:.0f}s", exc) from exc
        index = match.evaluate(
            "(el, sel) => [...el.closest('.jp-NotebookPanel').querySelectorAll(sel)].indexOf(el)", OUTPUT
        )
        return self.panel.locator(OUTPUT).nth(int(index))

    def click_button(
        self, label: str, *, within: Locator | None = None, timeout_ms: float = UI_TIMEOUT_MS
    ) -> None:
        """Click the button labelled ``label`` inside an output (a widget button, say)."""
        scope = within if within is not None else self.panel.locator(OUTPUT)
        button = scope.get_by_role("button", name=label, exact=True).first
        try:
            button.wait_for(state="visible", timeout=timeout_ms)
        except Exception as exc:
            what = f"no button {label!r} in the outputs after {timeout_ms / 1000:.0f}s"
            raise self._error(what, exc) from exc
        button.click()

    def screenshot(self, locator: Locator, path: Path) -> Path:
        """PNG screenshot of one element (scrolled into view first) to ``path``."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        locator.scroll_into_view_if_needed()
        locator.screenshot(path=str(path), animations="disabled")
        return path

    # -- diagnostics -----------------------------------------------------

    def _error(self, what: str, exc: BaseException | None = None) -> BrowserTestError:
        try:
            prompts = self.prompts()
            status = self.kernel_status()
        except Exception:  # the page may be gone; the message matters more
            prompts, status = [], None
        detail = f" ({type(exc).__name__}: {str(exc).splitlines()[0]})" if exc else ""
        return BrowserTestError(
            f"{what}{detail}\nnotebook: {self.notebook_name}, kernel status: {status}, prompts: {prompts}\n"
            f"server log tail:\n{self.server.log_tail(15)}"
        )


def is_png(path: Path) -> bool:
    data = Path(path).read_bytes()[:8]
    return data == b"\x89PNG\r\n\x1a\n"

