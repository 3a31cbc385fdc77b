"""The design floor of ``zip.py`` (b): members relayed back to back by one worker thread.

Usage: ``_relay_floor_server.py UPSTREAM_PORT PORT``.  It answers ``GET
/many/<count>/<prefix>`` with the same body as ``_pump_server.py``'s ``/many/`` (each
member ``/<prefix>NNNN.bin`` of nginx on 127.0.0.1:UPSTREAM_PORT framed by a 39-byte
local header and a 16-byte descriptor with its CRC-32; the reply ends when the
connection closes), made the way the proposed design for (b) would make it:

- the Trio task keeps the members' requests 4 ahead, on 4 keep-alive upstream
  connections (member ``i`` on connection ``i % 4``, sent once member ``i - 4`` is
  done), reads each response head, and queues the member: the upstream socket, the body
  bytes that came with the head, how many remain;
- one worker thread (one ``trio.to_thread`` call for the whole reply) takes the members
  in order and, for each, sends the header and those first bytes, relays the rest of the
  body with :func:`slipstream.ext.relay` (``recv``, the CRC-32 and ``send`` in C
  without the GIL), sends the descriptor, and hands the member back through the Trio
  token; it never waits for the event loop between two members.

No cache check, no retries, no h11: an upper bound of that design in the same run as
slipstream, not a result.  A subprocess of its own, as the pump is.
"""

from __future__ import annotations

import contextlib
import os
import queue
import select
import sys
import zlib
from collections.abc import Awaitable, Callable, Iterator
from functools import partial

import trio

from slipstream.ext import RELAY_DONE, relay
from slipstream.numeric import parse_uint

MIB = 1024 * 1024
TIMEOUT_S = 600.0  # one reply, head to last byte
WAIT_S = 30.0  # one wait of the worker for a socket
AHEAD = 4  # upstream connections, each with one request in flight

Job = tuple[int, int, bytes, int] | None
"""A member for the worker: index, upstream socket fd, first body bytes, bytes after them."""


def send_blocking(fd: int, data: bytes, stop: int) -> None:
    """Send all of ``data`` on the non-blocking socket ``fd``, waiting with ``poll``."""
    view = memoryview(data)
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    poller.register(stop, select.POLLIN)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            ready = poller.poll(int(WAIT_S * 1000))
            if not ready or any(ready_fd == stop for ready_fd, _ in ready):
                raise ConnectionError("the client took nothing, or the reply was stopped") from None


def worker(
    jobs: queue.SimpleQueue[Job],
    client: int,
    stop: int,
    names: list[bytes],
    done: Callable[[int], None],
) -> None:
    """Relay the queued members in order (in a worker thread); ``done(i)`` after each."""
    buffer = bytearray(MIB)
    while (job := jobs.get()) is not None:
        index, source, first, rest = job
        send_blocking(client, b"PK\x03\x04" + bytes(26) + names[index] + first, stop)
        moved = relay(source, client, buffer, rest, zlib.crc32(first), WAIT_S, WAIT_S, stop)
        if moved.status != RELAY_DONE:
            raise ConnectionError(f"member {index}: relay stopped ({moved.status})")
        send_blocking(client, b"PK\x07\x08" + moved.crc32.to_bytes(4, "little") + bytes(8), stop)
        done(index)


async def read_head(sock: trio.socket.SocketType) -> tuple[int, bytes]:
    """A response head from ``sock``: its ``Content-Length`` and the body bytes after it."""
    got = b""
    while b"\r\n\r\n" not in got:
        data = await sock.recv(16384)
        if not data:
            raise ConnectionError("the upstream closed in a response head")
        got += data
    return split_head(got)


def split_head(got: bytes) -> tuple[int, bytes]:
    """A received response head (and what followed it): its ``Content-Length`` and the
    body bytes after it."""
    head, _, first = got.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n")[1:]:
        name, _, field = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return parse_uint(field.strip().decode()), first
    raise ConnectionError("a response without Content-Length")


async def relay_many(client: trio.SocketStream, upstream_port: int, spec: bytes) -> None:
    """``/many/<count>/<prefix>``, as described above."""
    count_text, _, prefix = spec.partition(b"/")
    count = parse_uint(count_text.decode())
    names = [b"%s%04d.bin" % (prefix.rpartition(b"/")[2], i) for i in range(count)]
    await client.send_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
    finished = [trio.Event() for _ in range(count)]
    token = trio.lowlevel.current_trio_token()
    jobs: queue.SimpleQueue[Job] = queue.SimpleQueue()
    stop = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
    socks = [trio.socket.socket() for _ in range(AHEAD)]
    try:
        for sock in socks:
            await sock.connect(("127.0.0.1", upstream_port))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                partial(
                    trio.to_thread.run_sync,
                    worker,
                    jobs,
                    client.socket.fileno(),
                    stop,
                    names,
                    lambda i: token.run_sync_soon(finished[i].set),
                )
            )
            ended = False
            try:
                for index in range(count):
                    if index >= AHEAD:
                        await finished[index - AHEAD].wait()
                    sock = socks[index % AHEAD]
                    path = b"/%s%04d.bin" % (prefix, index)
                    await sock.send(b"GET " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                    length, first = await read_head(sock)
                    jobs.put((index, sock.fileno(), first, length - len(first)))
                ended = True
            finally:
                jobs.put(None)  # the worker ends after the members queued
                if not ended:
                    os.eventfd_write(stop, 1)  # ... or at once, when this failed
    finally:
        for sock in socks:
            sock.close()
        os.close(stop)


@contextlib.contextmanager
def _gone() -> Iterator[None]:
    """A client or upstream gone early is not an error (also from the worker's nursery)."""
    try:
        yield
    except* (trio.BrokenResourceError, ConnectionError):
        pass


Relay = Callable[[trio.SocketStream, int, bytes], Awaitable[None]]
"""``relay(client, upstream_port, spec)``: the reply to ``GET /many/<spec>``."""


async def handle(client: trio.SocketStream, upstream_port: int, relay: Relay) -> None:
    """One connection: one reply under a deadline; a client gone early is not an error."""
    async with client:
        with trio.move_on_after(TIMEOUT_S), _gone():
            request = b""
            while b"\r\n\r\n" not in request:
                data = await client.receive_some(65536)
                if not data:
                    return
                request += data
            target = request.split(b" ", 2)[1]
            mode, _, spec = target.lstrip(b"/").partition(b"/")
            if mode == b"many":
                await relay(client, upstream_port, spec)


def serve(relay: Relay) -> None:
    """Serve ``/many/`` with ``relay`` on 127.0.0.1:PORT (argv: ``UPSTREAM_PORT PORT``)."""
    upstream_port, port = int(sys.argv[1]), int(sys.argv[2])
    trio.run(
        lambda: trio.serve_tcp(lambda s: handle(s, upstream_port, relay), port, host="127.0.0.1")
    )


if __name__ == "__main__":
    serve(relay_many)
