"""Fixtures for the server suite: a real server on a loopback port.

``served`` starts :class:`~slipstream.server.Server` over the tree of
:func:`tests.helpers.server.build_tree` in the pytest-trio ``nursery``; ``start_server``
does the same with config overrides; ``raw_client`` is a raw connection to ``served``.
``make_env`` / ``env`` are download-enabled servers whose fetches reach the loopback
``upstream``; ``three`` puts three small zip members on it.  ``zip_sender`` runs a test twice: zip
replies sent by a send thread, then by the event loop.
"""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio

import slipstream.zip.stream
from tests.helpers.raw_http import RawClient
from tests.helpers.remote_downloads import Env, MakeEnv, env_factory
from tests.helpers.server import Served, StartServer, start_in
from tests.helpers.upstream import Upstream
from tests.helpers.zip import add_three


@pytest.fixture(params=[True, False], ids=["send-thread", "event-loop"])
def zip_sender(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Whether zip replies of remote members get a send thread (both, one run each)."""
    threaded: bool = request.param
    monkeypatch.setattr(slipstream.zip.stream, "SEND_THREAD", threaded)
    return threaded


@pytest.fixture
async def start_server(tmp_path: Path, nursery: trio.Nursery) -> StartServer:
    """``await start_server(**overrides)``: a server over a fresh tree (see :func:`start_in`).

    Servers stop when the test ends (the ``nursery`` fixture is cancelled).
    """

    async def start(**kwargs: Any) -> Served:
        return await start_in(
            nursery, Path(tempfile.mkdtemp(prefix="site", dir=tmp_path)), **kwargs
        )

    return start


@pytest.fixture
async def served(start_server: StartServer) -> Served:
    """A server with the default test config."""
    return await start_server()


@pytest.fixture
async def raw_client(served: Served) -> AsyncIterator[RawClient]:
    """A raw connection to ``served``, closed after the test."""
    client = await served.raw()
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def make_env(start_server: StartServer, upstream: Upstream) -> AsyncIterator[MakeEnv]:
    """``await make_env(**config)``: a download-enabled server (see :func:`env_factory`)."""
    async with env_factory(start_server, upstream) as make:
        yield make


@pytest.fixture
async def env(make_env: MakeEnv) -> Env:
    """A server with the default download test config."""
    return await make_env()


@pytest.fixture
async def three(upstream: Upstream) -> list[str]:
    """Three small members on the upstream (:func:`~tests.helpers.zip.add_three`); their URIs."""
    return add_three(upstream)
