"""The thread floor of ``zip.py`` (b): every member's work done by one worker thread.

Usage: ``_thread_floor_server.py UPSTREAM_PORT PORT``.  It answers ``GET
/many/<count>/<prefix>`` with the same body as ``_relay_floor_server.py`` (each member
``/<prefix>NNNN.bin`` of nginx on 127.0.0.1:UPSTREAM_PORT framed by a 39-byte local
header and a 16-byte descriptor with its CRC-32), made the way slipstream's send thread
makes it (``slipstream.zip.threadfetch``), with nothing else: the event loop does nothing
per member.  One worker thread (one ``trio.to_thread`` call for the whole reply) keeps
the requests 4 ahead on 4 keep-alive connections (member ``i`` on connection ``i % 4``;
slipstream keeps 8, the same pace on a near upstream), reads each answer's head,
and relays the member (header, body with its CRC-32, descriptor) with one
:func:`slipstream.ext.relay` call; the connections get a 2 MiB receive buffer, as
slipstream's zip fetcher gives near upstreams.  The design floor differs only in that
its Trio task writes the requests and reads the heads, and the thread hands each member
back through the Trio token.

No checks, no retries, no h11: an upper bound of that design in the same run as
slipstream, not a result.  A subprocess of its own, as the pump is.
"""

from __future__ import annotations

import os
import select
import socket
import zlib

import trio
from _relay_floor_server import MIB, WAIT_S, send_blocking, serve, split_head

from slipstream.ext import RELAY_DONE, relay
from slipstream.numeric import parse_uint

AHEAD = 4  # upstream connections, each with one request in flight
RECEIVE_BUFFER = 2 * MIB


def read_head(fd: int, stop: int) -> tuple[int, bytes]:
    """A response head from the non-blocking socket ``fd``: its ``Content-Length`` and
    the body bytes that came with it (waiting with ``poll``, in the worker thread)."""
    got = b""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    poller.register(stop, select.POLLIN)
    while b"\r\n\r\n" not in got:
        try:
            data = os.read(fd, 16384)
        except BlockingIOError:
            ready = poller.poll(int(WAIT_S * 1000))
            if not ready or any(ready_fd == stop for ready_fd, _ in ready):
                raise ConnectionError("no response head, or the reply was stopped") from None
            continue
        if not data:
            raise ConnectionError("the upstream closed in a response head")
        got += data
    return split_head(got)


def worker(upstreams: list[int], client: int, stop: int, prefix: bytes, count: int) -> None:
    """Request, read and relay the members in order (in a worker thread)."""
    buffer = bytearray(MIB)
    name = prefix.rpartition(b"/")[2]

    def request(index: int) -> None:
        path = b"/%s%04d.bin" % (prefix, index)
        message = b"GET " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        send_blocking(upstreams[index % AHEAD], message, stop)

    for index in range(min(AHEAD, count)):
        request(index)
    for index in range(count):
        source = upstreams[index % AHEAD]
        length, first = read_head(source, stop)
        head = b"PK\x03\x04" + bytes(26) + b"%s%04d.bin" % (name, index) + first
        trailer = bytearray(b"PK\x07\x08" + bytes(12))
        moved = relay(
            source,
            client,
            buffer,
            length - len(first),
            zlib.crc32(first),
            WAIT_S,
            WAIT_S,
            stop,
            head,
            trailer,
            4,
        )
        if moved.status != RELAY_DONE:
            raise ConnectionError(f"member {index}: relay stopped ({moved.status})")
        if index + AHEAD < count:
            request(index + AHEAD)


async def relay_many(client: trio.SocketStream, upstream_port: int, spec: bytes) -> None:
    """``/many/<count>/<prefix>``, as described above."""
    count_text, _, prefix = spec.partition(b"/")
    count = parse_uint(count_text.decode())
    await client.send_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
    stop = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
    socks = [trio.socket.socket() for _ in range(AHEAD)]
    try:
        for sock in socks:
            await sock.connect(("127.0.0.1", upstream_port))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        fds = [sock.fileno() for sock in socks]
        await trio.to_thread.run_sync(worker, fds, client.socket.fileno(), stop, prefix, count)
    finally:
        for sock in socks:
            sock.close()
        os.close(stop)


if __name__ == "__main__":
    serve(relay_many)
