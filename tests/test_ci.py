"""The test command's browser set-up: a machine without root or chromium skips the browser tests instead of failing."""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / ".ci" / "browser-deps.sh"


def _as_nobody() -> list[str]:
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv is needed to drop root for this test")
    return ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


@pytest.fixture
def readable() -> Iterator[Path]:
    """A folder every user can read, holding a copy of the script.

    The checkout may sit in a private folder (a clone into `mktemp -d` is mode 0700): the
    unprivileged user could not read the script there ("Permission denied", exit 126).
    """
    folder = Path(tempfile.mkdtemp(prefix="cellcache-ci-"))
    folder.chmod(0o755)
    shutil.copy(SCRIPT, folder / SCRIPT.name)
    (folder / SCRIPT.name).chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_without_root_and_without_chromium_it_asks_for_a_skip(readable: Path) -> None:
    env = {**os.environ, "CELLCACHE_CHROMIUM": str(readable / "no-chromium")}
    done = subprocess.run([*_as_nobody(), "bash", str(readable / SCRIPT.name)], env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 3, done.stderr
    assert "needs root" in done.stderr and "ERROR" not in done.stderr


def test_with_chromium_present_it_does_nothing(readable: Path) -> None:
    # pytest's tmp folders are private to root; the unprivileged user must reach the fake.
    fake = readable / "chromium"
    fake.write_text("#!/bin/sh\necho Chromium 1.0\n")
    fake.chmod(0o755)
    env = {**os.environ, "CELLCACHE_CHROMIUM": str(fake)}
    done = subprocess.run([*_as_nobody(), "bash", str(readable / SCRIPT.name)], env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr


def test_the_script_runs_from_a_private_checkout_as_another_user(tmp_path: Path) -> None:
    # The failure the fixture avoids, shown: a 0700 folder's script is unreadable to that user.
    if os.geteuid() != 0:
        pytest.skip("needs root to run the script as another user")
    private = tmp_path / "clone"
    private.mkdir(mode=0o700)
    shutil.copy(SCRIPT, private / SCRIPT.name)
    done = subprocess.run([*_as_nobody(), "bash", str(private / SCRIPT.name)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 126 or "Permission denied" in done.stderr


def test_it_waits_for_another_apt_instead_of_failing(tmp_path: Path) -> None:
    # Another apt holds the lock for a few checks; the script waits, then installs.
    if os.geteuid() != 0:
        pytest.skip("the script installs only as root")
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    chromium = tmp_path / "chromium"
    (bin_ / "fuser").write_text(f"#!/bin/sh\nn=$(cat {tmp_path}/busy 2>/dev/null || echo 0)\necho $((n+1)) > {tmp_path}/busy\n[ $n -lt 2 ]\n")
    (bin_ / "pgrep").write_text("#!/bin/sh\nexit 1\n")
    (bin_ / "apt-get").write_text(
        f"#!/bin/sh\necho \"$@\" >> {tmp_path}/apt.log\n"
        f"case \"$*\" in *install*) printf '#!/bin/sh\\necho Chromium 1.0\\n' > {chromium}; chmod +x {chromium};; esac\n"
    )
    for tool in bin_.iterdir():
        tool.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_}:{os.environ['PATH']}", "CELLCACHE_CHROMIUM": str(chromium), "CELLCACHE_DOT": "/bin/true"}
    done = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "another apt or dpkg is running; waiting for it" in done.stderr
    calls = (tmp_path / "apt.log").read_text().splitlines()
    assert calls[0].startswith("-o DPkg::Lock::Timeout=") and "update" in calls[0] and "install" in calls[1]
