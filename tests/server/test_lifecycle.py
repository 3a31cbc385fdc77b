"""Graceful shutdown of an embedded server: ``Server.shutdown()`` drains, then ``run`` returns."""

from __future__ import annotations

import errno
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from slipstream.ext import IMPLEMENTATIONS
from tests.helpers.fds import open_fd_count, settle_fds
from tests.helpers.raw_http import RawClient, get
from tests.helpers.server import Served, download_target, start_in, wait_for


@asynccontextmanager
async def hosted(base: Path, **kwargs: Any) -> AsyncIterator[tuple[Served, trio.Event]]:
    """A server plus an event set when its ``run()`` has returned."""
    stopped = trio.Event()

    async def host(*, task_status: trio.TaskStatus[Served]) -> None:
        try:
            async with trio.open_nursery() as inner:
                task_status.started(await start_in(inner, base, **kwargs))
        finally:
            stopped.set()

    async with trio.open_nursery() as outer:
        served: Served = await outer.start(host)
        try:
            yield served, stopped
        finally:
            outer.cancel_scope.cancel()


HASH_STOP = 10.0 if IMPLEMENTATIONS.get("digest") == "python" else 0.0
"""Extra seconds a stop may take while a large file is hashed in the background: a
worker thread finishes its current 4 MiB chunk before it gives up, which takes the
byte-at-a-time pure-Python CRCs (``SLIPSTREAM_PURE=1``) seconds, the compiled ones ms."""


async def stops_within(stopped: trio.Event, seconds: float) -> float:
    """Wait for ``stopped``; return how long it took (fails after ``seconds``)."""
    started = trio.current_time()
    with trio.fail_after(seconds):
        await stopped.wait()
    return trio.current_time() - started


async def assert_refused(port: int) -> None:
    with pytest.raises(OSError) as info:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.aclose()
    assert info.value.errno in (errno.ECONNREFUSED, None)


async def test_shutdown_with_no_connections_returns_promptly(tmp_path: Path) -> None:
    async with hosted(tmp_path) as (served, stopped):
        client = await served.raw()
        await client.send(get("/healthz", "Connection: close"))
        assert (await client.read_response()).status == 200
        await client.aclose()
        served.server.shutdown()
        assert await stops_within(stopped, 2) < 1.0
        await assert_refused(served.port)


async def test_shutdown_closes_idle_keep_alive_connections_at_once(tmp_path: Path) -> None:
    async with hosted(tmp_path, limits={"idle_timeout": 30}) as (served, stopped):
        clients = [await served.raw() for _ in range(3)]
        for client in clients:
            await client.send(get("/healthz"))
            assert (await client.read_response()).status == 200
        served.server.shutdown()
        for client in clients:
            assert await client.is_closed(timeout=1)
            await client.aclose()
        assert await stops_within(stopped, 2) < 1.0


async def test_shutdown_drains_a_slow_download_to_the_last_byte(tmp_path: Path) -> None:
    limits = {"drain_timeout": 10, "send_timeout": 5}
    async with hosted(tmp_path, limits=limits, max_download_size=0) as (served, stopped):
        data = os.urandom(24 * 1024 * 1024)  # more than the socket buffers hold
        (served.root / "large.bin").write_bytes(data)
        idle = await served.raw()
        client = await served.raw()
        await client.send(get(download_target("large.bin")))
        first = await client.receive()
        assert first.startswith(b"HTTP/1.1 200 ")
        served.server.shutdown()
        # the idle one goes now; the busy one keeps streaming
        assert await idle.is_closed(timeout=1)
        await assert_refused(served.port)
        assert await wait_for(lambda: served.server.connections == 1)
        assert not stopped.is_set()
        received = bytearray(first)
        while chunk := await client.receive(256 * 1024):
            received += chunk
            await trio.sleep(0.005)  # a slow reader
        head, _, body = bytes(received).partition(b"\r\n\r\n")
        assert len(body) == len(data)
        assert body == data
        assert b"content-length: " + str(len(data)).encode() in head.lower()
        await stops_within(stopped, 2 + HASH_STOP)  # large.bin is hashed in the background
        for c in (idle, client):
            await c.aclose()


async def test_request_finishing_during_drain_is_answered_then_closed(tmp_path: Path) -> None:
    async with hosted(tmp_path) as (served, stopped):
        client = await served.raw()
        await client.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # head still incomplete
        assert await wait_for(lambda: served.server.connections == 1)
        served.server.shutdown()
        await trio.sleep(0.1)
        await client.send(b"\r\n")
        response = await client.read_response()
        assert response.status == 200
        assert response.header("connection") == "close"
        assert await client.is_closed(timeout=1)
        await stops_within(stopped, 2)
        await client.aclose()


async def test_drain_timeout_cuts_clients_that_never_finish(tmp_path: Path) -> None:
    limits = {"drain_timeout": 0.5, "send_timeout": 30}
    async with hosted(tmp_path, limits=limits, max_download_size=0) as (
        served,
        stopped,
    ):
        with (served.root / "huge.bin").open("wb") as handle:
            handle.truncate(256 * 1024 * 1024)
        client = await served.raw()
        await client.send(get(download_target("huge.bin")))
        assert (await client.receive()).startswith(b"HTTP/1.1 200 ")
        served.server.shutdown()  # the client never reads again
        waited = await stops_within(stopped, 5 + HASH_STOP)
        assert 0.3 <= waited < 3.0 + HASH_STOP, waited  # far below the 30 s send timeout
        await client.aclose()


async def test_shutdown_releases_every_descriptor(tmp_path: Path) -> None:
    await trio.sleep(0.05)
    baseline = open_fd_count()
    async with hosted(tmp_path) as (served, stopped):
        clients: list[RawClient] = []
        for _ in range(4):
            client = await served.raw()
            await client.send(get(download_target("random.bin")))
            assert await client.receive()
            clients.append(client)
        served.server.shutdown()
        for client in clients:  # read them all to the end
            while await client.receive(1 << 20):
                pass
        await stops_within(stopped, 5)
        for client in clients:
            await client.aclose()
    count = await settle_fds(baseline)
    assert count <= baseline, f"{count - baseline} descriptors left open"


async def test_cancelling_the_nursery_stops_the_server(tmp_path: Path) -> None:
    await trio.sleep(0.05)
    baseline = open_fd_count()
    with trio.move_on_after(10):
        async with trio.open_nursery() as nursery:
            served = await start_in(nursery, tmp_path)
            client = await served.raw()
            await client.send(get(download_target("random.bin")))
            assert await client.receive()
            nursery.cancel_scope.cancel()
    await client.read_until_eof(timeout=5)  # the server closed its side
    await client.aclose()
    await assert_refused(served.port)
    count = await settle_fds(baseline)
    assert count <= baseline, f"{count - baseline} descriptors left open"
