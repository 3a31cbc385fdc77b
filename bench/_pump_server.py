"""The pump floor of ``zip.py``: the least a Trio server does to relay an upstream body.

Usage: ``_pump_server.py UPSTREAM_PORT PORT``.  For each connection it reads one
request head, ``GET /plain/<path>``, ``GET /crc/<path>`` or ``GET /many/<count>/<prefix>``
(below); connects to nginx on
127.0.0.1:UPSTREAM_PORT; sends ``GET /<path>`` (``Connection: close``); forwards the
upstream's response head as it came; then relays the body in one loop: ``recv_into`` of
a 1 MiB buffer from the upstream socket, then ``send_all`` of that same memoryview to
the client's socket (the sink the benchmark's client reads).  Under ``/crc/`` it also
runs ``slipstream.ext.crc("crc32", view, value)`` on every chunk, as a zip member's
bytes need.  Then it closes the connection.  No h11, no zip records, no SQLite, no
fetcher: what a slipstream reply of one member must do at the least, on the same event
loop and the same socket options (Trio's ``TCP_NOTSENT_LOWAT``).

``/many/<count>/<prefix>`` is the floor of zip (b), many members in one reply: the
members ``/<prefix>0000.bin`` ... on **one** keep-alive upstream connection, their
requests sent :data:`AHEAD` ahead of the member being relayed (pipelined, so round trips
overlap as slipstream's read-ahead makes them), each body relayed as above with its CRC-32,
framed as a zip's member is (a local header with the name before the data, a data
descriptor with the CRC after it), the reply ending when the connection closes (no
central directory).  Only what every member needs at the least: a request, a head parsed,
the bytes received, hashed and sent, two small records.

A subprocess of its own, not a thread of the benchmark: the benchmark's client reads in
the main thread, and a Trio loop in another thread of that process would share its GIL
(released only around the system calls), so it would measure the contention as much as
the relay.  As a process it has a CPU of its own, like slipstream and nginx.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Awaitable, Callable

import trio

from slipstream.ext import crc
from slipstream.numeric import parse_uint

MIB = 1024 * 1024
TIMEOUT_S = 600.0  # one relay, head to last byte
AHEAD = 4  # /many/: requests in flight beyond the member being relayed


async def read_head(receive: Callable[[], Awaitable[bytes]]) -> bytes:
    """Bytes up to and including the blank line, and any that came with them."""
    got = b""
    while b"\r\n\r\n" not in got:
        data = await receive()
        if not data:
            raise ConnectionError("connection closed in a head")
        got += data
    return got


def content_length(head: bytes) -> int:
    """The ``Content-Length`` of a response head (0 when there is none)."""
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, field = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = parse_uint(field.strip())
    return length


async def relay_body(
    sock: trio.socket.SocketType,
    client: trio.SocketStream,
    view: memoryview,
    remaining: int,
    value: int | None,
) -> int | None:
    """Relay ``remaining`` body bytes from ``sock`` to ``client`` through ``view``; the
    CRC-32 continued from ``value`` (None: no CRC)."""
    while remaining > 0:
        n = await sock.recv_into(view, min(remaining, MIB))
        if not n:
            raise ConnectionError("the upstream closed before the end of the body")
        chunk = view[:n]
        if value is not None:
            value = crc("crc32", chunk, value)
        await client.send_all(chunk)
        remaining -= n
    return value


async def relay_many(client: trio.SocketStream, upstream_port: int, spec: bytes) -> None:
    """``/many/<count>/<prefix>``: the members relayed as one zip-framed body (see above)."""
    count_text, _, prefix = spec.partition(b"/")
    count = parse_uint(count_text.decode())
    view = memoryview(bytearray(MIB))
    await client.send_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
    with trio.socket.socket() as sock:
        await sock.connect(("127.0.0.1", upstream_port))
        requested = 0
        held = b""  # bytes received past the end of the previous member's body
        for index in range(count):
            while requested < min(count, index + 1 + AHEAD):
                name = b"/%s%04d.bin" % (prefix, requested)
                await sock.send(b"GET " + name + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                requested += 1
            got = held
            while b"\r\n\r\n" not in got:
                n = await sock.recv_into(view)
                if not n:
                    raise ConnectionError("the upstream closed in a response head")
                got += view[:n]
            head, _, first = got.partition(b"\r\n\r\n")
            length = content_length(head)
            first, held = first[:length], first[length:]
            name = b"%s%04d.bin" % (prefix.rpartition(b"/")[2], index)  # as a zip names it
            await client.send_all(b"PK\x03\x04" + bytes(26) + name)
            if first:
                await client.send_all(first)
            value = await relay_body(sock, client, view, length - len(first), crc("crc32", first))
            assert value is not None
            await client.send_all(b"PK\x07\x08" + value.to_bytes(4, "little") + bytes(8))


async def relay(client: trio.SocketStream, upstream_port: int) -> None:
    """Answer one request of ``client`` with the upstream's reply, as described above."""
    buffer = bytearray(MIB)
    view = memoryview(buffer)
    request = await read_head(lambda: client.receive_some(65536))
    target = request.split(b" ", 2)[1]
    mode, _, path = target.lstrip(b"/").partition(b"/")
    if mode == b"many":
        await relay_many(client, upstream_port, path)
        return
    with_crc = mode == b"crc"
    with trio.socket.socket() as sock:
        await sock.connect(("127.0.0.1", upstream_port))
        upstream = trio.SocketStream(sock)
        await upstream.send_all(
            b"GET /" + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        )

        async def receive() -> bytes:
            return bytes(view[: await sock.recv_into(view)])

        head, _, first = (await read_head(receive)).partition(b"\r\n\r\n")
        length = content_length(head)
        await client.send_all(head + b"\r\n\r\n" + first)
        value = crc("crc32", first) if with_crc else None
        await relay_body(sock, client, view, length - len(first), value)


async def handle(client: trio.SocketStream, upstream_port: int) -> None:
    """One connection: one relay under a deadline; a client gone early is not an error."""
    async with client:
        with (
            trio.move_on_after(TIMEOUT_S),
            contextlib.suppress(trio.BrokenResourceError, ConnectionError),
        ):
            await relay(client, upstream_port)


def main() -> None:
    upstream_port, port = int(sys.argv[1]), int(sys.argv[2])
    trio.run(lambda: trio.serve_tcp(lambda s: handle(s, upstream_port), port, host="127.0.0.1"))


if __name__ == "__main__":
    main()
