"""Requests sent ahead (``Fetcher.send_ahead``, :mod:`slipstream.upstream_ahead`) against
a scripted upstream: the same request bytes as ``Fetcher.stream``, the answer's body read
from the pooled connection, which is reused; and every case it declines (None, the
connection closed), so the caller reads the general way.
"""

from __future__ import annotations

import socket

import trio

from slipstream.fetch import Fetcher
from slipstream.netpolicy import NetworkPolicy
from slipstream.upstream import Exchange
from slipstream.upstream_pool import size_near_receive_buffer
from tests.core.test_fetch_pump import BODY, Script, chunked, fetch_all, head, serve
from tests.helpers.fetch import OPEN, free_port


async def read_body(answer: Exchange, size: int) -> bytes:
    buffer = memoryview(bytearray(size + 16))
    out = bytearray()
    while count := await answer.readinto(buffer):
        out += buffer[:count]
    return bytes(out)


async def test_the_request_is_the_one_stream_sends_and_its_connection_is_reused(
    nursery: trio.Nursery,
) -> None:
    script = Script([[head(len(BODY)) + BODY]] * 3)
    upstream, url = await serve(nursery, script)
    headers = [("Range", "bytes=0-10239"), ("X-Trace", "a b")]
    async with Fetcher(OPEN) as f:
        assert await fetch_all(f, url, headers=headers) == (200, BODY)
        for _ in range(2):
            sent = await f.send_ahead(url, headers)
            assert sent is not None and sent.url == url
            answer = await sent.answer()
            assert answer is not None and answer.status == 200
            assert (b"content-length", str(len(BODY)).encode()) in answer.headers
            assert await read_body(answer, len(BODY)) == BODY
            await answer.finish()
            assert await sent.answer() is None  # (answered once)
    assert upstream.requests[1] == upstream.requests[0] == upstream.requests[2]
    assert upstream.connections == 1


async def test_several_requests_in_flight_each_on_its_own_connection(
    nursery: trio.Nursery,
) -> None:
    bodies = [bytes([n]) * (1000 + n) for n in range(3)]
    upstream, url = await serve(nursery, Script([[head(len(b)) + b] for b in bodies]))
    async with Fetcher(OPEN) as f:
        sent = [await f.send_ahead(url) for _ in bodies]
        got = []
        for request in sent:
            assert request is not None
            answer = await request.answer()
            assert answer is not None
            got.append(await read_body(answer, 2000))
            await answer.finish()
    assert sorted(got) == sorted(bodies)
    assert upstream.connections == 3


async def test_an_answer_outside_the_fast_subset_is_declined_and_closed(
    nursery: trio.Nursery,
) -> None:
    chunked_reply = head(None, "Transfer-Encoding: chunked\r\n") + chunked(BODY, 1000)
    script = Script([[chunked_reply], [head(3) + b"abc"]])
    upstream, url = await serve(nursery, script)
    async with Fetcher(OPEN) as f:
        sent = await f.send_ahead(url)
        assert sent is not None
        assert await sent.answer() is None
        assert await fetch_all(f, url) == (200, b"abc")  # on a new connection
    assert upstream.connections == 2


async def test_a_connection_closed_before_the_answer_is_declined(nursery: trio.Nursery) -> None:
    script = Script([[head(3) + b"abc"], [head(3) + b"def"]], close_after={0})
    _, url = await serve(nursery, script)
    async with Fetcher(OPEN) as f:
        assert await fetch_all(f, url) == (200, b"abc")
        await trio.sleep(0.05)  # the upstream has closed the pooled connection
        sent = await f.send_ahead(url)
        # Either the pool saw the close (a new connection answers), or the answer is
        # declined: never an error, never a wrong body.
        answer = await sent.answer() if sent is not None else None
        if answer is not None:
            assert await read_body(answer, 10) == b"def"
            await answer.finish()


async def test_a_slow_answer_is_declined_within_the_read_timeout(nursery: trio.Nursery) -> None:
    script = Script([[b"HTTP/1.1 200 OK\r\n", b"Content-Length: 3\r\n\r\nabc"]], pause=5.0)
    _, url = await serve(nursery, script)
    async with Fetcher(OPEN, read_timeout=0.2) as f:
        sent = await f.send_ahead(url)
        assert sent is not None
        with trio.fail_after(2):
            assert await sent.answer() is None


async def test_requests_it_does_not_take_are_declined(nursery: trio.Nursery) -> None:
    _, url = await serve(nursery, Script([[head(3) + b"abc"]] * 4))
    async with Fetcher(OPEN, pump=False) as f:
        assert not f.pumped
        assert await f.send_ahead(url) is None  # httpx reads everything
    async with Fetcher(OPEN) as f:
        assert f.pumped
        assert await f.send_ahead(url.replace("http://", "https://")) is None
        assert await f.send_ahead(url, [("X-Odd", " leading blank")]) is None
        assert await f.send_ahead(url, [("X-Name", "\u0394")]) is None  # not latin-1
        assert await f.send_ahead(f"http://127.0.0.1:{free_port()}/x") is None  # refused
    async with Fetcher(NetworkPolicy()) as f:
        assert await f.send_ahead(url) is None  # loopback is not allowed by default


async def test_closing_a_request_not_answered_closes_its_connection(nursery: trio.Nursery) -> None:
    upstream, url = await serve(nursery, Script([[head(3) + b"abc"]] * 2))
    async with Fetcher(OPEN) as f:
        sent = await f.send_ahead(url)
        assert sent is not None
        await sent.aclose()
        assert await sent.answer() is None
        assert await fetch_all(f, url) == (200, b"abc")
    assert upstream.connections == 2


async def test_connections_to_a_near_upstream_get_the_receive_buffer_asked(
    nursery: trio.Nursery,
) -> None:
    _, url = await serve(nursery, Script([[head(3) + b"abc"]] * 2))
    sizes = []
    for asked in (None, 3 * 1024 * 1024):
        async with Fetcher(OPEN, near_receive_buffer=asked) as f:
            sent = await f.send_ahead(url)
            assert sent is not None
            answer = await sent.answer()
            assert answer is not None
            conn = answer._conn  # (the answer holds the connection until it finishes)
            assert conn is not None
            sizes.append(conn.socket.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))
            await answer.finish()
    default, asked_size = sizes
    assert asked_size >= 3 * 1024 * 1024 > default  # (Linux books twice what is asked)


def test_a_socket_without_a_tcp_round_trip_keeps_the_kernels_buffer() -> None:
    far = trio.socket.from_stdlib_socket(socket.socketpair()[0])
    with far:
        before = far.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        assert not size_near_receive_buffer(far, 8 * 1024 * 1024)
        assert far.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) == before
