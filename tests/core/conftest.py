"""Fixtures of the core tests: ``digest_cache`` (a fresh cache in the test's directory),
``target`` (a loopback upstream an attack on the fetcher would like to reach) and
``fetch_engine`` (run a fetcher test on the body pump and on httpx)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from slipstream.digests import DigestCache
from tests.helpers import fetch
from tests.helpers.upstream import Blob, Upstream


@pytest.fixture(params=["pump", "httpx"])
def fetch_engine(request: pytest.FixtureRequest) -> Iterator[str]:
    """Fetchers made by ``tests.helpers.fetch.fetcher`` use this path during the test."""
    fetch.ENGINE["pump"] = request.param == "pump"
    try:
        yield str(request.param)
    finally:
        fetch.ENGINE["pump"] = True


@pytest.fixture
def digest_cache(tmp_path: Path) -> Iterator[DigestCache]:
    """A :class:`DigestCache` on ``state/digests.sqlite3`` under ``tmp_path``, closed after."""
    with DigestCache(tmp_path / "state" / "digests.sqlite3") as c:
        yield c


@pytest.fixture
async def target(nursery: trio.Nursery) -> Upstream:
    """A second upstream: where an attack would like to land (must see no connection)."""
    server = Upstream()
    await nursery.start(server.run)
    server.add("/secret", Blob(b"internal secret\n"))
    return server
