"""Raw HTTP/1.1 over a TCP socket.

:class:`RawClient` speaks bytes over ``trio.open_tcp_stream`` and parses replies with a
client-side ``h11.Connection`` (so framing errors in our replies fail the tests).
"""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from typing import Any

import h11
import trio


@dataclass
class RawResponse:
    """One response as parsed by a client-side h11 connection."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes
    reason: bytes = b""

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), or None."""
        name = name.lower()
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def header_all(self, name: str) -> list[str]:
        """Every value of header ``name``."""
        name = name.lower()
        return [value for key, value in self.headers if key == name]

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)


class RawClient:
    """A raw TCP connection; ``send`` arbitrary bytes, ``read_response`` parses one reply."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.h11 = h11.Connection(h11.CLIENT)
        self._first = True
        self.closed_by_peer = False

    @classmethod
    async def connect(cls, port: int) -> RawClient:
        """Connect to ``127.0.0.1:port``."""
        return cls(await trio.open_tcp_stream("127.0.0.1", port))

    async def send(self, data: bytes) -> None:
        """Write raw bytes."""
        await self.stream.send_all(data)

    async def receive(self, max_bytes: int = 65536) -> bytes:
        """One read (b"" at EOF; a reset counts as EOF)."""
        try:
            data = await self.stream.receive_some(max_bytes)
        except trio.BrokenResourceError:
            data = b""
        if not data:
            self.closed_by_peer = True
        return data

    async def read_response(self, method: str = "GET", *, timeout: float = 5.0) -> RawResponse:
        """Parse the next response (for a request made with ``method``)."""
        conn = self.h11
        if not self._first:
            conn.start_next_cycle()
        self._first = False
        # h11 must believe it sent the request to parse the reply (HEAD has no body).
        conn.send(h11.Request(method=method, target="/", headers=[("Host", "x")]))
        conn.send(h11.EndOfMessage())
        status = 0
        reason = b""
        headers: list[tuple[str, str]] = []
        body = bytearray()
        with trio.fail_after(timeout):
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(await self.receive())
                elif isinstance(event, h11.InformationalResponse):
                    continue
                elif isinstance(event, h11.Response):
                    status = event.status_code
                    reason = event.reason
                    headers = [(k.decode().lower(), v.decode("latin-1")) for k, v in event.headers]
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, h11.EndOfMessage):
                    return RawResponse(status, headers, bytes(body), reason)
                else:
                    raise AssertionError(f"connection closed before a full response: {event!r}")

    async def read_until_eof(self, *, timeout: float = 5.0) -> bytes:
        """Every byte until the peer closes (raises TooSlowError if it does not)."""
        out = bytearray()
        with trio.fail_after(timeout):
            while True:
                data = await self.receive()
                if not data:
                    return bytes(out)
                out += data

    async def is_closed(self, *, timeout: float = 5.0) -> bool:
        """True if the peer closes (with nothing more to read) within ``timeout``."""
        with trio.move_on_after(timeout):
            data = await self.receive()
            if data:
                raise AssertionError(f"expected EOF, got {data[:200]!r}")
            return True
        return False

    async def aclose(self) -> None:
        """Close our side."""
        await self.stream.aclose()

    def abort(self) -> None:
        """Close with a TCP reset (SO_LINGER 0), as a crashing client would."""
        sock = self.stream.socket
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.close()


async def exchange(port: int, data: bytes, *, timeout: float = 5.0) -> bytes:
    """Send ``data`` on a fresh connection and return everything until the server closes."""
    client = await RawClient.connect(port)
    try:
        await client.send(data)
        return await client.read_until_eof(timeout=timeout)
    finally:
        await client.aclose()


def get(target: str, *headers: str, method: str = "GET", host: str = "x") -> bytes:
    """A raw HTTP/1.1 request head: ``get("/healthz", "Range: bytes=0-1")``."""
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}", *headers, "", ""]
    return "\r\n".join(lines).encode("latin-1")
