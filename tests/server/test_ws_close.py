"""How the websocket protocol closes a connection, over a real loopback server: the
protocol's close codes (not initialized, invalid body, unsupported data, oversized
frames), the per-IP rate limit, an idle connection and a server shutting down.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio
from trio_websocket import ConnectionClosed

from slipstream.wsprotocol import CloseCode, Status
from tests.helpers.clock import FakeClock
from tests.helpers.raw_http import RawClient, get
from tests.helpers.server import TOKEN, Served, StartServer, wait_for
from tests.helpers.ws import TIMEOUT, close_reason, connect, expect_close, reply, url_for

# --- close codes ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "packet",
    [
        {"type": 7, "id": 1, "filename": "small.txt", "resume_at": 0},
        {"type": 20, "id": 1},
        {"type": 7},
    ],
)
async def test_packet_before_initialize_closes_4200(served: Served, packet: Any) -> None:
    code = await expect_close(served, json.dumps(packet), initialize=False)
    assert code == (4200, "connection is not initialized")


async def test_no_initialize_within_the_timeout_closes_4200(served: Served) -> None:
    served.server.services.ws.options.init_timeout = 0.3
    async with connect(served, initialize=False) as ws:
        started = trio.current_time()
        assert await close_reason(ws) == (
            CloseCode.NOT_INITIALIZED,
            "connection is not initialized",
        )
        assert trio.current_time() - started < 2


async def test_failed_initializes_do_not_extend_the_timeout(served: Served) -> None:
    served.server.services.ws.options.init_timeout = 0.5
    async with connect(served, initialize=False) as ws:
        started = trio.current_time()
        with pytest.raises(ConnectionClosed) as info:
            with trio.fail_after(TIMEOUT):
                while True:
                    await ws.send_message(json.dumps({"type": 1, "id": 1, "token": "bad"}))
                    await ws.get_message()
                    await trio.sleep(0.1)
        assert info.value.reason is not None
        assert info.value.reason.code == CloseCode.NOT_INITIALIZED
        assert trio.current_time() - started < 2


@pytest.mark.parametrize(
    "frame",
    [
        "not json",
        "",
        "[1, 2]",
        '"a string"',
        "null",
        "{}",
        '{"type": "7", "id": 1, "filename": "a", "resume_at": 0}',
        '{"type": 7.0, "id": 1, "filename": "a", "resume_at": 0}',
        '{"type": true, "id": 1}',
        '{"type": 20}',
        '{"type": 20, "id": "1"}',
        '{"type": 999, "id": 1}',
        '{"type": 7, "filename": "a", "resume_at": 0}',
        '{"type": 7, "id": "1", "filename": "a", "resume_at": 0}',
        '{"type": 7, "id": 1, "resume_at": 0}',
        '{"type": 7, "id": 1, "filename": 5, "resume_at": 0}',
        '{"type": 7, "id": 1, "filename": null, "resume_at": 0}',
        '{"type": 7, "id": 1, "filename": "a"}',
        '{"type": 7, "id": 1, "filename": "a", "resume_at": "0"}',
        '{"type": 7, "id": 1, "filename": "a", "resume_at": 1.5}',
        '{"type": 7, "id": 1, "filename": "a", "resume_at": false}',
        '{"type": 7, "id": 1, "filename": "a", "resume_at": NaN}',
        '{"type": 1, "id": 1}',
        '{"type": 1, "id": 1, "token": 5}',
        '{"type": 1, "id": 1, "token": "t", "application": 3}',
        "[" * 30_000,
        '{"type": 7, "id": 1' + "1" * 5000 + "}",
    ],
)
async def test_invalid_body_closes_4302(served: Served, frame: str) -> None:
    assert await expect_close(served, frame) == (
        CloseCode.INVALID_REQUEST_BODY,
        "invalid request body",
    )


async def test_invalid_initialize_closes_4302(served: Served) -> None:
    frame = '{"type": 1, "id": 1, "token": ["x"]}'
    assert await expect_close(served, frame, initialize=False) == (4302, "invalid request body")


@pytest.mark.parametrize("initialize", [True, False])
async def test_binary_frame_closes_4304(served: Served, initialize: bool) -> None:
    frame = json.dumps({"type": 1, "id": 1, "token": TOKEN}).encode()
    code = await expect_close(served, frame, initialize=initialize)
    assert code == (CloseCode.UNSUPPORTED_DATA, "received unsupported data")


async def test_frame_over_64k_is_refused(served: Served) -> None:
    packet = {"type": 7, "id": 1, "filename": "a" * (64 * 1024), "resume_at": 0}
    code, _ = await expect_close(served, json.dumps(packet))
    assert code == 1009  # trio-websocket's "message too big"


async def test_frame_just_under_64k_is_served(served: Served) -> None:
    packet: dict[str, Any] = {"type": 7, "id": 1, "filename": "small.txt", "resume_at": 0}
    packet["pad"] = ""
    packet["pad"] = "x" * (64 * 1024 - len(json.dumps(packet)))
    text = json.dumps(packet)
    assert len(text) == 64 * 1024
    async with connect(served) as ws:
        await ws.send_message(text)
        assert (await reply(ws))["status"] == Status.OK


async def test_bad_handshake_is_refused_quickly(served: Served) -> None:
    client = await RawClient.connect(served.port)
    try:
        await client.send(get("/ws", "Upgrade: websocket", "Connection: Upgrade"))
        out = await client.read_until_eof(timeout=TIMEOUT)
    finally:
        await client.aclose()
    assert out.startswith(b"HTTP/1.1 4")


async def test_server_shutdown_says_going_away(start_server: StartServer) -> None:
    served = await start_server(limits={"drain_timeout": 0.3})
    async with connect(served) as ws:
        served.server.shutdown()
        code, _ = await close_reason(ws)
    assert code == 1001


async def test_connections_are_released(served: Served) -> None:
    hub = served.server.services.ws
    for _ in range(3):
        async with connect(served) as ws:
            assert (await url_for(ws, "small.txt"))["status"] == Status.OK
    assert await wait_for(lambda: hub.connections == 0)


# --- rate limit ----------------------------------------------------------------------


def rate_clock(served: Served) -> FakeClock:
    """Put a fake clock in ``served``'s rate limiter (moved by hand, no waiting)."""
    clock = FakeClock(start=0.0)
    served.server.services.ws.clock = clock
    return clock


