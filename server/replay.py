"""A stream that first replays bytes already read, then reads its socket.

The HTTP loop reads a websocket upgrade request (and maybe the first frames after
it) before it knows the connection will switch protocols; trio-websocket then redoes
the handshake from those same bytes, read back through this wrapper.
"""

from __future__ import annotations

import trio


class ReplayStream(trio.abc.HalfCloseableStream):
    """``stream``, with ``prefix`` delivered before anything new from the socket."""

    def __init__(self, stream: trio.SocketStream, prefix: bytes) -> None:
        self.stream = stream
        self._prefix = prefix

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._prefix:
            size = len(self._prefix) if max_bytes is None else max_bytes
            chunk, self._prefix = self._prefix[:size], self._prefix[size:]
            await trio.lowlevel.checkpoint()
            return chunk
        return await self.stream.receive_some(max_bytes)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.stream.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        await self.stream.send_eof()

    async def aclose(self) -> None:
        await self.stream.aclose()
