"""The server's services: built once by ``open_app`` (frozen, nothing set from outside),
running while the server serves, all closed together; a background service that fails
is logged and contained instead of stopping the server."""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import trio

from slipstream.background import spawn
from slipstream.server import App, Config, Server, Services, open_app
from slipstream.server.config import ConfigError
from slipstream.zip.state import ZipState
from tests.helpers.server import StartServer, wait_for


def config_for(tmp_path: Path, **overrides: Any) -> Config:
    return Config(root=tmp_path / "root", port=0, tokens=["t"], access_log=False, **overrides)


async def test_open_app_builds_every_service_and_closes_them_all(tmp_path: Path) -> None:
    cancelled = trio.Event()

    async def background_work() -> None:
        try:
            await trio.sleep_forever()
        finally:
            cancelled.set()

    config = config_for(tmp_path)
    async with open_app(config, public_url="http://files.example/") as services:
        assert isinstance(services, Services)
        assert services.public_url == "http://files.example"
        optional = {"metrics", "metrics_router"}  # None while metrics are off (the default)
        fields = [f.name for f in dataclasses.fields(services)]
        assert all(getattr(services, name) is not None for name in fields if name not in optional)
        assert services.metrics is None and services.metrics_router is None
        assert services.jobs.active() == [] and services.ws.sessions == set()
        with pytest.raises(dataclasses.FrozenInstanceError):
            services.jobs = None  # type: ignore[misc]
        spawn(services.background, "work", background_work)
        await trio.sleep(0)
    assert cancelled.is_set()
    assert services.digests.closed
    with pytest.raises(sqlite3.ProgrammingError):
        services.job_store.active()
    with pytest.raises(sqlite3.ProgrammingError):
        services.zip_state.next_expiry()


async def test_open_app_needs_a_public_url(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="public URL"):
        async with open_app(config_for(tmp_path)):
            raise AssertionError("opened without a public URL")
    async with open_app(config_for(tmp_path, public_url="https://cdn.example")) as services:
        assert services.public_url == "https://cdn.example"


async def test_a_server_has_services_only_while_it_runs(tmp_path: Path) -> None:
    server = Server(config_for(tmp_path))
    with pytest.raises(RuntimeError, match="not running"):
        server.services  # noqa: B018
    async with trio.open_nursery() as nursery:
        port = await nursery.start(server.run)
        assert server.services.public_url == f"http://127.0.0.1:{port}"
        assert server.services.config is server.config
        server.shutdown()
    with pytest.raises(RuntimeError, match="not running"):
        server.services  # noqa: B018


class BrokenSweepState(ZipState):
    """A store whose expiry lookup fails: the zip service's sweeper dies at once."""

    def next_expiry(self) -> float | None:
        raise RuntimeError("sweep lookup failed (injected)")


async def test_a_failing_background_service_is_logged_and_the_server_keeps_serving(
    start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    served = await start_server(app=App(zip_state=BrokenSweepState))
    assert await wait_for(lambda: "sweep lookup failed (injected)" in caplog.text)
    assert "background task zip manifest sweeper failed" in caplog.text
    async with served.client() as client:
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        download = await client.get(
            "/api/download", params={"filepath": "small.txt"}, headers=served.auth
        )
    assert download.content == served.files["small.txt"]
