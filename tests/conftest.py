"""Shared fixtures: ``twin_kind`` (each twin of an ext module) and a loopback ``upstream``."""

from __future__ import annotations

import pytest
import trio

from tests.helpers.upstream import Upstream


@pytest.fixture(params=["py", "c"])
def twin_kind(request: pytest.FixtureRequest) -> str:
    """``"py"`` or ``"c"``; ext tests pass it to :func:`tests.helpers.twins.load_twin`."""
    return str(request.param)


@pytest.fixture
async def upstream(nursery: trio.Nursery) -> Upstream:
    """A loopback :class:`~tests.helpers.upstream.Upstream`, stopped when the test ends."""
    server = Upstream()
    await nursery.start(server.run)
    return server
