"""The websocket protocol from the client side: connecting, asking, and reading close frames."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio_websocket
from trio_websocket import ConnectionClosed, WebSocketConnection

from slipstream.wsprotocol import Status
from tests.helpers.server import TOKEN, Served

TIMEOUT = 5.0


def ws_url(served: Served) -> str:
    return f"ws://127.0.0.1:{served.port}/ws"


@asynccontextmanager
async def connect(
    served: Served, *, initialize: bool = True, application: str | None = None
) -> AsyncIterator[WebSocketConnection]:
    """A websocket to ``served``, initialized with the valid token unless told otherwise."""
    async with trio_websocket.open_websocket_url(
        ws_url(served), connect_timeout=TIMEOUT, disconnect_timeout=TIMEOUT
    ) as ws:
        if initialize:
            packet: dict[str, Any] = {"type": 1, "id": 0, "token": TOKEN}
            if application is not None:
                packet["application"] = application
            assert await ask(ws, packet) == {"id": 0, "status": Status.OK}
        yield ws


async def ask(ws: WebSocketConnection, packet: dict[str, Any]) -> Any:
    """Send one packet, return the next reply."""
    await ws.send_message(json.dumps(packet))
    return await reply(ws)


async def reply(ws: WebSocketConnection) -> Any:
    with trio.fail_after(TIMEOUT):
        return json.loads(await ws.get_message())


async def close_reason(ws: WebSocketConnection) -> tuple[int, str | None]:
    """Wait for the server to close ``ws``; its close code and reason."""
    with trio.fail_after(TIMEOUT), pytest.raises(ConnectionClosed) as info:
        while True:
            message = await ws.get_message()
            raise AssertionError(f"expected a close, got {message!r}")
    reason = info.value.reason
    assert reason is not None
    return reason.code, reason.reason


async def url_for(ws: WebSocketConnection, filename: str, resume_at: int = 0, id: int = 7) -> Any:
    return await ask(ws, {"type": 7, "id": id, "filename": filename, "resume_at": resume_at})


async def expect_close(
    served: Served, frame: str | bytes, *, initialize: bool = True
) -> tuple[int, str | None]:
    async with connect(served, initialize=initialize) as ws:
        await ws.send_message(frame)
        return await close_reason(ws)
