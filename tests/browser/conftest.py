"""Fixtures for the end-to-end tests in JupyterLab + Debian's chromium.

Fixtures (see ``jupyterlab.py`` for the helpers they hand out):

* ``jupyter_server`` (session): a running JupyterLab, :class:`JupyterLabServer`.
* ``chromium_browser`` (session): a Playwright ``Browser`` on /usr/bin/chromium.
* ``lab_page`` (function): a fresh Playwright ``Page`` (own browser context).
* ``lab`` (function): a :class:`LabPage` bound to ``lab_page`` and the server;
  kernels started during the test are shut down after it.
* ``notebook_dir`` (function): the server's root dir, where to write notebooks.

Every test in this folder gets the ``browser`` marker.  With
``CELLCACHE_SKIP_BROWSER=1`` they are skipped; otherwise a missing chromium is
an error that says to run ``.ci/browser-deps.sh`` (never a silent skip).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from .jupyterlab import (
    UI_TIMEOUT_MS,
    JupyterLabServer,
    LabPage,
    chromium_missing_message,
    launch_chromium,
    start_jupyterlab,
)

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

HERE = Path(__file__).resolve().parent


def _skip_requested() -> bool:
    return os.environ.get("CELLCACHE_SKIP_BROWSER", "") == "1"


if _skip_requested():
    try:
        import playwright  # noqa: F401
    except ImportError:
        # The test modules import playwright at the top: on a machine without
        # it, a requested skip must not turn into collection errors.
        collect_ignore_glob = ["test_*.py"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # conftest hooks see the items of the whole session: touch only ours.
    skip = pytest.mark.skip(reason="CELLCACHE_SKIP_BROWSER=1") if _skip_requested() else None
    for item in items:
        if HERE in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.browser)
            if skip is not None:
                item.add_marker(skip)


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    # Keep each phase's report on the item so that fixtures can tell, at
    # teardown, whether the test failed (and then save a screenshot).
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"_browser_report_{report.when}", report)


def _require_browser() -> None:
    if _skip_requested():
        pytest.skip("CELLCACHE_SKIP_BROWSER=1")
    message = chromium_missing_message()
    if message is not None:
        pytest.fail(message, pytrace=False)
    try:
        import playwright  # noqa: F401
    except ImportError:
        pytest.fail(
            "the Python package playwright is missing: pip install -e '.[test]' "
            "(never `playwright install`: the tests use Debian's chromium)",
            pytrace=False,
        )


@pytest.fixture(scope="package")
def chromium_browser() -> Iterator[Browser]:
    """Debian's chromium driven by Playwright, for the browser tests only.

    Package scope, not session: Playwright's sync API keeps an event loop running in
    the main thread while it is open, which would break asyncio.run in later tests.
    """
    _require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="package")
def jupyter_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterLabServer]:
    """JupyterLab on 127.0.0.1, private config/data/runtime dirs and cache store.

    ``server.root_dir`` is where notebooks go; ``server.cellcache_dir`` is
    the ``CELLCACHE_DIR`` of every kernel it starts.
    """
    _require_browser()  # no point in starting a server that no browser will see
    server = start_jupyterlab(tmp_path_factory.mktemp("jupyterlab"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def notebook_dir(jupyter_server: JupyterLabServer) -> Path:
    return jupyter_server.root_dir


def _save_failure_artifacts(request: pytest.FixtureRequest, page: Page, tmp_path: Path) -> None:
    """After a failed test: a full-page screenshot and the browser's console errors."""
    node = request.node
    report = getattr(node, "_browser_report_call", None)
    if report is None or not report.failed or getattr(node, "_browser_artifacts_saved", False):
        return
    node._browser_artifacts_saved = True
    shot = tmp_path / "failure.png"
    try:
        page.screenshot(path=str(shot), full_page=True)
        print(f"\n[browser tests] screenshot of the failed test: {shot}")
    except Exception as exc:  # the page may be gone; the test has failed anyway
        print(f"\n[browser tests] no failure screenshot: {exc}")
    console: list[str] = getattr(node, "_browser_console", [])
    if console:
        print("[browser tests] browser console errors:\n  " + "\n  ".join(console[-30:]))


@pytest.fixture
def lab_page(
    request: pytest.FixtureRequest, chromium_browser: Browser, tmp_path: Path
) -> Iterator[Page]:
    """A page in a fresh browser context (no cookies or storage from other tests)."""
    context = chromium_browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(UI_TIMEOUT_MS)
    page = context.new_page()
    # Browser-side errors help when a widget does not render: keep them.
    console: list[str] = []
    request.node._browser_console = console
    page.on("console", lambda msg: console.append(f"{msg.type}: {msg.text}") if msg.type == "error" else None)
    page.on("pageerror", lambda exc: console.append(f"pageerror: {exc}"))
    try:
        yield page
    finally:
        _save_failure_artifacts(request, page, tmp_path)
        context.close()


@pytest.fixture
def lab(
    request: pytest.FixtureRequest, lab_page: Page, jupyter_server: JupyterLabServer, tmp_path: Path
) -> Iterator[LabPage]:
    """Helpers for one notebook in JupyterLab: ``lab.open(name)``, ``lab.run_all()`` ..."""
    yield LabPage(lab_page, jupyter_server)
    # Screenshot first: it should show the notebook as the test left it.
    _save_failure_artifacts(request, lab_page, tmp_path)
    # Kernels of earlier tests would otherwise keep running (and take memory
    # and CPU on a 2-core machine) until the session ends.
    jupyter_server.shutdown_all_kernels()
