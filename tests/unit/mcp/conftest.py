"""Fixtures for the MCP endpoint's unit tests: a short socket path (Unix paths are bounded)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def sock() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="pgw-mcp-", dir="/tmp"))
    yield d / "gw.sock"
    shutil.rmtree(d, ignore_errors=True)
