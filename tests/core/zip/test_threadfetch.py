"""Members a send thread fetches itself (``Fetcher.plan_request``,
:class:`~slipstream.zip.threadfetch.ThreadUpstreams`) against a scripted upstream: the
same request bytes as ``Fetcher.stream``, keep-alive reuse, several requests in flight;
and every case it declines (None: the member is read the general way), with the
connections it could not use closed, never given back to the pool.

The thread's side runs in a worker thread, as in a send thread (it asks the event loop
for new connections with ``trio.from_thread``).
"""

from __future__ import annotations

import os
import select
import socket
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from functools import partial
from typing import TypeVar

import pytest
import trio

from slipstream.fetch import Fetcher
from slipstream.netpolicy import NetworkPolicy, Target, UrlRejected
from slipstream.upstream_pool import size_near_receive_buffer
from slipstream.zip.remote import RemoteObject
from slipstream.zip.threadfetch import PlainFetch, ThreadUpstreams
from tests.core.test_fetch_pump import BODY, Script, chunked, fetch_all, head, serve
from tests.helpers.fetch import OPEN, free_port

T = TypeVar("T")


def planned(f: Fetcher, url: str, size: int, headers: Sequence[tuple[str, str]] = ()) -> PlainFetch:
    """A member of ``size`` bytes at ``url`` (the whole object, nothing to compare)."""
    request = f.plan_request(url, headers)
    assert request is not None and request.url == url
    return PlainFetch(request, RemoteObject(url, size, None, None, None), 0, size)


async def in_thread(call: Callable[[], T]) -> T:
    return await trio.to_thread.run_sync(call)


def body_of(ups: ThreadUpstreams, fetch: PlainFetch) -> bytes | None:
    """The member's body as the thread would relay it (None: declined)."""
    answered = ups.answer(fetch)
    if answered is None:
        return None
    fd, first = answered
    out = bytearray(first)
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    while len(out) < fetch.length:
        try:
            chunk = os.read(fd, fetch.length - len(out))
        except BlockingIOError:
            assert poller.poll(2000), "the body stopped"
            continue
        assert chunk, "the upstream closed mid-body"
        out += chunk
    ups.done(fetch)
    return bytes(out)


@asynccontextmanager
async def upstreams(f: Fetcher) -> AsyncIterator[tuple[ThreadUpstreams, int]]:
    """A thread's connections (and its stop descriptor), closed as a send thread's are."""
    stop = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
    ups = ThreadUpstreams(f.pool, stop, lambda: None)
    try:
        yield ups, stop
    finally:
        with trio.CancelScope(shield=True):
            await ups.aclose()
        os.close(stop)


async def test_the_request_is_the_one_stream_sends_and_its_connection_is_reused(
    nursery: trio.Nursery,
) -> None:
    script = Script([[head(len(BODY)) + BODY]] * 3)
    upstream, url = await serve(nursery, script)
    headers = [("Range", "bytes=0-10239"), ("X-Trace", "a b")]
    async with Fetcher(OPEN) as f:
        assert await fetch_all(f, url, headers=headers) == (200, BODY)
        async with upstreams(f) as (ups, _):
            for _ in range(2):
                fetch = planned(f, url, len(BODY), headers)
                assert await in_thread(partial(body_of, ups, fetch)) == BODY
        assert f.pool.idle_count() == 1  # given back to the pool
    assert upstream.requests[1] == upstream.requests[0] == upstream.requests[2]
    assert upstream.connections == 1


async def test_several_requests_in_flight_each_on_its_own_connection(
    nursery: trio.Nursery,
) -> None:
    bodies = [bytes([n]) * 1000 for n in range(3)]
    upstream, url = await serve(nursery, Script([[head(len(b)) + b] for b in bodies]))
    async with Fetcher(OPEN) as f, upstreams(f) as (ups, _):
        fetches = [planned(f, url, 1000) for _ in bodies]
        for fetch in fetches:
            await in_thread(partial(ups.send, fetch))
        assert ups.outstanding == 3
        got = [await in_thread(partial(body_of, ups, fetch)) for fetch in fetches]
        assert ups.outstanding == 0
    assert got == bodies  # (each connection answers its own request)
    assert upstream.connections == 3


@pytest.mark.parametrize(
    "reply",
    [
        head(None, "Transfer-Encoding: chunked\r\n") + chunked(BODY, 1000),  # not plain
        head(len(BODY) - 1) + BODY[:-1],  # not the member's length
        head(len(BODY)) + BODY + b"HTTP/1.1 200 OK\r\n",  # more than announced
        b"HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\nabc",
    ],
    ids=["chunked", "short", "longer", "404"],
)
async def test_an_answer_that_is_not_the_member_is_declined_and_its_connection_closed(
    nursery: trio.Nursery, reply: bytes
) -> None:
    upstream, url = await serve(nursery, Script([[reply], [head(3) + b"abc"]]))
    async with Fetcher(OPEN) as f:
        async with upstreams(f) as (ups, _):
            fetch = planned(f, url, len(BODY))
            assert await in_thread(partial(body_of, ups, fetch)) is None
            assert ups.open_count == 1
            await ups.close_dropped()  # (the loop does, while the thread runs)
            assert ups.open_count == 0
        assert f.pool.idle_count() == 0  # closed, not given back
        assert await fetch_all(f, url) == (200, b"abc")  # on a new connection
    assert upstream.connections == 2


