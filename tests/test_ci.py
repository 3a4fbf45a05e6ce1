"""The test command's browser set-up: a machine without root or chromium skips the browser tests instead of failing."""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / ".ci" / "browser-deps.sh"


def _as_nobody() -> list[str]:
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv is needed to drop root for this test")
    return ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def test_without_root_and_without_chromium_it_asks_for_a_skip(tmp_path: Path) -> None:
    env = {**os.environ, "CELLCACHE_CHROMIUM": str(tmp_path / "no-chromium")}
    done = subprocess.run([*_as_nobody(), "bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 3, done.stderr
    assert "needs root" in done.stderr and "ERROR" not in done.stderr


def test_with_chromium_present_it_does_nothing(tmp_path_factory: pytest.TempPathFactory) -> None:
    # pytest's tmp folders are private to root; the unprivileged user must reach the fake.
    folder = Path(tempfile.mkdtemp(prefix="cellcache-ci-"))
    folder.chmod(0o755)
    fake = folder / "chromium"
    fake.write_text("#!/bin/sh\necho Chromium 1.0\n")
    fake.chmod(0o755)
    env = {**os.environ, "CELLCACHE_CHROMIUM": str(fake)}
    done = subprocess.run([*_as_nobody(), "bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=30)
    shutil.rmtree(folder)
    assert done.returncode == 0, done.stderr