async def test_rate_limit_blocks_then_expires(start_server: StartServer) -> None:
    served = await start_server(ws_rate_limit=4, ws_rate_window=30, ws_block_seconds=1.5)
    clock = rate_clock(served)
    async with connect(served) as ws:  # packet 1
        for i in range(3):  # packets 2..4
            assert (await url_for(ws, "small.txt", id=i))["status"] == Status.OK
        await ws.send_message(json.dumps({"type": 1, "id": 9, "token": TOKEN}))  # packet 5
        assert await close_reason(ws) == (CloseCode.RATE_LIMIT_HIT, "rate limit hit")
    # a new connection from the blocked IP is closed at once with the seconds left
    async with connect(served, initialize=False) as ws:
        assert await close_reason(ws) == (CloseCode.RATE_LIMIT_HIT, "rate limited, 2 seconds left")
    clock.advance(0.6)
    async with connect(served, initialize=False) as ws:
        assert await close_reason(ws) == (CloseCode.RATE_LIMIT_HIT, "rate limited, 1 seconds left")
    clock.advance(0.9)  # the block has ended
    async with connect(served) as ws:
        assert (await url_for(ws, "small.txt"))["status"] == Status.OK


async def test_rate_limit_counts_every_connection_of_an_ip(start_server: StartServer) -> None:
    served = await start_server(ws_rate_limit=3, ws_rate_window=30, ws_block_seconds=5)
    rate_clock(served)
    async with connect(served) as first, connect(served) as second:  # packets 1, 2
        assert (await url_for(first, "small.txt"))["status"] == Status.OK  # 3
        await second.send_message(json.dumps({"type": 1, "id": 1, "token": TOKEN}))  # 4
        assert await close_reason(second) == (CloseCode.RATE_LIMIT_HIT, "rate limit hit")
        await first.send_message(json.dumps({"type": 1, "id": 1, "token": TOKEN}))
        code, reason = await close_reason(first)
    assert (code, reason) == (CloseCode.RATE_LIMIT_HIT, "rate limited, 5 seconds left")


async def test_rate_window_slides(start_server: StartServer) -> None:
    served = await start_server(ws_rate_limit=3, ws_rate_window=1.0, ws_block_seconds=30)
    clock = rate_clock(served)
    async with connect(served) as ws:  # 1
        assert (await url_for(ws, "small.txt"))["status"] == Status.OK  # 2
        clock.advance(1.0)  # both left the window
        for i in range(3):
            assert (await url_for(ws, "small.txt", id=i))["status"] == Status.OK
        await ws.send_message(json.dumps({"type": 1, "id": 1, "token": TOKEN}))
        assert await close_reason(ws) == (CloseCode.RATE_LIMIT_HIT, "rate limit hit")


async def test_idle_initialized_connection_is_closed(served: Served) -> None:
    served.server.services.ws.options.idle_timeout = 0.3
    async with connect(served) as ws:
        assert (await url_for(ws, "small.txt"))["status"] == Status.OK
        assert await close_reason(ws) == (1000, "idle timeout")


async def test_server_shutdown_closes_open_websockets_at_once(start_server: StartServer) -> None:
    served = await start_server(limits={"drain_timeout": 30})
    async with connect(served) as ws:
        started = trio.current_time()
        served.server.shutdown()
        code, reason = await close_reason(ws)
        assert (code, reason) == (1001, "server shutting down")
        assert trio.current_time() - started < 5  # not held until the 30 s drain deadline
