"""A one-cell platform on the memory bus, for API-level staging checks (the two-cell platform
on both buses is in tests/integration/conftest.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from overcast.testing.platform import Platform, memory_buses, start_platform


@pytest.fixture
async def memory_platform(tmp_path: Path) -> AsyncIterator[Platform]:
    """One bus is enough for API-level checks."""
    platform = await start_platform(tmp_path, make_bus=memory_buses())
    try:
        await platform.add_cell("cell-a")
        await platform.wait_for_cells(1)
        yield platform
    finally:
        await platform.close()
