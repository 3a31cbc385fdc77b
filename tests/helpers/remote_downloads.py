"""Remote-download jobs over HTTP: a download-enabled server whose fetches reach the upstream.

:func:`routed_app` resolves every ``*.example`` name to :data:`PUBLIC_ADDRESS` and dials
the loopback upstream for it, so the network policy sees public addresses.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpcore
import httpx
import trio

from slipstream.server import App
from tests.helpers.server import Served, StartServer
from tests.helpers.upstream import Upstream

PUBLIC_ADDRESS = "93.184.215.14"
"""What every ``*.example`` name resolves to; the dialer sends it to the upstream."""
LOOPBACK_NAME = "rebind.example"
"""A name that resolves to 127.0.0.1 (refused unless private networks are allowed)."""
JOB_TIMEOUT = 10.0

COMMON_KEYS = ["id", "filename", "file_path", "directory", "url", "status", "start_time"]
ACTIVE_KEYS = {*COMMON_KEYS, "current_size", "expected_size", "progress_percentage"}
ACTIVE_KEYS |= {"speed_bytes_per_s", "eta_s"}
HISTORY_KEYS = {*COMMON_KEYS, "total_bytes", "end_time", "error", "sha256"}
REPLY_KEYS = {"download_id", "filename", "path", "success", "message", "error"}


def payload(size: int, seed: int = 1) -> bytes:
    """``size`` reproducible random bytes."""
    return random.Random(seed).randbytes(size)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def routed_app(upstream: Upstream) -> App:
    """An App whose fetches resolve ``*.example`` names to the upstream."""

    async def resolver(host: str, port: int) -> list[str]:
        if host == LOOPBACK_NAME:
            return ["127.0.0.1"]
        if host.endswith(".example"):
            return [PUBLIC_ADDRESS]
        if re.fullmatch(r"[0-9.]+", host):
            return [host]
        raise OSError(f"unknown test host {host}")

    async def dialer(address: str, port: int, timeout: float | None) -> httpcore.AsyncNetworkStream:
        assert upstream.port is not None
        if address == PUBLIC_ADDRESS:
            address, port = "127.0.0.1", upstream.port
        return await httpcore.TrioBackend().connect_tcp(address, port, timeout)

    return App(resolver=resolver, dialer=dialer)


@dataclass
class Env:
    """A download-enabled server, the upstream it reaches, and an authenticated client."""

    served: Served
    upstream: Upstream
    http: httpx.AsyncClient

    @property
    def root(self) -> Path:
        return self.served.root

    def url(self, path: str, host: str | None = None) -> str:
        """The upstream URL of ``path`` (by loopback address, or via an ``.example`` host)."""
        if host is None:
            return self.upstream.url(path)
        return f"http://{host}{path}"

    async def start(self, url: str, directory: str = "dl", **params: str) -> httpx.Response:
        """``GET /{directory}?download=url&...``."""
        return await self.http.get(f"/{directory}", params={"download": url, **params})

    async def start_ok(self, url: str, directory: str = "dl", **params: str) -> str:
        """Start a job that must be accepted (202); its id."""
        response = await self.start(url, directory, **params)
        assert response.status_code == 202, response.text
        job_id: str = response.json()["download_id"]
        return job_id

    async def wait(self, job_id: str) -> dict[str, Any]:
        """Wait until ``job_id`` finished; its row of ``GET /?download_history=``."""
        jobs = self.served.server.services.jobs
        assert jobs is not None
        with trio.fail_after(JOB_TIMEOUT):
            await jobs.wait(job_id)
        rows = [row for row in await self.history() if row["id"] == job_id]
        assert len(rows) == 1, rows
        return rows[0]

    async def fetch(self, url: str, directory: str = "dl", **params: str) -> dict[str, Any]:
        """Start a job and wait for it: its history row."""
        return await self.wait(await self.start_ok(url, directory, **params))

    async def history(self, directory: str = "") -> list[dict[str, Any]]:
        response = await self.http.get(f"/{directory}", params={"download_history": ""})
        assert response.status_code == 200, response.text
        rows: list[dict[str, Any]] = response.json()["history"]
        return rows

    async def active(self, directory: str | None = None) -> list[dict[str, Any]]:
        """``GET /{directory}?downloads=``, or ``/api/v1/downloads`` when None."""
        if directory is None:
            response = await self.http.get("/api/v1/downloads")
        else:
            response = await self.http.get(f"/{directory}", params={"downloads": ""})
        assert response.status_code == 200, response.text
        rows: list[dict[str, Any]] = response.json()["downloads"]
        return rows

    def listing(self, directory: str = "dl") -> list[str]:
        """Names in ``root/directory`` (hidden ``.part`` files included), sorted."""
        path = self.root / directory
        return sorted(os.listdir(path)) if path.is_dir() else []


MakeEnv = Callable[..., Awaitable[Env]]


@asynccontextmanager
async def env_factory(start_server: StartServer, upstream: Upstream) -> AsyncIterator[MakeEnv]:
    """``await make(**config)`` starts a download-enabled server (overrides applied);
    the clients it opened close when the block ends."""
    async with AsyncExitStack() as stack:

        async def make(**overrides: Any) -> Env:
            config: dict[str, Any] = {"allow_download": True, "allow_private_networks": True}
            config.update(overrides)
            served = await start_server(app=routed_app(upstream), **config)
            http = await stack.enter_async_context(served.client(headers=served.auth))
            return Env(served, upstream, http)

        yield make


def assert_failed(row: dict[str, Any], key: str) -> None:
    """A failed history row with ``key`` and the seed's nulls."""
    assert row["status"] == "failed", row
    assert row["error"] == key
    assert row["total_bytes"] is None
    assert row["sha256"] is None
    assert row["start_time"] <= row["end_time"]
