"""Minimal Trio servers that answer every request with the same 1 KiB body.

Not slipstream: the floors that ``small_requests.py`` measures slipstream against.
``raw`` splits requests at the blank line and sends a canned reply (Trio alone);
``h11`` runs one h11 connection per socket with a minimal Response (Trio + h11, the
HTTP layer slipstream is required to use).  Usage: ``_floor_server.py raw|h11 PORT``.
"""

from __future__ import annotations

import contextlib
import sys

import h11
import trio

BODY = b"x" * 1024
CANNED = b"HTTP/1.1 200 OK\r\nContent-Length: 1024\r\n\r\n" + BODY


async def raw_loop(stream: trio.SocketStream) -> None:
    pending = b""
    while data := await stream.receive_some(65536):
        pending += data
        while b"\r\n\r\n" in pending:
            pending = pending.partition(b"\r\n\r\n")[2]
            await stream.send_all(CANNED)


async def h11_loop(stream: trio.SocketStream) -> None:
    conn = h11.Connection(h11.SERVER)
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            data = await stream.receive_some(65536)
            conn.receive_data(data)
            if not data:
                return
        elif isinstance(event, h11.EndOfMessage):
            head = conn.send(h11.Response(status_code=200, headers=[(b"Content-Length", b"1024")]))
            conn.send(h11.Data(data=BODY))
            conn.send(h11.EndOfMessage())
            await stream.send_all(head + BODY)
            conn.start_next_cycle()
        elif isinstance(event, h11.ConnectionClosed):
            return


async def guarded(handler: object, stream: trio.SocketStream) -> None:
    with contextlib.suppress(trio.BrokenResourceError, h11.ProtocolError):
        await handler(stream)  # type: ignore[operator]


def main() -> None:
    mode, port = sys.argv[1], int(sys.argv[2])
    handler = raw_loop if mode == "raw" else h11_loop
    print(f"listening on 127.0.0.1:{port}/", flush=True)
    trio.run(lambda: trio.serve_tcp(lambda s: guarded(handler, s), port, host="127.0.0.1"))


if __name__ == "__main__":
    main()
