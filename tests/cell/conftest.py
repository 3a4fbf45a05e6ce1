"""Fixtures of the cell tests."""
from __future__ import annotations

import pytest

from tests.cell.helpers import Counter


@pytest.fixture
def counted(shell):
    """A shell whose ``runs`` counts the real executions of cached bodies (see ``helpers.cached``)."""
    shell.user_ns["runs"] = Counter()
    return shell
