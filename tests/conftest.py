"""Shared fixtures.  ``ext_twin`` runs a test against both twins of an ext module."""

from __future__ import annotations

from types import ModuleType

import pytest
import trio

from slipstream.ext import twin
from tests.upstream import Upstream


@pytest.fixture(params=["py", "c"])
def twin_kind(request: pytest.FixtureRequest) -> str:
    """``"py"`` or ``"c"``; ext tests use it via ``load_twin``."""
    return str(request.param)


def load_twin(name: str, kind: str) -> ModuleType:
    """Import ``slipstream.ext._<name>_<kind>``; the compiled twin must exist (no skip)."""
    return twin(name, kind)


@pytest.fixture
async def upstream(nursery: trio.Nursery) -> Upstream:
    """A loopback :class:`~tests.upstream.Upstream`, stopped when the test ends."""
    server = Upstream()
    await nursery.start(server.run)
    return server
