"""A slow upstream for ``zip.py``: a TCP proxy that holds back every response's first byte.

Usage: ``_delay_proxy.py UPSTREAM_PORT DELAY_MS PORT``.  Each client connection gets a
connection of its own to the upstream (nginx on 127.0.0.1, HTTP/1.1 keep-alive, so one
connection carries many requests), and two tasks copy the bytes:

- client to upstream: bytes are forwarded as they come; whenever they complete a request
  head (its blank line, ``CRLF CRLF``), the arrival time is noted first;
- upstream to client: no byte is forwarded before ``DELAY_MS`` after the latest request
  head arrived.

Why that is enough: a client that does not pipeline (slipstream's fetcher, httpx, curl)
sends its next request only once it has read the whole previous response, so every
upstream byte that follows request *i*'s head belongs to response *i*.  Response *i*'s
first byte therefore leaves no earlier than ``DELAY_MS`` after its head arrived, and the
rest of its body flows at full speed (the deadline has passed by then).  The requests
carry no body (``GET``, ``HEAD``), so a blank line always ends a head: the proxy parses
nothing else.  A pipelining client would see the tail of a response held back too; the
benchmark has none.  The proxy adds one more loopback hop and a Trio copy loop, so even
with a zero delay it is slower than nginx alone.
"""

from __future__ import annotations

import sys

import trio

MIB = 1024 * 1024
IDLE_S = 600.0  # a connection with no traffic either way for this long is closed


async def proxy(client: trio.SocketStream, upstream_port: int, delay: float) -> None:
    """Copy both ways between ``client`` and a fresh upstream connection, as above."""
    release_at = 0.0  # trio.current_time() before which no upstream byte is forwarded
    upstream = await trio.open_tcp_stream("127.0.0.1", upstream_port)
    async with client, upstream:
        with trio.CancelScope(deadline=trio.current_time() + IDLE_S) as idle:

            def busy() -> None:
                idle.deadline = trio.current_time() + IDLE_S

            async def requests() -> None:
                nonlocal release_at
                tail = b""  # the last 3 bytes: a blank line may straddle two reads
                while data := await client.receive_some(65536):
                    busy()
                    seen = tail + data
                    if b"\r\n\r\n" in seen:
                        release_at = trio.current_time() + delay
                    tail = seen[-3:]
                    await upstream.send_all(data)
                idle.cancel()

            async def responses() -> None:
                while data := await upstream.receive_some(MIB):
                    busy()
                    await trio.sleep_until(release_at)
                    await client.send_all(data)
                idle.cancel()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(requests)
                nursery.start_soon(responses)


async def handle(client: trio.SocketStream, upstream_port: int, delay: float) -> None:
    """One connection; a side that closes or breaks ends it quietly."""
    async with client:
        try:
            await proxy(client, upstream_port, delay)
        except* (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass  # from the nursery, in a group: a side went away


def main() -> None:
    upstream_port, delay_ms, port = (int(arg) for arg in sys.argv[1:4])
    delay = delay_ms / 1000

    async def serve() -> None:
        await trio.serve_tcp(lambda s: handle(s, upstream_port, delay), port, host="127.0.0.1")

    trio.run(serve)


if __name__ == "__main__":
    main()
