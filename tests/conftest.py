"""Shared fixtures: ``twin_kind`` (each twin of an ext module), a loopback ``upstream``, and
``loose_umask`` (022, so that nothing comes out owner-only by accident); the hypothesis
profile of the suite."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import trio
from hypothesis import settings

from tests.helpers.upstream import Upstream

# No per-example deadline: the suite runs two workers on a shared machine, where a file
# system call can stall for half a second; a slow example is not a wrong one.
settings.register_profile("slipstream", deadline=None)
settings.load_profile("slipstream")


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


@pytest.fixture
def loose_umask() -> Iterator[None]:
    """umask 022 while the test runs (files would be 0644 unless made private on purpose)."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)