async def test_an_answer_with_connection_close_is_not_reused(nursery: trio.Nursery) -> None:
    closing = head(3, "Connection: close\r\n") + b"abc"
    upstream, url = await serve(nursery, Script([[closing], [head(3) + b"def"]]))
    async with Fetcher(OPEN) as f, upstreams(f) as (ups, _):
        first, second = planned(f, url, 3), planned(f, url, 3)
        assert await in_thread(partial(body_of, ups, first)) == b"abc"
        assert await in_thread(partial(body_of, ups, second)) == b"def"
    assert upstream.connections == 2


async def test_a_connection_the_upstream_closed_is_not_written_on(nursery: trio.Nursery) -> None:
    script = Script([[head(3) + b"abc"], [head(3) + b"def"]], close_after={0})
    upstream, url = await serve(nursery, script)
    async with Fetcher(OPEN) as f, upstreams(f) as (ups, _):
        first, second = planned(f, url, 3), planned(f, url, 3)
        assert await in_thread(partial(body_of, ups, first)) == b"abc"
        await trio.sleep(0.05)  # the upstream has closed the idle connection
        assert await in_thread(partial(body_of, ups, second)) == b"def"
    assert upstream.connections == 2


async def test_a_slow_answer_is_declined_within_the_read_timeout(nursery: trio.Nursery) -> None:
    script = Script([[b"HTTP/1.1 200 OK\r\n", b"Content-Length: 3\r\n\r\nabc"]], pause=5.0)
    _, url = await serve(nursery, script)
    async with Fetcher(OPEN, read_timeout=0.2) as f, upstreams(f) as (ups, _):
        fetch = planned(f, url, 3)
        with trio.fail_after(2):
            assert await in_thread(partial(body_of, ups, fetch)) is None


async def test_a_stopped_thread_stops_waiting_for_an_answer(nursery: trio.Nursery) -> None:
    script = Script([[b"HTTP/1.1 200 OK\r\n", b"Content-Length: 3\r\n\r\nabc"]], pause=5.0)
    _, url = await serve(nursery, script)
    async with Fetcher(OPEN, read_timeout=30) as f, upstreams(f) as (ups, stop):
        fetch = planned(f, url, 3)
        await in_thread(partial(ups.send, fetch))
        os.eventfd_write(stop, 1)
        with trio.fail_after(2):
            assert await in_thread(partial(body_of, ups, fetch)) is None


async def test_requests_it_does_not_take_are_not_planned(nursery: trio.Nursery) -> None:
    _, url = await serve(nursery, Script([[head(3) + b"abc"]] * 4))
    async with Fetcher(OPEN, pump=False) as f:
        assert not f.pumped
        assert f.plan_request(url) is None  # httpx reads everything
    async with Fetcher(OPEN) as f:
        assert f.pumped
        assert f.plan_request(url.replace("http://", "https://")) is None
        assert f.plan_request(url, [("X-Odd", " leading blank")]) is None
        assert f.plan_request(url, [("X-Name", "\u0394")]) is None  # not latin-1
        assert f.plan_request(url, check_url=refuse) is None  # the caller's check


def refuse(target: Target) -> None:
    raise UrlRejected("DOMAIN_BLOCKED", f"{target.host} is not on the list")


async def test_a_refused_connection_is_declined(nursery: trio.Nursery) -> None:
    async with Fetcher(OPEN) as f, upstreams(f) as (ups, _):
        fetch = planned(f, f"http://127.0.0.1:{free_port()}/x", 3)
        assert await in_thread(partial(body_of, ups, fetch)) is None
        assert ups.outstanding == 0
    upstream, url = await serve(nursery, Script([[head(3) + b"abc"]]))
    async with Fetcher(NetworkPolicy()) as f, upstreams(f) as (ups, _):
        fetch = planned(f, url, 3)  # the URL passes; its address is checked at connect
        assert await in_thread(partial(body_of, ups, fetch)) is None
    assert upstream.connections == 0  # loopback is not allowed by default


async def test_a_request_not_answered_has_its_connection_closed(nursery: trio.Nursery) -> None:
    upstream, url = await serve(nursery, Script([[head(3) + b"abc"]] * 2))
    async with Fetcher(OPEN) as f:
        async with upstreams(f) as (ups, _):
            fetch = planned(f, url, 3)
            await in_thread(partial(ups.send, fetch))
        assert f.pool.idle_count() == 0
        assert await fetch_all(f, url) == (200, b"abc")
    assert upstream.connections == 2


async def test_connections_to_a_near_upstream_get_the_receive_buffer_asked(
    nursery: trio.Nursery,
) -> None:
    _, url = await serve(nursery, Script([[head(3) + b"abc"]] * 2))
    port = int(url.split(":")[2].split("/")[0])
    sizes = []
    for asked in (None, 3 * 1024 * 1024):
        async with Fetcher(OPEN, near_receive_buffer=asked) as f:
            conn, _ = await f.pool.acquire("127.0.0.1", port)
            sizes.append(conn.socket.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))
            await conn.aclose()
    default, asked_size = sizes
    assert asked_size >= 3 * 1024 * 1024 > default  # (Linux books twice what is asked)


def test_a_socket_without_a_tcp_round_trip_keeps_the_kernels_buffer() -> None:
    far = trio.socket.from_stdlib_socket(socket.socketpair()[0])
    with far:
        before = far.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        assert not size_near_receive_buffer(far, 8 * 1024 * 1024)
        assert far.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) == before
